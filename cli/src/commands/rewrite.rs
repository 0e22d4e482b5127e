//! `cairn rewrite [SNAPSHOT...] --exclude PATTERN [--forget] [--dry-run]`

use anyhow::Context;
use cairn_engine::pattern::PathPatterns;
use cairn_engine::rewrite::rewrite_snapshots;

use crate::args::{GlobalArgs, RewriteArgs};
use crate::{exit, output};

pub fn run(g: &GlobalArgs, a: &RewriteArgs) -> anyhow::Result<i32> {
    let mut patterns = a.excludes.clone();
    for file in &a.exclude_files {
        let text = std::fs::read_to_string(file).with_context(|| format!("reading exclude file {}", file.display()))?;
        patterns.extend(text.lines().map(str::to_string));
    }
    let Some(patterns) = PathPatterns::new(&patterns)? else {
        bail_usage!("say what to leave out: --exclude PATTERN or --exclude-file FILE");
    };
    if a.snapshots.is_empty() && super::snapshot_filter(&a.filter)?.is_empty() {
        bail_usage!("name the snapshots to rewrite, or select them with --host, --tag or --path");
    }
    let repo = super::open(g)?;
    let body = |rec: &mut cairn_engine::audit::AuditRecord| -> anyhow::Result<i32> {
        let chosen = super::chosen_snapshots(&repo, &a.snapshots, &a.filter)?;
        let done = rewrite_snapshots(&repo, chosen, &patterns, a.dry_run)?;
        rec.snapshots_created.extend(done.iter().filter_map(|r| r.new));
        if a.forget && !a.dry_run {
            let old: Vec<_> = done.iter().map(|r| r.old).collect();
            cairn_engine::forget::remove(&repo, &old, &super::actor())?;
            rec.snapshots_deleted.extend(old);
        }
        rec.detail = format!("{} snapshot(s) rewritten", done.len());
        if g.json {
            output::json(&serde_json::json!({
                "dry_run": a.dry_run,
                "rewritten": done.iter().map(|r| serde_json::json!({
                    "old_id": r.old.to_hex(), "new_id": r.new.map(|n| n.to_hex()),
                    "removed": r.removed, "old_forgotten": a.forget && !a.dry_run,
                })).collect::<Vec<_>>(),
            }))?;
        } else if !g.quiet {
            for r in &done {
                let new = r.new.map_or_else(|| "(dry run)".to_string(), |n| n.short());
                println!("{} -> {new}: {} path(s) left out", r.old.short(), r.removed.len());
                for p in &r.removed {
                    println!("  - {p}");
                }
            }
            println!("{} snapshot(s) {}", done.len(), if a.dry_run { "would be rewritten" } else { "rewritten" });
            if !a.forget && !a.dry_run && !done.is_empty() {
                println!("the originals are kept: `cairn forget` them (or rerun with --forget), then `cairn prune`");
            }
        }
        Ok(exit::OK)
    };
    if a.dry_run {
        let _lock = super::read_lock(g, &repo, "rewrite --dry-run")?;
        return body(&mut cairn_engine::audit::AuditRecord::new("rewrite"));
    }
    super::audited(&repo, super::Operation::Rewrite, |rec| {
        let _lock = super::lock(g, &repo, true, "rewrite")?;
        body(rec)
    })
}
