//! Acceptance 2: the audit log shows tampering. Each scenario copies one repository (and the
//! client cache that saw it), changes it behind the tool's back, and `cairn audit verify` must
//! report it and exit non-zero. Forks from concurrent writers are reported and verified.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cairn_engine::audit::{Actor, AuditRecord};
use cairn_engine::storage::{PutMode, Storage};

use crate::support::*;

/// Copies a directory tree.
fn copy_tree(from: &Path, to: &Path) {
    for f in walk_files(from) {
        let dest = to.join(f.strip_prefix(from).unwrap());
        fs::create_dir_all(dest.parent().unwrap()).unwrap();
        fs::copy(&f, &dest).unwrap();
    }
}

fn entries(repo: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(repo.join("audit")).unwrap().map(|d| d.unwrap().path()).collect();
    v.sort();
    v
}

struct Scenario {
    dir: tempfile::TempDir,
}

impl Scenario {
    /// A repository with init, three snapshots and a forget, all logged.
    fn build() -> (Scenario, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let s = Scenario { dir };
        fs::write(s.p("pw"), "audit test password\n").unwrap();
        fs::create_dir_all(s.p("src")).unwrap();
        s.cairn("base")
            .args(["init", "--no-recovery-code", "--kdf-memory", "8192", "--kdf-iterations", "1"])
            .assert()
            .success();
        let mut old_audit = PathBuf::new();
        for i in 0..3 {
            fs::write(s.p("src").join(format!("f{i}")), format!("file {i} ").repeat(1000)).unwrap();
            s.cairn("base").arg("snapshot").arg(s.p("src")).assert().success();
            if i == 0 {
                old_audit = s.p("audit-after-first-snapshot");
                copy_tree(&s.p("base/repo/audit"), &old_audit);
            }
        }
        let out = s.cairn("base").args(["--json", "snapshots"]).output().unwrap();
        let snaps: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let first = snaps.as_array().unwrap()[0]["id"].as_str().unwrap().to_string();
        s.cairn("base").args(["forget", &first]).assert().success();
        (s, old_audit)
    }

