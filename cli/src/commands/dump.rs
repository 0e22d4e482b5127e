//! `cairn dump SNAPSHOT PATH [--archive tar] [-o FILE]`

use std::io::Write;
use std::os::unix::ffi::OsStrExt;

use anyhow::Context;
use cairn_engine::dump::{write_content, write_tar};
use cairn_engine::format::tree::NodeKind;
use cairn_engine::trees::{Resolved, resolve};

use crate::args::{ArchiveArg, DumpArgs, GlobalArgs};
use crate::exit;

pub fn run(g: &GlobalArgs, a: &DumpArgs) -> anyhow::Result<i32> {
    let repo = super::open(g)?;
    super::audited(&repo, super::Operation::Dump, |rec| {
        let (id, snap) = super::find_snapshot(&repo, &a.snapshot, &a.filter)?;
        rec.detail = format!("snapshot {}", id.to_hex());
        let path = a.path.as_os_str().as_bytes();
        let (name, node) = match super::hint_snapshot_paths(resolve(&repo, snap.tree, path), &snap)? {
            Resolved::Node(p, n) => (p.rsplit(|&b| b == b'/').next().unwrap_or(&p).to_vec(), n),
            Resolved::Root(_) => {
                bail_usage!("give a path inside the snapshot (the root itself cannot be dumped; use its top directory)")
            }
        };
        let mut out: Box<dyn Write> = match &a.output {
            Some(file) => Box::new(std::io::BufWriter::new(
                std::fs::File::create(file).with_context(|| format!("creating {}", file.display()))?,
            )),
            None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
        };
        match (a.archive, &node.kind) {
            (Some(ArchiveArg::Tar), _) => {
                write_tar(&repo, &name, &node, &mut out)?;
            }
            (None, NodeKind::File { .. }) => {
                write_content(&repo, &node, &mut out)?;
            }
            (None, NodeKind::Dir { .. }) => bail_usage!("{} is a directory: use --archive tar", a.path.display()),
            (None, _) => bail_usage!("{} is not a regular file: use --archive tar", a.path.display()),
        }
        out.flush()?;
        Ok(exit::OK)
    })
}
