//! Tests of the retention policy.

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
        writer: Writer::Full,
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
fn a_write_only_slots_snapshots_are_judged_apart() {
    let now = 20_000 * DAY;
    // db1's real snapshots, one a day.
    let mut s: Vec<SnapshotInfo> = (1..=5).map(|n| snap(n, now - i64::from(n) * DAY, "db1", &[])).collect();
    // A stolen write-only key of web1 claims db1 with newer snapshots, one in each of the
    // last hours.
    let web1 = Writer::WriteOnly(ObjectId([0xeb; 32]));
    for n in 20..24u8 {
        let mut planted = snap(n, now - i64::from(n - 19) * HOUR, "db1", &[]);
        planted.writer = web1;
        s.push(planted);
    }
    let last = KeepPolicy { last: Some(3), now_ns: Some(now), ..Default::default() };
    let d = apply(&s, &last, GroupBy::default());
    // db1's three newest stay; web1's group keeps its own three.
    assert_eq!(kept(&d), vec![1, 2, 3, 20, 21, 22]);
    assert!(d.iter().filter(|d| d.snapshot.writer == web1).all(|d| d.group.writer == web1));
    let daily = KeepPolicy { buckets: [(Bucket::Daily, 2)].into(), now_ns: Some(now), ..Default::default() };
    assert_eq!(kept(&apply(&s, &daily, GroupBy::default())), vec![1, 2, 20]);
}

#[test]
fn a_snapshot_dated_in_the_future_does_not_move_the_keep_within_window() {
    let now = 20_000 * DAY;
    let mut s: Vec<SnapshotInfo> = (1..=5).map(|n| snap(n, now - i64::from(n) * DAY, "h", &[])).collect();
    s.push(snap(9, now + 3650 * DAY, "h", &[]));
    let within = Some(RetentionSpan { days: 30, ..Default::default() });
    let anchored = KeepPolicy { within, now_ns: Some(now), ..Default::default() };
    assert_eq!(kept(&apply(&s, &anchored, GroupBy::default())), vec![1, 2, 3, 4, 5, 9]);
    // Unanchored, the planted snapshot would have pushed every real one out.
    let unanchored = KeepPolicy { within, ..Default::default() };
    assert_eq!(kept(&apply(&s, &unanchored, GroupBy::default())), vec![9]);
    // Nor does it take a place in `last` or in a bucket: it is kept, and counts for nothing.
    for n in 10..13 {
        s.push(snap(n, now + i64::from(n) * DAY, "h", &[]));
    }
    let last = KeepPolicy { last: Some(2), now_ns: Some(now), ..Default::default() };
    assert_eq!(kept(&apply(&s, &last, GroupBy::default())), vec![1, 2, 9, 10, 11, 12]);
    let daily = KeepPolicy { buckets: [(Bucket::Daily, 3)].into(), now_ns: Some(now), ..Default::default() };
    assert_eq!(kept(&apply(&s, &daily, GroupBy::default())), vec![1, 2, 3, 9, 10, 11, 12]);
}

