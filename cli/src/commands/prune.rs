//! `cairn prune [--dry-run] [--max-unused P] [--max-repack-size SIZE]`

use std::time::Instant;

use cairn_engine::audit::AuditRecord;
use cairn_engine::prune::{PruneOptions, prune};
use cairn_engine::{Progress, Repository};

use crate::args::{GlobalArgs, PruneArgs, PruneOpts};
use crate::progress::TermProgress;
use crate::{exit, output};

pub fn run(g: &GlobalArgs, a: &PruneArgs) -> anyhow::Result<i32> {
    let repo = super::open(g)?;
    let progress = TermProgress::new(g.quiet || g.json);
    super::audited(&repo, "prune", super::AuditNeed::Required, |rec| {
        run_with(g, &a.opts, a.dry_run, &repo, &progress, rec)
    })
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
        anyhow::bail!("--max-unused is a percentage between 0 and 100");
    }
    let _lock = super::lock(g, repo, true, "prune")?;
    let opts = PruneOptions {
        max_unused: o.max_unused / 100.0,
        max_repack_size: o.max_repack_size,
        reencrypt_epoch: o.reencrypt_epoch,
    };
    let start = Instant::now();
    let out = prune(repo, opts, dry_run, progress)?;
    let p = &out.plan;
    if !dry_run {
        rec.packs_created += out.packs_written;
        rec.packs_deleted += (p.delete.len() + p.orphans.len() + p.repack.len()) as u64;
    }
    rec.detail = format!(
        "{}{} bytes freed{}",
        if dry_run { "dry run: " } else { "" },
        p.bytes_freed(),
        o.reencrypt_epoch
            .map(|e| format!(
                "; epoch {e} re-encrypted: {} pack(s), {} object(s)",
                out.packs_reencrypted, out.objects_resealed
            ))
            .unwrap_or_default()
    );
    crate::metrics::record("bytes_freed", "Bytes the repository shrank by.", p.bytes_freed() as f64);
    crate::metrics::record(
        "packs_deleted",
        "Packs deleted.",
        (p.delete.len() + p.orphans.len() + p.repack.len()) as f64,
    );
    if g.json {
        output::json(&serde_json::json!({
            "dry_run": dry_run, "used_blobs": out.used_blobs,
            "packs_deleted": p.delete.len(), "orphan_packs_deleted": p.orphans.len(), "packs_repacked": p.repack.len(),
            "packs_kept": p.keep, "packs_written": out.packs_written,
            "bytes_freed": p.bytes_freed(), "bytes_repacked": p.repack_bytes, "unused_bytes_kept": p.unused_bytes_kept,
            "index_segments_written": out.segments_written, "index_segments_deleted": out.segments_deleted,
            "duration_seconds": start.elapsed().as_secs_f64(),
        }))?;
    } else if !g.quiet {
        println!(
            "{}: delete {} unused pack(s) and {} orphan pack(s), repack {} ({}), keep {}; {} freed; {} unused left in kept packs",
            if dry_run { "prune plan" } else { "pruned" },
            p.delete.len(),
            p.orphans.len(),
            p.repack.len(),
            output::bytes(p.repack_bytes),
            p.keep,
            output::bytes(p.bytes_freed()),
            output::bytes(p.unused_bytes_kept)
        );
    }
    Ok(exit::OK)
}
