//! Prune against a storage that hides objects from listings (or whose listing lags), and
//! locks that stop holding. The client itself must never delete live data: prune refuses when
//! the audit log names snapshots the listing lacks, deletes in two phases (marked by one prune,
//! deleted by a later one after the grace period), and a backup whose lock was lost stores no
//! index segment and no snapshot.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use cairn_engine::audit::{Actor, AuditRecord};
use cairn_engine::backup::{BackupOptions, BackupOutcome, backup};
use cairn_engine::check::{CheckOptions, Subset, check};
use cairn_engine::prune::{PruneOptions, prune};
use cairn_engine::repo::LockOptions;
use cairn_engine::storage::{PutMode, Storage};
use cairn_engine::{Error, NoProgress, Repository};

use super::adversary::{Hiding, open_on};
use crate::support::*;

fn actor() -> Actor {
    Actor { host: "test-host".into(), user: "tester".into() }
}

/// A source directory of `n` bytes of random data from `seed`.
fn source(work: &Path, name: &str, n: usize, seed: u64) -> PathBuf {
    let src = work.join(name);
    fs::create_dir_all(src.join("d")).unwrap();
    fs::write(src.join("d/data"), random_bytes(n, seed)).unwrap();
    fs::write(src.join("note"), format!("source {name}")).unwrap();
    src
}

/// A snapshot of `src` and its audit entry, as `cairn snapshot` writes them.
fn logged_snapshot(repo: &Repository, src: &Path) -> BackupOutcome {
    let out = snapshot(repo, &[src]);
    let rec = AuditRecord { snapshots_created: vec![out.snapshot_id], ..AuditRecord::new("snapshot") };
    repo.audit(&actor(), &rec).unwrap();
    out
}

fn names(storage: &dyn Storage, prefix: &str) -> BTreeSet<String> {
    storage.list(prefix).unwrap().into_iter().collect()
}

/// Every object a prune could write or delete.
fn everything(storage: &dyn Storage) -> BTreeSet<String> {
    ["data/", "index/", "snapshots/", "marks/", "audit/", "locks/"].iter().flat_map(|p| names(storage, p)).collect()
}

/// `out` restores byte for byte as `src`, through `repo`.
fn assert_restores(repo: &Repository, out: &BackupOutcome, src: &Path, target: &Path) {
    let r = restore_all(repo, out, target).unwrap();
    assert!(r.damaged.is_empty(), "{r:?}");
    assert_same_tree(src, &restored_path(target, src));
    fs::remove_dir_all(target).unwrap();
}

fn assert_check_clean(repo: &Repository) {
    let report = check(repo, &CheckOptions { read_data: Some(Subset::All) }, &NoProgress).unwrap();
    assert!(!report.has_errors(), "{:?}", report.findings);
}

#[test]
fn a_prune_with_a_snapshot_hidden_from_the_listing_destroys_nothing_and_names_it() {
    let work = tempfile::tempdir().unwrap();
    let t = TestRepo::new();
    let hiding = Hiding::new(t.storage.clone());
    let repo = open_on(hiding.clone(), &t.cache());
    let src_a = source(work.path(), "a", 300_000, 1);
    let src_b = source(work.path(), "b", 300_000, 2);
    logged_snapshot(&repo, &src_a);
    let b = logged_snapshot(&repo, &src_b);
    let before = everything(t.storage.as_ref());

    // The storage hides B. Even a prune asked to delete at once must not take B's data for
    // unused: the audit log says B exists.
    hiding.hide(&format!("snapshots/{}", b.snapshot_id));
    let opts = PruneOptions { max_unused: 0.0, ..PruneOptions::default() };
    for opts in [opts, PruneOptions { instant_delete: true, ..opts }] {
        for dry_run in [true, false] {
            let err = prune(&repo, opts, dry_run, &NoProgress).unwrap_err();
            let msg = err.to_string();
            assert!(matches!(&err, Error::SnapshotsMissing { ids } if ids == &[b.snapshot_id]), "{msg}");
            assert!(msg.contains(&b.snapshot_id.to_hex()[..12]), "the message names the snapshot: {msg}");
            assert!(msg.contains("--accept-missing"), "and the way out: {msg}");
        }
    }
    assert_eq!(everything(t.storage.as_ref()), before, "nothing was written or deleted");

    // Shown again, B restores byte for byte.
    hiding.reveal_all();
    assert_restores(&repo, &b, &src_b, &work.path().join("restored"));
}

