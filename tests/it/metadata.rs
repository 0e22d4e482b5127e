//! Issue 3, acceptance 1: a hostile tree (hardlinks across directories, xattrs, ACLs, a sparse
//! 4 GiB file, FIFOs, devices when root, setuid bits, odd names, a path longer than PATH_MAX,
//! dangling symlinks, odd modes) restores exactly, as an independent walker sees it.

use std::ffi::OsStr;
use std::fs;
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{OFlag, openat};
use nix::sys::stat::{Mode, SFlag, mknodat};

use crate::fswalk::{lsattr, walk};
use crate::support::*;

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A POSIX access ACL in the kernel's xattr encoding: user::rw-, user:1000:r--, group::r--,
/// mask::r--, other::---.
fn acl_bytes() -> Vec<u8> {
    let mut v = 2u32.to_le_bytes().to_vec();
    for (tag, perm, id) in
        [(0x01u16, 6u16, u32::MAX), (0x02, 4, 1000), (0x04, 4, u32::MAX), (0x10, 4, u32::MAX), (0x20, 0, u32::MAX)]
    {
        v.extend_from_slice(&tag.to_le_bytes());
        v.extend_from_slice(&perm.to_le_bytes());
        v.extend_from_slice(&id.to_le_bytes());
    }
    v
}

fn set_times(p: &Path, atime: (i64, u32), mtime: (i64, u32)) {
    let at = std::time::UNIX_EPOCH + std::time::Duration::new(atime.0 as u64, atime.1);
    let mt = std::time::UNIX_EPOCH + std::time::Duration::new(mtime.0 as u64, mtime.1);
    let f = fs::File::options().read(true).open(p).unwrap();
    f.set_times(fs::FileTimes::new().set_accessed(at).set_modified(mt)).unwrap();
}

