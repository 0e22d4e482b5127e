//! The plan pass of a restore: walks the snapshot's trees and the target's directories side by
//! side. Directories, symlinks and special files are made here; regular files are sorted into
//! those to write and those already right; filters, the overwrite policy and `--delete` are
//! applied here.

use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd};

use rustix::fs::FileType;

use crate::error::{Error, Result};
use rayon::prelude::*;

use crate::format::tree::{Node, NodeKind, Tree};
use crate::hostfs::{self, Special, Stat};
use crate::id::ChunkId;
use crate::trees::{Resolved, resolve};

use super::content::FileJob;
use super::{Overwrite, RestoreFailure, RestoreOutcome, Restorer, is_temp_name};

/// Subdirectories whose trees are read ahead of the walk at once: enough to keep every
/// storage connection busy, few enough that the trees held stay small.
const PREFETCHED_TREES: usize = 64;

/// Files planned and not yet written before the walk stops to write them
/// ([`Restorer::flush`]; `RestoreOptions::flush_files` when set): the plan holds a bounded part
/// of the snapshot's files at a time, so a restore's memory does not grow with the number of
/// files.
const FLUSH_FILES: usize = 20_000;

/// What the plan leaves for the later passes: the files planned since the last flush, the
/// directories and flagged entries of the whole restore.
#[derive(Debug, Default)]
pub(super) struct Plan {
    /// Files whose content is written.
    pub writes: Vec<FileJob>,
    /// Chunks of `writes`.
    pub write_chunks: usize,
    /// Existing files that already hold the right content: metadata only.
    pub keeps: Vec<FileJob>,
    /// Further links: (path, path of the group's first restored member).
    pub links: Vec<(Vec<u8>, Vec<u8>)>,
    /// Files restored whose flags are set last (an immutable file takes no later link).
    pub flagged: Vec<(Vec<u8>, Node)>,
    /// Directories in post-order (children before parents).
    pub dirs: Vec<(Vec<u8>, Node)>,
    /// Counters and warnings so far.
    pub outcome: RestoreOutcome,
    first_of_group: HashMap<u64, Vec<u8>>,
}

impl Plan {
    /// Whether enough files wait to be written (`flush_files`, 0 for the default) that the
    /// walk stops to write them.
    pub fn due(&self, flush_files: usize) -> bool {
        let limit = if flush_files == 0 { FLUSH_FILES } else { flush_files };
        self.writes.len() + self.keeps.len() + self.links.len() >= limit || self.write_chunks >= super::BATCH_CHUNKS
    }
}

/// What to do with a file given what is already at its place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FileDecision {
    /// Write the content.
    Write,
    /// Same size and mtime: keep the content, set the metadata.
    Keep,
    /// Same size, other mtime: compare the content by chunk hashes.
    Compare,
    /// Leave the existing entry alone.
    Leave,
}

/// The overwrite policy as a pure function of the existing entry (`None`: nothing there).
pub(super) fn decide(policy: Overwrite, existing: Option<&Stat>, node: &Node) -> FileDecision {
    let Some(st) = existing else { return FileDecision::Write };
    let is_file = st.file_type() == FileType::RegularFile;
    match policy {
        Overwrite::Never => FileDecision::Leave,
        Overwrite::IfNewer if st.mtime_ns >= node.mtime_ns => FileDecision::Leave,
        Overwrite::IfNewer | Overwrite::Always => FileDecision::Write,
        Overwrite::IfChanged if is_file && st.size == node.size && st.mtime_ns == node.mtime_ns => FileDecision::Keep,
        Overwrite::IfChanged if is_file && st.size == node.size => FileDecision::Compare,
        Overwrite::IfChanged => FileDecision::Write,
    }
}

/// What the plan knows about the directory it is in.
#[derive(Debug, Clone, Copy)]
struct Place {
    /// An ancestor matched the include patterns.
    included: bool,
    /// This restore made the directory, so nothing is in it yet: no entry is in the way, and
    /// none needs a `stat`.
    fresh: bool,
}

impl Place {
    /// The target directory itself (it may hold anything).
    const TARGET: Place = Place { included: false, fresh: false };
}

pub(super) fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(dir.len() + 1 + name.len());
    out.extend_from_slice(dir);
    if !dir.is_empty() {
        out.push(b'/');
    }
    out.extend_from_slice(name);
    out
}

