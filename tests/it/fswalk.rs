//! An independent walker for comparing trees: it shares no code with the engine (nix for
//! `openat`/`fstatat`, the `xattr` crate, `lsattr` for inode flags), so a bug in the engine's
//! own file system layer cannot hide itself. Works below PATH_MAX-long paths.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::fcntl::{AtFlags, OFlag, openat, readlinkat};
use nix::sys::stat::{FileStat, Mode, SFlag, fstatat};

/// Everything compared about one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub kind: &'static str,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub mtime: (i64, i64),
    /// Compared for regular files only (reading a symlink may update its atime).
    pub atime: Option<(i64, i64)>,
    pub rdev: u64,
    pub content: Option<[u8; 32]>,
    pub target: Option<Vec<u8>>,
    pub xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
}

/// The walk of a tree: entries by relative path, plus facts not compared one to one.
#[derive(Debug, Default)]
pub struct Walk {
    pub entries: BTreeMap<Vec<u8>, Entry>,
    /// Relative paths grouped by inode (groups of two or more only), sorted.
    pub hardlink_groups: Vec<Vec<Vec<u8>>>,
    /// Allocated bytes of each regular file.
    pub allocated: BTreeMap<Vec<u8>, u64>,
}

fn kind(st: &FileStat) -> &'static str {
    match SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT {
        SFlag::S_IFDIR => "dir",
        SFlag::S_IFREG => "file",
        SFlag::S_IFLNK => "symlink",
        SFlag::S_IFIFO => "fifo",
        SFlag::S_IFCHR => "chardev",
        SFlag::S_IFBLK => "blockdev",
        SFlag::S_IFSOCK => "socket",
        _ => "unknown",
    }
}

fn xattrs_of(dir: &OwnedFd, name: &[u8]) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let path = format!("/proc/self/fd/{}/", dir.as_raw_fd());
    let mut p = std::path::PathBuf::from(path);
    p.push(OsStr::from_bytes(name));
    let mut out = BTreeMap::new();
    let Ok(names) = xattr::list(&p) else { return out };
    for n in names {
        if let Ok(Some(v)) = xattr::get(&p, &n) {
            out.insert(n.as_bytes().to_vec(), v);
        }
    }
    out
}

fn hash_file(dir: &OwnedFd, name: &[u8]) -> [u8; 32] {
    let fd =
        openat(dir, OsStr::from_bytes(name), OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NOATIME, Mode::empty())
            .expect("open file");
    let mut f = std::fs::File::from(fd);
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    *h.finalize().as_bytes()
}

fn walk_dir(dir: &OwnedFd, rel: &[u8], walk: &mut Walk, inodes: &mut BTreeMap<(u64, u64), Vec<Vec<u8>>>) {
    let mut names: Vec<Vec<u8>> = Vec::new();
    let dup = openat(dir, ".", OFlag::O_RDONLY | OFlag::O_DIRECTORY, Mode::empty()).unwrap();
    let mut d = nix::dir::Dir::from_fd(dup).unwrap();
    for e in d.iter() {
        let e = e.unwrap();
        let n = e.file_name().to_bytes();
        if n != b"." && n != b".." {
            names.push(n.to_vec());
        }
    }
    names.sort();
    for name in names {
        let mut child = rel.to_vec();
        if !child.is_empty() {
            child.push(b'/');
        }
        child.extend_from_slice(&name);
        let os = OsStr::from_bytes(&name);
        let st = fstatat(dir, os, AtFlags::AT_SYMLINK_NOFOLLOW).unwrap();
        let k = kind(&st);
        let mut e = Entry {
            kind: k,
            mode: st.st_mode,
            uid: st.st_uid,
            gid: st.st_gid,
            size: if k == "dir" { 0 } else { st.st_size as u64 },
            mtime: (st.st_mtime, st.st_mtime_nsec),
            atime: (k == "file").then_some((st.st_atime, st.st_atime_nsec)),
            rdev: if k == "chardev" || k == "blockdev" { st.st_rdev } else { 0 },
            content: None,
            target: None,
            xattrs: xattrs_of(dir, &name),
        };
        if k != "dir" && st.st_nlink > 1 {
            inodes.entry((st.st_dev, st.st_ino)).or_default().push(child.clone());
        }
        match k {
            "file" => {
                e.content = Some(hash_file(dir, &name));
                walk.allocated.insert(child.clone(), st.st_blocks as u64 * 512);
            }
            "symlink" => e.target = Some(readlinkat(dir, os).unwrap().as_bytes().to_vec()),
            "dir" => {
                let sub = openat(
                    dir,
                    os,
                    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_NOATIME,
                    Mode::empty(),
                )
                .unwrap();
                walk_dir(&sub, &child, walk, inodes);
            }
            _ => {}
        }
        walk.entries.insert(child, e);
    }
}

/// Walks everything below `root` (not `root` itself).
pub fn walk(root: &Path) -> Walk {
    let fd = nix::fcntl::open(root, OFlag::O_RDONLY | OFlag::O_DIRECTORY, Mode::empty()).unwrap();
    let mut w = Walk::default();
    let mut inodes = BTreeMap::new();
    walk_dir(&fd, b"", &mut w, &mut inodes);
    let _ = fd.as_fd();
    w.hardlink_groups = inodes.into_values().filter(|g| g.len() > 1).collect();
    for g in &mut w.hardlink_groups {
        g.sort();
    }
    w.hardlink_groups.sort();
    w
}

/// Inode flags of `path` as `lsattr -d` prints them (None when lsattr is missing or fails).
pub fn lsattr(path: &Path) -> Option<String> {
    let out = std::process::Command::new("lsattr").arg("-d").arg(path).output().ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().map(str::to_string)
}
