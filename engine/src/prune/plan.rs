//! The prune plan: a pure function from how each pack is used to what to delete and what to
//! repack, computed before anything changes (`--dry-run` prints it), and the sweep: which of
//! the packs the plan discards go now and which are only marked, so that a later prune deletes
//! them once the mark is older than the grace period (two-phase deletion).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use crate::format::BlobKind;
use crate::format::marks::MarkedPack;
use crate::id::PackId;

/// How old a mark must be before a later prune deletes the pack it names.
pub const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(24 * 60 * 60);

/// How one indexed pack is used by the snapshots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackUsage {
    /// The pack.
    pub pack: PackId,
    /// Its size in bytes.
    pub size: u64,
    /// Data or tree pack.
    pub kind: BlobKind,
    /// Blobs it holds.
    pub blobs: u32,
    /// Blobs a snapshot needs from this pack (a blob stored twice counts in one pack only).
    pub used_blobs: u32,
    /// Sealed bytes of the used blobs.
    pub used_bytes: u64,
    /// Sealed bytes of the blobs no snapshot needs (extra copies included). The pack header is
    /// neither: it shrinks with the pack.
    pub unused_bytes: u64,
}

/// Limits of a prune.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PruneOptions {
    /// Unused bytes the repository may keep, as a share of what its kept packs hold (0.05 =
    /// 5 %): partly used packs are repacked, most wasteful first, until the rest is within it.
    pub max_unused: f64,
    /// Repack at most this many bytes of packs (`None`: no limit).
    pub max_repack_size: Option<u64>,
    /// Re-encrypt everything sealed under this data-key epoch: its packs are repacked whatever
    /// their use (and regardless of `max_repack_size`), other objects re-sealed. Packs sealed
    /// under it are deleted at once: the epoch can be retired only when no pack uses it.
    pub reencrypt_epoch: Option<u32>,
    /// Delete the packs the plan discards at once instead of marking them. Unsafe against a
    /// storage that hides objects from a listing (or lags), and against a backup still
    /// writing packs whose index is not stored yet: only for a repository nothing else uses.
    pub instant_delete: bool,
    /// How old a pack's mark must be before a prune that still finds the pack unreferenced
    /// deletes it ([`DEFAULT_GRACE_PERIOD`]). Zero still takes two prunes.
    pub grace_period: Duration,
}

impl Default for PruneOptions {
    fn default() -> Self {
        PruneOptions {
            max_unused: 0.05,
            max_repack_size: None,
            reencrypt_epoch: None,
            instant_delete: false,
            grace_period: DEFAULT_GRACE_PERIOD,
        }
    }
}

/// What a prune will do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PrunePlan {
    /// Indexed packs with no used blob: deleted.
    pub delete: Vec<PackId>,
    /// Packs in storage that no index names (left by interrupted backups): deleted.
    pub orphans: Vec<PackId>,
    /// Packs whose used blobs are copied into new packs before they are deleted.
    pub repack: Vec<PackId>,
    /// Packs kept as they are.
    pub keep: u64,
    /// Bytes of the deleted packs (orphans included).
    pub delete_bytes: u64,
    /// Bytes of the packs to repack.
    pub repack_bytes: u64,
    /// Of those, bytes still needed (what the new packs will hold).
    pub repack_used_bytes: u64,
    /// Unused bytes left in kept packs.
    pub unused_bytes_kept: u64,
}

impl PrunePlan {
    /// Bytes the repository shrinks by.
    pub fn bytes_freed(&self) -> u64 {
        self.delete_bytes + self.repack_bytes.saturating_sub(self.repack_used_bytes)
    }

    /// Whether the plan changes nothing.
    pub fn is_empty(&self) -> bool {
        self.delete.is_empty() && self.orphans.is_empty() && self.repack.is_empty()
    }
}

impl PrunePlan {
    /// Moves `u` (a pack that must be rewritten, e.g. sealed under an epoch being retired) from
    /// keep to repack; packs already deleted or repacked stay as they are.
    pub fn force_repack(&mut self, u: &PackUsage) {
        if u.used_blobs == 0 || self.repack.contains(&u.pack) || self.delete.contains(&u.pack) {
            return;
        }
        self.keep = self.keep.saturating_sub(1);
        self.unused_bytes_kept = self.unused_bytes_kept.saturating_sub(u.unused_bytes);
        self.repack.push(u.pack);
        self.repack_bytes += u.size;
        self.repack_used_bytes += u.used_bytes;
    }
}

