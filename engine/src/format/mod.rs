//! The on-disk format, one file per section of `format-spec/SPEC.md`: bytes <-> types, pure
//! and deterministic. Nothing here touches storage; only `envelope` calls the AEAD.

pub mod audit;
pub mod blob;
pub mod config;
pub mod envelope;
#[cfg(feature = "repository")]
pub(crate) mod extents;
pub mod index;
pub mod keyring;
pub mod lock;
pub mod marks;
pub mod names;
pub mod pack;
pub mod padding;
pub mod slot;
pub mod snapshot;
pub mod tree;

#[cfg(test)]
mod proptests;

use serde::{Deserialize, Serialize};

/// The repository format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 2;

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
