//! `diff`: what changed between two snapshots, by walking both trees side by side. Subtrees
//! with the same id are identical and skipped unread, so a diff costs in proportion to what
//! changed, not to the size of the snapshots.

use crate::error::Result;
use crate::format::tree::{Node, NodeKind, Tree};
use crate::id::ChunkId;
use crate::repo::Repository;
use crate::trees::walk;

/// How an entry changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Only in the second snapshot.
    Added,
    /// Only in the first snapshot.
    Removed,
    /// In both, with another kind (a file became a directory, say).
    TypeChanged,
    /// In both: content (file bytes, symlink target, device number) differs, and maybe
    /// metadata too.
    Modified,
    /// In both: same content, other metadata (mode, owner, mtime, xattrs, flags).
    MetadataOnly,
}

/// One difference.
#[derive(Debug, Clone)]
pub struct DiffEntry {
    /// Path in the snapshots (raw bytes, `/`-separated, no leading `/`).
    pub path: Vec<u8>,
    /// What changed.
    pub change: Change,
    /// The entry in the first snapshot.
    pub old: Option<Node>,
    /// The entry in the second snapshot.
    pub new: Option<Node>,
}

fn same_metadata(a: &Node, b: &Node) -> bool {
    a.mode == b.mode
        && a.uid == b.uid
        && a.gid == b.gid
        && a.user == b.user
        && a.group == b.group
        && a.mtime_ns == b.mtime_ns
        && a.xattrs == b.xattrs
        && a.flags == b.flags
}

fn same_content(a: &Node, b: &Node) -> bool {
    match (&a.kind, &b.kind) {
        (NodeKind::File { chunks: ca, holes: ha }, NodeKind::File { chunks: cb, holes: hb }) => {
            a.size == b.size && ca == cb && ha == hb
        }
        (NodeKind::Dir { .. }, NodeKind::Dir { .. }) => true,
        (x, y) => x == y,
    }
}

fn same_kind(a: &Node, b: &Node) -> bool {
    std::mem::discriminant(&a.kind) == std::mem::discriminant(&b.kind)
}

fn join(prefix: &[u8], name: &[u8]) -> Vec<u8> {
    let mut p = prefix.to_vec();
    if !p.is_empty() {
        p.push(b'/');
    }
    p.extend_from_slice(name);
    p
}

fn one_sided(path: Vec<u8>, node: &Node, change: Change) -> DiffEntry {
    let (old, new) = if change == Change::Removed { (Some(node.clone()), None) } else { (None, Some(node.clone())) };
    DiffEntry { path, change, old, new }
}

/// Reports everything below `node` (at `path`) as `change` (`Added` or `Removed`).
fn report_below(
    repo: &Repository,
    path: &[u8],
    node: &Node,
    change: Change,
    visit: &mut dyn FnMut(DiffEntry) -> Result<()>,
) -> Result<()> {
    if let NodeKind::Dir { subtree } = node.kind {
        walk(repo, subtree, path, &mut |p, n| visit(one_sided(p.to_vec(), n, change)))?;
    }
    Ok(())
}

/// Reports `node` (at `path`) and everything below it as `change`.
fn report_all(
    repo: &Repository,
    path: Vec<u8>,
    node: &Node,
    change: Change,
    visit: &mut dyn FnMut(DiffEntry) -> Result<()>,
) -> Result<()> {
    visit(one_sided(path.clone(), node, change))?;
    report_below(repo, &path, node, change, visit)
}

/// Calls `visit` for every difference between trees `a` and `b`, in path order.
pub fn diff(repo: &Repository, a: ChunkId, b: ChunkId, visit: &mut dyn FnMut(DiffEntry) -> Result<()>) -> Result<()> {
    diff_trees(repo, a, b, b"", visit)
}

fn diff_trees(
    repo: &Repository,
    a: ChunkId,
    b: ChunkId,
    prefix: &[u8],
    visit: &mut dyn FnMut(DiffEntry) -> Result<()>,
) -> Result<()> {
    if a == b {
        return Ok(());
    }
    let (ta, tb): (Tree, Tree) = (repo.load_tree(&a)?, repo.load_tree(&b)?);
    let (mut ia, mut ib) = (ta.nodes.iter().peekable(), tb.nodes.iter().peekable());
    loop {
        let order = match (ia.peek(), ib.peek()) {
            (None, None) => return Ok(()),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (Some(x), Some(y)) => x.name.cmp(&y.name),
        };
        match order {
            std::cmp::Ordering::Less => {
                if let Some(x) = ia.next() {
                    report_all(repo, join(prefix, &x.name), x, Change::Removed, visit)?;
                }
            }
            std::cmp::Ordering::Greater => {
                if let Some(y) = ib.next() {
                    report_all(repo, join(prefix, &y.name), y, Change::Added, visit)?;
                }
            }
            std::cmp::Ordering::Equal => {
                let (Some(x), Some(y)) = (ia.next(), ib.next()) else { return Ok(()) };
                let path = join(prefix, &x.name);
                if !same_kind(x, y) {
                    let entry =
                        DiffEntry { path, change: Change::TypeChanged, old: Some(x.clone()), new: Some(y.clone()) };
                    let path = entry.path.clone();
                    visit(entry)?;
                    report_below(repo, &path, x, Change::Removed, visit)?;
                    report_below(repo, &path, y, Change::Added, visit)?;
                    continue;
                }
                let change = if !same_content(x, y) {
                    Some(Change::Modified)
                } else if !same_metadata(x, y) {
                    Some(Change::MetadataOnly)
                } else {
                    None
                };
                if let Some(change) = change {
                    visit(DiffEntry { path: path.clone(), change, old: Some(x.clone()), new: Some(y.clone()) })?;
                }
                if let (NodeKind::Dir { subtree: sa }, NodeKind::Dir { subtree: sb }) = (&x.kind, &y.kind) {
                    diff_trees(repo, *sa, *sb, &path, visit)?;
                }
            }
        }
    }
}
