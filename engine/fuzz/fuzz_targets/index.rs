//! An index segment's plaintext.
//! Body: `cairn_engine::fuzzing::index`, shared with the corpus replay test (tests/it/fuzz_corpus.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cairn_engine::fuzzing::index(data));
