//! Snapshots as a read-only file system: inodes, directories, attributes, extended attributes
//! and file reads at any offset. This is what `cairn mount` serves through FUSE; it knows
//! nothing of FUSE, so it is tested without a kernel.
//!
//! Inodes are made as directories are first listed or looked up (a mounted repository of
//! millions of files costs only what is browsed), and are kept for the life of the mount so an
//! inode number always names the same thing. Files of one snapshot that share a hardlink group
//! share one inode. File content comes through the index cache, one blob at a time, with a
//! bounded cache of recently read blobs ([`content`]).

mod content;
mod layout;

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, PoisonError, RwLock};

use crate::error::Error;
use crate::format::snapshot::Snapshot;
use crate::format::tree::{Node, NodeKind};
use crate::id::{ChunkId, ObjectId};
use crate::repo::Repository;

pub use content::DEFAULT_CACHE_BYTES;

/// The root directory's inode number.
pub const ROOT: u64 = 1;

/// What a file system entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A directory.
    Dir,
    /// A regular file.
    File,
    /// A symbolic link.
    Symlink,
    /// A named pipe.
    Fifo,
    /// A character device.
    CharDevice,
    /// A block device.
    BlockDevice,
    /// A Unix socket.
    Socket,
}

/// An entry's attributes, as `stat` reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attr {
    /// Inode number.
    pub ino: u64,
    /// Kind.
    pub kind: Kind,
    /// Size in bytes.
    pub size: u64,
    /// Bytes of data (a sparse file's size without its holes), for `st_blocks`.
    pub allocated: u64,
    /// Permission bits (including setuid, setgid and sticky).
    pub perm: u16,
    /// Hard link count.
    pub nlink: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Device number of a device node.
    pub rdev: u64,
    /// Access time, ns since the epoch.
    pub atime_ns: i64,
    /// Modification time, ns since the epoch.
    pub mtime_ns: i64,
    /// Status change time, ns since the epoch.
    pub ctime_ns: i64,
}

/// One directory entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// Name, raw bytes.
    pub name: Vec<u8>,
    /// Inode number.
    pub ino: u64,
    /// Kind.
    pub kind: Kind,
}

/// Why a file system operation failed, in the terms a file system reports.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    /// No such inode or name.
    #[error("no such file or directory")]
    NotFound,
    /// A directory operation on something else.
    #[error("not a directory")]
    NotDir,
    /// A file operation on something else.
    #[error("not a regular file")]
    NotFile,
    /// `readlink` on something else.
    #[error("not a symbolic link")]
    NotSymlink,
    /// The repository could not give what was asked (missing or damaged object, storage error).
    /// Shared: a blob that failed is not asked for again for a minute, and every read of it
    /// meanwhile gets this same error.
    #[error(transparent)]
    Repository(Arc<Error>),
}

impl From<Error> for FsError {
    fn from(e: Error) -> Self {
        FsError::Repository(Arc::new(e))
    }
}

/// Result of a file system operation.
pub type FsResult<T> = std::result::Result<T, FsError>;

/// Who owns what the file system makes up (its root and the `ids`, `hosts`... directories),
/// and how many bytes of blobs it keeps in memory.
#[derive(Debug, Clone)]
pub struct FsOptions {
    /// Owner of the made-up directories (usually the user who mounts).
    pub uid: u32,
    /// Group of the made-up directories.
    pub gid: u32,
    /// Bytes of decrypted blobs kept for further reads.
    pub cache_bytes: u64,
}

impl Default for FsOptions {
    fn default() -> Self {
        FsOptions { uid: 0, gid: 0, cache_bytes: DEFAULT_CACHE_BYTES }
    }
}

/// What an inode stands for.
#[derive(Debug)]
enum Source {
    /// A directory the file system makes up; its entries are set when it is built.
    Virtual { time_ns: i64 },
    /// A symbolic link the file system makes up (`hosts/NAME/TIME` to `ids/ID`).
    Link { target: Vec<u8>, time_ns: i64 },
    /// The root directory of snapshot number `snap`.
    SnapshotRoot { snap: usize, tree: ChunkId, time_ns: i64 },
    /// An entry of a snapshot's tree.
    Node { snap: usize, node: Box<Node> },
}

#[derive(Debug)]
struct Inode {
    parent: u64,
    source: Source,
    /// Directory entries, once listed.
    entries: OnceLock<Arc<[DirEntry]>>,
    /// A file's chunk layout, once opened.
    layout: OnceLock<Arc<content::FileLayout>>,
}

impl Inode {
    fn new(parent: u64, source: Source) -> Self {
        Inode { parent, source, entries: OnceLock::new(), layout: OnceLock::new() }
    }
}

