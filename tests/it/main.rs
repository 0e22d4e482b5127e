//! Cairn's integration tests: one binary, one module per area.

mod audit;
mod check;
mod cli;
mod confidentiality;
mod corruption;
mod crash_matrix;
mod dedup;
mod fswalk;
mod fuzz_corpus;
mod hostile_storage;
mod incremental;
mod keys;
mod maintenance;
mod metadata;
mod restore_options;
mod robustness;
mod roundtrip;
mod s3;
mod s3server;
mod selection;
mod signals;
mod soak;
mod source_errors;
mod storage_conformance;
mod support;
mod vectors;