/// Builds the hostile tree; returns the path below PATH_MAX limits that leads to the deep part.
fn hostile_tree(src: &Path) {
    fs::create_dir_all(src.join("a")).unwrap();
    fs::create_dir_all(src.join("b/c")).unwrap();
    // Hardlink groups across directories.
    fs::write(src.join("a/linked"), b"one inode, three names").unwrap();
    fs::hard_link(src.join("a/linked"), src.join("b/linked-too")).unwrap();
    fs::hard_link(src.join("a/linked"), src.join("b/c/third")).unwrap();
    fs::write(src.join("b/pair-1"), text_bytes(3 << 20, 9)).unwrap();
    fs::hard_link(src.join("b/pair-1"), src.join("b/pair-2")).unwrap();
    // xattrs and an ACL.
    let x = src.join("a/with-xattrs");
    fs::write(&x, b"attributes").unwrap();
    xattr::set(&x, "user.comment", b"hello \x00 binary \xff").unwrap();
    xattr::set(&x, "user.empty", b"").unwrap();
    xattr::set(&x, "system.posix_acl_access", &acl_bytes()).unwrap();
    xattr::set(src.join("a"), "user.dir-attr", b"on a directory").unwrap();
    if is_root() {
        xattr::set(&x, "trusted.cairn", b"root only").unwrap();
    }
    // A sparse 4 GiB file with 1 MiB of data in the middle and a little at the end.
    let mut sparse = fs::File::create(src.join("sparse-4g")).unwrap();
    sparse.set_len(4 << 30).unwrap();
    sparse.seek(SeekFrom::Start(2 << 30)).unwrap();
    sparse.write_all(&random_bytes(1 << 20, 4)).unwrap();
    sparse.seek(SeekFrom::Start((4 << 30) - 10)).unwrap();
    sparse.write_all(b"tail bytes").unwrap();
    drop(sparse);
    // Special files.
    let root_fd = nix::fcntl::open(src, OFlag::O_RDONLY | OFlag::O_DIRECTORY, Mode::empty()).unwrap();
    nix::unistd::mkfifoat(&root_fd, "fifo", Mode::from_bits_truncate(0o640)).unwrap();
    if is_root() {
        mknodat(&root_fd, "null-like", SFlag::S_IFCHR, Mode::from_bits_truncate(0o666), nix::sys::stat::makedev(1, 3))
            .unwrap();
        mknodat(
            &root_fd,
            "block-like",
            SFlag::S_IFBLK,
            Mode::from_bits_truncate(0o660),
            nix::sys::stat::makedev(7, 200),
        )
        .unwrap();
    }
    // Modes: setuid, setgid, sticky, 000 files and odd empty directories.
    // Mode 000 entries only as root: anyone else cannot read them, which is another test.
    let zero = if is_root() { 0o000 } else { 0o400 };
    for (name, mode) in [("setuid", 0o4755), ("setgid", 0o2750), ("mode-000", zero)] {
        fs::write(src.join(name), name.as_bytes()).unwrap();
        fs::set_permissions(src.join(name), fs::Permissions::from_mode(mode)).unwrap();
    }
    for (name, mode) in [("empty-sticky", 0o1777), ("empty-000", zero), ("empty-setgid", 0o2711)] {
        fs::create_dir(src.join(name)).unwrap();
        fs::set_permissions(src.join(name), fs::Permissions::from_mode(mode)).unwrap();
    }
    // Names: a newline, invalid UTF-8, 255 bytes.
    fs::write(src.join("new\nline"), b"newline in the name").unwrap();
    fs::write(src.join(OsStr::from_bytes(b"bad-\xff\xfe-utf8")), b"invalid utf-8 name").unwrap();
    fs::write(src.join("n".repeat(255)), b"longest name").unwrap();
    // Symlinks, dangling too; a hardlinked symlink.
    std::os::unix::fs::symlink("a/linked", src.join("good-link")).unwrap();
    std::os::unix::fs::symlink("no/such/target", src.join("dangling")).unwrap();
    nix::unistd::linkat(&root_fd, "dangling", &root_fd, "dangling-hardlink", nix::fcntl::AtFlags::empty()).unwrap();
    // Owners (root only): a numeric owner unknown here, and a named one.
    if is_root() {
        fs::write(src.join("owned-numeric"), b"owned by 12345:54321").unwrap();
        std::os::unix::fs::chown(src.join("owned-numeric"), Some(12345), Some(54321)).unwrap();
        fs::write(src.join("owned-nobody"), b"owned by nobody").unwrap();
        std::os::unix::fs::chown(src.join("owned-nobody"), Some(65534), Some(65534)).unwrap();
    }
    // An inode flag that does not get in the way of cleaning up (nodump).
    let _ = std::process::Command::new("chattr").arg("+d").arg(src.join("a/linked")).status();
    // A path longer than PATH_MAX (4096 bytes): 20 levels of 250-byte names.
    let mut dir = nix::fcntl::open(src, OFlag::O_RDONLY | OFlag::O_DIRECTORY, Mode::empty()).unwrap();
    for i in 0..20u8 {
        let name = format!("{i:02}{}", "d".repeat(248));
        nix::sys::stat::mkdirat(&dir, name.as_str(), Mode::from_bits_truncate(0o755)).unwrap();
        dir = openat(&dir, name.as_str(), OFlag::O_RDONLY | OFlag::O_DIRECTORY, Mode::empty()).unwrap();
    }
    let deep = openat(&dir, "deep-file", OFlag::O_WRONLY | OFlag::O_CREAT, Mode::from_bits_truncate(0o644)).unwrap();
    fs::File::from(deep).write_all(b"more than 4096 bytes below the source").unwrap();
    // Distinct atimes and nanosecond mtimes on some files.
    set_times(&src.join("a/with-xattrs"), (1_000_000_001, 5), (1_100_000_000, 999_999_999));
    set_times(&src.join("setuid"), (1_200_000_000, 7), (1_000_000_000, 1));
}

