//! `snapshot`: walk the source paths, chunk and store file content, store one tree blob per
//! directory (bottom-up), then the snapshot. Order gives crash safety: the blob writer stores
//! packs and then the index naming them; the snapshot is stored last, so an interrupted backup
//! leaves only unreferenced packs. A backup whose lock was lost (a refresh failed, or another
//! client removed it) stores neither index segment nor snapshot: the repository handle checks
//! its locks before each (`Repository::check_locks`), since a prune may then be running.
//!
//! The snapshot's root mirrors the absolute source paths, as restic does: backing up
//! `/home/ann/docs` yields `home/ann/docs` in the snapshot. A parent snapshot (by default the
//! latest of the same host and paths) lets unchanged files be skipped unread (`walker`).

mod content;
mod dirahead;
mod exclude;
mod meta;
mod prefetch;
mod readahead;
mod scan;
mod sleepers;
mod stream;
mod walker;

pub use exclude::ExcludeOptions;
pub use stream::{StreamSource, backup_stream};

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use crate::error::{Error, Result};
use crate::format::now_ns;
use crate::format::snapshot::Snapshot;
use crate::id::ObjectId;
use crate::progress::Progress;
use crate::repo::Repository;

use walker::Walker;

/// Stack for the walking thread: the walk recurses once per directory level, and trees can be
/// thousands of levels deep. Only the pages touched are ever committed.
const WALK_STACK: usize = 256 << 20;

/// Which snapshot to compare with, so unchanged files are not read again.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ParentChoice {
    /// The latest snapshot with the same host name and the same set of paths.
    #[default]
    Auto,
    /// This snapshot.
    Snapshot(ObjectId),
    /// None: read every file (`--force`).
    None,
}

/// What to back up and how to label it.
#[derive(Debug, Clone, Default)]
pub struct BackupOptions {
    /// Source paths (files or directories); made absolute.
    pub paths: Vec<PathBuf>,
    /// Tags to record.
    pub tags: Vec<String>,
    /// Host name to record.
    pub hostname: String,
    /// User name to record.
    pub username: String,
    /// Snapshot time; now when `None`.
    pub time_ns: Option<i64>,
    /// Program name and version to record.
    pub program: String,
    /// The parent snapshot.
    pub parent: ParentChoice,
    /// What to leave out.
    pub excludes: ExcludeOptions,
    /// Read and chunk everything, store nothing: [`BackupOutcome::snapshot_id`] is then
    /// all zeros and the summary says what a backup would add.
    pub dry_run: bool,
}

/// A source that could not be read; the snapshot was written without it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceError {
    /// The path.
    pub path: PathBuf,
    /// What went wrong.
    pub message: String,
}

/// What a backup did.
#[derive(Debug, Clone)]
pub struct BackupOutcome {
    /// The new snapshot's id.
    pub snapshot_id: ObjectId,
    /// The snapshot written.
    pub snapshot: Snapshot,
    /// Sources that could not be read (exit code 3 in the CLI).
    pub errors: Vec<SourceError>,
    /// Exclude patterns that left nothing out (worth a warning: often a typo).
    pub unused_excludes: Vec<String>,
}

/// Absolute, lexically normalised path (no `.`/`..`), without resolving symlinks, so backing
/// up a symlink stores the link.
fn normalize(path: &Path) -> Result<PathBuf> {
    crate::select::source_path(path).map_err(|e| Error::Source { path: path.to_path_buf(), source: e })
}

/// The directories leading to the source paths: a virtual tree whose leaves are sources.
#[derive(Debug, Default)]
struct VirtualDir {
    /// The directory is itself a source (only the root can be: `/` was named), so it is walked
    /// as a whole and sources below it add nothing to the tree.
    whole: bool,
    children: BTreeMap<Vec<u8>, VirtualEntry>,
}

#[derive(Debug)]
enum VirtualEntry {
    /// A source path: stored with everything below it.
    Source,
    /// A directory on the way to sources: only its metadata and the entries leading on.
    Dir(VirtualDir),
}

