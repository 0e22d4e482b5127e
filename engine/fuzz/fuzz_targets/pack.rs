//! A whole pack (locator, header span, padded header, tiling) through a null cipher.
//! Body: `cairn_format::fuzzing::pack`, shared with the corpus replay test (tests/it/fuzz_corpus.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cairn_format::fuzzing::pack(data));
