//! `cairn ls SNAPSHOT [PATH]`

use std::io::Write;
use std::os::unix::ffi::OsStrExt;

use cairn_engine::format::tree::{Node, NodeKind};
use cairn_engine::ls::{Resolved, resolve, walk};

use crate::args::{GlobalArgs, LsArgs};
use crate::exit;

fn kind(n: &Node) -> &'static str {
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

pub fn run(g: &GlobalArgs, a: &LsArgs) -> anyhow::Result<i32> {
    let repo = super::open(g)?;
    let (_, snap) = repo.find_snapshot(&a.snapshot)?;
    let path = a.path.as_ref().map(|p| p.as_os_str().as_bytes().to_vec()).unwrap_or_default();
    let mut entries: Vec<(Vec<u8>, Node)> = Vec::new();
    let mut collect = |p: &[u8], n: &Node| {
        entries.push((p.to_vec(), n.clone()));
        Ok(())
    };
    match resolve(&repo, snap.tree, &path)? {
        Resolved::Root(id) => walk(&repo, id, b"", &mut collect)?,
        Resolved::Node(p, n) => {
            if let NodeKind::Dir { subtree } = n.kind {
                collect(&p, &n)?;
                walk(&repo, subtree, &p, &mut collect)?;
            } else {
                collect(&p, &n)?;
            }
        }
    }
    if g.json {
        let docs: Vec<_> = entries
            .iter()
            .map(|(p, n)| {
                let mut doc = serde_json::json!({
                    "path": format!("/{}", String::from_utf8_lossy(p)),
                    "type": kind(n), "size": n.size, "mode": n.mode, "uid": n.uid, "gid": n.gid, "mtime_ns": n.mtime_ns,
                });
                if let NodeKind::Symlink { target } = &n.kind {
                    doc["target"] = serde_json::Value::String(String::from_utf8_lossy(target).into_owned());
                }
                doc
            })
            .collect();
        crate::output::json(&docs)?;
    } else if !g.quiet {
        // Raw bytes: names that are not UTF-8 print as they are.
        let mut out = std::io::stdout().lock();
        for (p, _) in &entries {
            out.write_all(b"/")?;
            out.write_all(std::ffi::OsStr::from_bytes(p).as_bytes())?;
            out.write_all(b"\n")?;
        }
    }
    Ok(exit::OK)
}
