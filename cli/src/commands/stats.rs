//! `cairn stats [SNAPSHOT...] [--mode restore-size|raw|blobs]`

use cairn_engine::stats::{StatsMode, stats};

use crate::args::{GlobalArgs, StatsArgs, StatsModeArg};
use crate::{exit, output};

pub fn run(g: &GlobalArgs, a: &StatsArgs) -> anyhow::Result<i32> {
    let repo = super::open(g)?;
    let _lock = super::read_lock(g, &repo, "stats")?;
    let chosen = super::chosen_snapshots(&repo, &a.snapshots, &a.filter)?;
    let mode = match a.mode {
        StatsModeArg::RestoreSize => StatsMode::RestoreSize,
        StatsModeArg::Raw => StatsMode::Raw,
        StatsModeArg::Blobs => StatsMode::Blobs,
    };
    let s = stats(&repo, &chosen, mode)?;
    if g.json {
        output::json(&serde_json::json!({
            "mode": format!("{:?}", a.mode).to_lowercase(), "snapshots": s.snapshots,
            "files": s.files, "dirs": s.dirs, "restore_bytes": s.restore_bytes,
            "blobs": s.blobs, "raw_bytes": s.raw_bytes, "stored_bytes": s.stored_bytes, "missing_blobs": s.missing,
        }))?;
    } else if !g.quiet {
        println!("{} snapshot(s)", s.snapshots);
        match mode {
            StatsMode::RestoreSize => {
                println!(
                    "restore size: {} in {} files, {} directories",
                    output::bytes(s.restore_bytes),
                    s.files,
                    s.dirs
                )
            }
            StatsMode::Raw | StatsMode::Blobs => {
                let ratio = if s.stored_bytes > 0 { s.raw_bytes as f64 / s.stored_bytes as f64 } else { 0.0 };
                println!(
                    "{} distinct {}: {} plaintext, {} stored (x{ratio:.2})",
                    s.blobs,
                    if mode == StatsMode::Raw { "blobs" } else { "content blobs" },
                    output::bytes(s.raw_bytes),
                    output::bytes(s.stored_bytes)
                );
            }
        }
        if s.missing > 0 {
            eprintln!(
                "cairn: warning: {} blob(s) the snapshots use are not in the index: run `cairn check`",
                s.missing
            );
        }
    }
    Ok(exit::OK)
}
