//! Issue 3, acceptance 4: partial restore (subpath, include, exclude), overwrite policies,
//! `--delete`, `--verify`, resuming after an interruption; `dump`, `diff`, `find`, `ls -l`.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use cairn_engine::NoProgress;
use cairn_engine::diff::{Change, diff};
use cairn_engine::restore::{Overwrite, RestoreOptions, RestoreOutcome, restore};

use crate::support::*;

fn tree(src: &Path) {
    fs::create_dir_all(src.join("docs/sub")).unwrap();
    fs::create_dir_all(src.join("logs")).unwrap();
    fs::write(src.join("docs/a.txt"), text_bytes(200_000, 1)).unwrap();
    fs::write(src.join("docs/sub/b.txt"), b"bee").unwrap();
    fs::write(src.join("docs/big.bin"), random_bytes(3 << 20, 2)).unwrap();
    fs::write(src.join("logs/x.log"), b"log line").unwrap();
    fs::write(src.join("top.log"), b"top log").unwrap();
    std::os::unix::fs::symlink("docs/a.txt", src.join("link")).unwrap();
}

struct Fixture {
    work: tempfile::TempDir,
    src: PathBuf,
    t: TestRepo,
    out: cairn_engine::backup::BackupOutcome,
}

fn fixture() -> Fixture {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    tree(&src);
    let t = TestRepo::new();
    let out = snapshot(&t.open(), &[&src]);
    Fixture { work, src, t, out }
}

impl Fixture {
    fn restore(&self, target: &Path, f: impl FnOnce(&mut RestoreOptions)) -> RestoreOutcome {
        let mut opts = RestoreOptions { target: target.to_path_buf(), ..Default::default() };
        f(&mut opts);
        restore(&self.t.open(), self.out.snapshot.tree, &opts, &NoProgress).unwrap()
    }

    /// Where the source lands below `target`.
    fn at(&self, target: &Path) -> PathBuf {
        restored_path(target, &self.src)
    }
}

