//! Issue 4: forget and prune keep every blob a remaining snapshot needs, even when prune dies
//! at any step; locks keep exclusive work apart; concurrent snapshots and a waiting prune all
//! succeed. Most prunes here delete at once (`instant_delete`): what they test is the deletion
//! itself; the model test runs two-phase deletion with no grace period.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cairn_engine::audit::Actor;
use cairn_engine::check::{CheckOptions, Subset, check};
use cairn_engine::crypto::SecretBytes;
use cairn_engine::keys::OpenSecret;
use cairn_engine::prune::{PruneOptions, prune};
use cairn_engine::repo::LockOptions;
use cairn_engine::storage::{FaultStorage, LocalStorage, Storage};
use cairn_engine::{Error, NoProgress, ObjectId, Repository};

use crate::support::*;

/// Prune options of the tests that check deletion itself: repack everything wasteful, delete at
/// once.
fn instant() -> PruneOptions {
    PruneOptions { max_unused: 0.0, instant_delete: true, ..PruneOptions::default() }
}

fn actor() -> Actor {
    Actor { host: "test-host".into(), user: "tester".into() }
}

fn open_at(repo_dir: &Path, cache: &Path, storage: Arc<dyn Storage>) -> Repository {
    let _ = repo_dir;
    Repository::open(storage, &OpenSecret::Password(SecretBytes::from(PASSWORD.to_string())), cache.to_path_buf())
        .unwrap()
}

/// Three snapshots of a changing tree, the state of each kept aside for comparison.
struct History {
    work: tempfile::TempDir,
    t: TestRepo,
    src: PathBuf,
    snaps: Vec<(ObjectId, PathBuf)>,
}

fn history() -> History {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    fs::create_dir_all(src.join("d")).unwrap();
    // Small chunks and packs, so there are many packs and prune has blobs to sort.
    let t = TestRepo::with_chunker(cairn_engine::chunker::ChunkerParams {
        min_size: 4096,
        avg_size: 16384,
        max_size: 65536,
    });
    let repo = t.open();
    let mut snaps = Vec::new();
    for round in 0..3u64 {
        fs::write(src.join("stable"), random_bytes(300_000, 1)).unwrap();
        fs::write(src.join(format!("d/round-{round}")), random_bytes(200_000, 10 + round)).unwrap();
        fs::write(src.join("changing"), random_bytes(400_000, 20 + round)).unwrap();
        if round == 1 {
            fs::remove_file(src.join("d/round-0")).unwrap();
        }
        let out = snapshot(&repo, &[&src]);
        let expected = work.path().join(format!("expected-{round}"));
        assert!(std::process::Command::new("cp").arg("-a").arg(&src).arg(&expected).status().unwrap().success());
        snaps.push((out.snapshot_id, expected));
    }
    History { work, t, src, snaps }
}

/// Every snapshot still in `repo` restores exactly as its source was; `check --read-data` is
/// clean.
fn assert_intact(h: &History, repo: &Repository, label: &str) {
    let report = check(repo, &CheckOptions { read_data: Some(Subset::All) }, &NoProgress).unwrap();
    assert!(!report.has_errors(), "{label}: check found {:?}", report.findings);
    let ids = repo.snapshot_ids().unwrap();
    for (id, expected) in &h.snaps {
        if !ids.contains(id) {
            continue;
        }
        let snap = repo.load_snapshot(id).unwrap();
        let target = h.work.path().join(format!("restore-{label}-{}", &id.to_hex()[..8]));
        let opts = cairn_engine::restore::RestoreOptions { target: target.clone(), ..Default::default() };
        let r = cairn_engine::restore::restore(repo, snap.tree, &opts, &NoProgress).unwrap();
        assert!(r.damaged.is_empty(), "{label}: {r:?}");
        assert_same_tree(expected, &restored_path(&target, &h.src));
        fs::remove_dir_all(&target).unwrap();
    }
}

#[test]
fn forget_and_prune_free_space_and_keep_what_remains() {
    let h = history();
    let repo = h.t.open();
    cairn_engine::forget::remove(&repo, &[h.snaps[0].0, h.snaps[1].0], &actor()).unwrap();
    let before = h.t.size();
    let dry = prune(&repo, PruneOptions::default(), true, &NoProgress).unwrap();
    assert!(!dry.plan.is_empty(), "{:?}", dry.plan);
    assert_eq!(h.t.size(), before, "a dry run changes nothing");
    let out = prune(&repo, instant(), false, &NoProgress).unwrap();
    assert!(out.plan.bytes_freed() > 0);
    assert_eq!(out.sweep.delete_now_bytes, out.plan.delete_bytes + out.plan.repack_bytes);
    assert!(h.t.size() < before - 500_000, "{} -> {}", before, h.t.size());
    assert_intact(&h, &repo, "after");
    // A second prune finds nothing left to do.
    let again = prune(&repo, instant(), false, &NoProgress).unwrap();
    assert!(again.plan.is_empty(), "{:?}", again.plan);
    // A fresh client (no cache) sees the same repository.
    fs::remove_dir_all(h.t.cache()).unwrap();
    assert_intact(&h, &h.t.open(), "fresh");
}

