//! `cairn mount`: the snapshot file system read at any offset and in any piece size, hardlinks
//! as one inode, xattrs, the `--all` layout, damage reported instead of wrong bytes (all through
//! the engine's `snapfs`, no kernel needed); then the real thing through FUSE: a snapshot
//! mounted, every file compared with its source, unmounted by SIGTERM or by `umount`.

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_engine::backup::{BackupOptions, backup};
use cairn_engine::chunker::ChunkerParams;
use cairn_engine::format::tree::NodeKind;
use cairn_engine::snapfs::{FsError, FsOptions, Kind, ROOT, SnapshotFs};
use cairn_engine::{NoProgress, Repository};

use crate::support::*;

/// Small chunks, so files span many blobs and reads cross blob boundaries.
const SMALL_CHUNKS: ChunkerParams = ChunkerParams { min_size: 4096, avg_size: 16384, max_size: 65536 };

/// A source tree with what a mount must get right: files of many chunks, compressible text,
/// a sparse file (holes at the start, middle and end), an empty file, two hardlinked files, a
/// symlink and extended attributes.
fn source_tree(root: &Path) -> PathBuf {
    let src = root.join("src");
    fs::create_dir_all(src.join("sub")).unwrap();
    fs::write(src.join("big"), random_bytes(700 * 1024 + 13, 1)).unwrap();
    fs::write(src.join("text"), text_bytes(300 * 1024, 2)).unwrap();
    fs::write(src.join("empty"), b"").unwrap();
    let sparse = fs::File::create(src.join("sparse")).unwrap();
    sparse.set_len(1 << 20).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&sparse, &random_bytes(100 * 1024, 3), 300 * 1024).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&sparse, b"0123456789", (1 << 20) - 4096).unwrap();
    drop(sparse);
    fs::write(src.join("sub/hard-1"), random_bytes(50 * 1024, 4)).unwrap();
    fs::hard_link(src.join("sub/hard-1"), src.join("sub/hard-2")).unwrap();
    std::os::unix::fs::symlink("../big", src.join("sub/link")).unwrap();
    xattr::set(src.join("text"), "user.note", b"binary \x00\xff value").unwrap();
    xattr::set(src.join("sub"), "user.dir", b"on a directory").unwrap();
    src
}

/// The inode of `path` (absolute, as backed up) below `from`.
fn walk_to(fs: &SnapshotFs, from: u64, path: &Path) -> u64 {
    path.components()
        .filter_map(|c| match c {
            std::path::Component::Normal(n) => Some(n.as_bytes()),
            _ => None,
        })
        .fold(from, |ino, name| fs.lookup(ino, name).unwrap_or_else(|e| panic!("{}: {e}", path.display())).ino)
}

/// The whole file read sequentially in pieces of `piece` bytes, as a program reading it would.
fn read_in_pieces(fs: &SnapshotFs, ino: u64, piece: u32) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let got = fs.read(ino, out.len() as u64, piece).unwrap();
        if got.is_empty() {
            return out;
        }
        assert!(got.len() <= piece as usize);
        out.extend_from_slice(&got);
    }
}

