//! `cairn snapshot PATH...`

use std::time::Instant;

use cairn_engine::backup::{BackupOptions, backup};

use crate::args::{GlobalArgs, SnapshotArgs};
use crate::progress::TermProgress;
use crate::{exit, output};

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into())
}

fn username() -> String {
    std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_default()
}

pub fn run(g: &GlobalArgs, a: &SnapshotArgs) -> anyhow::Result<i32> {
    let repo = super::open(g)?;
    let opts = BackupOptions {
        paths: a.paths.clone(),
        tags: a.tags.clone(),
        hostname: a.host.clone().unwrap_or_else(hostname),
        username: username(),
        time_ns: None,
        program: format!("cairn {}", env!("CARGO_PKG_VERSION")),
    };
    let start = Instant::now();
    let progress = TermProgress::new(g.quiet || g.json);
    let out = backup(&repo, &opts, &progress)?;
    let secs = start.elapsed().as_secs_f64();
    let s = &out.snapshot.summary;
    let code = if out.errors.is_empty() { exit::OK } else { exit::PARTIAL };
    if g.json {
        output::json(&serde_json::json!({
            "snapshot_id": out.snapshot_id.to_hex(),
            "files_new": s.files_new, "files_changed": s.files_changed, "files_unchanged": s.files_unchanged,
            "dirs": s.dirs, "others": s.others,
            "bytes_read": s.bytes_read, "bytes_total": s.bytes_total,
            "blobs_added": s.blobs_added, "bytes_added_raw": s.bytes_added_raw, "bytes_added_stored": s.bytes_added_stored,
            "duration_seconds": secs,
            "errors": out.errors.iter().map(|e| serde_json::json!({"path": e.path.display().to_string(), "error": e.message})).collect::<Vec<_>>(),
            "exit_code": code,
        }))?;
    } else if !g.quiet {
        println!(
            "snapshot {} saved: files {} new, {} changed, {} unchanged; {} read, {} added to the repository ({} stored) in {:.1}s",
            &out.snapshot_id.to_hex()[..12],
            s.files_new,
            s.files_changed,
            s.files_unchanged,
            output::bytes(s.bytes_read),
            output::bytes(s.bytes_added_raw),
            output::bytes(s.bytes_added_stored),
            secs
        );
        if !out.errors.is_empty() {
            eprintln!("{} source(s) could not be read:", out.errors.len());
            for e in &out.errors {
                eprintln!("  {}: {}", e.path.display(), e.message);
            }
        }
    }
    Ok(code)
}
