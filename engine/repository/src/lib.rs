//! Cairn's repository layer: the services every operation builds on. Opening a repository with
//! a key slot and the keyring checks (`repo`), blobs and packs, index sync and its RocksDB cache
//! (`index`), snapshots, locks, key slot management, the hash-chained audit log (`audit`) and the
//! tree service (`trees`: resolve a path in a snapshot, walk it).
//!
//! Above `cairn-format` and `cairn-storage`, below `cairn-engine`'s operations; it never reaches
//! up. `format` and `storage` name those crates here, so paths read as one namespace.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic))]

pub mod audit;
pub mod index;
pub mod repo;
pub mod trees;

use cairn_format as format;
use cairn_format::{chunker, codec, crypto, error, id, keys};
use cairn_storage as storage;

pub use cairn_format::{ChunkId, Error, ObjectId, PackId, Result};
pub use repo::{InitOptions, InitOutcome, Repository};
