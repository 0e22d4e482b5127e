//! The audit policy: which operations the audit log records, whether one fails when its entry
//! cannot be written, and what its entry says about how it ended. The CLI runs every command
//! through [`run`]; a program using the engine as a library does the same to keep the log.
//!
//! An operation that changes the repository first checks that the audit log descends from the
//! newest entry this client saw (its own entry would otherwise paper over a rollback) and fails
//! if its entry cannot be written. One that only reads (restore, dump, mount, check) goes on
//! without it, so it keeps working on read-only media; the caller is told the entry is missing.
//! `init` logs its own first entry (`Repository::init`).

use crate::audit::{Actor, AuditRecord};
use crate::error::Error;
use crate::repo::Repository;
use crate::storage::Access;

/// Every operation the audit log records, by the name its entries carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Snapshot,
    Restore,
    Dump,
    Mount,
    Check,
    Forget,
    Prune,
    Rewrite,
    Tag,
    Copy,
    Unlock,
    RepairIndex,
    RepairSnapshots,
    KeyAdd,
    KeyRemove,
    KeyPasswd,
    KeyRetireEpoch,
}

impl Operation {
    /// The name its audit entries carry.
    pub fn name(self) -> &'static str {
        match self {
            Operation::Snapshot => "snapshot",
            Operation::Restore => "restore",
            Operation::Dump => "dump",
            Operation::Mount => "mount",
            Operation::Check => "check",
            Operation::Forget => "forget",
            Operation::Prune => "prune",
            Operation::Rewrite => "rewrite",
            Operation::Tag => "tag",
            Operation::Copy => "copy",
            Operation::Unlock => "unlock",
            Operation::RepairIndex => "repair index",
            Operation::RepairSnapshots => "repair snapshots",
            Operation::KeyAdd => "key add",
            Operation::KeyRemove => "key remove",
            Operation::KeyPasswd => "key passwd",
            Operation::KeyRetireEpoch => "key retire-epoch",
        }
    }

    /// What it needs the storage to allow (a `cairn serve` identity's permission).
    pub fn needs(self) -> Access {
        match self {
            Operation::Restore | Operation::Dump | Operation::Mount | Operation::Check => Access::Read,
            Operation::Snapshot | Operation::Rewrite | Operation::Copy => Access::Append,
            Operation::Forget
            | Operation::Prune
            | Operation::Tag
            | Operation::Unlock
            | Operation::RepairIndex
            | Operation::RepairSnapshots => Access::Delete,
            Operation::KeyAdd | Operation::KeyRemove | Operation::KeyPasswd => Access::Keys,
            Operation::KeyRetireEpoch => Access::Admin,
        }
    }

    /// Whether it only reads the repository: it then runs on a log it cannot append to.
    pub fn only_reads(self) -> bool {
        matches!(self, Operation::Restore | Operation::Dump | Operation::Mount | Operation::Check)
    }
}

/// How an operation ended, as its entry states it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// Done; the entry keeps the outcome the operation recorded (`ok` unless it set another).
    Done,
    /// Done, but not all of it (files that could not be read, damage found).
    Partial,
    /// Done with this exit status, for commands whose status says more than ok or partial.
    Status(i32),
    /// Failed, for this reason.
    Failed(String),
    /// Refused before doing anything (the repository was locked): no entry is written.
    Refused,
}

/// What [`run`] gives back: the operation's own result, and the audit log's failure when a
/// reading operation could not append its entry (the caller warns about it).
#[derive(Debug)]
pub struct Audited<T> {
    /// What the operation returned.
    pub result: T,
    /// Why its entry is missing, when it is: an operation that only reads, or one that failed
    /// anyway (the caller reports its own error and warns about the entry).
    pub entry_missing: Option<Error>,
}

/// Why the audit policy stopped an operation.
#[derive(Debug, thiserror::Error)]
pub enum AuditFailure {
    /// Not started: the log went back from what this client saw (or could not be read).
    #[error(transparent)]
    NotStarted(Error),
    /// Done, but its entry could not be written: a change that is not in the log.
    #[error("{operation} finished, but its audit entry could not be written: {source}")]
    EntryLost {
        operation: &'static str,
        #[source]
        source: Error,
    },
}

