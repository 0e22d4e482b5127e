//! Spec: format-spec/SPEC.md#trees
//!
//! A tree blob is one directory: its entries sorted by raw name bytes (names are bytes, not
//! UTF-8), each with its kind-specific payload and metadata. Identical directories produce
//! identical bytes and dedup like any blob. Fields for hardlinks, xattrs, sparse files, devices
//! and file flags exist from version 1 so later features need no format change.

use serde::{Deserialize, Serialize};

use crate::codec::{decode_versioned, decode_versioned_borrowed, encode_versioned};
use crate::error::{Error, Result};
use crate::id::ChunkId;

/// Payload version of a tree.
pub const TREE_VERSION: u8 = 1;

/// What a node is, with what only that kind has.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeKind {
    /// A regular file: its content is the concatenation of `chunks`, with `holes` (offset,
    /// length) of zeros inserted where the source was sparse.
    File {
        /// Content chunks in order.
        chunks: Vec<ChunkId>,
        /// Sparse holes (empty when the file is dense).
        holes: Vec<(u64, u64)>,
    },
    /// A directory and its tree blob.
    Dir {
        /// Tree blob id.
        subtree: ChunkId,
    },
    /// A symbolic link (target as raw bytes; may dangle).
    Symlink {
        /// Link target.
        target: Vec<u8>,
    },
    /// A named pipe.
    Fifo,
    /// A character device.
    CharDevice {
        /// Device number.
        rdev: u64,
    },
    /// A block device.
    BlockDevice {
        /// Device number.
        rdev: u64,
    },
    /// A Unix socket (recorded, never restored).
    Socket,
}

/// One directory entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// File name, raw bytes, never containing `/` or NUL, never `.` or `..`.
    pub name: Vec<u8>,
    /// Kind and kind-specific payload.
    pub kind: NodeKind,
    /// st_mode permission and type bits.
    pub mode: u32,
    /// Owner id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
    /// Owner name when known.
    pub user: Option<String>,
    /// Group name when known.
    pub group: Option<String>,
    /// Size in bytes (files: content length; others: st_size).
    pub size: u64,
    /// Modification time, ns since the Unix epoch.
    pub mtime_ns: i64,
    /// Access time, ns since the Unix epoch.
    pub atime_ns: i64,
    /// Status change time, ns since the Unix epoch (recorded, not restorable).
    pub ctime_ns: i64,
    /// Inode number at backup time (incremental change detection).
    pub inode: u64,
    /// Device at backup time (incremental change detection, one-file-system).
    pub device: u64,
    /// Hard link count at backup time.
    pub links: u64,
    /// Hardlink group within the snapshot (files sharing an inode share a group).
    pub hardlink_group: Option<u64>,
    /// Extended attributes (name, value), sorted by name.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// Inode flags (FS_IOC_GETFLAGS), 0 when unknown.
    pub flags: u32,
}

impl Node {
    /// A node named `name` of `kind` with permission and type bits `mode`; every other field
    /// zero or empty (callers fill in what they know).
    pub fn new(name: Vec<u8>, kind: NodeKind, mode: u32) -> Self {
        Node {
            name,
            kind,
            mode,
            uid: 0,
            gid: 0,
            user: None,
            group: None,
            size: 0,
            mtime_ns: 0,
            atime_ns: 0,
            ctime_ns: 0,
            inode: 0,
            device: 0,
            links: 1,
            hardlink_group: None,
            xattrs: Vec::new(),
            flags: 0,
        }
    }

    /// Whether this is a directory.
    pub fn is_dir(&self) -> bool {
        let NodeKind::Dir { .. } = self.kind else { return false };
        true
    }

    /// Whether `name` may appear in a tree.
    pub fn valid_name(name: &[u8]) -> bool {
        !name.is_empty() && name != b"." && name != b".." && !name.contains(&b'/') && !name.contains(&0)
    }
}

/// A directory's plaintext.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Tree {
    /// Entries, strictly increasing by name bytes.
    pub nodes: Vec<Node>,
}

impl Tree {
    /// Plaintext bytes. Sorts the nodes first so equal directories encode equally.
    pub fn encode(&mut self) -> Vec<u8> {
        self.nodes.sort_by(|a, b| a.name.cmp(&b.name));
        encode_versioned(TREE_VERSION, self)
    }

