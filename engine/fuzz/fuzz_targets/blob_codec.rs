//! A blob's opened plaintext: padding, codec byte, bounded zstd frame.
//! Body: `cairn_format::fuzzing::blob_codec`, shared with the corpus replay test (tests/it/fuzz_corpus.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cairn_format::fuzzing::blob_codec(data));
