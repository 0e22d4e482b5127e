//! Issue 3, acceptance 2: a re-snapshot of an unchanged tree reads no file contents, and after
//! touching 10 files it reads exactly those 10. Reads are counted by the engine's summary
//! (`bytes_read` is what was read from source files, `files_*` classify every file).

use std::fs;
use std::path::Path;

use cairn_engine::NoProgress;
use cairn_engine::backup::{BackupOptions, ParentChoice, backup};

use crate::support::*;

const FILES: usize = 100_000;

/// `FILES` small files in 1,000 directories of 100.
fn many_files(root: &Path) {
    for d in 0..FILES / 100 {
        let dir = root.join(format!("dir-{d:04}"));
        fs::create_dir_all(&dir).unwrap();
        for f in 0..100 {
            fs::write(dir.join(format!("file-{f:03}")), format!("file {d}/{f}\n").repeat(1 + f % 7)).unwrap();
        }
    }
}

#[test]
fn unchanged_files_are_not_read_and_touched_ones_are() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    many_files(&src);
    let t = TestRepo::new();
    let repo = t.open();

    let first = snapshot(&repo, &[&src]);
    assert_eq!(first.snapshot.summary.files_new as usize, FILES);
    assert_eq!(first.snapshot.parent, None);

    let second = snapshot(&repo, &[&src]);
    let s = &second.snapshot.summary;
    assert_eq!(second.snapshot.parent, Some(first.snapshot_id), "the latest snapshot of the same paths is the parent");
    assert_eq!((s.files_new, s.files_changed, s.files_unchanged), (0, 0, FILES as u64));
    assert_eq!(s.bytes_read, 0, "an unchanged tree reads no file contents");
    assert_eq!(s.bytes_total, first.snapshot.summary.bytes_total);
    assert_eq!(
        subtree(&repo, &first, &src),
        subtree(&repo, &second, &src),
        "an unchanged directory gives the same tree blob"
    );

    // Touch 10 files (new content and mtime).
    let mut touched_bytes = 0u64;
    for i in 0..10 {
        let p = src.join(format!("dir-{:04}/file-{:03}", i * 97, i));
        let content = format!("changed {i}\n");
        touched_bytes += content.len() as u64;
        fs::write(&p, content).unwrap();
    }
    let third = snapshot(&repo, &[&src]);
    let s = &third.snapshot.summary;
    assert_eq!((s.files_new, s.files_changed, s.files_unchanged), (0, 10, FILES as u64 - 10));
    assert_eq!(s.bytes_read, touched_bytes, "only the touched files are read");

    // The incremental snapshot restores the new content, and the old one the old.
    let target = work.path().join("restored");
    restore_all(&repo, &third, &target).unwrap();
    assert_same_tree(&src, &restored_path(&target, &src));
}

#[test]
fn force_rereads_and_an_explicit_parent_is_used() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("a"), random_bytes(100_000, 1)).unwrap();
    fs::write(src.join("b"), random_bytes(1000, 2)).unwrap();
    let t = TestRepo::new();
    let repo = t.open();
    let first = snapshot(&repo, &[&src]);
    let opts = |parent| BackupOptions {
        paths: vec![src.clone()],
        hostname: "test-host".into(),
        parent,
        ..BackupOptions::default()
    };
    let forced = backup(&repo, &opts(ParentChoice::None), &NoProgress).unwrap();
    assert_eq!(forced.snapshot.summary.bytes_read, 101_000, "--force reads everything");
    assert_eq!(forced.snapshot.parent, None);
    assert_eq!(subtree(&repo, &forced, &src), subtree(&repo, &first, &src));
    let explicit = backup(&repo, &opts(ParentChoice::Snapshot(first.snapshot_id)), &NoProgress).unwrap();
    assert_eq!(explicit.snapshot.parent, Some(first.snapshot_id));
    assert_eq!(explicit.snapshot.summary.bytes_read, 0);
    // Another host's snapshot is never an automatic parent.
    let other = BackupOptions { hostname: "other-host".into(), ..opts(ParentChoice::Auto) };
    let out = backup(&repo, &other, &NoProgress).unwrap();
    assert_eq!(out.snapshot.parent, None);
    assert_eq!(out.snapshot.summary.bytes_read, 101_000);
}

#[test]
fn a_parent_whose_chunks_are_gone_from_the_index_is_not_trusted() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("a"), random_bytes(50_000, 3)).unwrap();
    let t = TestRepo::new();
    let first = snapshot(&t.open(), &[&src]);
    // Lose every index segment (as after a broken prune) and the cache: the parent's chunk
    // lists now point at blobs the index does not know, so the file must be read again.
    for name in t.storage.list("index/").unwrap() {
        t.storage.delete(&name).unwrap();
    }
    fs::remove_dir_all(t.cache()).unwrap();
    let repo = t.open();
    let second = snapshot(&repo, &[&src]);
    assert_eq!(second.snapshot.parent, Some(first.snapshot_id));
    assert_eq!(second.snapshot.summary.bytes_read, 50_000);
    let target = work.path().join("restored");
    restore_all(&repo, &second, &target).unwrap();
    assert_same_tree(&src, &restored_path(&target, &src));
}

#[test]
fn symlinks_and_directories_whose_atime_moved_keep_their_tree() {
    use std::os::unix::fs::MetadataExt;
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    fs::create_dir_all(src.join("sub")).unwrap();
    fs::write(src.join("sub/f"), b"f").unwrap();
    std::os::unix::fs::symlink("sub/f", src.join("link")).unwrap();
    let t = TestRepo::new();
    let repo = t.open();
    let atime = || fs::symlink_metadata(src.join("link")).unwrap().atime_nsec();
    let before = atime();
    let first = snapshot(&repo, &[&src]);
    // Reading the link (as the first snapshot did) moves its atime under relatime, not its ctime.
    let _ = fs::read_link(src.join("link")).unwrap();
    let after = atime();
    let second = snapshot(&repo, &[&src]);
    assert_eq!(
        subtree(&repo, &first, &src),
        subtree(&repo, &second, &src),
        "the same tree blob (symlink atime {before} -> {after})"
    );
    // A real change to the link is seen: replaced with another target.
    fs::remove_file(src.join("link")).unwrap();
    std::os::unix::fs::symlink("elsewhere", src.join("link")).unwrap();
    let third = snapshot(&repo, &[&src]);
    assert_ne!(subtree(&repo, &second, &src), subtree(&repo, &third, &src));
    let target = work.path().join("restored");
    restore_all(&repo, &third, &target).unwrap();
    assert_eq!(fs::read_link(restored_path(&target, &src).join("link")).unwrap(), Path::new("elsewhere"));
}
