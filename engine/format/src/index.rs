//! Spec: format-spec/SPEC.md#index-segments
//!
//! An index segment lists, for some packs, every blob they hold. The union of all segments is
//! the repository's index; the client caches it (see `index::cache`).

use serde::{Deserialize, Serialize};

use crate::codec::{decode_versioned, encode_versioned};
use crate::error::Result;
use crate::id::{ObjectId, PackId};
use crate::pack::BlobEntry;

/// Payload version of an index segment.
pub const INDEX_VERSION: u8 = 1;

/// One pack's blobs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexedPack {
    /// The pack.
    pub pack: PackId,
    /// The pack's size in bytes.
    pub size: u64,
    /// Its blobs (as in the pack header).
    pub blobs: Vec<BlobEntry>,
}

/// An index segment's plaintext.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexSegment {
    /// Packs described by this segment.
    pub packs: Vec<IndexedPack>,
    /// Segments this one replaces (written by prune/repair; deleted after this is durable).
    pub supersedes: Vec<ObjectId>,
}

impl IndexSegment {
    /// Plaintext bytes.
    pub fn encode(&self) -> Vec<u8> {
        encode_versioned(INDEX_VERSION, self)
    }

    /// Parses plaintext bytes.
    pub fn decode(bytes: &[u8], object: &str) -> Result<Self> {
        decode_versioned(bytes, INDEX_VERSION, object)
    }
}
