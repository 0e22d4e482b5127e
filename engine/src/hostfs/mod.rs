//! The host's file system, for sources (backup) and targets (restore). Every access is made
//! relative to an open directory (openat, fstatat, readlinkat, mknodat... through rustix), so
//! paths of any depth work (no PATH_MAX limit) and a directory swapped for a symlink in the
//! middle of a walk is never followed.

mod owners;
mod sparse;
mod target;
mod xattr;

pub use owners::OwnerNames;
pub use sparse::{ExtentReader, data_extents, holes_of};
pub use target::{
    Special, create_file_at, link_at, make_dir_at, make_special_at, make_symlink_at, open_write_at, remove_at,
    remove_tree_at, rename_at, set_mode_at, set_mode_fd, set_owner_at, set_owner_fd, set_times_at, set_times_fd,
    set_xattr_fd,
};
pub use xattr::{Xattrs, read_xattrs_at, read_xattrs_fd, set_xattr_at};

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags};

/// What `lstat` says about an entry, in fixed-width units on every architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// Device holding the inode.
    pub dev: u64,
    /// Inode number.
    pub ino: u64,
    /// Type and permission bits.
    pub mode: u32,
    /// Hard link count.
    pub nlink: u64,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Device number of a device node.
    pub rdev: u64,
    /// Size in bytes.
    pub size: u64,
    /// Allocated 512-byte blocks (smaller than size / 512 for sparse files).
    pub blocks: u64,
    /// Access time, ns since the epoch.
    pub atime_ns: i64,
    /// Modification time, ns since the epoch.
    pub mtime_ns: i64,
    /// Status change time, ns since the epoch.
    pub ctime_ns: i64,
}

fn ns(secs: i64, nsec: i64) -> i64 {
    secs.saturating_mul(1_000_000_000).saturating_add(nsec)
}

impl Stat {
    // The field types of `struct stat` differ between architectures, so some of these casts
    // are no-ops on x86_64 and widening elsewhere.
    #[allow(clippy::unnecessary_cast, clippy::useless_conversion)]
    fn from_raw(s: &rustix::fs::Stat) -> Self {
        Stat {
            dev: s.st_dev as u64,
            ino: s.st_ino as u64,
            mode: s.st_mode as u32,
            nlink: s.st_nlink as u64,
            uid: s.st_uid as u32,
            gid: s.st_gid as u32,
            rdev: s.st_rdev as u64,
            size: u64::try_from(s.st_size).unwrap_or(0),
            blocks: u64::try_from(s.st_blocks).unwrap_or(0),
            atime_ns: ns(s.st_atime as i64, s.st_atime_nsec as i64),
            mtime_ns: ns(s.st_mtime as i64, s.st_mtime_nsec as i64),
            ctime_ns: ns(s.st_ctime as i64, s.st_ctime_nsec as i64),
        }
    }

    /// The entry's type.
    pub fn file_type(&self) -> FileType {
        FileType::from_raw_mode(self.mode)
    }

    /// Whether the file's allocated blocks cannot hold its size, i.e. it may have holes.
    pub fn maybe_sparse(&self) -> bool {
        self.blocks.saturating_mul(512) < self.size
    }
}

fn ioerr(e: rustix::io::Errno) -> io::Error {
    io::Error::from(e)
}

