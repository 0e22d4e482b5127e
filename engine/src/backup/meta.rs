//! Turns `lstat` results into tree nodes (metadata only; content is the caller's job).

use rustix::fs::FileType;

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

/// Whether the inode behind `st` is the one `parent` recorded, unchanged: same kind, size,
/// mtime, ctime, inode and device. ctime moves with every content, mode, owner, xattr, flag
/// or link change (but not with atime), so an unchanged entry can reuse what the parent read:
/// a file's chunks, a symlink's target, anyone's xattrs and flags.
pub(crate) fn unchanged_since(parent: &Node, st: &Stat) -> bool {
    let same_kind = match (&parent.kind, st.file_type()) {
        (NodeKind::File { .. }, FileType::RegularFile)
        | (NodeKind::Dir { .. }, FileType::Directory)
        | (NodeKind::Symlink { .. }, FileType::Symlink)
        | (NodeKind::Fifo, FileType::Fifo)
        | (NodeKind::Socket, FileType::Socket) => true,
        (NodeKind::CharDevice { rdev }, FileType::CharacterDevice)
        | (NodeKind::BlockDevice { rdev }, FileType::BlockDevice) => *rdev == st.rdev,
        _ => false,
    };
    same_kind
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
