//! `restore`: recreate a snapshot (or part of it) under a target directory.
//!
//! Passes: the plan (`plan`) walks the trees through open directory handles, making
//! directories, symlinks and special files as it goes, applying include/exclude filters and
//! the overwrite policy, and collecting the regular files to write. Their contents are then
//! written pack by pack (`content`), each blob verified against its keyed id before a byte
//! reaches disk; holes of sparse files are never written. Last come file metadata, further
//! links of hardlinked inodes, and directory metadata deepest first (so writing contents does
//! not disturb restored directory mtimes, and a directory's default ACL does not leak into
//! entries restored with their own), then `--verify`.
//!
//! Each file is written under a temporary name in its directory ([`temp_name`]) and renamed
//! into place once complete, with its metadata: a restore killed at any point leaves no file
//! with wrong content under a final name, and its rerun removes the temporary files. A file
//! whose blobs are missing or damaged, or a directory whose tree cannot be read, is reported
//! in [`RestoreOutcome::damaged`]; everything else is still restored. Every path below the
//! target is reached with `openat` in pieces (`hostfs`), so paths longer than PATH_MAX
//! restore too.

mod content;
mod plan;
mod recycle;
mod verify;

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::format::tree::{Node, NodeKind};
use crate::hostfs::{self, OwnerNames};
use crate::id::ChunkId;
use crate::index::BlobLocation;
use crate::pattern::PathPatterns;
use crate::progress::Progress;
use crate::repo::Repository;

use content::FileJob;

/// Files written per content batch: bounds the memory of the pack map (a few hundred bytes
/// per chunk reference) whatever the size of the restore.
const BATCH_CHUNKS: usize = 100_000;

/// Rounds of trying other copies of blobs whose copy failed to read.
const MAX_COPY_PASSES: usize = 3;

/// What to do with an entry that already exists in the target.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Overwrite {
    /// Always replace it.
    Always,
    /// Replace it unless it already is what the snapshot holds: same size and mtime, or the
    /// same content by chunk hashes (so an interrupted restore resumes without rewriting).
    #[default]
    IfChanged,
    /// Replace it only if the snapshot's copy is newer (by mtime).
    IfNewer,
    /// Never touch it.
    Never,
}

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
    /// Restore only paths matching these gitignore-style patterns (and what is below them);
    /// matched against the path in the snapshot, e.g. `/home/ann/docs`.
    pub include: Vec<String>,
    /// Leave out paths matching these patterns.
    pub exclude: Vec<String>,
    /// What to do with entries that already exist.
    pub overwrite: Overwrite,
    /// Remove entries of restored directories that the snapshot does not have.
    pub delete: bool,
    /// Read every written file back and check it against its chunk ids.
    pub verify: bool,
    /// Files the walk plans before it stops to write them (0: the default, 20,000): what
    /// bounds a restore's memory however many files the snapshot holds.
    pub flush_files: usize,
}

/// A file (or a directory's contents) that could not be restored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreFailure {
    /// Where it would have gone.
    pub path: PathBuf,
    /// Why (names the damaged object).
    pub message: String,
    /// Whether a blob it needs is not in the index: `cairn check` and `cairn repair index`
    /// may bring it back (the blob can still sit in a pack).
    pub not_indexed: bool,
}

impl RestoreFailure {
    fn new(path: PathBuf, e: &Error) -> Self {
        RestoreFailure { path, message: e.to_string(), not_indexed: not_indexed(e) }
    }
}

