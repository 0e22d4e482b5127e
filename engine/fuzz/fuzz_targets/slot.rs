//! A key slot's JSON and its sealed slot info.
//! Body: `cairn_format::fuzzing::slot`, shared with the corpus replay test (tests/it/fuzz_corpus.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cairn_format::fuzzing::slot(data));