#[test]
fn accepting_a_hidden_snapshot_as_gone_is_logged_and_still_deletes_nothing_within_the_grace_period() {
    let work = tempfile::tempdir().unwrap();
    let t = TestRepo::new();
    let hiding = Hiding::new(t.storage.clone());
    let repo = open_on(hiding.clone(), &t.cache());
    let src_a = source(work.path(), "a", 300_000, 1);
    let src_b = source(work.path(), "b", 300_000, 2);
    let a = logged_snapshot(&repo, &src_a);
    let b = logged_snapshot(&repo, &src_b);
    hiding.hide(&format!("snapshots/{}", b.snapshot_id));
    assert_eq!(repo.missing_snapshots().unwrap(), vec![b.snapshot_id]);
    let err = repo.accept_missing(&actor(), &[a.snapshot_id]).unwrap_err();
    assert!(err.to_string().contains("not one the audit log misses"), "a present snapshot is not accepted: {err}");

    // The user, misled, accepts B as gone: the log records it, and prune runs.
    repo.accept_missing(&actor(), &[b.snapshot_id]).unwrap();
    let log = repo.audit_log().unwrap();
    let last = &log.entries.last().unwrap().entry;
    assert_eq!((last.operation.as_str(), last.snapshots_deleted.len()), ("accept missing", 1));
    let packs = names(t.storage.as_ref(), "data/");
    let out = prune(&repo, PruneOptions { max_unused: 0.0, ..PruneOptions::default() }, false, &NoProgress).unwrap();
    assert!(!out.sweep.pending.is_empty(), "B's packs are marked: {:?}", out.sweep);
    assert!(out.sweep.delete_now.is_empty(), "{:?}", out.sweep);
    assert!(names(t.storage.as_ref(), "data/").is_superset(&packs), "and not deleted");

    // B shows again within the grace period: it restores, and the next prune unmarks its packs.
    hiding.reveal_all();
    let fresh = open_on(hiding.clone(), &work.path().join("fresh-cache"));
    assert_restores(&fresh, &b, &src_b, &work.path().join("restored"));
    let again =
        prune(&fresh, PruneOptions { grace_period: Duration::ZERO, ..PruneOptions::default() }, false, &NoProgress)
            .unwrap();
    assert!(again.sweep.delete_now.is_empty() && again.sweep.pending.is_empty(), "{:?}", again.sweep);
    assert_restores(&fresh, &b, &src_b, &work.path().join("restored"));
}

#[test]
fn a_forget_killed_before_its_audit_entry_does_not_block_prune() {
    let work = tempfile::tempdir().unwrap();
    let t = TestRepo::new();
    let repo = t.open();
    let src_a = source(work.path(), "a", 200_000, 1);
    let src_b = source(work.path(), "b", 200_000, 2);
    let a = logged_snapshot(&repo, &src_a);
    let b = logged_snapshot(&repo, &src_b);
    // forget logs its intent, deletes, and dies before `cairn forget` appends its outcome.
    cairn_engine::forget::remove(&repo, &[b.snapshot_id], &actor()).unwrap();
    assert_eq!(repo.missing_snapshots().unwrap(), vec![]);
    let report = repo.audit_verify().unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    prune(&repo, PruneOptions { instant_delete: true, ..PruneOptions::default() }, false, &NoProgress).unwrap();
    assert_restores(&repo, &a, &src_a, &work.path().join("restored"));
    assert_check_clean(&repo);
}

