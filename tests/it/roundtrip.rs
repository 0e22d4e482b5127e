//! Acceptance 1: a tree of real and generated files restores byte for byte, with modes,
//! mtimes, symlinks (dangling too), empty directories and non-UTF-8 names.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::support::*;

fn generated_tree(root: &Path) {
    fs::create_dir_all(root.join("gen/empty-dir")).unwrap();
    let g = root.join("gen");
    fs::write(g.join("empty"), b"").unwrap();
    fs::write(g.join("one-byte"), b"x").unwrap();
    for (name, size) in [
        ("min-1", 512 * 1024 - 1),
        ("min", 512 * 1024),
        ("min+1", 512 * 1024 + 1),
        ("avg-1", 1024 * 1024 - 1),
        ("avg+1", 1024 * 1024 + 1),
        ("max-1", 8 * 1024 * 1024 - 1),
        ("max", 8 * 1024 * 1024),
        ("max+1", 8 * 1024 * 1024 + 1),
    ] {
        fs::write(g.join(name), random_bytes(size, size as u64)).unwrap();
    }
    fs::write(g.join("random-50m"), random_bytes(50 << 20, 1)).unwrap();
    fs::write(g.join("text-50m"), text_bytes(50 << 20, 2)).unwrap();
    fs::write(g.join(non_utf8_name(1)), b"name is not utf-8").unwrap();
    fs::create_dir(g.join(non_utf8_name(2))).unwrap();
    fs::write(g.join(non_utf8_name(2)).join("inner"), b"inside a non-utf-8 dir").unwrap();
    let mut deep = g.join("deep");
    for i in 0..40 {
        deep = deep.join(format!("level-{i}"));
    }
    fs::create_dir_all(&deep).unwrap();
    fs::write(deep.join("bottom.txt"), b"deep file").unwrap();
    std::os::unix::fs::symlink("one-byte", g.join("link-to-file")).unwrap();
    std::os::unix::fs::symlink("does/not/exist", g.join("dangling")).unwrap();
    std::os::unix::fs::symlink("/etc", g.join("absolute-link")).unwrap();
    let exec = g.join("script.sh");
    fs::write(&exec, b"#!/bin/sh\necho hi\n").unwrap();
    fs::set_permissions(&exec, fs::Permissions::from_mode(0o750)).unwrap();
    let private = g.join("private");
    fs::write(&private, b"secret").unwrap();
    fs::set_permissions(&private, fs::Permissions::from_mode(0o600)).unwrap();
    // An odd mtime with nanoseconds set.
    let f = fs::File::options().write(true).open(g.join("one-byte")).unwrap();
    let t = std::time::UNIX_EPOCH + std::time::Duration::new(1_234_567_890, 123_456_789);
    f.set_times(fs::FileTimes::new().set_modified(t)).unwrap();
}

#[test]
fn real_and_generated_tree_round_trips_byte_for_byte() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    let copied = copy_real_files(Path::new("/usr/include"), &src.join("include"), 2500)
        + copy_real_files(Path::new("/usr/share/doc"), &src.join("doc"), 1000);
    assert!(copied >= 1500, "only {copied} real files copied");
    generated_tree(&src);

    let t = TestRepo::new();
    let repo = t.open();
    let out = snapshot(&repo, &[&src]);
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    assert!(out.snapshot.summary.files_new as usize >= copied);

    let target = work.path().join("restored");
    let r = restore_all(&repo, &out, &target).unwrap();
    assert!(r.files as usize >= copied);
    assert_same_tree(&src, &restored_path(&target, &src));
}

#[test]
fn restore_of_a_subpath_and_a_reopened_repository() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    fs::create_dir_all(src.join("a/b")).unwrap();
    fs::write(src.join("a/b/file"), b"content of a/b/file").unwrap();
    fs::write(src.join("top"), b"top").unwrap();
    let t = TestRepo::new();
    let out = snapshot(&t.open(), &[&src]);
    // A fresh process: reopen, with the cache deleted.
    fs::remove_dir_all(t.cache()).unwrap();
    let repo = t.open();
    let (id, snap) = repo.find_snapshot("latest").unwrap();
    assert_eq!(id, out.snapshot_id);
    assert_eq!(repo.find_snapshot(&id.to_hex()[..8]).unwrap().0, id);
    let sub = format!("{}/a", src.display());
    let target = work.path().join("part");
    let opts = cairn_engine::restore::RestoreOptions {
        target: target.clone(),
        subpath: sub.into_bytes(),
        ..Default::default()
    };
    cairn_engine::restore::restore(&repo, snap.tree, &opts, &cairn_engine::NoProgress).unwrap();
    assert_eq!(fs::read(target.join("a/b/file")).unwrap(), b"content of a/b/file");
    assert!(!target.join("top").exists());
}

#[test]
fn recovery_code_opens_and_a_wrong_password_is_refused() {
    use cairn_engine::crypto::SecretBytes;
    use cairn_engine::keys::OpenSecret;
    let t = TestRepo::new();
    let code = t.recovery.clone().expect("init creates a recovery code by default");
    let repo = t.open_with(&OpenSecret::Recovery(code)).unwrap();
    assert_eq!(repo.snapshots().unwrap().len(), 0);
    let err = t.open_with(&OpenSecret::Password(SecretBytes::from("nope".to_string()))).unwrap_err();
    assert!(matches!(err, cairn_engine::Error::WrongKey(_)), "{err:?}");
}