#[test]
fn prune_interrupted_at_every_step_loses_nothing() {
    let h = history();
    cairn_engine::forget::remove(&h.t.open(), &[h.snaps[0].0], &actor()).unwrap();
    let mut n = 0u64;
    loop {
        // A copy of the repository for this crash point.
        let copy = h.work.path().join(format!("crash-{n}"));
        assert!(std::process::Command::new("cp").arg("-a").arg(h.t.repo_path()).arg(&copy).status().unwrap().success());
        let local: Arc<dyn Storage> = Arc::new(LocalStorage::new(&copy));
        let faulty = Arc::new(FaultStorage::new(local.clone(), Some(n)));
        let cache = h.work.path().join(format!("cache-{n}"));
        let repo = open_at(&copy, &cache, faulty.clone());
        let opts = instant();
        let result = prune(&repo, opts, false, &NoProgress);
        drop(repo);
        // Whatever happened, a new client (fresh cache) finds every remaining snapshot whole.
        let repo = open_at(&copy, &h.work.path().join(format!("cache-{n}-after")), local.clone());
        assert_intact(&h, &repo, &format!("crash after {n} writes"));
        match result {
            Ok(_) => {
                assert!(n > 3, "prune finished after only {n} writes");
                break;
            }
            Err(Error::Storage { .. }) => {}
            Err(e) => panic!("crash point {n}: unexpected {e}"),
        }
        // The next prune, uninterrupted, completes the job.
        prune(&repo, opts, false, &NoProgress).unwrap();
        assert_intact(&h, &repo, &format!("re-run after {n}"));
        fs::remove_dir_all(&copy).unwrap();
        n += 1;
        assert!(n < 200, "prune never finished");
    }
}

fn lock_opts(exclusive: bool, op: &str) -> LockOptions {
    LockOptions {
        exclusive,
        operation: op.into(),
        hostname: "test-host".into(),
        username: "tester".into(),
        retry_for: std::time::Duration::ZERO,
        refresh_every: cairn_engine::repo::REFRESH_EVERY,
    }
}

#[test]
fn exclusive_locks_exclude_and_shared_ones_coexist() {
    let t = TestRepo::new();
    let repo = t.open();
    let s1 = repo.lock(&lock_opts(false, "snapshot")).unwrap();
    let s2 = repo.lock(&lock_opts(false, "restore")).unwrap();
    let err = repo.lock(&lock_opts(true, "prune")).unwrap_err();
    assert!(matches!(&err, Error::Locked { holder, .. } if holder.contains("shared")), "{err}");
    drop((s1, s2));
    let ex = repo.lock(&lock_opts(true, "prune")).unwrap();
    let err = repo.lock(&lock_opts(false, "snapshot")).unwrap_err();
    assert!(err.to_string().contains("exclusive prune by tester@test-host"), "{err}");
    drop(ex);
    assert!(t.storage.list("locks/").unwrap().is_empty(), "released locks are deleted");
    // A lock left by a process that died on this machine is stale and ignored, and unlock
    // removes it.
    let dead = cairn_engine::format::lock::LockDoc {
        exclusive: true,
        operation: "prune".into(),
        hostname: "test-host".into(),
        username: "ghost".into(),
        pid: 0,
        created_ns: 1,
        refreshed_ns: cairn_engine::format::now_ns(),
        machine: repo.machine_identity().unwrap(),
    };
    repo.save_object(
        cairn_engine::format::envelope::ObjectKind::Lock,
        "locks/00000000000000000000000000000000000000000000000000000000000000aa",
        &dead.encode(),
    )
    .unwrap();
    let live = repo.lock(&lock_opts(true, "prune")).unwrap();
    drop(live);
    assert_eq!(repo.unlock(false).unwrap(), 1);
    assert!(t.storage.list("locks/").unwrap().is_empty());
}

