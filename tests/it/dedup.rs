//! Acceptance 2: unchanged data adds (almost) nothing; a 1-byte insertion adds a few chunks.

use std::fs;

use crate::support::*;

#[test]
fn second_snapshot_of_an_unchanged_tree_adds_under_one_percent() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    fs::create_dir_all(&src).unwrap();
    for i in 0..20 {
        fs::write(src.join(format!("f{i}")), random_bytes(1 << 20, i)).unwrap();
    }
    fs::write(src.join("text"), text_bytes(10 << 20, 3)).unwrap();
    let t = TestRepo::new();
    let repo = t.open();
    let first = snapshot(&repo, &[&src]);
    let before = t.size();
    let second = snapshot(&repo, &[&src]);
    let added = t.size() - before;
    let total = first.snapshot.summary.bytes_total;
    assert!(added * 100 < total, "second snapshot added {added} bytes for {total} bytes of data");
    // The source's own tree is identical; only ancestors outside it (/tmp changes all the
    // time) may get new tree blobs.
    let subtree = |out: &cairn_engine::backup::BackupOutcome| {
        let p = src.as_os_str().to_str().unwrap().as_bytes().to_vec();
        match cairn_engine::trees::resolve(&repo, out.snapshot.tree, &p).unwrap() {
            cairn_engine::trees::Resolved::Node(_, n) => n,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(subtree(&first), subtree(&second));
    assert!(second.snapshot.summary.blobs_added <= 3, "{} blobs added", second.snapshot.summary.blobs_added);
}

#[test]
fn inserting_one_byte_at_the_start_adds_only_a_few_chunks() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    fs::create_dir_all(&src).unwrap();
    let data = random_bytes(50 << 20, 42);
    fs::write(src.join("big"), &data).unwrap();
    let t = TestRepo::new();
    let repo = t.open();
    let first = snapshot(&repo, &[&src]);
    let chunks = first.snapshot.summary.blobs_added;
    assert!(chunks >= 20, "50 MiB should make dozens of chunks, got {chunks}");
    let mut shifted = vec![0x5a];
    shifted.extend_from_slice(&data);
    fs::write(src.join("big"), &shifted).unwrap();
    let before = t.size();
    let second = snapshot(&repo, &[&src]);
    let added_blobs = second.snapshot.summary.blobs_added;
    let added_bytes = t.size() - before;
    // One new data chunk (the first) plus the changed trees.
    assert!(added_blobs <= 6, "{added_blobs} blobs added");
    assert!(added_bytes < 10 << 20, "{added_bytes} bytes added for a 1-byte insertion");
}
