//! `restore`: recreate a snapshot (or part of it) under a target directory. Directories and
//! symlinks are made while walking; file contents are written in parallel, each blob verified
//! against its keyed id before a byte reaches disk; directory metadata is applied last,
//! deepest first, so writing contents does not disturb restored mtimes.

use std::ffi::OsStr;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use filetime::FileTime;
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::format::tree::{Node, NodeKind};
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
    /// Content bytes written.
    pub bytes: u64,
    /// Things that could not be restored exactly (e.g. ownership without root).
    pub warnings: Vec<String>,
}

fn target_err(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Target { path: path.to_path_buf(), source }
}

fn time(ns: i64) -> FileTime {
    FileTime::from_unix_time(ns.div_euclid(1_000_000_000), ns.rem_euclid(1_000_000_000) as u32)
}

struct Plan {
    files: Vec<(PathBuf, Node)>,
    dirs: Vec<(PathBuf, Node)>,
    outcome: RestoreOutcome,
}

fn set_owner(path: &Path, node: &Node, warnings: &mut Vec<String>) {
    if let Err(e) = std::os::unix::fs::lchown(path, Some(node.uid), Some(node.gid)) {
        // Only root may give files away; as another user, keep ours silently unless it
        // actually differed.
        if e.kind() != std::io::ErrorKind::PermissionDenied {
            warnings.push(format!("{}: cannot set owner: {e}", path.display()));
        }
    }
}

fn make_dir(path: &Path) -> Result<()> {
    match fs::create_dir(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && path.is_dir() => Ok(()),
        Err(e) => Err(Error::Target { path: path.to_path_buf(), source: e }),
    }
}

fn plan_node(repo: &Repository, path: PathBuf, node: &Node, plan: &mut Plan, progress: &dyn Progress) -> Result<()> {
    match &node.kind {
        NodeKind::Dir { subtree } => {
            make_dir(&path)?;
            plan.outcome.dirs += 1;
            plan_tree(repo, *subtree, &path, plan, progress)?;
            plan.dirs.push((path, node.clone()));
        }
        NodeKind::File { .. } => plan.files.push((path, node.clone())),
        NodeKind::Symlink { target } => {
            if fs::symlink_metadata(&path).is_ok() {
                fs::remove_file(&path).map_err(target_err(&path))?;
            }
            std::os::unix::fs::symlink(OsStr::from_bytes(target), &path).map_err(target_err(&path))?;
            set_owner(&path, node, &mut plan.outcome.warnings);
            filetime::set_symlink_file_times(&path, time(node.atime_ns), time(node.mtime_ns))
                .map_err(target_err(&path))?;
            plan.outcome.symlinks += 1;
        }
        NodeKind::Fifo | NodeKind::CharDevice { .. } | NodeKind::BlockDevice { .. } | NodeKind::Socket => {
            plan.outcome.warnings.push(format!("{}: special file not restored (not supported yet)", path.display()));
        }
    }
    Ok(())
}

fn plan_tree(repo: &Repository, tree: ChunkId, dir: &Path, plan: &mut Plan, progress: &dyn Progress) -> Result<()> {
    let t = repo.load_tree(&tree)?;
    for node in &t.nodes {
        // Invariant: names were validated when the tree was decoded (no `/`, `.`, `..`), so
        // joining cannot escape the target.
        let path = dir.join(OsStr::from_bytes(&node.name));
        progress.path(&path);
        plan_node(repo, path, node, plan, progress)?;
    }
    Ok(())
}

fn write_file(repo: &Repository, path: &Path, chunks: &[ChunkId], progress: &dyn Progress) -> Result<u64> {
    let mut f = OpenOptions::new().write(true).create(true).truncate(true).open(path).map_err(target_err(path))?;
    let mut written = 0u64;
    for window in chunks.chunks(READ_AHEAD) {
        let blobs: Vec<Vec<u8>> = window.par_iter().map(|id| repo.read_blob(id)).collect::<Result<_>>()?;
        for b in blobs {
            f.write_all(&b).map_err(target_err(path))?;
            written += b.len() as u64;
            progress.bytes(b.len() as u64);
        }
    }
    f.flush().map_err(target_err(path))?;
    Ok(written)
}

