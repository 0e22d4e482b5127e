//! `forget`: remove snapshots, named or by a retention policy (`policy`). Only snapshot
//! objects are deleted; the data they alone used is reclaimed by `prune`.

pub mod policy;

use crate::error::Result;
use crate::format::snapshot::Snapshot;
use crate::id::ObjectId;
use crate::repo::{Repository, snapshot_name};

pub use policy::{Bucket, Decision, GroupBy, GroupKey, KeepPolicy, SnapshotInfo};

/// What the policy needs from a stored snapshot (paths and tags sorted).
pub fn info(id: ObjectId, s: &Snapshot) -> SnapshotInfo {
    let mut paths = s.paths.clone();
    paths.sort();
    let mut tags = s.tags.clone();
    tags.sort();
    SnapshotInfo { id, time_ns: s.time_ns, hostname: s.hostname.clone(), paths, tags }
}

/// Deletes the snapshots `ids`. Deleting a missing snapshot is not an error.
pub fn remove(repo: &Repository, ids: &[ObjectId]) -> Result<()> {
    for id in ids {
        repo.storage().delete(&snapshot_name(id))?;
    }
    Ok(())
}