#[test]
fn last_within_and_tags_with_reasons() {
    let base = 20_000 * DAY;
    let s: Vec<SnapshotInfo> = (0..6u8).map(|i| snap(i, base + i64::from(i) * DAY, "h", &[])).collect();
    let mut s = s;
    s[0].tags = vec!["keep".into()];
    let policy = KeepPolicy {
        last: Some(2),
        within: Some(RetentionSpan { days: 2, ..Default::default() }),
        tags: vec![vec!["keep".into()]],
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
    let policy = KeepPolicy { tags: vec![vec!["nothing-has-this".into()]], ..Default::default() };
    let d = apply(&s, &policy, GroupBy::default());
    assert_eq!(kept(&d), vec![2]);
    assert!(apply(&s, &KeepPolicy::default(), GroupBy::default()).iter().all(|d| !d.keep), "no rule, no keep");
}

/// ns of a UTC date and time.
fn at(date: &str) -> i64 {
    let ts: jiff::Timestamp = format!("{date}Z").parse().unwrap();
    utc::nanos(ts)
}

#[test]
fn spans_are_restics_years_months_days_hours() {
    let span: RetentionSpan = "1y5m7d2h".parse().unwrap();
    assert_eq!(span, RetentionSpan { years: 1, months: 5, days: 7, hours: 2 });
    assert_eq!(span.to_string(), "1y5m7d2h");
    // `m` is months, not minutes.
    let six_months: RetentionSpan = "6m".parse().unwrap();
    assert_eq!(six_months.start(at("2026-12-03T12:00:00")), at("2026-06-03T12:00:00"));
    // Calendar arithmetic: a month before 31 March is the end of February.
    let month: RetentionSpan = "1m".parse().unwrap();
    assert_eq!(month.start(at("2024-03-31T00:00:00")), at("2024-02-29T00:00:00"));
    let hours: RetentionSpan = "36h".parse().unwrap();
    assert_eq!(hours.start(at("2026-01-02T12:00:00")), at("2026-01-01T00:00:00"));
    for bad in ["", "6", "m", "6x", "6 m", "-1d", "1.5d", "99999999999y"] {
        assert!(bad.parse::<RetentionSpan>().is_err(), "{bad:?} is refused");
    }
    // Spans past the calendar's start keep everything.
    let huge = RetentionSpan { years: 4_000_000, ..Default::default() };
    assert_eq!(huge.start(at("2026-01-01T00:00:00")), i64::MIN);
}

#[test]
fn keep_within_six_months_keeps_half_a_year() {
    let newest = at("2026-12-03T02:30:00");
    let s: Vec<SnapshotInfo> = (0..400u16)
        .map(|d| snap((d % 250) as u8, newest - i64::from(d) * DAY, "h", &[]))
        .enumerate()
        .map(|(i, mut s)| {
            s.id.0[1] = (i / 250) as u8;
            s
        })
        .collect();
    let policy = KeepPolicy { within: Some("6m".parse().unwrap()), ..Default::default() };
    let kept = apply(&s, &policy, GroupBy::default()).iter().filter(|d| d.keep).count();
    // 2026-06-03 02:30 to 2026-12-03 02:30: 183 days back, both ends kept.
    assert_eq!(kept, 184);
}

#[test]
fn tag_lists_need_every_tag_of_one_list() {
    let s = vec![
        snap(1, DAY, "h", &["a"]),
        snap(2, 2 * DAY, "h", &["a", "b"]),
        snap(3, 3 * DAY, "h", &["c"]),
        snap(4, 4 * DAY, "h", &[]),
        snap(5, 5 * DAY, "h", &["b"]),
    ];
    let policy = KeepPolicy { tags: vec![vec!["a".into(), "b".into()], vec!["c".into()]], ..Default::default() };
    let d = apply(&s, &policy, GroupBy::default());
    assert_eq!(kept(&d), vec![2, 3]);
    assert_eq!(d.iter().find(|d| d.snapshot.id.0[0] == 2).unwrap().reasons, vec!["tag a,b"]);
}

#[test]
fn local_time_moves_bucket_boundaries_to_the_zones_midnight() {
    // 23:00 and 01:00 in Tokyo (UTC+9): one UTC day, two local ones.
    let s = vec![snap(1, at("2026-12-01T14:00:00"), "h", &[]), snap(2, at("2026-12-01T16:00:00"), "h", &[])];
    let utc = KeepPolicy { buckets: [(Bucket::Daily, 2)].into(), ..Default::default() };
    assert_eq!(kept(&apply(&s, &utc, GroupBy::default())), vec![2]);
    let tokyo = KeepPolicy { time_zone: Some(jiff::tz::TimeZone::fixed(jiff::tz::offset(9))), ..utc };
    assert_eq!(kept(&apply(&s, &tokyo, GroupBy::default())), vec![1, 2]);
    // Spans count calendar months in the zone too.
    let span: RetentionSpan = "1m".parse().unwrap();
    let zone = jiff::tz::TimeZone::fixed(jiff::tz::offset(9));
    // 2026-03-31 05:00 UTC is 14:00 on 31 March in Tokyo: a month earlier is 28 February there.
    assert_eq!(span.start_in(at("2026-03-31T05:00:00"), Some(&zone)), at("2026-02-28T05:00:00"));
    assert_eq!(span.start(at("2026-03-31T05:00:00")), at("2026-02-28T05:00:00"));
}

#[test]
fn weekly_buckets_are_iso_weeks_across_new_year() {
    // 2026-12-31 is a Thursday: ISO week 53 of 2026 runs to Sunday 2027-01-03.
    assert_eq!(Bucket::Weekly.of(at("2026-12-28T00:00:00")), Bucket::Weekly.of(at("2027-01-03T23:59:59")));
    assert_ne!(Bucket::Weekly.of(at("2027-01-03T23:59:59")), Bucket::Weekly.of(at("2027-01-04T00:00:00")));
    assert_ne!(Bucket::Daily.of(at("2026-12-31T23:59:59")), Bucket::Daily.of(at("2027-01-01T00:00:00")));
    assert_eq!(Bucket::Monthly.of(at("2026-02-01T00:00:00")), Bucket::Monthly.of(at("2026-02-28T23:00:00")));
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
        proptest::option::of((0u32..400).prop_map(|days| RetentionSpan { days, ..Default::default() })),
        proptest::bool::ANY,
    )
        .prop_map(|(last, buckets, within, tag)| KeepPolicy {
            last,
            buckets,
            within,
            tags: if tag { vec![vec!["x".into()]] } else { Vec::new() },
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
