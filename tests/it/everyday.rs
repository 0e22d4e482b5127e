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

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("pw"), "everyday password\n").unwrap();
        Env { dir }
    }

    fn p(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn cairn(&self) -> Command {
        cairn_cmd(&self.p("repo"), &self.p("cache"), &self.p("pw"))
    }

    fn init(&self) {
        self.cairn()
            .args(["init", "--no-recovery-code", "--kdf-memory", "8192", "--kdf-iterations", "1"])
            .assert()
            .success();
    }

    /// A source directory with one file.
    fn source(&self, name: &str, content: &[u8]) -> PathBuf {
        let dir = self.p(name);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("file"), content).unwrap();
        dir
    }

    fn snapshot(&self, args: &[&str], paths: &[&Path]) -> String {
        let out = self.cairn().arg("--json").arg("snapshot").args(args).args(paths).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
        json(&out.stdout)["snapshot_id"].as_str().unwrap().to_string()
    }

    /// Ids of `snapshots --json` with `args`, oldest first.
    fn listed(&self, args: &[&str]) -> Vec<String> {
        let out = self.cairn().args(["--json", "snapshots"]).args(args).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        json(&out.stdout).as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap().to_string()).collect()
    }
}

fn json(out: &[u8]) -> serde_json::Value {
    serde_json::from_slice(out)
        .unwrap_or_else(|e| panic!("not one JSON document ({e}): {}", String::from_utf8_lossy(out)))
}

fn stderr(out: &std::process::Output) -> String {
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
fn completions_and_man_pages_are_generated_from_the_command_line_definition() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::cargo_bin("cairn").unwrap().args(["completion", "bash"]).output().unwrap();
    assert!(out.status.success());
    fs::write(dir.path().join("cairn.bash"), &out.stdout).unwrap();
    // bash completes `cairn sna` to the two commands that start so.
    let script = format!(
        "source {}; COMP_WORDS=(cairn sna); COMP_CWORD=1; _cairn cairn sna cairn; echo \"${{COMPREPLY[@]}}\"",
        dir.path().join("cairn.bash").display()
    );
    let out = std::process::Command::new("bash").args(["-c", &script]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut words: Vec<String> = String::from_utf8_lossy(&out.stdout).split_whitespace().map(String::from).collect();
    words.sort();
    assert_eq!(words, ["snapshot", "snapshots"]);
    for shell in ["zsh", "fish"] {
        let out = Command::cargo_bin("cairn").unwrap().args(["completion", shell]).output().unwrap();
        assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("snapshot"), "{shell}");
    }

    let man = dir.path().join("man1");
    Command::cargo_bin("cairn").unwrap().args(["man", "--out-dir"]).arg(&man).assert().success();
    let page = fs::read_to_string(man.join("cairn-snapshot.1")).unwrap();
    assert!(page.starts_with(".ie") || page.contains(".TH cairn-snapshot"), "a roff page");
    assert!(page.contains("exclude\\-caches"), "{page}");
    for name in ["cairn.1", "cairn-restore.1", "cairn-key-rotate.1", "cairn-forget.1"] {
        assert!(man.join(name).is_file(), "{name}");
    }
}

