//! `cairn forget [ID...] [--keep-* ...] [--prune]`

use std::collections::BTreeMap;

use cairn_engine::NoProgress;
use cairn_engine::forget::{self, Bucket, GroupBy, KeepPolicy, SnapshotInfo};
use cairn_engine::select::SnapshotFilter;

use crate::args::{ForgetArgs, GlobalArgs};
use crate::{exit, output, table};

fn policy(a: &ForgetArgs) -> anyhow::Result<KeepPolicy> {
    let buckets: BTreeMap<Bucket, u32> = [
        (Bucket::Hourly, a.keep_hourly),
        (Bucket::Daily, a.keep_daily),
        (Bucket::Weekly, a.keep_weekly),
        (Bucket::Monthly, a.keep_monthly),
        (Bucket::Yearly, a.keep_yearly),
    ]
    .into_iter()
    .filter_map(|(b, n)| n.map(|n| (b, n)))
    .collect();
    let within_buckets = [
        (Bucket::Hourly, a.keep_within_hourly),
        (Bucket::Daily, a.keep_within_daily),
        (Bucket::Weekly, a.keep_within_weekly),
        (Bucket::Monthly, a.keep_within_monthly),
        (Bucket::Yearly, a.keep_within_yearly),
    ]
    .into_iter()
    .filter_map(|(b, d)| d.map(|d| (b, d)))
    .collect();
    Ok(KeepPolicy {
        last: a.keep_last,
        buckets,
        within: a.keep_within,
        within_buckets,
        tags: SnapshotFilter::tag_lists(&a.keep_tags),
        time_zone: if a.local_time {
            Some(jiff::tz::TimeZone::try_system().map_err(|e| {
                anyhow::anyhow!(
                    "--local-time: cannot tell this machine's time zone ({e}); set TZ, e.g. TZ=Europe/Berlin"
                )
            })?)
        } else {
            None
        },
        now_ns: Some(cairn_engine::format::now_ns()),
    })
}

fn group_by(a: &ForgetArgs) -> anyhow::Result<GroupBy> {
    let mut g = GroupBy { host: false, paths: false, tags: false };
    for item in a.group_by.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
        match item {
            "host" => g.host = true,
            "paths" | "path" => g.paths = true,
            "tags" | "tag" => g.tags = true,
            other => bail_usage!("--group-by takes host, paths and tags, not {other:?}"),
        }
    }
    Ok(g)
}

