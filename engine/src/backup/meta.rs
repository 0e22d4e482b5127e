//! Turns `lstat` results into tree nodes (metadata only; content is the caller's job).

use crate::format::tree::{Node, NodeKind};
use crate::hostfs::{OwnerNames, Stat};

/// A node named `name` with `kind` and the metadata of `st`, owner names included.
pub(crate) fn node_from_stat(name: Vec<u8>, kind: NodeKind, st: &Stat, owners: &OwnerNames) -> Node {
    Node {
        name,
        kind,
        mode: st.mode,
        uid: st.uid,
        gid: st.gid,
        user: owners.user_name(st.uid),
        group: owners.group_name(st.gid),
        size: st.size,
        mtime_ns: st.mtime_ns,
        atime_ns: st.atime_ns,
        ctime_ns: st.ctime_ns,
        inode: st.ino,
        device: st.dev,
        links: st.nlink,
        hardlink_group: None,
        xattrs: Vec::new(),
        flags: 0,
    }
}

/// Whether the file behind `st` is the one `parent` recorded, unchanged: same size, mtime,
/// ctime, inode and device. ctime moves with every content, mode, owner, xattr, flag or link
/// change, so an unchanged file can reuse the parent's chunks, xattrs and flags unread.
pub(crate) fn unchanged_since(parent: &Node, st: &Stat) -> bool {
    matches!(parent.kind, NodeKind::File { .. })
        && parent.size == st.size
        && parent.mtime_ns == st.mtime_ns
        && parent.ctime_ns == st.ctime_ns
        && parent.inode == st.ino
        && parent.device == st.dev
}

/// The hardlink group of inode (`dev`, `ino`): stable across runs, so unchanged directories
/// still encode to the same tree blob, and equal for every link to the inode.
pub(crate) fn hardlink_group(dev: u64, ino: u64) -> u64 {
    let mut h = blake3::Hasher::new_derive_key("cairn v1 2026-11-24 hardlink group");
    h.update(&dev.to_le_bytes());
    h.update(&ino.to_le_bytes());
    u64::from_le_bytes(h.finalize().as_bytes().first_chunk::<8>().copied().unwrap_or_default())
}