/// What a restore did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestoreOutcome {
    /// Regular files written.
    pub files: u64,
    /// Existing files that already had the right content (only their metadata was set).
    pub files_unchanged: u64,
    /// Existing entries left as they were (`--overwrite never` / `if-newer`).
    pub left: u64,
    /// Directories restored.
    pub dirs: u64,
    /// Symlinks made.
    pub symlinks: u64,
    /// FIFOs and device nodes made.
    pub specials: u64,
    /// Further links made to hardlinked inodes.
    pub hardlinks: u64,
    /// Entries removed by `--delete`.
    pub deleted: u64,
    /// Content bytes written.
    pub bytes: u64,
    /// Files read back and found correct (`--verify`).
    pub verified: u64,
    /// Files that could not be restored (missing or damaged data, failed verification), and
    /// directories whose entries could not be read; none of them is left behind with wrong
    /// content (a file never reaches its final name unless complete).
    pub damaged: Vec<RestoreFailure>,
    /// Things that could not be restored exactly (e.g. devices or ownership without root).
    pub warnings: Vec<String>,
}

/// Prefix of the temporary names files are written under.
const TEMP_PREFIX: &[u8] = b".cairn-restore-";

/// The temporary name a file called `name` is written under in its directory, until it is
/// complete and renamed into place: the prefix and 16 hex digits of a hash of `name`, so it
/// fits any name length and a rerun reuses it.
pub(super) fn temp_name(name: &[u8]) -> Vec<u8> {
    let hash = blake3::hash(name);
    let mut out = TEMP_PREFIX.to_vec();
    out.extend_from_slice(hex::encode(hash.as_bytes().get(..8).unwrap_or_default()).as_bytes());
    out
}

/// Whether `name` is one of [`temp_name`]'s names (left behind by a restore that was killed).
fn is_temp_name(name: &[u8]) -> bool {
    name.strip_prefix(TEMP_PREFIX)
        .is_some_and(|rest| rest.len() == 16 && rest.iter().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b)))
}

/// Whether `e` says a blob is not in the index (which `cairn repair index` may mend).
fn not_indexed(e: &Error) -> bool {
    matches!(e, Error::NotIndexed(_))
}

fn display(target: &Path, rel: &[u8]) -> PathBuf {
    target.join(OsStr::from_bytes(rel))
}

/// Runs a restore: the target handle and what the passes share.
pub(super) struct Restorer<'a> {
    repo: &'a Repository,
    opts: &'a RestoreOptions,
    progress: &'a dyn Progress,
    root: OwnedFd,
    owners: OwnerNames,
    root_user: bool,
    include: Option<PathPatterns>,
    exclude: Option<PathPatterns>,
    /// Trees read ahead of the walk (`plan::prefetch_trees`), until it takes them.
    trees: std::sync::Mutex<HashMap<ChunkId, Result<crate::format::tree::Tree>>>,
}

