//! Retention policy: which snapshots `forget` keeps, and why. Pure: snapshots in, decisions
//! out, so every rule is property-tested without a repository.
//!
//! Snapshots are grouped (by host and paths unless told otherwise) and each group is judged on
//! its own, newest first. Bucket rules (`hourly` ... `yearly`) keep the newest snapshot of
//! each of the N newest buckets (UTC calendar) that hold one; `within` keeps everything no
//! older than a calendar span (restic's `1y5m7d2h`: years, months, days, hours) before the
//! group's newest snapshot; `within_*` keep one per bucket within that span; `tags` keep every
//! snapshot carrying all tags of one of the tag lists. A group is never emptied when any rule
//! is given: if no rule keeps anything, its newest snapshot stays.
//!
//! A write-only slot's snapshots always form groups of their own (SPEC §15.5): a stolen
//! write-only key can name any host, and so would otherwise take the places of that host's real
//! snapshots in `last` and in every bucket.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use crate::format::snapshot::Writer;
use crate::id::ObjectId;
use crate::utc;

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
    /// Who wrote it.
    pub writer: Writer,
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

    /// The bucket holding `ns` on the UTC calendar, as a number equal for equal buckets.
    pub fn of(self, ns: i64) -> i64 {
        self.of_in(ns, None)
    }

    /// The bucket holding `ns` on the calendar of `zone` (UTC when `None`).
    pub fn of_in(self, ns: i64, zone: Option<&jiff::tz::TimeZone>) -> i64 {
        let when = utc::zoned_in(ns, zone);
        let date = when.date();
        let (year, month) = (i64::from(date.year()), i64::from(date.month()));
        match self {
            Bucket::Hourly => {
                (year * 10_000 + month * 100 + i64::from(date.day())) * 100 + i64::from(when.time().hour())
            }
            Bucket::Daily => year * 10_000 + month * 100 + i64::from(date.day()),
            Bucket::Weekly => {
                let week = date.iso_week_date();
                i64::from(week.year()) * 100 + i64::from(week.week())
            }
            Bucket::Monthly => year * 12 + month,
            Bucket::Yearly => year,
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
    /// Keep everything within this span of the group's newest snapshot.
    pub within: Option<RetentionSpan>,
    /// Keep the newest of each bucket within this span of the group's newest snapshot.
    pub within_buckets: BTreeMap<Bucket, RetentionSpan>,
    /// Keep snapshots carrying every tag of one of these lists (restic's `--keep-tag a,b`:
    /// repeated lists are alternatives, the tags of one list are all needed).
    pub tags: Vec<Vec<String>>,
    /// The calendar of buckets and spans: this time zone's (`forget --local-time`), UTC when
    /// `None`. A machine that backs up at 00:30 local time wants its days to be local ones.
    pub time_zone: Option<jiff::tz::TimeZone>,
    /// When set (to the time forget runs), `within` spans end no later than this: a snapshot
    /// dated in the future (planted with a stolen write-only key, SPEC §15.5, or written by a
    /// host whose clock runs far ahead) cannot move the window and push real snapshots out.
    pub now_ns: Option<i64>,
}

/// A retention span as restic writes it: a sequence of numbers with units `y` (years), `m`
/// (months), `d` (days) and `h` (hours), e.g. `1y5m7d2h`. Calendar arithmetic in UTC: one
/// month before 31 March is 28 or 29 February.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct RetentionSpan {
    /// Years.
    pub years: u32,
    /// Months.
    pub months: u32,
    /// Days.
    pub days: u32,
    /// Hours.
    pub hours: u32,
}

impl RetentionSpan {
    /// The earliest time (ns) within the span before `newest_ns`, on the UTC calendar. Spans
    /// reaching before the earliest representable time reach everything.
    pub fn start(&self, newest_ns: i64) -> i64 {
        self.start_in(newest_ns, None)
    }

    /// [`RetentionSpan::start`] on the calendar of `zone` (UTC when `None`).
    pub fn start_in(&self, newest_ns: i64, zone: Option<&jiff::tz::TimeZone>) -> i64 {
        let span = jiff::Span::new()
            .try_years(i64::from(self.years))
            .and_then(|s| s.try_months(i64::from(self.months)))
            .and_then(|s| s.try_days(i64::from(self.days)))
            .and_then(|s| s.try_hours(i64::from(self.hours)));
        match span.and_then(|span| utc::zoned_in(newest_ns, zone).checked_sub(span)) {
            Ok(start) => utc::nanos(start.timestamp()),
            Err(_) => i64::MIN,
        }
    }
}

