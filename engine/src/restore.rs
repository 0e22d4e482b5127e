//! `restore`: recreate a snapshot (or part of it) under a target directory.
//!
//! Three passes. The plan walks the trees through open directory handles, making directories,
//! symlinks and special files as it goes and collecting regular files. File contents are then
//! written in parallel, each blob verified against its keyed id before a byte reaches disk
//! (holes of sparse files are skipped, not written). Last, further links of hardlinked inodes
//! are made and directory metadata is applied deepest first, so writing contents does not
//! disturb restored directory mtimes and a directory's default ACL does not leak into entries
//! restored with their own.
//!
//! Every path below the target is reached with `openat` in pieces (`hostfs`), so paths longer
//! than PATH_MAX restore too.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::format::tree::{Node, NodeKind};
use crate::hostfs::{self, OwnerNames, Special};
use crate::id::ChunkId;
use crate::ls::{Resolved, resolve};
use crate::progress::Progress;
use crate::repo::Repository;

/// Blobs fetched ahead, in parallel, within one file.
const READ_AHEAD: usize = 8;

/// Where and what to restore.
#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    /// Target directory (created if missing).
    pub target: PathBuf,
    /// Path inside the snapshot to restore (raw bytes, `/`-separated); all when empty.
    pub subpath: Vec<u8>,
    /// Use the recorded uid/gid even where the recorded user or group name exists here with
    /// another id (by default owners are mapped by name, as tar does).
    pub numeric_owner: bool,
    /// Restore inode flags (immutable, append-only, ...), which may need root.
    pub restore_flags: bool,
}

/// What a restore did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestoreOutcome {
    /// Regular files written.
    pub files: u64,
    /// Directories made.
    pub dirs: u64,
    /// Symlinks made.
    pub symlinks: u64,
    /// FIFOs and device nodes made.
    pub specials: u64,
    /// Further links made to hardlinked inodes.
    pub hardlinks: u64,
    /// Content bytes written.
    pub bytes: u64,
    /// Things that could not be restored exactly (e.g. devices or ownership without root).
    pub warnings: Vec<String>,
}

fn display(target: &Path, rel: &[u8]) -> PathBuf {
    target.join(OsStr::from_bytes(rel))
}

fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(dir.len() + 1 + name.len());
    out.extend_from_slice(dir);
    if !dir.is_empty() {
        out.push(b'/');
    }
    out.extend_from_slice(name);
    out
}

/// Runs a restore: owns the target handle and what the passes share.
struct Restorer<'a> {
    repo: &'a Repository,
    opts: &'a RestoreOptions,
    progress: &'a dyn Progress,
    root: OwnedFd,
    owners: OwnerNames,
    root_user: bool,
}

/// What the plan pass leaves for the later passes.
#[derive(Default)]
struct Plan {
    files: Vec<(Vec<u8>, Node)>,
    /// Further links: (path, path of the group's first restored member).
    links: Vec<(Vec<u8>, Vec<u8>)>,
    first_of_group: HashMap<u64, Vec<u8>>,
    /// Directories in post-order (children before parents).
    dirs: Vec<(Vec<u8>, Node)>,
    outcome: RestoreOutcome,
}