/// What becomes of the packs a plan discards (unused, orphan and repacked ones).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sweep {
    /// Packs this prune deletes, sorted.
    pub delete_now: Vec<PackId>,
    /// Their bytes.
    pub delete_now_bytes: u64,
    /// Packs left marked for a later prune (marked by this one or still waiting out an earlier
    /// mark), by id.
    pub pending: BTreeMap<PackId, MarkedPack>,
    /// How many of `pending` this prune marked first.
    pub newly_marked: u64,
    /// Bytes of the pending packs.
    pub pending_bytes: u64,
    /// The marks to store: the pending packs and the ones deleted now (so a crash between
    /// storing the marks and deleting does not restart their grace period).
    pub marks: BTreeMap<PackId, MarkedPack>,
}

/// Splits the packs `plan` discards into those deleted now and those marked. An unused or
/// orphan pack goes now only when `earlier` marked it at least `grace_period` before `now_ns`
/// (the plan says it is still unreferenced); a repacked pack was used until now and gets a
/// fresh mark. Packs in `force_now` (sealed under an epoch being re-encrypted) and, with
/// `instant_delete`, every discarded pack go at once. Marks of packs the plan no longer
/// discards are dropped: a pack referenced again starts over. `size` gives each pack's size.
pub fn sweep(
    plan: &PrunePlan,
    size: &HashMap<PackId, u64>,
    earlier: &BTreeMap<PackId, MarkedPack>,
    force_now: &HashSet<PackId>,
    now_ns: i64,
    opts: PruneOptions,
) -> Sweep {
    let grace_ns = i64::try_from(opts.grace_period.as_nanos()).unwrap_or(i64::MAX);
    let mut out = Sweep::default();
    let unreferenced = plan.delete.iter().chain(&plan.orphans).map(|p| (p, true));
    for (pack, still_unreferenced) in unreferenced.chain(plan.repack.iter().map(|p| (p, false))) {
        let bytes = size.get(pack).copied().unwrap_or(0);
        let mark = match earlier.get(pack) {
            Some(m) if still_unreferenced => *m,
            _ => MarkedPack { pack: *pack, size: bytes, marked_ns: now_ns },
        };
        let due = still_unreferenced && earlier.contains_key(pack) && now_ns.saturating_sub(mark.marked_ns) >= grace_ns;
        if opts.instant_delete || force_now.contains(pack) || due {
            out.delete_now.push(*pack);
            out.delete_now_bytes += bytes;
        } else {
            if !(still_unreferenced && earlier.contains_key(pack)) {
                out.newly_marked += 1;
            }
            out.pending_bytes += bytes;
            out.pending.insert(*pack, mark);
        }
        if !opts.instant_delete {
            out.marks.insert(*pack, mark);
        }
    }
    out.delete_now.sort();
    out
}

