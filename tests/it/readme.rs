//! README.md's Quick start and Exit codes, tried as written: the Quick start block runs as a
//! shell script (only its paths pointed into a temporary directory, and the snapshot id it
//! shows taken from the repository), and every exit code the table lists is produced by the
//! situation it describes. (The Nightly job section runs in `nightly.rs`.)

use std::collections::BTreeSet;
use std::fs;
use std::process::Command;

use crate::support::*;

fn readme() -> String {
    fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap()
}

/// The first ```sh block after `heading`.
fn block_after(heading: &str) -> String {
    let text = readme();
    let after = &text[text.find(heading).unwrap_or_else(|| panic!("README.md has no {heading:?}"))..];
    let start = after.find("```sh\n").unwrap() + "```sh\n".len();
    let end = after[start..].find("```").unwrap();
    after[start..start + end].to_string()
}

#[test]
fn quick_start_runs_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path();
    let home = w.join("home");
    fs::create_dir_all(home.join(".config/cairn")).unwrap();
    fs::write(home.join(".config/cairn/password"), "quick start password\n").unwrap();
    fs::create_dir_all(home.join("Documents")).unwrap();
    fs::write(home.join("Documents/report.odt"), random_bytes(200_000, 41)).unwrap();
    fs::write(home.join("Documents/notes.txt"), b"notes").unwrap();
    let mut script = String::from("set -eu\n");
    for line in block_after("## Quick start").lines() {
        let mut line = line
            .replace("/srv/backup/repo", &w.join("repo").display().to_string())
            .replace("/home/me", &home.display().to_string())
            .replace("/tmp/restore", &w.join("restore").display().to_string())
            .replace("--target /tmp ", &format!("--target {} ", w.join("part").display()));
        if line.contains("3f2a9c") {
            // The id prefix the README shows is one of its own snapshots: use this one's.
            script.push_str("ID=$(cairn list snapshots | head -n 1 | cut -c1-6)\n");
            line = line.replace("3f2a9c", "$ID");
        }
        if line.trim_start().starts_with("cairn init") {
            // The code is shown once, indented: keep it for the line that opens with it.
            line = line.replacen("cairn init", "cairn init | tee init.out", 1);
            script.push_str(&line);
            script.push_str("\nsed -n 's/^    //p' init.out > code.txt\n");
            continue;
        }
        script.push_str(&line);
        script.push('\n');
    }
    let bin_dir = assert_cmd::cargo::cargo_bin("cairn").parent().unwrap().to_path_buf();
    let mut cmd = Command::new("bash");
    cmd.arg("-c")
        .arg(&script)
        .current_dir(w)
        .env("HOME", &home)
        .env("PATH", format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default()));
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("CAIRN_")) {
        cmd.env_remove(k);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "the Quick start failed\nscript:\n{script}\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let restored = restored_path(&w.join("restore"), &home.join("Documents"));
    assert_same_tree(&home.join("Documents"), &restored);
    // SNAPSHOT:PATH restores PATH's last component into the target.
    let part = w.join("part/report.odt");
    assert_eq!(
        fs::read(&part).unwrap_or_else(|e| panic!(
            "{}: {e}; the target holds {:?}",
            part.display(),
            walk_files(&w.join("part"))
        )),
        fs::read(home.join("Documents/report.odt")).unwrap()
    );
    assert!(fs::read_to_string(w.join("code.txt")).unwrap().trim().len() > 20, "the recovery code was shown");
}

/// The codes README's exit code table lists.
fn documented_codes() -> BTreeSet<i32> {
    let text = readme();
    let table = &text[text.find("## Exit codes").unwrap()..];
    let table = &table[..table[3..].find("\n## ").unwrap()];
    table.lines().filter_map(|l| l.strip_prefix("| ")).filter_map(|l| l.split(' ').next()?.parse().ok()).collect()
}

