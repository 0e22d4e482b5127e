//! Soak: processes side by side against one repository, local and on the S3 server, for a
//! bounded time (`CAIRN_SOAK_SECONDS`, default 30; `scripts/soak.sh` runs it longer). Two
//! snapshot processes back up trees that change between their snapshots; one runs forget and
//! prune; one prunes with its clock 31 minutes ahead (libfaketime), so it judges every lock
//! stale; one checks; one restores snapshots as they finish; one adds and removes key slots.
//! Afterwards every snapshot any process reported finished, unless a logged forget removed
//! it, restores byte for byte; `check --read-data` and `audit verify` are clean; no process
//! crashed or failed other than by waiting for a lock.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::support::*;

/// What a source tree held when a snapshot of it was reported finished: relative path -> bytes.
type TreeState = BTreeMap<PathBuf, Vec<u8>>;

struct Soak {
    dir: tempfile::TempDir,
    /// `-r` and the environment that reach the repository.
    repo: String,
    env: Vec<(&'static str, String)>,
    extra: Vec<&'static str>,
    deadline: Instant,
    /// Snapshots reported finished, with what their tree held.
    finished: Mutex<Vec<(String, PathBuf, TreeState)>>,
    /// Commands that did something other than succeed or wait for a lock in vain.
    failures: Mutex<Vec<String>>,
    ops: Mutex<BTreeMap<&'static str, u64>>,
    verified_restores: AtomicU64,
    /// Whether a prune whose clock runs ahead (and takes every lock for stale) is running.
    skewed: std::sync::atomic::AtomicBool,
}

impl Soak {
    fn new(repo: String, env: Vec<(&'static str, String)>, extra: Vec<&'static str>) -> Soak {
        let seconds: u64 = std::env::var("CAIRN_SOAK_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(30);
        let s = Soak {
            dir: tempfile::tempdir().unwrap(),
            repo,
            env,
            extra,
            deadline: Instant::now() + Duration::from_secs(seconds),
            finished: Mutex::default(),
            failures: Mutex::default(),
            ops: Mutex::default(),
            verified_restores: AtomicU64::new(0),
            skewed: Default::default(),
        };
        fs::write(s.p("pw"), "soak test password\n").unwrap();
        let out = s
            .cli("init", None)
            .args(["init", "--no-recovery-code", "--kdf-memory", "8192", "--kdf-iterations", "1", "--pack-size", "1"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        s
    }

    fn p(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `cairn` for the worker `who` (its own cache: each worker is a machine), its clock
    /// shifted by `faketime` when given.
    fn cli(&self, who: &str, faketime: Option<&str>) -> Command {
        let mut c = match faketime {
            Some(offset) => {
                let mut c = Command::new("faketime");
                c.arg("-f").arg(offset).arg(assert_cmd::cargo::cargo_bin("cairn"));
                c
            }
            None => Command::new(assert_cmd::cargo::cargo_bin("cairn")),
        };
        for (k, _) in std::env::vars() {
            if k.starts_with("CAIRN_") {
                c.env_remove(k);
            }
        }
        c.envs(self.env.iter().map(|(k, v)| (*k, v.as_str())));
        c.arg("-r").arg(&self.repo).args(&self.extra);
        c.arg("--cache-dir").arg(self.p(&format!("cache-{who}"))).arg("--password-file").arg(self.p("pw"));
        c.args(["--retry-lock", "60s"]);
        c
    }

    /// Runs `c` for `what`: counts it, and records anything but success (or exit codes in
    /// `also_fine`) as a failure.
    fn run(&self, what: &'static str, mut c: Command, also_fine: &[i32]) -> Output {
        let out = c.output().unwrap();
        *self.ops.lock().unwrap().entry(what).or_default() += 1;
        let code = out.status.code();
        // Exit 11: still locked after `--retry-lock` (exclusive work waits behind backups that
        // never stop): counted, not a failure.
        if code == Some(11) {
            *self.ops.lock().unwrap().entry("gave up waiting for a lock").or_default() += 1;
            return out;
        }
        // Beside a prune that takes every lock for stale (its clock runs ahead), any command
        // may find an index segment or pack it listed gone when it reads it, and stop with an
        // error: that is what locks are for. Such clean failures are counted and shown; what
        // must hold is that no snapshot is lost or restores wrong, which is checked throughout
        // and at the end (after that prune has stopped).
        if self.skewed.load(Ordering::Relaxed) && code == Some(1) {
            *self.ops.lock().unwrap().entry("failed cleanly beside the skewed prune").or_default() += 1;
            let stderr = String::from_utf8_lossy(&out.stderr);
            eprintln!("soak: {what} failed beside the skewed prune: {}", stderr.lines().last().unwrap_or_default());
            return out;
        }
        if !(out.status.success() || code.is_some_and(|c| also_fine.contains(&c))) {
            self.failures.lock().unwrap().push(format!(
                "{what}: exit {code:?}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        out
    }

    fn running(&self) -> bool {
        Instant::now() < self.deadline
    }

    /// Backs up `src-{w}`, changing a few of its files before each snapshot.
    fn snapshot_worker(&self, w: u64) {
        let src = self.p(&format!("src-{w}"));
        fs::create_dir_all(&src).unwrap();
        let mut seed = w * 1_000_003 + 17;
        while self.running() {
            for _ in 0..4 {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let name = src.join(format!("f{}", (seed >> 33) % 12));
                if (seed >> 20).is_multiple_of(5) {
                    let _ = fs::remove_file(&name);
                } else {
                    let len = 1 + (seed >> 40) as usize % (300 << 10);
                    fs::write(&name, random_bytes(len, seed)).unwrap();
                }
            }
            let state: TreeState = fs::read_dir(&src)
                .unwrap()
                .map(|e| e.unwrap().path())
                .map(|p| (PathBuf::from(p.file_name().unwrap()), fs::read(&p).unwrap()))
                .collect();
            let mut c = self.cli(&format!("snap{w}"), None);
            c.args(["--json", "snapshot"]).arg(&src);
            let out = self.run("snapshot", c, &[]);
            if out.status.success() {
                let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
                let id = v["snapshot_id"].as_str().unwrap().to_string();
                self.finished.lock().unwrap().push((id, src.clone(), state));
            }
        }
    }

    fn loop_command(&self, what: &'static str, who: &str, faketime: Option<&str>, args: &[&str], pause_ms: u64) {
        while self.running() {
            let mut c = self.cli(who, faketime);
            c.args(args);
            self.run(what, c, &[]);
            std::thread::sleep(Duration::from_millis(pause_ms));
        }
    }

    /// Restores the newest finished snapshot and compares it; a snapshot forgotten meanwhile
    /// may fail to restore (it is gone), anything else is a failure.
    fn restore_worker(&self) {
        let mut n = 0;
        while self.running() {
            let last = self.finished.lock().unwrap().last().cloned();
            let Some((id, src, state)) = last else {
                std::thread::sleep(Duration::from_millis(200));
                continue;
            };
            n += 1;
            let target = self.p(&format!("restore-{n}"));
            let mut c = self.cli("restore", None);
            c.args(["restore", &id, "--target"]).arg(&target);
            let out = c.output().unwrap();
            *self.ops.lock().unwrap().entry("restore").or_default() += 1;
            if out.status.success() {
                self.compare(&id, &target, &src, &state);
            } else if self.present().contains(&id) && !self.skewed.load(Ordering::Relaxed) {
                self.failures
                    .lock()
                    .unwrap()
                    .push(format!("restore of {id}, still present, failed: {}", String::from_utf8_lossy(&out.stderr)));
            }
            let _ = fs::remove_dir_all(&target);
        }
    }

    fn compare(&self, id: &str, target: &Path, src: &Path, state: &TreeState) {
        let dir = target.join(src.strip_prefix("/").unwrap());
        let restored: TreeState = fs::read_dir(&dir)
            .map(|rd| {
                rd.map(|e| e.unwrap().path())
                    .map(|p| (PathBuf::from(p.file_name().unwrap()), fs::read(&p).unwrap()))
                    .collect()
            })
            .unwrap_or_default();
        if &restored != state {
            self.failures.lock().unwrap().push(format!(
                "snapshot {id} restored with other contents than its tree had: {:?} vs {:?}",
                restored.keys().collect::<Vec<_>>(),
                state.keys().collect::<Vec<_>>()
            ));
        } else {
            self.verified_restores.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn present(&self) -> Vec<String> {
        let mut c = self.cli("final", None);
        c.args(["--json", "snapshots"]);
        let out = c.output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v.as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap().to_string()).collect()
    }

    fn key_worker(&self) {
        let mut n = 0;
        while self.running() {
            n += 1;
            let label = format!("soak-{n}");
            fs::write(self.p("new-pw"), format!("soak slot password {n}\n")).unwrap();
            let mut c = self.cli("keys", None);
            c.args(["key", "add", "--password", "--label", &label, "--kdf-memory", "8192", "--kdf-iterations", "1"]);
            c.arg("--new-password-file").arg(self.p("new-pw"));
            if !self.run("key add", c, &[]).status.success() {
                continue;
            }
            let mut c = self.cli("keys", None);
            c.args(["--json", "key", "list"]);
            let out = self.run("key list", c, &[]);
            let slots: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
            let id = slots.as_array().and_then(|a| a.iter().find(|s| s["label"] == label.as_str()));
            let Some(id) = id.and_then(|s| s["id"].as_str()) else {
                self.failures.lock().unwrap().push(format!("slot {label} added but not listed: {slots}"));
                continue;
            };
            let mut c = self.cli("keys", None);
            c.args(["key", "remove", id]);
            self.run("key remove", c, &[]);
        }
    }

    /// Runs every worker until the deadline, then verifies the repository.
    fn run_all(&self, skewed_pruner: bool) {
        let faketime = Command::new("faketime").arg("-f").arg("+0").arg("true").status().is_ok_and(|s| s.success());
        let skewed_pruner = skewed_pruner && std::env::var_os("CAIRN_SOAK_NO_SKEW").is_none();
        std::thread::scope(|scope| {
            for w in 0..2 {
                scope.spawn(move || self.snapshot_worker(w));
            }
            scope.spawn(|| {
                self.loop_command("forget --prune", "forget", None, &["forget", "--keep-last", "3", "--prune"], 500)
            });
            if skewed_pruner && faketime {
                self.skewed.store(true, Ordering::Relaxed);
                scope.spawn(|| {
                    self.loop_command(
                        "prune, clock +31m",
                        "skewed",
                        Some("+31m"),
                        &["prune", "--grace-period", "2s"],
                        700,
                    )
                });
            } else if skewed_pruner {
                eprintln!(
                    "soak: faketime is not installed; no pruning process with a skewed clock (scripts/setup.sh installs it)"
                );
            }
            scope.spawn(|| self.loop_command("check", "check", None, &["check"], 300));
            scope.spawn(|| self.restore_worker());
            scope.spawn(|| self.key_worker());
        });
        // The skewed prune has stopped: from here on every failure counts.
        self.skewed.store(false, Ordering::Relaxed);
        // Every snapshot reported finished and still present restores byte for byte; a
        // snapshot absent must have been removed by a logged forget (audit verify says so).
        let present = self.present();
        let finished = self.finished.lock().unwrap().clone();
        let mut kept = 0;
        for (i, (id, src, state)) in finished.iter().enumerate() {
            if !present.contains(id) {
                continue;
            }
            kept += 1;
            let target = self.p(&format!("final-{i}"));
            let mut c = self.cli("final", None);
            c.args(["restore", id, "--target"]).arg(&target);
            if self.run("final restore", c, &[]).status.success() {
                self.compare(id, &target, src, state);
            }
        }
        let mut c = self.cli("final", None);
        c.args(["check", "--read-data"]);
        self.run("final check --read-data", c, &[]);
        let mut c = self.cli("final", None);
        c.args(["audit", "verify"]);
        self.run("final audit verify", c, &[]);
        let ops = self.ops.lock().unwrap().clone();
        let total: u64 = ops.values().sum();
        eprintln!(
            "soak ({}): {total} operations {ops:?}; {} snapshots finished, {kept} kept and restored byte for byte at \
             the end, {} restores verified in all",
            self.repo,
            finished.len(),
            self.verified_restores.load(Ordering::Relaxed)
        );
        let failures = self.failures.lock().unwrap();
        assert!(failures.is_empty(), "{} failure(s):\n{}", failures.len(), failures.join("\n---\n"));
        assert!(finished.len() >= 2, "too few snapshots finished to tell anything");
    }
}

#[test]
fn soak_local() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo").display().to_string();
    Soak::new(repo, Vec::new(), Vec::new()).run_all(true);
}

/// On S3 without the skewed pruner: S3 refuses requests signed by a clock more than 15
/// minutes off, so a client whose clock is 31 minutes ahead cannot reach it at all.
#[test]
fn soak_s3() {
    let server = crate::s3server::s3();
    let bucket = server.bucket();
    Soak::new(server.url(&bucket, false), server.env(), vec!["--insecure-http"]).run_all(false);
}
