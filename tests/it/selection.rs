//! What a snapshot takes: exclusions (patterns, pattern files, marker files, CACHEDIR.TAG,
//! sizes) and streams from standard input or a command.

use std::fs;

use assert_cmd::Command;

use crate::support::*;

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("pw"), "selection tests\n").unwrap();
        let env = Env { dir };
        env.cairn()
            .args(["init", "--no-recovery-code", "--kdf-memory", "8192", "--kdf-iterations", "1"])
            .assert()
            .success();
        env
    }

    fn p(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }

    fn cairn(&self) -> Command {
        cairn_cmd(&self.p("repo"), &self.p("cache"), &self.p("pw"))
    }

    /// Every path in the latest snapshot, relative to `base`.
    fn listed(&self, base: &std::path::Path) -> Vec<String> {
        let out = self.cairn().args(["ls", "latest"]).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let prefix = format!("{}/", base.display());
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.strip_prefix(&prefix).map(str::to_string))
            .collect()
    }
}

#[test]
fn exclusions_leave_out_what_they_name_and_nothing_else() {
    let env = Env::new();
    let src = env.p("src");
    for d in ["keep", "build", "node_modules/pkg", "cache", "tagged", "fake-tag", "deep/er/build"] {
        fs::create_dir_all(src.join(d)).unwrap();
    }
    fs::write(src.join("keep/a.txt"), b"a").unwrap();
    fs::write(src.join("keep/b.tmp"), b"b").unwrap();
    fs::write(src.join("keep/important.tmp"), b"re-included").unwrap();
    fs::write(src.join("build/out.o"), b"o").unwrap();
    fs::write(src.join("deep/er/build/x"), b"x").unwrap();
    fs::write(src.join("node_modules/pkg/index.js"), b"js").unwrap();
    fs::write(src.join("cache/CACHEDIR.TAG"), b"Signature: 8a477f597d28d172789f06886806bc55\n").unwrap();
    fs::write(src.join("cache/blob"), b"cached").unwrap();
    fs::write(src.join("fake-tag/CACHEDIR.TAG"), b"no signature here").unwrap();
    fs::write(src.join("tagged/.nobackup"), b"").unwrap();
    fs::write(src.join("tagged/data"), b"d").unwrap();
    fs::write(src.join("big"), random_bytes(2 << 20, 1)).unwrap();
    fs::write(src.join("small"), b"s").unwrap();
    fs::write(env.p("excludes.txt"), "# build output\nbuild/\n\nnode_modules\n").unwrap();

    let out = env
        .cairn()
        .args(["--json", "snapshot", "--exclude", "*.tmp", "--exclude", "!important.tmp"])
        .arg("--exclude-file")
        .arg(env.p("excludes.txt"))
        .args(["--exclude-if-present", ".nobackup", "--exclude-caches", "--exclude-larger-than", "1M"])
        .arg(&src)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let mut listed = env.listed(&src);
    listed.sort();
    assert_eq!(
        listed,
        ["deep", "deep/er", "fake-tag", "fake-tag/CACHEDIR.TAG", "keep", "keep/a.txt", "keep/important.tmp", "small"],
    );
}

#[test]
fn a_bad_pattern_is_a_clear_error() {
    let env = Env::new();
    fs::create_dir_all(env.p("src")).unwrap();
    let out = env.cairn().args(["snapshot", "--exclude", "a[b"]).arg(env.p("src")).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("exclude pattern"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn stdin_is_stored_as_one_file_and_dumps_back() {
    let env = Env::new();
    let data = text_bytes(3 << 20, 7);
    let out = env
        .cairn()
        .args(["--json", "snapshot", "--stdin", "--stdin-filename", "db.sql", "--tag", "dump"])
        .write_stdin(data.clone())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    env.cairn().args(["restore", "latest", "--target"]).arg(env.p("out")).assert().success();
    assert!(fs::read(env.p("out/db.sql")).unwrap() == data);
}

#[test]
fn stdin_from_a_command_fails_the_snapshot_when_the_command_fails() {
    let env = Env::new();
    let ok = env
        .cairn()
        .args(["snapshot", "--stdin-from-command", "printf 'dump of the database'", "--stdin-filename", "db.sql"])
        .output()
        .unwrap();
    assert_eq!(ok.status.code(), Some(0), "{}", String::from_utf8_lossy(&ok.stderr));
    env.cairn().args(["restore", "latest", "--target"]).arg(env.p("out")).assert().success();
    assert_eq!(fs::read(env.p("out/db.sql")).unwrap(), b"dump of the database");

    let failed = env
        .cairn()
        .args(["--json", "snapshot", "--stdin-from-command", "echo partial dump; exit 7", "--stdin-filename", "db.sql"])
        .output()
        .unwrap();
    assert_eq!(failed.status.code(), Some(1), "{}", String::from_utf8_lossy(&failed.stderr));
    assert!(String::from_utf8_lossy(&failed.stderr).contains("no snapshot was written"));
    let list = env.cairn().args(["--json", "snapshots"]).output().unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(doc.as_array().unwrap().len(), 1, "the failed dump left no snapshot");
}