#[test]
fn concurrent_snapshots_and_a_waiting_prune_all_succeed() {
    let work = tempfile::tempdir().unwrap();
    let repo_dir = work.path().join("repo");
    fs::write(work.path().join("pw"), PASSWORD).unwrap();
    let cairn = || cairn_cmd(&repo_dir, &work.path().join("cache"), &work.path().join("pw"));
    cairn().args(["init", "--no-recovery-code", "--kdf-memory", "8192", "--kdf-iterations", "1"]).assert().success();
    let mut sources = Vec::new();
    for i in 0..2u64 {
        let src = work.path().join(format!("src-{i}"));
        fs::create_dir_all(&src).unwrap();
        fs::write(src.join("shared"), random_bytes(8 << 20, 99)).unwrap();
        fs::write(src.join("own"), random_bytes(8 << 20, i)).unwrap();
        sources.push(src);
    }
    // Everyone waits for the others' locks; the order they get them in does not matter.
    let spawn = |args: Vec<std::ffi::OsString>| {
        let mut c = std::process::Command::new(assert_cmd::cargo::cargo_bin("cairn"));
        c.arg("-r")
            .arg(&repo_dir)
            .arg("--cache-dir")
            .arg(work.path().join("cache"))
            .arg("--password-file")
            .arg(work.path().join("pw"));
        c.args(["--retry-lock", "2m"]).args(args).env_remove("CAIRN_REPOSITORY").spawn().unwrap()
    };
    let a = spawn(vec!["snapshot".into(), sources[0].clone().into()]);
    let b = spawn(vec!["snapshot".into(), sources[1].clone().into()]);
    let p = spawn(vec!["prune".into()]);
    for (name, mut child) in [("snapshot a", a), ("snapshot b", b), ("prune", p)] {
        assert!(child.wait().unwrap().success(), "{name} failed");
    }
    let out = cairn().args(["check", "--read-data"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    for src in &sources {
        let target = work.path().join(format!("out-{}", src.file_name().unwrap().to_string_lossy()));
        let spec = format!("latest:{}", src.display());
        // `latest` of all snapshots may be the other source's: pick by path through the JSON.
        let list = cairn().args(["--json", "snapshots"]).output().unwrap();
        let doc: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
        let id =
            doc.as_array().unwrap().iter().find(|s| s["paths"][0] == src.to_string_lossy().as_ref()).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string();
        let _ = spec;
        cairn().args(["restore", &id, "--target"]).arg(&target).assert().success();
        assert_same_tree(src, &restored_path(&target, src));
    }
}

#[test]
fn a_locked_repository_exits_11_naming_the_holder_and_check_exits_1_on_damage() {
    let work = tempfile::tempdir().unwrap();
    fs::write(work.path().join("pw"), PASSWORD).unwrap();
    let repo_dir = work.path().join("repo");
    let cairn = || cairn_cmd(&repo_dir, &work.path().join("cache"), &work.path().join("pw"));
    cairn().args(["init", "--no-recovery-code", "--kdf-memory", "8192", "--kdf-iterations", "1"]).assert().success();
    let src = work.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("f"), random_bytes(100_000, 3)).unwrap();
    cairn().arg("snapshot").arg(&src).assert().success();

    let storage: Arc<dyn Storage> = Arc::new(LocalStorage::new(&repo_dir));
    let repo = open_at(&repo_dir, &work.path().join("cache-holder"), storage);
    let held = repo.lock(&lock_opts(true, "prune")).unwrap();
    let out = cairn().args(["--json", "snapshot"]).arg(&src).output().unwrap();
    assert_eq!(out.status.code(), Some(11), "{}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("exclusive prune by tester@test-host"), "{stderr}");
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["exit_code"], 11);
    // A live lock is not stale: plain unlock leaves it.
    let out = cairn().arg("unlock").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("0 lock(s) removed"));
    drop(held);
    cairn().arg("check").assert().success();

    // Damage: check exits 1 and --json lists the finding.
    let packs = walk_files(&repo_dir.join("data"));
    for p in &packs {
        fs::remove_file(p).unwrap();
    }
    let out = cairn().args(["--json", "check"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["ok"], false);
    assert!(doc["findings"].as_array().unwrap().iter().any(|f| f["problem"] == "pack is missing"), "{doc}");
}

/// One step of the model test.
#[derive(Debug, Clone)]
enum Op {
    /// Rewrite the source from `seed` (some files shared with earlier states) and snapshot it.
    Snapshot(u8),
    /// Forget the k-th remaining snapshot (modulo their number).
    Forget(usize),
    /// Prune, dying after this many writes (`None`: runs to the end).
    Prune(Option<u8>),
}

fn op() -> impl proptest::strategy::Strategy<Value = Op> {
    use proptest::prelude::*;
    prop_oneof![
        3 => (0u8..6).prop_map(Op::Snapshot),
        2 => (0usize..8).prop_map(Op::Forget),
        3 => proptest::option::of(0u8..8).prop_map(Op::Prune),
    ]
}

/// The files of a source state: a few files, some content shared between seeds.
fn state(seed: u8) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut m = std::collections::BTreeMap::new();
    m.insert("shared".to_string(), random_bytes(60_000, 7));
    m.insert(
        format!("by-seed-{}", seed % 3),
        random_bytes(40_000 + usize::from(seed) * 1000, u64::from(seed % 3) + 100),
    );
    m.insert("own".to_string(), random_bytes(30_000, u64::from(seed) + 200));
    m
}

