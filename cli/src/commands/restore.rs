//! `cairn restore SNAPSHOT[:PATH] --target DIR`

use std::time::Instant;

use cairn_engine::restore::{RestoreOptions, restore};

use crate::args::{GlobalArgs, RestoreArgs};
use crate::progress::TermProgress;
use crate::{exit, output};

pub fn run(g: &GlobalArgs, a: &RestoreArgs) -> anyhow::Result<i32> {
    let repo = super::open(g)?;
    let (spec, subpath) = super::split_snapshot_path(&a.snapshot);
    let (id, snap) = repo.find_snapshot(spec)?;
    let opts = RestoreOptions {
        target: a.target.clone(),
        subpath: subpath.as_bytes().to_vec(),
        numeric_owner: a.numeric_owner,
        restore_flags: a.restore_flags,
    };
    let start = Instant::now();
    let progress = TermProgress::new(g.quiet || g.json);
    let out = restore(&repo, snap.tree, &opts, &progress)?;
    let secs = start.elapsed().as_secs_f64();
    if g.json {
        output::json(&serde_json::json!({
            "snapshot_id": id.to_hex(), "target": a.target.display().to_string(),
            "files": out.files, "dirs": out.dirs, "symlinks": out.symlinks, "specials": out.specials,
            "hardlinks": out.hardlinks, "bytes": out.bytes,
            "warnings": out.warnings, "duration_seconds": secs,
        }))?;
    } else if !g.quiet {
        for w in &out.warnings {
            eprintln!("warning: {w}");
        }
        println!(
            "restored snapshot {} to {}: {} files, {} dirs, {} symlinks, {} in {:.1}s",
            &id.to_hex()[..12],
            a.target.display(),
            out.files,
            out.dirs,
            out.symlinks,
            output::bytes(out.bytes),
            secs
        );
    }
    Ok(exit::OK)
}
