//! Acceptance 5: one flipped byte in a pack, an index segment, a snapshot or the keyring makes
//! the operation that reads it fail, naming the object; restore never writes wrong bytes.

use std::fs;
use std::path::{Path, PathBuf};

use cairn_engine::format::tree::NodeKind;
use cairn_engine::{Error, Repository};

use crate::support::*;

fn flip(path: &Path, offset: u64) {
    let mut bytes = fs::read(path).unwrap();
    let i = usize::try_from(offset).unwrap().min(bytes.len() - 1);
    bytes[i] ^= 0x01;
    fs::write(path, bytes).unwrap();
}

fn only(dir: &Path) -> PathBuf {
    let files = walk_files(dir);
    assert_eq!(files.len(), 1, "{files:?}");
    files.into_iter().next().unwrap()
}

struct Fixture {
    work: tempfile::TempDir,
    t: TestRepo,
    src: PathBuf,
    out: cairn_engine::backup::BackupOutcome,
}

fn fixture() -> Fixture {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("data"), random_bytes(3 << 20, 5)).unwrap();
    fs::write(src.join("notes"), text_bytes(100_000, 6)).unwrap();
    let t = TestRepo::new();
    let out = snapshot(&t.open(), &[&src]);
    Fixture { work, t, src, out }
}

fn fresh_open(f: &Fixture) -> cairn_engine::Result<Repository> {
    let _ = fs::remove_dir_all(f.t.cache());
    f.t.open_with(&cairn_engine::keys::OpenSecret::Password(cairn_engine::crypto::SecretBytes::from(
        PASSWORD.to_string(),
    )))
}

fn assert_names(err: &Error, object: &str) {
    let msg = err.to_string();
    assert!(matches!(err, Error::Corrupt { .. }), "expected Corrupt, got {err:?}");
    assert!(msg.contains(object), "error {msg:?} does not name {object}");
}

#[test]
fn flipped_byte_in_a_pack_fails_restore_and_leaves_no_wrong_file() {
    let f = fixture();
    let repo = f.t.open();
    let path = format!("{}/data", f.src.display());
    let cairn_engine::trees::Resolved::Node(_, node) =
        cairn_engine::trees::resolve(&repo, f.out.snapshot.tree, path.as_bytes()).unwrap()
    else {
        panic!()
    };
    let NodeKind::File { chunks, .. } = &node.kind else { panic!() };
    // Cut points follow the repository's random chunker key: 3 MiB may be one chunk or
    // several (a CI run got one), so take the middle one, whatever the count.
    let loc = repo.locate(&chunks[chunks.len() / 2]).unwrap();
    let pack_name = cairn_engine::repo::pack_name(&loc.pack);
    flip(&f.t.repo_path().join(&pack_name), u64::from(loc.offset) + 100);
    let target = f.work.path().join("out");
    let r = restore_all(&repo, &f.out, &target).unwrap();
    assert_eq!(r.damaged.len(), 1, "{r:?}");
    assert!(r.damaged[0].path.ends_with("data"), "{r:?}");
    assert!(r.damaged[0].message.contains(&pack_name), "{} does not name {pack_name}", r.damaged[0].message);
    let restored = restored_path(&target, &f.src);
    assert!(!restored.join("data").exists(), "a damaged file must not be left behind");
    // The undamaged file is restored all the same.
    assert!(fs::read(restored.join("notes")).unwrap() == fs::read(f.src.join("notes")).unwrap());
}

#[test]
fn flipped_byte_in_an_index_segment_is_reported_not_trusted() {
    let f = fixture();
    let seg = only(&f.t.repo_path().join("index"));
    flip(&seg, 40);
    // The repository still opens (check and repair must), and says which segment it skipped.
    let repo = fresh_open(&f).unwrap();
    let name = format!("index/{}", seg.file_name().unwrap().to_str().unwrap());
    let problems = repo.index_problems();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].contains(&name) && problems[0].contains("damaged"), "{problems:?}");
    // Nothing the segment listed is trusted: the snapshot's trees are not found.
    let err = restore_all(&repo, &f.out, &f.work.path().join("out")).unwrap_err();
    assert!(matches!(err, Error::NotIndexed(_)), "{err:?}");
}

