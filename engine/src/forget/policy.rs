//! Retention policy: which snapshots `forget` keeps, and why. Pure: snapshots in, decisions
//! out, so every rule is property-tested without a repository.
//!
//! Snapshots are grouped (by host and paths unless told otherwise) and each group is judged on
//! its own, newest first. Bucket rules (`hourly` ... `yearly`) keep the newest snapshot of
//! each of the N newest buckets (UTC calendar) that hold one; `within` keeps everything no
//! older than the duration before the group's newest snapshot; `within_*` keep one per bucket
//! within that duration; `tags` keep every snapshot carrying one of them. A group is never
//! emptied when any rule is given: if no rule keeps anything, its newest snapshot stays.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::civil;
use crate::id::ObjectId;

/// What the policy needs to know of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// Its id.
    pub id: ObjectId,
    /// When it was taken, ns since the epoch.
    pub time_ns: i64,
    /// Host name.
    pub hostname: String,
    /// Source paths, sorted.
    pub paths: Vec<Vec<u8>>,
    /// Tags, sorted.
    pub tags: Vec<String>,
}

/// Calendar buckets, finest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Bucket {
    /// One per UTC hour.
    Hourly,
    /// One per UTC day.
    Daily,
    /// One per ISO week (Monday to Sunday, UTC).
    Weekly,
    /// One per calendar month.
    Monthly,
    /// One per calendar year.
    Yearly,
}

impl Bucket {
    /// Every bucket kind, finest first.
    pub const ALL: [Bucket; 5] = [Bucket::Hourly, Bucket::Daily, Bucket::Weekly, Bucket::Monthly, Bucket::Yearly];

    /// The bucket holding `ns`, as a number that is equal for equal buckets.
    pub fn of(self, ns: i64) -> i64 {
        let day = civil::days(ns);
        match self {
            Bucket::Hourly => ns.div_euclid(3_600 * 1_000_000_000),
            Bucket::Daily => day,
            Bucket::Weekly => civil::week_start(day),
            Bucket::Monthly => {
                let (y, m, _) = civil::civil_from_days(day);
                y * 12 + i64::from(m)
            }
            Bucket::Yearly => civil::civil_from_days(day).0,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Bucket::Hourly => "hourly",
            Bucket::Daily => "daily",
            Bucket::Weekly => "weekly",
            Bucket::Monthly => "monthly",
            Bucket::Yearly => "yearly",
        }
    }
}

/// The keep rules. Empty (the default) keeps nothing by policy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeepPolicy {
    /// Keep the N newest.
    pub last: Option<u32>,
    /// Keep the newest of each of the N newest buckets, per bucket kind.
    pub buckets: BTreeMap<Bucket, u32>,
    /// Keep everything within this duration of the group's newest snapshot.
    pub within: Option<Duration>,
    /// Keep the newest of each bucket within this duration of the group's newest snapshot.
    pub within_buckets: BTreeMap<Bucket, Duration>,
    /// Keep snapshots carrying any of these tags.
    pub tags: Vec<String>,
}

impl KeepPolicy {
    /// Whether any rule is given.
    pub fn is_empty(&self) -> bool {
        self.last.is_none()
            && self.buckets.is_empty()
            && self.within.is_none()
            && self.within_buckets.is_empty()
            && self.tags.is_empty()
    }
}

/// What groups snapshots for the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupBy {
    /// By host name.
    pub host: bool,
    /// By the set of paths.
    pub paths: bool,
    /// By the set of tags.
    pub tags: bool,
}

impl Default for GroupBy {
    fn default() -> Self {
        GroupBy { host: true, paths: true, tags: false }
    }
}

/// The group a snapshot belongs to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupKey {
    /// Host, when grouping by host.
    pub hostname: Option<String>,
    /// Paths, when grouping by paths.
    pub paths: Option<Vec<Vec<u8>>>,
    /// Tags, when grouping by tags.
    pub tags: Option<Vec<String>>,
}

/// The verdict on one snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The snapshot.
    pub snapshot: SnapshotInfo,
    /// Its group.
    pub group: GroupKey,
    /// Kept or to be removed.
    pub keep: bool,
    /// The rules that kept it (empty when removed).
    pub reasons: Vec<String>,
}

fn group_key(s: &SnapshotInfo, by: GroupBy) -> GroupKey {
    GroupKey {
        hostname: by.host.then(|| s.hostname.clone()),
        paths: by.paths.then(|| s.paths.clone()),
        tags: by.tags.then(|| s.tags.clone()),
    }
}

fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3_600 == 0 => format!("{}h", s / 3_600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// Judges every snapshot. Decisions come group by group, newest first within a group.
pub fn apply(snapshots: &[SnapshotInfo], policy: &KeepPolicy, by: GroupBy) -> Vec<Decision> {
    let mut groups: BTreeMap<GroupKey, Vec<&SnapshotInfo>> = BTreeMap::new();
    for s in snapshots {
        groups.entry(group_key(s, by)).or_default().push(s);
    }
    let mut out = Vec::with_capacity(snapshots.len());
    for (key, mut members) in groups {
        members.sort_by(|a, b| b.time_ns.cmp(&a.time_ns).then(b.id.cmp(&a.id)));
        let newest = members.first().map_or(0, |s| s.time_ns);
        let mut left: BTreeMap<Bucket, u32> = policy.buckets.clone();
        let mut last_bucket: BTreeMap<Bucket, i64> = BTreeMap::new();
        let mut last_within_bucket: BTreeMap<Bucket, i64> = BTreeMap::new();
        let start = out.len();
        for (i, s) in members.iter().enumerate() {
            let mut reasons = Vec::new();
            if let Some(n) = policy.last
                && (i as u64) < u64::from(n)
            {
                reasons.push(format!("last {n}"));
            }
            for (&bucket, n) in left.iter_mut() {
                let b = bucket.of(s.time_ns);
                if *n > 0 && last_bucket.get(&bucket) != Some(&b) {
                    *n -= 1;
                    last_bucket.insert(bucket, b);
                    reasons.push(format!("{} {}", bucket.name(), policy.buckets.get(&bucket).copied().unwrap_or(0)));
                }
            }
            let age = Duration::from_nanos(u64::try_from(newest.saturating_sub(s.time_ns)).unwrap_or(u64::MAX));
            if let Some(w) = policy.within
                && age <= w
            {
                reasons.push(format!("within {}", human(w)));
            }
            for (&bucket, &w) in &policy.within_buckets {
                let b = bucket.of(s.time_ns);
                if age <= w && last_within_bucket.get(&bucket) != Some(&b) {
                    last_within_bucket.insert(bucket, b);
                    reasons.push(format!("{} within {}", bucket.name(), human(w)));
                }
            }
            if let Some(t) = s.tags.iter().find(|t| policy.tags.contains(t)) {
                reasons.push(format!("tag {t}"));
            }
            out.push(Decision { snapshot: (*s).clone(), group: key.clone(), keep: !reasons.is_empty(), reasons });
        }
        // Invariant: a rule never empties a group.
        let group = out.get_mut(start..).unwrap_or_default();
        if !policy.is_empty()
            && !group.iter().any(|d| d.keep)
            && let Some(first) = group.first_mut()
        {
            first.keep = true;
            first.reasons.push("newest of its group (no rule kept any)".into());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const HOUR: i64 = 3_600 * 1_000_000_000;
    const DAY: i64 = 24 * HOUR;

    fn snap(n: u8, time_ns: i64, host: &str, tags: &[&str]) -> SnapshotInfo {
        SnapshotInfo {
            id: ObjectId([n; 32]),
            time_ns,
            hostname: host.into(),
            paths: vec![b"/data".to_vec()],
            tags: tags.iter().map(|t| t.to_string()).collect(),
        }
    }

    fn kept(d: &[Decision]) -> Vec<u8> {
        let mut v: Vec<u8> = d.iter().filter(|d| d.keep).map(|d| d.snapshot.id.0[0]).collect();
        v.sort();
        v
    }

    #[test]
    fn daily_keeps_the_newest_of_each_day() {
        let base = 20_000 * DAY;
        let s = vec![
            snap(1, base + HOUR, "h", &[]),
            snap(2, base + 20 * HOUR, "h", &[]),
            snap(3, base + DAY + HOUR, "h", &[]),
            snap(4, base + 2 * DAY + 5 * HOUR, "h", &[]),
            snap(5, base + 2 * DAY + 6 * HOUR, "h", &[]),
        ];
        let policy = KeepPolicy { buckets: [(Bucket::Daily, 2)].into(), ..Default::default() };
        assert_eq!(kept(&apply(&s, &policy, GroupBy::default())), vec![3, 5]);
        let policy = KeepPolicy { buckets: [(Bucket::Daily, 10)].into(), ..Default::default() };
        assert_eq!(kept(&apply(&s, &policy, GroupBy::default())), vec![2, 3, 5]);
    }

    #[test]
    fn last_within_and_tags_with_reasons() {
        let base = 20_000 * DAY;
        let s: Vec<SnapshotInfo> = (0..6u8).map(|i| snap(i, base + i64::from(i) * DAY, "h", &[])).collect();
        let mut s = s;
        s[0].tags = vec!["keep".into()];
        let policy = KeepPolicy {
            last: Some(2),
            within: Some(Duration::from_secs(2 * 86_400)),
            tags: vec!["keep".into()],
            ..Default::default()
        };
        let d = apply(&s, &policy, GroupBy::default());
        assert_eq!(kept(&d), vec![0, 3, 4, 5]);
        let newest = d.iter().find(|d| d.snapshot.id.0[0] == 5).unwrap();
        assert_eq!(newest.reasons, vec!["last 2", "within 2d"]);
        let tagged = d.iter().find(|d| d.snapshot.id.0[0] == 0).unwrap();
        assert_eq!(tagged.reasons, vec!["tag keep"]);
    }

    #[test]
    fn groups_are_judged_apart() {
        let s = vec![snap(1, DAY, "a", &[]), snap(2, 2 * DAY, "a", &[]), snap(3, DAY, "b", &[])];
        let policy = KeepPolicy { last: Some(1), ..Default::default() };
        assert_eq!(kept(&apply(&s, &policy, GroupBy::default())), vec![2, 3]);
        let one_group = GroupBy { host: false, paths: false, tags: false };
        assert_eq!(kept(&apply(&s, &policy, one_group)), vec![2]);
    }

    #[test]
    fn a_rule_that_keeps_nothing_leaves_the_newest() {
        let s = vec![snap(1, DAY, "h", &[]), snap(2, 2 * DAY, "h", &[])];
        let policy = KeepPolicy { tags: vec!["nothing-has-this".into()], ..Default::default() };
        let d = apply(&s, &policy, GroupBy::default());
        assert_eq!(kept(&d), vec![2]);
        assert!(apply(&s, &KeepPolicy::default(), GroupBy::default()).iter().all(|d| !d.keep), "no rule, no keep");
    }

    fn arb_snapshots() -> impl Strategy<Value = Vec<SnapshotInfo>> {
        proptest::collection::vec((0i64..4000 * DAY, 0u8..3, proptest::bool::ANY), 0..60).prop_map(|v| {
            v.into_iter()
                .enumerate()
                .map(|(i, (t, host, tag))| {
                    let mut s = snap(0, t, ["a", "b", "c"][host as usize], if tag { &["x"] } else { &[] });
                    s.id = ObjectId([(i % 251) as u8; 32]);
                    s.id.0[1] = (i / 251) as u8;
                    s
                })
                .collect()
        })
    }

    fn arb_policy() -> impl Strategy<Value = KeepPolicy> {
        (
            proptest::option::of(0u32..5),
            proptest::collection::btree_map(proptest::sample::select(Bucket::ALL.to_vec()), 0u32..6, 0..3),
            proptest::option::of((0u64..400).prop_map(|d| Duration::from_secs(d * 86_400))),
            proptest::bool::ANY,
        )
            .prop_map(|(last, buckets, within, tag)| KeepPolicy {
                last,
                buckets,
                within,
                tags: if tag { vec!["x".into()] } else { Vec::new() },
                ..Default::default()
            })
    }

    proptest! {
        #[test]
        fn every_snapshot_is_judged_once_and_no_group_is_emptied(s in arb_snapshots(), p in arb_policy()) {
            let d = apply(&s, &p, GroupBy::default());
            prop_assert_eq!(d.len(), s.len());
            let mut groups: BTreeMap<GroupKey, (usize, usize)> = BTreeMap::new();
            for x in &d {
                let e = groups.entry(x.group.clone()).or_default();
                e.0 += 1;
                e.1 += usize::from(x.keep);
                prop_assert_eq!(x.keep, !x.reasons.is_empty());
            }
            if !p.is_empty() {
                for (g, (n, k)) in groups {
                    prop_assert!(n == 0 || k > 0, "group {:?} emptied", g);
                }
            }
        }

        #[test]
        fn keep_daily_keeps_the_newest_of_each_of_the_newest_days(s in arb_snapshots(), n in 1u32..8) {
            let p = KeepPolicy { buckets: [(Bucket::Daily, n)].into(), ..Default::default() };
            let d = apply(&s, &p, GroupBy::default());
            let mut by_group: BTreeMap<GroupKey, Vec<&Decision>> = BTreeMap::new();
            for x in &d {
                by_group.entry(x.group.clone()).or_default().push(x);
            }
            for (_, members) in by_group {
                // The newest snapshot of each day, newest days first.
                let mut days: BTreeMap<i64, &Decision> = BTreeMap::new();
                for m in &members {
                    let day = Bucket::Daily.of(m.snapshot.time_ns);
                    let e = days.entry(day).or_insert(m);
                    if (m.snapshot.time_ns, m.snapshot.id) > (e.snapshot.time_ns, e.snapshot.id) {
                        *e = m;
                    }
                }
                let want: Vec<ObjectId> = days.values().rev().take(n as usize).map(|d| d.snapshot.id).collect();
                let mut got: Vec<ObjectId> = members.iter().filter(|m| m.keep).map(|m| m.snapshot.id).collect();
                let mut want = want;
                want.sort();
                got.sort();
                prop_assert_eq!(got, want);
            }
        }

        #[test]
        fn keep_last_keeps_exactly_the_newest(s in arb_snapshots(), n in 0u32..10) {
            let p = KeepPolicy { last: Some(n), ..Default::default() };
            let one = GroupBy { host: false, paths: false, tags: false };
            let d = apply(&s, &p, one);
            let kept = d.iter().filter(|d| d.keep).count();
            prop_assert_eq!(kept, (n as usize).min(s.len()).max(usize::from(!s.is_empty())));
            // Decisions come newest first: the kept ones are a prefix.
            prop_assert!(d.iter().skip(kept).all(|d| !d.keep));
        }
    }
}