#[test]
fn a_pack_whose_index_segment_is_hidden_is_only_marked_and_a_later_prune_deletes_it_after_the_grace_period() {
    let work = tempfile::tempdir().unwrap();
    let t = TestRepo::new();
    let hiding = Hiding::new(t.storage.clone());
    let repo = open_on(hiding.clone(), &t.cache());
    let src_a = source(work.path(), "a", 300_000, 1);
    let src_b = source(work.path(), "b", 300_000, 2);
    let a = logged_snapshot(&repo, &src_a);
    let (packs_a, segments_a) = (names(t.storage.as_ref(), "data/"), names(t.storage.as_ref(), "index/"));
    // B is being written: its packs and index segment are stored, its snapshot too, but its
    // audit entry is not (a backup that has not finished, or a log whose tail the storage
    // hides). The storage hides B's snapshot and index segment from the prune.
    let b = snapshot(&repo, &[&src_b]);
    let packs_b: BTreeSet<String> = names(t.storage.as_ref(), "data/").difference(&packs_a).cloned().collect();
    assert!(!packs_b.is_empty());
    hiding.hide(&format!("snapshots/{}", b.snapshot_id));
    for segment in names(t.storage.as_ref(), "index/").difference(&segments_a) {
        hiding.hide(segment);
    }

    // To this prune, B's packs are in no index: it marks them and deletes nothing.
    let first = prune(&repo, PruneOptions { max_unused: 0.0, ..PruneOptions::default() }, false, &NoProgress).unwrap();
    assert_eq!(first.plan.orphans.len(), packs_b.len(), "{:?}", first.plan);
    assert!(first.sweep.delete_now.is_empty(), "{:?}", first.sweep);
    assert_eq!(first.sweep.newly_marked, packs_b.len() as u64);
    assert!(names(t.storage.as_ref(), "data/").is_superset(&packs_b), "B's packs are still stored");
    // The mark is one sealed object: nothing in it names a pack in clear.
    let marks = names(t.storage.as_ref(), "marks/");
    assert_eq!(marks.len(), 1, "{marks:?}");
    let sealed = t.storage.get(marks.iter().next().unwrap()).unwrap();
    for pack in &packs_b {
        let id_hex = pack.rsplit('/').next().unwrap();
        let raw = hex::decode(id_hex).unwrap();
        assert!(!sealed.windows(32).any(|w| w == raw.as_slice()), "a pack id in clear");
        assert!(!sealed.windows(16).any(|w| w == &id_hex.as_bytes()[..16]), "a pack id in clear");
    }

    // Shown again, B restores byte for byte (a fresh client, so nothing comes from the cache).
    hiding.reveal_all();
    let fresh = open_on(hiding.clone(), &work.path().join("fresh-cache"));
    assert_restores(&fresh, &b, &src_b, &work.path().join("restored"));

    // B is now forgotten for real. Its packs are unreferenced, and marked since the first
    // prune: a prune within the grace period keeps them, one after it deletes them.
    cairn_engine::forget::remove(&fresh, &[b.snapshot_id], &actor()).unwrap();
    let second =
        prune(&fresh, PruneOptions { max_unused: 0.0, ..PruneOptions::default() }, false, &NoProgress).unwrap();
    assert!(second.sweep.delete_now.is_empty(), "within 24 h of the mark: {:?}", second.sweep);
    assert!(names(t.storage.as_ref(), "data/").is_superset(&packs_b));
    let after_grace = PruneOptions { max_unused: 0.0, grace_period: Duration::ZERO, ..PruneOptions::default() };
    let third = prune(&fresh, after_grace, false, &NoProgress).unwrap();
    assert_eq!(third.sweep.delete_now.len(), packs_b.len(), "{:?}", third.sweep);
    let left = names(t.storage.as_ref(), "data/");
    assert!(left.is_disjoint(&packs_b), "B's packs are gone");
    assert!(left.is_superset(&packs_a), "A's packs are kept");
    assert_eq!(names(t.storage.as_ref(), "marks/").len(), 1, "one marks object at a time");
    // Nothing is left to delete, and A is whole.
    let fourth = prune(&fresh, after_grace, false, &NoProgress).unwrap();
    assert!(fourth.sweep.delete_now.is_empty() && fourth.sweep.pending.is_empty(), "{:?}", fourth.sweep);
    assert_restores(&fresh, &a, &src_a, &work.path().join("restored"));
    assert_check_clean(&fresh);
}

