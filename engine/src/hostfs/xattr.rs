//! Extended attributes (every namespace the process may read: `user.*`, `security.*`,
//! `trusted.*` as root, and the POSIX ACLs `system.posix_acl_access` / `_default`, which are
//! stored as the kernel's own xattr encoding). Entries that cannot be opened (symlinks, device
//! nodes) are reached through `/proc/self/fd/<dir>/<name>` with the `l*xattr` calls.

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;

use rustix::io::Errno;

/// (name, value) pairs, sorted by name.
pub type Xattrs = Vec<(Vec<u8>, Vec<u8>)>;

/// Calls `fill` with a growing buffer until the value fits (values may grow between the size
/// query and the read).
fn sized(mut fill: impl FnMut(&mut [u8]) -> Result<usize, Errno>) -> Result<Vec<u8>, Errno> {
    let mut buf = vec![0u8; 256];
    loop {
        match fill(&mut buf) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(buf);
            }
            Err(Errno::RANGE) if buf.len() < (1 << 24) => buf.resize(buf.len() * 4, 0),
            Err(e) => return Err(e),
        }
    }
}

fn collect(
    list: impl FnMut(&mut [u8]) -> Result<usize, Errno>,
    mut get: impl FnMut(&OsStr, &mut [u8]) -> Result<usize, Errno>,
) -> io::Result<Xattrs> {
    let names = match sized(list) {
        Ok(n) => n,
        // No xattr support on this file system (or for this kind of node): nothing to record.
        Err(Errno::OPNOTSUPP | Errno::NOSYS) => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut out = Vec::new();
    for name in names.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        match sized(|buf| get(OsStr::from_bytes(name), buf)) {
            Ok(value) => out.push((name.to_vec(), value)),
            // Removed since it was listed.
            Err(Errno::NODATA) => {}
            Err(e) => return Err(e.into()),
        }
    }
    out.sort();
    Ok(out)
}

/// The xattrs of an open file or directory.
pub fn read_xattrs_fd(fd: impl AsFd) -> io::Result<Xattrs> {
    let fd = fd.as_fd();
    collect(|buf| rustix::fs::flistxattr(fd, buf), |name, buf| rustix::fs::fgetxattr(fd, name, buf))
}

/// The xattrs of `name` in `dir`, without following a symlink.
pub fn read_xattrs_at(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<Xattrs> {
    let path = super::proc_path(dir, name);
    collect(|buf| rustix::fs::llistxattr(&path, buf), |key, buf| rustix::fs::lgetxattr(&path, key, buf))
}

/// Sets one xattr on `name` in `dir`, without following a symlink.
pub fn set_xattr_at(dir: BorrowedFd<'_>, name: &[u8], key: &[u8], value: &[u8]) -> io::Result<()> {
    let path = super::proc_path(dir, name);
    rustix::fs::lsetxattr(&path, OsStr::from_bytes(key), value, rustix::fs::XattrFlags::empty()).map_err(Into::into)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_xattrs_round_trip_through_fd_and_dir_access() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, b"x").unwrap();
        let fd = super::super::open_dir(dir.path()).unwrap();
        if set_xattr_at(fd.as_fd(), b"f", b"user.b", b"2").is_err() {
            // The temporary directory's file system has no user xattrs: nothing to test here.
            return;
        }
        set_xattr_at(fd.as_fd(), b"f", b"user.a", &[0, 1, 255]).unwrap();
        let want = vec![(b"user.a".to_vec(), vec![0, 1, 255]), (b"user.b".to_vec(), b"2".to_vec())];
        let at = read_xattrs_at(fd.as_fd(), b"f").unwrap();
        assert_eq!(at.iter().filter(|(k, _)| k.starts_with(b"user.")).cloned().collect::<Vec<_>>(), want);
        let file = std::fs::File::open(&f).unwrap();
        let by_fd = read_xattrs_fd(&file).unwrap();
        assert_eq!(by_fd, at);
    }
}
