//! `cairn ls SNAPSHOT [PATH] [--long]`

use cairn_engine::format::tree::{Node, NodeKind};
use cairn_engine::trees::{Resolved, resolve, walk};
use std::os::unix::ffi::OsStrExt;

use crate::args::{GlobalArgs, LsArgs};
use crate::{exit, output_node};

pub fn run(g: &GlobalArgs, a: &LsArgs) -> anyhow::Result<i32> {
    let repo = super::open(g)?;
    let (_, snap) = super::find_snapshot(&repo, &a.snapshot, &a.filter)?;
    let path = a.path.as_ref().map(|p| p.as_os_str().as_bytes().to_vec()).unwrap_or_default();
    let mut docs = Vec::new();
    let mut out = std::io::stdout().lock();
    let json = g.json;
    let quiet = g.quiet;
    // Entries are printed as they are walked: memory stays flat however large the snapshot.
    let mut emit = |p: &[u8], n: &Node| -> cairn_engine::Result<()> {
        if json {
            docs.push(output_node::json(p, n));
        } else if !quiet {
            output_node::write_line(&mut out, p, n, a.long)
                .map_err(|e| cairn_engine::Error::Target { path: "-".into(), source: e })?;
        }
        Ok(())
    };
    match super::hint_snapshot_paths(resolve(&repo, snap.tree, &path), &snap)? {
        Resolved::Root(id) => walk(&repo, id, b"", &mut emit)?,
        Resolved::Node(p, n) => {
            emit(&p, &n)?;
            if let NodeKind::Dir { subtree } = n.kind {
                walk(&repo, subtree, &p, &mut emit)?;
            }
        }
    }
    if json {
        crate::output::json(&docs)?;
    }
    Ok(exit::OK)
}
