//! Writing entries back (restore): create, link, set owner, mode, times, all relative to an
//! open parent directory and never through a symlink at the last component.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Timespec, Timestamps};
use rustix::io::Errno;

fn os(name: &[u8]) -> &OsStr {
    OsStr::from_bytes(name)
}

fn timespec(ns: i64) -> Timespec {
    Timespec { tv_sec: ns.div_euclid(1_000_000_000), tv_nsec: ns.rem_euclid(1_000_000_000) as _ }
}

fn timestamps(atime_ns: i64, mtime_ns: i64) -> Timestamps {
    Timestamps { last_access: timespec(atime_ns), last_modification: timespec(mtime_ns) }
}

/// Creates (or truncates) the regular file `name` in `dir` for writing; an existing entry of
/// another kind, or a symlink, is replaced rather than followed.
pub fn create_file_at(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<File> {
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC | OFlags::CLOEXEC | OFlags::NOFOLLOW;
    match rustix::fs::openat(dir, os(name), flags, Mode::from_raw_mode(0o600)) {
        Ok(fd) => Ok(File::from(fd)),
        Err(Errno::LOOP | Errno::ISDIR | Errno::NXIO | Errno::TXTBSY) => {
            remove_at(dir, name)?;
            Ok(File::from(rustix::fs::openat(dir, os(name), flags, Mode::from_raw_mode(0o600))?))
        }
        Err(e) => Err(e.into()),
    }
}

/// Renames `from` to `to`, both in `dir`, replacing what is at `to`: a file or symlink
/// atomically, an empty directory by removing it first (as [`create_file_at`] does).
pub fn rename_at(dir: BorrowedFd<'_>, from: &[u8], to: &[u8]) -> io::Result<()> {
    match rustix::fs::renameat(dir, os(from), dir, os(to)) {
        Ok(()) => Ok(()),
        Err(Errno::ISDIR | Errno::NOTEMPTY | Errno::EXIST) => {
            remove_at(dir, to)?;
            Ok(rustix::fs::renameat(dir, os(from), dir, os(to))?)
        }
        Err(e) => Err(e.into()),
    }
}

/// Opens the existing regular file `name` in `dir` for writing (no truncation, no symlinks).
pub fn open_write_at(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<File> {
    let flags = OFlags::WRONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW;
    Ok(File::from(rustix::fs::openat(dir, os(name), flags, Mode::empty())?))
}

/// Removes `name` in `dir` and, for a directory, everything below it; missing is fine.
pub fn remove_tree_at(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<()> {
    match rustix::fs::unlinkat(dir, os(name), AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => return Ok(()),
        Err(Errno::ISDIR) => {}
        Err(e) => return Err(e.into()),
    }
    let sub = super::open_dir_at(dir, name)?;
    for child in super::list_dir(sub.as_fd())? {
        remove_tree_at(sub.as_fd(), &child)?;
    }
    drop(sub);
    match rustix::fs::unlinkat(dir, os(name), AtFlags::REMOVEDIR) {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Removes `name` in `dir` (a file, a symlink, or an empty directory); missing is fine.
pub fn remove_at(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<()> {
    match rustix::fs::unlinkat(dir, os(name), AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        Err(Errno::ISDIR) => match rustix::fs::unlinkat(dir, os(name), AtFlags::REMOVEDIR) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(e.into()),
        },
        Err(e) => Err(e.into()),
    }
}

/// Makes the directory `name` in `dir` (private until its metadata is applied at the end);
/// an existing directory is fine, anything else in the way is replaced. Returns whether it
/// made one.
pub fn make_dir_at(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<bool> {
    match rustix::fs::mkdirat(dir, os(name), Mode::from_raw_mode(0o700)) {
        Ok(()) => Ok(true),
        Err(Errno::EXIST) => {
            let st = super::stat_at(dir, name)?;
            if st.file_type() == FileType::Directory {
                return Ok(false);
            }
            remove_at(dir, name)?;
            rustix::fs::mkdirat(dir, os(name), Mode::from_raw_mode(0o700))?;
            Ok(true)
        }
        Err(e) => Err(e.into()),
    }
}

/// Makes the symlink `name` -> `target` in `dir`, replacing what is there.
pub fn make_symlink_at(dir: BorrowedFd<'_>, name: &[u8], target: &[u8]) -> io::Result<()> {
    match rustix::fs::symlinkat(os(target), dir, os(name)) {
        Err(Errno::EXIST) => {
            remove_at(dir, name)?;
            rustix::fs::symlinkat(os(target), dir, os(name)).map_err(Into::into)
        }
        other => other.map_err(Into::into),
    }
}

/// What special node to make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Special {
    /// A named pipe.
    Fifo,
    /// A character device.
    CharDevice(u64),
    /// A block device.
    BlockDevice(u64),
}

/// Makes a FIFO or device node `name` in `dir`, replacing what is there. Devices need root.
pub fn make_special_at(dir: BorrowedFd<'_>, name: &[u8], what: Special, mode: u32) -> io::Result<()> {
    let (ft, dev) = match what {
        Special::Fifo => (FileType::Fifo, 0),
        Special::CharDevice(d) => (FileType::CharacterDevice, d),
        Special::BlockDevice(d) => (FileType::BlockDevice, d),
    };
    let mode = Mode::from_raw_mode(mode & 0o7777);
    match rustix::fs::mknodat(dir, os(name), ft, mode, dev) {
        Err(Errno::EXIST) => {
            remove_at(dir, name)?;
            rustix::fs::mknodat(dir, os(name), ft, mode, dev).map_err(Into::into)
        }
        other => other.map_err(Into::into),
    }
}

/// Makes `new_name` in `new_dir` another link to `old_name` in `old_dir`.
pub fn link_at(old_dir: BorrowedFd<'_>, old_name: &[u8], new_dir: BorrowedFd<'_>, new_name: &[u8]) -> io::Result<()> {
    match rustix::fs::linkat(old_dir, os(old_name), new_dir, os(new_name), AtFlags::empty()) {
        Err(Errno::EXIST) => {
            remove_at(new_dir, new_name)?;
            rustix::fs::linkat(old_dir, os(old_name), new_dir, os(new_name), AtFlags::empty()).map_err(Into::into)
        }
        other => other.map_err(Into::into),
    }
}

/// Sets owner and group of `name` in `dir` (not following a symlink).
pub fn set_owner_at(dir: BorrowedFd<'_>, name: &[u8], uid: u32, gid: u32) -> io::Result<()> {
    rustix::fs::chownat(
        dir,
        os(name),
        Some(rustix::fs::Uid::from_raw(uid)),
        Some(rustix::fs::Gid::from_raw(gid)),
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .map_err(Into::into)
}

/// Sets the permission bits (setuid, setgid and sticky included) of `name` in `dir`.
pub fn set_mode_at(dir: BorrowedFd<'_>, name: &[u8], mode: u32) -> io::Result<()> {
    rustix::fs::chmodat(dir, os(name), Mode::from_raw_mode(mode & 0o7777), AtFlags::empty()).map_err(Into::into)
}

/// Sets atime and mtime of `name` in `dir` (of the link itself for symlinks).
pub fn set_times_at(dir: BorrowedFd<'_>, name: &[u8], atime_ns: i64, mtime_ns: i64) -> io::Result<()> {
    rustix::fs::utimensat(dir, os(name), &timestamps(atime_ns, mtime_ns), AtFlags::SYMLINK_NOFOLLOW).map_err(Into::into)
}

/// Sets owner and group of an open file.
pub fn set_owner_fd(fd: impl AsFd, uid: u32, gid: u32) -> io::Result<()> {
    rustix::fs::fchown(fd, Some(rustix::fs::Uid::from_raw(uid)), Some(rustix::fs::Gid::from_raw(gid)))
        .map_err(Into::into)
}

/// Sets the permission bits of an open file.
pub fn set_mode_fd(fd: impl AsFd, mode: u32) -> io::Result<()> {
    rustix::fs::fchmod(fd, Mode::from_raw_mode(mode & 0o7777)).map_err(Into::into)
}

/// Sets atime and mtime of an open file.
pub fn set_times_fd(fd: impl AsFd, atime_ns: i64, mtime_ns: i64) -> io::Result<()> {
    rustix::fs::futimens(fd, &timestamps(atime_ns, mtime_ns)).map_err(Into::into)
}

/// Sets one xattr on an open file.
pub fn set_xattr_fd(fd: impl AsFd, key: &[u8], value: &[u8]) -> io::Result<()> {
    rustix::fs::fsetxattr(fd, os(key), value, rustix::fs::XattrFlags::empty()).map_err(Into::into)
}
