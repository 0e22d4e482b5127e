//! `rewrite`: a snapshot without the paths that match exclude patterns, written as a new
//! snapshot (same time, host, paths; tag `rewritten`; the old one as parent). The old snapshot
//! stays unless the caller removes it, and the data only it used is reclaimed by `prune`.
//! Patterns are matched as `snapshot --exclude` matches them, against the absolute path the
//! entry was backed up from.

use crate::error::Result;
use crate::format::BlobKind;
use crate::format::snapshot::Snapshot;
use crate::format::tree::{NodeKind, Tree};
use crate::id::{ChunkId, ObjectId};
use crate::pattern::PathPatterns;
use crate::repo::{BlobWriter, Repository};

/// The tag a rewritten snapshot carries.
pub const REWRITTEN_TAG: &str = "rewritten";

/// One snapshot rewritten.
#[derive(Debug, Clone)]
pub struct Rewritten {
    /// The snapshot rewritten.
    pub old: ObjectId,
    /// Its replacement (`None` on a dry run).
    pub new: Option<ObjectId>,
    /// The paths left out (directories once, not what is below them).
    pub removed: Vec<String>,
}

/// Rewrites each of `snapshots` that has a path `patterns` matches; those without one are
/// left alone. With `dry_run` nothing is written and the outcome lists what would go.
pub fn rewrite_snapshots(
    repo: &Repository,
    snapshots: Vec<(ObjectId, Snapshot)>,
    patterns: &PathPatterns,
    dry_run: bool,
) -> Result<Vec<Rewritten>> {
    let writer = if dry_run { repo.dry_run_blob_writer()? } else { repo.blob_writer()? };
    let mut pending = Vec::new();
    for (id, snap) in snapshots {
        let mut removed = Vec::new();
        let root = filter_tree(repo, &writer, patterns, snap.tree, b"", &mut removed)?;
        if !removed.is_empty() {
            pending.push((id, snap, root, removed));
        }
    }
    // Invariant: the new trees are stored and indexed before any snapshot names them.
    writer.finish()?;
    let mut out = Vec::with_capacity(pending.len());
    for (old, mut snap, root, removed) in pending {
        let new = if dry_run {
            None
        } else {
            snap.tree = root;
            snap.parent = Some(old);
            if !snap.tags.iter().any(|t| t == REWRITTEN_TAG) {
                snap.tags.push(REWRITTEN_TAG.into());
            }
            Some(repo.save_snapshot(&snap)?.0)
        };
        out.push(Rewritten { old, new, removed });
    }
    Ok(out)
}

/// Tree `id` at `prefix` (snapshot path, no leading `/`) without the matching entries; the same
/// id when nothing below it matches.
fn filter_tree(
    repo: &Repository,
    writer: &BlobWriter<'_>,
    patterns: &PathPatterns,
    id: ChunkId,
    prefix: &[u8],
    removed: &mut Vec<String>,
) -> Result<ChunkId> {
    let tree = repo.load_tree(&id)?;
    let mut nodes = Vec::with_capacity(tree.nodes.len());
    let mut changed = false;
    for mut node in tree.nodes {
        let mut path = prefix.to_vec();
        if !path.is_empty() {
            path.push(b'/');
        }
        path.extend_from_slice(&node.name);
        if patterns.matches_snapshot_path(&path, node.is_dir()) {
            changed = true;
            removed.push(format!("/{}", String::from_utf8_lossy(&path)));
            continue;
        }
        if let NodeKind::Dir { subtree } = node.kind {
            let new = filter_tree(repo, writer, patterns, subtree, &path, removed)?;
            if new != subtree {
                changed = true;
                node.kind = NodeKind::Dir { subtree: new };
            }
        }
        nodes.push(node);
    }
    if !changed {
        return Ok(id);
    }
    writer.add(BlobKind::Tree, Tree { nodes }.encode())
}
