//! Cairn's integration tests: one binary, one module per area.

mod cli;
mod confidentiality;
mod corruption;
mod dedup;
mod roundtrip;
mod support;
mod vectors;