impl Restorer<'_> {
    fn err(&self, rel: &[u8]) -> impl FnOnce(std::io::Error) -> Error + use<'_> {
        let path = display(&self.opts.target, rel);
        move |source| Error::Target { path, source }
    }

    /// The parent directory of `rel`, opened, and the last component.
    fn parent<'r>(&self, rel: &'r [u8]) -> Result<(OwnedFd, &'r [u8])> {
        let (dir, name) = hostfs::split_parent(rel);
        let fd = hostfs::open_dir_path(self.root.as_fd(), dir).map_err(self.err(rel))?;
        Ok((fd, name))
    }

    /// The uid/gid to give `node`: by recorded name where it exists here, else the ids.
    fn owner_of(&self, node: &Node) -> (u32, u32) {
        if self.opts.numeric_owner {
            return (node.uid, node.gid);
        }
        let uid = node.user.as_deref().and_then(|n| self.owners.uid_of(n)).unwrap_or(node.uid);
        let gid = node.group.as_deref().and_then(|n| self.owners.gid_of(n)).unwrap_or(node.gid);
        (uid, gid)
    }

    /// Reports a metadata failure; permission failures of a non-root user are expected for
    /// ownership and are not worth a warning each.
    fn meta_warning(&self, warnings: &mut Vec<String>, rel: &[u8], what: &str, e: std::io::Error, quiet_eperm: bool) {
        if quiet_eperm && !self.root_user && e.kind() == std::io::ErrorKind::PermissionDenied {
            return;
        }
        warnings.push(format!("{}: cannot set {what}: {e}", display(&self.opts.target, rel).display()));
    }

    /// Owner, mode, xattrs and times of a non-file entry, through its parent directory.
    fn apply_meta_at(&self, dir: BorrowedFd<'_>, rel: &[u8], node: &Node, warnings: &mut Vec<String>) -> Result<()> {
        let name = hostfs::split_parent(rel).1;
        let (uid, gid) = self.owner_of(node);
        if let Err(e) = hostfs::set_owner_at(dir, name, uid, gid) {
            self.meta_warning(warnings, rel, "owner", e, true);
        }
        // Invariant: chmod after chown, which clears setuid/setgid bits.
        if !matches!(node.kind, NodeKind::Symlink { .. }) {
            hostfs::set_mode_at(dir, name, node.mode).map_err(self.err(rel))?;
        }
        for (key, value) in &node.xattrs {
            if let Err(e) = hostfs::set_xattr_at(dir, name, key, value) {
                self.meta_warning(warnings, rel, &format!("xattr {}", String::from_utf8_lossy(key)), e, false);
            }
        }
        hostfs::set_times_at(dir, name, node.atime_ns, node.mtime_ns).map_err(self.err(rel))?;
        Ok(())
    }

    fn plan_node(&self, dir: BorrowedFd<'_>, rel: Vec<u8>, node: &Node, plan: &mut Plan) -> Result<()> {
        let name = hostfs::split_parent(&rel).1.to_vec();
        if let Some(group) = node.hardlink_group.filter(|_| !node.is_dir()) {
            if let Some(first) = plan.first_of_group.get(&group) {
                plan.links.push((rel, first.clone()));
                return Ok(());
            }
            plan.first_of_group.insert(group, rel.clone());
        }
        match &node.kind {
            NodeKind::Dir { subtree } => {
                hostfs::make_dir_at(dir, &name).map_err(self.err(&rel))?;
                let sub = hostfs::open_dir_at(dir, &name).map_err(self.err(&rel))?;
                plan.outcome.dirs += 1;
                self.plan_tree(sub.as_fd(), &rel, *subtree, plan)?;
                plan.dirs.push((rel, node.clone()));
            }
            NodeKind::File { .. } => plan.files.push((rel, node.clone())),
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
                    plan.outcome.warnings.push(format!(
                        "{}: device node not restored (needs root)",
                        display(&self.opts.target, &rel).display()
                    ));
                    return Ok(());
                }
                hostfs::make_special_at(dir, &name, what, node.mode).map_err(self.err(&rel))?;
                self.apply_meta_at(dir, &rel, node, &mut plan.outcome.warnings)?;
                plan.outcome.specials += 1;
            }
            NodeKind::Socket => plan.outcome.warnings.push(format!(
                "{}: socket not restored (the program that listens on it makes it)",
                display(&self.opts.target, &rel).display()
            )),
        }
        Ok(())
    }

    fn plan_tree(&self, dir: BorrowedFd<'_>, rel: &[u8], tree: ChunkId, plan: &mut Plan) -> Result<()> {
        let t = self.repo.load_tree(&tree)?;
        for node in &t.nodes {
            // Invariant: names were validated when the tree was decoded (no `/`, `.`, `..`), so
            // a joined path cannot escape the target.
            let child = join(rel, &node.name);
            self.progress.path(&display(&self.opts.target, &child));
            self.plan_node(dir, child, node, plan)?;
        }
        Ok(())
    }

    /// Writes one file: content, then owner, mode, xattrs, times and (optionally) flags. A file
    /// that cannot be written completely is removed, never left with wrong bytes.
    fn restore_file(&self, rel: &[u8], node: &Node) -> Result<(u64, Vec<String>)> {
        let NodeKind::File { chunks, holes } = &node.kind else {
            return Ok((0, Vec::new()));
        };
        let (dir, name) = self.parent(rel)?;
        let file = hostfs::create_file_at(dir.as_fd(), name).map_err(self.err(rel))?;
        let written = match self.write_content(&file, rel, node.size, chunks, holes) {
            Ok(n) => n,
            Err(e) => {
                drop(file);
                let _ = hostfs::remove_at(dir.as_fd(), name);
                return Err(e);
            }
        };
        let mut warnings = Vec::new();
        let (uid, gid) = self.owner_of(node);
        if let Err(e) = hostfs::set_owner_fd(&file, uid, gid) {
            self.meta_warning(&mut warnings, rel, "owner", e, true);
        }
        hostfs::set_mode_fd(&file, node.mode).map_err(self.err(rel))?;
        // After chown and the content: both clear security.capability.
        for (key, value) in &node.xattrs {
            if let Err(e) = hostfs::set_xattr_fd(&file, key, value) {
                self.meta_warning(&mut warnings, rel, &format!("xattr {}", String::from_utf8_lossy(key)), e, false);
            }
        }
        hostfs::set_times_fd(&file, node.atime_ns, node.mtime_ns).map_err(self.err(rel))?;
        if self.opts.restore_flags
            && node.flags != 0
            && let Err(e) = hostfs::set_inode_flags(&file, node.flags)
        {
            self.meta_warning(&mut warnings, rel, "inode flags", e, false);
        }
        Ok((written, warnings))
    }

    /// Writes the chunks' bytes into the data extents the holes leave, then sets the size; the
    /// holes are never written, so a sparse file stays sparse.
    fn write_content(
        &self,
        file: &File,
        rel: &[u8],
        size: u64,
        chunks: &[ChunkId],
        holes: &[(u64, u64)],
    ) -> Result<u64> {
        let object = || format!("file {}", display(&self.opts.target, rel).display());
        let extents = data_extents_of(holes, size).ok_or_else(|| Error::corrupt(object(), "invalid hole list"))?;
        let mut extents = extents.into_iter();
        let mut current: Option<(u64, u64)> = None;
        let mut written = 0u64;
        for window in chunks.chunks(READ_AHEAD) {
            let blobs: Vec<Vec<u8>> = window.par_iter().map(|id| self.repo.read_blob(id)).collect::<Result<_>>()?;
            for blob in blobs {
                let mut rest: &[u8] = &blob;
                while !rest.is_empty() {
                    let (off, left) = match current {
                        Some((off, left)) if left > 0 => (off, left),
                        _ => match extents.next() {
                            Some(e) => {
                                current = Some(e);
                                continue;
                            }
                            None => {
                                return Err(Error::corrupt(
                                    object(),
                                    format!("content is longer than the {size} bytes recorded"),
                                ));
                            }
                        },
                    };
                    let n = rest.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                    let (head, tail) = rest.split_at(n);
                    file.write_all_at(head, off).map_err(self.err(rel))?;
                    current = Some((off + n as u64, left - n as u64));
                    rest = tail;
                    written += n as u64;
                }
                self.progress.bytes(blob.len() as u64);
            }
        }
        let missing: u64 = current.map_or(0, |c| c.1) + extents.map(|e| e.1).sum::<u64>();
        if missing > 0 {
            return Err(Error::corrupt(object(), format!("content is {missing} bytes shorter than recorded")));
        }
        file.set_len(size).map_err(self.err(rel))?;
        Ok(written)
    }

    fn make_link(&self, rel: &[u8], first: &[u8]) -> Result<()> {
        let (new_dir, new_name) = self.parent(rel)?;
        let (old_dir, old_name) = self.parent(first)?;
        hostfs::link_at(old_dir.as_fd(), old_name, new_dir.as_fd(), new_name).map_err(self.err(rel))
    }

    fn finish_dir(&self, rel: &[u8], node: &Node, warnings: &mut Vec<String>) -> Result<()> {
        if rel.is_empty() {
            return Ok(());
        }
        let (dir, _) = self.parent(rel)?;
        self.apply_meta_at(dir.as_fd(), rel, node, warnings)?;
        if self.opts.restore_flags && node.flags != 0 {
            let name = hostfs::split_parent(rel).1;
            let fd = hostfs::open_dir_at(dir.as_fd(), name).map_err(self.err(rel))?;
            if let Err(e) = hostfs::set_inode_flags(&fd, node.flags) {
                self.meta_warning(warnings, rel, "inode flags", e, false);
            }
        }
        Ok(())
    }
}