#[test]
fn flipped_byte_in_a_snapshot_fails_listing() {
    let f = fixture();
    let snap = only(&f.t.repo_path().join("snapshots"));
    flip(&snap, 50);
    let repo = f.t.open();
    let err = repo.snapshots().unwrap_err();
    assert_names(&err, &format!("snapshots/{}", f.out.snapshot_id));
}

#[test]
fn flipped_byte_in_the_keyring_fails_open() {
    let f = fixture();
    let ring = only(&f.t.repo_path().join("keyring"));
    flip(&ring, 45);
    let err = fresh_open(&f).unwrap_err();
    assert_names(&err, &format!("keyring/{}", ring.file_name().unwrap().to_str().unwrap()));
}

#[test]
fn flipped_byte_in_the_config_fails_open() {
    let f = fixture();
    flip(&f.t.repo_path().join("config"), 60);
    let err = fresh_open(&f).unwrap_err();
    assert_names(&err, "config");
}

/// The pack files holding the content of `file` in the fixture's snapshot.
fn data_packs(f: &Fixture, repo: &Repository, file: &str) -> Vec<PathBuf> {
    let path = format!("{}/{file}", f.src.display());
    let cairn_engine::trees::Resolved::Node(_, node) =
        cairn_engine::trees::resolve(repo, f.out.snapshot.tree, path.as_bytes()).unwrap()
    else {
        panic!()
    };
    let NodeKind::File { chunks, .. } = &node.kind else { panic!() };
    let mut packs: Vec<PathBuf> = chunks
        .iter()
        .map(|c| f.t.repo_path().join(cairn_engine::repo::pack_name(&repo.locate(c).unwrap().pack)))
        .collect();
    packs.sort();
    packs.dedup();
    packs
}

#[test]
fn truncated_pack_fails_restore() {
    let f = fixture();
    let repo = f.t.open();
    let mut packs = data_packs(&f, &repo, "data");
    packs.extend(data_packs(&f, &repo, "notes"));
    packs.sort();
    packs.dedup();
    for p in &packs {
        let bytes = fs::read(p).unwrap();
        fs::write(p, &bytes[..bytes.len() / 2]).unwrap();
    }
    let target = f.work.path().join("out");
    let r = restore_all(&repo, &f.out, &target).unwrap();
    assert_eq!(r.damaged.len(), 2, "{r:?}");
    assert!(r.damaged.iter().all(|d| d.message.contains("data/")), "{r:?}");
    assert!(walk_files(&target).is_empty(), "no file with wrong content is left behind");
}

#[test]
fn a_damaged_tree_fails_the_directory_it_lists_naming_its_pack() {
    let f = fixture();
    let repo = f.t.open();
    let data: Vec<PathBuf> = [data_packs(&f, &repo, "data"), data_packs(&f, &repo, "notes")].concat();
    let tree_packs: Vec<PathBuf> =
        walk_files(&f.t.repo_path().join("data")).into_iter().filter(|p| !data.contains(p)).collect();
    assert_eq!(tree_packs.len(), 1, "{tree_packs:?}");
    // The tree of the source directory (where in the pack depends on how the writer's
    // threads interleaved: locate it).
    let path = f.src.display().to_string();
    let cairn_engine::trees::Resolved::Node(_, node) =
        cairn_engine::trees::resolve(&repo, f.out.snapshot.tree, path.as_bytes()).unwrap()
    else {
        panic!()
    };
    let NodeKind::Dir { subtree } = node.kind else { panic!("{node:?}") };
    let loc = repo.locate(&subtree).unwrap();
    flip(&tree_packs[0], u64::from(loc.offset) + 10);
    let target = f.work.path().join("out");
    let r = restore_all(&repo, &f.out, &target).unwrap();
    let name = tree_packs[0].strip_prefix(f.t.repo_path()).unwrap().to_str().unwrap().to_string();
    assert_eq!(r.damaged.len(), 1, "{r:?}");
    assert_eq!(r.damaged[0].path, restored_path(&target, &f.src), "{r:?}");
    assert!(r.damaged[0].message.contains(&name), "{} does not name {name}", r.damaged[0].message);
    assert!(walk_files(&target).is_empty(), "nothing below it is restored");
}
