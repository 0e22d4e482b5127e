//! The blob index: where each blob lives. The sealed segments under `index/` are the truth;
//! [`IndexCache`] is the client's RocksDB copy, synced incrementally and rebuilt at will.

mod cache;

pub use cache::{BlobLocation, IndexCache};