fn source_and_restore() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    fs::create_dir(&src).unwrap();
    hostile_tree(&src);
    let t = TestRepo::new();
    let repo = t.open();
    let out = snapshot(&repo, &[&src]);
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    // Only the data of the sparse file was read: 1 MiB and a bit, not 4 GiB.
    assert!(out.snapshot.summary.bytes_read < 16 << 20, "read {} bytes", out.snapshot.summary.bytes_read);
    let target = work.path().join("restored");
    let opts =
        cairn_engine::restore::RestoreOptions { target: target.clone(), restore_flags: true, ..Default::default() };
    let r = cairn_engine::restore::restore(&repo, out.snapshot.tree, &opts, &cairn_engine::NoProgress).unwrap();
    assert!(r.hardlinks >= 4, "{r:?}");
    let restored = restored_path(&target, &src);
    (work, src, restored)
}

#[test]
fn hostile_tree_restores_exactly() {
    let (_work, src, restored) = source_and_restore();
    let a = walk(&src);
    let b = walk(&restored);
    assert!(a.entries.len() >= 40, "only {} entries walked", a.entries.len());
    let names_a: Vec<_> = a.entries.keys().collect();
    let names_b: Vec<_> = b.entries.keys().collect();
    assert_eq!(names_a, names_b, "the same entries");
    for (path, ea) in &a.entries {
        let eb = &b.entries[path];
        assert_eq!(ea, eb, "entry {}", String::from_utf8_lossy(path));
    }
    assert_eq!(a.hardlink_groups, b.hardlink_groups, "hardlink groups");
    assert_eq!(a.hardlink_groups.len(), 3, "{:?}", a.hardlink_groups);
    // Sparse stays sparse.
    let sparse = b"sparse-4g".to_vec();
    assert!(b.allocated[&sparse] < 16 << 20, "restored sparse file uses {} bytes", b.allocated[&sparse]);
    assert_eq!(b.entries[&sparse].size, 4 << 30);
    // Specials and owners as root.
    if is_root() {
        assert_eq!(b.entries[&b"null-like".to_vec()].kind, "chardev");
        assert_eq!(b.entries[&b"block-like".to_vec()].kind, "blockdev");
        assert_eq!(b.entries[&b"owned-numeric".to_vec()].uid, 12345);
        assert!(b.entries[&b"a/with-xattrs".to_vec()].xattrs.contains_key(b"trusted.cairn".as_slice()));
    }
    assert!(b.entries[&b"a/with-xattrs".to_vec()].xattrs.contains_key(b"system.posix_acl_access".as_slice()));
    // The inode flag, when the file system supports it.
    if let Some(flags) = lsattr(&src.join("a/linked"))
        && flags.contains('d')
    {
        assert_eq!(lsattr(&restored.join("a/linked")), Some(flags));
    }
}

#[test]
fn non_utf8_names_and_long_paths_list_in_the_snapshot() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join(OsStr::from_bytes(b"x-\xff")), b"1").unwrap();
    let t = TestRepo::new();
    let repo = t.open();
    let out = snapshot(&repo, &[&src]);
    let mut seen = Vec::new();
    cairn_engine::trees::walk(&repo, out.snapshot.tree, b"", &mut |p, _| {
        seen.push(p.to_vec());
        Ok(())
    })
    .unwrap();
    assert!(seen.iter().any(|p| p.ends_with(b"/x-\xff")), "{seen:?}");
}

/// Runs `chattr ARGS PATH`; false when chattr or the file system cannot.
fn chattr(args: &str, path: &Path) -> bool {
    std::process::Command::new("chattr").arg(args).arg(path).status().is_ok_and(|s| s.success())
}

/// Clears immutable/append-only flags below a directory when dropped, even after a failed
/// assertion, so the temporary directory can be removed.
struct ClearFlags(PathBuf);

impl Drop for ClearFlags {
    fn drop(&mut self) {
        let _ = std::process::Command::new("chattr").args(["-R", "-i", "-a"]).arg(&self.0).status();
    }
}

