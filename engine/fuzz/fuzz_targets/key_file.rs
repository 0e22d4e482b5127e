//! A key file as read from disk.
//! Body: `cairn_format::fuzzing::key_file`, shared with the corpus replay test (tests/it/fuzz_corpus.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cairn_format::fuzzing::key_file(data));
