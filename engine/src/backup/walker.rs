//! The walk of a backup: one directory at a time through open directory handles (see
//! `hostfs`), comparing each entry with the parent snapshot's node at the same path. An
//! unchanged file (same size, mtime, ctime, inode, device) is not opened: its chunks, xattrs
//! and flags come from the parent. Changed and new files are read (data extents only, for
//! sparse files) and handed chunk by chunk to the blob writer.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;

use rayon::prelude::*;
use rustix::fs::FileType;

use crate::error::Result;
use crate::format::BlobKind;
use crate::format::snapshot::SnapshotSummary;
use crate::format::tree::{Node, NodeKind, Tree};
use crate::hostfs::{self, OwnerNames, Stat, Xattrs};
use crate::id::ChunkId;
use crate::progress::Progress;
use crate::repo::{BlobWriter, Repository};

use super::dirahead::{DirAhead, Entries, Listed, key_of};
use super::exclude::Excluder;
use super::meta::{hardlink_group, node_from_stat, unchanged_since};
use super::prefetch::{SharedTree, TreePrefetch};
use super::readahead::{self, ReadAhead, Ticket};
use super::{SourceError, VirtualDir, VirtualEntry};

/// Content of a file already stored in this run, for the other links to its inode.
#[derive(Debug, Clone)]
pub(super) struct StoredContent {
    pub(super) chunks: Vec<ChunkId>,
    pub(super) holes: Vec<(u64, u64)>,
    pub(super) size: u64,
    pub(super) xattrs: Xattrs,
    pub(super) flags: u32,
}

pub(super) struct Walker<'a, 'r> {
    pub repo: &'r Repository,
    pub writer: BlobWriter<'r>,
    pub progress: &'a dyn Progress,
    pub summary: SnapshotSummary,
    pub errors: Vec<SourceError>,
    owners: OwnerNames,
    /// (device, inode) of multiply linked files already stored in this run.
    hardlinks: HashMap<(u64, u64), StoredContent>,
    pub excluder: Excluder,
    /// Devices of the source paths (`--one-file-system` does not leave them).
    source_devs: Vec<u64>,
    /// Parent trees read ahead.
    prefetch: &'a TreePrefetch<'r>,
    /// The chunker's read buffer, kept from file to file.
    pub(super) read_buf: Vec<u8>,
    /// Small files read ahead on I/O threads (larger ones primed).
    readahead: ReadAhead,
    /// Directories listed ahead on I/O threads.
    dirs: DirAhead,
    /// A person watches the progress (a terminal): worth asking the uploads how many packs
    /// wait, once per file. A nightly job skips that lock on its per-file path.
    watched: bool,
}

/// The parent snapshot's directory at the path being walked, if it had one.
pub(super) type ParentTree = Option<SharedTree>;

/// An entry's lstat, taken with its directory's others, and its read ahead if it is one.
struct Looked {
    stat: io::Result<Stat>,
    ahead: Option<Ticket>,
}

/// Entries from which a directory's stats are spread over the cores.
const PARALLEL_STATS: usize = 128;

/// Where a stopped walk stopped: no snapshot was written.
pub(super) const STOPPED: &str = "the backup stopped before writing its snapshot";

fn find<'t>(parent: &'t ParentTree, name: &[u8]) -> Option<&'t Node> {
    parent.as_ref().and_then(|t| t.find(name))
}