#[test]
fn immutable_and_append_only_flags_restore_last() {
    if !is_root() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let _clear = ClearFlags(work.path().to_path_buf());
    let src = work.path().join("src");
    fs::create_dir_all(src.join("append-only")).unwrap();
    fs::write(src.join("locked"), b"immutable content").unwrap();
    fs::hard_link(src.join("locked"), src.join("locked-link")).unwrap();
    fs::write(src.join("append-only/log"), b"line\n").unwrap();
    if !chattr("+i", &src.join("locked")) || !chattr("+a", &src.join("append-only")) {
        return; // The file system has no inode flags.
    }
    let t = TestRepo::new();
    let repo = t.open();
    let out = snapshot(&repo, &[&src]);
    chattr("-i", &src.join("locked"));
    chattr("-a", &src.join("append-only"));
    let target = work.path().join("restored");
    let opts =
        cairn_engine::restore::RestoreOptions { target: target.clone(), restore_flags: true, ..Default::default() };
    let r = cairn_engine::restore::restore(&repo, out.snapshot.tree, &opts, &cairn_engine::NoProgress).unwrap();
    let restored = restored_path(&target, &src);
    let flags_locked = lsattr(&restored.join("locked"));
    let flags_dir = lsattr(&restored.join("append-only"));
    chattr("-i", &restored.join("locked"));
    chattr("-a", &restored.join("append-only"));
    assert!(r.warnings.is_empty() && r.damaged.is_empty(), "{r:?}");
    assert_eq!(r.hardlinks, 1, "the link to the immutable file was made before the flag: {r:?}");
    assert!(flags_locked.as_ref().is_some_and(|f| f.contains('i')), "{flags_locked:?}");
    assert!(flags_dir.as_ref().is_some_and(|f| f.contains('a')), "{flags_dir:?}");
    assert_eq!(fs::read(restored.join("append-only/log")).unwrap(), b"line\n");
}

#[test]
fn owners_map_by_name_unless_numeric_owner() {
    use cairn_engine::format::BlobKind;
    use cairn_engine::format::tree::{Node, NodeKind, Tree};
    use std::os::unix::fs::MetadataExt;
    if !is_root() {
        return;
    }
    let (Some(nobody), Some(nogroup)) =
        (nix::unistd::User::from_name("nobody").unwrap(), nix::unistd::Group::from_name("nogroup").unwrap())
    else {
        return;
    };
    // A tree written on another machine: there "nobody"/"nogroup" had ids 12345/12346.
    let t = TestRepo::new();
    let repo = t.open();
    let writer = repo.blob_writer().unwrap();
    let chunk = writer.add(BlobKind::Data, b"owned".to_vec()).unwrap();
    let file = NodeKind::File { chunks: vec![chunk], holes: Vec::new() };
    let node = Node {
        uid: 12345,
        gid: 12346,
        user: Some("nobody".into()),
        group: Some("nogroup".into()),
        size: 5,
        mtime_ns: 1_000_000_000,
        ..Node::new(b"f".to_vec(), file, 0o100644)
    };
    let root = writer.add(BlobKind::Tree, Tree { nodes: vec![node] }.encode()).unwrap();
    writer.finish().unwrap();
    let work = tempfile::tempdir().unwrap();
    let restore = |numeric_owner: bool, dir: &str| {
        let target = work.path().join(dir);
        let opts =
            cairn_engine::restore::RestoreOptions { target: target.clone(), numeric_owner, ..Default::default() };
        cairn_engine::restore::restore(&repo, root, &opts, &cairn_engine::NoProgress).unwrap();
        let m = fs::metadata(target.join("f")).unwrap();
        (m.uid(), m.gid())
    };
    assert_eq!(restore(false, "by-name"), (nobody.uid.as_raw(), nogroup.gid.as_raw()));
    assert_eq!(restore(true, "numeric"), (12345, 12346));
}
