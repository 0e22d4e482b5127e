//! Sealed-object envelopes: parsing, sealing, opening, bit flips.
//! Body: `cairn_format::fuzzing::envelope`, shared with the corpus replay test (tests/it/fuzz_corpus.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cairn_format::fuzzing::envelope(data));