impl Restorer<'_> {
    /// Plans the restore of `tree` (a snapshot root), or of the subpath the options name.
    pub(super) fn plan(&self, tree: ChunkId) -> Result<Plan> {
        let mut plan = Plan::default();
        match resolve(self.repo, tree, &self.opts.subpath)? {
            Resolved::Root(id) => {
                self.plan_tree(self.root.as_fd(), b"", b"", id, Place::TARGET, &mut plan)?;
            }
            Resolved::Node(path, node) => {
                let name = path.rsplit(|&b| b == b'/').next().unwrap_or(&path).to_vec();
                self.plan_node(self.root.as_fd(), name, path, &node, Place::TARGET, &mut plan)?;
            }
        }
        Ok(plan)
    }

    /// Plans the entries of `tree` into the directory `dir` (`rel` below the target, `snap`
    /// in the snapshot). Returns whether anything was selected.
    fn plan_tree(
        &self,
        dir: BorrowedFd<'_>,
        rel: &[u8],
        snap: &[u8],
        tree: ChunkId,
        place: Place,
        plan: &mut Plan,
    ) -> Result<bool> {
        let t = match self.take_tree(&tree) {
            Ok(t) => t,
            // A storage that cannot be reached fails everything after this too, and without
            // the root's tree there is nothing to restore: stop.
            Err(e @ Error::Storage { .. }) => return Err(e),
            Err(e) if rel.is_empty() => return Err(e),
            // A damaged or unindexed tree costs what is below it only: reported, and the
            // rest of the restore goes on.
            Err(e) => {
                let mut failure = RestoreFailure::new(self.display(rel), &e);
                failure.message = format!("the directory's entries cannot be read: {}", failure.message);
                plan.outcome.damaged.push(failure);
                return Ok(true);
            }
        };
        // What a killed restore left in a directory that existed before: its temporary files
        // go (they were never complete), and `--delete` removes what the snapshot lacks.
        let existing = if place.fresh { Vec::new() } else { hostfs::list_dir(dir).map_err(self.err(rel))? };
        self.remove_leftovers(dir, rel, &existing)?;
        let mut any = false;
        // The subdirectories' trees, a window at a time, ahead of the walk.
        let subtrees: Vec<(usize, ChunkId)> = t
            .nodes
            .iter()
            .enumerate()
            .filter_map(|(i, n)| match &n.kind {
                NodeKind::Dir { subtree } => Some((i, *subtree)),
                _ => None,
            })
            .collect();
        let mut fetched = 0;
        for (i, node) in t.nodes.iter().enumerate() {
            if subtrees.get(fetched).is_some_and(|(at, _)| *at <= i) {
                let window: Vec<ChunkId> =
                    subtrees.iter().skip(fetched).take(PREFETCHED_TREES).map(|(_, id)| *id).collect();
                fetched += window.len();
                self.prefetch_trees(&window);
            }
            // Invariant: names were validated when the tree was decoded (no `/`, `.`, `..`), so
            // a joined path cannot escape the target.
            let child = join(rel, &node.name);
            self.progress.path(&self.display(&child));
            any |= self.plan_node(dir, child, join(snap, &node.name), node, place, plan)?;
            if plan.due(self.opts.flush_files) {
                self.flush(plan)?;
            }
        }
        if self.opts.delete {
            for name in existing.into_iter().filter(|n| !is_temp_name(n)) {
                if t.find(&name).is_none() {
                    hostfs::remove_tree_at(dir, &name).map_err(self.err(&join(rel, &name)))?;
                    plan.outcome.deleted += 1;
                }
            }
        }
        Ok(any)
    }

    /// Reads `ids`' trees at once (over as many connections as the storage has), for
    /// [`Restorer::take_tree`] to hand out: the walk waits on one directory at a time, and a
    /// remote storage would make that a round trip per directory.
    fn prefetch_trees(&self, ids: &[ChunkId]) {
        if ids.len() < 2 {
            return;
        }
        let repo = self.repo;
        let loaded: Vec<(ChunkId, Result<Tree>)> =
            repo.with_io_pool(|| ids.par_iter().map(|id| (*id, repo.load_tree(id))).collect());
        let mut trees = self.trees.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        trees.extend(loaded);
    }

    /// A tree [`Restorer::prefetch_trees`] read, else read now.
    fn take_tree(&self, id: &ChunkId) -> Result<Tree> {
        let prefetched = self.trees.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(id);
        prefetched.unwrap_or_else(|| self.repo.load_tree(id))
    }

    /// Plans one entry of the directory `dir`.
    fn plan_node(
        &self,
        dir: BorrowedFd<'_>,
        rel: Vec<u8>,
        snap: Vec<u8>,
        node: &Node,
        place: Place,
        plan: &mut Plan,
    ) -> Result<bool> {
        let is_dir = node.is_dir();
        if self.exclude.as_ref().is_some_and(|p| p.matches_snapshot_path(&snap, is_dir)) {
            return Ok(false);
        }
        let included = place.included || self.include.as_ref().is_none_or(|p| p.matches_snapshot_path(&snap, is_dir));
        let name = hostfs::split_parent(&rel).1.to_vec();
        if let NodeKind::Dir { subtree } = &node.kind {
            let created = hostfs::make_dir_at(dir, &name).map_err(self.err(&rel))?;
            let sub = hostfs::open_dir_at(dir, &name).map_err(self.err(&rel))?;
            let any = self.plan_tree(sub.as_fd(), &rel, &snap, *subtree, Place { included, fresh: created }, plan)?;
            drop(sub);
            if !included && !any {
                // Only walked to look for included entries: leave no trace.
                if created {
                    hostfs::remove_at(dir, &name).map_err(self.err(&rel))?;
                }
                return Ok(false);
            }
            plan.outcome.dirs += 1;
            plan.dirs.push((rel, node.clone()));
            return Ok(true);
        }
        if !included {
            return Ok(false);
        }
        // In a directory this restore made, nothing is in the way: no stat per file.
        let existing = if place.fresh { None } else { hostfs::stat_at(dir, &name).ok() };
        if let Some(group) = node.hardlink_group {
            if let Some(first) = plan.first_of_group.get(&group) {
                if existing.is_some() && self.opts.overwrite == Overwrite::Never {
                    plan.outcome.left += 1;
                } else {
                    plan.links.push((rel, first.clone()));
                }
                return Ok(true);
            }
            plan.first_of_group.insert(group, rel.clone());
        }
        let decision = decide(self.opts.overwrite, existing.as_ref(), node);
        if decision == FileDecision::Leave {
            plan.outcome.left += 1;
            return Ok(true);
        }
        match &node.kind {
            NodeKind::File { .. } => {
                let job = FileJob { rel, node: node.clone() };
                let keep = match decision {
                    FileDecision::Keep => true,
                    // A chunk the index lacks makes it a write, which then reports it.
                    FileDecision::Compare => self.existing_matches(&job.rel, node).unwrap_or(false),
                    FileDecision::Write | FileDecision::Leave => false,
                };
                if keep {
                    plan.keeps.push(job)
                } else {
                    if let NodeKind::File { chunks, .. } = &node.kind {
                        plan.write_chunks += chunks.len();
                    }
                    plan.writes.push(job)
                }
            }
            NodeKind::Symlink { target } => {
                hostfs::make_symlink_at(dir, &name, target).map_err(self.err(&rel))?;
                self.apply_meta_at(dir, &rel, node, &mut plan.outcome.warnings)?;
                plan.outcome.symlinks += 1;
            }
            NodeKind::Fifo | NodeKind::CharDevice { .. } | NodeKind::BlockDevice { .. } => {
                let what = match node.kind {
                    NodeKind::CharDevice { rdev } => Special::CharDevice(rdev),
                    NodeKind::BlockDevice { rdev } => Special::BlockDevice(rdev),
                    _ => Special::Fifo,
                };
                if what != Special::Fifo && !self.root_user {
                    plan.outcome
                        .warnings
                        .push(format!("{}: device node not restored (needs root)", self.display(&rel).display()));
                    return Ok(true);
                }
                hostfs::make_special_at(dir, &name, what, node.mode).map_err(self.err(&rel))?;
                self.apply_meta_at(dir, &rel, node, &mut plan.outcome.warnings)?;
                plan.outcome.specials += 1;
            }
            NodeKind::Socket => plan.outcome.warnings.push(format!(
                "{}: socket not restored (the program that listens on it makes it)",
                self.display(&rel).display()
            )),
            NodeKind::Dir { .. } => {}
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat(kind: u32, size: u64, mtime_ns: i64) -> Stat {
        Stat {
            dev: 1,
            ino: 1,
            mode: kind | 0o644,
            nlink: 1,
            uid: 0,
            gid: 0,
            rdev: 0,
            size,
            blocks: 0,
            atime_ns: 0,
            mtime_ns,
            ctime_ns: 0,
        }
    }

    fn node(size: u64, mtime_ns: i64) -> Node {
        let file = NodeKind::File { chunks: Vec::new(), holes: Vec::new() };
        Node { size, mtime_ns, ..Node::new(b"f".to_vec(), file, 0o100644) }
    }

    #[test]
    fn overwrite_policies() {
        use FileDecision::*;
        let n = node(10, 100);
        let file = |size, mtime| stat(0o100000, size, mtime);
        let dir = stat(0o040000, 10, 100);
        for p in [Overwrite::Always, Overwrite::IfChanged, Overwrite::IfNewer, Overwrite::Never] {
            assert_eq!(decide(p, None, &n), Write, "{p:?}: nothing there");
        }
        assert_eq!(decide(Overwrite::Always, Some(&file(10, 100)), &n), Write);
        assert_eq!(decide(Overwrite::Never, Some(&file(1, 1)), &n), Leave);
        assert_eq!(decide(Overwrite::IfChanged, Some(&file(10, 100)), &n), Keep);
        assert_eq!(decide(Overwrite::IfChanged, Some(&file(10, 99)), &n), Compare);
        assert_eq!(decide(Overwrite::IfChanged, Some(&file(11, 100)), &n), Write);
        assert_eq!(decide(Overwrite::IfChanged, Some(&dir), &n), Write, "a directory in the way");
        assert_eq!(decide(Overwrite::IfNewer, Some(&file(1, 100)), &n), Leave);
        assert_eq!(decide(Overwrite::IfNewer, Some(&file(1, 101)), &n), Leave);
        assert_eq!(decide(Overwrite::IfNewer, Some(&file(10, 99)), &n), Write);
    }
}