fn files_below(root: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        walk_files(root).iter().map(|p| p.strip_prefix(root).unwrap().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

#[test]
fn include_and_exclude_select_what_is_restored() {
    let f = fixture();
    let target = f.work.path().join("inc");
    let docs = format!("{}/docs", f.src.display());
    let r = f.restore(&target, |o| {
        o.include = vec![docs.clone()];
        o.exclude = vec!["*.bin".into()];
    });
    assert_eq!(files_below(&f.at(&target)), ["docs/a.txt", "docs/sub/b.txt"]);
    assert_eq!(r.files, 2);
    assert!(!f.at(&target).join("logs").exists(), "directories without selected entries are not made");

    let target = f.work.path().join("exc");
    f.restore(&target, |o| o.exclude = vec!["*.log".into(), "sub/".into()]);
    assert_eq!(files_below(&f.at(&target)), ["docs/a.txt", "docs/big.bin"]);
    assert!(f.at(&target).join("logs").is_dir(), "an emptied directory is still restored");

    // A subpath restores that entry under its own name.
    let target = f.work.path().join("sub");
    f.restore(&target, |o| o.subpath = format!("{}/docs/sub", f.src.display()).into_bytes());
    assert_eq!(files_below(&target), ["sub/b.txt"]);
}

#[test]
fn overwrite_policies_and_delete() {
    let f = fixture();
    let target = f.work.path().join("t");
    f.restore(&target, |_| {});
    let a = f.at(&target).join("docs/a.txt");
    let set_mtime = |p: &Path, secs: u64| {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
        fs::File::options().write(true).open(p).unwrap().set_times(fs::FileTimes::new().set_modified(t)).unwrap();
    };
    let original = fs::read(f.src.join("docs/a.txt")).unwrap();
    // A local edit, newer than the snapshot.
    fs::write(&a, b"edited locally").unwrap();
    set_mtime(&a, 4_000_000_000);
    let r = f.restore(&target, |o| o.overwrite = Overwrite::Never);
    assert_eq!(fs::read(&a).unwrap(), b"edited locally");
    assert!(r.left >= 1, "{r:?}");
    f.restore(&target, |o| o.overwrite = Overwrite::IfNewer);
    assert_eq!(fs::read(&a).unwrap(), b"edited locally", "the local copy is newer");
    set_mtime(&a, 1_000_000_000);
    f.restore(&target, |o| o.overwrite = Overwrite::IfNewer);
    assert!(fs::read(&a).unwrap() == original, "the snapshot's copy is newer");
    fs::write(&a, b"edited again").unwrap();
    let r = f.restore(&target, |o| o.overwrite = Overwrite::IfChanged);
    assert!(fs::read(&a).unwrap() == original);
    assert_eq!((r.files, r.files_unchanged), (1, 4), "{r:?}");
    let r = f.restore(&target, |o| o.overwrite = Overwrite::Always);
    assert_eq!((r.files, r.files_unchanged), (5, 0), "{r:?}");

    // --delete removes what the snapshot does not have, files and directories.
    fs::write(f.at(&target).join("docs/stray.txt"), b"stray").unwrap();
    fs::create_dir_all(f.at(&target).join("docs/stray-dir/deeper")).unwrap();
    fs::write(f.at(&target).join("docs/stray-dir/deeper/f"), b"f").unwrap();
    let r = f.restore(&target, |_| {});
    assert!(f.at(&target).join("docs/stray.txt").exists(), "nothing is deleted without --delete");
    assert_eq!(r.deleted, 0);
    let r = f.restore(&target, |o| o.delete = true);
    assert_eq!(r.deleted, 2, "{r:?}");
    assert_same_tree(&f.src, &f.at(&target));
}

#[test]
fn an_interrupted_restore_resumes_and_verify_checks_every_file() {
    let f = fixture();
    let target = f.work.path().join("t");
    let r = f.restore(&target, |o| o.verify = true);
    assert_eq!((r.files, r.verified), (5, 5), "{r:?}");
    // What a crash leaves: one file at full size but not yet filled in (the writer sizes files
    // first), one file written but without its mtime, one not made at all.
    let big = f.at(&target).join("docs/big.bin");
    let len = fs::metadata(&big).unwrap().len();
    fs::write(&big, vec![0u8; len as usize]).unwrap();
    let b = f.at(&target).join("docs/sub/b.txt");
    fs::File::options().write(true).open(&b).unwrap().set_modified(std::time::SystemTime::now()).unwrap();
    fs::remove_file(f.at(&target).join("top.log")).unwrap();
    let r = f.restore(&target, |o| o.verify = true);
    assert_eq!(r.files, 2, "the zero-filled and the missing file are written: {r:?}");
    assert_eq!(r.files_unchanged, 3, "b.txt's content is right, only its mtime is set: {r:?}");
    assert_eq!(r.verified, 2);
    assert!(r.damaged.is_empty());
    assert_same_tree(&f.src, &f.at(&target));
}

#[test]
fn diff_reports_added_removed_modified_and_metadata_changes() {
    let f = fixture();
    let repo = f.t.open();
    fs::write(f.src.join("docs/new.txt"), b"new").unwrap();
    fs::remove_file(f.src.join("top.log")).unwrap();
    fs::write(f.src.join("docs/sub/b.txt"), b"BEE").unwrap();
    fs::set_permissions(f.src.join("logs/x.log"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::remove_file(f.src.join("link")).unwrap();
    fs::create_dir(f.src.join("link")).unwrap();
    fs::write(f.src.join("link/inside"), b"i").unwrap();
    let second = snapshot(&repo, &[&f.src]);
    let base = f.src.to_string_lossy().trim_start_matches('/').to_string();
    let mut seen = Vec::new();
    diff(&repo, f.out.snapshot.tree, second.snapshot.tree, &mut |e| {
        let p = String::from_utf8_lossy(&e.path).into_owned();
        if let Some(rel) = p.strip_prefix(&format!("{base}/")) {
            seen.push((e.change, rel.to_string()));
        }
        Ok(())
    })
    .unwrap();
    seen.sort_by(|a, b| a.1.cmp(&b.1));
    let want = vec![
        (Change::Added, "docs/new.txt".to_string()),
        (Change::Modified, "docs/sub/b.txt".into()),
        (Change::TypeChanged, "link".into()),
        (Change::Added, "link/inside".into()),
        (Change::MetadataOnly, "logs/x.log".into()),
        (Change::Removed, "top.log".into()),
    ];
    // Directories whose entries changed also changed their mtime: metadata-only entries.
    let files: Vec<_> = seen.iter().filter(|(c, p)| *c != Change::MetadataOnly || p.contains('.')).cloned().collect();
    assert_eq!(files, want, "all: {seen:?}");
    // Nothing between a snapshot and itself.
    let mut n = 0;
    diff(&repo, second.snapshot.tree, second.snapshot.tree, &mut |_| {
        n += 1;
        Ok(())
    })
    .unwrap();
    assert_eq!(n, 0);
}

/// The CLI over the fixture's repository.
fn cairn(f: &Fixture) -> Command {
    fs::write(f.work.path().join("pw"), PASSWORD).unwrap();
    cairn_cmd(&f.t.repo_path(), &f.t.cache(), &f.work.path().join("pw"))
}

#[test]
fn dump_writes_a_file_and_a_directory_as_tar() {
    let f = fixture();
    let file = format!("{}/docs/big.bin", f.src.display());
    let out = cairn(&f).args(["dump", "latest", &file]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stdout == fs::read(f.src.join("docs/big.bin")).unwrap());

    let dir = format!("{}/docs", f.src.display());
    let out = cairn(&f).args(["dump", "latest", &dir]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "a directory without --archive is a usage error");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--archive tar"));

    let tar = f.work.path().join("docs.tar");
    cairn(&f).args(["dump", "latest", &dir, "--archive", "tar", "-o"]).arg(&tar).assert().success();
    // Unpacked by GNU tar, not by the library that wrote it.
    let x = f.work.path().join("x");
    fs::create_dir(&x).unwrap();
    let st = std::process::Command::new("tar").arg("-xf").arg(&tar).arg("-C").arg(&x).status().unwrap();
    assert!(st.success());
    assert_same_tree(&f.src.join("docs"), &x.join("docs"));
}

#[test]
fn find_and_ls_long_show_matching_entries() {
    let f = fixture();
    let out = cairn(&f).args(["find", "*.log"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("/logs/x.log") && text.contains("/top.log"), "{text}");
    assert!(!text.contains("a.txt"), "{text}");
    assert!(text.contains("2 match(es) in 1 snapshot(s)"), "{text}");

    let out = cairn(&f).args(["ls", "-l", "latest"]).arg(f.src.join("docs")).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.lines().any(|l| l.starts_with("-rw-r--r--") && l.ends_with("/docs/a.txt")), "{text}");
    assert!(text.lines().any(|l| l.starts_with("drwx") && l.ends_with("/docs/sub")), "{text}");
}

/// A storage that stops the process, as a kill would, at its `after`-th ranged read of 64 KiB
/// or more: the
/// restore reading through it unwinds at once and cleans nothing up.
#[derive(Debug)]
struct KilledAt {
    inner: std::sync::Arc<dyn cairn_engine::storage::Storage>,
    reads: std::sync::atomic::AtomicU64,
    after: u64,
}

impl cairn_engine::storage::Storage for KilledAt {
    fn location(&self) -> String {
        self.inner.location()
    }
    fn put(&self, name: &str, data: &[u8], mode: cairn_engine::storage::PutMode) -> cairn_engine::Result<()> {
        self.inner.put(name, data, mode)
    }
    fn get(&self, name: &str) -> cairn_engine::Result<Vec<u8>> {
        self.inner.get(name)
    }
    fn get_range(&self, name: &str, offset: u64, len: u64) -> cairn_engine::Result<Vec<u8>> {
        // Tree blobs are small: only reads of file contents count.
        if len >= 64 << 10 && self.reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1 == self.after {
            panic!("killed at ranged read {}", self.after);
        }
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

fn temp_files(root: &Path) -> Vec<PathBuf> {
    walk_files(root)
        .into_iter()
        .filter(|p| p.file_name().unwrap().as_encoded_bytes().starts_with(b".cairn-restore-"))
        .collect()
}

#[test]
fn a_killed_restore_leaves_no_wrong_file_under_a_final_name_and_its_rerun_cleans_up() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    tree(&src);
    // Small chunks and packs: big.bin spans many packs, so a restore killed midway has begun it.
    let chunker = cairn_engine::chunker::ChunkerParams { min_size: 64 << 10, avg_size: 128 << 10, max_size: 256 << 10 };
    let t = TestRepo::with_options(chunker, 256 << 10);
    let out = snapshot(&t.open(), &[&src]);
    let target = work.path().join("t");
    let killed = std::sync::Arc::new(KilledAt {
        inner: t.storage.clone(),
        reads: std::sync::atomic::AtomicU64::new(0),
        after: 3,
    });
    let secret =
        cairn_engine::keys::OpenSecret::Password(cairn_engine::crypto::SecretBytes::from(PASSWORD.to_string()));
    let repo = cairn_engine::Repository::open(killed.clone(), &secret, t.cache()).unwrap();
    let opts = RestoreOptions { target: target.clone(), ..RestoreOptions::default() };
    let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        restore(&repo, out.snapshot.tree, &opts, &NoProgress)
    }));
    assert!(run.is_err(), "the restore was killed");
    drop(repo);
    let restored = restored_path(&target, &src);
    assert!(!temp_files(&target).is_empty(), "the killed restore had files under way");
    for file in walk_files(&target).into_iter().filter(|p| !temp_files(&target).contains(p)) {
        let original = src.join(file.strip_prefix(&restored).unwrap());
        assert!(fs::read(&file).unwrap() == fs::read(&original).unwrap(), "{} has wrong content", file.display());
    }
    // The rerun of the report: files already there and newer are left alone, so any wrong
    // file under a final name would stay.
    let r = restore(
        &t.open(),
        out.snapshot.tree,
        &RestoreOptions { target: target.clone(), overwrite: Overwrite::IfNewer, ..RestoreOptions::default() },
        &NoProgress,
    )
    .unwrap();
    assert!(r.damaged.is_empty(), "{r:?}");
    assert!(temp_files(&target).is_empty(), "the rerun removes the temporary files");
    assert_same_tree(&src, &restored);
}

#[test]
fn blobs_missing_from_the_index_fail_only_their_files_and_the_cli_says_how_to_mend() {
    let f = fixture();
    let repo = f.t.open();
    let sub_tree = subtree(&repo, &f.out, &f.src.join("docs/sub"));
    let top = format!("{}/top.log", f.src.display());
    let cairn_engine::trees::Resolved::Node(_, node) =
        cairn_engine::trees::resolve(&repo, f.out.snapshot.tree, top.as_bytes()).unwrap()
    else {
        panic!("top.log resolves to the root")
    };
    let cairn_engine::format::tree::NodeKind::File { chunks, .. } = node.kind else { panic!("top.log is a file") };
    drop(repo);
    let mut ids: std::collections::HashSet<_> = chunks.into_iter().collect();
    ids.insert(sub_tree);
    f.t.drop_from_index(&ids);

    let target = f.work.path().join("t");
    let r = f.restore(&target, |_| {});
    let mut failed: Vec<_> = r.damaged.iter().map(|d| (d.path.clone(), d.not_indexed)).collect();
    failed.sort();
    assert_eq!(failed, [(f.at(&target).join("docs/sub"), true), (f.at(&target).join("top.log"), true)], "{r:?}");
    assert_eq!(r.files, 3, "everything else is restored: {r:?}");
    for rel in ["docs/a.txt", "docs/big.bin", "logs/x.log"] {
        assert!(fs::read(f.at(&target).join(rel)).unwrap() == fs::read(f.src.join(rel)).unwrap(), "{rel}");
    }
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode();
    assert_eq!(mode(&f.at(&target).join("docs")), mode(&f.src.join("docs")), "directories get their mode");
    assert!(!f.at(&target).join("top.log").exists());

    let out = cairn(&f).args(["restore", "latest", "--target"]).arg(f.work.path().join("t2")).assert().code(3);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert!(stderr.contains("top.log") && stderr.contains("docs/sub"), "{stderr}");
    assert!(stderr.contains("cairn check") && stderr.contains("cairn repair index"), "{stderr}");
}