pub fn run(g: &GlobalArgs, a: &ForgetArgs) -> anyhow::Result<i32> {
    let policy = policy(a)?;
    if a.snapshots.is_empty() && policy.is_empty() {
        bail_usage!("name snapshots to remove, or give a policy (--keep-last, --keep-daily, ...)");
    }
    if !a.snapshots.is_empty() && !policy.is_empty() {
        bail_usage!("give either snapshot ids or a --keep-* policy, not both");
    }
    let by = group_by(a)?;
    let mut repo = super::open(g)?;
    // forget --prune deletes packs: like prune, it reads the storage's trees, not the cache.
    if a.prune {
        repo.set_tree_pack_cache(false);
    }
    super::audited(&repo, super::Operation::Forget, |rec| {
        let _lock = if a.dry_run { None } else { Some(super::lock(g, &repo, true, "forget")?) };
        let (readable, unreadable) = repo.readable_snapshots()?;
        let filter = super::snapshot_filter(&a.filter)?;
        let considered: Vec<SnapshotInfo> =
            readable.iter().filter(|(_, s)| filter.matches(s)).map(|(id, s)| forget::info(*id, s)).collect();
        // Snapshots that cannot be read: removed when named (ids only: nothing else is known
        // of them), left alone by a policy, which cannot judge them.
        let mut unreadable_removed: Vec<(cairn_engine::ObjectId, String)> = Vec::new();
        let decisions = if a.snapshots.is_empty() {
            super::warn_unreadable(&unreadable);
            forget::policy::apply(&considered, &policy, by)
        } else {
            let named: Vec<cairn_engine::ObjectId> =
                a.snapshots.iter().map(|s| repo.resolve_snapshot_id(s)).collect::<Result<_, _>>()?;
            unreadable_removed =
                unreadable.iter().filter(|(id, _)| named.contains(id)).map(|(id, e)| (*id, e.to_string())).collect();
            considered
                .iter()
                .map(|s| forget::Decision {
                    snapshot: s.clone(),
                    group: forget::GroupKey { hostname: None, paths: None, tags: None, writer: s.writer },
                    keep: !named.contains(&s.id),
                    reasons: if named.contains(&s.id) { Vec::new() } else { vec!["not named".into()] },
                })
                .filter(|d| !d.keep)
                .collect()
        };
        let remove: Vec<cairn_engine::ObjectId> = decisions
            .iter()
            .filter(|d| !d.keep)
            .map(|d| d.snapshot.id)
            .chain(unreadable_removed.iter().map(|(id, _)| *id))
            .collect();
        if a.dry_run {
            rec.detail = format!("dry run: {} snapshot(s) would be removed", remove.len());
        } else {
            let result = forget::remove(&repo, &remove, &super::actor());
            // What was deleted before a failure is recorded too: the log must match the repository.
            let present: std::collections::BTreeSet<_> = repo.snapshot_ids()?.into_iter().collect();
            rec.snapshots_deleted = remove.iter().filter(|id| !present.contains(id)).copied().collect();
            result?;
        }
        crate::metrics::record("snapshots_removed", "Snapshots removed.", remove.len() as f64);
        let kept = decisions.iter().filter(|d| d.keep).count();
        crate::metrics::record("snapshots_kept", "Snapshots kept.", kept as f64);
        if g.json {
            let docs: Vec<_> = decisions
            .iter()
            .map(|d| {
                serde_json::json!({
                    "id": d.snapshot.id.to_hex(), "time": output::time(d.snapshot.time_ns), "hostname": d.snapshot.hostname,
                    "paths": d.snapshot.paths.iter().map(|p| String::from_utf8_lossy(p).into_owned()).collect::<Vec<_>>(),
                    "tags": d.snapshot.tags, "keep": d.keep, "reasons": d.reasons,
                    "writer": output::writer_json(d.snapshot.writer),
                })
            })
            .chain(unreadable_removed.iter().map(|(id, e)| serde_json::json!({ "id": id.to_hex(), "keep": false, "unreadable": e })))
            .collect();
            output::json(&serde_json::json!({ "dry_run": a.dry_run, "snapshots": docs, "removed": remove.len() }))?;
        } else if !g.quiet {
            // One table per group (host and paths), as restic prints them.
            let mut groups: Vec<(String, comfy_table::Table)> = Vec::new();
            for d in &decisions {
                let title = if a.snapshots.is_empty() {
                    let paths: Vec<String> =
                        d.snapshot.paths.iter().map(|p| String::from_utf8_lossy(p).into_owned()).collect();
                    let writer = match d.group.writer {
                        cairn_engine::format::snapshot::Writer::Full => String::new(),
                        w => format!(" writer {}", output::writer(w)),
                    };
                    format!("group: host {} paths {}{writer}", d.snapshot.hostname, paths.join(" "))
                } else {
                    String::new()
                };
                if groups.last().is_none_or(|(t, _)| *t != title) {
                    groups.push((title, table::new(&["ACTION", "ID", "TIME (UTC)", "REASONS"], &[])));
                }
                if let Some((_, t)) = groups.last_mut() {
                    t.add_row(vec![
                        (if d.keep { "keep" } else { "remove" }).to_string(),
                        d.snapshot.id.short(),
                        output::time(d.snapshot.time_ns),
                        d.reasons.join(", "),
                    ]);
                }
            }
            if !unreadable_removed.is_empty() {
                let mut t = table::new(&["ACTION", "ID", "TIME (UTC)", "REASONS"], &[]);
                for (id, e) in &unreadable_removed {
                    t.add_row(vec!["remove".to_string(), id.short(), "?".into(), format!("cannot be read: {e}")]);
                }
                groups.push(("unreadable snapshots".into(), t));
            }
            for (title, t) in &groups {
                if !title.is_empty() {
                    println!("{title}");
                }
                table::print(t);
            }
            println!("{} snapshot(s) {}", remove.len(), if a.dry_run { "would be removed" } else { "removed" });
        }
        if a.prune && !a.dry_run {
            drop(_lock);
            return super::prune::run_with(g, &a.prune_opts, false, &repo, &NoProgress, rec);
        }
        Ok(exit::OK)
    })
}
