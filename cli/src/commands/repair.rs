//! `cairn repair index`

use cairn_engine::repair::{repair_index, repair_snapshots};

use crate::args::{GlobalArgs, RepairArgs, RepairWhat};
use crate::progress::TermProgress;
use crate::{exit, output};

pub fn run(g: &GlobalArgs, a: &RepairArgs) -> anyhow::Result<i32> {
    let mut repo = super::open(g)?;
    // Repair judges the trees the storage holds, never the client's copy of them.
    repo.set_tree_pack_cache(false);
    let op = match a.what {
        RepairWhat::Index => super::Operation::RepairIndex,
        RepairWhat::Snapshots => super::Operation::RepairSnapshots,
    };
    super::audited(&repo, op, |rec| match a.what {
        RepairWhat::Index => {
            let _lock = super::lock(g, &repo, true, "repair index")?;
            let progress = TermProgress::new(g.quiet || g.json);
            let out = repair_index(&repo, &progress)?;
            rec.detail = format!("{} segment(s) written, {} removed", out.segments_written, out.segments_deleted);
            let code = if out.unreadable.is_empty() { exit::OK } else { exit::ERROR };
            if g.json {
                output::json(&serde_json::json!({
                    "packs": out.packs, "blobs": out.blobs, "segments_written": out.segments_written,
                    "segments_deleted": out.segments_deleted,
                    "unreadable": out.unreadable.iter().map(|(o, e)| serde_json::json!({"object": o, "error": e})).collect::<Vec<_>>(),
                    "exit_code": code,
                }))?;
            } else {
                for (o, e) in &out.unreadable {
                    eprintln!("error: {o}: {e} (left out of the index)");
                }
                if !g.quiet {
                    println!(
                        "index rebuilt from {} pack(s), {} blob(s): {} segment(s) written, {} old segment(s) removed",
                        out.packs, out.blobs, out.segments_written, out.segments_deleted
                    );
                }
            }
            Ok(code)
        }
        RepairWhat::Snapshots => {
            let _lock = super::lock(g, &repo, true, "repair snapshots")?;
            let progress = TermProgress::new(g.quiet || g.json);
            let out = repair_snapshots(&repo, &super::actor(), &progress)?;
            rec.snapshots_created = out.repaired.iter().map(|r| r.new).collect();
            rec.snapshots_deleted = out.repaired.iter().map(|r| r.old).collect();
            // Nothing in a snapshot object that does not open can be saved: it goes, intent
            // logged first, so it stops every command that must read all snapshots.
            let damaged: Vec<cairn_engine::ObjectId> = out.damaged.iter().map(|(id, _)| *id).collect();
            let removal = cairn_engine::forget::remove(&repo, &damaged, &super::actor());
            let present: std::collections::BTreeSet<_> = repo.snapshot_ids()?.into_iter().collect();
            rec.snapshots_deleted.extend(damaged.iter().filter(|id| !present.contains(id)));
            removal?;
            for (id, e) in &out.unsupported {
                eprintln!("cairn: warning: snapshot {} left alone: {e}", id.short());
            }
            if g.json {
                output::json(&serde_json::json!({
                    "snapshots": out.snapshots,
                    "repaired": out.repaired.iter().map(|r| serde_json::json!({
                        "old": r.old.to_hex(), "new": r.new.to_hex(), "replaced": r.replaced,
                    })).collect::<Vec<_>>(),
                    "removed": out.damaged.iter().map(|(id, e)| serde_json::json!({"id": id.to_hex(), "error": e})).collect::<Vec<_>>(),
                }))?;
            } else if !g.quiet {
                for r in &out.repaired {
                    println!(
                        "snapshot {} repaired as {} (tag `repaired`); {} entr(ies) replaced by .cairn-damaged markers:",
                        &r.old.to_hex()[..12],
                        &r.new.to_hex()[..12],
                        r.replaced.len()
                    );
                    for p in &r.replaced {
                        println!("  {p}");
                    }
                }
                for (id, e) in &out.damaged {
                    println!("snapshot {} removed: it cannot be read ({e})", &id.to_hex()[..12]);
                }
                println!(
                    "{} snapshot(s) checked, {} repaired, {} removed",
                    out.snapshots + out.damaged.len() as u64,
                    out.repaired.len(),
                    out.damaged.len()
                );
            }
            Ok(exit::OK)
        }
    })
}
