//! An audit entry's stored plaintext (entry || MAC) and entry names.
//! Body: `cairn_format::fuzzing::audit`, shared with the corpus replay test (tests/it/fuzz_corpus.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cairn_format::fuzzing::audit(data));