#[test]
fn deletion_marks_served_again_after_a_newer_prune_are_not_trusted() {
    let work = tempfile::tempdir().unwrap();
    let t = TestRepo::new();
    let hiding = Hiding::new(t.storage.clone());
    let repo = open_on(hiding.clone(), &t.cache());
    let a = logged_snapshot(&repo, &source(work.path(), "a", 200_000, 1));
    let packs_a = names(t.storage.as_ref(), "data/");
    let segments_a = names(t.storage.as_ref(), "index/");
    let src_b = source(work.path(), "b", 200_000, 2);
    let b = snapshot(&repo, &[&src_b]);
    let hidden: Vec<String> = names(t.storage.as_ref(), "index/")
        .difference(&segments_a)
        .cloned()
        .chain([format!("snapshots/{}", b.snapshot_id)])
        .collect();
    let hide = || hidden.iter().for_each(|n| hiding.hide(n));
    // Prune 1 marks B's packs (hidden); the storage keeps that marks object.
    hide();
    prune(&repo, PruneOptions::default(), false, &NoProgress).unwrap();
    let old_marks = super::adversary::capture(t.storage.as_ref(), &["marks/"]);
    // B shows; prune 2 finds its packs used and drops the marks.
    hiding.reveal_all();
    let second = prune(&repo, PruneOptions::default(), false, &NoProgress).unwrap();
    assert!(second.sweep.pending.is_empty(), "{:?}", second.sweep);
    // Later the storage hides B again and serves the old marks back: to a prune with no grace
    // period at all, B's packs would look marked long ago. The client saw a newer generation.
    hide();
    super::adversary::replay(t.storage.as_ref(), &["marks/"], &old_marks);
    let third =
        prune(&repo, PruneOptions { grace_period: Duration::ZERO, ..PruneOptions::default() }, false, &NoProgress)
            .unwrap();
    assert!(third.marks_distrusted.is_some(), "{third:?}");
    assert!(third.sweep.delete_now.is_empty(), "{:?}", third.sweep);
    hiding.reveal_all();
    let fresh = open_on(hiding.clone(), &work.path().join("fresh-cache"));
    assert_restores(&fresh, &b, &src_b, &work.path().join("restored"));
    let _ = (a, packs_a);
}

/// Refuses every rewrite of a lock (the refresh), and holds the first pack back until one was
/// refused, so the backup surely runs on with a lock that failed to refresh.
#[derive(Debug)]
struct RefreshRefused {
    inner: Arc<dyn Storage>,
    refused: Mutex<bool>,
    cv: Condvar,
}

impl Storage for RefreshRefused {
    fn location(&self) -> String {
        self.inner.location()
    }
    fn put(&self, name: &str, data: &[u8], mode: PutMode) -> cairn_engine::Result<()> {
        if name.starts_with("locks/") && mode == PutMode::Overwrite {
            *self.refused.lock().unwrap() = true;
            self.cv.notify_all();
            return Err(Error::storage("put", name, std::io::Error::other("the storage refuses")));
        }
        if name.starts_with("data/") {
            let refused = self.refused.lock().unwrap();
            let (refused, _) = self.cv.wait_timeout_while(refused, Duration::from_secs(120), |r| !*r).unwrap();
            assert!(*refused, "the lock was never refreshed");
        }
        self.inner.put(name, data, mode)
    }
    fn get(&self, name: &str) -> cairn_engine::Result<Vec<u8>> {
        self.inner.get(name)
    }
    fn get_range(&self, name: &str, offset: u64, len: u64) -> cairn_engine::Result<Vec<u8>> {
        self.inner.get_range(name, offset, len)
    }
    fn list(&self, prefix: &str) -> cairn_engine::Result<Vec<String>> {
        self.inner.list(prefix)
    }
    fn delete(&self, name: &str) -> cairn_engine::Result<()> {
        self.inner.delete(name)
    }
    fn stat(&self, name: &str) -> cairn_engine::Result<Option<u64>> {
        self.inner.stat(name)
    }
}