fn restore_file(repo: &Repository, path: &Path, node: &Node, progress: &dyn Progress) -> Result<(u64, Vec<String>)> {
    let NodeKind::File { chunks, .. } = &node.kind else {
        return Ok((0, Vec::new()));
    };
    if fs::symlink_metadata(path).is_ok_and(|m| !m.is_file()) {
        fs::remove_file(path).map_err(target_err(path))?;
    }
    let written = match write_file(repo, path, chunks, progress) {
        Ok(n) => n,
        Err(e) => {
            // Never leave a file with wrong or partial content behind.
            let _ = fs::remove_file(path);
            return Err(e);
        }
    };
    if written != node.size {
        let _ = fs::remove_file(path);
        return Err(Error::corrupt(
            format!("file {}", path.display()),
            format!("restored {written} bytes, snapshot says {}", node.size),
        ));
    }
    let mut warnings = Vec::new();
    set_owner(path, node, &mut warnings);
    fs::set_permissions(path, fs::Permissions::from_mode(node.mode & 0o7777)).map_err(target_err(path))?;
    filetime::set_file_times(path, time(node.atime_ns), time(node.mtime_ns)).map_err(target_err(path))?;
    Ok((written, warnings))
}

/// Restores `tree` (a snapshot's root) into `opts.target`.
pub fn restore(
    repo: &Repository,
    tree: ChunkId,
    opts: &RestoreOptions,
    progress: &dyn Progress,
) -> Result<RestoreOutcome> {
    fs::create_dir_all(&opts.target).map_err(target_err(&opts.target))?;
    let mut plan = Plan { files: Vec::new(), dirs: Vec::new(), outcome: RestoreOutcome::default() };
    match resolve(repo, tree, &opts.subpath)? {
        Resolved::Root(id) => plan_tree(repo, id, &opts.target, &mut plan, progress)?,
        Resolved::Node(path, node) => {
            let name = path.rsplit(|&b| b == b'/').next().unwrap_or(&path).to_vec();
            plan_node(repo, opts.target.join(OsStr::from_bytes(&name)), &node, &mut plan, progress)?;
        }
    }
    let total: u64 = plan.files.iter().map(|(_, n)| n.size).sum();
    progress.phase("restore", Some(total));
    let bytes = AtomicU64::new(0);
    let warnings: Vec<Vec<String>> = plan
        .files
        .par_iter()
        .map(|(path, node)| {
            let (n, w) = restore_file(repo, path, node, progress)?;
            bytes.fetch_add(n, Ordering::Relaxed);
            Ok(w)
        })
        .collect::<Result<_>>()?;
    plan.outcome.files = plan.files.len() as u64;
    plan.outcome.bytes = bytes.into_inner();
    plan.outcome.warnings.extend(warnings.into_iter().flatten());
    // Deepest directories were pushed first (post-order), so parents' mtimes are set last.
    for (path, node) in &plan.dirs {
        set_owner(path, node, &mut plan.outcome.warnings);
        fs::set_permissions(path, fs::Permissions::from_mode(node.mode & 0o7777)).map_err(target_err(path))?;
        filetime::set_file_times(path, time(node.atime_ns), time(node.mtime_ns)).map_err(target_err(path))?;
    }
    progress.done();
    Ok(plan.outcome)
}

/// Writes one file's content to `out` (for `dump`-like uses and tests).
pub fn write_content(repo: &Repository, node: &Node, out: &mut dyn Write) -> Result<u64> {
    let NodeKind::File { chunks, .. } = &node.kind else {
        return Err(Error::InvalidInput(format!("{} is not a file", String::from_utf8_lossy(&node.name))));
    };
    let mut n = 0u64;
    for id in chunks {
        let b = repo.read_blob(id)?;
        out.write_all(&b).map_err(|e| Error::Target { path: PathBuf::from("-"), source: e })?;
        n += b.len() as u64;
    }
    Ok(n)
}
