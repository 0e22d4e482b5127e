//! How a tree node is shown: `ls -l`-style text and a JSON object, shared by `ls`, `find` and
//! `diff`.

use std::io::Write;

use cairn_engine::format::tree::{Node, NodeKind};

use crate::output;

/// The node's type as a word.
pub fn kind(n: &Node) -> &'static str {
    match n.kind {
        NodeKind::File { .. } => "file",
        NodeKind::Dir { .. } => "dir",
        NodeKind::Symlink { .. } => "symlink",
        NodeKind::Fifo => "fifo",
        NodeKind::CharDevice { .. } => "chardev",
        NodeKind::BlockDevice { .. } => "blockdev",
        NodeKind::Socket => "socket",
    }
}

/// `drwxr-xr-x`-style mode string, setuid/setgid/sticky included.
pub fn mode_string(n: &Node) -> String {
    let t = match n.kind {
        NodeKind::File { .. } => '-',
        NodeKind::Dir { .. } => 'd',
        NodeKind::Symlink { .. } => 'l',
        NodeKind::Fifo => 'p',
        NodeKind::CharDevice { .. } => 'c',
        NodeKind::BlockDevice { .. } => 'b',
        NodeKind::Socket => 's',
    };
    let m = n.mode;
    let bit = |mask: u32, c: char| if m & mask != 0 { c } else { '-' };
    let special = |x: u32, special: u32, on: char, off: char| match (m & x != 0, m & special != 0) {
        (true, true) => on,
        (false, true) => off,
        (true, false) => 'x',
        (false, false) => '-',
    };
    [
        t,
        bit(0o400, 'r'),
        bit(0o200, 'w'),
        special(0o100, 0o4000, 's', 'S'),
        bit(0o040, 'r'),
        bit(0o020, 'w'),
        special(0o010, 0o2000, 's', 'S'),
        bit(0o004, 'r'),
        bit(0o002, 'w'),
        special(0o001, 0o1000, 't', 'T'),
    ]
    .iter()
    .collect()
}

/// Writes `/path` (raw bytes), preceded by the long columns when `long`.
pub fn write_line(out: &mut dyn Write, path: &[u8], n: &Node, long: bool) -> std::io::Result<()> {
    if long {
        let user = n.user.clone().unwrap_or_else(|| n.uid.to_string());
        let group = n.group.clone().unwrap_or_else(|| n.gid.to_string());
        write!(out, "{} {:>8} {:>8} {:>12} {}  ", mode_string(n), user, group, n.size, output::time(n.mtime_ns))?;
    }
    out.write_all(b"/")?;
    out.write_all(path)?;
    if long && let NodeKind::Symlink { target } = &n.kind {
        out.write_all(b" -> ")?;
        out.write_all(target)?;
    }
    out.write_all(b"\n")
}

/// The node as JSON (paths and names as lossy UTF-8).
pub fn json(path: &[u8], n: &Node) -> serde_json::Value {
    let mut doc = serde_json::json!({
        "path": format!("/{}", String::from_utf8_lossy(path)),
        "type": kind(n), "size": n.size, "mode": n.mode, "permissions": mode_string(n),
        "uid": n.uid, "gid": n.gid, "user": n.user, "group": n.group, "mtime_ns": n.mtime_ns,
    });
    if let NodeKind::Symlink { target } = &n.kind {
        doc["target"] = serde_json::Value::String(String::from_utf8_lossy(target).into_owned());
    }
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(kind: NodeKind, mode: u32) -> Node {
        Node::new(b"x".to_vec(), kind, mode)
    }

    #[test]
    fn mode_strings_like_ls() {
        let file = NodeKind::File { chunks: Vec::new(), holes: Vec::new() };
        assert_eq!(mode_string(&node(file.clone(), 0o100644)), "-rw-r--r--");
        assert_eq!(mode_string(&node(file.clone(), 0o104755)), "-rwsr-xr-x");
        assert_eq!(mode_string(&node(file, 0o102640)), "-rw-r-S---");
        assert_eq!(
            mode_string(&node(NodeKind::Dir { subtree: cairn_engine::ChunkId([0; 32]) }, 0o41777)),
            "drwxrwxrwt"
        );
        assert_eq!(mode_string(&node(NodeKind::Fifo, 0o10600)), "prw-------");
    }
}