#[test]
fn tag_rewrites_snapshots_and_the_audit_log_accounts_for_it() {
    let env = Env::new();
    env.init();
    let data = env.source("data", b"tagged");
    let first = env.snapshot(&["--tag", "old,keep"], &[&data]);
    let second = env.snapshot(&[], &[&data]);
    let tags_of = |id: &str| -> serde_json::Value {
        let out = env.cairn().args(["--json", "cat", "snapshot", id]).output().unwrap();
        json(&out.stdout)["snapshot"]["tags"].clone()
    };
    let out = env.cairn().args(["--json", "tag", &first, "--add", "new,x", "--remove", "old"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let changed = json(&out.stdout)["changed"].clone();
    let new_id = changed[0]["new_id"].as_str().unwrap().to_string();
    assert_eq!(changed[0]["old_id"], first.as_str());
    assert_eq!(tags_of(&new_id), serde_json::json!(["keep", "new", "x"]));
    let ids = env.listed(&[]);
    assert!(ids.contains(&new_id) && !ids.contains(&first) && ids.contains(&second), "{ids:?}");
    // The rewritten snapshot restores the same data.
    env.cairn().args(["restore", &new_id, "--target"]).arg(env.p("r")).assert().success();
    assert_same_tree(&data, &restored_path(&env.p("r"), &data));
    // Selection by filter; --set replaces; nothing to change is no rewrite.
    let out = env.cairn().args(["--json", "tag", "--tag", "keep", "--set", "only"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let newest = json(&out.stdout)["changed"][0]["new_id"].as_str().unwrap().to_string();
    assert_eq!(tags_of(&newest), serde_json::json!(["only"]));
    let out = env.cairn().args(["--json", "tag", &newest, "--add", "only"]).output().unwrap();
    assert_eq!(json(&out.stdout)["changed"].as_array().unwrap().len(), 0);
    // Neither ids nor filters: refused as a usage error; no change asked: clap refuses.
    assert_eq!(env.cairn().args(["tag", "--add", "x"]).output().unwrap().status.code(), Some(2));
    assert_eq!(env.cairn().args(["tag", &second]).output().unwrap().status.code(), Some(2));
    // The audit log agrees with the repository after the rewrites.
    env.cairn().args(["audit", "verify"]).assert().success();
    env.cairn().args(["check"]).assert().success();
}

#[test]
fn files_from_lists_the_sources() {
    let env = Env::new();
    env.init();
    let a = env.source("a", b"first");
    let b = env.source("b", b"second");
    let c = env.source("c", b"third");
    fs::write(env.p("list"), format!("# sources\n{}\n\n{}\n", a.display(), b.display())).unwrap();
    fs::write(env.p("list0"), format!("{}\0", c.display())).unwrap();
    let out = env
        .cairn()
        .args(["--json", "snapshot", "--files-from"])
        .arg(env.p("list"))
        .arg("--files-from-raw")
        .arg(env.p("list0"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let snaps = json(&env.cairn().args(["--json", "snapshots"]).output().unwrap().stdout);
    let mut paths: Vec<String> =
        snaps[0]["paths"].as_array().unwrap().iter().map(|p| p.as_str().unwrap().to_string()).collect();
    paths.sort();
    assert_eq!(paths, [a.display().to_string(), b.display().to_string(), c.display().to_string()]);
    fs::write(env.p("empty"), "# nothing\n").unwrap();
    let out = env.cairn().args(["snapshot", "--files-from"]).arg(env.p("empty")).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

#[test]
fn a_dry_run_reads_everything_and_stores_nothing() {
    let env = Env::new();
    env.init();
    let data = env.source("data", &random_bytes(2 << 20, 21));
    let before = |env: &Env| -> Vec<String> {
        let mut names: Vec<String> = walk_files(&env.p("repo"))
            .iter()
            .filter(|p| !p.to_string_lossy().contains("/locks/") && !p.to_string_lossy().contains("/audit/"))
            .map(|p| p.display().to_string())
            .collect();
        names.sort();
        names
    };
    let objects = before(&env);
    let out = env.cairn().args(["--json", "snapshot", "--dry-run"]).arg(&data).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let doc = json(&out.stdout);
    assert_eq!(doc["dry_run"], true);
    assert!(doc["snapshot_id"].is_null());
    assert_eq!(doc["files_new"], 1);
    assert!(doc["bytes_added_raw"].as_u64().unwrap() >= 2 << 20, "{doc}");
    assert_eq!(before(&env), objects, "nothing stored");
    assert!(env.listed(&[]).is_empty());
    // After a real snapshot, a dry run would add nothing.
    env.snapshot(&[], &[&data]);
    let doc = json(&env.cairn().args(["--json", "snapshot", "-n"]).arg(&data).output().unwrap().stdout);
    assert_eq!(doc["blobs_added"], 0, "{doc}");
    assert_eq!(doc["files_unchanged"], 1);
}

#[test]
fn list_prints_the_ids_of_one_kind_of_object() {
    let env = Env::new();
    env.init();
    let data = env.source("data", b"listed");
    let id = env.snapshot(&[], &[&data]);
    let ids = |kind: &str| -> Vec<String> {
        let out = env.cairn().args(["list", kind]).output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        String::from_utf8_lossy(&out.stdout).lines().map(String::from).collect()
    };
    assert_eq!(ids("snapshots"), vec![id]);
    let packs = ids("packs");
    assert!(!packs.is_empty() && packs.iter().all(|p| p.len() == 64), "{packs:?}");
    assert_eq!(ids("index").len(), 1);
    assert_eq!(ids("keys").len(), 1);
    assert!(ids("locks").is_empty());
    let doc = json(&env.cairn().args(["--json", "list", "packs"]).output().unwrap().stdout);
    assert_eq!(doc.as_array().unwrap().len(), packs.len());
    assert_eq!(env.cairn().args(["list", "chunks"]).output().unwrap().status.code(), Some(2));
}

#[test]
fn stats_counts_restore_size_and_deduplicated_data() {
    let env = Env::new();
    env.init();
    let data = env.p("data");
    fs::create_dir_all(data.join("sub")).unwrap();
    fs::write(data.join("a"), random_bytes(1 << 20, 31)).unwrap();
    fs::write(data.join("sub/b"), random_bytes(300_000, 32)).unwrap();
    // The same content twice in one snapshot: one copy of it in the repository.
    fs::write(data.join("sub/a-copy"), random_bytes(1 << 20, 31)).unwrap();
    let first = env.snapshot(&[], &[&data]);
    let second = env.snapshot(&["--force"], &[&data]);
    let stats = |args: &[&str]| -> serde_json::Value {
        let out = env.cairn().args(["--json", "stats"]).args(args).output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        json(&out.stdout)
    };
    let one = (1u64 << 20) * 2 + 300_000;
    let s = stats(&[&first]);
    assert_eq!(
        (s["snapshots"].as_u64(), s["files"].as_u64(), s["restore_bytes"].as_u64()),
        (Some(1), Some(3), Some(one))
    );
    let s = stats(&[]);
    assert_eq!(
        (s["snapshots"].as_u64(), s["files"].as_u64(), s["restore_bytes"].as_u64()),
        (Some(2), Some(6), Some(2 * one))
    );
    let blobs = stats(&["--mode", "blobs"]);
    assert_eq!(blobs["raw_bytes"].as_u64(), Some((1 << 20) + 300_000), "distinct content once: {blobs}");
    assert_eq!(blobs["missing_blobs"], 0);
    let raw = stats(&["--mode", "raw", &second]);
    assert!(raw["blobs"].as_u64() > blobs["blobs"].as_u64(), "raw adds the trees: {raw}");
    assert!(raw["stored_bytes"].as_u64().unwrap() > 0);
}

#[test]
fn a_profile_gives_defaults_and_the_command_line_wins() {
    let env = Env::new();
    env.init();
    let a = env.source("a", b"from the profile");
    let b = env.source("b", b"from the command line");
    let profile = env.p("p.toml");
    fs::write(
        &profile,
        format!(
            "repo = {repo:?}\npassword-file = {pw:?}\ncache-dir = {cache:?}\n\n[snapshot]\nsources = [{a:?}]\ntag = [\"profiled\"]\nrun-after = \"echo $CAIRN_EXIT_CODE $CAIRN_SNAPSHOT_ID > {after}\"\n\n[forget]\nkeep-last = 5\n",
            repo = env.p("repo").display().to_string(),
            pw = env.p("pw").display().to_string(),
            cache = env.p("cache").display().to_string(),
            a = a.display().to_string(),
            after = env.p("after").display(),
        ),
    )
    .unwrap();
    let cairn = || {
        let mut c = Command::cargo_bin("cairn").unwrap();
        without_cairn_env(&mut c);
        c.arg("--profile").arg(&profile);
        c
    };
    // The profile's sources and tag; its run-after saw the outcome.
    let out = cairn().args(["--json", "snapshot"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let id = json(&out.stdout)["snapshot_id"].as_str().unwrap().to_string();
    assert_eq!(fs::read_to_string(env.p("after")).unwrap().trim(), format!("0 {id}"));
    // Paths on the command line replace the profile's sources; list flags add up.
    let out = cairn().args(["--json", "snapshot", "--tag", "extra"]).arg(&b).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let list = json(&env.cairn().args(["--json", "snapshots"]).output().unwrap().stdout);
    assert_eq!(list[0]["paths"], serde_json::json!([a.display().to_string()]));
    assert_eq!(list[1]["paths"], serde_json::json!([b.display().to_string()]));
    assert_eq!(list[1]["tags"], serde_json::json!(["profiled", "extra"]));
    // A scalar on the command line wins over the profile's.
    let kept = |args: &[&str]| -> usize {
        let out = cairn().args(["--json", "forget", "--dry-run"]).args(args).output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        json(&out.stdout)["snapshots"].as_array().unwrap().iter().filter(|d| d["keep"] == true).count()
    };
    assert_eq!(kept(&["--group-by", ""]), 2);
    assert_eq!(kept(&["--group-by", "", "--keep-last", "1"]), 1);
    // A mistake in the profile names the flag; a missing profile says where it looked.
    fs::write(env.p("bad.toml"), "[forget]\nkep-last = 3\n").unwrap();
    let out =
        Command::cargo_bin("cairn").unwrap().arg("--profile").arg(env.p("bad.toml")).arg("forget").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("kep-last"), "{}", stderr(&out));
    let out = Command::cargo_bin("cairn")
        .unwrap()
        .env("HOME", env.p(""))
        .args(["--profile", "nosuch", "snapshots"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("nosuch.toml"), "{}", stderr(&out));
}

#[test]
fn rewrite_leaves_out_excluded_paths_and_keeps_or_forgets_the_original() {
    let env = Env::new();
    env.init();
    let data = env.p("data");
    fs::create_dir_all(data.join("secrets")).unwrap();
    fs::create_dir_all(data.join("keep")).unwrap();
    fs::write(data.join("secrets/token"), b"should never have been backed up").unwrap();
    fs::write(data.join("keep/a.txt"), random_bytes(100_000, 51)).unwrap();
    fs::write(data.join("keep/b.log"), b"a log").unwrap();
    let old = env.snapshot(&["--tag", "daily"], &[&data]);
    let secrets = format!("{}/secrets", data.display());
    // A dry run writes nothing.
    let out = env
        .cairn()
        .args(["--json", "rewrite", &old, "--exclude", &secrets, "--exclude", "*.log", "-n"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let doc = json(&out.stdout);
    assert!(doc["rewritten"][0]["new_id"].is_null());
    assert_eq!(doc["rewritten"][0]["removed"].as_array().unwrap().len(), 2, "{doc}");
    assert_eq!(env.listed(&[]), vec![old.clone()]);
    // The rewrite: a new snapshot without them, the original kept.
    let out =
        env.cairn().args(["--json", "rewrite", &old, "--exclude", &secrets, "--exclude", "*.log"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let new = json(&out.stdout)["rewritten"][0]["new_id"].as_str().unwrap().to_string();
    let mut listed = env.listed(&[]);
    listed.sort();
    let mut want = vec![old.clone(), new.clone()];
    want.sort();
    assert_eq!(listed, want);
    env.cairn().args(["restore", &new, "--target"]).arg(env.p("r")).assert().success();
    let restored = restored_path(&env.p("r"), &data);
    assert!(!restored.join("secrets").exists() && !restored.join("keep/b.log").exists());
    assert_eq!(fs::read(restored.join("keep/a.txt")).unwrap(), fs::read(data.join("keep/a.txt")).unwrap());
    let snap = json(&env.cairn().args(["--json", "cat", "snapshot", &new]).output().unwrap().stdout);
    assert_eq!(snap["snapshot"]["tags"], serde_json::json!(["daily", "rewritten"]));
    // With --forget the original goes; prune then drops the secret's data; check is clean.
    let out = env
        .cairn()
        .args(["--json", "rewrite", "--tag", "rewritten", "--exclude", "*.txt", "--forget"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let newest = json(&out.stdout)["rewritten"][0]["new_id"].as_str().unwrap().to_string();
    let listed = env.listed(&[]);
    assert!(listed.contains(&newest) && !listed.contains(&new) && listed.contains(&old), "{listed:?}");
    env.cairn().args(["audit", "verify"]).assert().success();
    env.cairn().args(["check", "--read-data"]).assert().success();
    // Nothing to leave out: usage error.
    assert_eq!(env.cairn().args(["rewrite", &old]).output().unwrap().status.code(), Some(2));
}

#[test]
fn copy_moves_snapshots_between_repositories_with_different_keys() {
    let src_env = Env::new();
    src_env.init();
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("pw2"), "the destination's own password\n").unwrap();
    let dest = |args: &[&str]| {
        let mut c = cairn_cmd(&dir.path().join("dest"), &dir.path().join("cache"), &dir.path().join("pw2"));
        c.args(args);
        c
    };
    dest(&["init", "--no-recovery-code", "--kdf-memory", "8192", "--kdf-iterations", "1"]).assert().success();
    let data = src_env.p("data");
    fs::create_dir_all(data.join("sub")).unwrap();
    fs::write(data.join("big"), random_bytes(3 << 20, 61)).unwrap();
    fs::write(data.join("sub/small"), b"small file").unwrap();
    fs::write(data.join("empty"), b"").unwrap();
    std::os::unix::fs::symlink("big", data.join("link")).unwrap();
    let first = src_env.snapshot(&["--tag", "one"], &[&data]);
    let before = src_env.p("before");
    src_env.cairn().args(["restore", &first, "--target"]).arg(&before).assert().success();
    fs::write(data.join("sub/small"), b"changed").unwrap();
    let second = src_env.snapshot(&[], &[&data]);

    let copy = |extra: &[&str]| -> serde_json::Value {
        let mut c = dest(&["--json", "copy", "--from-repo"]);
        c.arg(src_env.p("repo")).arg("--from-password-file").arg(src_env.p("pw")).args(extra);
        let out = c.output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        json(&out.stdout)
    };
    let doc = copy(&[]);
    assert_eq!(doc["copied"], 2, "{doc}");
    // The destination's snapshots restore to what the source's do, byte for byte.
    let copied: Vec<String> =
        doc["snapshots"].as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap().to_string()).collect();
    for (source_id, copied_id, expect) in [(&first, &copied[0], before.clone()), (&second, &copied[1], PathBuf::new())]
    {
        let target = dir.path().join(format!("r-{copied_id}"));
        dest(&["restore", copied_id, "--target"]).arg(&target).assert().success();
        let reference = if expect.as_os_str().is_empty() {
            let t = dir.path().join(format!("s-{source_id}"));
            src_env.cairn().args(["restore", source_id, "--target"]).arg(&t).assert().success();
            t
        } else {
            expect
        };
        assert_same_tree(&restored_path(&reference, &data), &restored_path(&target, &data));
    }
    let list = json(&dest(&["--json", "snapshots"]).output().unwrap().stdout);
    assert_eq!(list[0]["tags"], serde_json::json!(["one"]));
    assert_ne!(list[0]["id"], first.as_str(), "ids are the destination's own");
    // Copying again copies nothing; check and the audit log are clean.
    assert_eq!(copy(&[])["copied"], 0);
    dest(&["check", "--read-data"]).assert().success();
    dest(&["audit", "verify"]).assert().success();
    // A source secret is required (a usage error without one).
    let mut c = dest(&["copy", "--from-repo"]);
    assert_eq!(c.arg(src_env.p("repo")).output().unwrap().status.code(), Some(2));
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
