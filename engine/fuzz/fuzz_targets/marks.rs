//! A deletion marks object's plaintext.
//! Body: `cairn_engine::fuzzing::marks`, shared with the corpus replay test (tests/it/fuzz_corpus.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cairn_engine::fuzzing::marks(data));