/// Decides, for every pack, delete, repack or keep.
///
/// `max_unused` bounds the unused share of the whole repository after the prune, not of each
/// pack (as restic and rustic do): partly used packs are repacked most wasteful first, and only
/// until the unused bytes left in kept packs are at most `max_unused` of what the kept packs
/// hold, and within `max_repack_size`. Why: a per-pack bound makes nearly every nightly prune
/// download and rewrite a few packs to win back a few percent, which on object storage costs
/// more than the space; a repository-wide bound repacks when the waste adds up, and then the
/// worst packs first. `max_unused` 0 repacks every partly used pack.
pub fn plan(usage: &[PackUsage], orphans: &[(PackId, u64)], opts: PruneOptions) -> PrunePlan {
    let mut p = PrunePlan::default();
    let mut candidates: Vec<&PackUsage> = Vec::new();
    let (mut used_bytes, mut unused_bytes) = (0u64, 0u64);
    for u in usage {
        if u.used_blobs == 0 {
            p.delete.push(u.pack);
            p.delete_bytes = p.delete_bytes.saturating_add(u.size);
            continue;
        }
        used_bytes = used_bytes.saturating_add(u.used_bytes);
        unused_bytes = unused_bytes.saturating_add(u.unused_bytes);
        if u.used_blobs < u.blobs && u.unused_bytes > 0 {
            candidates.push(u);
        } else {
            p.keep += 1;
            p.unused_bytes_kept += u.unused_bytes;
        }
    }
    // unused / (used + unused) <= max_unused, with the used bytes as they will be.
    let tolerated = if opts.max_unused >= 1.0 {
        u64::MAX
    } else {
        (opts.max_unused.max(0.0) / (1.0 - opts.max_unused.max(0.0)) * used_bytes as f64) as u64
    };
    candidates.sort_by(|a, b| {
        let share = |u: &PackUsage| u.unused_bytes as f64 / u.size.max(1) as f64;
        share(b).total_cmp(&share(a)).then(a.pack.cmp(&b.pack))
    });
    for u in candidates {
        let enough = unused_bytes <= tolerated;
        if enough || opts.max_repack_size.is_some_and(|max| p.repack_bytes.saturating_add(u.size) > max) {
            p.keep += 1;
            p.unused_bytes_kept += u.unused_bytes;
            continue;
        }
        unused_bytes = unused_bytes.saturating_sub(u.unused_bytes);
        p.repack.push(u.pack);
        p.repack_bytes = p.repack_bytes.saturating_add(u.size);
        p.repack_used_bytes = p.repack_used_bytes.saturating_add(u.used_bytes);
    }
    for (pack, size) in orphans {
        p.orphans.push(*pack);
        p.delete_bytes = p.delete_bytes.saturating_add(*size);
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A pack of `size` bytes whose blobs take all but 2 bytes (the header).
    fn u(n: u8, size: u64, blobs: u32, used_blobs: u32, used_bytes: u64) -> PackUsage {
        let unused_bytes = (size - 2).saturating_sub(used_bytes);
        PackUsage { pack: PackId([n; 32]), size, kind: BlobKind::Data, blobs, used_blobs, used_bytes, unused_bytes }
    }

    #[test]
    fn unused_packs_go_wasteful_ones_are_repacked_within_the_limit() {
        let usage =
            [u(1, 100, 4, 0, 0), u(2, 100, 4, 4, 98), u(3, 100, 4, 2, 50), u(4, 100, 4, 3, 80), u(5, 100, 4, 3, 95)];
        let p = plan(&usage, &[(PackId([9; 32]), 7)], PruneOptions::default());
        assert_eq!(p.delete, vec![PackId([1; 32])]);
        // Used 323 bytes, unused 69: 5 % tolerates 17 unused bytes, left once 3 and 4 go.
        assert_eq!(p.repack, vec![PackId([3; 32]), PackId([4; 32])], "most wasteful first, until within 5 %");
        assert_eq!(p.keep, 2);
        assert_eq!(p.orphans, vec![PackId([9; 32])]);
        assert_eq!(p.bytes_freed(), 107 + 200 - 130);
        assert_eq!(p.unused_bytes_kept, 3, "pack 5's unused blob; pack 2 has none (its header does not count)");
        let limited = plan(&usage, &[], PruneOptions { max_repack_size: Some(150), ..PruneOptions::default() });
        assert_eq!(limited.repack, vec![PackId([3; 32])]);
        assert_eq!(limited.keep, 3);
        // 10 % tolerates 35 unused bytes: pack 4 (18 % unused) stays once pack 3 has gone.
        let ten = plan(&usage, &[], PruneOptions { max_unused: 0.10, ..PruneOptions::default() });
        assert_eq!(ten.repack, vec![PackId([3; 32])]);
        assert_eq!(ten.unused_bytes_kept, 21);
        let zero = plan(&usage, &[], PruneOptions { max_unused: 0.0, ..PruneOptions::default() });
        assert_eq!(zero.repack.len(), 3, "0 % repacks every partly used pack");
        let all = plan(&usage, &[], PruneOptions { max_unused: 1.0, ..PruneOptions::default() });
        assert!(all.repack.is_empty() && all.delete == vec![PackId([1; 32])]);
    }

    #[test]
    fn a_wasteful_pack_stays_while_the_repository_as_a_whole_is_within_the_limit() {
        // Twenty full packs and one half used: 50 unused bytes of 2,000 is 2.5 %.
        let mut usage: Vec<PackUsage> = (1..=20).map(|n| u(n, 100, 4, 4, 98)).collect();
        usage.push(u(21, 102, 4, 2, 50));
        let p = plan(&usage, &[], PruneOptions::default());
        assert!(p.repack.is_empty() && p.delete.is_empty());
        assert_eq!((p.keep, p.unused_bytes_kept), (21, 50));
        // Three such packs are 150 of 2,106 (7 %): one repacked brings it to 100 of 2,056.
        usage.push(u(22, 102, 4, 2, 50));
        usage.push(u(23, 102, 4, 2, 50));
        let p = plan(&usage, &[], PruneOptions::default());
        assert_eq!(p.repack, vec![PackId([21; 32])], "equally wasteful: the lowest id first");
        assert_eq!(p.unused_bytes_kept, 100);
    }

    #[test]
    fn unreferenced_packs_go_only_after_an_earlier_mark_has_aged() {
        let hour = 3_600_000_000_000i64;
        let now = 100 * hour;
        let id = |n: u8| PackId([n; 32]);
        let plan = PrunePlan {
            delete: vec![id(1), id(2)],
            orphans: vec![id(3), id(4)],
            repack: vec![id(5)],
            ..Default::default()
        };
        let size: HashMap<PackId, u64> = (1..=6).map(|n| (id(n), u64::from(n) * 10)).collect();
        let mark = |n: u8, ago: i64| (id(n), MarkedPack { pack: id(n), size: 1, marked_ns: now - ago });
        // 1 and 3 were marked 25 h ago, 2 an hour ago; 5 (now repacked) and 6 (now used) were
        // marked long ago too.
        let earlier: BTreeMap<PackId, MarkedPack> =
            [mark(1, 25 * hour), mark(2, hour), mark(3, 25 * hour), mark(5, 48 * hour), mark(6, 48 * hour)].into();
        let s = sweep(&plan, &size, &earlier, &HashSet::new(), now, PruneOptions::default());
        assert_eq!(s.delete_now, vec![id(1), id(3)]);
        assert_eq!(s.delete_now_bytes, 40);
        assert_eq!(s.pending.keys().copied().collect::<Vec<_>>(), vec![id(2), id(4), id(5)]);
        assert_eq!(s.pending[&id(2)].marked_ns, now - hour, "an earlier mark keeps its time");
        assert_eq!(s.pending[&id(5)].marked_ns, now, "a repacked pack was used until now");
        assert_eq!(s.newly_marked, 2);
        assert!(!s.marks.contains_key(&id(6)), "a pack used again loses its mark");
        assert!(s.marks.contains_key(&id(1)), "marks of packs deleted now are kept until they are gone");
        // Nothing goes on a first prune, whatever the grace period.
        let zero = PruneOptions { grace_period: Duration::ZERO, ..PruneOptions::default() };
        assert!(sweep(&plan, &size, &BTreeMap::new(), &HashSet::new(), now, zero).delete_now.is_empty());
        // --instant-delete and forced packs go at once; instant writes no marks.
        let instant = sweep(
            &plan,
            &size,
            &BTreeMap::new(),
            &HashSet::new(),
            now,
            PruneOptions { instant_delete: true, ..PruneOptions::default() },
        );
        assert_eq!(instant.delete_now.len(), 5);
        assert!(instant.marks.is_empty() && instant.pending.is_empty());
        let forced = sweep(&plan, &size, &BTreeMap::new(), &[id(4)].into(), now, PruneOptions::default());
        assert_eq!(forced.delete_now, vec![id(4)]);
    }

    proptest! {
        #[test]
        fn every_pack_gets_one_verdict_and_used_packs_are_never_just_deleted(
            v in proptest::collection::vec((3u64..1000, 1u32..10, 0u32..10, 0u64..1000), 0..40),
            max_unused in prop_oneof![Just(0.0f64), Just(1.0f64), 0.0f64..1.0],
            limit in proptest::option::of(0u64..5000),
        ) {
            let usage: Vec<PackUsage> = v.iter().enumerate().map(|(i, &(size, blobs, used, bytes))| {
                let used = used.min(blobs);
                u(i as u8, size, blobs, used, if used == 0 { 0 } else { bytes.min(size) })
            }).collect();
            let p = plan(&usage, &[], PruneOptions { max_unused, max_repack_size: limit, ..PruneOptions::default() });
            prop_assert_eq!(p.delete.len() + p.repack.len() + p.keep as usize, usage.len());
            for d in &p.delete {
                let pack = usage.iter().find(|x| x.pack == *d).unwrap();
                prop_assert_eq!(pack.used_blobs, 0, "a pack with used blobs is deleted only after repacking");
            }
            if let Some(max) = limit {
                prop_assert!(p.repack_bytes <= max);
            }
            // Without a size limit, the unused bytes kept are within the share asked for
            // (or every partly used pack is repacked).
            let used: u64 = usage.iter().filter(|x| x.used_blobs > 0).map(|x| x.used_bytes).sum();
            let partly_kept = usage.iter().any(|x| {
                x.used_blobs > 0 && x.used_blobs < x.blobs && x.unused_bytes > 0 && !p.repack.contains(&x.pack)
            });
            if limit.is_none() && partly_kept {
                prop_assert!(p.unused_bytes_kept as f64 <= max_unused / (1.0 - max_unused) * used as f64 + 1.0);
            }
            // And no more than needed, most wasteful first: without the last pack repacked the
            // rest would not be within it, and no kept pack is more wasteful than a repacked one.
            if limit.is_none() && let Some(last) = p.repack.last() {
                let last = usage.iter().find(|x| x.pack == *last).unwrap();
                let without = (p.unused_bytes_kept + last.unused_bytes) as f64;
                prop_assert!(max_unused >= 1.0 || without > max_unused / (1.0 - max_unused) * used as f64 - 1.0);
                let share = |x: &PackUsage| x.unused_bytes as f64 / x.size.max(1) as f64;
                let least = p.repack.iter().map(|r| share(usage.iter().find(|x| x.pack == *r).unwrap())).fold(f64::MAX, f64::min);
                for kept in usage.iter().filter(|x| x.used_blobs > 0 && x.used_blobs < x.blobs && !p.repack.contains(&x.pack)) {
                    prop_assert!(share(kept) <= least, "a kept pack is more wasteful than a repacked one");
                }
            }
            if max_unused >= 1.0 {
                prop_assert!(p.repack.is_empty());
            }
        }
    }
}
