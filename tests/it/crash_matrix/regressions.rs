//! Crash orderings found by the matrix, kept as targeted tests: two rotations killed at the same
//! point, a lock left under a retired epoch, a slot left behind by an unfinished rotation.

use std::fs;
use std::path::{Path, PathBuf};

use super::*;

/// Issue 19, defect 1, through the binary with real kills: `key rotate` through the password
/// killed at its k-th write, the rerun through the recovery code killed at its k-th write too,
/// a snapshot through the recovery code, then `key rotate` through the password (which finishes
/// the job or is refused, naming the slot to use), then the rerun through the slot of the last
/// run killed. Every k: every slot opens, every snapshot (the one through the recovery code
/// included) restores through every slot in turn, `check --read-data` is clean, one keyring
/// is left.
#[test]
fn two_rotations_killed_at_the_same_point_from_different_slots_lose_nothing() {
    let m = Matrix::new();
    let scenarios: Vec<Scenario> = m.scenarios().into_iter().filter(|s| s.name == "key rotate").collect();
    let n = m.writes(&scenarios[0]);
    let jobs = (1..=n).map(|k| (0, vec![(Slot::Pw, (k, "before")), (Slot::Recovery, (k, "before"))])).collect();
    let t = run_all(&m, jobs, &scenarios).remove(&0).unwrap_or_default();
    eprintln!("{} double crash points, {} not reached, {} snapshots lost", t.double, t.not_reached, t.lost_snapshots);
    assert!(t.double >= n / 2, "only {} of {n} double crashes happened", t.double);
    assert!(t.failures.is_empty(), "{}", t.failures.join("\n"));
}

/// A repository with the three slots and one snapshot, for the targeted tests below.
fn small_repo(w: &World) -> PathBuf {
    let root = w.p("small");
    fs::create_dir_all(&root).unwrap();
    let mut init = w.cairn(&root, Slot::Pw);
    init.args(["init"]).args(KDF).arg("--recovery-code-out").arg(w.p("recovery"));
    must(init.output().unwrap(), "init");
    let mut add = w.cairn(&root, Slot::Pw);
    add.args(["key", "add", "--password"]).args(KDF).arg("--new-password-file").arg(w.p("pw2"));
    must(add.output().unwrap(), "key add");
    let src = w.source("src1", 1);
    // Through the recovery code, so its client remembers the audit log's head.
    must(run(w.cairn(&root, Slot::Recovery), &["snapshot", src.to_str().unwrap()]), "snapshot");
    root
}

/// The storage writes `args` makes through the password, run on a copy of `root`.
fn write_log(w: &World, root: &Path, args: &[&str]) -> Vec<String> {
    let copy = w.p("log-copy");
    copy_dir(root, &copy);
    let log = w.p("writes.log");
    let mut c = w.cairn(&copy, Slot::Pw);
    c.env("CAIRN_TEST_STORAGE_LOG", &log).args(args);
    must(c.output().unwrap(), "logged run");
    let lines = fs::read_to_string(&log).unwrap().lines().map(str::to_string).collect();
    fs::remove_dir_all(&copy).unwrap();
    fs::remove_file(&log).unwrap();
    lines
}

/// `key rotate --reencrypt` killed after it retired the epoch its own lock is sealed under
/// (before it deleted that lock): the lock is stale, not an unreadable lock that blocks every
/// exclusive command. Before the fix the rerun exited 11 ("unreadable lock").
#[test]
fn a_lock_left_under_a_retired_epoch_does_not_block_the_rerun() {
    let w = World::new();
    let root = small_repo(&w);
    let log = write_log(&w, &root, &["key", "rotate", "--reencrypt"]);
    let last_unlock = log.iter().rposition(|l| l.contains(" delete locks/")).unwrap() + 1;
    assert!(log[..last_unlock].iter().any(|l| l.contains(" put keyring/")), "{log:?}");
    let mut c = w.cairn(&root, Slot::Pw);
    c.env("CAIRN_TEST_KILL_AT", last_unlock.to_string()).args(["key", "rotate", "--reencrypt"]);
    assert_eq!(c.output().unwrap().status.signal(), Some(9), "killed before removing its lock");
    assert_eq!(walk_files(&root.join("repo/locks")).len(), 1, "the lock of the killed run is left");
    must(run(w.cairn(&root, Slot::Pw), &["key", "rotate"]), "the rerun");
    must(run(w.cairn(&root, Slot::Recovery), &["check", "--read-data"]), "check");
}

/// While a rotation is unfinished, a slot it has not moved yet cannot follow the audit log
/// past entries the moved slots wrote (sealed under the new epoch): its commands that write
/// are refused, nothing written, with the way out ("a key rotation did not finish"), not
/// "the repository was rolled back". Once the rotation is finished the slot writes again.
#[test]
fn a_slot_left_behind_by_an_unfinished_rotation_is_told_to_finish_it() {
    let w = World::new();
    let root = small_repo(&w);
    let log = write_log(&w, &root, &["key", "rotate"]);
    // Lock, new keyring, the slot in use: killed before the next slot is re-sealed.
    let second_slot = log.iter().enumerate().filter(|(_, l)| l.contains(" put keys/")).nth(1).unwrap().0 + 1;
    let mut c = w.cairn(&root, Slot::Pw);
    c.env("CAIRN_TEST_KILL_AT", second_slot.to_string()).args(["key", "rotate"]);
    assert_eq!(c.output().unwrap().status.signal(), Some(9));
    let src = w.p("src1");
    must(run(w.cairn(&root, Slot::Pw), &["snapshot", src.to_str().unwrap()]), "snapshot through the moved slot");
    let audit_before = walk_files(&root.join("repo/audit")).len();
    let out = run(w.cairn(&root, Slot::Recovery), &["snapshot", src.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("a key rotation did not finish") && !stderr.contains("rolled back"), "{stderr}");
    assert_eq!(walk_files(&root.join("repo/audit")).len(), audit_before, "nothing written");
    // It still lists (and reads) what was there before, and says what it cannot read.
    let out = run(w.cairn(&root, Slot::Recovery), &["--json", "snapshots"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("1 snapshot(s) could not be read") && stderr.contains("key rotation"), "{stderr}");
    assert_eq!(json(&out).as_array().unwrap().len(), 1, "the snapshot from before the rotation is listed");
    must(run(w.cairn(&root, Slot::Pw), &["key", "rotate"]), "the rotation finished");
    must(run(w.cairn(&root, Slot::Recovery), &["snapshot", src.to_str().unwrap()]), "snapshot after");
    must(run(w.cairn(&root, Slot::Pw2), &["check", "--read-data"]), "check");
}
