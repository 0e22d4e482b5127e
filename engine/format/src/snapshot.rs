//! Spec: format-spec/SPEC.md#snapshots
//!
//! A snapshot names its root tree and says when, where and what was backed up.

use serde::{Deserialize, Serialize};

use crate::codec::{decode_versioned, encode_versioned};
use crate::error::Result;
use crate::id::{ChunkId, ObjectId};

/// Payload version of a snapshot.
pub const SNAPSHOT_VERSION: u8 = 1;

/// Counters recorded with a snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotSummary {
    /// Files not seen in the parent.
    pub files_new: u64,
    /// Files whose content or metadata changed since the parent.
    pub files_changed: u64,
    /// Files unchanged since the parent.
    pub files_unchanged: u64,
    /// Directories.
    pub dirs: u64,
    /// Other nodes (symlinks, devices...).
    pub others: u64,
    /// Bytes of file content read.
    pub bytes_read: u64,
    /// Total file content size in the snapshot.
    pub bytes_total: u64,
    /// Blobs added to the repository.
    pub blobs_added: u64,
    /// Plaintext bytes of the blobs added.
    pub bytes_added_raw: u64,
    /// Bytes added to the repository (packs, index, snapshot).
    pub bytes_added_stored: u64,
    /// Sources that could not be read.
    pub errors: u64,
    /// Start and end, ns since the Unix epoch.
    pub started_ns: i64,
    /// End time.
    pub finished_ns: i64,
}

/// A snapshot's plaintext.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// When the snapshot was taken, ns since the Unix epoch.
    pub time_ns: i64,
    /// Host name.
    pub hostname: String,
    /// User name.
    pub username: String,
    /// Absolute source paths as given (raw bytes).
    pub paths: Vec<Vec<u8>>,
    /// Tags.
    pub tags: Vec<String>,
    /// Root tree blob.
    pub tree: ChunkId,
    /// Parent snapshot used for change detection.
    pub parent: Option<ObjectId>,
    /// Program that wrote it.
    pub program: String,
    /// Counters.
    pub summary: SnapshotSummary,
}

impl Snapshot {
    /// Plaintext bytes.
    pub fn encode(&self) -> Vec<u8> {
        encode_versioned(SNAPSHOT_VERSION, self)
    }

    /// Parses plaintext bytes.
    pub fn decode(bytes: &[u8], object: &str) -> Result<Self> {
        decode_versioned(bytes, SNAPSHOT_VERSION, object)
    }
}