#[test]
fn a_backup_whose_lock_refresh_failed_aborts_before_its_index_and_snapshot() {
    let work = tempfile::tempdir().unwrap();
    let t = TestRepo::new();
    let storage = Arc::new(RefreshRefused { inner: t.storage.clone(), refused: Mutex::new(false), cv: Condvar::new() });
    let repo = open_on(storage.clone(), &t.cache());
    let lock = repo
        .lock(&LockOptions {
            exclusive: false,
            operation: "snapshot".into(),
            hostname: "test-host".into(),
            username: "tester".into(),
            retry_for: Duration::ZERO,
            refresh_every: Duration::from_millis(20),
        })
        .unwrap();
    let src = source(work.path(), "src", 2_000_000, 3);
    let opts = BackupOptions {
        paths: vec![src.clone()],
        hostname: "test-host".into(),
        username: "tester".into(),
        program: "cairn-tests".into(),
        ..BackupOptions::default()
    };
    let err = backup(&repo, &opts, &NoProgress).unwrap_err();
    assert!(matches!(err, Error::LockLost { .. }), "{err}");
    assert!(err.to_string().contains("refresh failed"), "{err}");
    assert!(lock.check().is_err(), "the guard remembers");
    assert!(t.storage.list("snapshots/").unwrap().is_empty(), "no snapshot");
    assert!(t.storage.list("index/").unwrap().is_empty(), "no index segment names the packs");
    drop(lock);
    assert!(t.storage.list("locks/").unwrap().is_empty(), "the lock is released");
}

#[test]
fn a_backup_whose_lock_was_removed_under_it_aborts_before_its_snapshot() {
    let work = tempfile::tempdir().unwrap();
    let t = TestRepo::new();
    let repo = t.open();
    let lock = repo
        .lock(&LockOptions {
            exclusive: false,
            operation: "snapshot".into(),
            hostname: "test-host".into(),
            username: "tester".into(),
            retry_for: Duration::ZERO,
            refresh_every: cairn_engine::repo::REFRESH_EVERY,
        })
        .unwrap();
    // Another client (`cairn unlock --remove-all`, or one that took the lock for stale).
    t.storage.delete(lock.name()).unwrap();
    let src = source(work.path(), "src", 100_000, 4);
    let opts = BackupOptions { paths: vec![src], hostname: "h".into(), ..BackupOptions::default() };
    let err = backup(&repo, &opts, &NoProgress).unwrap_err();
    assert!(matches!(err, Error::LockLost { .. }), "{err}");
    assert!(t.storage.list("snapshots/").unwrap().is_empty());
}

