//! The config's plaintext.
//! Body: `cairn_engine::fuzzing::config`, shared with the corpus replay test (tests/it/fuzz_corpus.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cairn_engine::fuzzing::config(data));
