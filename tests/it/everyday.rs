//! Everyday use as people who run restic expect it (issue 20's list of what tripped them): one
//! missing source is a warning, `-q` never loses a recovery code, `latest` and the snapshot
//! filters mean what restic's mean, retention spans count months, usage errors are exit 2
//! everywhere (with a JSON document under `--json`), errors say what to do, repositories are
//! private to their owner, and the audit log names the real user.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use assert_cmd::Command;

use crate::support::*;

pub(crate) struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    pub(crate) fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("pw"), "everyday password\n").unwrap();
        Env { dir }
    }

    pub(crate) fn p(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub(crate) fn cairn(&self) -> Command {
        cairn_cmd(&self.p("repo"), &self.p("cache"), &self.p("pw"))
    }

    pub(crate) fn init(&self) {
        self.cairn()
            .args(["init", "--no-recovery-code", "--kdf-memory", "8192", "--kdf-iterations", "1"])
            .assert()
            .success();
    }

    /// A source directory with one file.
    pub(crate) fn source(&self, name: &str, content: &[u8]) -> PathBuf {
        let dir = self.p(name);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("file"), content).unwrap();
        dir
    }

    pub(crate) fn snapshot(&self, args: &[&str], paths: &[&Path]) -> String {
        let out = self.cairn().arg("--json").arg("snapshot").args(args).args(paths).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
        json(&out.stdout)["snapshot_id"].as_str().unwrap().to_string()
    }

    /// Ids of `snapshots --json` with `args`, oldest first.
    pub(crate) fn listed(&self, args: &[&str]) -> Vec<String> {
        let out = self.cairn().args(["--json", "snapshots"]).args(args).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        json(&out.stdout).as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap().to_string()).collect()
    }
}

pub(crate) fn json(out: &[u8]) -> serde_json::Value {
    serde_json::from_slice(out)
        .unwrap_or_else(|e| panic!("not one JSON document ({e}): {}", String::from_utf8_lossy(out)))
}

pub(crate) fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_missing_source_among_several_is_a_warning_and_exit_3() {
    let env = Env::new();
    env.init();
    let present = env.source("present", b"still backed up");
    let missing = env.p("not-there");
    let out = env.cairn().args(["--json", "snapshot"]).arg(&present).arg(&missing).output().unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let doc = json(&out.stdout);
    assert_eq!(doc["exit_code"], 3);
    let errors = doc["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{doc}");
    assert_eq!(errors[0]["path"], missing.display().to_string());
    // The snapshot has the source that exists, and only it.
    env.cairn().args(["restore", "latest", "--target"]).arg(env.p("out")).assert().success();
    assert_same_tree(&present, &restored_path(&env.p("out"), &present));
    let snap = env.cairn().args(["--json", "snapshots"]).output().unwrap();
    assert_eq!(json(&snap.stdout)[0]["paths"], serde_json::json!([present.display().to_string()]));

    // Every source missing: no snapshot, exit 1.
    let out = env.cairn().arg("snapshot").arg(&missing).arg(env.p("also-not-there")).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("not-there"), "{}", stderr(&out));
    assert_eq!(env.listed(&[]).len(), 1);
}