#[test]
fn a_snapshot_taken_while_forget_prune_runs_in_another_process_restores_byte_for_byte() {
    let work = tempfile::tempdir().unwrap();
    let repo_dir = work.path().join("repo");
    let cache = work.path().join("cache");
    let pw = work.path().join("pw");
    fs::write(&pw, PASSWORD).unwrap();
    let cairn = || cairn_cmd(&repo_dir, &cache, &pw);
    cairn().args(["init", "--no-recovery-code", "--kdf-memory", "8192", "--kdf-iterations", "1"]).assert().success();
    // The old snapshot and the new one share a large file: forgetting the old one makes its
    // blobs unused exactly while the new snapshot wants to reuse them.
    let shared = random_bytes(8 << 20, 70);
    let old = work.path().join("old");
    fs::create_dir_all(&old).unwrap();
    fs::write(old.join("shared"), &shared).unwrap();
    fs::write(old.join("own"), random_bytes(4 << 20, 71)).unwrap();
    let out = cairn().args(["--json", "snapshot"]).arg(&old).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let old_id =
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["snapshot_id"].as_str().unwrap().to_string();
    let new = work.path().join("new");
    fs::create_dir_all(new.join("d")).unwrap();
    fs::write(new.join("shared"), &shared).unwrap();
    fs::write(new.join("d/own"), random_bytes(12 << 20, 72)).unwrap();

    let spawn = |args: Vec<std::ffi::OsString>| {
        let mut c = std::process::Command::new(assert_cmd::cargo::cargo_bin("cairn"));
        c.arg("-r").arg(&repo_dir).arg("--cache-dir").arg(&cache).arg("--password-file").arg(&pw);
        for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("CAIRN_")) {
            c.env_remove(k);
        }
        c.args(["--retry-lock", "5m"]).args(args).stdout(std::process::Stdio::null());
        c.spawn().unwrap()
    };
    let snap = spawn(vec!["snapshot".into(), new.clone().into()]);
    let forget = spawn(vec!["forget".into(), old_id.clone().into(), "--prune".into()]);
    for (name, mut child) in [("snapshot", snap), ("forget --prune", forget)] {
        assert!(child.wait().unwrap().success(), "{name} failed");
    }

    let out = cairn().args(["check", "--read-data"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let out = cairn().args(["audit", "verify"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
    let list = cairn().args(["--json", "snapshots"]).output().unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    let snaps = doc.as_array().unwrap();
    assert_eq!(snaps.len(), 1, "{doc}");
    let id = snaps[0]["id"].as_str().unwrap();
    let target = work.path().join("restored");
    cairn().args(["restore", id, "--target"]).arg(&target).assert().success();
    assert_same_tree(&new, &restored_path(&target, &new));
    // Whatever order they ran in, a later prune (past the grace period) keeps the snapshot whole.
    cairn().args(["prune", "--grace-period", "0s", "--max-unused", "0"]).assert().success();
    cairn().args(["prune", "--grace-period", "0s", "--max-unused", "0"]).assert().success();
    fs::remove_dir_all(&target).unwrap();
    cairn().args(["restore", id, "--target"]).arg(&target).assert().success();
    assert_same_tree(&new, &restored_path(&target, &new));
    let out = cairn().args(["check", "--read-data"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn cairn_prune_names_a_missing_snapshot_and_accept_missing_is_logged_way_out() {
    let work = tempfile::tempdir().unwrap();
    let repo_dir = work.path().join("repo");
    let pw = work.path().join("pw");
    fs::write(&pw, PASSWORD).unwrap();
    let cairn = || cairn_cmd(&repo_dir, &work.path().join("cache"), &pw);
    cairn().args(["init", "--no-recovery-code", "--kdf-memory", "8192", "--kdf-iterations", "1"]).assert().success();
    let mut ids = Vec::new();
    for (name, seed) in [("a", 1), ("b", 2)] {
        let src = source(work.path(), name, 100_000, seed);
        let out = cairn().args(["--json", "snapshot"]).arg(&src).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        ids.push(doc["snapshot_id"].as_str().unwrap().to_string());
    }
    // B vanishes from the listing (on a local disk the test can only take it away; hidden or
    // lagging storage looks the same to prune).
    let stored = repo_dir.join("snapshots").join(&ids[1]);
    let bytes = fs::read(&stored).unwrap();
    fs::remove_file(&stored).unwrap();
    let packs = walk_files(&repo_dir.join("data")).len();
    let out = cairn().arg("prune").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&ids[1][..12]) && stderr.contains("--accept-missing"), "{stderr}");
    assert_eq!(walk_files(&repo_dir.join("data")).len(), packs, "nothing deleted");
    let out = cairn().args(["prune", "--accept-missing", &ids[0][..10]]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "A is not missing");
    // The user declares B gone: logged, and prune runs (marking, not deleting, B's packs).
    cairn().args(["prune", "--accept-missing", &ids[1][..10]]).assert().success();
    assert_eq!(walk_files(&repo_dir.join("data")).len(), packs, "only marked");
    let log = cairn().args(["--json", "audit", "log"]).output().unwrap();
    let log: serde_json::Value = serde_json::from_slice(&log.stdout).unwrap();
    let accepted = log["entries"].as_array().unwrap().iter().find(|e| e["operation"] == "accept missing").unwrap();
    assert_eq!(accepted["snapshots_deleted"][0], ids[1].as_str(), "{accepted}");
    // B was not gone after all: it comes back within the grace period and restores.
    fs::write(&stored, bytes).unwrap();
    let target = work.path().join("restored");
    cairn().args(["restore", &ids[1], "--target"]).arg(&target).assert().success();
    let src_b = work.path().join("b");
    assert_same_tree(&src_b, &restored_path(&target, &src_b));
}
