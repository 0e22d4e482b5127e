//! `snapshot`: walk the source paths, chunk and store file content, store one tree blob per
//! directory (bottom-up), then the snapshot. Order gives crash safety: the blob writer stores
//! packs and then the index naming them; the snapshot is stored last, so an interrupted backup
//! leaves only unreferenced packs.
//!
//! The snapshot's root mirrors the absolute source paths, as restic does: backing up
//! `/home/ann/docs` yields `home/ann/docs` in the snapshot.

mod meta;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs::{self, File};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use crate::error::{Error, Result};
use crate::format::BlobKind;
use crate::format::now_ns;
use crate::format::snapshot::{Snapshot, SnapshotSummary};
use crate::format::tree::{Node, NodeKind, Tree};
use crate::id::{ChunkId, ObjectId};
use crate::progress::Progress;
use crate::repo::{BlobWriter, Repository};

use meta::{node_from_metadata, special_kind};

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
}

/// Absolute, lexically normalised path (no `.`/`..`), without resolving symlinks, so backing
/// up a symlink stores the link.
fn normalize(path: &Path) -> Result<PathBuf> {
    let abs = std::path::absolute(path).map_err(|e| Error::Source { path: path.to_path_buf(), source: e })?;
    let mut out = PathBuf::from("/");
    for c in abs.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    Ok(out)
}

/// The directories leading to the source paths: a virtual tree whose leaves are sources.
#[derive(Debug, Default)]
struct VirtualDir {
    children: BTreeMap<Vec<u8>, VirtualEntry>,
}

#[derive(Debug)]
enum VirtualEntry {
    Source(PathBuf),
    Dir(VirtualDir),
}

impl VirtualDir {
    fn insert(&mut self, path: &Path) {
        let names: Vec<&OsStr> =
            path.components().filter_map(|c| if let Component::Normal(n) = c { Some(n) } else { None }).collect();
        let mut dir = self;
        let last = names.len().saturating_sub(1);
        for (i, name) in names.iter().enumerate() {
            let key = name.as_bytes().to_vec();
            if i == last {
                dir.children.insert(key, VirtualEntry::Source(path.to_path_buf()));
                return;
            }
            let entry = dir.children.entry(key).or_insert_with(|| VirtualEntry::Dir(VirtualDir::default()));
            match entry {
                VirtualEntry::Dir(d) => dir = d,
                // A source already covers this prefix; the deeper path is inside it.
                VirtualEntry::Source(_) => return,
            }
        }
    }
}

struct Walker<'a, 'r> {
    repo: &'r Repository,
    writer: BlobWriter<'r>,
    progress: &'a dyn Progress,
    summary: SnapshotSummary,
    errors: Vec<SourceError>,
}

impl Walker<'_, '_> {
    fn source_error(&mut self, path: &Path, e: impl std::fmt::Display) {
        let message = e.to_string();
        self.progress.warn(&format!("{}: {message}", path.display()));
        self.summary.errors += 1;
        self.errors.push(SourceError { path: path.to_path_buf(), message });
    }

    fn save_tree(&mut self, mut tree: Tree) -> Result<ChunkId> {
        let bytes = tree.encode();
        self.writer.add(BlobKind::Tree, bytes)
    }

    fn save_virtual(&mut self, dir: VirtualDir, path: &Path) -> Result<ChunkId> {
        let mut tree = Tree::default();
        for (name, entry) in dir.children {
            let child_path = path.join(OsStr::from_bytes(&name));
            match entry {
                VirtualEntry::Source(p) => {
                    if let Some(node) = self.save_path(&p, name)? {
                        tree.nodes.push(node);
                    }
                }
                VirtualEntry::Dir(d) => {
                    let m = match fs::symlink_metadata(&child_path) {
                        Ok(m) => m,
                        Err(e) => {
                            self.source_error(&child_path, e);
                            continue;
                        }
                    };
                    let subtree = self.save_virtual(d, &child_path)?;
                    self.summary.dirs += 1;
                    tree.nodes.push(node_from_metadata(name, NodeKind::Dir { subtree }, &m));
                }
            }
        }
        self.save_tree(tree)
    }