#[test]
fn snapshot_files_read_back_exactly_at_any_offset_and_in_any_piece_size() {
    let t = TestRepo::with_chunker(SMALL_CHUNKS);
    let src = source_tree(t.dir.path());
    let repo = Arc::new(t.open());
    let out = snapshot(&repo, &[&src]);
    let fs = SnapshotFs::single(repo.clone(), &out.snapshot, FsOptions::default());
    let dir = walk_to(&fs, ROOT, &src);

    let names: Vec<Vec<u8>> = fs.entries(dir).unwrap().iter().map(|e| e.name.clone()).collect();
    assert_eq!(names, [b"big".to_vec(), b"empty".to_vec(), b"sparse".to_vec(), b"sub".to_vec(), b"text".to_vec()]);
    let mut seed = 0x5eed_u64;
    for name in ["big", "text", "sparse", "empty", "sub/hard-1"] {
        let want = fs::read(src.join(name)).unwrap();
        let ino = walk_to(&fs, dir, Path::new(name));
        let attr = fs.attr(ino).unwrap();
        assert_eq!((attr.kind, attr.size), (Kind::File, want.len() as u64), "{name}");
        fs.open(ino).unwrap();
        for piece in [1, 4095, 4096, 65_543, 131_072, 1 << 20] {
            if piece == 1 && want.len() > 100_000 {
                continue;
            }
            assert!(read_in_pieces(&fs, ino, piece) == want, "{name} read in pieces of {piece}");
        }
        for _ in 0..64 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let offset = seed % (want.len() as u64 + 10);
            let len = (seed >> 20) % 200_000;
            let got = fs.read(ino, offset, len as u32).unwrap();
            let from = (offset as usize).min(want.len());
            let to = (offset as usize).saturating_add(len as usize).min(want.len());
            assert!(got == want[from..to], "{name} at {offset} for {len}");
        }
    }

    let sub = walk_to(&fs, dir, Path::new("sub"));
    let (a, b) = (fs.lookup(sub, b"hard-1").unwrap(), fs.lookup(sub, b"hard-2").unwrap());
    assert_eq!(a.ino, b.ino, "hardlinked files are one inode");
    assert_eq!(a.nlink, 2);
    assert_eq!(fs.readlink(fs.lookup(sub, b"link").unwrap().ino).unwrap(), b"../big");
    let text = walk_to(&fs, dir, Path::new("text"));
    assert_eq!(fs.xattrs(text).unwrap(), vec![(b"user.note".to_vec(), b"binary \x00\xff value".to_vec())]);
    assert_eq!(fs.xattrs(sub).unwrap(), vec![(b"user.dir".to_vec(), b"on a directory".to_vec())]);
    let meta = fs::metadata(src.join("text")).unwrap();
    let attr = fs.attr(text).unwrap();
    assert_eq!((attr.perm as u32, attr.uid, attr.gid), (meta.mode() & 0o7777, meta.uid(), meta.gid()));
    assert_eq!(attr.mtime_ns, meta.mtime() * 1_000_000_000 + meta.mtime_nsec());
    assert_eq!(fs.parent(sub).unwrap(), dir);

    assert!(matches!(fs.lookup(dir, b"no-such-file"), Err(FsError::NotFound)));
    assert!(matches!(fs.entries(text), Err(FsError::NotDir)));
    assert!(matches!(fs.read(sub, 0, 10), Err(FsError::NotFile)));
    assert!(matches!(fs.readlink(text), Err(FsError::NotSymlink)));
    assert!(matches!(fs.attr(1 << 40), Err(FsError::NotFound)));
    assert!(matches!(fs.attr(0), Err(FsError::NotFound)));
}

fn backup_as(repo: &Repository, src: &Path, host: &str, tags: &[&str]) -> cairn_engine::ObjectId {
    let opts = BackupOptions {
        paths: vec![src.to_path_buf()],
        hostname: host.into(),
        username: "tester".into(),
        tags: tags.iter().map(|t| t.to_string()).collect(),
        program: "cairn-tests".into(),
        ..BackupOptions::default()
    };
    backup(repo, &opts, &NoProgress).unwrap().snapshot_id
}

