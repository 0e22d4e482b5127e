//! Issue 4, acceptance 1: damaged repositories made by the tests; `check` reports each damage,
//! naming the object and the snapshots and paths it affects.

use std::fs;
use std::path::{Path, PathBuf};

use cairn_engine::check::{CheckOptions, CheckReport, Finding, Severity, Subset, check};
use cairn_engine::format::tree::NodeKind;
use cairn_engine::{NoProgress, ObjectId, Repository};

use crate::support::*;

struct Fixture {
    _work: tempfile::TempDir,
    t: TestRepo,
    src: PathBuf,
    first: ObjectId,
    second: ObjectId,
}

/// Two snapshots: `both` in each, `later` only in the second.
fn fixture() -> Fixture {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    fs::create_dir_all(src.join("sub")).unwrap();
    fs::write(src.join("sub/both"), random_bytes(2 << 20, 1)).unwrap();
    let t = TestRepo::new();
    let repo = t.open();
    let first = snapshot(&repo, &[&src]).snapshot_id;
    fs::write(src.join("later"), random_bytes(1 << 20, 2)).unwrap();
    let second = snapshot(&repo, &[&src]).snapshot_id;
    Fixture { _work: work, t, src, first, second }
}

impl Fixture {
    /// A fresh client (no cache) checking with `read_data`.
    fn check(&self, read_data: bool) -> CheckReport {
        let _ = fs::remove_dir_all(self.t.cache());
        let repo = self.t.open();
        check(&repo, &CheckOptions { read_data: read_data.then_some(Subset::All) }, &NoProgress).unwrap()
    }

    /// The pack file holding the first chunk of `file`.
    fn pack_of(&self, repo: &Repository, file: &str) -> PathBuf {
        self.blob_of(repo, file).0
    }

    /// The pack file and offset of the first chunk of `file` (of its tree, for a directory).
    fn blob_of(&self, repo: &Repository, file: &str) -> (PathBuf, usize) {
        let path = format!("{}/{file}", self.src.display());
        let tree = repo.load_snapshot(&self.second).unwrap().tree;
        let cairn_engine::trees::Resolved::Node(_, node) =
            cairn_engine::trees::resolve(repo, tree, path.as_bytes()).unwrap()
        else {
            panic!()
        };
        let chunk = match &node.kind {
            NodeKind::File { chunks, .. } => chunks[0],
            NodeKind::Dir { subtree } => *subtree,
            other => panic!("{other:?}"),
        };
        let loc = repo.locate(&chunk).unwrap();
        (self.t.repo_path().join(cairn_engine::repo::pack_name(&loc.pack)), loc.offset as usize)
    }

    fn name(&self, path: &Path) -> String {
        path.strip_prefix(self.t.repo_path()).unwrap().to_str().unwrap().to_string()
    }
}

fn flip(path: &Path, offset: usize) {
    let mut bytes = fs::read(path).unwrap();
    let i = offset.min(bytes.len() - 1);
    bytes[i] ^= 0x01;
    fs::write(path, bytes).unwrap();
}

/// The error finding about `object` that names `snapshots` and a path ending in `path_end`.
fn assert_reported(r: &CheckReport, object: &str, snapshots: &[ObjectId], path_end: &str) {
    assert!(r.has_errors());
    let hit: Option<&Finding> = r.findings.iter().find(|f| {
        f.severity == Severity::Error
            && f.object.contains(object)
            && snapshots.iter().all(|s| f.snapshots.contains(s))
            && f.paths.iter().any(|p| p.ends_with(path_end))
    });
    assert!(
        hit.is_some(),
        "no finding names {object} with {snapshots:?} and a path ending {path_end}: {:#?}",
        r.findings
    );
}

#[test]
fn an_intact_repository_checks_clean() {
    let f = fixture();
    let r = f.check(true);
    assert!(r.findings.is_empty(), "{:#?}", r.findings);
    assert_eq!(r.snapshots, 2);
    assert!(r.packs_read >= 2 && r.blobs_read >= 4, "{r:?}");
}

#[test]
fn a_missing_pack_names_the_snapshots_and_files_it_breaks() {
    let f = fixture();
    let pack = f.pack_of(&f.t.open(), "sub/both");
    fs::remove_file(&pack).unwrap();
    let r = f.check(false);
    assert_reported(&r, &f.name(&pack), &[f.first, f.second], "/sub/both");
}

#[test]
fn a_flipped_byte_in_a_data_pack_is_found_by_read_data() {
    let f = fixture();
    let pack = f.pack_of(&f.t.open(), "later");
    flip(&pack, 100);
    assert!(!f.check(false).has_errors(), "the structure is intact");
    let r = f.check(true);
    assert_reported(&r, &f.name(&pack), &[f.second], "/later");
    assert!(!r.findings.iter().any(|x| x.snapshots.contains(&f.first)), "the first snapshot has no `later`");
}

