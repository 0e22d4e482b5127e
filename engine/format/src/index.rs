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

/// Payload version of an index segment that lists unverified packs.
pub const INDEX_UNVERIFIED_VERSION: u8 = 2;

/// An index segment's plaintext.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexSegment {
    /// Packs described by this segment.
    pub packs: Vec<IndexedPack>,
    /// Segments this one replaces (written by prune/repair; deleted after this is durable).
    pub supersedes: Vec<ObjectId>,
    /// Packs of `packs` a write-only slot wrote, whose blobs no full key has checked against
    /// their ids: full keys read them, and never count them as stored (SPEC §11). Written by
    /// full keys replacing the index (prune, repair), so the mark outlives the write-only
    /// slot's own segment. Empty in payload version 1.
    pub unverified: Vec<PackId>,
}

/// Payload version 1: no `unverified`.
#[derive(Serialize, Deserialize)]
struct SegmentV1 {
    packs: Vec<IndexedPack>,
    supersedes: Vec<ObjectId>,
}

impl IndexSegment {
    /// Plaintext bytes.
    pub fn encode(&self) -> Vec<u8> {
        if self.unverified.is_empty() {
            let v1 = SegmentV1 { packs: self.packs.clone(), supersedes: self.supersedes.clone() };
            return encode_versioned(INDEX_VERSION, &v1);
        }
        encode_versioned(INDEX_UNVERIFIED_VERSION, self)
    }

    /// Parses plaintext bytes (payload version 1 or 2).
    pub fn decode(bytes: &[u8], object: &str) -> Result<Self> {
        if bytes.first() == Some(&INDEX_UNVERIFIED_VERSION) {
            let segment: IndexSegment = decode_versioned(bytes, INDEX_UNVERIFIED_VERSION, object)?;
            if segment.unverified.is_empty() {
                return Err(crate::error::Error::corrupt(object, "payload version 2 with no unverified pack"));
            }
            let listed: std::collections::HashSet<PackId> = segment.packs.iter().map(|p| p.pack).collect();
            if segment.unverified.iter().any(|u| !listed.contains(u)) {
                return Err(crate::error::Error::corrupt(object, "an unverified pack the segment does not list"));
            }
            return Ok(segment);
        }
        let v1: SegmentV1 = decode_versioned(bytes, INDEX_VERSION, object)?;
        Ok(IndexSegment { packs: v1.packs, supersedes: v1.supersedes, unverified: Vec::new() })
    }
}
