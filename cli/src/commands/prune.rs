//! `cairn prune [--dry-run] [--max-unused P] [--max-repack-size SIZE] [--instant-delete]
//! [--grace-period DURATION] [--accept-missing ID,...]`

use std::time::Instant;

use cairn_engine::audit::AuditRecord;
use cairn_engine::prune::{PruneOptions, prune};
use cairn_engine::{Progress, Repository};

use crate::args::{GlobalArgs, PruneArgs, PruneOpts};
use crate::progress::TermProgress;
use crate::{exit, output};

pub fn run(g: &GlobalArgs, a: &PruneArgs) -> anyhow::Result<i32> {
    let mut repo = super::open(g)?;
    // Prune deletes: it judges the trees the storage holds, never the client's copy of them.
    repo.set_tree_pack_cache(false);
    let progress = TermProgress::new(g.quiet || g.json);
    super::audited(&repo, super::Operation::Prune, |rec| run_with(g, &a.opts, a.dry_run, &repo, &progress, rec))
}

/// Prune with an exclusive lock (shared with `forget --prune`).
pub fn run_with(
    g: &GlobalArgs,
    o: &PruneOpts,
    dry_run: bool,
    repo: &Repository,
    progress: &dyn Progress,
    rec: &mut AuditRecord,
) -> anyhow::Result<i32> {
    if !(0.0..=100.0).contains(&o.max_unused) {
        bail_usage!("--max-unused is a percentage between 0 and 100");
    }
    if dry_run && !o.accept_missing.is_empty() {
        bail_usage!("--accept-missing writes to the audit log; run it without --dry-run");
    }
    let _lock = super::lock(g, repo, true, "prune")?;
    if !o.accept_missing.is_empty() {
        accept_missing(repo, &o.accept_missing)?;
    }
    let opts = PruneOptions {
        max_unused: o.max_unused / 100.0,
        max_repack_size: o.max_repack_size,
        reencrypt_epoch: o.reencrypt_epoch,
        instant_delete: o.instant_delete,
        grace_period: o.grace_period,
    };
    let start = Instant::now();
    let out = prune(repo, opts, dry_run, progress)?;
    if !out.unreadable_snapshots.is_empty() {
        let err = cairn_engine::Error::SnapshotsUnreadable { snapshots: out.unreadable_snapshots.clone() };
        if dry_run && out.changes_anything() {
            eprintln!("cairn: warning: a prune without --dry-run would refuse to run: {err}");
        } else {
            eprintln!("cairn: warning: nothing to delete, so the snapshots that cannot be read did not matter: {err}");
        }
    }
    let p = &out.plan;
    let sw = &out.sweep;
    if !dry_run {
        rec.packs_created += out.packs_written;
        rec.packs_deleted += sw.delete_now.len() as u64;
    }
    if let Some(why) = &out.marks_distrusted {
        eprintln!("cairn: warning: earlier deletion marks not used, every unreferenced pack marked afresh: {why}");
    }
    rec.detail = format!(
        "{}{} bytes freed, {} pack(s) ({} bytes) marked for deletion{}",
        if dry_run { "dry run: " } else { "" },
        sw.delete_now_bytes,
        sw.pending.len(),
        sw.pending_bytes,
        o.reencrypt_epoch
            .map(|e| format!(
                "; epoch {e} re-encrypted: {} pack(s), {} object(s)",
                out.packs_reencrypted, out.objects_resealed
            ))
            .unwrap_or_default()
    );
    if out.leftovers_removed.0 > 0 && !g.quiet && !g.json {
        println!(
            "removed {} temporary file(s) ({}) left by interrupted writes",
            out.leftovers_removed.0,
            output::bytes(out.leftovers_removed.1)
        );
    }
    crate::metrics::record("bytes_freed", "Bytes the repository shrank by.", sw.delete_now_bytes as f64);
    crate::metrics::record("packs_deleted", "Packs deleted.", sw.delete_now.len() as f64);
    crate::metrics::record("packs_marked", "Packs marked for deletion by a later prune.", sw.pending.len() as f64);
    if g.json {
        output::json(&serde_json::json!({
            "dry_run": dry_run, "used_blobs": out.used_blobs,
            "unused_packs": p.delete.len(), "orphan_packs": p.orphans.len(), "packs_repacked": p.repack.len(),
            "packs_deleted": sw.delete_now.len(), "packs_marked": sw.pending.len(), "packs_newly_marked": sw.newly_marked,
            "packs_kept": p.keep, "packs_written": out.packs_written,
            "bytes_freed": sw.delete_now_bytes, "bytes_marked": sw.pending_bytes,
            "bytes_repacked": p.repack_bytes, "unused_bytes_kept": p.unused_bytes_kept,
            "index_segments_written": out.segments_written, "index_segments_deleted": out.segments_deleted,
            "instant_delete": o.instant_delete, "grace_period_seconds": o.grace_period.as_secs(),
            "duration_seconds": start.elapsed().as_secs_f64(),
            "temporary_files_removed": out.leftovers_removed.0, "temporary_bytes_removed": out.leftovers_removed.1,
        }))?;
    } else if !g.quiet {
        println!(
            "{}: {} unused pack(s) and {} orphan pack(s), repack {} ({}), keep {}; delete {} pack(s) ({} freed); {} pack(s) ({}) marked, deleted by a prune after {} if still unreferenced; {} unused left in kept packs",
            if dry_run { "prune plan" } else { "pruned" },
            p.delete.len(),
            p.orphans.len(),
            p.repack.len(),
            output::bytes(p.repack_bytes),
            p.keep,
            sw.delete_now.len(),
            output::bytes(sw.delete_now_bytes),
            sw.pending.len(),
            output::bytes(sw.pending_bytes),
            humane(o.grace_period),
            output::bytes(p.unused_bytes_kept)
        );
    }
    Ok(exit::OK)
}

/// A grace period for messages: `24h`, `90m`, `30s`.
fn humane(d: std::time::Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 && s.is_multiple_of(3600) {
        format!("{}h", s / 3600)
    } else if s >= 60 && s.is_multiple_of(60) {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

/// Resolves `specs` (ids or unique prefixes) among the snapshots the audit log misses and
/// records them as gone (an audit entry of their own, written before the prune).
fn accept_missing(repo: &Repository, specs: &[String]) -> anyhow::Result<()> {
    let missing = repo.missing_snapshots()?;
    let mut ids = Vec::new();
    for spec in specs {
        let spec_lc = spec.to_ascii_lowercase();
        let matches: Vec<_> = missing.iter().filter(|id| id.to_hex().starts_with(&spec_lc)).collect();
        match matches.as_slice() {
            [id] => ids.push(**id),
            [] => anyhow::bail!("--accept-missing {spec}: no snapshot the audit log misses has this id"),
            _ => anyhow::bail!(
                "--accept-missing {spec}: {} missing snapshots match; give more characters",
                matches.len()
            ),
        }
    }
    repo.accept_missing(&super::actor(), &ids)?;
    Ok(())
}