fn kind_of(kind: &NodeKind) -> Kind {
    match kind {
        NodeKind::File { .. } => Kind::File,
        NodeKind::Dir { .. } => Kind::Dir,
        NodeKind::Symlink { .. } => Kind::Symlink,
        NodeKind::Fifo => Kind::Fifo,
        NodeKind::CharDevice { .. } => Kind::CharDevice,
        NodeKind::BlockDevice { .. } => Kind::BlockDevice,
        NodeKind::Socket => Kind::Socket,
    }
}

#[derive(Debug, Default)]
struct Table {
    /// Inode `n` is `inodes[n - 1]`.
    inodes: Vec<Arc<Inode>>,
    /// (snapshot, hardlink group) to the inode its files share.
    hardlinks: HashMap<(usize, u64), u64>,
}

impl Table {
    fn add(&mut self, inode: Inode) -> u64 {
        self.inodes.push(Arc::new(inode));
        self.inodes.len() as u64
    }
}

/// One snapshot, or a set of snapshots laid out by id, time, host and tag, as a read-only file
/// system.
#[derive(Debug)]
pub struct SnapshotFs {
    repo: Arc<Repository>,
    options: FsOptions,
    table: RwLock<Table>,
    blobs: content::BlobCache,
}

impl SnapshotFs {
    /// A file system whose root is `snapshot`'s root.
    pub fn single(repo: Arc<Repository>, snapshot: &Snapshot, options: FsOptions) -> Self {
        let fs = Self::empty(repo, options);
        let root = Source::SnapshotRoot { snap: 0, tree: snapshot.tree, time_ns: snapshot.time_ns };
        fs.write_table().add(Inode::new(ROOT, root));
        fs
    }

    /// A file system of `snapshots` (oldest first): `ids/ID/` holds each snapshot's files, and
    /// `snapshots/TIME`, `hosts/HOST/TIME` and `tags/TAG/TIME` are links to it, with a `latest`
    /// link in each of those directories.
    pub fn all(repo: Arc<Repository>, snapshots: &[(ObjectId, Snapshot)], options: FsOptions) -> Self {
        let fs = Self::empty(repo, options);
        layout::build(&mut fs.write_table(), snapshots);
        fs
    }

    fn empty(repo: Arc<Repository>, options: FsOptions) -> Self {
        let blobs = content::BlobCache::new(options.cache_bytes);
        SnapshotFs { repo, options, table: RwLock::new(Table::default()), blobs }
    }

    fn write_table(&self) -> std::sync::RwLockWriteGuard<'_, Table> {
        self.table.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn inode(&self, ino: u64) -> FsResult<Arc<Inode>> {
        let table = self.table.read().unwrap_or_else(PoisonError::into_inner);
        let index = usize::try_from(ino.checked_sub(1).ok_or(FsError::NotFound)?).map_err(|_| FsError::NotFound)?;
        table.inodes.get(index).cloned().ok_or(FsError::NotFound)
    }

    /// The attributes of inode `ino`.
    pub fn attr(&self, ino: u64) -> FsResult<Attr> {
        let inode = self.inode(ino)?;
        let made_up = |kind, size, perm, time_ns| Attr {
            ino,
            kind,
            size,
            allocated: size,
            perm,
            nlink: if kind == Kind::Dir { 2 } else { 1 },
            uid: self.options.uid,
            gid: self.options.gid,
            rdev: 0,
            atime_ns: time_ns,
            mtime_ns: time_ns,
            ctime_ns: time_ns,
        };
        Ok(match &inode.source {
            Source::Virtual { time_ns } | Source::SnapshotRoot { time_ns, .. } => {
                made_up(Kind::Dir, 0, 0o555, *time_ns)
            }
            Source::Link { target, time_ns } => made_up(Kind::Symlink, target.len() as u64, 0o777, *time_ns),
            Source::Node { node, .. } => node_attr(ino, node),
        })
    }

    /// The entry `name` of directory `parent`, with its attributes.
    pub fn lookup(&self, parent: u64, name: &[u8]) -> FsResult<Attr> {
        let entries = self.entries(parent)?;
        let found = entries.binary_search_by(|e| e.name.as_slice().cmp(name)).map_err(|_| FsError::NotFound)?;
        let ino = entries.get(found).ok_or(FsError::NotFound)?.ino;
        self.attr(ino)
    }

    /// The parent directory of directory `ino` (the root is its own parent).
    pub fn parent(&self, ino: u64) -> FsResult<u64> {
        Ok(self.inode(ino)?.parent)
    }