fn files_under(root: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    walk_files(root)
        .into_iter()
        .map(|p| (p.strip_prefix(root).unwrap().to_string_lossy().into_owned(), fs::read(&p).unwrap()))
        .collect()
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 48, max_shrink_iters: 20, ..Default::default() })]

    #[test]
    fn random_snapshot_forget_prune_sequences_with_crashes_never_lose_data(ops in proptest::collection::vec(op(), 1..12)) {
        let work = tempfile::tempdir().unwrap();
        let src = work.path().join("src");
        let t = TestRepo::with_chunker(cairn_engine::chunker::ChunkerParams { min_size: 2048, avg_size: 8192, max_size: 32768 });
        let local: Arc<dyn Storage> = t.storage.clone();
        let mut model: Vec<(ObjectId, std::collections::BTreeMap<String, Vec<u8>>)> = Vec::new();
        for (step, op) in ops.iter().enumerate() {
            let repo = open_at(&t.repo_path(), &t.cache(), local.clone());
            match op {
                Op::Snapshot(seed) => {
                    let files = state(*seed);
                    let _ = fs::remove_dir_all(&src);
                    fs::create_dir_all(&src).unwrap();
                    for (name, bytes) in &files {
                        fs::write(src.join(name), bytes).unwrap();
                    }
                    let out = snapshot(&repo, &[&src]);
                    model.push((out.snapshot_id, files));
                }
                Op::Forget(k) if !model.is_empty() => {
                    let (id, _) = model.remove(k % model.len());
                    cairn_engine::forget::remove(&repo, &[id], &actor()).unwrap();
                }
                Op::Forget(_) => {}
                Op::Prune(fail_after) => {
                    drop(repo);
                    let faulty: Arc<dyn Storage> = Arc::new(FaultStorage::new(local.clone(), fail_after.map(u64::from)));
                    let crashing = open_at(&t.repo_path(), &work.path().join(format!("cache-{step}")), faulty);
                    // Two-phase, no grace period: each prune deletes what the one before marked.
                    let opts = PruneOptions { max_unused: 0.0, grace_period: std::time::Duration::ZERO, ..PruneOptions::default() };
                    match prune(&crashing, opts, false, &NoProgress) {
                        Ok(_) | Err(Error::Storage { .. }) => {}
                        Err(e) => panic!("step {step}: prune failed: {e}"),
                    }
                }
            }
            // Every remaining snapshot restores exactly, seen by a client with no cache.
            let fresh = open_at(&t.repo_path(), &work.path().join(format!("fresh-{step}")), local.clone());
            let report = check(&fresh, &CheckOptions { read_data: Some(Subset::All) }, &NoProgress).unwrap();
            proptest::prop_assert!(!report.has_errors(), "step {} {:?}: {:?}", step, op, report.findings);
            for (id, files) in &model {
                let tree = fresh.load_snapshot(id).unwrap().tree;
                let target = work.path().join(format!("restore-{step}-{}", &id.to_hex()[..8]));
                let opts = cairn_engine::restore::RestoreOptions { target: target.clone(), ..Default::default() };
                let r = cairn_engine::restore::restore(&fresh, tree, &opts, &NoProgress).unwrap();
                proptest::prop_assert!(r.damaged.is_empty(), "step {} {:?}: {:?}", step, op, r.damaged);
                proptest::prop_assert_eq!(&files_under(&restored_path(&target, &src)), files);
                fs::remove_dir_all(&target).unwrap();
            }
        }
    }
}

/// Runs `hook` once, right after the `at`-th pack is stored through it: a prune that starts
/// while a backup is writing.
struct HookAfterPack {
    inner: Arc<dyn Storage>,
    packs: std::sync::atomic::AtomicU64,
    at: u64,
    hook: std::sync::Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

impl std::fmt::Debug for HookAfterPack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HookAfterPack")
    }
}