#[test]
fn all_snapshots_are_laid_out_by_id_time_host_and_tag() {
    let t = TestRepo::new();
    let src = t.dir.path().join("src");
    fs::create_dir_all(&src).unwrap();
    let repo = Arc::new(t.open());
    fs::write(src.join("file"), b"first").unwrap();
    let first = backup_as(&repo, &src, "db1", &["nightly"]);
    fs::write(src.join("file"), b"second").unwrap();
    let second = backup_as(&repo, &src, "web/1", &["nightly", "manual"]);
    fs::write(src.join("file"), b"third").unwrap();
    let third = backup_as(&repo, &src, "db1", &[]);
    let snaps = repo.snapshots().unwrap();
    let mut snaps: Vec<_> = snaps.into_iter().collect();
    snaps.sort_by_key(|(_, s)| s.time_ns);
    let fs = SnapshotFs::all(repo.clone(), &snaps, FsOptions { uid: 4242, gid: 4343, ..FsOptions::default() });

    let names = |ino: u64| -> Vec<String> {
        fs.entries(ino).unwrap().iter().map(|e| String::from_utf8(e.name.clone()).unwrap()).collect()
    };
    let at = |path: &str| walk_to(&fs, ROOT, Path::new(path));
    assert_eq!(names(ROOT), ["hosts", "ids", "snapshots", "tags"]);
    let root = fs.attr(ROOT).unwrap();
    assert_eq!((root.kind, root.perm, root.uid, root.gid), (Kind::Dir, 0o555, 4242, 4343));
    let mut ids = vec![first.short(), second.short(), third.short()];
    ids.sort();
    assert_eq!(names(at("ids")), ids);
    assert_eq!(names(at("hosts")), ["db1", "web_1"], "a / in a host name cannot split it");
    assert_eq!(names(at("tags")), ["manual", "nightly"]);
    assert_eq!(names(at("snapshots")).len(), 4, "three distinct times and latest: {:?}", names(at("snapshots")));
    assert_eq!(names(at("hosts/db1")).len(), 3);
    assert_eq!(names(at("tags/manual")).len(), 2);

    // Links resolve to the snapshot they name; `latest` is the newest in its directory.
    let follow = |dir: &str, name: &str| -> String {
        let link = String::from_utf8(fs.readlink(at(&format!("{dir}/{name}"))).unwrap()).unwrap();
        if link.contains('/') { link } else { follow_once(&fs, dir, &link) }
    };
    assert_eq!(follow("snapshots", "latest"), format!("../ids/{}", third.short()));
    assert_eq!(follow("hosts/db1", "latest"), format!("../../ids/{}", third.short()));
    assert_eq!(follow("hosts/web_1", "latest"), format!("../../ids/{}", second.short()));
    assert_eq!(follow("tags/nightly", "latest"), format!("../../ids/{}", second.short()));
    assert_eq!(fs.attr(at("snapshots/latest")).unwrap().kind, Kind::Symlink);

    for (id, want) in [(first, "first"), (second, "second"), (third, "third")] {
        let dir = at(&format!("ids/{}", id.short()));
        let file = walk_to(&fs, dir, &src.join("file"));
        assert_eq!(fs.read(file, 0, 100).unwrap(), want.as_bytes());
    }
}

/// The target of the link `name` in `dir`, when `name` is itself a link to a sibling.
fn follow_once(fs: &SnapshotFs, dir: &str, name: &str) -> String {
    let ino = walk_to(fs, ROOT, &Path::new(dir).join(name));
    String::from_utf8(fs.readlink(ino).unwrap()).unwrap()
}

#[test]
fn a_damaged_blob_is_reported_never_read_as_other_bytes() {
    let t = TestRepo::with_chunker(SMALL_CHUNKS);
    let src = t.dir.path().join("src");
    fs::create_dir_all(&src).unwrap();
    let content = random_bytes(400 * 1024, 9);
    fs::write(src.join("file"), &content).unwrap();
    let repo = Arc::new(t.open());
    let out = snapshot(&repo, &[&src]);
    let node = match cairn_engine::trees::resolve(&repo, out.snapshot.tree, src.join("file").as_os_str().as_bytes()) {
        Ok(cairn_engine::trees::Resolved::Node(_, node)) => node,
        other => panic!("{other:?}"),
    };
    let NodeKind::File { chunks, .. } = &node.kind else { panic!("not a file") };
    assert!(chunks.len() > 4, "the file spans several blobs");
    // Flip a byte inside the third chunk's sealed blob.
    let loc = repo.locate(&chunks[2]).unwrap();
    let pack = t.repo_path().join(cairn_engine::repo::pack_name(&loc.pack));
    let mut bytes = fs::read(&pack).unwrap();
    bytes[(loc.offset + loc.length / 2) as usize] ^= 0x40;
    fs::write(&pack, bytes).unwrap();

    let fs = SnapshotFs::single(repo.clone(), &out.snapshot, FsOptions { cache_bytes: 0, ..FsOptions::default() });
    let file = walk_to(&fs, ROOT, &src.join("file"));
    let start_of_third: u64 = chunks[..2].iter().map(|c| u64::from(repo.locate(c).unwrap().raw_length)).sum();
    for attempt in 0..3 {
        match fs.read(file, start_of_third, 10) {
            Err(FsError::Repository(e)) if matches!(*e, cairn_engine::Error::Corrupt { .. }) => {}
            other => panic!("attempt {attempt}: a damaged blob must be an error, got {:?}", other.map(|b| b.len())),
        }
    }
    assert_eq!(fs.read(file, 0, 1000).unwrap(), content[..1000], "blobs before it still read");
}

