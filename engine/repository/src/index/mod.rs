//! The blob index: where each blob lives. The sealed segments under `index/` are the truth;
//! [`IndexCache`] is the client's RocksDB copy, synced incrementally and rebuilt at will.
//! [`ScratchTable`] holds working sets of the same scale (prune's used blobs) on disk.

mod cache;
mod id_file;
mod locality;
mod scratch;

pub use cache::{BlobLocation, IndexCache};
pub use scratch::ScratchTable;
