//! Write-only slots through the binary (SPEC §7.6): a host backs up with a write-only key file
//! (initial, unchanged, changed), a full key restores every snapshot byte for byte on another
//! cache, and every command that reads the repository or changes it otherwise is refused with
//! exit 12 and changes nothing.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use assert_cmd::Command;

use crate::support::*;

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("pw"), "a password, long enough\n").unwrap();
        Env { dir }
    }

    fn p(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn bare(&self, cache: &str) -> Command {
        let mut c = Command::cargo_bin("cairn").unwrap();
        without_cairn_env(&mut c);
        c.arg("-r").arg(self.p("repo")).arg("--cache-dir").arg(self.p(cache));
        c
    }

    /// A full key (the password), on its own cache.
    fn full(&self) -> Command {
        let mut c = self.bare("admin-cache");
        c.arg("--password-file").arg(self.p("pw"));
        c
    }

    /// Host `host`'s write-only key file, on that host's cache.
    fn host(&self, host: &str) -> Command {
        let mut c = self.bare(&format!("{host}-cache"));
        c.arg("--key-file").arg(self.p(&format!("{host}.key")));
        c
    }

    fn init(&self) {
        self.full()
            .args(["init", "--kdf-memory", "8192", "--kdf-iterations", "1", "--no-recovery-code"])
            .assert()
            .success();
    }

    fn add_write_only(&self, host: &str) -> String {
        let out = self
            .full()
            .args(["--json", "key", "add", "--write-only", "--label", host, "--new-key-file"])
            .arg(self.p(&format!("{host}.key")))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr_of(&out));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["write_only"], true);
        v["slot"].as_str().unwrap().to_string()
    }

    /// A snapshot of `src` by `host` (write-only), as its --json report.
    fn backup(&self, host: &str, src: &Path) -> serde_json::Value {
        let out = self.host(host).args(["--json", "snapshot", "--host", host]).arg(src).output().unwrap();
        assert!(out.status.success(), "{}", stderr_of(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// Every file of the repository with its content: what must not change.
    fn repository_state(&self) -> BTreeMap<PathBuf, Vec<u8>> {
        let root = self.p("repo");
        walk_files(&root)
            .into_iter()
            .map(|f| (f.strip_prefix(&root).unwrap().to_path_buf(), fs::read(&f).unwrap()))
            .collect()
    }
}

fn source(env: &Env, name: &str, seed: u64) -> PathBuf {
    let src = env.p(name);
    fs::create_dir_all(src.join("etc/deep")).unwrap();
    fs::write(src.join("a.txt"), text_bytes(300_000, seed)).unwrap();
    fs::write(src.join("etc/b.bin"), random_bytes(2_500_000, seed + 1)).unwrap();
    fs::write(src.join("etc/deep/c.conf"), b"listen 443\n").unwrap();
    fs::write(src.join("empty"), b"").unwrap();
    src
}

fn copy_tree(from: &Path, to: &Path) {
    for f in walk_files(from) {
        let dest = to.join(f.strip_prefix(from).unwrap());
        fs::create_dir_all(dest.parent().unwrap()).unwrap();
        fs::copy(&f, &dest).unwrap();
        let m = fs::metadata(&f).unwrap();
        fs::File::options().write(true).open(&dest).unwrap().set_modified(m.modified().unwrap()).unwrap();
    }
}

#[test]
fn a_write_only_host_backs_up_incrementally_and_a_full_key_restores_every_snapshot_byte_for_byte() {
    let env = Env::new();
    env.init();
    env.add_write_only("web1");
    env.add_write_only("web2");
    let src = source(&env, "src", 7);
    // Copied first: a directory made beside the source later would change the metadata of
    // the source's parent, which the snapshot records.
    let v1 = env.p("v1");
    copy_tree(&src, &v1);
    let initial = env.backup("web1", &src);
    assert_eq!(initial["files_new"], 4, "{initial}");
    assert!(initial["bytes_added_raw"].as_u64().unwrap() >= 2_800_000, "{initial}");

    // Unchanged: no file read, nothing but metadata stored (the parent came from the cache).
    let unchanged = env.backup("web1", &src);
    assert_eq!(unchanged["files_unchanged"], 4, "{unchanged}");
    assert_eq!(unchanged["bytes_read"], 0, "{unchanged}");
    assert_eq!(unchanged["parent"], initial["snapshot_id"], "{unchanged}");
    assert_eq!(unchanged["bytes_added_raw"], 0, "{unchanged}");

    // One file changed: only it is read, and only its new chunks stored.
    fs::write(src.join("etc/deep/c.conf"), b"listen 8443\n").unwrap();
    let changed = env.backup("web1", &src);
    assert_eq!((changed["files_changed"].as_u64(), changed["files_unchanged"].as_u64()), (Some(1), Some(3)));
    assert!(changed["bytes_read"].as_u64().unwrap() < 100, "{changed}");
    assert!(changed["bytes_added_raw"].as_u64().unwrap() < 100_000, "{changed}");

    // A second host with the same data: deduplication is per host (its own record), so it
    // stores its copy; it reads nothing of web1's.
    let src2 = env.p("web2-src");
    copy_tree(&src, &src2);
    let other = env.backup("web2", &src2);
    assert_eq!(other["files_new"], 4, "{other}");
    assert!(other["bytes_added_raw"].as_u64().unwrap() >= 2_800_000, "{other}");

    // A full key on its own cache restores each snapshot as it was.
    let expect = [(&initial, &v1, &src), (&unchanged, &v1, &src), (&changed, &src, &src), (&other, &src2, &src2)];
    for (i, (snap, content, backed_up)) in expect.into_iter().enumerate() {
        let target = env.p(&format!("restored-{i}"));
        let id = snap["snapshot_id"].as_str().unwrap();
        let out = env.full().args(["restore", id, "--target"]).arg(&target).output().unwrap();
        assert!(out.status.success(), "{}", stderr_of(&out));
        let restored = restored_path(&target, backed_up);
        for f in walk_files(content) {
            let rel = f.strip_prefix(content).unwrap();
            assert!(fs::read(&f).unwrap() == fs::read(restored.join(rel)).unwrap(), "snapshot {i}: {}", rel.display());
        }
        assert_eq!(walk_files(&restored).len(), walk_files(content).len(), "snapshot {i}");
    }
    let check = env.full().args(["check", "--read-data"]).output().unwrap();
    assert!(check.status.success(), "{}", stderr_of(&check));
    let verify = env.full().args(["audit", "verify"]).output().unwrap();
    assert!(verify.status.success(), "{}{}", stderr_of(&verify), String::from_utf8_lossy(&verify.stdout));
    let log = env.full().args(["audit", "log"]).output().unwrap();
    assert!(String::from_utf8_lossy(&log.stdout).matches("snapshot: ok").count() >= 4);
    // `key list` tells the slots apart.
    let list = env.full().args(["--json", "key", "list"]).output().unwrap();
    let slots: Vec<serde_json::Value> = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(slots.iter().filter(|s| s["write_only"] == true).count(), 2, "{slots:?}");
}

#[test]
fn every_command_a_write_only_key_may_not_run_exits_12_and_changes_nothing() {
    let env = Env::new();
    env.init();
    let slot = env.add_write_only("web1");
    let src = source(&env, "src", 11);
    let first = env.backup("web1", &src);
    let second = env.backup("web1", &src);
    let (a, b) = (first["snapshot_id"].as_str().unwrap(), second["snapshot_id"].as_str().unwrap());
    let target = env.p("target");
    let target = target.to_str().unwrap();
    let before = env.repository_state();
    let refused: &[&[&str]] = &[
        &["restore", a, "--target", target],
        &["ls", a],
        &["dump", a, "/"],
        &["diff", a, b],
        &["find", "a.txt"],
        &["cat", "snapshot", a],
        &["cat", "config"],
        &["check"],
        &["check", "--read-data"],
        &["forget", "--keep-last", "1"],
        &["forget", a],
        &["prune"],
        &["snapshots"],
        &["stats"],
        &["tag", "--add", "x", a],
        &["rewrite", "--exclude", "*.txt", a],
        &["audit", "verify"],
        &["key", "list"],
        &["key", "add", "--recovery"],
        &["key", "remove", &slot[..12]],
        &["key", "rotate"],
        &["key", "retire-epoch", "0"],
        &["unlock"],
    ];
    for args in refused {
        let out = env.host("web1").args(*args).output().unwrap();
        assert_eq!(out.status.code(), Some(12), "{args:?}: {}", stderr_of(&out));
        assert!(stderr_of(&out).contains("write-only"), "{args:?}: {}", stderr_of(&out));
        assert!(env.repository_state() == before, "{args:?} changed the repository");
    }
    assert!(!Path::new(target).exists(), "nothing restored");
}

#[test]
fn after_a_prune_rewrote_the_index_a_write_only_host_stores_its_data_again_and_everything_restores() {
    let env = Env::new();
    env.init();
    env.add_write_only("web1");
    let src = source(&env, "src", 21);
    let first = env.backup("web1", &src);
    fs::write(src.join("a.txt"), text_bytes(300_000, 99)).unwrap();
    env.backup("web1", &src);
    // The admin forgets the first snapshot: its a.txt chunks are unused, and prune (told to
    // repack any waste) rewrites the index (the host's segments are gone).
    let id = first["snapshot_id"].as_str().unwrap();
    let out = env.full().args(["forget", id, "--prune", "--max-unused", "0"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let after = env.backup("web1", &src);
    assert!(after["bytes_added_raw"].as_u64().unwrap() >= 2_800_000, "its index started over: {after}");
    let target = env.p("restored");
    let out =
        env.full().args(["restore", after["snapshot_id"].as_str().unwrap(), "--target"]).arg(&target).output().unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_same_tree(&src, &restored_path(&target, &src));
    let check = env.full().args(["check", "--read-data"]).output().unwrap();
    assert!(check.status.success(), "{}", stderr_of(&check));
}

#[test]
fn a_stolen_write_only_key_naming_another_host_takes_none_of_its_places() {
    let env = Env::new();
    env.init();
    let slot = env.add_write_only("web1");
    let src = source(&env, "src", 31);
    let full_backup = || {
        let out = env.full().args(["--json", "snapshot", "--host", "db1"]).arg(&src).output().unwrap();
        assert!(out.status.success(), "{}", stderr_of(&out));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let (_, real) = (full_backup(), full_backup());
    let real = real["snapshot_id"].as_str().unwrap().to_string();
    // The thief holds web1's key and names db1, with db1's paths, three times after db1's
    // last backup.
    let planted: Vec<String> = (0..3)
        .map(|_| {
            let out = env.host("web1").args(["--json", "snapshot", "--host", "db1"]).arg(&src).output().unwrap();
            assert!(out.status.success(), "{}", stderr_of(&out));
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            v["snapshot_id"].as_str().unwrap().to_string()
        })
        .collect();
    // Every snapshot says who wrote it.
    let out = env.full().args(["--json", "snapshots"]).output().unwrap();
    let listed: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let writer_of = |id: &str| listed.iter().find(|s| s["id"] == id).map(|s| s["writer"].as_str().unwrap().to_string());
    assert_eq!(writer_of(&real).as_deref(), Some("full"));
    for p in &planted {
        assert_eq!(writer_of(p), Some(format!("write-only:{slot}")));
    }
    // `forget --keep-last 1` judges web1's snapshots apart: db1's newest real one stays.
    let out = env.full().args(["--json", "forget", "--keep-last", "1", "--dry-run"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let kept: Vec<&str> = v["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["keep"] == true)
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    assert!(kept.contains(&real.as_str()), "{v}");
    assert_eq!(kept.len(), 2, "db1's newest and web1's newest: {v}");
    // A full key's next backup of db1 takes its parent from a full key's snapshot, never from
    // what web1 claimed.
    let next = full_backup();
    assert_eq!(next["parent"].as_str(), Some(real.as_str()), "{next}");
    // When a planted snapshot is the newest of db1, `latest` still picks it (it is the newest),
    // with a warning that web1's slot wrote it and a full key wrote the earlier ones.
    let planted_latest = env.host("web1").args(["--json", "snapshot", "--host", "db1"]).arg(&src).output().unwrap();
    assert!(planted_latest.status.success());
    let out = env.full().args(["ls", "latest", "--host", "db1"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(
        stderr_of(&out).contains("`latest` of host db1") && stderr_of(&out).contains("write-only slot"),
        "{}",
        stderr_of(&out)
    );
}

#[test]
fn repair_index_marks_the_packs_a_write_only_slot_wrote_from_their_own_headers() {
    let env = Env::new();
    env.init();
    env.add_write_only("web1");
    let full_src = source(&env, "full-src", 41);
    let host_src = source(&env, "host-src", 51);
    let full_backup = |src: &Path| {
        let out = env.full().args(["--json", "snapshot", "--force"]).arg(src).output().unwrap();
        assert!(out.status.success(), "{}", stderr_of(&out));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    full_backup(&full_src);
    env.backup("web1", &host_src);
    // The storage loses every index segment; a full key rebuilds the index from the packs.
    for f in walk_files(&env.p("repo").join("index")) {
        fs::remove_file(f).unwrap();
    }
    let out = env.full().args(["repair", "index"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    // On a fresh cache: the full key's packs count as stored, the write-only slot's do not
    // (their headers are sealed to the reader key), so its content is stored again by a
    // full key, which a stolen write-only key's blobs under predicted ids must not spoil.
    fs::remove_dir_all(env.p("admin-cache")).unwrap();
    let again = full_backup(&full_src);
    // (Only trees may differ: the root records its parent directory's metadata.)
    assert!(again["bytes_added_raw"].as_u64().unwrap() < 10_000, "{again}");
    let host_data = full_backup(&host_src);
    assert!(host_data["bytes_added_raw"].as_u64().unwrap() >= 2_800_000, "{host_data}");
    let check = env.full().args(["check", "--read-data"]).output().unwrap();
    assert!(check.status.success(), "{}", stderr_of(&check));
}