/// Runs `f` as `operation` by `actor` and appends its audit entry, with what `f` recorded in it
/// and the outcome `ending` reads from its result.
pub fn run<T>(
    repo: &Repository,
    actor: &Actor,
    operation: Operation,
    f: impl FnOnce(&mut AuditRecord) -> T,
    ending: impl FnOnce(&T) -> Ending,
) -> std::result::Result<Audited<T>, AuditFailure> {
    // Before anything is written: a server that would refuse the operation half-way refuses
    // it here, and the repository stays as it was.
    repo.permits(operation.needs()).map_err(AuditFailure::NotStarted)?;
    if !operation.only_reads() {
        repo.check_not_rolled_back().map_err(AuditFailure::NotStarted)?;
    }
    let mut record = AuditRecord::new(operation.name());
    let result = f(&mut record);
    let succeeded = match ending(&result) {
        Ending::Refused => return Ok(Audited { result, entry_missing: None }),
        Ending::Failed(why) => {
            record.outcome = format!("failed: {why}");
            false
        }
        Ending::Partial => {
            record.outcome = "partial".into();
            true
        }
        Ending::Status(code) => {
            if record.outcome == "ok" {
                record.outcome = format!("exit {code}");
            }
            true
        }
        Ending::Done => true,
    };
    match repo.audit(actor, &record) {
        Ok(_) => Ok(Audited { result, entry_missing: None }),
        Err(e) if succeeded && !operation.only_reads() => {
            Err(AuditFailure::EntryLost { operation: operation.name(), source: e })
        }
        Err(e) => Ok(Audited { result, entry_missing: Some(e) }),
    }
}

#[cfg(test)]
mod tests {
    use cairn_repository::repo::testing::TestRepository;

    use super::*;

    fn actor() -> Actor {
        Actor { host: "host".into(), user: "user".into() }
    }

    /// A change that cannot be logged fails; a read that cannot be logged goes on and says so.
    #[test]
    fn an_entry_that_cannot_be_written_fails_a_change_and_not_a_read() {
        use crate::storage::{FaultStorage, Storage};
        use std::sync::Arc;
        let t = TestRepository::new(64 << 10);
        let fault: Arc<dyn Storage> = Arc::new(FaultStorage::new(t.storage.clone(), Some(0)));
        let cache = tempfile::tempdir().unwrap();
        let secret = crate::keys::OpenSecret::Password(crate::crypto::SecretBytes::from(
            cairn_repository::repo::testing::PASSWORD.to_string(),
        ));
        let repo = Repository::open(fault, &secret, cache.path().to_path_buf()).unwrap();
        let change = run(&repo, &actor(), Operation::Tag, |_| 7, |_| Ending::Done);
        assert!(matches!(change, Err(AuditFailure::EntryLost { operation: "tag", .. })), "{change:?}");
        let read = run(&repo, &actor(), Operation::Restore, |_| 7, |_| Ending::Done).unwrap();
        assert_eq!(read.result, 7);
        assert!(read.entry_missing.is_some());
    }

    #[test]
    fn each_ending_is_logged_as_its_outcome_and_a_refusal_not_at_all() {
        let t = TestRepository::new(64 << 10);
        let before = t.repo.audit_log().unwrap().entries.len();
        let cases = [
            (Operation::Tag, Ending::Done, "ok"),
            (Operation::Snapshot, Ending::Partial, "partial"),
            (Operation::Check, Ending::Status(3), "exit 3"),
            (Operation::Forget, Ending::Failed("disk full".into()), "failed: disk full"),
        ];
        for (operation, ending, _) in &cases {
            let done = run(&t.repo, &actor(), *operation, |rec| rec.detail = "d".into(), |_| ending.clone()).unwrap();
            assert!(done.entry_missing.is_none());
        }
        run(&t.repo, &actor(), Operation::Prune, |_| (), |_| Ending::Refused).unwrap();
        let entries = t.repo.audit_log().unwrap().entries;
        let logged: Vec<(String, String)> =
            entries[before..].iter().map(|e| (e.entry.operation.clone(), e.entry.outcome.clone())).collect();
        let expected: Vec<(String, String)> =
            cases.iter().map(|(op, _, outcome)| (op.name().to_string(), outcome.to_string())).collect();
        assert_eq!(logged, expected, "four entries in order, none for the refused prune");
    }
}