impl FromStr for RetentionSpan {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = |why: &str| {
            format!(
                "{why} in {s:?}: a span is numbers with units y (years), m (months), d (days), h (hours), e.g. 1y5m7d2h"
            )
        };
        let mut span = RetentionSpan::default();
        let mut rest = s.trim();
        if rest.is_empty() {
            return Err(bad("no span"));
        }
        while !rest.is_empty() {
            let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
            if digits == 0 {
                return Err(bad("a unit without a number"));
            }
            let n: u32 = rest[..digits].parse().map_err(|_| bad("a number too large"))?;
            let mut chars = rest[digits..].chars();
            let field = match chars.next() {
                Some('y') => &mut span.years,
                Some('m') => &mut span.months,
                Some('d') => &mut span.days,
                Some('h') => &mut span.hours,
                Some(_) => return Err(bad("an unknown unit")),
                None => return Err(bad("a number without a unit")),
            };
            *field = field.checked_add(n).ok_or_else(|| bad("a number too large"))?;
            rest = chars.as_str();
        }
        Ok(span)
    }
}

impl fmt::Display for RetentionSpan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts = [(self.years, 'y'), (self.months, 'm'), (self.days, 'd'), (self.hours, 'h')];
        let mut wrote = false;
        for (n, unit) in parts.into_iter().filter(|(n, _)| *n > 0) {
            write!(f, "{n}{unit}")?;
            wrote = true;
        }
        if !wrote {
            f.write_str("0h")?;
        }
        Ok(())
    }
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
    /// The writer: always part of the group ([`Writer::Full`] for every full key).
    pub writer: Writer,
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
        writer: s.writer,
    }
}

/// Judges every snapshot. Decisions come group by group, newest first within a group.
pub fn apply(snapshots: &[SnapshotInfo], policy: &KeepPolicy, by: GroupBy) -> Vec<Decision> {
    let zone = policy.time_zone.as_ref();
    let mut groups: BTreeMap<GroupKey, Vec<&SnapshotInfo>> = BTreeMap::new();
    for s in snapshots {
        groups.entry(group_key(s, by)).or_default().push(s);
    }
    let mut out = Vec::with_capacity(snapshots.len());
    for (key, mut members) in groups {
        members.sort_by(|a, b| b.time_ns.cmp(&a.time_ns).then(b.id.cmp(&a.id)));
        let newest = members.first().map_or(0, |s| s.time_ns).min(policy.now_ns.unwrap_or(i64::MAX));
        let mut left: BTreeMap<Bucket, u32> = policy.buckets.clone();
        let mut last_bucket: BTreeMap<Bucket, i64> = BTreeMap::new();
        let mut last_within_bucket: BTreeMap<Bucket, i64> = BTreeMap::new();
        let start = out.len();
        let mut i = 0usize;
        for s in &members {
            let mut reasons = Vec::new();
            if policy.now_ns.is_some_and(|now| s.time_ns > now) {
                // Counted, it would take the place of a real snapshot in `last` and in every
                // bucket; forgotten, a host whose clock runs ahead would lose it. Kept, and left
                // to a human.
                reasons.push("dated after now: kept, and counted by no rule".to_string());
                out.push(Decision { snapshot: (*s).clone(), group: key.clone(), keep: true, reasons });
                continue;
            }
            i += 1;
            if let Some(n) = policy.last
                && (i as u64) <= u64::from(n)
            {
                reasons.push(format!("last {n}"));
            }
            for (&bucket, n) in left.iter_mut() {
                let b = bucket.of_in(s.time_ns, zone);
                if *n > 0 && last_bucket.get(&bucket) != Some(&b) {
                    *n -= 1;
                    last_bucket.insert(bucket, b);
                    reasons.push(format!("{} {}", bucket.name(), policy.buckets.get(&bucket).copied().unwrap_or(0)));
                }
            }
            if let Some(w) = policy.within
                && s.time_ns >= w.start_in(newest, zone)
            {
                reasons.push(format!("within {w}"));
            }
            for (&bucket, &w) in &policy.within_buckets {
                let b = bucket.of_in(s.time_ns, zone);
                if s.time_ns >= w.start_in(newest, zone) && last_within_bucket.get(&bucket) != Some(&b) {
                    last_within_bucket.insert(bucket, b);
                    reasons.push(format!("{} within {w}", bucket.name()));
                }
            }
            if let Some(list) = policy.tags.iter().find(|list| list.iter().all(|t| s.tags.contains(t))) {
                reasons.push(format!("tag {}", list.join(",")));
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
#[path = "policy_tests.rs"]
mod tests;
