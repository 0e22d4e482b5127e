//! `cairn tag [SNAPSHOT...] --add/--remove/--set TAG`: a snapshot's tags are part of its sealed
//! object, so changing them writes the snapshot again under a new id (same tree, time and
//! summary) and removes the old one, each step logged in the audit log first (as `save
//! snapshot` and `forget` intents): a crash between the two leaves both, never neither.

use cairn_engine::ObjectId;
use cairn_engine::format::snapshot::Snapshot;

use crate::args::{GlobalArgs, TagArgs};
use crate::{exit, output};

/// The tags after the change, sorted and unique.
fn retagged(old: &[String], a: &TagArgs) -> Vec<String> {
    let mut tags: Vec<String> = if a.set.is_empty() { old.to_vec() } else { super::tag_words(&a.set) };
    tags.extend(super::tag_words(&a.add));
    let remove = super::tag_words(&a.remove);
    tags.retain(|t| !remove.contains(t));
    tags.sort();
    tags.dedup();
    tags
}

pub fn run(g: &GlobalArgs, a: &TagArgs) -> anyhow::Result<i32> {
    let filter = super::snapshot_filter(&a.filter)?;
    if a.snapshots.is_empty() && filter.is_empty() {
        bail_usage!("name the snapshots to tag, or select them with --host, --tag or --path");
    }
    let repo = super::open(g)?;
    super::audited(&repo, super::Operation::Tag, |rec| {
        let _lock = super::lock(g, &repo, true, "tag")?;
        let chosen: Vec<(ObjectId, Snapshot)> = super::chosen_snapshots(&repo, &a.snapshots, &a.filter)?;
        let mut changed = Vec::new();
        for (old_id, snap) in chosen {
            let mut sorted_old = snap.tags.clone();
            sorted_old.sort();
            sorted_old.dedup();
            let tags = retagged(&snap.tags, a);
            if tags == sorted_old {
                continue;
            }
            let new = Snapshot { tags: tags.clone(), ..snap };
            let (new_id, _) = repo.save_snapshot(&new)?;
            rec.snapshots_created.push(new_id);
            cairn_engine::forget::remove(&repo, &[old_id], &super::actor())?;
            rec.snapshots_deleted.push(old_id);
            changed.push((old_id, new_id, tags));
        }
        rec.detail = format!("{} snapshot(s) retagged", changed.len());
        if g.json {
            output::json(&serde_json::json!({
                "changed": changed.iter().map(|(old, new, tags)| serde_json::json!({
                    "old_id": old.to_hex(), "new_id": new.to_hex(), "tags": tags,
                })).collect::<Vec<_>>(),
            }))?;
        } else if !g.quiet {
            for (old, new, tags) in &changed {
                println!(
                    "{} -> {}: tags {}",
                    old.short(),
                    new.short(),
                    if tags.is_empty() { "(none)".into() } else { tags.join(",") }
                );
            }
            println!("{} snapshot(s) changed", changed.len());
        }
        Ok(exit::OK)
    })
}
