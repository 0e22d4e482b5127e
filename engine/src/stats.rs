//! `stats`: how big snapshots are, three ways. `RestoreSize` is what restoring them would
//! write (files and bytes, each snapshot counted whole); `Raw` is what they hold in the
//! repository once deduplicated (every distinct blob, data and trees: plaintext and stored
//! bytes); `Blobs` is their distinct file content. Distinct blobs are collected in an `IdMap`
//! (in memory, then a scratch table on disk), so memory stays bounded however large the
//! repository.

use std::collections::HashMap;

use crate::error::Result;
use crate::format::snapshot::Snapshot;
use crate::format::tree::NodeKind;
use crate::id::{ChunkId, ObjectId};
use crate::repo::Repository;

/// What to count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatsMode {
    /// Files and bytes a restore of each snapshot writes.
    RestoreSize,
    /// Distinct blobs (data and trees), plaintext and stored.
    Raw,
    /// Distinct file-content blobs.
    Blobs,
}

/// The figures; those a mode does not count stay 0.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Snapshots counted.
    pub snapshots: u64,
    /// Regular files (restore size).
    pub files: u64,
    /// Directories (restore size).
    pub dirs: u64,
    /// Bytes of file content a restore writes (restore size).
    pub restore_bytes: u64,
    /// Distinct blobs (raw, blobs).
    pub blobs: u64,
    /// Their plaintext bytes.
    pub raw_bytes: u64,
    /// Their bytes as stored (compressed, padded, sealed).
    pub stored_bytes: u64,
    /// Blobs the snapshots use that the index does not list (see `check`).
    pub missing: u64,
}

/// (files, dirs, bytes) below a tree.
type Sizes = (u64, u64, u64);

/// Counts `snapshots` in `mode`.
pub fn stats(repo: &Repository, snapshots: &[(ObjectId, Snapshot)], mode: StatsMode) -> Result<Stats> {
    let mut out = Stats { snapshots: snapshots.len() as u64, ..Stats::default() };
    match mode {
        StatsMode::RestoreSize => {
            // Trees are content-addressed: a subtree shared by many snapshots is summed once.
            let mut memo: HashMap<ChunkId, Sizes> = HashMap::new();
            for (_, s) in snapshots {
                let (files, dirs, bytes) = tree_sizes(repo, s.tree, &mut memo)?;
                out.files += files;
                out.dirs += dirs;
                out.restore_bytes += bytes;
            }
        }
        StatsMode::Raw | StatsMode::Blobs => {
            let mut distinct = repo.id_map::<0>("stats")?;
            crate::tree_walk::walk_trees(repo, snapshots.iter().map(|(_, s)| s.tree), |tree| {
                if mode == StatsMode::Raw {
                    distinct.put(tree.id.as_bytes(), b"")?;
                }
                for c in &tree.refs.chunks {
                    distinct.put(c.as_bytes(), b"")?;
                }
                Ok(())
            })?;
            let index = repo.index();
            distinct.for_each(|key, _| {
                let id = ChunkId(*key);
                match index.get(&id)? {
                    Some(loc) => {
                        out.blobs += 1;
                        out.raw_bytes += u64::from(loc.raw_length);
                        out.stored_bytes += u64::from(loc.length);
                    }
                    None => out.missing += 1,
                }
                Ok(())
            })?;
        }
    }
    Ok(out)
}

/// Sizes below `root`, filling `memo` for every tree on the way. Iterative (post-order with an
/// explicit stack): trees may be nested thousands deep.
fn tree_sizes(repo: &Repository, root: ChunkId, memo: &mut HashMap<ChunkId, Sizes>) -> Result<Sizes> {
    let mut stack = vec![(root, false)];
    let mut open: HashMap<ChunkId, crate::format::tree::Tree> = HashMap::new();
    while let Some((id, children_done)) = stack.pop() {
        if memo.contains_key(&id) {
            continue;
        }
        if !children_done {
            let tree = repo.load_tree(&id)?;
            stack.push((id, true));
            for node in &tree.nodes {
                if let NodeKind::Dir { subtree } = node.kind
                    && !memo.contains_key(&subtree)
                {
                    stack.push((subtree, false));
                }
            }
            open.insert(id, tree);
            continue;
        }
        let Some(tree) = open.remove(&id) else { continue };
        let mut sizes: Sizes = (0, 0, 0);
        for node in &tree.nodes {
            match node.kind {
                NodeKind::Dir { subtree } => {
                    let (f, d, b) = memo.get(&subtree).copied().unwrap_or_default();
                    sizes = (sizes.0 + f, sizes.1 + d + 1, sizes.2 + b);
                }
                NodeKind::File { .. } => sizes = (sizes.0 + 1, sizes.1, sizes.2 + node.size),
                _ => {}
            }
        }
        memo.insert(id, sizes);
    }
    Ok(memo.get(&root).copied().unwrap_or_default())
}
