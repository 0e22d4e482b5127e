//! Cairn's format layer: what the bytes of a repository are, with no I/O. The primitives
//! (`error`, `id`, `codec`, `crypto`, `compress`, `chunker`, `utc`), the byte layouts of
//! `format-spec/SPEC.md` (one module per section: bytes <-> types, pure and deterministic; only
//! `envelope` calls the AEAD), and the key material (`keys`: keyrings, slots, recovery codes,
//! the HSM wrap), the only place plaintext keys live.
//!
//! The bottom of the crate chain `cairn-format -> cairn-storage -> cairn-repository ->
//! cairn-engine -> cairn-cli`; the fuzz targets depend on it alone.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic))]

pub mod chunker;
pub mod codec;
pub mod compress;
pub mod crypto;
pub mod error;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod id;
pub mod keys;
#[cfg(any(test, feature = "testing"))]
#[doc(hidden)]
pub mod test_util;
pub mod utc;

pub use error::{Error, Result};
pub use id::{ChunkId, ObjectId, PackId};

/// The test-only features this build carries (`test-vectors`, `fuzzing`): none in a shipped
/// build. A workspace build unifies the test suite's features into every crate it builds, so the
/// `cairn` binary says it carries them (`cairn --version`) and the suite refuses to test it.
pub fn test_only_features() -> Vec<&'static str> {
    let features = [("test-vectors", cfg!(feature = "test-vectors")), ("fuzzing", cfg!(feature = "fuzzing"))];
    features.iter().filter(|(_, on)| *on).map(|(name, _)| *name).collect()
}

pub mod audit;
pub mod blob;
pub mod config;
pub mod envelope;
pub mod extents;
pub mod index;
pub mod keyring;
pub mod lock;
pub mod marks;
pub mod names;
pub mod pack;
pub mod padding;
pub mod sealer;
pub mod slot;
pub mod snapshot;
pub mod tree;

#[cfg(test)]
mod proptests;

use serde::{Deserialize, Serialize};

/// The repository format version this build writes and reads: `init` writes it.
pub const FORMAT_VERSION: u32 = 2;

/// The format version of a repository with write-only slots (SPEC §7.6): what they write is
/// sealed to the reader key (envelope version 2), which clients of version 2 cannot open, so
/// adding the first such slot moves the config to it and those clients refuse the repository
/// as a whole instead of failing on its newer objects.
pub const WRITE_ONLY_FORMAT_VERSION: u32 = 3;

/// The most bytes a reader takes for any object but a pack (config, key slot, keyring, index
/// segment, snapshot, lock, audit entry). The largest real ones are index segments of at most
/// 65,536 blobs (about 5 MiB); anything far beyond is the storage trying to exhaust memory.
pub const MAX_SMALL_OBJECT: u64 = 64 << 20;

/// Whether a blob holds file content or a directory listing. Stored in separate packs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum BlobKind {
    /// File content chunk.
    Data,
    /// Serialized [`tree::Tree`].
    Tree,
}

impl BlobKind {
    /// The envelope kind of a blob of this kind.
    pub fn object_kind(self) -> envelope::ObjectKind {
        match self {
            BlobKind::Data => envelope::ObjectKind::DataBlob,
            BlobKind::Tree => envelope::ObjectKind::TreeBlob,
        }
    }

    /// One-byte code used in the index cache.
    pub fn code(self) -> u8 {
        match self {
            BlobKind::Data => 0,
            BlobKind::Tree => 1,
        }
    }

    /// Parses [`BlobKind::code`].
    pub fn from_code(c: u8) -> Option<Self> {
        match c {
            0 => Some(BlobKind::Data),
            1 => Some(BlobKind::Tree),
            _ => None,
        }
    }
}

/// Nanoseconds since the Unix epoch, now.
pub fn now_ns() -> i64 {
    match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_nanos()).unwrap_or(i64::MAX),
    }
}
