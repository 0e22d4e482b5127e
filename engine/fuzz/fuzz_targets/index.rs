//! An index segment's plaintext.
//! Body: `cairn_format::fuzzing::index`, shared with the corpus replay test (tests/it/fuzz_corpus.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cairn_format::fuzzing::index(data));
