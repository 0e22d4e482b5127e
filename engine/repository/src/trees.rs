//! Snapshot trees as a service every operation may use (ls, restore, dump, diff, find, mount):
//! resolve a path inside a snapshot and walk trees depth-first.

use crate::error::{Error, Result};
use crate::format::tree::{Node, NodeKind};
use crate::id::ChunkId;
use crate::repo::Repository;

/// What a path inside a snapshot names.
#[derive(Debug, Clone)]
pub enum Resolved {
    /// The snapshot root.
    Root(ChunkId),
    /// A node, with its path (components joined by `/`, no leading `/`).
    Node(Vec<u8>, Box<Node>),
}

/// Resolves `path` (absolute or relative to the snapshot root, `/`-separated, raw bytes).
pub fn resolve(repo: &Repository, root: ChunkId, path: &[u8]) -> Result<Resolved> {
    let mut current = Resolved::Root(root);
    let mut prefix: Vec<u8> = Vec::new();
    for comp in path.split(|&b| b == b'/').filter(|c| !c.is_empty() && *c != b".") {
        let tree_id = match &current {
            Resolved::Root(id) => *id,
            Resolved::Node(p, node) => match node.kind {
                NodeKind::Dir { subtree } => subtree,
                _ => {
                    return Err(Error::InvalidInput(format!("{} is not a directory", String::from_utf8_lossy(p))));
                }
            },
        };
        let tree = repo.load_tree(&tree_id)?;
        let node =
            tree.find(comp).cloned().ok_or_else(|| Error::NotInSnapshot(String::from_utf8_lossy(path).into_owned()))?;
        if !prefix.is_empty() {
            prefix.push(b'/');
        }
        prefix.extend_from_slice(comp);
        current = Resolved::Node(prefix.clone(), Box::new(node));
    }
    Ok(current)
}

/// Calls `visit(path, node)` for every node below `tree` in depth-first, name order.
/// `prefix` is prepended to paths.
pub fn walk(
    repo: &Repository,
    tree: ChunkId,
    prefix: &[u8],
    visit: &mut dyn FnMut(&[u8], &Node) -> Result<()>,
) -> Result<()> {
    let t = repo.load_tree(&tree)?;
    for node in &t.nodes {
        let mut path = prefix.to_vec();
        if !path.is_empty() {
            path.push(b'/');
        }
        path.extend_from_slice(&node.name);
        visit(&path, node)?;
        if let NodeKind::Dir { subtree } = node.kind {
            walk(repo, subtree, &path, visit)?;
        }
    }
    Ok(())
}
