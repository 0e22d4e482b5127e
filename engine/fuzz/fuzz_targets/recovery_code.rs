//! A recovery code as typed.
//! Body: `cairn_format::fuzzing::recovery_code`, shared with the corpus replay test (tests/it/fuzz_corpus.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cairn_format::fuzzing::recovery_code(data));