    /// The entries of directory `ino`, sorted by name (without `.` and `..`).
    pub fn entries(&self, dir: u64) -> FsResult<Arc<[DirEntry]>> {
        let inode = self.inode(dir)?;
        if let Some(entries) = inode.entries.get() {
            return Ok(entries.clone());
        }
        let (snap, tree) = match &inode.source {
            Source::SnapshotRoot { snap, tree, .. } => (*snap, *tree),
            Source::Node { snap, node } => match &node.kind {
                NodeKind::Dir { subtree } => (*snap, *subtree),
                _ => return Err(FsError::NotDir),
            },
            Source::Virtual { .. } => return Ok(Arc::from(Vec::new())),
            Source::Link { .. } => return Err(FsError::NotDir),
        };
        let tree = self.repo.load_tree(&tree)?;
        let entries: Arc<[DirEntry]> = {
            let mut table = self.write_table();
            // Another thread may have listed it meanwhile; its inodes are the ones to keep.
            if let Some(entries) = inode.entries.get() {
                return Ok(entries.clone());
            }
            let made: Vec<DirEntry> = tree
                .nodes
                .into_iter()
                .map(|node| {
                    let (name, kind) = (node.name.clone(), kind_of(&node.kind));
                    let group = match node.kind {
                        NodeKind::File { .. } => node.hardlink_group,
                        _ => None,
                    };
                    let ino = match group.and_then(|g| table.hardlinks.get(&(snap, g)).copied()) {
                        Some(shared) => shared,
                        None => {
                            let ino = table.add(Inode::new(dir, Source::Node { snap, node: Box::new(node) }));
                            if let Some(g) = group {
                                table.hardlinks.insert((snap, g), ino);
                            }
                            ino
                        }
                    };
                    DirEntry { name, ino, kind }
                })
                .collect();
            let made: Arc<[DirEntry]> = Arc::from(made);
            let _ = inode.entries.set(made.clone());
            made
        };
        Ok(entries)
    }

    /// The target of symbolic link `ino`.
    pub fn readlink(&self, ino: u64) -> FsResult<Vec<u8>> {
        let inode = self.inode(ino)?;
        match &inode.source {
            Source::Link { target, .. } => Ok(target.clone()),
            Source::Node { node, .. } => match &node.kind {
                NodeKind::Symlink { target } => Ok(target.clone()),
                _ => Err(FsError::NotSymlink),
            },
            _ => Err(FsError::NotSymlink),
        }
    }

    /// The extended attributes of `ino` (name, value), sorted by name.
    pub fn xattrs(&self, ino: u64) -> FsResult<Vec<(Vec<u8>, Vec<u8>)>> {
        let inode = self.inode(ino)?;
        Ok(match &inode.source {
            Source::Node { node, .. } => node.xattrs.clone(),
            _ => Vec::new(),
        })
    }

    /// Checks that `ino` is a regular file whose content can be read, and works out where its
    /// bytes are (one index lookup per chunk; kept for later opens and reads).
    pub fn open(&self, ino: u64) -> FsResult<()> {
        self.layout(ino).map(|_| ())
    }

    /// Up to `size` bytes of file `ino` from `offset` (fewer only at the end of the file);
    /// every blob read is verified against its id, so these are the bytes backed up.
    pub fn read(&self, ino: u64, offset: u64, size: u32) -> FsResult<Vec<u8>> {
        let layout = self.layout(ino)?;
        layout.read(&self.repo, &self.blobs, offset, u64::from(size))
    }

    fn layout(&self, ino: u64) -> FsResult<Arc<content::FileLayout>> {
        let inode = self.inode(ino)?;
        if let Some(layout) = inode.layout.get() {
            return Ok(layout.clone());
        }
        let Source::Node { node, .. } = &inode.source else { return Err(FsError::NotFile) };
        if kind_of(&node.kind) != Kind::File {
            return Err(FsError::NotFile);
        }
        let made = Arc::new(content::FileLayout::new(&self.repo, node)?);
        Ok(inode.layout.get_or_init(|| made).clone())
    }
}

fn node_attr(ino: u64, node: &Node) -> Attr {
    let size = match &node.kind {
        NodeKind::Symlink { target } => target.len() as u64,
        _ => node.size,
    };
    let rdev = match node.kind {
        NodeKind::CharDevice { rdev } | NodeKind::BlockDevice { rdev } => rdev,
        _ => 0,
    };
    let kind = kind_of(&node.kind);
    let holes: u64 = match &node.kind {
        NodeKind::File { holes, .. } => holes.iter().fold(0u64, |sum, &(_, len)| sum.saturating_add(len)),
        _ => 0,
    };
    Attr {
        ino,
        kind,
        size,
        allocated: size.saturating_sub(holes),
        perm: (node.mode & 0o7777) as u16,
        nlink: if kind == Kind::Dir { 2 } else { u32::try_from(node.links.max(1)).unwrap_or(u32::MAX) },
        uid: node.uid,
        gid: node.gid,
        rdev,
        atime_ns: node.atime_ns,
        mtime_ns: node.mtime_ns,
        ctime_ns: node.ctime_ns,
    }
}
