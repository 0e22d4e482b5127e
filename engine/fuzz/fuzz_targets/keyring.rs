//! The keyring's plaintext, directly and through `Keyring::open`.
//! Body: `cairn_format::fuzzing::keyring`, shared with the corpus replay test (tests/it/fuzz_corpus.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cairn_format::fuzzing::keyring(data));
