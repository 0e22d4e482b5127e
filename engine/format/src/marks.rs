//! Spec: format-spec/SPEC.md#deletion-marks
//!
//! Prune deletes in two phases: a pack no index names, or no snapshot uses, is first marked,
//! and only a later prune that still finds it unreferenced once the mark is older than the
//! grace period deletes it. The marks live in sealed objects `marks/<id>` with random ids;
//! each prune writes one that supersedes the ones it read, and a generation number lets a
//! client that saw a newer mark refuse an old one the storage serves again.

use serde::{Deserialize, Serialize};

use crate::codec::{decode_versioned, encode_versioned};
use crate::error::{Error, Result};
use crate::id::{ObjectId, PackId};

/// Payload version of a marks object.
pub const MARKS_VERSION: u8 = 1;

/// One pack marked for deletion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MarkedPack {
    /// The pack.
    pub pack: PackId,
    /// Its size in bytes when marked (for reports).
    pub size: u64,
    /// When a prune first found it unreferenced, ns since the epoch (that prune's clock).
    pub marked_ns: i64,
}

/// A marks object's plaintext.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PruneMarks {
    /// One more than the highest generation of the marks it supersedes (1 for the first).
    pub generation: u64,
    /// When it was written, ns since the epoch.
    pub created_ns: i64,
    /// Marks objects this one replaces (deleted after it is stored).
    pub supersedes: Vec<ObjectId>,
    /// The packs marked, strictly increasing by id.
    pub packs: Vec<MarkedPack>,
}

impl PruneMarks {
    /// Plaintext bytes.
    pub fn encode(&self) -> Vec<u8> {
        encode_versioned(MARKS_VERSION, self)
    }

    /// Parses plaintext bytes; packs must be strictly increasing.
    pub fn decode(bytes: &[u8], object: &str) -> Result<Self> {
        let marks: PruneMarks = decode_versioned(bytes, MARKS_VERSION, object)?;
        if marks.packs.windows(2).any(|w| matches!(w, [a, b] if a.pack >= b.pack)) {
            return Err(Error::corrupt(object, "marked packs are not in increasing order"));
        }
        Ok(marks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_order_is_checked() {
        let m = |n: u8| MarkedPack { pack: PackId([n; 32]), size: 10, marked_ns: 5 };
        let marks =
            PruneMarks { generation: 3, created_ns: 9, supersedes: vec![ObjectId([1; 32])], packs: vec![m(1), m(2)] };
        assert_eq!(PruneMarks::decode(&marks.encode(), "marks/x").unwrap(), marks);
        let unordered = PruneMarks { packs: vec![m(2), m(1)], ..marks.clone() };
        assert!(PruneMarks::decode(&unordered.encode(), "marks/x").is_err());
        let mut trailing = marks.encode();
        trailing.push(0);
        assert!(PruneMarks::decode(&trailing, "marks/x").is_err());
    }
}
