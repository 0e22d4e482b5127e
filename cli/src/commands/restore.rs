//! `cairn restore SNAPSHOT[:PATH] --target DIR`

use std::time::Instant;

use cairn_engine::restore::{Overwrite, RestoreOptions, restore};

use crate::args::{GlobalArgs, OverwriteArg, RestoreArgs};
use crate::progress::TermProgress;
use crate::{exit, output};

pub fn run(g: &GlobalArgs, a: &RestoreArgs) -> anyhow::Result<i32> {
    let repo = super::open(g)?;
    super::audited(&repo, super::Operation::Restore, |rec| {
        let _lock = super::read_lock(g, &repo, "restore")?;
        let (spec, subpath) = super::split_snapshot_path(&a.snapshot);
        let (id, snap) = super::find_snapshot(&repo, spec, &a.filter)?;
        rec.detail = format!("snapshot {} to {}", id.to_hex(), a.target.display());
        let opts = RestoreOptions {
            target: a.target.clone(),
            subpath: subpath.as_bytes().to_vec(),
            numeric_owner: a.numeric_owner,
            restore_flags: a.restore_flags,
            include: a.includes.clone(),
            exclude: a.excludes.clone(),
            overwrite: match a.overwrite {
                OverwriteArg::Always => Overwrite::Always,
                OverwriteArg::IfChanged => Overwrite::IfChanged,
                OverwriteArg::IfNewer => Overwrite::IfNewer,
                OverwriteArg::Never => Overwrite::Never,
            },
            delete: a.delete,
            verify: a.verify,
            flush_files: 0,
        };
        let start = Instant::now();
        let progress = TermProgress::new(g.quiet || g.json);
        let out = super::hint_snapshot_paths(restore(&repo, snap.tree, &opts, &progress), &snap)?;
        let secs = start.elapsed().as_secs_f64();
        let code = if out.damaged.is_empty() { exit::OK } else { exit::PARTIAL };
        let hint = out.damaged.iter().any(|d| d.not_indexed).then_some(
            "blobs are missing from the index: run `cairn check`, then `cairn repair index` (it rebuilds the index \
             from the packs), and restore again",
        );
        if g.json {
            output::json(&serde_json::json!({
                "snapshot_id": id.to_hex(), "target": a.target.display().to_string(),
                "files": out.files, "files_unchanged": out.files_unchanged, "left": out.left,
                "dirs": out.dirs, "symlinks": out.symlinks, "specials": out.specials,
                "hardlinks": out.hardlinks, "deleted": out.deleted, "bytes": out.bytes, "verified": out.verified,
                "damaged": out.damaged.iter().map(|d| serde_json::json!({"path": d.path.display().to_string(), "error": d.message})).collect::<Vec<_>>(),
                "warnings": out.warnings, "hint": hint, "duration_seconds": secs, "exit_code": code,
            }))?;
        } else if !g.quiet {
            for w in &out.warnings {
                eprintln!("warning: {w}");
            }
            println!(
                "restored snapshot {} to {}: {} files written, {} already right, {} left as they were, {} dirs, {} symlinks, {} in {:.1}s",
                &id.to_hex()[..12],
                a.target.display(),
                out.files,
                out.files_unchanged,
                out.left,
                out.dirs,
                out.symlinks,
                output::bytes(out.bytes),
                secs
            );
            if a.delete {
                println!("{} entries not in the snapshot deleted", out.deleted);
            }
            if a.verify {
                println!("{} files verified", out.verified);
            }
        }
        if !out.damaged.is_empty() {
            eprintln!(
                "{} file(s) or directories could not be restored (everything else was; nothing wrong was left behind):",
                out.damaged.len()
            );
            for d in &out.damaged {
                eprintln!("  {}: {}", d.path.display(), d.message);
            }
            if let Some(hint) = hint {
                eprintln!("hint: {hint}");
            }
        }
        Ok(code)
    })
}
