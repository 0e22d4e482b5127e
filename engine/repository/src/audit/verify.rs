//! `verify`'s checks of a log read back: the chain whole (every level present, each entry
//! naming entries of the level below), forks reported, and the snapshots in the repository
//! against those the log says were made and deleted.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::{AuditLog, AuditReport, INTENT, LoadedEntry};
use crate::format::audit::MAC_LEN;
use crate::id::ObjectId;

/// A gap in the chain, as one line however wide: entries were removed, or (when the gap is wider
/// than any log grows) an entry far above the rest was planted or forged.
fn missing_levels(first: u64, last: u64) -> String {
    let count = last - first + 1;
    if count == 1 {
        format!("no entry at seq {first}: an entry was removed")
    } else if count > 1_000_000 {
        format!(
            "no entries at seq {first}..={last} ({count} levels): an entry claims a sequence number far beyond the \
             log (planted or forged)"
        )
    } else {
        format!("no entries at seq {first}..={last} ({count} levels): entries were removed")
    }
}

/// Checks the chain of `log`: every level present, every predecessor present, forks reported.
/// Work and output grow with the entries present, not with the sequence numbers they claim.
pub(super) fn verify_chain(log: &AuditLog, report: &mut AuditReport) {
    let mut by_seq: BTreeMap<u64, Vec<&LoadedEntry>> = BTreeMap::new();
    for e in &log.entries {
        by_seq.entry(e.entry.seq).or_default().push(e);
    }
    let Some(&top) = by_seq.keys().next_back() else {
        if log.problems.is_empty() {
            report.problems.push("the audit log is empty: its entries were removed".into());
        }
        return;
    };
    report.head_seq = Some(top);
    let mut expected = 0u64;
    for (&seq, level) in &by_seq {
        if seq > expected {
            report.problems.push(missing_levels(expected, seq - 1));
        }
        expected = seq.saturating_add(1);
        if level.len() > 1 {
            let names: Vec<&str> = level.iter().map(|e| e.name.as_str()).collect();
            report.forks.push(format!("seq {seq}: {} concurrent entries ({})", level.len(), names.join(", ")));
        }
        if seq == 0 {
            if level.iter().any(|e| e.entry.operation != "init") {
                report.problems.push("the first entry is not the repository's init".into());
            }
            continue;
        }
        let below: HashMap<[u8; MAC_LEN], &LoadedEntry> =
            by_seq.get(&(seq - 1)).map(|l| l.iter().map(|e| (e.mac, *e)).collect()).unwrap_or_default();
        for e in level {
            for p in &e.entry.prev {
                if !below.contains_key(p) {
                    report.problems.push(format!(
                        "{} follows an entry at seq {} that is not in the log: an entry was removed or replaced",
                        e.name,
                        seq - 1
                    ));
                }
            }
        }
        // An entry below that no entry at this level follows is a branch nobody merged: fine only
        // as part of a fork (reported above), otherwise the chain was cut.
        let followed: BTreeSet<[u8; MAC_LEN]> = level.iter().flat_map(|e| e.entry.prev.iter().copied()).collect();
        if below.len() == 1 && below.keys().any(|m| !followed.contains(m)) {
            report.problems.push(format!("the entry at seq {} is not followed by the entries at seq {seq}", seq - 1));
        }
    }
}

/// What the log says about snapshots (SPEC §13b).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoggedSnapshots {
    /// Made by a logged operation.
    pub made: BTreeSet<ObjectId>,
    /// Deleted by a logged operation (its own entry, not an intent).
    pub deleted: BTreeSet<ObjectId>,
    /// Named by an intent to delete: absent or present, neither is a problem.
    pub intended: BTreeSet<ObjectId>,
    /// Announced by an intent to create (the entry written before a snapshot is): present
    /// without a logged end, the operation was interrupted after writing it; absent, before.
    pub announced: BTreeSet<ObjectId>,
}

impl LoggedSnapshots {
    /// Snapshots that must exist: made, not deleted, not about to be.
    pub fn live(&self) -> impl Iterator<Item = &ObjectId> {
        self.made.iter().filter(|id| !self.deleted.contains(id) && !self.intended.contains(id))
    }

    /// Snapshots that must exist but are not in `present`, sorted.
    pub fn missing(&self, present: &BTreeSet<ObjectId>) -> Vec<ObjectId> {
        self.live().filter(|id| !present.contains(id)).copied().collect()
    }
}

impl AuditLog {
    /// Made, deleted and intended snapshots over every authentic entry.
    pub fn snapshots(&self) -> LoggedSnapshots {
        let mut out = LoggedSnapshots::default();
        for e in &self.entries {
            let made = if e.entry.outcome == INTENT { &mut out.announced } else { &mut out.made };
            made.extend(e.entry.snapshots_created.iter().map(|b| ObjectId(*b)));
            let gone = if e.entry.outcome == INTENT { &mut out.intended } else { &mut out.deleted };
            gone.extend(e.entry.snapshots_deleted.iter().map(|b| ObjectId(*b)));
        }
        out
    }
}

/// Snapshots the log says exist (made and not deleted) vs those in the repository.
pub(super) fn verify_snapshots(log: &AuditLog, present: &BTreeSet<ObjectId>, report: &mut AuditReport) {
    let logged = log.snapshots();
    for id in logged.missing(present) {
        report.problems.push(format!("snapshot {} is gone but no logged operation deleted it", id.short()));
    }
    for id in present {
        if !logged.made.contains(id) && logged.announced.contains(id) {
            report.interrupted.push(format!(
                "snapshot {} was announced and written, but its operation never logged how it ended (interrupted \
                 after writing it)",
                id.short()
            ));
        } else if !logged.made.contains(id) {
            report.problems.push(format!("snapshot {} is in the repository but the log never recorded it", id.short()));
        } else if logged.deleted.contains(id) {
            report.problems.push(format!("snapshot {} was logged as deleted but is in the repository", id.short()));
        }
    }
}