#[test]
fn quiet_never_swallows_a_recovery_code() {
    let env = Env::new();
    let out = env.cairn().args(["-q", "init", "--kdf-memory", "8192", "--kdf-iterations", "1"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    // The code is the indented line below its heading.
    let code = text.lines().find(|l| l.starts_with("    ")).map(str::trim).expect("the code is printed");
    fs::write(env.p("code"), format!("{code}\n")).unwrap();
    let mut c = Command::cargo_bin("cairn").unwrap();
    without_cairn_env(&mut c);
    c.arg("-r").arg(env.p("repo")).arg("--cache-dir").arg(env.p("cache"));
    c.arg("--recovery-code-file").arg(env.p("code")).arg("snapshots").assert().success();

    let out = env.cairn().args(["-q", "key", "add", "--recovery"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("Recovery code"), "key add -q shows the new code");
}

#[test]
fn latest_and_the_filters_mean_what_restics_mean() {
    let env = Env::new();
    env.init();
    let data = env.source("data", b"the data directory");
    let etc = env.source("etc", b"configuration");
    let both = env.snapshot(&["--tag", "nightly,full"], &[&data, &etc]);
    let only_data = env.snapshot(&["--tag", "manual"], &[&data]);
    let other_host = env.snapshot(&["--host", "elsewhere", "--tag", "nightly"], &[&etc]);
    // A stdin snapshot, newest of this host.
    let mut c = env.cairn();
    let out = c
        .args(["--json", "snapshot", "--stdin", "--stdin-filename", "dump.sql"])
        .write_stdin("SELECT 1;")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));

    // `a,b` records two tags.
    let doc = json(&env.cairn().args(["--json", "snapshots", "--tag", "full"]).output().unwrap().stdout);
    assert_eq!(doc[0]["tags"], serde_json::json!(["nightly", "full"]));
    // Tag lists: `a,b` needs both, repeated is any of them.
    assert_eq!(env.listed(&["--tag", "nightly,full"]), vec![both.clone()]);
    assert_eq!(env.listed(&["--tag", "nightly"]), vec![both.clone(), other_host.clone()]);
    assert_eq!(env.listed(&["--tag", "full", "--tag", "manual"]), vec![both.clone(), only_data.clone()]);
    assert!(env.listed(&["--tag", "nightly,manual"]).is_empty());
    // Hosts are alternatives; paths must all be there.
    assert_eq!(env.listed(&["--host", "elsewhere"]), vec![other_host.clone()]);
    assert_eq!(env.listed(&["--path", data.to_str().unwrap()]), vec![both.clone(), only_data.clone()]);
    let data_slash = format!("{}/", data.display());
    assert_eq!(env.listed(&["--path", &data_slash, "--path", etc.to_str().unwrap()]), vec![both.clone()]);

    // `latest` is the newest of the filtered set, of this host by default: with --path, the
    // /data snapshot, not the stdin one.
    let out = env
        .cairn()
        .args(["restore", "latest", "--path", data.to_str().unwrap(), "--target"])
        .arg(env.p("r1"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_same_tree(&data, &restored_path(&env.p("r1"), &data));
    assert!(!restored_path(&env.p("r1"), &etc).exists(), "the newest /data snapshot holds /data only");
    let ls = env.cairn().args(["ls", "latest", "--tag", "nightly"]).output().unwrap();
    assert!(
        String::from_utf8_lossy(&ls.stdout).contains("/etc/file")
            || String::from_utf8_lossy(&ls.stdout).contains("etc/file")
    );
    // Another host's snapshot is `latest` only when asked for.
    let out = env.cairn().args(["--json", "cat", "snapshot", "latest"]).output().unwrap();
    assert_ne!(json(&out.stdout)["id"], other_host.as_str());
    let out = env
        .cairn()
        .args(["dump", "latest", &format!("{}/file", etc.display()), "--host", "elsewhere"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(out.stdout, b"configuration");
    let out = env.cairn().args(["ls", "latest", "--tag", "nightly", "--host", "nobody"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no snapshot"), "{}", stderr(&out));
    // find and diff take the filters too.
    let out = env.cairn().args(["--json", "find", "file", "--host", "elsewhere"]).output().unwrap();
    let found = json(&out.stdout);
    assert_eq!(found.as_array().unwrap().len(), 1);
    assert_eq!(found[0]["snapshot"], other_host.as_str());
    env.cairn().args(["diff", &both, "latest", "--path", data.to_str().unwrap()]).assert().success();
}

#[test]
fn latest_on_a_machine_without_snapshots_names_the_hosts_there_are() {
    let env = Env::new();
    env.init();
    let data = env.source("data", b"x");
    env.snapshot(&["--host", "web1"], &[&data]);
    let out = env.cairn().args(["ls", "latest"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("web1") && err.contains("--host"), "{err}");
    env.cairn().args(["ls", "latest", "--host", "web1"]).assert().success();
}

#[test]
fn keep_within_counts_months_and_keep_tag_takes_lists() {
    let env = Env::new();
    env.init();
    let data = env.source("data", b"x");
    let now = env.snapshot(&["--time", "2026-12-01 00:00:00"], &[&data]);
    let two_months = env.snapshot(&["--time", "2026-10-01 00:00:00"], &[&data]);
    let seven_months = env.snapshot(&["--time", "2026-05-01 00:00:00", "--tag", "a,b"], &[&data]);
    let year = env.snapshot(&["--time", "2025-11-01 00:00:00", "--tag", "a"], &[&data]);
    let forget = |args: &[&str]| -> Vec<String> {
        let out = env.cairn().args(["--json", "forget", "--dry-run"]).args(args).output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        let doc = json(&out.stdout);
        let mut kept: Vec<String> = doc["snapshots"]
            .as_array()
            .expect("a list of decisions")
            .iter()
            .filter(|d| d["keep"] == true)
            .map(|d| d["id"].as_str().unwrap().to_string())
            .collect();
        kept.sort();
        kept
    };
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    // 6m is six months, not six minutes.
    assert_eq!(forget(&["--keep-within", "6m"]), sorted(vec![now.clone(), two_months.clone()]));
    assert_eq!(
        forget(&["--keep-within", "1y1m"]),
        sorted(vec![now.clone(), two_months.clone(), seven_months.clone(), year.clone()])
    );
    assert_eq!(forget(&["--keep-within", "61d"]), sorted(vec![now.clone(), two_months.clone()]));
    let bad = env.cairn().args(["forget", "--keep-within", "6x"]).output().unwrap();
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
    // --keep-tag a,b needs both tags.
    assert_eq!(forget(&["--keep-tag", "a,b"]), vec![seven_months.clone()]);
    assert_eq!(forget(&["--keep-tag", "a"]), sorted(vec![seven_months.clone(), year.clone()]));
}

#[test]
fn subcommand_help_puts_global_options_under_their_own_heading() {
    let out = Command::cargo_bin("cairn").unwrap().args(["snapshot", "--help"]).output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout).into_owned();
    let globals = help.find("Global options:").expect("a Global options heading");
    let own = help.find("--exclude-caches").unwrap();
    let repo = help.find("--repo").unwrap();
    assert!(own < globals && repo > globals, "the command's own flags first, then the globals:\n{help}");
    let out = Command::cargo_bin("cairn").unwrap().args(["restore", "--help"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("Snapshot filters:"));
}

#[test]
fn usage_errors_exit_2_with_a_json_document_under_json() {
    let env = Env::new();
    env.init();
    // clap's own refusal.
    let out = env.cairn().args(["--json", "snapshot", "--no-such-flag"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let doc = json(&out.stdout);
    assert_eq!(doc["exit_code"], 2);
    assert!(doc["error"].as_str().unwrap().contains("--no-such-flag"), "{doc}");
    // Cairn's own checks of the command line: the same code and document.
    for args in [
        &["forget"][..],
        &["forget", "abc", "--keep-last", "1"],
        &["check", "--read-data-subset", "9/7"],
        &["cat", "nothing"],
    ] {
        let out = env.cairn().arg("--json").args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert_eq!(json(&out.stdout)["exit_code"], 2, "{args:?}");
    }
    // Help is not an error.
    Command::cargo_bin("cairn").unwrap().args(["--json", "snapshot", "--help"]).assert().success();
}

#[test]
fn errors_say_what_to_do() {
    let env = Env::new();
    // No repository: how to name one, how to make one.
    let out = env.cairn().arg("snapshots").output().unwrap();
    assert_eq!(out.status.code(), Some(10));
    assert!(stderr(&out).contains("cairn init") && stderr(&out).contains("--repo"), "{}", stderr(&out));

    env.init();
    // init on an existing repository refuses before asking for a password (none is given here,
    // and there is no terminal: asking would fail with a different message).
    let mut c = Command::cargo_bin("cairn").unwrap();
    without_cairn_env(&mut c);
    let out = c.arg("-r").arg(env.p("repo")).arg("init").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("already exists"), "{}", stderr(&out));

    // A path not in the snapshot: the snapshot's paths are shown.
    let data = env.source("data", b"x");
    env.snapshot(&[], &[&data]);
    let out = env.cairn().args(["ls", "latest", "data/file"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("not in the snapshot") && err.contains(&data.display().to_string()), "{err}");
    let out = env.cairn().args(["restore", "latest:/nope", "--target"]).arg(env.p("r")).output().unwrap();
    assert!(stderr(&out).contains(&data.display().to_string()), "{}", stderr(&out));

    // An exclude that matched nothing is worth a warning; one that matched is not.
    let out = env
        .cairn()
        .args(["snapshot", "--exclude", "file", "--exclude", "data/nothing-like-this"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("\"data/nothing-like-this\" matched nothing"), "{err}");
    assert!(!err.contains("\"file\" matched nothing"), "{err}");
}

#[test]
fn a_local_repository_is_private_to_its_owner() {
    let env = Env::new();
    env.init();
    let data = env.source("data", b"x");
    env.snapshot(&[], &[&data]);
    let mut checked = 0;
    let mut stack = vec![env.p("repo")];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            let mode = e.metadata().unwrap().permissions().mode() & 0o777;
            if e.file_type().unwrap().is_dir() {
                assert_eq!(mode, 0o700, "{}", e.path().display());
                stack.push(e.path());
            } else {
                assert_eq!(mode, 0o600, "{}", e.path().display());
            }
            checked += 1;
        }
    }
    assert!(checked > 8, "key slots, keyring, config, packs, index, snapshot");
}

#[test]
fn the_release_profile_ships_a_stripped_binary() {
    let manifest = fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.toml")).unwrap();
    let release = manifest.split("[profile.release]").nth(1).expect("a release profile");
    let release = release.split("\n[").next().unwrap();
    assert!(release.contains("strip = true"), "{release}");
    assert!(release.contains("debug = false"), "{release}");
}

#[test]
fn the_audit_log_names_the_user_of_the_uid_not_of_the_environment() {
    let env = Env::new();
    env.init();
    let data = env.source("data", b"x");
    let out = env.cairn().env_remove("USER").env_remove("LOGNAME").arg("snapshot").arg(&data).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let out = env.cairn().env("USER", "somebody-else").args(["--json", "audit", "log"]).output().unwrap();
    let doc = json(&out.stdout);
    let me = nix::unistd::User::from_uid(nix::unistd::getuid()).unwrap().unwrap().name;
    let host = this_host();
    let entries = doc["entries"].as_array().unwrap();
    assert!(!entries.is_empty());
    for e in entries {
        assert_eq!(e["user"], me.as_str(), "{e}");
        assert_eq!(e["host"], host.as_str(), "{e}");
    }
}

/// Records what a backup reports to a progress display that asks for totals.
#[derive(Debug, Default)]
struct Recorder {
    /// (files, bytes, complete) of each totals report.
    totals: std::sync::Mutex<Vec<(u64, u64, bool)>>,
    read: std::sync::atomic::AtomicU64,
    not_read: std::sync::atomic::AtomicU64,
    files: std::sync::atomic::AtomicU64,
    upload_reports: std::sync::atomic::AtomicU64,
}

impl cairn_engine::Progress for Recorder {
    fn bytes(&self, n: u64) {
        self.read.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    }
    fn wants_totals(&self) -> bool {
        true
    }
    fn totals(&self, files: u64, bytes: u64, complete: bool) {
        self.totals.lock().unwrap().push((files, bytes, complete));
    }
    fn file_done(&self, not_read: u64) {
        self.files.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.not_read.fetch_add(not_read, std::sync::atomic::Ordering::Relaxed);
    }
    fn uploads_pending(&self, _packs: usize) {
        self.upload_reports.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

#[test]
fn snapshot_progress_counts_the_sources_first_and_adds_up_to_the_totals() {
    use std::sync::atomic::Ordering::Relaxed;
    let t = TestRepo::new();
    let repo = t.open();
    let src = t.dir.path().join("src");
    let mut files = 0u64;
    let mut bytes = 0u64;
    for d in 0..12 {
        let dir = src.join(format!("d{d}"));
        fs::create_dir_all(&dir).unwrap();
        for f in 0..60 {
            let data = random_bytes((d * 60 + f) * 97 % 5000, (d * 100 + f) as u64);
            fs::write(dir.join(format!("f{f}")), &data).unwrap();
            files += 1;
            bytes += data.len() as u64;
        }
    }
    fs::write(src.join("big"), random_bytes(3 << 20, 9)).unwrap();
    files += 1;
    bytes += 3 << 20;
    // Left out, and not counted: an excluded file and a cache directory.
    fs::write(src.join("skip.tmp"), random_bytes(50_000, 10)).unwrap();
    fs::create_dir_all(src.join("cache")).unwrap();
    fs::write(src.join("cache/CACHEDIR.TAG"), "Signature: 8a477f597d28d172789f06886806bc55").unwrap();
    fs::write(src.join("cache/blob"), random_bytes(70_000, 11)).unwrap();
    let opts = cairn_engine::backup::BackupOptions {
        paths: vec![src.clone()],
        hostname: this_host(),
        excludes: cairn_engine::backup::ExcludeOptions {
            patterns: vec!["*.tmp".into()],
            caches: true,
            ..Default::default()
        },
        ..Default::default()
    };
    for run in ["initial", "unchanged"] {
        let progress = Recorder::default();
        let out = cairn_engine::backup::backup(&repo, &opts, &progress).unwrap();
        let totals = progress.totals.lock().unwrap().clone();
        assert_eq!(totals.last(), Some(&(files, bytes, true)), "{run}: the counting walk's final figures");
        assert!(totals.windows(2).all(|w| w[0].0 <= w[1].0 && w[0].1 <= w[1].1), "{run}: totals only grow");
        assert_eq!(progress.files.load(Relaxed), files, "{run}: one file_done per file");
        assert_eq!(
            progress.read.load(Relaxed) + progress.not_read.load(Relaxed),
            bytes,
            "{run}: done adds up to the total"
        );
        assert!(progress.upload_reports.load(Relaxed) >= files, "{run}: the upload queue is reported");
        assert_eq!(out.snapshot.summary.bytes_total, bytes);
        if run == "unchanged" {
            assert_eq!(progress.read.load(Relaxed), 0, "nothing is read again");
        }
    }
}

#[test]
fn local_time_buckets_follow_the_machines_time_zone() {
    let env = Env::new();
    env.init();
    let data = env.source("data", b"x");
    // 23:00 and 01:00 in Tokyo: one day in UTC, two there.
    env.snapshot(&["--time", "2026-12-01 14:00:00"], &[&data]);
    env.snapshot(&["--time", "2026-12-01 16:00:00"], &[&data]);
    let kept = |extra: &[&str]| -> usize {
        let out = env
            .cairn()
            .env("TZ", "Asia/Tokyo")
            .args(["--json", "forget", "--dry-run", "--keep-daily", "2"])
            .args(extra)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        json(&out.stdout)["snapshots"].as_array().unwrap().iter().filter(|d| d["keep"] == true).count()
    };
    assert_eq!(kept(&[]), 1, "UTC by default");
    assert_eq!(kept(&["--local-time"]), 2);
}
