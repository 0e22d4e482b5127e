//! `forget`: remove snapshots, named or by a retention policy (`policy`). Only snapshot
//! objects are deleted; the data they alone used is reclaimed by `prune`. The intent is logged
//! before anything is deleted, so the audit log never says a snapshot exists that forget
//! removed, whatever step a crash interrupts (prune refuses to run while the log names
//! snapshots storage does not show).

pub mod policy;

use crate::audit::Actor;
use crate::error::Result;
use crate::format::snapshot::Snapshot;
use crate::id::ObjectId;
use crate::repo::Repository;

pub use policy::{Bucket, Decision, GroupBy, GroupKey, KeepPolicy, RetentionSpan, SnapshotInfo};

/// What the policy needs from a stored snapshot (paths and tags sorted).
pub fn info(id: ObjectId, s: &Snapshot) -> SnapshotInfo {
    let mut paths = s.paths.clone();
    paths.sort();
    let mut tags = s.tags.clone();
    tags.sort();
    SnapshotInfo { id, time_ns: s.time_ns, hostname: s.hostname.clone(), paths, tags, writer: s.writer }
}

/// Deletes the snapshots `ids` after appending an audit entry (operation `forget`, outcome
/// `intent`) that lists them; nothing is deleted when that entry cannot be written. The caller
/// appends the operation's own entry afterwards. Deleting a missing snapshot is not an error.
pub fn remove(repo: &Repository, ids: &[ObjectId], actor: &Actor) -> Result<()> {
    repo.delete_snapshots_logged(ids, actor, "forget")
}