impl VirtualDir {
    fn insert(&mut self, path: &Path) {
        let names: Vec<&OsStr> =
            path.components().filter_map(|c| if let Component::Normal(n) = c { Some(n) } else { None }).collect();
        if names.is_empty() {
            // `/`: everything is inside it.
            self.whole = true;
            self.children.clear();
            return;
        }
        if self.whole {
            return;
        }
        let mut dir = self;
        let last = names.len() - 1;
        for (i, name) in names.iter().enumerate() {
            let key = name.as_bytes().to_vec();
            if i == last {
                dir.children.insert(key, VirtualEntry::Source);
                return;
            }
            let entry = dir.children.entry(key).or_insert_with(|| VirtualEntry::Dir(VirtualDir::default()));
            match entry {
                VirtualEntry::Dir(d) => dir = d,
                // A source already covers this prefix; the deeper path is inside it.
                VirtualEntry::Source => return,
            }
        }
    }
}

/// The parent snapshot for `paths` (sorted, normalised) on `hostname`.
fn choose_parent(
    repo: &Repository,
    choice: ParentChoice,
    hostname: &str,
    paths: &[Vec<u8>],
) -> Result<Option<(ObjectId, Snapshot)>> {
    if repo.is_write_only() {
        // It reads nothing from the repository: its parent is the last snapshot of these
        // paths it recorded in its cache.
        return match choice {
            ParentChoice::None => Ok(None),
            ParentChoice::Auto => Ok(repo.own_parent(hostname, paths)),
            ParentChoice::Snapshot(id) => match repo.own_parent(hostname, paths) {
                Some((own, snap)) if own == id => Ok(Some((own, snap))),
                _ => Err(Error::InvalidInput(format!(
                    "a write-only key reads no snapshot: --parent can name only the last snapshot this client made of \
                     these paths, and {} is not it",
                    id.short()
                ))),
            },
        };
    }
    match choice {
        ParentChoice::None => Ok(None),
        ParentChoice::Snapshot(id) => {
            let snapshot = repo.load_snapshot(&id)?;
            if let crate::format::snapshot::Writer::WriteOnly(slot) = snapshot.writer {
                return Err(Error::InvalidInput(format!(
                    "snapshot {} was written by write-only slot {}: a full key's backup takes only a full key's \
                     snapshot as its parent (its tree could come from a stolen write-only key); name another, or \
                     pass --force",
                    id.short(),
                    slot.short()
                )));
            }
            Ok(Some((id, snapshot)))
        }
        // A snapshot that cannot be read is no parent: the backup reads those files instead of
        // failing (a damaged snapshot must not stop nightly backups).
        // Only a full key's snapshot: one sealed to the reader key may come from a stolen
        // write-only key naming this host, and its tree would say which content the files
        // that look unchanged have (SPEC §15.5).
        ParentChoice::Auto => Ok(repo.readable_snapshots()?.0.into_iter().rev().find(|(_, s)| {
            let mut theirs = s.paths.clone();
            theirs.sort();
            s.writer == crate::format::snapshot::Writer::Full && s.hostname == hostname && theirs == paths
        })),
    }
}