/// `lstat` of `name` in `dir` (symlinks are not followed).
pub fn stat_at(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<Stat> {
    rustix::fs::statat(dir, OsStr::from_bytes(name), AtFlags::SYMLINK_NOFOLLOW)
        .map(|s| Stat::from_raw(&s))
        .map_err(ioerr)
}

/// `fstat` of an open file or directory.
pub fn fstat(fd: impl AsFd) -> io::Result<Stat> {
    rustix::fs::fstat(fd).map(|s| Stat::from_raw(&s)).map_err(ioerr)
}

/// Opens with O_NOATIME when the kernel allows it (owner or CAP_FOWNER): reading must not change
/// what the next backup sees. Falls back to a plain open on EPERM.
fn open_noatime(dir: BorrowedFd<'_>, name: &OsStr, flags: OFlags) -> io::Result<OwnedFd> {
    let flags = flags | OFlags::CLOEXEC | OFlags::NOFOLLOW;
    match rustix::fs::openat(dir, name, flags | OFlags::NOATIME, Mode::empty()) {
        Err(rustix::io::Errno::PERM) => rustix::fs::openat(dir, name, flags, Mode::empty()).map_err(ioerr),
        other => other.map_err(ioerr),
    }
}

/// Opens the directory `name` in `dir` for listing (never through a symlink).
pub fn open_dir_at(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<OwnedFd> {
    open_noatime(dir, OsStr::from_bytes(name), OFlags::RDONLY | OFlags::DIRECTORY)
}

/// Opens a directory by path (the parents of the paths a user names).
pub fn open_dir(path: &Path) -> io::Result<OwnedFd> {
    rustix::fs::open(path, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty()).map_err(ioerr)
}

/// Opens the regular file `name` in `dir` for reading. O_NONBLOCK keeps a file swapped for a
/// FIFO since it was listed from blocking the backup; it changes nothing for regular files.
pub fn open_file_at(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<File> {
    let fd = open_noatime(dir, OsStr::from_bytes(name), OFlags::RDONLY | OFlags::NONBLOCK)?;
    Ok(File::from(fd))
}

/// The names in an open directory, without `.` and `..`, sorted by bytes.
///
/// Reads with `getdents64` on `dir` itself, rewound first: one `lseek` and a `getdents64` per
/// 32 KiB of entries. `rustix::fs::Dir::read_from` reopens the directory through `"."` and
/// costs four more system calls per listing, which a walk of 100,000 directories notices.
/// `dir` must be a descriptor opened for reading (not `O_PATH`) that no other thread lists or
/// seeks meanwhile: the listing moves its offset.
pub fn list_dir(dir: BorrowedFd<'_>) -> io::Result<Vec<Vec<u8>>> {
    rustix::fs::seek(dir, rustix::fs::SeekFrom::Start(0)).map_err(ioerr)?;
    let mut buf: Vec<u8> = Vec::with_capacity(32 * 1024);
    let mut names = Vec::new();
    loop {
        let room = buf.capacity();
        let mut entries = rustix::fs::RawDir::new(dir, buf.spare_capacity_mut());
        let mut too_small = false;
        while let Some(entry) = entries.next() {
            match entry {
                Ok(entry) => {
                    let name = entry.file_name().to_bytes();
                    if name != b"." && name != b".." {
                        names.push(name.to_vec());
                    }
                }
                // One entry larger than the buffer (a name longer than any Linux file system
                // allows today): the offset has not moved past it, so read on with more room.
                Err(rustix::io::Errno::INVAL) if room < 1 << 20 => {
                    too_small = true;
                    break;
                }
                Err(e) => return Err(ioerr(e)),
            }
        }
        if !too_small {
            break;
        }
        buf.reserve(buf.capacity() * 2);
    }
    names.sort_unstable();
    Ok(names)
}

/// The target of the symlink `name` in `dir`, as raw bytes.
pub fn read_link_at(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<Vec<u8>> {
    rustix::fs::readlinkat(dir, OsStr::from_bytes(name), Vec::new()).map(|c| c.into_bytes()).map_err(ioerr)
}

/// Files at least this large are read with a wider read-ahead ([`advise_sequential`]).
pub const SEQUENTIAL_FROM: u64 = 1 << 20;
/// How far ahead [`advise_sequential`] asks the kernel to read at once.
const ADVISED_AHEAD: u64 = 8 << 20;
/// What one `posix_fadvise(WILLNEED)` reads at most (the usual read-ahead window).
const WILLNEED_STEP: u64 = 128 << 10;

/// Tells the kernel a file will be read whole, from the start: sequential access (a read-ahead
/// window twice the default) and its first [`ADVISED_AHEAD`] bytes queued now, so with a cold
/// page cache the disk works ahead of the reader instead of one window at a time. Advice only:
/// errors change nothing.
pub fn advise_sequential(fd: impl AsFd, size: u64) {
    let fd = fd.as_fd();
    let _ = rustix::fs::fadvise(fd, 0, None, rustix::fs::Advice::Sequential);
    let mut offset = 0;
    while offset < size.min(ADVISED_AHEAD) {
        let Some(step) = std::num::NonZeroU64::new(WILLNEED_STEP.min(size - offset)) else { break };
        if rustix::fs::fadvise(fd, offset, Some(step), rustix::fs::Advice::WillNeed).is_err() {
            return;
        }
        offset += step.get();
    }
}

/// Tells the kernel the first `size` bytes of a file will be read soon: their reads are queued
/// now, without waiting for them (in steps of [`WILLNEED_STEP`], what one call reads). A
/// thread that queues the reads of many small files this way, then reads them, waits about
/// once instead of once per file, and the disk gets them together. Advice only: errors change
/// nothing.
pub fn advise_willneed(fd: impl AsFd, size: u64) {
    let fd = fd.as_fd();
    let mut offset = 0;
    while let Some(step) = std::num::NonZeroU64::new(WILLNEED_STEP.min(size - offset)) {
        if rustix::fs::fadvise(fd, offset, Some(step), rustix::fs::Advice::WillNeed).is_err() {
            return;
        }
        offset += step.get();
    }
}

/// Appends to `content` what the page cache holds of the next `limit` bytes of `file` (from
/// its current offset, which moves past them), without waiting for the disk
/// (`preadv2(RWF_NOWAIT)`): all of them for a file read recently, none or a part for one that
/// is not (the kernel starts no read for those: since Linux 5.9 `RWF_NOWAIT` does no I/O).
/// Returns how many were appended; 0 on any error (`EAGAIN`: nothing cached; a kernel or file
/// that does not take the flag), and then nothing was read and the caller reads as usual.
pub fn read_cached(file: &File, content: &mut Vec<u8>, limit: usize) -> usize {
    let start = content.len();
    let Some(end) = start.checked_add(limit) else { return 0 };
    content.resize(end, 0);
    let buf = content.get_mut(start..).unwrap_or_default();
    let got = rustix::io::preadv2(file, &mut [io::IoSliceMut::new(buf)], u64::MAX, rustix::io::ReadWriteFlags::NOWAIT)
        .unwrap_or(0);
    content.truncate(start + got);
    got
}

/// Whether the page cache holds the byte of `file` at `offset`, asked without waiting for the
/// disk and without starting a read (`preadv2(RWF_NOWAIT)`). `false` where it does not, or the
/// kernel cannot tell.
pub fn cached_at(file: &File, offset: u64) -> bool {
    let mut byte = [0u8; 1];
    let nowait = rustix::io::ReadWriteFlags::NOWAIT;
    rustix::io::preadv2(file, &mut [io::IoSliceMut::new(&mut byte)], offset, nowait).is_ok_and(|n| n == 1)
}

/// Primes an open file for a read soon: queues the read of its first `bytes` in the kernel
/// ([`advise_willneed`]) unless its first byte is cached already ([`cached_at`]: then the file
/// is taken to be). Returns whether it was cached. What the walk's read-ahead does to a file it
/// will not read itself.
pub fn prime(file: &File, bytes: u64) -> bool {
    if cached_at(file, 0) {
        return true;
    }
    advise_willneed(file, bytes);
    false
}

/// This process's open-file limit (the soft one; unlimited when it cannot be read): what the
/// walk's read-ahead sizes its share of open descriptors from.
pub fn open_file_limit() -> u64 {
    rustix::process::getrlimit(rustix::process::Resource::Nofile).current.unwrap_or(u64::MAX)
}

/// Inode flags (`FS_IOC_GETFLAGS`, what `lsattr` shows); 0 where the file system has none.
pub fn inode_flags(fd: impl AsFd) -> u32 {
    rustix::fs::ioctl_getflags(fd).map(|f| f.bits()).unwrap_or(0)
}

/// Sets inode flags (`chattr`).
pub fn set_inode_flags(fd: impl AsFd, flags: u32) -> io::Result<()> {
    rustix::fs::ioctl_setflags(fd, rustix::fs::IFlags::from_bits_retain(flags)).map_err(ioerr)
}

/// A short path that names `name` in the open directory `dir` whatever the directory's own
/// path length: for the path-only system calls (`lgetxattr`, `lsetxattr`) on entries that
/// cannot be opened, such as symlinks.
pub fn proc_path(dir: BorrowedFd<'_>, name: &[u8]) -> PathBuf {
    use std::os::fd::AsRawFd;
    let mut p = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
    p.push(OsStr::from_bytes(name));
    p
}

/// The longest relative path handed to one `openat` when walking down a long path.
const PATH_PIECE: usize = 2048;

/// Opens the directory at `rel` (`/`-separated, relative, may be empty) below `root`, in pieces
/// short enough for the kernel, so it works for paths longer than PATH_MAX.
pub fn open_dir_path(root: BorrowedFd<'_>, rel: &[u8]) -> io::Result<OwnedFd> {
    // Opened from `root` itself: no handle of `root` (an `openat(root, ".")` per call, which
    // restore makes for every file) unless `rel` is empty.
    let mut current: Option<OwnedFd> = None;
    let mut piece: Vec<u8> = Vec::new();
    let components = rel.split(|&b| b == b'/').filter(|c| !c.is_empty());
    for component in components {
        if !piece.is_empty() && piece.len() + 1 + component.len() > PATH_PIECE {
            current = Some(open_dir_piece(current.as_ref().map_or(root, |c| c.as_fd()), &piece)?);
            piece.clear();
        }
        if !piece.is_empty() {
            piece.push(b'/');
        }
        piece.extend_from_slice(component);
    }
    if !piece.is_empty() {
        current = Some(open_dir_piece(current.as_ref().map_or(root, |c| c.as_fd()), &piece)?);
    }
    match current {
        Some(fd) => Ok(fd),
        None => rustix::fs::openat(root, ".", OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
            .map_err(ioerr),
    }
}

fn open_dir_piece(dir: BorrowedFd<'_>, piece: &[u8]) -> io::Result<OwnedFd> {
    rustix::fs::openat(
        dir,
        OsStr::from_bytes(piece),
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::empty(),
    )
    .map_err(ioerr)
}

/// Splits `a/b/c` into (`a/b`, `c`); a single component has an empty parent.
pub fn split_parent(rel: &[u8]) -> (&[u8], &[u8]) {
    match rel.iter().rposition(|&b| b == b'/') {
        Some(i) => (rel.get(..i).unwrap_or_default(), rel.get(i + 1..).unwrap_or_default()),
        None => (&[], rel),
    }
}

/// Whether this process runs with the effective uid of root (may create devices, chown).
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Advice is advice: on a file larger than the window advised, on an empty one and on a
    /// pipe (which refuses it), nothing fails and what is read afterwards is the file.
    #[test]
    fn read_advice_changes_nothing_a_reader_sees() {
        let dir = tempfile::tempdir().unwrap();
        let bytes: Vec<u8> = (0..(ADVISED_AHEAD + 300_000)).map(|i| (i % 251) as u8).collect();
        std::fs::write(dir.path().join("big"), &bytes).unwrap();
        std::fs::write(dir.path().join("empty"), b"").unwrap();
        for (name, want) in [("big", &bytes[..]), ("empty", &[][..])] {
            let advice: [fn(&std::fs::File, u64); 3] = [
                |f, n| advise_sequential(f, n),
                |f, n| advise_willneed(f, n),
                |f, n| {
                    prime(f, n);
                },
            ];
            for advise in advice {
                let mut f = std::fs::File::open(dir.path().join(name)).unwrap();
                advise(&f, want.len() as u64);
                let mut read = Vec::new();
                std::io::Read::read_to_end(&mut f, &mut read).unwrap();
                assert!(read == want, "{name}");
            }
        }
        let mut child = std::process::Command::new("true").stdout(std::process::Stdio::piped()).spawn().unwrap();
        advise_sequential(child.stdout.as_ref().unwrap(), 1 << 30);
        advise_willneed(child.stdout.as_ref().unwrap(), 1 << 30);
        child.wait().unwrap();
    }

    /// What the page cache gives is the file's start, appended after what `content` held, and a
    /// read from the file's offset goes on from there: whole, whatever was cached (a pipe,
    /// which cannot be read this way, gives nothing).
    #[test]
    fn a_read_from_the_page_cache_is_a_prefix_and_reading_goes_on_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let bytes: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(dir.path().join("f"), &bytes).unwrap();
        for limit in [0, 1, 4096, 100_000, bytes.len(), bytes.len() + 10] {
            let mut f = std::fs::File::open(dir.path().join("f")).unwrap();
            let mut content = b"held".to_vec();
            let got = read_cached(&f, &mut content, limit);
            assert!(got <= limit.min(bytes.len()), "{limit}");
            assert_eq!(content.len(), 4 + got);
            assert!(content[4..] == bytes[..got], "{limit}");
            std::io::Read::read_to_end(&mut f, &mut content).unwrap();
            assert!(content[4..] == bytes[..], "{limit}");
        }
        let mut child = std::process::Command::new("true").stdout(std::process::Stdio::piped()).spawn().unwrap();
        let pipe = File::from(OwnedFd::from(child.stdout.take().unwrap()));
        let mut content = Vec::new();
        assert_eq!(read_cached(&pipe, &mut content, 10), 0);
        assert!(content.is_empty());
        child.wait().unwrap();
    }

    #[test]
    fn paths_longer_than_path_max_open_in_pieces() {
        let dir = tempfile::tempdir().unwrap();
        let root = open_dir(dir.path()).unwrap();
        let name = [b'd'; 200];
        let mut rel = Vec::new();
        let mut fd = open_dir_path(root.as_fd(), b"").unwrap();
        for _ in 0..30 {
            rustix::fs::mkdirat(&fd, OsStr::from_bytes(&name), Mode::from_raw_mode(0o755)).unwrap();
            fd = open_dir_at(fd.as_fd(), &name).unwrap();
            if !rel.is_empty() {
                rel.push(b'/');
            }
            rel.extend_from_slice(&name);
        }
        assert!(rel.len() > 4096);
        let deep = open_dir_path(root.as_fd(), &rel).unwrap();
        assert_eq!(fstat(&deep).unwrap().ino, fstat(&fd).unwrap().ino);
        let (parent, last) = split_parent(&rel);
        assert_eq!(last, &name[..]);
        let p = open_dir_path(root.as_fd(), parent).unwrap();
        assert_eq!(stat_at(p.as_fd(), last).unwrap().ino, fstat(&fd).unwrap().ino);
    }

    #[test]
    fn listing_is_sorted_and_skips_dot_entries() {
        let dir = tempfile::tempdir().unwrap();
        for n in ["b", "a", "c"] {
            std::fs::write(dir.path().join(n), b"").unwrap();
        }
        let fd = open_dir(dir.path()).unwrap();
        assert_eq!(list_dir(fd.as_fd()).unwrap(), vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]);
    }

    #[test]
    fn listing_spans_many_reads_and_starts_over_on_the_same_descriptor() {
        let dir = tempfile::tempdir().unwrap();
        // About 80 bytes per entry: 3,000 entries take several 32 KiB reads.
        let mut want: Vec<Vec<u8>> =
            (0..3000).map(|i| format!("{i:0>48}-{}", "x".repeat(i % 7)).into_bytes()).collect();
        for n in &want {
            std::fs::write(dir.path().join(OsStr::from_bytes(n)), b"").unwrap();
        }
        want.sort();
        let fd = open_dir(dir.path()).unwrap();
        assert_eq!(list_dir(fd.as_fd()).unwrap(), want);
        // The descriptor is now at the end of the directory: a second listing rewinds it.
        assert_eq!(list_dir(fd.as_fd()).unwrap(), want);
    }
}