    /// Saves one path; `Ok(None)` when it could not be read (recorded as a source error).
    fn save_path(&mut self, path: &Path, name: Vec<u8>) -> Result<Option<Node>> {
        self.progress.path(path);
        let m = match fs::symlink_metadata(path) {
            Ok(m) => m,
            Err(e) => {
                self.source_error(path, e);
                return Ok(None);
            }
        };
        let ft = m.file_type();
        if ft.is_dir() {
            let subtree = match self.save_dir(path)? {
                Some(id) => id,
                None => return Ok(None),
            };
            self.summary.dirs += 1;
            // Stat again after listing: listing may have updated the directory's atime
            // (relatime), and recording the updated value keeps the next snapshot's tree equal.
            let m = fs::symlink_metadata(path).unwrap_or(m);
            Ok(Some(node_from_metadata(name, NodeKind::Dir { subtree }, &m)))
        } else if ft.is_file() {
            self.save_file(path, name, &m)
        } else if ft.is_symlink() {
            match fs::read_link(path) {
                Ok(target) => {
                    self.summary.others += 1;
                    let kind = NodeKind::Symlink { target: target.as_os_str().as_bytes().to_vec() };
                    Ok(Some(node_from_metadata(name, kind, &m)))
                }
                Err(e) => {
                    self.source_error(path, e);
                    Ok(None)
                }
            }
        } else if let Some(kind) = special_kind(&m) {
            self.summary.others += 1;
            Ok(Some(node_from_metadata(name, kind, &m)))
        } else {
            self.source_error(path, "unknown file type");
            Ok(None)
        }
    }

    fn save_dir(&mut self, path: &Path) -> Result<Option<ChunkId>> {
        let entries = match fs::read_dir(path) {
            Ok(rd) => rd,
            Err(e) => {
                self.source_error(path, e);
                return Ok(None);
            }
        };
        let mut names = Vec::new();
        for entry in entries {
            match entry {
                Ok(e) => names.push(e.file_name().as_bytes().to_vec()),
                Err(e) => self.source_error(path, e),
            }
        }
        names.sort();
        let mut tree = Tree { nodes: Vec::with_capacity(names.len()) };
        for name in names {
            let child = path.join(OsStr::from_bytes(&name));
            if let Some(node) = self.save_path(&child, name)? {
                tree.nodes.push(node);
            }
        }
        Ok(Some(self.save_tree(tree)?))
    }

    fn save_file(&mut self, path: &Path, name: Vec<u8>, before: &fs::Metadata) -> Result<Option<Node>> {
        let file = match open_noatime(path) {
            Ok(f) => f,
            Err(e) => {
                self.source_error(path, e);
                return Ok(None);
            }
        };
        let mut stream = self.repo.chunker().stream(file);
        let mut chunks = Vec::new();
        let mut size = 0u64;
        loop {
            match stream.next_chunk() {
                Ok(Some(chunk)) => {
                    size += chunk.len() as u64;
                    self.progress.bytes(chunk.len() as u64);
                    chunks.push(self.writer.add(BlobKind::Data, chunk)?);
                }
                Ok(None) => break,
                Err(e) => {
                    self.source_error(path, e);
                    return Ok(None);
                }
            }
        }
        self.summary.bytes_read += size;
        self.summary.bytes_total += size;
        self.summary.files_new += 1;
        // A file that changed while being read is stored as read, and reported.
        if let Ok(after) = fs::symlink_metadata(path)
            && (after.size() != size || after.mtime() != before.mtime() || after.mtime_nsec() != before.mtime_nsec())
        {
            self.source_error(path, "file changed while it was being read; the snapshot holds the bytes read");
        }
        let mut node = node_from_metadata(name, NodeKind::File { chunks, holes: Vec::new() }, before);
        node.size = size;
        Ok(Some(node))
    }
}

/// Opens a file for reading without updating its atime (O_NOATIME, as borg does) when the
/// kernel allows it (owner or CAP_FOWNER): reading must not change what the next backup sees.
fn open_noatime(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    match fs::OpenOptions::new().read(true).custom_flags(libc::O_NOATIME).open(path) {
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => File::open(path),
        other => other,
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
    for p in &opts.paths {
        let abs = normalize(p)?;
        fs::symlink_metadata(&abs).map_err(|e| Error::Source { path: abs.clone(), source: e })?;
        if abs == Path::new("/") {
            return Err(Error::InvalidInput(
                "backing up / as a whole is not supported yet; list its directories".into(),
            ));
        }
        root.insert(&abs);
        paths.push(abs.as_os_str().as_bytes().to_vec());
    }
    progress.phase("snapshot", None);
    let mut walker = Walker {
        repo,
        writer: repo.blob_writer()?,
        progress,
        summary: SnapshotSummary { started_ns, ..SnapshotSummary::default() },
        errors: Vec::new(),
    };
    let tree = walker.save_virtual(root, Path::new("/"))?;
    let Walker { writer, mut summary, errors, .. } = walker;
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
        parent: None,
        program: opts.program.clone(),
        summary,
    };
    let (snapshot_id, size) = repo.save_snapshot(&snapshot)?;
    snapshot.summary.bytes_added_stored += size;
    progress.done();
    Ok(BackupOutcome { snapshot_id, snapshot, errors })
}