impl Restorer<'_> {
    fn err(&self, rel: &[u8]) -> impl FnOnce(std::io::Error) -> Error + use<'_> {
        let path = display(&self.opts.target, rel);
        move |source| Error::Target { path, source }
    }

    fn display(&self, rel: &[u8]) -> PathBuf {
        display(&self.opts.target, rel)
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

    /// Reports a metadata failure; a non-root user cannot give files away, which is expected
    /// and not worth a warning each.
    fn meta_warning(&self, warnings: &mut Vec<String>, rel: &[u8], what: &str, e: std::io::Error, quiet_eperm: bool) {
        if quiet_eperm && !self.root_user && e.kind() == std::io::ErrorKind::PermissionDenied {
            return;
        }
        warnings.push(format!("{}: cannot set {what}: {e}", self.display(rel).display()));
    }

    /// Owner, mode, xattrs and times of the entry `rel`, whose parent is open as `dir`. Order
    /// matters: chmod after chown (which clears setuid bits), xattrs after both (chown and
    /// writes clear security.capability). Inode flags come in a last pass of their own
    /// ([`Restorer::apply_flags`]).
    fn apply_meta_at(&self, dir: BorrowedFd<'_>, rel: &[u8], node: &Node, warnings: &mut Vec<String>) -> Result<()> {
        self.apply_meta_named(dir, hostfs::split_parent(rel).1, rel, node, warnings)
    }

    /// [`Restorer::apply_meta_at`] on the entry `name` of `dir`, which becomes `rel` (a file
    /// still under its temporary name).
    fn apply_meta_named(
        &self,
        dir: BorrowedFd<'_>,
        name: &[u8],
        rel: &[u8],
        node: &Node,
        warnings: &mut Vec<String>,
    ) -> Result<()> {
        let (uid, gid) = self.owner_of(node);
        if let Err(e) = hostfs::set_owner_at(dir, name, uid, gid) {
            self.meta_warning(warnings, rel, "owner", e, true);
        }
        let symlink = matches!(node.kind, NodeKind::Symlink { .. });
        if !symlink {
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

    /// Sets the inode flags of a file or directory. Runs after everything else: an immutable
    /// file cannot be linked to, an append-only directory takes no new entries.
    fn apply_flags(&self, rel: &[u8], node: &Node, warnings: &mut Vec<String>) {
        let opened = self.parent(rel).map_err(|e| std::io::Error::other(e.to_string())).and_then(|(dir, _)| {
            let name = hostfs::split_parent(rel).1;
            match node.kind {
                NodeKind::Dir { .. } => hostfs::open_dir_at(dir.as_fd(), name),
                _ => hostfs::open_file_at(dir.as_fd(), name).map(Into::into),
            }
        });
        if let Err(e) = opened.and_then(|fd| hostfs::set_inode_flags(&fd, node.flags)) {
            self.meta_warning(warnings, rel, "inode flags", e, false);
        }
    }

    /// [`Restorer::apply_meta_at`] through the entry's path.
    fn apply_meta(&self, rel: &[u8], node: &Node, warnings: &mut Vec<String>) -> Result<()> {
        let (dir, _) = self.parent(rel)?;
        self.apply_meta_at(dir.as_fd(), rel, node, warnings)
    }

    /// Whether the existing file at `rel` already holds `node`'s content.
    fn existing_matches(&self, rel: &[u8], node: &Node) -> Result<bool> {
        let (dir, name) = self.parent(rel)?;
        match hostfs::open_file_at(dir.as_fd(), name) {
            Ok(f) => verify::content_matches(self.repo, &f, node),
            Err(_) => Ok(false),
        }
    }

    /// Writes again the files of `batch` that failed only for want of a readable blob copy,
    /// from other copies of those blobs where the index segments list some (a blob stored
    /// twice by backups that ran at once). Returns the failures left.
    fn try_other_copies(
        &self,
        batch: &[FileJob],
        mut written: content::Written,
        outcome: &mut RestoreOutcome,
    ) -> Result<HashMap<usize, content::Failure>> {
        let mut avoid: content::BadCopies = HashMap::new();
        let mut copies: HashMap<ChunkId, BlobLocation> = HashMap::new();
        // Each pass may find more damaged copies; a blob has only so many.
        for _ in 0..MAX_COPY_PASSES {
            if written.bad_copies.is_empty() || written.failures.is_empty() {
                break;
            }
            for (id, packs) in std::mem::take(&mut written.bad_copies) {
                avoid.entry(id).or_default().extend(packs);
            }
            let wanted: HashSet<ChunkId> = avoid.keys().copied().collect();
            let mut fresh = HashSet::new();
            for (id, locs) in self.repo.blob_copies(&wanted)? {
                let bad = avoid.get(&id).map_or(&[][..], Vec::as_slice);
                if let Some(loc) = locs.into_iter().find(|l| !bad.contains(&l.pack))
                    && copies.insert(id, loc) != Some(loc)
                {
                    fresh.insert(id);
                }
            }
            let retry: Vec<usize> = written
                .failures
                .keys()
                .copied()
                .filter(|i| {
                    batch.get(*i).is_some_and(|job| match &job.node.kind {
                        NodeKind::File { chunks, .. } => chunks.iter().any(|c| fresh.contains(c)),
                        _ => false,
                    })
                })
                .collect();
            if retry.is_empty() {
                break;
            }
            let jobs: Vec<FileJob> = retry.iter().filter_map(|i| batch.get(*i).cloned()).collect();
            let again = content::write_files(self, &jobs, &copies)?;
            outcome.bytes += again.bytes;
            for (n, i) in retry.iter().enumerate() {
                match again.failures.get(&n) {
                    Some(f) => {
                        written.failures.insert(*i, f.clone());
                    }
                    None => {
                        written.failures.remove(i);
                    }
                }
            }
            written.bad_copies = again.bad_copies;
        }
        Ok(written.failures)
    }

    /// Writes the files the walk planned so far, applies the metadata of those already
    /// right, makes the links, verifies what was written (`--verify`), and empties the plan's
    /// lists of files: the walk calls it whenever enough files wait, and once at its end.
    fn flush(&self, plan: &mut plan::Plan) -> Result<()> {
        let writes = std::mem::take(&mut plan.writes);
        plan.write_chunks = 0;
        let written = self.write_contents(&writes, &mut plan.outcome)?;
        let keeps = std::mem::take(&mut plan.keeps);
        for job in &keeps {
            self.apply_meta(&job.rel, &job.node, &mut plan.outcome.warnings)?;
            plan.outcome.files_unchanged += 1;
        }
        for (rel, first) in std::mem::take(&mut plan.links) {
            let (new_dir, new_name) = self.parent(&rel)?;
            let (old_dir, old_name) = self.parent(&first)?;
            match hostfs::link_at(old_dir.as_fd(), old_name, new_dir.as_fd(), new_name) {
                Ok(()) => plan.outcome.hardlinks += 1,
                Err(e) => plan.outcome.damaged.push(RestoreFailure {
                    path: self.display(&rel),
                    message: format!("cannot link to {}: {e}", self.display(&first).display()),
                    not_indexed: false,
                }),
            }
        }
        let done = writes.iter().zip(&written).filter(|(_, ok)| **ok).map(|(job, _)| job);
        if self.opts.restore_flags {
            let flagged = done.clone().chain(&keeps).filter(|j| j.node.flags != 0);
            plan.flagged.extend(flagged.map(|j| (j.rel.clone(), j.node.clone())));
        }
        if self.opts.verify {
            for job in done {
                match self.existing_matches(&job.rel, &job.node) {
                    Ok(true) => plan.outcome.verified += 1,
                    Ok(false) => plan.outcome.damaged.push(RestoreFailure {
                        path: self.display(&job.rel),
                        message: "verification failed: the file on disk does not match the snapshot".into(),
                        not_indexed: false,
                    }),
                    Err(e) => plan.outcome.damaged.push(RestoreFailure::new(self.display(&job.rel), &e)),
                }
            }
        }
        Ok(())
    }

    /// Removes the temporary files a killed restore left in `dir` (names of [`temp_name`]'s
    /// form only).
    fn remove_leftovers(&self, dir: BorrowedFd<'_>, rel: &[u8], names: &[Vec<u8>]) -> Result<()> {
        for name in names.iter().filter(|n| is_temp_name(n)) {
            hostfs::remove_at(dir, name).map_err(self.err(&plan::join(rel, name)))?;
        }
        Ok(())
    }

    /// Writes the contents of `jobs` in batches, each file under its temporary name, then
    /// applies its metadata and renames it into place. A damaged file's temporary file is
    /// removed and the file reported; what was at its final name stays as it was.
    fn write_contents(&self, jobs: &[FileJob], outcome: &mut RestoreOutcome) -> Result<Vec<bool>> {
        let mut ok = vec![false; jobs.len()];
        let mut start = 0;
        while start < jobs.len() {
            // At least one file per batch, then files while the batch holds < BATCH_CHUNKS chunks.
            let mut chunks = 0;
            let len = jobs
                .get(start..)
                .unwrap_or_default()
                .iter()
                .take_while(|j| {
                    let fits = chunks < BATCH_CHUNKS;
                    if let NodeKind::File { chunks: c, .. } = &j.node.kind {
                        chunks += c.len();
                    }
                    fits
                })
                .count()
                .max(1);
            let end = (start + len).min(jobs.len());
            let batch = jobs.get(start..end).unwrap_or_default();
            self.repo.check_interrupted("the restore stopped; the files it wrote are complete")?;
            // On an error, the files the batch created are removed (no file is left with
            // wrong content); existing files it had not reached yet are left as they were.
            let written = content::write_files(self, batch, &HashMap::new())?;
            outcome.bytes += written.bytes;
            let failures = self.try_other_copies(batch, written, outcome)?;
            for (i, job) in batch.iter().enumerate() {
                let (dir, name) = self.parent(&job.rel)?;
                let temp = temp_name(name);
                if let Some(failure) = failures.get(&i) {
                    let _ = hostfs::remove_at(dir.as_fd(), &temp);
                    outcome.damaged.push(RestoreFailure {
                        path: self.display(&job.rel),
                        message: failure.message.clone(),
                        not_indexed: failure.not_indexed,
                    });
                    continue;
                }
                self.apply_meta_named(dir.as_fd(), &temp, &job.rel, &job.node, &mut outcome.warnings)?;
                hostfs::rename_at(dir.as_fd(), &temp, name).map_err(self.err(&job.rel))?;
                outcome.files += 1;
                if let Some(slot) = ok.get_mut(start + i) {
                    *slot = true;
                }
            }
            start = end;
        }
        Ok(ok)
    }
}

/// Restores `tree` (a snapshot's root) into `opts.target`.
pub fn restore(
    repo: &Repository,
    tree: ChunkId,
    opts: &RestoreOptions,
    progress: &dyn Progress,
) -> Result<RestoreOutcome> {
    let filter = |patterns: &[String], what: &str| {
        PathPatterns::new(patterns).map_err(|e| match e {
            Error::InvalidInput(m) => Error::InvalidInput(format!("{what} {m}")),
            other => other,
        })
    };
    let include = filter(&opts.include, "include")?;
    let exclude = filter(&opts.exclude, "exclude")?;
    let target_err = |source| Error::Target { path: opts.target.clone(), source };
    std::fs::create_dir_all(&opts.target).map_err(target_err)?;
    let root = hostfs::open_dir(&opts.target).map_err(target_err)?;
    let r = Restorer {
        repo,
        opts,
        progress,
        root,
        owners: OwnerNames::default(),
        root_user: hostfs::is_root(),
        include,
        exclude,
        trees: std::sync::Mutex::default(),
    };
    // The total is not known before the walk ends: files are written as it goes.
    progress.phase("restore", None);
    let mut plan = r.plan(tree)?;
    r.flush(&mut plan)?;
    let mut outcome = std::mem::take(&mut plan.outcome);
    // Deepest directories were pushed first (post-order), so parents' mtimes are set last.
    for (rel, node) in &plan.dirs {
        if !rel.is_empty() {
            r.apply_meta(rel, node, &mut outcome.warnings)?;
        }
    }
    if opts.restore_flags {
        // Files first, then directories deepest first.
        let dirs = plan.dirs.iter().filter(|(rel, node)| !rel.is_empty() && node.flags != 0);
        for (rel, node) in plan.flagged.iter().chain(dirs) {
            r.apply_flags(rel, node, &mut outcome.warnings);
        }
    }
    progress.done();
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporary_names_fit_any_name_and_are_recognised() {
        let long = vec![b'x'; 255];
        for name in [&b"a"[..], b".cairn-restore-0123456789abcdef", &long] {
            let temp = temp_name(name);
            assert_eq!(temp.len(), TEMP_PREFIX.len() + 16);
            assert!(is_temp_name(&temp), "{}", String::from_utf8_lossy(&temp));
            assert_eq!(temp, temp_name(name), "a rerun uses the same name");
        }
        assert_ne!(temp_name(b"a"), temp_name(b"b"));
        for other in
            [&b".cairn-restore-"[..], b".cairn-restore-0123456789abcdeg", b".cairn-restore-0123456789abcdef0", b"file"]
        {
            assert!(!is_temp_name(other), "{}", String::from_utf8_lossy(other));
        }
    }
}
