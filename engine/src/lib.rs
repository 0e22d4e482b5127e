//! Cairn's engine: an end-to-end-encrypted, content-addressed, deduplicating backup library.
//!
//! Layers, each using only itself and the ones below (see ARCHITECTURE.md):
//! L0 `error`, `id`, `codec`, `crypto`, `compress`, `chunker`, `utc`; L1 `format`, `storage`, `hostfs`;
//! L2 `keys`, `index`, `repo`, `trees`; L3 `backup`, `restore`, `dump`, `diff`, `snapfs` and the
//! other operations.
//! The engine never prints, prompts, reads environment variables or exits.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic))]

#[cfg(feature = "repository")]
pub mod audit;
#[cfg(feature = "repository")]
pub mod backup;
#[cfg(feature = "repository")]
pub mod check;
pub mod chunker;
pub mod codec;
pub mod compress;
#[cfg(feature = "repository")]
pub mod copy;
pub mod crypto;
#[cfg(feature = "repository")]
pub mod diff;
#[cfg(feature = "repository")]
pub mod dump;
pub mod error;
#[cfg(feature = "repository")]
pub mod forget;
pub mod format;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod hostfs;
pub mod id;
#[cfg(feature = "repository")]
pub mod index;
pub mod keys;
#[cfg(feature = "repository")]
pub mod pattern;
pub mod progress;
#[cfg(feature = "repository")]
pub mod prune;
#[cfg(feature = "repository")]
pub mod repair;
#[cfg(feature = "repository")]
pub mod repo;
#[cfg(feature = "repository")]
pub mod restore;
#[cfg(feature = "repository")]
pub mod rewrite;
pub mod select;
#[cfg(feature = "repository")]
pub mod snapfs;
#[cfg(feature = "repository")]
pub mod stats;
pub mod storage;
#[cfg(test)]
mod test_util;
#[cfg(feature = "repository")]
pub mod trees;
pub mod utc;

pub use error::{Error, Result};
pub use id::{ChunkId, ObjectId, PackId};
pub use progress::{NoProgress, Progress};
#[cfg(feature = "repository")]
pub use repo::{InitOptions, InitOutcome, Repository};