/// The data extents `(offset, length)` of a file of `size` bytes with `holes`; `None` when the
/// holes are out of order, overlap or pass the end (a damaged or hostile tree).
fn data_extents_of(holes: &[(u64, u64)], size: u64) -> Option<Vec<(u64, u64)>> {
    let mut out = Vec::with_capacity(holes.len() + 1);
    let mut pos = 0u64;
    for &(off, len) in holes {
        let end = off.checked_add(len)?;
        if off < pos || end > size || len == 0 {
            return None;
        }
        if off > pos {
            out.push((pos, off - pos));
        }
        pos = end;
    }
    if size > pos {
        out.push((pos, size - pos));
    }
    Some(out)
}

/// Restores `tree` (a snapshot's root) into `opts.target`.
pub fn restore(
    repo: &Repository,
    tree: ChunkId,
    opts: &RestoreOptions,
    progress: &dyn Progress,
) -> Result<RestoreOutcome> {
    let target_err = |source| Error::Target { path: opts.target.clone(), source };
    std::fs::create_dir_all(&opts.target).map_err(target_err)?;
    let root = hostfs::open_dir(&opts.target).map_err(target_err)?;
    let r = Restorer { repo, opts, progress, root, owners: OwnerNames::default(), root_user: hostfs::is_root() };
    let mut plan = Plan::default();
    match resolve(repo, tree, &opts.subpath)? {
        Resolved::Root(id) => r.plan_tree(r.root.as_fd(), b"", id, &mut plan)?,
        Resolved::Node(path, node) => {
            let name = path.rsplit(|&b| b == b'/').next().unwrap_or(&path).to_vec();
            r.plan_node(r.root.as_fd(), name, &node, &mut plan)?;
        }
    }
    let total: u64 = plan.files.iter().map(|(_, n)| n.size).sum();
    progress.phase("restore", Some(total));
    let bytes = AtomicU64::new(0);
    let warnings: Vec<Vec<String>> = plan
        .files
        .par_iter()
        .map(|(rel, node)| {
            let (n, w) = r.restore_file(rel, node)?;
            bytes.fetch_add(n, Ordering::Relaxed);
            Ok(w)
        })
        .collect::<Result<_>>()?;
    plan.outcome.files = plan.files.len() as u64;
    plan.outcome.bytes = bytes.into_inner();
    plan.outcome.warnings.extend(warnings.into_iter().flatten());
    for (rel, first) in &plan.links {
        r.make_link(rel, first)?;
        plan.outcome.hardlinks += 1;
    }
    // Deepest directories were pushed first (post-order), so parents' mtimes are set last.
    let mut warnings = Vec::new();
    for (rel, node) in &plan.dirs {
        r.finish_dir(rel, node, &mut warnings)?;
    }
    plan.outcome.warnings.extend(warnings);
    progress.done();
    Ok(plan.outcome)
}