    fn p(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `cairn` on the copy `name` (its repo and its cache).
    fn cairn(&self, name: &str) -> assert_cmd::Command {
        cairn_cmd(&self.p(name).join("repo"), &self.p(name).join("cache"), &self.p("pw"))
    }

    /// A fresh copy of the base repository and cache.
    fn copy(&self, name: &str) -> PathBuf {
        copy_tree(&self.p("base"), &self.p(name));
        self.p(name).join("repo")
    }

    /// Runs `audit verify --json` on copy `name`; returns (exit code, problems).
    fn verify(&self, name: &str) -> (i32, Vec<String>, serde_json::Value) {
        let out = self.cairn(name).args(["--json", "audit", "verify"]).output().unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
        let problems = v["problems"].as_array().map(|a| a.iter().map(|p| p.as_str().unwrap().to_string()).collect());
        (out.status.code().unwrap(), problems.unwrap_or_default(), v)
    }

    fn assert_reported(&self, name: &str, expect: &str) {
        let (code, problems, v) = self.verify(name);
        assert_ne!(code, 0, "{name}: audit verify must fail: {v}");
        assert!(
            problems.iter().any(|p| p.contains(expect)),
            "{name}: expected a problem with {expect:?}, got {problems:#?}"
        );
    }
}

#[test]
fn audit_verify_reports_every_kind_of_tampering() {
    let (s, old_audit) = Scenario::build();
    let (code, problems, v) = s.verify("base");
    assert_eq!((code, problems.len()), (0, 0), "the untouched log verifies: {v}");
    assert_eq!(
        v["entries"], 9,
        "init, three snapshots (each announced, then logged), forget's intent and outcome; verify is not logged: {v}"
    );
    let out = s.cairn("base").args(["--json", "audit", "log"]).output().unwrap();
    let log: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ops: Vec<&str> = log["entries"].as_array().unwrap().iter().map(|e| e["operation"].as_str().unwrap()).collect();
    let snapshot = ["save snapshot", "snapshot"];
    assert_eq!(ops, [&["init"][..], &snapshot, &snapshot, &snapshot, &["forget", "forget"]].concat());
    let intent = &log["entries"][7];
    assert_eq!(intent["outcome"], "intent", "forget logs what it will delete first: {intent}");
    let forget = &log["entries"][8];
    assert_eq!(forget["outcome"], "ok", "{forget}");
    for e in [intent, forget] {
        assert_eq!(e["snapshots_deleted"].as_array().unwrap().len(), 1, "{e}");
    }
    let (announced, made) = (&log["entries"][1], &log["entries"][2]);
    assert_eq!(announced["outcome"], "intent", "a snapshot is announced before it is written: {announced}");
    assert_eq!(announced["snapshots_created"], made["snapshots_created"]);
    assert_eq!(made["snapshots_created"].as_array().unwrap().len(), 1);

    // 1. An entry deleted from the middle.
    let repo = s.copy("deleted");
    fs::remove_file(&entries(&repo)[2]).unwrap();
    s.assert_reported("deleted", "no entry at seq 2");

    // 2. One byte of an entry edited.
    let repo = s.copy("edited");
    let victim = entries(&repo)[2].clone();
    let mut bytes = fs::read(&victim).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    fs::write(&victim, bytes).unwrap();
    s.assert_reported("edited", "does not authenticate");

    // 3. Two entries swapped (each file now holds the other's bytes).
    let repo = s.copy("swapped");
    let (a, b) = (entries(&repo)[1].clone(), entries(&repo)[3].clone());
    let (ba, bb) = (fs::read(&a).unwrap(), fs::read(&b).unwrap());
    fs::write(&a, bb).unwrap();
    fs::write(&b, ba).unwrap();
    s.assert_reported("swapped", "does not authenticate");

    // 4. A snapshot deleted behind the tool's back.
    let repo = s.copy("snapshot-deleted");
    let snap = fs::read_dir(repo.join("snapshots")).unwrap().next().unwrap().unwrap().path();
    fs::remove_file(snap).unwrap();
    s.assert_reported("snapshot-deleted", "no logged operation deleted it");

    // 5. The whole audit/ rolled back to a copy taken after the first snapshot.
    let repo = s.copy("rolled-back");
    fs::remove_dir_all(repo.join("audit")).unwrap();
    copy_tree(&old_audit, &repo.join("audit"));
    s.assert_reported("rolled-back", "went backwards");
    s.assert_reported("rolled-back", "never recorded");

    // 6. The newest entry deleted: the client remembers it.
    let repo = s.copy("head-deleted");
    fs::remove_file(entries(&repo).last().unwrap()).unwrap();
    s.assert_reported("head-deleted", "went backwards");

    // 7. A foreign object dropped into audit/.
    let repo = s.copy("foreign");
    fs::write(repo.join("audit/000000000099-zz"), b"junk").unwrap();
    s.assert_reported("foreign", "not an audit entry name");
}

/// Lists `audit/` as it was when the log ended at `upto`: a writer that raced another.
#[derive(Debug)]
struct StaleAuditList {
    inner: Arc<dyn Storage>,
    upto: u64,
}

impl Storage for StaleAuditList {
    fn location(&self) -> String {
        self.inner.location()
    }
    fn put(&self, name: &str, data: &[u8], mode: PutMode) -> cairn_engine::Result<()> {
        self.inner.put(name, data, mode)
    }
    fn get(&self, name: &str) -> cairn_engine::Result<Vec<u8>> {
        self.inner.get(name)
    }
    fn get_range(&self, name: &str, offset: u64, len: u64) -> cairn_engine::Result<Vec<u8>> {
        self.inner.get_range(name, offset, len)
    }
    fn list(&self, prefix: &str) -> cairn_engine::Result<Vec<String>> {
        let names = self.inner.list(prefix)?;
        Ok(names
            .into_iter()
            .filter(|n| cairn_engine::format::audit::parse_entry_name(n).is_none_or(|(seq, _)| seq <= self.upto))
            .collect())
    }
    fn delete(&self, name: &str) -> cairn_engine::Result<()> {
        self.inner.delete(name)
    }
    fn stat(&self, name: &str) -> cairn_engine::Result<Option<u64>> {
        self.inner.stat(name)
    }
}

#[test]
fn concurrent_writers_fork_the_chain_visibly_and_the_next_entry_merges_it() {
    let t = TestRepo::new();
    let actor = Actor { host: "h".into(), user: "u".into() };
    let a = t.open();
    a.audit(&actor, &AuditRecord::new("one")).unwrap();
    a.audit(&actor, &AuditRecord::new("two")).unwrap();
    // Writer B listed the log before "two" landed: it also writes at seq 2.
    let stale: Arc<dyn Storage> = Arc::new(StaleAuditList { inner: t.storage.clone(), upto: 1 });
    let b = cairn_engine::Repository::open(
        stale,
        &cairn_engine::keys::OpenSecret::Password(cairn_engine::crypto::SecretBytes::from(PASSWORD.to_string())),
        t.dir.path().join("cache-b"),
    )
    .unwrap();
    b.audit(&actor, &AuditRecord::new("racing")).unwrap();
    let report = a.audit_verify().unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.forks.len(), 1, "the fork is reported: {report:?}");
    assert!(report.forks[0].starts_with("seq 2: 2 concurrent entries"), "{report:?}");
    // The next writer follows both heads.
    a.audit(&actor, &AuditRecord::new("after")).unwrap();
    let report = a.audit_verify().unwrap();
    assert!(report.is_ok() && report.forks.len() == 1 && report.head_seq == Some(3), "{report:?}");
    let log = a.audit_log().unwrap();
    assert_eq!(log.entries.last().unwrap().entry.prev.len(), 2, "the merge names both branches");
    // Removing one branch of the merged fork is caught.
    let branch = log.entries.iter().find(|e| e.entry.operation == "racing").unwrap();
    t.storage.delete(&branch.name).unwrap();
    let report = a.audit_verify().unwrap();
    assert!(report.problems.iter().any(|p| p.contains("not in the log")), "{report:?}");
}