impl<'a, 'r> Walker<'a, 'r> {
    /// A walker; `first` when there is no parent snapshot (every file will be read, so the
    /// directory readers prime files too).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        repo: &'r Repository,
        writer: BlobWriter<'r>,
        excluders: [Excluder; 2],
        progress: &'a dyn Progress,
        prefetch: &'a TreePrefetch<'r>,
        started_ns: i64,
        source_devs: Vec<u64>,
        first: bool,
    ) -> Self {
        // Two instances of the same rules: the walk's, and the directory readers' (which must
        // not count as used a pattern that matched only what the walk never reached).
        let [excluder, readers_rules] = excluders;
        let dirs = DirAhead::start(excluder.one_file_system.then(|| source_devs.clone()), readers_rules, first);
        Walker {
            repo,
            writer,
            progress,
            summary: SnapshotSummary { started_ns, ..SnapshotSummary::default() },
            errors: Vec::new(),
            owners: OwnerNames::default(),
            hardlinks: HashMap::new(),
            excluder,
            source_devs,
            prefetch,
            read_buf: Vec::new(),
            readahead: ReadAhead::start(),
            dirs,
            watched: progress.wants_totals(),
        }
    }

    pub fn source_error(&mut self, path: &Path, e: impl std::fmt::Display) {
        let message = e.to_string();
        self.progress.warn(&format!("{}: {message}", path.display()));
        self.summary.errors += 1;
        self.errors.push(SourceError { path: path.to_path_buf(), message });
    }

    fn save_tree(&mut self, mut tree: Tree) -> Result<ChunkId> {
        let bytes = tree.encode();
        self.writer.add(BlobKind::Tree, bytes)
    }

    /// The parent's subtree below `node`, when `node` is a directory, with the subtrees below
    /// it requested ahead. A parent tree that cannot be read only costs re-reading: the backup
    /// goes on without it.
    fn parent_subtree(&self, node: Option<&Node>) -> ParentTree {
        let tree = self.prefetch.subtree(node)?;
        self.prefetch.ahead(&tree);
        Some(tree)
    }

    /// Stores the virtual directories leading to the sources, and the sources below them.
    pub fn save_virtual(&mut self, dir: VirtualDir, path: &Path, parent: ParentTree) -> Result<ChunkId> {
        let mut tree = Tree::default();
        let parent_fd = match hostfs::open_dir(path) {
            Ok(fd) => Arc::new(fd),
            Err(e) => {
                self.source_error(path, e);
                self.prefetch.done(parent);
                return self.save_tree(tree);
            }
        };
        if dir.whole {
            // `/` itself: its entries as any directory's (its own metadata has no node to go in).
            let entries = match hostfs::list_dir(parent_fd.as_fd()) {
                Ok(names) => stat_all(&parent_fd, names),
                Err(e) => {
                    self.source_error(path, e);
                    Vec::new()
                }
            };
            let key = hostfs::fstat(parent_fd.as_fd()).ok().map(|st| key_of(&st));
            if let Some(key) = key {
                self.dirs.queue_below(key, &parent_fd, path, &entries);
            }
            let saved = self.save_entries(&parent_fd, path, entries, parent);
            if let Some(key) = key {
                self.dirs.done(key);
            }
            return saved;
        }
        for (name, entry) in dir.children {
            let child_path = path.join(OsStr::from_bytes(&name));
            let parent_node = find(&parent, &name);
            match entry {
                VirtualEntry::Source => {
                    if let Some(node) = self.save_entry(parent_fd.as_fd(), &child_path, name, parent_node, None)? {
                        tree.nodes.push(node);
                    }
                }
                VirtualEntry::Dir(d) => {
                    let st = match hostfs::stat_at(parent_fd.as_fd(), &name) {
                        Ok(st) => st,
                        Err(e) => {
                            self.source_error(&child_path, e);
                            continue;
                        }
                    };
                    let sub_parent = self.parent_subtree(parent_node);
                    let subtree = self.save_virtual(d, &child_path, sub_parent)?;
                    self.summary.dirs += 1;
                    tree.nodes.push(node_from_stat(name, NodeKind::Dir { subtree }, &st, &self.owners));
                }
            }
        }
        self.prefetch.done(parent);
        self.save_tree(tree)
    }

    /// Saves the `entries` of the open directory `dir` and stores their tree.
    fn save_entries(
        &mut self,
        dir: &Arc<OwnedFd>,
        path: &Path,
        entries: Entries,
        parent: ParentTree,
    ) -> Result<ChunkId> {
        let tree = self.walk_entries(dir, path, entries, &parent)?;
        self.prefetch.done(parent);
        self.save_tree(tree)
    }

    /// The nodes of the `entries` of the open directory `dir` (each stat'ed already: the
    /// inodes of a directory lie close together on disk), each saved. The files the walk will
    /// read are handed to the readers a window ahead of it (small ones read, larger primed).
    fn walk_entries(
        &mut self,
        dir: &Arc<OwnedFd>,
        path: &Path,
        mut entries: Entries,
        parent: &ParentTree,
    ) -> Result<Tree> {
        let mut tree = Tree { nodes: Vec::with_capacity(entries.len()) };
        let mut ahead: Vec<Option<Ticket>> = Vec::with_capacity(entries.len());
        for i in 0..entries.len() {
            while ahead.len() < i + readahead::MAX_FILES {
                let Some((name, stat)) = entries.get(ahead.len()) else { break };
                let stat = stat.as_ref().and_then(|s| s.as_ref().ok());
                let wanted = stat.filter(|st| self.reads_ahead(path, name, st, parent));
                let ticket = match wanted.map(|st| (st.size, self.readahead.submit(dir, name, st.size))) {
                    // No room for a small file: the walker reads it, and those after it wait.
                    Some((size, None)) if size <= readahead::SMALL => break,
                    other => other.and_then(|(_, ticket)| ticket),
                };
                ahead.push(ticket);
            }
            if i == 0 {
                self.readahead.start_reading();
            }
            let Some((child, stat)) = entries.get_mut(i).map(|(n, s)| (std::mem::take(n), s.take())) else { break };
            let stat = stat.unwrap_or_else(|| Err(io::Error::other("entry stat'ed twice")));
            let looked = Looked { stat, ahead: ahead.get_mut(i).and_then(Option::take) };
            let child_path = path.join(OsStr::from_bytes(&child));
            let child_parent = find(parent, &child);
            if let Some(node) = self.save_entry(dir.as_fd(), &child_path, child, child_parent, Some(looked))? {
                tree.nodes.push(node);
            }
        }
        Ok(tree)
    }

    /// Whether the walk will read the entry `name` (lstat `st`) and it is worth reading ahead
    /// (a small file) or priming (a larger one): a regular file, not sparse, not excluded, new
    /// or changed since the parent, not another link to an inode stored already.
    fn reads_ahead(&mut self, path: &Path, name: &[u8], st: &Stat, parent: &ParentTree) -> bool {
        st.file_type() == FileType::RegularFile
            && !st.maybe_sparse()
            && !self.excluder.excludes_size(st.size)
            && find(parent, name).is_none_or(|p| !unchanged_since(p, st))
            && (st.nlink <= 1 || !self.hardlinks.contains_key(&(st.dev, st.ino)))
            && !self.excluder.excludes_path(&path.join(OsStr::from_bytes(name)), false)
    }

    /// Saves the entry `name` of the open directory `dir`; `Ok(None)` when it could not be read
    /// (recorded as a source error), is excluded, or is not backed up (sockets).
    fn save_entry(
        &mut self,
        dir: BorrowedFd<'_>,
        path: &Path,
        name: Vec<u8>,
        parent: Option<&Node>,
        looked: Option<Looked>,
    ) -> Result<Option<Node>> {
        self.repo.check_interrupted(STOPPED)?;
        self.progress.path(path);
        let (stat, ahead) = match looked {
            Some(Looked { stat, ahead }) => (stat, ahead),
            None => (hostfs::stat_at(dir, &name), None),
        };
        let st = match stat {
            Ok(st) => st,
            Err(e) => {
                self.source_error(path, e);
                return Ok(None);
            }
        };
        let ft = st.file_type();
        // A file read ahead passed the same exclusion checks before it was handed over.
        if ahead.is_none()
            && (self.excluder.excludes_path(path, ft == FileType::Directory)
                || (ft == FileType::RegularFile && self.excluder.excludes_size(st.size)))
        {
            if ft == FileType::Directory {
                self.dirs.done(key_of(&st)); // listed ahead, perhaps, and now not walked
            }
            return Ok(None);
        }
        if ft == FileType::Directory {
            return self.save_dir(dir, path, name, &st, parent);
        }
        if ft == FileType::RegularFile {
            return self.save_file(dir, path, name, &st, parent, ahead);
        }
        // Unchanged since the parent: keep what it read, atime included (reading a symlink
        // moves its atime, and nothing else about it has changed).
        let unchanged = parent.filter(|p| unchanged_since(p, &st));
        let kind = match ft {
            FileType::Symlink => match unchanged {
                Some(p) => p.kind.clone(),
                None => match hostfs::read_link_at(dir, &name) {
                    Ok(target) => NodeKind::Symlink { target },
                    Err(e) => {
                        self.source_error(path, e);
                        return Ok(None);
                    }
                },
            },
            FileType::Fifo => NodeKind::Fifo,
            FileType::CharacterDevice => NodeKind::CharDevice { rdev: st.rdev },
            FileType::BlockDevice => NodeKind::BlockDevice { rdev: st.rdev },
            FileType::Socket => {
                // A socket is recreated by the program that listens on it; restoring one would
                // make a dead file. Noted, not an error.
                self.progress.warn(&format!("{}: socket skipped", path.display()));
                return Ok(None);
            }
            _ => {
                self.source_error(path, "unknown file type");
                return Ok(None);
            }
        };
        let mut node = node_from_stat(name, kind, &st, &self.owners);
        match unchanged {
            Some(p) => {
                node.atime_ns = p.atime_ns;
                node.xattrs = p.xattrs.clone();
            }
            None => node.xattrs = self.xattrs_at(dir, path, &node.name),
        }
        self.summary.others += 1;
        if st.nlink > 1 {
            node.hardlink_group = Some(hardlink_group(st.dev, st.ino));
        }
        Ok(Some(node))
    }

    /// Xattrs of a node that is not opened; failures are reported and leave the list empty.
    fn xattrs_at(&mut self, dir: BorrowedFd<'_>, path: &Path, name: &[u8]) -> Xattrs {
        let read = hostfs::read_xattrs_at(dir, name);
        self.xattrs_or_report(read, path)
    }

    /// Xattrs of an open file or directory, reported like [`Walker::xattrs_at`].
    pub(super) fn xattrs_fd(&mut self, fd: impl AsFd, path: &Path) -> Xattrs {
        let read = hostfs::read_xattrs_fd(fd);
        self.xattrs_or_report(read, path)
    }

    pub(super) fn xattrs_or_report(&mut self, read: std::io::Result<Xattrs>, path: &Path) -> Xattrs {
        read.unwrap_or_else(|e| {
            self.source_error(path, format!("cannot read extended attributes: {e}"));
            Vec::new()
        })
    }

    /// Saves the directory `name` in `dir` (lstat `st`), with everything below it.
    fn save_dir(
        &mut self,
        dir: BorrowedFd<'_>,
        path: &Path,
        name: Vec<u8>,
        st: &Stat,
        parent: Option<&Node>,
    ) -> Result<Option<Node>> {
        let key = key_of(st);
        let saved = self.save_dir_below(dir, path, name, st, parent);
        self.dirs.done(key);
        saved
    }

    /// The directory `name` in `dir` (lstat `st`) open, with its entries stat'ed: as the
    /// readers listed it if that listing is still current, else listed here (and its
    /// subdirectories queued for the readers). `None` when it is not walked: it could not be
    /// opened or listed (reported), or holds a marker that excludes it (checked here before
    /// its entries are stat'ed; the readers list no directory that holds one, and a marker
    /// file created since changes the directory, so a current listing needs no second look).
    fn list_dir(&mut self, dir: BorrowedFd<'_>, path: &Path, name: &[u8], st: &Stat) -> Option<Listed> {
        // Another file system below a source: the mount point is stored, empty.
        let foreign = self.excluder.one_file_system && !self.source_devs.contains(&st.dev);
        if !foreign
            && let Some(listed) = self.dirs.take(key_of(st))
            && listed.still_current(dir, name)
        {
            return Some(listed);
        }
        let fd = match hostfs::open_dir_at(dir, name) {
            Ok(fd) => Arc::new(fd),
            Err(e) => {
                self.source_error(path, e);
                return None;
            }
        };
        if foreign {
            return Some(Listed { fd, opened: None, entries: Vec::new(), primed: None });
        }
        let names = match hostfs::list_dir(fd.as_fd()) {
            Ok(names) => names,
            Err(e) => {
                self.source_error(path, e);
                return None;
            }
        };
        if self.excluder.has_marker(fd.as_fd(), &names) {
            return None;
        }
        let entries = stat_all(&fd, names);
        self.dirs.queue_below(key_of(st), &fd, path, &entries);
        Some(Listed { fd, opened: None, entries, primed: None })
    }

    fn save_dir_below(
        &mut self,
        dir: BorrowedFd<'_>,
        path: &Path,
        name: Vec<u8>,
        st: &Stat,
        parent: Option<&Node>,
    ) -> Result<Option<Node>> {
        let Some(Listed { fd, entries, .. }) = self.list_dir(dir, path, &name, st) else { return Ok(None) };
        let parent_tree = self.parent_subtree(parent);
        let tree = self.walk_entries(&fd, path, entries, &parent_tree)?;
        self.prefetch.done(parent_tree);
        // Stat after listing, through the handle: the metadata recorded is what the directory
        // looks like now that its entries were read.
        let st = match hostfs::fstat(fd.as_fd()) {
            Ok(st) => st,
            Err(e) => {
                self.source_error(path, e);
                return Ok(None);
            }
        };
        let subtree = self.save_tree(tree)?;
        self.summary.dirs += 1;
        let mut node = node_from_stat(name, NodeKind::Dir { subtree }, &st, &self.owners);
        // Listing moves a directory's atime where O_NOATIME is not allowed; an unchanged
        // directory keeps the parent's, so its tree blob stays the same.
        match parent.filter(|p| unchanged_since(p, &st)) {
            Some(p) => {
                node.atime_ns = p.atime_ns;
                node.xattrs = p.xattrs.clone();
                node.flags = p.flags;
            }
            None => {
                node.xattrs = self.xattrs_fd(fd.as_fd(), path);
                node.flags = hostfs::inode_flags(fd.as_fd());
            }
        }
        Ok(Some(node))
    }

    fn save_file(
        &mut self,
        dir: BorrowedFd<'_>,
        path: &Path,
        name: Vec<u8>,
        st: &Stat,
        parent: Option<&Node>,
        ahead: Option<Ticket>,
    ) -> Result<Option<Node>> {
        let group = (st.nlink > 1).then(|| hardlink_group(st.dev, st.ino));
        // Unchanged since the parent: reuse its content without opening the file, provided
        // every chunk is still in the index.
        if let Some(p) = parent.filter(|p| unchanged_since(p, st))
            && let NodeKind::File { chunks, holes } = &p.kind
            && self.all_indexed(chunks)?
        {
            let content = StoredContent {
                chunks: chunks.clone(),
                holes: holes.clone(),
                size: p.size,
                xattrs: p.xattrs.clone(),
                flags: p.flags,
            };
            self.summary.files_unchanged += 1;
            self.file_done(content.size);
            return Ok(Some(self.file_node(name, st, group, content)));
        }
        if parent.is_some() {
            self.summary.files_changed += 1;
        } else {
            self.summary.files_new += 1;
        }
        // Another link to an inode stored earlier in this run: same content, read once.
        if let Some(content) = self.hardlinks.get(&(st.dev, st.ino)).cloned() {
            self.file_done(content.size);
            return Ok(Some(self.file_node(name, st, group, content)));
        }
        let read = match ahead.map(Ticket::wait) {
            Some(fetched) => self.read_fetched(path, st, fetched)?,
            None => None,
        };
        let content = match read {
            Some(content) => content,
            None => self.read_file(dir, path, &name, st)?,
        };
        let Some(content) = content else {
            return Ok(None);
        };
        self.file_done(content.holes.iter().map(|h| h.1).sum());
        if group.is_some() {
            self.hardlinks.insert((st.dev, st.ino), content.clone());
        }
        Ok(Some(self.file_node(name, st, group, content)))
    }

    /// Tells the progress display that a file is done, `not_read` bytes of it unread.
    fn file_done(&self, not_read: u64) {
        self.progress.file_done(not_read);
        if self.watched {
            self.progress.uploads_pending(self.writer.uploads_pending());
        }
    }

    fn all_indexed(&self, chunks: &[ChunkId]) -> Result<bool> {
        for id in chunks {
            if !self.repo.index().contains(id)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn file_node(&mut self, name: Vec<u8>, st: &Stat, group: Option<u64>, content: StoredContent) -> Node {
        let mut node =
            node_from_stat(name, NodeKind::File { chunks: content.chunks, holes: content.holes }, st, &self.owners);
        node.size = content.size;
        node.xattrs = content.xattrs;
        node.flags = content.flags;
        node.hardlink_group = group;
        self.summary.bytes_total += content.size;
        node
    }
}

/// The entries `names` of the open directory `dir`, each lstat'ed. A large directory's entries
/// are stat'ed on all cores: with a cold cache each stat costs the kernel an inode and a dentry
/// to build, and that work is CPU.
fn stat_all(dir: &Arc<OwnedFd>, names: Vec<Vec<u8>>) -> Entries {
    let stat = |name: Vec<u8>| {
        let stat = hostfs::stat_at(dir.as_fd(), &name);
        (name, Some(stat))
    };
    if names.len() >= PARALLEL_STATS {
        names.into_par_iter().with_min_len(PARALLEL_STATS / 2).map(stat).collect()
    } else {
        names.into_iter().map(stat).collect()
    }
}