/// Writes one file's content to `out` (for `dump`-like uses and tests); holes come out as zeros.
pub fn write_content(repo: &Repository, node: &Node, out: &mut dyn Write) -> Result<u64> {
    let NodeKind::File { chunks, holes } = &node.kind else {
        return Err(Error::InvalidInput(format!("{} is not a file", String::from_utf8_lossy(&node.name))));
    };
    let object = || format!("file {}", String::from_utf8_lossy(&node.name));
    let extents = data_extents_of(holes, node.size).ok_or_else(|| Error::corrupt(object(), "invalid hole list"))?;
    let out_err = |e| Error::Target { path: PathBuf::from("-"), source: e };
    let zeros = vec![0u8; 64 * 1024];
    let mut pos = 0u64;
    let write_zeros = |mut n: u64, out: &mut dyn Write| -> Result<()> {
        while n > 0 {
            let k = n.min(zeros.len() as u64) as usize;
            out.write_all(zeros.get(..k).unwrap_or_default()).map_err(out_err)?;
            n -= k as u64;
        }
        Ok(())
    };
    let mut extents = extents.into_iter().peekable();
    let mut in_extent = 0u64;
    for id in chunks {
        let b = repo.read_blob(id)?;
        let mut rest: &[u8] = &b;
        while !rest.is_empty() {
            if in_extent == 0 {
                let Some((off, len)) = extents.next() else {
                    return Err(Error::corrupt(object(), "content is longer than recorded"));
                };
                write_zeros(off.saturating_sub(pos), out)?;
                pos = off;
                in_extent = len;
            }
            let n = rest.len().min(usize::try_from(in_extent).unwrap_or(usize::MAX));
            let (head, tail) = rest.split_at(n);
            out.write_all(head).map_err(out_err)?;
            pos += n as u64;
            in_extent -= n as u64;
            rest = tail;
        }
    }
    if in_extent > 0 || extents.peek().is_some() {
        return Err(Error::corrupt(object(), "content is shorter than recorded"));
    }
    write_zeros(node.size.saturating_sub(pos), out)?;
    Ok(node.size)
}

#[cfg(test)]
mod tests {
    use super::data_extents_of;

    #[test]
    fn extents_are_the_complement_of_valid_holes_only() {
        assert_eq!(data_extents_of(&[], 5), Some(vec![(0, 5)]));
        assert_eq!(data_extents_of(&[(0, 5)], 5), Some(vec![]));
        assert_eq!(data_extents_of(&[(2, 1), (4, 2)], 8), Some(vec![(0, 2), (3, 1), (6, 2)]));
        assert_eq!(data_extents_of(&[(4, 2), (2, 1)], 8), None, "out of order");
        assert_eq!(data_extents_of(&[(2, 3), (4, 2)], 8), None, "overlapping");
        assert_eq!(data_extents_of(&[(6, 3)], 8), None, "past the end");
        assert_eq!(data_extents_of(&[(u64::MAX, 2)], 8), None, "overflow");
    }
}
