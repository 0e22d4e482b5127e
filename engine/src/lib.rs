//! Cairn's engine: an end-to-end-encrypted, content-addressed, deduplicating backup library.
//!
//! The top of the crate chain `cairn-format -> cairn-storage -> cairn-repository ->
//! cairn-engine` (see ARCHITECTURE.md): the operations (`backup`, `restore`, `dump`, `diff`,
//! `snapfs`, `forget`, `prune`, `check`, `repair`, ...) and what only they need (`hostfs`,
//! `pattern`, `select`, `progress`). The layers below are re-exported under their module names,
//! so a program using the engine sees one namespace.
//! The engine never prints, prompts, reads environment variables or exits.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic))]

pub mod audited;
pub mod backup;
pub mod check;
pub mod copy;
pub mod diff;
pub mod dump;
pub mod forget;
pub mod hostfs;
#[cfg(test)]
mod orchestration_tests;
pub mod pattern;
pub mod progress;
pub mod prune;
pub mod repair;
pub mod restore;
pub mod rewrite;
pub mod select;
pub mod snapfs;
pub mod stats;
pub mod tree_walk;

#[cfg(feature = "fuzzing")]
pub use cairn_format::fuzzing;
pub use cairn_format::{self as format, chunker, codec, compress, crypto, error, id, keys, utc};
pub use cairn_repository::{audit, index, repo, trees};
pub use cairn_storage as storage;

pub use error::{Error, Result};
pub use id::{ChunkId, ObjectId, PackId};
pub use progress::{NoProgress, Progress};
pub use repo::{InitOptions, InitOutcome, Repository};