#[test]
fn every_documented_exit_code_comes_from_the_situation_the_table_names() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path();
    fs::write(w.join("pw"), "exit codes\n").unwrap();
    fs::write(w.join("wrong"), "not it\n").unwrap();
    let repo = w.join("repo");
    let cairn = || cairn_cmd(&repo, &w.join("cache"), &w.join("pw"));
    // A process to keep running (assert_cmd's Command only runs to completion).
    let spawn = |args: &[&str]| {
        let mut c = Command::new(assert_cmd::cargo::cargo_bin("cairn"));
        for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("CAIRN_")) {
            c.env_remove(k);
        }
        c.arg("-r").arg(&repo).arg("--cache-dir").arg(w.join("cache")).arg("--password-file").arg(w.join("pw"));
        c.args(args).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap()
    };
    let mut seen = BTreeSet::new();
    let mut expect = |code: i32, out: std::process::Output, what: &str| {
        assert_eq!(out.status.code(), Some(code), "{what}: {}", String::from_utf8_lossy(&out.stderr));
        seen.insert(code);
    };
    expect(10, cairn().arg("snapshots").output().unwrap(), "no repository");
    expect(
        0,
        cairn().args(["init", "--no-recovery-code", "--kdf-memory", "8192", "--kdf-iterations", "1"]).output().unwrap(),
        "init",
    );
    expect(2, cairn().args(["snapshot", "--no-such-flag"]).output().unwrap(), "a wrong command line");
    expect(
        12,
        cairn_cmd(&repo, &w.join("cache"), &w.join("wrong")).arg("snapshots").output().unwrap(),
        "a wrong password",
    );
    let src = w.join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("f"), b"x").unwrap();
    expect(3, cairn().arg("snapshot").arg(&src).arg(w.join("missing")).output().unwrap(), "a source missing");
    expect(1, cairn().args(["restore", "no-such-snapshot", "--target"]).arg(w.join("t")).output().unwrap(), "an error");
    // A lock held by a live process (this test's pid, this host).
    let mut holder = spawn(&["snapshot", "--stdin-from-command", "sleep 5; echo done"]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while fs::read_dir(repo.join("locks")).map(|d| d.count()).unwrap_or(0) == 0 && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    expect(11, cairn().args(["forget", "--keep-last", "1"]).output().unwrap(), "locked");
    holder.wait().unwrap();
    // Stopped by SIGTERM.
    // A stream that sends nothing until it ends: the stop is still honoured before the
    // snapshot would be written.
    let mut stopped = spawn(&["snapshot", "--stdin-from-command", "sleep 3"]);
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert!(Command::new("kill").args(["-s", "TERM", &stopped.id().to_string()]).status().unwrap().success());
    let status = stopped.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    seen.insert(130);
    let snapshots = cairn().args(["--json", "snapshots"]).output().unwrap();
    let list: serde_json::Value = serde_json::from_slice(&snapshots.stdout).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 2, "the stopped snapshot was not written: {list}");
    // A `cairn serve` identity that may only append, asked to forget.
    let mut server =
        crate::serve::server::Served::local(&[("admin", &["main=admin"]), ("host", &["main=append"])], &[]);
    let init = server
        .cairn_as("admin", "main", &w.join("cache-s"), &w.join("pw"))
        .args(["init", "--no-recovery-code", "--kdf-memory", "8192", "--kdf-iterations", "1"])
        .output()
        .unwrap();
    assert!(init.status.success(), "init through the server: {}", String::from_utf8_lossy(&init.stderr));
    let forget = server
        .cairn_as("host", "main", &w.join("cache-s"), &w.join("pw"))
        .args(["forget", "--keep-last", "1"])
        .output()
        .unwrap();
    assert_eq!(forget.status.code(), Some(13), "{}", String::from_utf8_lossy(&forget.stderr));
    seen.insert(13);
    // The same host backing up into a repository over its quota.
    let quota = crate::serve::server::cairn()
        .args(["serve", "set-quota", "main", "1KiB", "--identities"])
        .arg(&server.identities)
        .output()
        .unwrap();
    assert!(quota.status.success(), "{}", String::from_utf8_lossy(&quota.stderr));
    server.restart();
    let full =
        server.cairn_as("host", "main", &w.join("cache-s"), &w.join("pw")).arg("snapshot").arg(&src).output().unwrap();
    assert_eq!(full.status.code(), Some(14), "{}", String::from_utf8_lossy(&full.stderr));
    seen.insert(14);
    assert_eq!(seen, documented_codes(), "the codes README documents are exactly those produced here");
}
