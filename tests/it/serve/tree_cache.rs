//! The client's copy of tree packs, seen from the server: once a client holds them, an
//! unchanged snapshot makes no ranged read at all (one per directory without them); a client
//! with an empty cache fetches whole packs, not one directory at a time; `check` still reads
//! the trees the server holds.

use crate::support::{assert_same_tree, restored_path, walk_files};

use super::hostile::raw;
use super::server::Served;

/// Ranged reads (206 answers) the server has made so far, from its `/metrics`.
fn ranged_reads(server: &Served) -> u64 {
    let (_, metrics) = raw(server, "GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n", b"");
    metrics
        .lines()
        .filter(|l| l.starts_with("cairn_server_requests_total{") && l.contains("status=\"206\""))
        .filter_map(|l| l.rsplit(' ').next()?.trim().parse::<u64>().ok())
        .sum()
}

#[test]
fn with_tree_packs_kept_an_unchanged_snapshot_reads_no_tree_and_check_reads_the_server() {
    let server = Served::local(&[("admin", &["main=admin"])], &[]);
    let work = tempfile::tempdir().unwrap();
    // Caches apart from the source's parents: a cache made next to it would change their
    // mtime, and the snapshot's trees with it.
    let caches = tempfile::tempdir().unwrap();
    let pw = caches.path().join("pw");
    std::fs::write(&pw, "tree cache password\n").unwrap();
    let src = work.path().join("src");
    for d in 0..60 {
        let dir = src.join(format!("d{d}/e{}", d % 7));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("f"), format!("file {d}")).unwrap();
    }
    let run = |cache: &str, args: &[&str]| {
        let out = server.cairn_as("admin", "main", &caches.path().join(cache), &pw).args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let kept = |cache: &str| -> std::collections::BTreeSet<std::ffi::OsString> {
        walk_files(&caches.path().join(cache))
            .into_iter()
            .filter(|p| p.parent().is_some_and(|d| d.ends_with("trees")))
            .filter_map(|p| p.file_name().map(|n| n.to_os_string()))
            .collect()
    };
    let copies = |cache: &str| kept(cache).len();
    let src_arg = src.to_str().unwrap();
    run("a", &["init", "--no-recovery-code", "--kdf-memory", "8192", "--kdf-iterations", "1"]);
    run("a", &["snapshot", src_arg]);
    assert!(copies("a") >= 1, "the tree packs written are kept");

    let before = ranged_reads(&server);
    run("a", &["snapshot", src_arg]);
    assert_eq!(ranged_reads(&server), before, "an unchanged snapshot reads its parent's trees from the copy");

    // Another client: the parent's trees come as whole packs, kept for next time.
    run("b", &["snapshot", src_arg]);
    assert_eq!(ranged_reads(&server), before, "whole packs, not a read per directory");
    // Every pack a kept, b fetched whole and kept. (b may hold one more: the snapshot's root
    // records the metadata of /tmp, which parallel tests change at any time.)
    assert!(kept("b").is_superset(&kept("a")), "b holds a's tree packs: {:?} / {:?}", kept("b"), kept("a"));

    // check verifies what the server holds: it reads the trees from it.
    run("b", &["check"]);
    assert!(ranged_reads(&server) >= before + 60, "check read {} trees", ranged_reads(&server) - before);

    let target = caches.path().join("restored");
    run("b", &["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_same_tree(&src, &restored_path(&target, &src));
}
