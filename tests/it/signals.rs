//! Ctrl-C and SIGTERM in the middle of a snapshot, a restore and a prune: the process stops at
//! its next safe point with exit 130 and a message, leaves no lock, loses nothing, and the
//! rerun reuses what was stored.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    /// A repository with 1 MiB packs and a source of 24 files of 1 MiB of random bytes.
    fn new() -> Self {
        let e = Env { dir: tempfile::tempdir().unwrap() };
        fs::write(e.p("pw"), "signal test password\n").unwrap();
        fs::create_dir_all(e.p("src")).unwrap();
        for i in 0..24 {
            fs::write(e.p("src").join(format!("f{i:02}")), random_bytes(1 << 20, 100 + i)).unwrap();
        }
        e.cli()
            .args(["init", "--no-recovery-code", "--kdf-memory", "8192", "--kdf-iterations", "1", "--pack-size", "1"])
            .assert()
            .success();
        e
    }

    fn p(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn cli(&self) -> assert_cmd::Command {
        cairn_cmd(&self.p("repo"), &self.p("cache"), &self.p("pw"))
    }

    /// The same command as [`Env::cli`], as a process to signal.
    fn spawn(&self, args: &[&str]) -> Child {
        let mut c = Command::new(assert_cmd::cargo::cargo_bin("cairn"));
        for (k, _) in std::env::vars() {
            if k.starts_with("CAIRN_") {
                c.env_remove(k);
            }
        }
        c.arg("-r")
            .arg(self.p("repo"))
            .arg("--cache-dir")
            .arg(self.p("cache"))
            .arg("--password-file")
            .arg(self.p("pw"));
        c.args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
    }

    /// Objects under `dir` of the repository, temporary files left out.
    fn count(&self, dir: &str) -> usize {
        files_now(&self.p("repo").join(dir))
            .iter()
            .filter(|(p, _)| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
            .count()
    }
}

/// The files below `root` and their sizes, as far as a listing taken while another process
/// writes there can tell (files that vanish meanwhile are left out).
fn files_now(root: &Path) -> Vec<(PathBuf, u64)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let Ok(m) = fs::symlink_metadata(&p) else { continue };
        if m.is_dir() {
            stack.extend(fs::read_dir(&p).into_iter().flatten().flatten().map(|e| e.path()));
        } else if m.is_file() {
            out.push((p, m.len()));
        }
    }
    out
}

/// Waits until `ready` holds, then sends `signal` to `child` and collects how it ended.
fn signal_when(mut child: Child, signal: &str, ready: impl Fn() -> bool) -> Output {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !ready() {
        if let Some(status) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            panic!("finished ({status}) before it could be interrupted: {}", String::from_utf8_lossy(&out.stderr));
        }
        assert!(Instant::now() < deadline, "never got ready to be interrupted");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(Command::new("kill").arg("-s").arg(signal).arg(child.id().to_string()).status().unwrap().success());
    child.wait_with_output().unwrap()
}

fn assert_stopped(out: &Output, what: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{what}: {stderr}");
    assert!(stderr.contains("interrupted"), "{what}: {stderr}");
}

fn json(out: &std::process::Output) -> serde_json::Value {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A snapshot stopped by Ctrl-C indexes the packs it wrote and releases its lock; the rerun
/// stores almost nothing again, and the repository checks clean.
#[test]
fn ctrl_c_stops_a_snapshot_and_the_rerun_reuses_what_it_stored() {
    let e = Env::new();
    let child = e.spawn(&["--limit-upload", "2048", "snapshot", e.p("src").to_str().unwrap()]);
    let out = signal_when(child, "INT", || e.count("data") >= 4);
    assert_stopped(&out, "snapshot");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("reuses"), "{stderr}");
    assert_eq!(e.count("locks"), 0, "the lock is released");
    assert!(e.count("index") >= 1, "the packs written are indexed");
    assert_eq!(e.count("snapshots"), 0, "no snapshot of a stopped backup");
    let stored_before = e.count("data");
    let out = e.cli().args(["--json", "snapshot"]).arg(e.p("src")).output().unwrap();
    let v = json(&out);
    let (Some(read), Some(added)) = (v["bytes_read"].as_u64(), v["bytes_added_raw"].as_u64()) else {
        panic!("no byte counts in {v}")
    };
    assert_eq!(read, 24 << 20, "{v}");
    assert!(
        added <= read - (stored_before as u64 - 1) * (1 << 20) / 2,
        "the rerun stored again what the stopped run had stored: {added} of {read} bytes added, {stored_before} packs \
         were kept: {v}"
    );
    e.cli().args(["check", "--read-data"]).assert().success();
}