#[test]
fn a_flipped_byte_in_a_tree_pack_breaks_the_trees_below() {
    let f = fixture();
    // The tree of `sub`, which both snapshots share.
    let (pack, offset) = f.blob_of(&f.t.open(), "sub");
    flip(&pack, offset + 40);
    let r = f.check(false);
    assert!(r.has_errors());
    let hit = r.findings.iter().find(|x| x.problem.contains(&f.name(&pack)));
    let hit = hit.unwrap_or_else(|| panic!("{:#?}", r.findings));
    assert_eq!(hit.snapshots.len(), 2, "{hit:?}");
    assert!(hit.paths.iter().all(|p| p.ends_with("/sub")), "{hit:?}");
}

#[test]
fn a_truncated_pack_is_reported_by_size() {
    let f = fixture();
    let pack = f.pack_of(&f.t.open(), "sub/both");
    let bytes = fs::read(&pack).unwrap();
    fs::write(&pack, &bytes[..bytes.len() / 2]).unwrap();
    let r = f.check(false);
    assert!(r.findings.iter().any(|x| x.object == f.name(&pack) && x.problem.contains("bytes, the index says")));
    assert_reported(&r, &f.name(&pack), &[f.first, f.second], "/sub/both");
}

#[test]
fn a_damaged_or_deleted_index_segment_is_reported() {
    let f = fixture();
    let mut segments = walk_files(&f.t.repo_path().join("index"));
    segments.sort();
    flip(&segments[0], 50);
    let r = f.check(false);
    assert!(r.findings.iter().any(|x| x.object == f.name(&segments[0]) && x.severity == Severity::Error));
    let f = fixture();
    for s in walk_files(&f.t.repo_path().join("index")) {
        fs::remove_file(s).unwrap();
    }
    let r = f.check(false);
    for snap in [f.first, f.second] {
        assert!(
            r.findings.iter().any(|x| x.problem.contains("not in the index") && x.snapshots.contains(&snap)),
            "{snap:?} not named: {:#?}",
            r.findings
        );
    }
    assert!(
        r.findings.iter().any(|x| x.severity == Severity::Notice && x.problem.contains("no index")),
        "orphan packs"
    );
}

#[test]
fn a_flipped_or_swapped_snapshot_is_named() {
    let f = fixture();
    let first = f.t.repo_path().join(format!("snapshots/{}", f.first));
    let second = f.t.repo_path().join(format!("snapshots/{}", f.second));
    flip(&first, 40);
    let r = f.check(false);
    assert!(r.findings.iter().any(|x| x.object == format!("snapshots/{}", f.first)), "{:#?}", r.findings);
    // Storage puts one snapshot's bytes under another's name: the name is bound, it fails.
    let f2 = fixture();
    let a = f2.t.repo_path().join(format!("snapshots/{}", f2.first));
    let b = f2.t.repo_path().join(format!("snapshots/{}", f2.second));
    fs::copy(&b, &a).unwrap();
    let r = f2.check(false);
    assert!(r.findings.iter().any(|x| x.object == format!("snapshots/{}", f2.first)), "{:#?}", r.findings);
    let _ = second;
}

#[test]
fn repair_index_rebuilds_a_lost_or_damaged_index_from_the_packs() {
    use cairn_engine::repair::repair_index;
    let f = fixture();
    let mut segments = walk_files(&f.t.repo_path().join("index"));
    segments.sort();
    flip(&segments[0], 50);
    fs::remove_file(&segments[1]).unwrap();
    assert!(f.check(false).has_errors());
    let repo = f.t.open();
    let out = repair_index(&repo, &NoProgress).unwrap();
    assert!(out.unreadable.is_empty(), "{out:?}");
    assert!(out.packs >= 2 && out.segments_deleted == segments.len() as u64 - 1, "{out:?}");
    let r = f.check(true);
    assert!(r.findings.is_empty(), "{:#?}", r.findings);
    // Both snapshots restore exactly.
    let repo = f.t.open();
    for id in [f.first, f.second] {
        let target = f._work.path().join(format!("out-{}", &id.to_hex()[..6]));
        let tree = repo.load_snapshot(&id).unwrap().tree;
        let opts = cairn_engine::restore::RestoreOptions { target: target.clone(), ..Default::default() };
        let r = cairn_engine::restore::restore(&repo, tree, &opts, &NoProgress).unwrap();
        assert!(r.damaged.is_empty(), "{r:?}");
    }
    assert_same_tree(&f.src, &restored_path(&f._work.path().join(format!("out-{}", &f.second.to_hex()[..6])), &f.src));
    // A pack whose header is damaged is reported and left out, not trusted.
    let pack = f.pack_of(&repo, "later");
    let len = fs::metadata(&pack).unwrap().len() as usize;
    flip(&pack, len - 10);
    let out = repair_index(&repo, &NoProgress).unwrap();
    assert_eq!(out.unreadable.len(), 1, "{out:?}");
    assert!(out.unreadable[0].0.ends_with(pack.file_name().unwrap().to_str().unwrap()));
    let r = f.check(false);
    assert!(
        r.findings.iter().any(|x| x.problem == "not in the index"
            && x.snapshots == [f.second]
            && x.paths.iter().any(|p| p.ends_with("/later"))),
        "{:#?}",
        r.findings
    );
}