impl Storage for HookAfterPack {
    fn location(&self) -> String {
        self.inner.location()
    }
    fn put(&self, name: &str, data: &[u8], mode: cairn_engine::storage::PutMode) -> cairn_engine::Result<()> {
        self.inner.put(name, data, mode)?;
        if name.starts_with("data/") && self.packs.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1 == self.at {
            let hook = self.hook.lock().unwrap().take();
            if let Some(hook) = hook {
                hook();
            }
        }
        Ok(())
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

fn small_packs() -> TestRepo {
    let chunker = cairn_engine::chunker::ChunkerParams { min_size: 64 << 10, avg_size: 128 << 10, max_size: 256 << 10 };
    TestRepo::with_options(chunker, 256 << 10)
}

#[test]
fn a_backup_whose_packs_a_prune_deletes_while_it_runs_writes_no_snapshot() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("big"), random_bytes(3 << 20, 11)).unwrap();
    let t = small_packs();
    // A prune that takes the backup for gone (its lock looked stale to a host whose clock is
    // ahead; here the backup holds none) and deletes at once: the packs stored so far are in
    // no index yet, so they look like an interrupted backup's orphans.
    let (storage, cache) = (t.storage.clone(), work.path().join("prune-cache"));
    let pruned = Arc::new(std::sync::Mutex::new(None));
    let pruned_by_hook = pruned.clone();
    let hooked: Arc<dyn Storage> = Arc::new(HookAfterPack {
        inner: t.storage.clone(),
        packs: Default::default(),
        at: 3,
        hook: std::sync::Mutex::new(Some(Box::new(move || {
            let repo = open_at(Path::new(""), &cache, storage);
            *pruned_by_hook.lock().unwrap() = Some(prune(&repo, instant(), false, &NoProgress).unwrap());
        }))),
    });
    let repo = open_at(&t.repo_path(), &t.cache(), hooked);
    let opts = cairn_engine::backup::BackupOptions {
        paths: vec![src.clone()],
        hostname: "test-host".into(),
        ..Default::default()
    };
    let err = cairn_engine::backup::backup(&repo, &opts, &NoProgress).unwrap_err();
    let out = pruned.lock().unwrap().take().expect("the prune ran");
    assert!(out.sweep.delete_now.len() >= 3, "the prune deleted the backup's packs: {:?}", out.sweep.delete_now);
    assert!(matches!(err, Error::PacksGone { .. }), "{err:?}");
    assert!(err.to_string().contains("cairn repair index"), "{err}");
    assert!(repo.snapshot_ids().unwrap().is_empty(), "no snapshot refers to the missing data");

    // The next backup stores the data again and restores whole.
    let out = snapshot(&repo, &[&src]);
    drop(repo);
    let _ = fs::remove_dir_all(t.cache());
    let target = work.path().join("t");
    let r = restore_all(&t.open(), &out, &target).unwrap();
    assert!(r.damaged.is_empty(), "{r:?}");
    assert_same_tree(&src, &restored_path(&target, &src));
}

#[test]
fn a_later_snapshot_does_not_reuse_chunks_whose_pack_is_gone() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("big"), random_bytes(3 << 20, 12)).unwrap();
    let t = small_packs();
    let first = snapshot(&t.open(), &[&src]);
    // What a prune that ran beside that backup left: its index names a pack that is gone.
    let repo = t.open();
    let cairn_engine::trees::Resolved::Node(_, node) =
        cairn_engine::trees::resolve(&repo, first.snapshot.tree, src.join("big").as_os_str().as_encoded_bytes())
            .unwrap()
    else {
        panic!("big resolves to the root")
    };
    let cairn_engine::format::tree::NodeKind::File { chunks, .. } = &node.kind else { panic!("big is a file") };
    let pack = cairn_engine::repo::pack_name(&repo.locate(&chunks[1]).unwrap().pack);
    drop(repo);
    t.storage.delete(&pack).unwrap();
    // Later snapshots, with the parent (the file unchanged) and from a fresh cache alike.
    let later = snapshot(&t.open(), &[&src]);
    let _ = fs::remove_dir_all(t.cache());
    let fresh = snapshot(&t.open(), &[&src]);
    for (label, out) in [("with the parent", later), ("with a fresh cache", fresh)] {
        let _ = fs::remove_dir_all(t.cache());
        let target = work.path().join(label);
        let r = restore_all(&t.open(), &out, &target).unwrap();
        assert!(r.damaged.is_empty(), "{label}: {r:?}");
        assert_same_tree(&src, &restored_path(&target, &src));
    }
}