/// A restore stopped by SIGTERM leaves no lock and no file under its final name that is not
/// complete; the rerun restores everything.
#[test]
fn sigterm_stops_a_restore_leaving_only_complete_files() {
    let e = Env::new();
    e.cli().arg("snapshot").arg(e.p("src")).assert().success();
    let target = e.p("target");
    let child = e.spawn(&["--limit-download", "2048", "restore", "latest", "--target", target.to_str().unwrap()]);
    let out = signal_when(child, "TERM", || files_now(&target).iter().filter(|(_, len)| *len > 0).count() >= 2);
    assert_stopped(&out, "restore");
    assert_eq!(e.count("locks"), 0, "the lock is released");
    let src_in_target = target.join(e.p("src").strip_prefix("/").unwrap());
    let left: Vec<PathBuf> = walk_files(&target);
    assert!(left.len() < 24, "the restore ran to the end before it stopped: {left:?}");
    for f in &left {
        let name = f.file_name().unwrap();
        assert_eq!(
            fs::read(f).unwrap(),
            fs::read(e.p("src").join(name)).unwrap(),
            "{} is under its final name but not complete",
            f.display()
        );
    }
    e.cli().args(["restore", "latest", "--target"]).arg(&target).assert().success();
    for i in 0..24 {
        let name = format!("f{i:02}");
        assert_eq!(fs::read(src_in_target.join(&name)).unwrap(), fs::read(e.p("src").join(&name)).unwrap());
    }
}

/// A prune stopped by Ctrl-C while it repacks deletes nothing, leaves no lock, and every
/// snapshot still restores; the rerun finishes the job.
#[test]
fn ctrl_c_stops_a_prune_before_it_deletes() {
    let e = Env::new();
    // Files much smaller than a pack, so each pack holds several of them.
    fs::remove_dir_all(e.p("src")).unwrap();
    fs::create_dir_all(e.p("src")).unwrap();
    for i in 0..80 {
        fs::write(e.p("src").join(format!("f{i:02}")), random_bytes(150_000, 300 + i)).unwrap();
    }
    e.cli().arg("snapshot").arg(e.p("src")).assert().success();
    // Half the files go: their packs are partly used, and prune repacks them.
    for i in (0..80).step_by(2) {
        fs::remove_file(e.p("src").join(format!("f{i:02}"))).unwrap();
    }
    e.cli().arg("snapshot").arg(e.p("src")).assert().success();
    let out = json(&e.cli().args(["--json", "snapshots"]).output().unwrap());
    let first = out.as_array().unwrap()[0]["id"].as_str().unwrap().to_string();
    e.cli().args(["forget", &first]).assert().success();
    let packs_before = e.count("data");
    let child = e.spawn(&["--limit-download", "1024", "prune", "--max-unused", "0", "--instant-delete"]);
    // Repacking reads whole packs: once one new pack is written, it is well into the work.
    let out = signal_when(child, "INT", || e.count("data") > packs_before);
    assert_stopped(&out, "prune");
    assert_eq!(e.count("locks"), 0, "the lock is released");
    e.cli().args(["restore", "latest", "--target"]).arg(e.p("t1")).assert().success();
    e.cli().args(["prune", "--max-unused", "0", "--instant-delete"]).assert().success();
    e.cli().args(["check", "--read-data"]).assert().success();
    e.cli().args(["restore", "latest", "--target"]).arg(e.p("t2")).assert().success();
}
