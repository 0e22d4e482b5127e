//! The commands restic, rustic and borg users reach for first, each end to end through the CLI:
//! shell completions and man pages, tag, --files-from, snapshot --dry-run, list, stats,
//! profiles, rewrite and copy between repositories with different keys.

use std::fs;
use std::path::PathBuf;

use assert_cmd::Command;

use crate::everyday::{Env, json, stderr};
use crate::support::*;

/// The binary these tests drive is the one shipped: a workspace build unifies the suite's
/// test-only engine features into it, and `cairn --version` says so; scripts/test.sh builds it
/// on its own last.
#[test]
fn the_cairn_binary_under_test_is_the_shipped_build() {
    let out = Command::cargo_bin("cairn").unwrap().arg("--version").output().unwrap();
    assert!(out.status.success());
    let version = String::from_utf8_lossy(&out.stdout);
    assert!(version.starts_with("cairn "), "{version}");
    assert!(
        !version.contains("test build"),
        "{version}: target/debug/cairn carries test-only features; rebuild it on its own with \
         `cargo build -p cairn-cli` after the workspace build (scripts/test.sh does)"
    );
    // The crash matrix runs the other one, built with the suite.
    let killable = Command::cargo_bin("cairn-killable").unwrap().arg("--version").output().unwrap();
    assert!(killable.status.success(), "{killable:?}");
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
    // After a real snapshot, a dry run would add no file data. (A directory's tree, at most:
    // the snapshot records the source's ancestors, and other tests change /tmp meanwhile.)
    env.snapshot(&[], &[&data]);
    let doc = json(&env.cairn().args(["--json", "snapshot", "-n"]).arg(&data).output().unwrap().stdout);
    assert!(doc["bytes_added_raw"].as_u64().unwrap() < 4096, "{doc}");
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
