//! `repair snapshots`: rewrite the snapshots that use data the repository no longer has, so
//! what is intact stays restorable. A blob is available when the index names it and its pack
//! exists. A file using an unavailable blob, or a directory whose tree is unavailable, is
//! replaced by an empty file `NAME.cairn-damaged` (never by wrong or partial content); every
//! replacement is listed. The repaired snapshot is written with the tag `repaired` and the
//! old one as parent, then the old one is deleted. Snapshot objects that do not open at all are
//! reported for removal.

use std::collections::{HashMap, HashSet};

use crate::error::{Error, Result};
use crate::format::BlobKind;
use crate::format::tree::{Node, NodeKind, Tree};
use crate::id::{ChunkId, ObjectId, PackId};
use crate::progress::Progress;
use crate::repo::{BlobWriter, Repository};

/// Suffix of the marker that replaces a damaged entry.
pub const DAMAGED_SUFFIX: &[u8] = b".cairn-damaged";

/// One snapshot rewritten.
#[derive(Debug, Clone)]
pub struct RepairedSnapshot {
    /// The damaged snapshot (deleted).
    pub old: ObjectId,
    /// Its repaired replacement.
    pub new: ObjectId,
    /// Paths replaced by markers.
    pub replaced: Vec<String>,
}

/// What `repair snapshots` did.
#[derive(Debug, Clone, Default)]
pub struct RepairSnapshotsOutcome {
    /// Snapshots checked.
    pub snapshots: u64,
    /// Snapshots rewritten.
    pub repaired: Vec<RepairedSnapshot>,
    /// Snapshot objects that are damaged (they do not open, or not as the snapshot their name
    /// says), each with why: nothing in them can be saved, and the caller removes them (through
    /// `forget::remove`, which logs the intent first).
    pub damaged: Vec<(ObjectId, String)>,
    /// Snapshots left alone because this build cannot read them (a newer format), with why.
    pub unsupported: Vec<(ObjectId, String)>,
}

struct Repairer<'a, 'r> {
    repo: &'r Repository,
    packs: HashSet<PackId>,
    writer: &'a BlobWriter<'r>,
    /// Tree id -> its repaired id (the same id when nothing below was damaged).
    done: HashMap<ChunkId, ChunkId>,
}

impl Repairer<'_, '_> {
    fn available(&self, id: &ChunkId) -> Result<bool> {
        Ok(self.repo.index().get(id)?.is_some_and(|loc| self.packs.contains(&loc.pack)))
    }

    fn marker(node: &Node) -> Node {
        let mut name: Vec<u8> = node.name.iter().copied().take(255 - DAMAGED_SUFFIX.len()).collect();
        name.extend_from_slice(DAMAGED_SUFFIX);
        let file = NodeKind::File { chunks: Vec::new(), holes: Vec::new() };
        Node { mtime_ns: node.mtime_ns, uid: node.uid, gid: node.gid, ..Node::new(name, file, 0o100_444) }
    }

    /// The repaired id of tree `id` at `path`; `None` when the tree itself is unavailable.
    fn tree(&mut self, id: ChunkId, path: &str, replaced: &mut Vec<String>) -> Result<Option<ChunkId>> {
        if let Some(done) = self.done.get(&id) {
            return Ok(Some(*done));
        }
        if !self.available(&id)? {
            return Ok(None);
        }
        let tree = match self.repo.load_tree(&id) {
            Ok(t) => t,
            Err(
                crate::error::Error::Corrupt { .. }
                | crate::error::Error::Missing(_)
                | crate::error::Error::NotIndexed(_),
            ) => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut nodes = Vec::with_capacity(tree.nodes.len());
        let mut changed = false;
        for node in tree.nodes {
            let child = format!("{path}/{}", String::from_utf8_lossy(&node.name));
            let broken = match &node.kind {
                NodeKind::Dir { subtree } => match self.tree(*subtree, &child, replaced)? {
                    Some(new) if new == *subtree => false,
                    Some(new) => {
                        changed = true;
                        nodes.push(Node { kind: NodeKind::Dir { subtree: new }, ..node });
                        continue;
                    }
                    None => true,
                },
                NodeKind::File { chunks, .. } => {
                    let mut ok = true;
                    for c in chunks {
                        ok &= self.available(c)?;
                    }
                    !ok
                }
                _ => false,
            };
            if broken {
                changed = true;
                replaced.push(child);
                nodes.push(Self::marker(&node));
            } else {
                nodes.push(node);
            }
        }
        let new = if changed {
            let mut t = Tree { nodes };
            // Marker names may land anywhere; drop a marker that collides with a real entry.
            t.nodes.sort_by(|a, b| a.name.cmp(&b.name));
            t.nodes.dedup_by(|a, b| a.name == b.name);
            self.writer.add(BlobKind::Tree, t.encode())?
        } else {
            id
        };
        self.done.insert(id, new);
        Ok(Some(new))
    }
}

/// Rewrites every snapshot that uses unavailable data (the caller holds the exclusive lock).
/// Each replaced snapshot is deleted through [`Repository::delete_snapshots_logged`], its intent logged by
/// `actor` first: a stop between two never leaves a snapshot gone that the log does not name.
pub fn repair_snapshots(
    repo: &Repository,
    actor: &crate::audit::Actor,
    progress: &dyn Progress,
) -> Result<RepairSnapshotsOutcome> {
    repo.sync_index()?;
    let packs: HashSet<PackId> = repo.list_packs()?.into_iter().map(|(id, _)| id).collect();
    let writer = repo.blob_writer()?;
    let mut r = Repairer { repo, packs, writer: &writer, done: HashMap::new() };
    let mut out = RepairSnapshotsOutcome::default();
    let mut rewrites = Vec::new();
    progress.phase("repair: snapshots", None);
    let (readable, unreadable) = repo.readable_snapshots()?;
    for (id, e) in unreadable {
        match e {
            Error::Corrupt { .. } => out.damaged.push((id, e.to_string())),
            e => out.unsupported.push((id, e.to_string())),
        }
    }
    for (id, snap) in readable {
        out.snapshots += 1;
        let mut replaced = Vec::new();
        let root = r.tree(snap.tree, "", &mut replaced)?;
        match root {
            Some(root) if root == snap.tree => {}
            root => {
                let root = match root {
                    Some(root) => root,
                    // Even the root is gone: an empty root says so.
                    None => {
                        replaced.push("/".into());
                        writer.add(BlobKind::Tree, Tree::default().encode())?
                    }
                };
                rewrites.push((id, snap, root, replaced));
            }
        }
    }
    // Invariant: the new trees are stored and indexed before any snapshot names them.
    writer.finish()?;
    for (old, mut snap, root, replaced) in rewrites {
        snap.tree = root;
        snap.parent = Some(old);
        if !snap.tags.iter().any(|t| t == "repaired") {
            snap.tags.push("repaired".into());
        }
        let (new, _) = repo.save_snapshot(&snap)?;
        repo.delete_snapshots_logged(&[old], actor, "repair snapshots")?;
        out.repaired.push(RepairedSnapshot { old, new, replaced });
    }
    progress.done();
    Ok(out)
}