/// A `cairn mount` process and its mount point; unmounted (lazily) and stopped if a test fails
/// half-way, so no mount outlives the test.
struct Mounted {
    child: Child,
    mountpoint: PathBuf,
}

fn is_mounted(mountpoint: &Path) -> bool {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let want = mountpoint.to_str().unwrap();
    mountinfo.lines().any(|l| l.split(' ').nth(4) == Some(want))
}

impl Mounted {
    fn start(mut cmd: std::process::Command, mountpoint: &Path) -> Self {
        let mountpoint = mountpoint.canonicalize().unwrap();
        let child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let mut m = Mounted { child, mountpoint };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !is_mounted(&m.mountpoint) {
            if let Some(status) = m.child.try_wait().unwrap() {
                let mut err = String::new();
                std::io::Read::read_to_string(m.child.stderr.as_mut().unwrap(), &mut err).unwrap();
                panic!("cairn mount exited with {status} before mounting: {err}");
            }
            assert!(Instant::now() < deadline, "not mounted after 60 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        m
    }

    /// Waits for the process to exit after an unmount; its exit code and standard error.
    fn wait(mut self) -> (Option<i32>, String) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "cairn mount still running 30 s after the unmount");
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut err = String::new();
        if let Some(stderr) = self.child.stderr.as_mut() {
            std::io::Read::read_to_string(stderr, &mut err).unwrap();
        }
        (status.code(), err)
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if is_mounted(&self.mountpoint) {
            let _ = std::process::Command::new("umount").arg("-l").arg(&self.mountpoint).status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn cli_env() -> (tempfile::TempDir, impl Fn() -> std::process::Command) {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("pw"), "mount password\n").unwrap();
    let base = dir.path().to_path_buf();
    let cairn = move || {
        let assert_cmd = cairn_cmd(&base.join("repo"), &base.join("cache"), &base.join("pw"));
        let mut cmd = std::process::Command::new(assert_cmd.get_program());
        cmd.args(assert_cmd.get_args());
        for (k, v) in assert_cmd.get_envs() {
            match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
        cmd
    };
    let init =
        cairn().args(["init", "--no-recovery-code", "--kdf-memory", "8192", "--kdf-iterations", "1"]).output().unwrap();
    assert!(init.status.success(), "{}", String::from_utf8_lossy(&init.stderr));
    (dir, cairn)
}

/// `dir/src` holding `files` (name, content), and a snapshot of it taken with `args`.
fn snapshot_of(
    dir: &Path,
    cairn: &impl Fn() -> std::process::Command,
    files: &[(&str, &[u8])],
    args: &[&str],
) -> PathBuf {
    let src = dir.join("src");
    fs::create_dir_all(&src).unwrap();
    for (name, content) in files {
        fs::write(src.join(name), content).unwrap();
    }
    let mut snap = cairn();
    snap.arg("snapshot").args(args).arg(&src);
    run_ok(snap);
    src
}

fn run_ok(mut cmd: std::process::Command) {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{:?}: {}", cmd, String::from_utf8_lossy(&out.stderr));
}

#[test]
fn fuse_mount_serves_a_snapshot_byte_for_byte_until_sigterm() {
    let (dir, cairn) = cli_env();
    let src = source_tree(dir.path());
    let mut snap = cairn();
    snap.arg("snapshot").arg(&src);
    run_ok(snap);
    let mp = dir.path().join("mnt");
    fs::create_dir(&mp).unwrap();
    let mut cmd = cairn();
    cmd.arg("mount").arg("latest").arg(&mp);
    let mounted = Mounted::start(cmd, &mp);

    // Every entry: kind, mode, owner, size, bytes, mtime, symlink targets.
    let inside = mounted.mountpoint.join(src.strip_prefix("/").unwrap());
    assert_same_tree(&src, &inside);
    assert_eq!(xattr::get(inside.join("text"), "user.note").unwrap().unwrap(), b"binary \x00\xff value");
    assert_eq!(xattr::get(inside.join("sub"), "user.dir").unwrap().unwrap(), b"on a directory");
    assert_eq!(xattr::get(inside.join("big"), "user.none").unwrap(), None);
    let (h1, h2) = (fs::metadata(inside.join("sub/hard-1")).unwrap(), fs::metadata(inside.join("sub/hard-2")).unwrap());
    assert_eq!((h1.ino(), h1.nlink()), (h2.ino(), 2), "hardlinks are one inode");
    assert_eq!(fs::read(inside.join("sub/link")).unwrap(), fs::read(src.join("big")).unwrap(), "through the symlink");
    let err = fs::write(inside.join("new-file"), b"x").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(30), "EROFS: {err}");
    assert!(fs::remove_file(inside.join("big")).is_err());

    let kill = std::process::Command::new("kill").args(["-s", "TERM"]).arg(mounted.child.id().to_string()).status();
    assert!(kill.unwrap().success());
    let mountpoint = mounted.mountpoint.clone();
    let (code, err) = mounted.wait();
    assert_eq!(code, Some(0), "SIGTERM unmounts and exits 0: {err}");
    assert!(err.contains("unmounted"), "{err}");
    assert!(!is_mounted(&mountpoint), "still mounted after SIGTERM");
}

#[test]
fn fuse_mount_ends_cleanly_when_its_terminal_closes_and_refuses_a_mount_point_in_use() {
    let (dir, cairn) = cli_env();
    snapshot_of(dir.path(), &cairn, &[("file", b"content")], &[]);
    let mp = dir.path().join("mnt");
    fs::create_dir(&mp).unwrap();
    // SIGHUP as a terminal sends it: not ignored, whatever the test runner inherited.
    let base = cairn();
    let mut cmd = std::process::Command::new("env");
    cmd.arg("--default-signal=HUP").arg(base.get_program()).args(base.get_args());
    cmd.envs(base.get_envs().filter_map(|(k, v)| v.map(|v| (k.to_owned(), v.to_owned()))));
    for (k, v) in base.get_envs() {
        if v.is_none() {
            cmd.env_remove(k);
        }
    }
    cmd.arg("mount").arg("latest").arg(&mp);
    let mounted = Mounted::start(cmd, &mp);
    let locks = || fs::read_dir(dir.path().join("repo/locks")).map_or(0, |d| d.count());
    assert_eq!(locks(), 1, "a mount holds a shared lock");

    // A second mount on the same point would hide the first (and unmount the wrong one later).
    std::os::unix::fs::symlink(&mp, dir.path().join("link")).unwrap();
    fs::create_dir(dir.path().join("sub")).unwrap();
    for other_name in [mp.clone(), dir.path().join("link"), dir.path().join("sub/../mnt")] {
        let out = cairn().arg("mount").arg("latest").arg(&other_name).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{}: {}", other_name.display(), String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stderr).contains("already a mount point"));
    }

    // A closing terminal often sends two: the shell forwards one, the kernel sends another.
    for _ in 0..2 {
        let hup = std::process::Command::new("kill").args(["-s", "HUP"]).arg(mounted.child.id().to_string()).status();
        assert!(hup.unwrap().success());
    }
    let mountpoint = mounted.mountpoint.clone();
    let (code, err) = mounted.wait();
    assert_eq!(code, Some(0), "SIGHUP unmounts and exits 0: {err}");
    assert!(!is_mounted(&mountpoint), "still mounted after SIGHUP");
    assert_eq!(locks(), 0, "the lock is released");
}

#[test]
fn fuse_mount_survives_a_closed_stderr_and_repeated_reads_of_a_damaged_blob() {
    let (dir, cairn) = cli_env();
    let src = snapshot_of(dir.path(), &cairn, &[("good", b"readable"), ("bad", &random_bytes(600 * 1024, 5))], &[]);
    // The largest pack holds the large file's data: damage the middle of it.
    let pack =
        walk_files(&dir.path().join("repo/data")).into_iter().max_by_key(|p| fs::metadata(p).unwrap().len()).unwrap();
    let mut bytes = fs::read(&pack).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    fs::write(&pack, bytes).unwrap();
    let mp = dir.path().join("mnt");
    fs::create_dir(&mp).unwrap();
    let mut cmd = cairn();
    cmd.arg("mount").arg("latest").arg(&mp);
    let mut mounted = Mounted::start(cmd, &mp);
    // Its reader goes away, as when `cairn mount ... 2>&1 | head -1` ends.
    drop(mounted.child.stderr.take());

    let inside = mounted.mountpoint.join(src.strip_prefix("/").unwrap());
    for attempt in 0..6 {
        let err = fs::read(inside.join("bad")).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(5), "attempt {attempt}: EIO, never other bytes: {err}");
    }
    assert_eq!(fs::read(inside.join("good")).unwrap(), b"readable", "the mount still serves");
    assert!(mounted.child.try_wait().unwrap().is_none(), "the mount process is still running");
    let kill = std::process::Command::new("kill").args(["-s", "TERM"]).arg(mounted.child.id().to_string()).status();
    assert!(kill.unwrap().success());
    let (code, _) = mounted.wait();
    assert_eq!(code, Some(0));
}

#[test]
fn fuse_mount_all_shows_every_snapshot_until_umount() {
    let (dir, cairn) = cli_env();
    snapshot_of(dir.path(), &cairn, &[("file", b"from this host")], &[]);
    let src =
        snapshot_of(dir.path(), &cairn, &[("file", b"from the other host")], &["--host", "other", "--tag", "nightly"]);
    let mp = dir.path().join("mnt");
    fs::create_dir(&mp).unwrap();
    let mut cmd = cairn();
    cmd.args(["mount", "--all"]).arg(&mp);
    let mounted = Mounted::start(cmd, &mp);

    let root = &mounted.mountpoint;
    let mut names: Vec<_> = fs::read_dir(root).unwrap().map(|e| e.unwrap().file_name()).collect();
    names.sort();
    assert_eq!(names, ["hosts", "ids", "snapshots", "tags"]);
    assert_eq!(fs::read_dir(root.join("ids")).unwrap().count(), 2);
    let rel = src.join("file");
    let rel = rel.strip_prefix("/").unwrap();
    let read = |p: PathBuf| fs::read(p.join(rel)).unwrap();
    assert_eq!(read(root.join("hosts/other/latest")), b"from the other host");
    assert_eq!(read(root.join("tags/nightly/latest")), b"from the other host");
    assert_eq!(read(root.join("snapshots/latest")), b"from the other host");
    assert_eq!(read(root.join("hosts").join(this_host()).join("latest")), b"from this host");

    let umount = std::process::Command::new("umount").arg(root).output().unwrap();
    assert!(umount.status.success(), "umount: {}", String::from_utf8_lossy(&umount.stderr));
    let (code, err) = mounted.wait();
    assert_eq!(code, Some(0), "an unmount from outside ends the process: {err}");
}

#[test]
fn mount_usage_errors_exit_2() {
    let (dir, cairn) = cli_env();
    let mp = dir.path().join("mnt");
    fs::create_dir(&mp).unwrap();
    for args in [vec!["mount".into(), mp.clone().into_os_string()], {
        let mut a: Vec<std::ffi::OsString> = vec!["mount".into(), "--all".into(), "latest".into()];
        a.push(mp.clone().into_os_string());
        a
    }] {
        let out = cairn().args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let out = cairn().args(["mount", "latest"]).arg(dir.path().join("no-such-dir")).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a directory"));
}
