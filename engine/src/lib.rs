//! Cairn's engine: an end-to-end-encrypted, content-addressed, deduplicating backup library.
//!
//! Layers, each using only itself and the ones below (see ARCHITECTURE.md):
//! L0 `error`, `id`, `codec`, `crypto`, `compress`, `chunker`; L1 `format`, `storage`;
//! L2 `keys`, `index`, `repo`; L3 `backup`, `restore`, `ls`.
//! The engine never prints, prompts, reads environment variables or exits.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic))]

pub mod backup;
pub mod chunker;
pub mod codec;
pub mod compress;
pub mod crypto;
pub mod error;
pub mod format;
pub mod id;
pub mod index;
pub mod keys;
pub mod ls;
pub mod progress;
pub mod repo;
pub mod restore;
pub mod storage;

pub use error::{Error, Result};
pub use id::{ChunkId, ObjectId, PackId};
pub use progress::{NoProgress, Progress};
pub use repo::{InitOptions, InitOutcome, Repository};