#[test]
fn parallel_appends_keep_a_whole_chain() {
    let t = TestRepo::new();
    std::thread::scope(|scope| {
        for w in 0..4 {
            let t = &t;
            scope.spawn(move || {
                let repo = cairn_engine::Repository::open(
                    t.storage.clone(),
                    &cairn_engine::keys::OpenSecret::Password(cairn_engine::crypto::SecretBytes::from(
                        PASSWORD.to_string(),
                    )),
                    t.dir.path().join(format!("cache-{w}")),
                )
                .unwrap();
                for i in 0..5 {
                    let actor = Actor { host: format!("w{w}"), user: "u".into() };
                    repo.audit(&actor, &AuditRecord::new(&format!("op {i}"))).unwrap();
                }
            });
        }
    });
    let repo = t.open();
    let report = repo.audit_verify().unwrap();
    assert!(report.is_ok(), "{report:?}");
    let ops = repo.audit_log().unwrap().entries.iter().filter(|e| e.entry.operation.starts_with("op ")).count();
    assert_eq!(ops, 20, "every append is in the log");
}

/// A snapshot written by a process that died before logging its end is told apart from one
/// the log never heard of: the first was announced (an intent entry before the write) and is
/// reported as interrupted, not as tampering; the second is still a problem.
#[test]
fn a_snapshot_left_unlogged_by_a_crash_is_not_taken_for_a_planted_one() {
    let t = TestRepo::new();
    let work = tempfile::tempdir().unwrap();
    fs::write(work.path().join("f"), b"crash between the snapshot and its entry".repeat(100)).unwrap();
    // The process writes its snapshot and dies before the command's own entry.
    let mut repo = t.open();
    repo.set_actor(Actor { host: "h".into(), user: "u".into() });
    snapshot(&repo, &[work.path()]);
    drop(repo);
    let repo = t.open();
    let report = repo.audit_verify().unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.interrupted.len(), 1, "{report:?}");
    assert!(report.interrupted[0].contains("interrupted"), "{report:?}");
    // A snapshot nobody announced (written by a handle that logs nothing, as a forger would)
    // is still reported.
    snapshot(&repo, &[work.path()]);
    let report = repo.audit_verify().unwrap();
    assert_eq!(report.interrupted.len(), 1, "{report:?}");
    assert!(report.problems.iter().any(|p| p.contains("never recorded")), "{report:?}");
    assert_eq!(report.problems.len(), 1, "{report:?}");
}
