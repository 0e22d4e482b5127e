//! A tree blob's plaintext.
//! Body: `cairn_format::fuzzing::tree`, shared with the corpus replay test (tests/it/fuzz_corpus.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cairn_format::fuzzing::tree(data));