/// Backs up `opts.paths` into `repo` and writes a snapshot.
/// Unreadable sources are skipped and listed in [`BackupOutcome::errors`]; storage and
/// repository errors abort without writing a snapshot.
pub fn backup(repo: &Repository, opts: &BackupOptions, progress: &dyn Progress) -> Result<BackupOutcome> {
    if opts.paths.is_empty() {
        return Err(Error::InvalidInput("no paths to back up".into()));
    }
    let started_ns = now_ns();
    let mut root = VirtualDir::default();
    let mut paths = Vec::new();
    // Devices of the sources: `--one-file-system` stays on these, so `-x / /home` stores both
    // file systems even though /home is inside /.
    let mut source_devs = Vec::new();
    // A source that is missing or unreadable is skipped with a warning (exit 3, as restic):
    // one missing path must not cost the nightly backup of the others.
    let mut missing = Vec::new();
    for p in &opts.paths {
        let abs = normalize(p)?;
        match std::fs::symlink_metadata(&abs) {
            Ok(md) => {
                source_devs.push(md.dev());
                root.insert(&abs);
                paths.push(abs.as_os_str().as_bytes().to_vec());
            }
            Err(e) => missing.push((abs, e)),
        }
    }
    if paths.is_empty() {
        let (path, source) = missing.swap_remove(0);
        return Err(Error::Source { path, source });
    }
    paths.sort();
    paths.dedup();
    let excluder = exclude::Excluder::new(&opts.excludes)?;
    let readers_rules = exclude::Excluder::new(&opts.excludes)?;
    let parent = choose_parent(repo, opts.parent, &opts.hostname, &paths)?;
    let parent_root = match &parent {
        Some((_, snap)) => repo.load_tree(&snap.tree).ok().map(std::sync::Arc::new),
        None => None,
    };
    let prefetch = prefetch::TreePrefetch::new(repo);
    if let Some(root) = &parent_root {
        prefetch.ahead(root);
    }
    progress.phase("snapshot", None);
    let scan_done = std::sync::atomic::AtomicBool::new(false);
    let sources: Vec<PathBuf> = paths.iter().map(|p| PathBuf::from(OsStr::from_bytes(p))).collect();
    let scan_devs = source_devs.clone();
    let (walked, counted) = std::thread::scope(|scope| {
        // Best effort: without the thread there are no totals, nothing else changes.
        let counter = progress
            .wants_totals()
            .then(|| {
                std::thread::Builder::new()
                    .name("cairn-count".into())
                    .stack_size(WALK_STACK)
                    .spawn_scoped(scope, || scan::count(&sources, &opts.excludes, &scan_devs, progress, &scan_done))
                    .ok()
            })
            .flatten();
        let finishing = prefetch.finishing();
        for n in 0..prefetch.readers() {
            // Best effort too: without readers, every parent tree is read when wanted.
            let _ = std::thread::Builder::new()
                .name(format!("cairn-tree-{n}"))
                .spawn_scoped(scope, || prefetch.read_ahead());
        }
        let walked = std::thread::Builder::new()
            .name("cairn-walk".into())
            .stack_size(WALK_STACK)
            .spawn_scoped(scope, || -> Result<_> {
                let writer = if opts.dry_run { repo.dry_run_blob_writer()? } else { repo.blob_writer()? };
                let first = parent_root.is_none();
                let rules = [excluder, readers_rules];
                let mut walker = Walker::new(repo, writer, rules, progress, &prefetch, started_ns, source_devs, first);
                for (path, e) in missing {
                    walker.source_error(&path, e);
                }
                let tree = walker.save_virtual(root, Path::new("/"), parent_root);
                Ok((tree, walker))
            })
            .map_err(|e| Error::Internal(format!("cannot start the walking thread: {e}")))
            .and_then(|t| t.join().map_err(|_| Error::Internal("the walking thread panicked".into())));
        drop(finishing);
        scan_done.store(true, std::sync::atomic::Ordering::Relaxed);
        // Whether the counting walk ended before the backup (or there was none).
        let counted = counter.is_none_or(|c| c.join().unwrap_or(false));
        Ok::<_, Error>((walked, counted))
    })?;
    let (tree, Walker { writer, mut summary, errors, excluder, .. }) = walked??;
    if !counted {
        // The backup ended first (an unchanged tree goes fast): its own figures are the totals.
        let files = summary.files_new + summary.files_changed + summary.files_unchanged;
        progress.totals(files, summary.bytes_total, true);
    }
    let tree = match tree {
        Ok(tree) => tree,
        Err(Error::Interrupted(what)) => {
            // Asked to stop: store the pack being filled and index every pack written, so the
            // next run finds all of it stored and reads nothing twice into the repository.
            let stats = writer.finish()?;
            return Err(Error::Interrupted(format!(
                "{what}; the {} new blob(s) stored so far are indexed, and the next run reuses them",
                stats.blobs
            )));
        }
        Err(e) => return Err(e),
    };
    let stats = writer.finish()?;
    summary.blobs_added = stats.blobs;
    summary.bytes_added_raw = stats.raw_bytes;
    summary.bytes_added_stored = stats.stored_bytes;
    summary.finished_ns = now_ns();
    let mut snapshot = Snapshot {
        time_ns: opts.time_ns.unwrap_or(started_ns),
        hostname: opts.hostname.clone(),
        username: opts.username.clone(),
        paths,
        tags: opts.tags.clone(),
        tree,
        parent: parent.map(|(id, _)| id),
        program: opts.program.clone(),
        summary,
        writer: repo.writer(),
    };
    let (snapshot_id, size) = if opts.dry_run { (ObjectId([0; 32]), 0) } else { repo.save_snapshot(&snapshot)? };
    snapshot.summary.bytes_added_stored += size;
    progress.done();
    Ok(BackupOutcome { snapshot_id, snapshot, errors, unused_excludes: excluder.unused_patterns() })
}