    /// Parses plaintext and checks names are valid, unique and sorted.
    pub fn decode(bytes: &[u8], object: &str) -> Result<Self> {
        let t: Tree = decode_versioned(bytes, TREE_VERSION, object)?;
        for pair in t.nodes.windows(2) {
            if let [a, b] = pair
                && a.name >= b.name
            {
                return Err(Error::corrupt(object, "tree entries are not strictly sorted"));
            }
        }
        if let Some(bad) = t.nodes.iter().find(|n| !Node::valid_name(&n.name)) {
            return Err(Error::corrupt(object, format!("invalid entry name {:?}", String::from_utf8_lossy(&bad.name))));
        }
        Ok(t)
    }

    /// What this tree refers to, as [`TreeRefs::decode`] finds it in the encoded tree.
    pub fn refs(&self) -> TreeRefs {
        let mut refs = TreeRefs::default();
        for node in &self.nodes {
            match &node.kind {
                NodeKind::File { chunks, .. } => refs.chunks.extend(chunks),
                NodeKind::Dir { subtree } => refs.subtrees.push(*subtree),
                _ => {}
            }
        }
        refs
    }

    /// The node named `name`.
    pub fn find(&self, name: &[u8]) -> Option<&Node> {
        self.nodes.binary_search_by(|n| n.name.as_slice().cmp(name)).ok().and_then(|i| self.nodes.get(i))
    }
}

/// What a tree refers to, for walks that need only that (prune's mark phase, `stats`): its
/// subdirectories' trees and its files' chunks, in entry order. Decoded without building the
/// entries (names and strings are borrowed, metadata skipped), and exactly as strictly as
/// [`Tree::decode`]: the same bytes are accepted and rejected.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TreeRefs {
    /// Subdirectory trees, in entry order.
    pub subtrees: Vec<ChunkId>,
    /// Content chunks of every file, in entry order (a chunk used twice is listed twice).
    pub chunks: Vec<ChunkId>,
}

impl TreeRefs {
    /// Parses a tree's plaintext as [`Tree::decode`] does, keeping only the references.
    pub fn decode(bytes: &[u8], object: &str) -> Result<Self> {
        let view: TreeView<'_> = decode_versioned_borrowed(bytes, TREE_VERSION, object)?;
        let mut refs = TreeRefs::default();
        let mut previous: Option<&[u8]> = None;
        for node in view.nodes {
            if previous.is_some_and(|p| p >= node.name) {
                return Err(Error::corrupt(object, "tree entries are not strictly sorted"));
            }
            if !Node::valid_name(node.name) {
                return Err(Error::corrupt(
                    object,
                    format!("invalid entry name {:?}", String::from_utf8_lossy(node.name)),
                ));
            }
            previous = Some(node.name);
            match node.kind {
                KindView::File { chunks, .. } => refs.chunks.extend(chunks),
                KindView::Dir { subtree } => refs.subtrees.push(subtree),
                _ => {}
            }
        }
        Ok(refs)
    }
}

/// [`Tree`] as stored, borrowing what it can: field for field the same serde shape, so postcard
/// reads the same bytes (a `Vec<u8>` and a `&[u8]` are both a length and the bytes; a `String`
/// and a `&str` too, checked as UTF-8 alike). `tree_refs_match_full_decoding` and the tree
/// fuzz target hold the two to the same answers.
#[derive(Deserialize)]
struct TreeView<'a> {
    #[serde(borrow)]
    nodes: Vec<NodeView<'a>>,
}

/// [`Node`], borrowed; only `name` and `kind` are used, the rest is read to be skipped.
#[derive(Deserialize)]
#[allow(dead_code)]
struct NodeView<'a> {
    name: &'a [u8],
    #[serde(borrow)]
    kind: KindView<'a>,
    mode: u32,
    uid: u32,
    gid: u32,
    user: Option<&'a str>,
    group: Option<&'a str>,
    size: u64,
    mtime_ns: i64,
    atime_ns: i64,
    ctime_ns: i64,
    inode: u64,
    device: u64,
    links: u64,
    hardlink_group: Option<u64>,
    #[serde(borrow)]
    xattrs: Vec<(&'a [u8], &'a [u8])>,
    flags: u32,
}

/// [`NodeKind`], borrowed.
#[derive(Deserialize)]
#[allow(dead_code)]
enum KindView<'a> {
    File { chunks: Vec<ChunkId>, holes: Vec<(u64, u64)> },
    Dir { subtree: ChunkId },
    Symlink { target: &'a [u8] },
    Fifo,
    CharDevice { rdev: u64 },
    BlockDevice { rdev: u64 },
    Socket,
}
