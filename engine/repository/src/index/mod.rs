//! The blob index: where each blob lives. The sealed segments under `index/` are the truth;
//! [`IndexCache`] is the client's RocksDB copy, synced incrementally and rebuilt at will.
//! [`ScratchTable`] holds working sets of the same scale on disk, [`IdMap`] in memory until they
//! outgrow it (prune's used blobs), and
//! [`SortedRecords`] sorts them (check's index entries by pack and by blob) in bounded memory.

mod cache;
mod id_file;
mod id_map;
mod locality;
mod scratch;
mod sorted_records;

pub use cache::{BlobLocation, IndexCache};
pub use id_map::{IDS_IN_MEMORY, IdMap, Value};
pub use scratch::ScratchTable;
pub use sorted_records::SortedRecords;
