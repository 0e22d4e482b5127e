//! Turns `lstat` results into tree nodes (metadata only; content is the caller's job).

use std::fs::Metadata;
use std::os::unix::fs::{FileTypeExt, MetadataExt};

use crate::format::tree::{Node, NodeKind};

fn ns(secs: i64, nsec: i64) -> i64 {
    secs.saturating_mul(1_000_000_000).saturating_add(nsec)
}

/// A node named `name` with `kind` and the metadata of `m`.
pub(crate) fn node_from_metadata(name: Vec<u8>, kind: NodeKind, m: &Metadata) -> Node {
    Node {
        name,
        kind,
        mode: m.mode(),
        uid: m.uid(),
        gid: m.gid(),
        user: None,
        group: None,
        size: m.size(),
        mtime_ns: ns(m.mtime(), m.mtime_nsec()),
        atime_ns: ns(m.atime(), m.atime_nsec()),
        ctime_ns: ns(m.ctime(), m.ctime_nsec()),
        inode: m.ino(),
        device: m.dev(),
        links: m.nlink(),
        hardlink_group: None,
        xattrs: Vec::new(),
        flags: 0,
    }
}

/// The node kind for special files (not files, directories or symlinks).
pub(crate) fn special_kind(m: &Metadata) -> Option<NodeKind> {
    let ft = m.file_type();
    if ft.is_fifo() {
        Some(NodeKind::Fifo)
    } else if ft.is_char_device() {
        Some(NodeKind::CharDevice { rdev: m.rdev() })
    } else if ft.is_block_device() {
        Some(NodeKind::BlockDevice { rdev: m.rdev() })
    } else if ft.is_socket() {
        Some(NodeKind::Socket)
    } else {
        None
    }
}