#[test]
fn repair_snapshots_keeps_what_is_intact_and_marks_what_is_lost() {
    use cairn_engine::repair::repair_snapshots;
    let f = fixture();
    let repo = f.t.open();
    // The data of `later` (only in the second snapshot) is lost. The procedure: the index is
    // rebuilt from the packs that exist, then the snapshots around what is gone.
    fs::remove_file(f.pack_of(&repo, "later")).unwrap();
    cairn_engine::repair::repair_index(&repo, &NoProgress).unwrap();
    let out = repair_snapshots(&repo, &cairn_engine::audit::Actor { host: "h".into(), user: "u".into() }, &NoProgress)
        .unwrap();
    assert_eq!(out.snapshots, 2);
    assert_eq!(out.repaired.len(), 1, "{out:?}");
    let fixed = &out.repaired[0];
    assert_eq!(fixed.old, f.second);
    assert_eq!(fixed.replaced.len(), 1);
    assert!(fixed.replaced[0].ends_with("/later"), "{fixed:?}");
    let ids = repo.snapshot_ids().unwrap();
    assert!(ids.contains(&f.first) && ids.contains(&fixed.new) && !ids.contains(&f.second));
    let snap = repo.load_snapshot(&fixed.new).unwrap();
    assert!(snap.tags.contains(&"repaired".to_string()));
    assert_eq!(snap.parent, Some(f.second));
    // The repaired snapshot checks clean and restores what is intact, with a marker for the rest.
    let r = f.check(false);
    assert!(!r.has_errors(), "{:#?}", r.findings);
    let target = f._work.path().join("out");
    let opts = cairn_engine::restore::RestoreOptions { target: target.clone(), ..Default::default() };
    let rr = cairn_engine::restore::restore(&repo, snap.tree, &opts, &NoProgress).unwrap();
    assert!(rr.damaged.is_empty(), "{rr:?}");
    let restored = restored_path(&target, &f.src);
    assert!(fs::read(restored.join("sub/both")).unwrap() == fs::read(f.src.join("sub/both")).unwrap());
    assert!(!restored.join("later").exists());
    assert_eq!(fs::read(restored.join("later.cairn-damaged")).unwrap(), b"");
    // Nothing more to do.
    assert!(
        repair_snapshots(&repo, &cairn_engine::audit::Actor { host: "h".into(), user: "u".into() }, &NoProgress)
            .unwrap()
            .repaired
            .is_empty()
    );
}

#[test]
fn every_copy_of_a_blob_stored_twice_is_read_and_restore_falls_back_to_an_intact_one() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("data"), random_bytes(2 << 20, 7)).unwrap();
    fs::write(src.join("note"), b"a note").unwrap();
    let t = TestRepo::new();
    // Two backups at once: neither client's index knows what the other is storing, so each
    // stores every blob.
    let (a, b) = (t.open(), t.open());
    snapshot(&a, &[&src]);
    let second = snapshot(&b, &[&src]);
    drop((a, b));
    // Damage the copy a fresh client's index names.
    let _ = fs::remove_dir_all(t.cache());
    let repo = t.open();
    let path = format!("{}/data", src.display());
    let cairn_engine::trees::Resolved::Node(_, node) =
        cairn_engine::trees::resolve(&repo, second.snapshot.tree, path.as_bytes()).unwrap()
    else {
        panic!("data resolves to the root")
    };
    let NodeKind::File { chunks, .. } = &node.kind else { panic!("data is a file") };
    let loc = repo.locate(&chunks[0]).unwrap();
    let name = cairn_engine::repo::pack_name(&loc.pack);
    flip(&t.repo_path().join(&name), loc.offset as usize + 40);
    drop(repo);

    let _ = fs::remove_dir_all(t.cache());
    let repo = t.open();
    let r = check(&repo, &CheckOptions { read_data: Some(Subset::All) }, &NoProgress).unwrap();
    let damaged: Vec<&Finding> = r.findings.iter().filter(|f| f.severity == Severity::Error).collect();
    assert!(
        damaged.iter().all(|f| f.object == name) && damaged.iter().any(|f| f.problem.contains("another pack")),
        "the damaged copy is named: {:#?}",
        r.findings
    );
    assert!(
        r.findings.iter().all(|f| f.snapshots.is_empty()),
        "an intact copy remains: nothing is lost: {:#?}",
        r.findings
    );
    assert!(
        r.findings.iter().any(|f| f.severity == Severity::Notice && f.problem.contains("more than one pack")),
        "duplicates are reported: {:#?}",
        r.findings
    );
    let target = work.path().join("t");
    let out = restore_all(&repo, &second, &target).unwrap();
    assert!(out.damaged.is_empty(), "restore reads the intact copy: {out:?}");
    assert_same_tree(&src, &restored_path(&target, &src));
}
