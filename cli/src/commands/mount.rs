//! `cairn mount SNAPSHOT MOUNTPOINT`, `cairn mount --all MOUNTPOINT`: the engine's read-only
//! snapshot file system (`cairn_engine::snapfs`) served through FUSE until Ctrl-C, SIGTERM or
//! an unmount from outside (`umount`, `fusermount3 -u`).

use std::collections::HashSet;
use std::ffi::OsStr;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use cairn_engine::Repository;
use cairn_engine::repo::LockGuard;
use cairn_engine::snapfs::{Attr, FsError, FsOptions, Kind, SnapshotFs};
use fuser::{
    BackgroundSession, Config, Errno, FileAttr, FileHandle, FileType, FopenFlags, Generation, INodeNo, LockOwner,
    MountOption, OpenAccMode, OpenFlags, ReplyAttr, ReplyData, ReplyDirectory, ReplyEntry, ReplyOpen, ReplyXattr,
    Request, SessionACL,
};

use crate::args::{GlobalArgs, MountArgs};
use crate::{exit, signals};

/// How long the kernel may keep attributes and names: nothing in a mounted snapshot changes.
const TTL: Duration = Duration::from_secs(3600);

pub fn run(g: &GlobalArgs, a: &MountArgs) -> anyhow::Result<i32> {
    let (snapshot, mountpoint) = match (a.all, a.targets.as_slice()) {
        (true, [mp]) => (None, mp.clone()),
        (false, [snap, mp]) => (Some(snap.to_string_lossy().into_owned()), mp.clone()),
        (true, _) => bail_usage!("with --all, give only the mount point"),
        (false, _) => bail_usage!("give a snapshot (or --all) and a mount point"),
    };
    let mountpoint = resolved(&mountpoint).with_context(|| format!("{}", mountpoint.display()))?;
    // Mounting over a mount would hide it, and unmounting by path later would take the
    // wrong one down; a dead mount left by a process that was killed looks the same.
    if is_mount_point(&mountpoint) {
        bail_usage!(
            "{} is already a mount point (left by a mount whose process ended? `umount {}` first)",
            mountpoint.display(),
            shell_quoted(&mountpoint)
        );
    }
    if !mountpoint.is_dir() {
        bail_usage!("the mount point {} is not a directory", mountpoint.display());
    }
    let repo = Arc::new(super::open(g)?);
    super::audited(&repo, super::Operation::Mount, |rec| {
        // Held while mounted (and refreshed): a prune elsewhere then deletes nothing being read.
        let lock = super::read_lock(g, &repo, "mount")?;
        let options = FsOptions {
            uid: rustix::process::getuid().as_raw(),
            gid: rustix::process::getgid().as_raw(),
            cache_bytes: a.cache_size,
        };
        let (fs, what) = match &snapshot {
            Some(spec) => {
                let (id, snap) = super::find_snapshot(&repo, spec, &a.filter)?;
                (SnapshotFs::single(repo.clone(), &snap, options), format!("snapshot {}", id.short()))
            }
            None => {
                let snaps = super::filtered_snapshots(&repo, &a.filter)?;
                let what = format!("{} snapshots", snaps.len());
                (SnapshotFs::all(repo.clone(), &snaps, options), what)
            }
        };
        rec.detail = format!("{what} at {}", mountpoint.display());
        serve(g, a, &repo, lock, fs, &what, &mountpoint)
    })
}

/// `path` absolute, with symlinks and `..` resolved, as mountinfo names mount points. A dead
/// mount (its process killed) cannot be looked into: then its parent is resolved and its
/// name kept.
fn resolved(path: &Path) -> std::io::Result<PathBuf> {
    let path = std::path::absolute(path)?;
    std::fs::canonicalize(&path).or_else(|e| match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) => Ok(std::fs::canonicalize(parent)?.join(name)),
        _ => Err(e),
    })
}

/// `path` as a shell word (for a command to paste).
fn shell_quoted(path: &Path) -> String {
    let s = path.to_string_lossy();
    if s.bytes().all(|b| b.is_ascii_alphanumeric() || b"/._-+:@%".contains(&b)) {
        return s.into_owned();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The mounts on `path` (resolved), bottom first: each one's source and file system type.
fn mounts_at(path: &Path) -> Vec<(Vec<u8>, Vec<u8>)> {
    let Ok(info) = std::fs::read("/proc/self/mountinfo") else { return Vec::new() };
    info.split(|&b| b == b'\n')
        .filter_map(|line| {
            let fields: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
            let at = unescape(fields.get(4)?);
            // After the optional fields: "-", the file system type, the source.
            let dash = fields.iter().position(|f| *f == b"-")?;
            let (fstype, source) = (fields.get(dash + 1)?, fields.get(dash + 2)?);
            (at == path.as_os_str().as_bytes()).then(|| (unescape(source), fstype.to_vec()))
        })
        .collect()
}

/// Whether `path` (resolved) is a mount point now.
fn is_mount_point(path: &Path) -> bool {
    !mounts_at(path).is_empty()
}

/// Whether the topmost mount on `path` is a cairn mount (unmounting by path takes the top one).
fn cairn_on_top(path: &Path) -> bool {
    mounts_at(path).last().is_some_and(|(source, fstype)| source == b"cairn" && fstype.starts_with(b"fuse"))
}

/// A mountinfo field with its octal escapes (`\040` for a space...) decoded.
fn unescape(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while let Some(&b) = field.get(i) {
        let octal = field.get(i + 1..i + 4).filter(|d| b == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal {
            Some(d) => {
                out.push(d.iter().fold(0u8, |n, c| n.wrapping_mul(8).wrapping_add(c - b'0')));
                i += 4;
            }
            None => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

/// A line on standard error that cannot panic (a closed terminal must not bring a mount down).
fn say(msg: std::fmt::Arguments<'_>) {
    let _ = writeln!(std::io::stderr().lock(), "{msg}");
}

/// How often the lock is checked while mounted.
const LOCK_CHECK_EVERY: Duration = Duration::from_secs(10);

/// Mounts `fs` and waits for a signal (then unmounts) or an unmount from outside.
fn serve(
    g: &GlobalArgs,
    a: &MountArgs,
    repo: &Repository,
    mut lock: Option<LockGuard>,
    fs: SnapshotFs,
    what: &str,
    mountpoint: &Path,
) -> anyhow::Result<i32> {
    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::RO,
        MountOption::NoDev,
        MountOption::NoSuid,
        MountOption::FSName("cairn".into()),
        MountOption::Subtype("cairn".into()),
    ];
    if a.allow_other {
        // Other users see files under the owners and modes recorded; the one who mounted holds
        // the key and could read everything anyway, so without --allow-other nothing is checked.
        config.mount_options.push(MountOption::DefaultPermissions);
        config.acl = SessionACL::All;
    }
    // Reads of different files (and the blobs behind them) proceed at once.
    config.n_threads = Some(4);
    let stop = signals::stop_flag();
    // Closing the terminal of a mount stops it cleanly too (unmounted, lock released).
    signals::stop_also_on_hangup(&stop);
    let session = fuser::spawn_mount(Fuse::new(fs), mountpoint, &config).with_context(|| {
        format!(
            "mounting at {} (needs /dev/fuse, and fusermount3 from the fuse3 package unless run as root)",
            mountpoint.display()
        )
    })?;
    if g.json {
        let doc = serde_json::json!({ "mounted": what, "mountpoint": mountpoint });
        let _ = writeln!(std::io::stdout().lock(), "{doc}");
    } else if !g.quiet {
        say(format_args!("cairn: {what} mounted read-only at {}; Ctrl-C or `umount` to unmount", mountpoint.display()));
    }
    let mut checked = Instant::now();
    // A lock lost is taken again, at every check until that works.
    let mut want_lock = lock.is_some();
    while !stop.load(Ordering::Relaxed) && !session.guard.is_finished() {
        std::thread::sleep(Duration::from_millis(100));
        if checked.elapsed() >= LOCK_CHECK_EVERY {
            checked = Instant::now();
            if let Some(Err(e)) = lock.as_ref().map(LockGuard::check) {
                say(format_args!(
                    "cairn: warning: {e}; taking a new lock (a prune meanwhile may have removed data this mount reads)"
                ));
                lock = None;
            }
            if want_lock && lock.is_none() {
                match super::read_lock(g, repo, "mount") {
                    Ok(Some(new)) => lock = Some(new),
                    // The storage refuses writes now: nothing can prune it either.
                    Ok(None) => want_lock = false,
                    Err(e) => say(format_args!("cairn: warning: no new lock yet (trying again in 10 s): {e:#}")),
                }
            }
        }
    }
    if session.guard.is_finished() {
        // Unmounted from outside: the connection is gone. Dropping the session would unmount
        // its path once more, taking down whatever is mounted there now.
        std::mem::forget(session);
    } else if !cairn_on_top(mountpoint) {
        // Unmounting by path would take down what was mounted over this one.
        std::mem::forget(session);
        anyhow::bail!(
            "something else is mounted over {}: this mount stops serving; unmount both (`umount {}` twice)",
            mountpoint.display(),
            shell_quoted(mountpoint)
        );
    } else {
        unmount(session, mountpoint)?;
    }
    drop(lock);
    if !g.quiet && !g.json {
        say(format_args!("cairn: unmounted {}", mountpoint.display()));
    }
    Ok(exit::OK)
}

/// Unmounts after Ctrl-C or SIGTERM. A mount in use (a shell inside it) is detached: it stays
/// readable for the programs using it, and the process ends once they leave.
fn unmount(session: BackgroundSession, mountpoint: &Path) -> anyhow::Result<()> {
    use rustix::mount::UnmountFlags;
    match rustix::mount::unmount(mountpoint, UnmountFlags::empty()) {
        Ok(()) => {}
        Err(rustix::io::Errno::BUSY) => {
            say(format_args!(
                "cairn: {} is in use; detached: the programs using it can still read it, and cairn ends when they \
                 leave it",
                mountpoint.display()
            ));
            rustix::mount::unmount(mountpoint, UnmountFlags::DETACH)
                .with_context(|| format!("unmounting {}", mountpoint.display()))?;
        }
        // Not root: fuser goes through fusermount3 (lazily when busy) and waits.
        Err(rustix::io::Errno::PERM) => {
            say(format_args!(
                "cairn: unmounting {} (if it is in use, the programs using it can still read it, and cairn ends \
                 when they leave it)",
                mountpoint.display()
            ));
            return session.umount_and_join().with_context(|| format!("unmounting {}", mountpoint.display()));
        }
        Err(e) => return Err(e).with_context(|| format!("unmounting {}", mountpoint.display())),
    }
    // The kernel ends the connection once unmounted (or, detached, once the last user left).
    while !session.guard.is_finished() {
        std::thread::sleep(Duration::from_millis(100));
    }
    // Unmounted already: dropping the session would unmount the path again.
    std::mem::forget(session);
    Ok(())
}

/// The engine's file system in FUSE's terms.
struct Fuse {
    fs: SnapshotFs,
    /// Repository errors already reported (each once: the kernel retries and reads ahead).
    reported: Mutex<HashSet<String>>,
}

/// Distinct errors remembered as reported; past it, the set starts over.
const MAX_REPORTED: usize = 10_000;

impl Fuse {
    fn new(fs: SnapshotFs) -> Self {
        Fuse { fs, reported: Mutex::new(HashSet::new()) }
    }

    /// The errno for `e`; a repository failure (a missing or damaged blob) is also reported on
    /// standard error, once, since the reader only sees EIO.
    fn errno(&self, e: FsError) -> Errno {
        match e {
            FsError::NotFound => Errno::ENOENT,
            FsError::NotDir => Errno::ENOTDIR,
            FsError::NotFile | FsError::NotSymlink => Errno::EINVAL,
            FsError::Repository(e) => {
                let message = e.to_string();
                let mut reported = self.reported.lock().unwrap_or_else(PoisonError::into_inner);
                if reported.len() >= MAX_REPORTED {
                    reported.clear();
                }
                if reported.insert(message.clone()) {
                    say(format_args!("cairn: error: {message}"));
                }
                Errno::EIO
            }
        }
    }
}

fn file_type(kind: Kind) -> FileType {
    match kind {
        Kind::Dir => FileType::Directory,
        Kind::File => FileType::RegularFile,
        Kind::Symlink => FileType::Symlink,
        Kind::Fifo => FileType::NamedPipe,
        Kind::CharDevice => FileType::CharDevice,
        Kind::BlockDevice => FileType::BlockDevice,
        Kind::Socket => FileType::Socket,
    }
}

fn system_time(ns: i64) -> SystemTime {
    let d = Duration::from_nanos(ns.unsigned_abs());
    if ns >= 0 { UNIX_EPOCH + d } else { UNIX_EPOCH - d }
}

/// A device number as glibc's `makedev` packs it, re-encoded as the 32 bits FUSE carries
/// (the kernel's `new_encode_dev`: 12-bit major, 20-bit minor).
fn fuse_rdev(rdev: u64) -> u32 {
    let major = ((rdev >> 8) & 0xfff) | ((rdev >> 32) & !0xfff);
    let minor = (rdev & 0xff) | ((rdev >> 12) & !0xff);
    ((minor & 0xff) | ((major & 0xfff) << 8) | ((minor & !0xff) << 12)) as u32
}

fn file_attr(a: &Attr) -> FileAttr {
    FileAttr {
        ino: INodeNo(a.ino),
        size: a.size,
        blocks: a.allocated.div_ceil(512),
        atime: system_time(a.atime_ns),
        mtime: system_time(a.mtime_ns),
        ctime: system_time(a.ctime_ns),
        crtime: system_time(a.mtime_ns),
        kind: file_type(a.kind),
        perm: a.perm,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        rdev: fuse_rdev(a.rdev),
        blksize: 4096,
        flags: 0,
    }
}

/// Answers an xattr request for `value` of `len` bytes: its size when `size` is 0, the bytes
/// when they fit, ERANGE when they do not.
fn reply_xattr(reply: ReplyXattr, size: u32, value: &[u8]) {
    let len = u32::try_from(value.len()).unwrap_or(u32::MAX);
    if size == 0 {
        reply.size(len);
    } else if size < len {
        reply.error(Errno::ERANGE);
    } else {
        reply.data(value);
    }
}

impl fuser::Filesystem for Fuse {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match self.fs.lookup(parent.0, name.as_bytes()) {
            Ok(attr) => reply.entry(&TTL, &file_attr(&attr), Generation(0)),
            Err(e) => reply.error(self.errno(e)),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.fs.attr(ino.0) {
            Ok(attr) => reply.attr(&TTL, &file_attr(&attr)),
            Err(e) => reply.error(self.errno(e)),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.fs.readlink(ino.0) {
            Ok(target) => reply.data(&target),
            Err(e) => reply.error(self.errno(e)),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        if flags.acc_mode() != OpenAccMode::O_RDONLY {
            return reply.error(Errno::EROFS);
        }
        match self.fs.open(ino.0) {
            // The content never changes: the kernel may keep what it read across opens.
            Ok(()) => reply.opened(FileHandle(0), FopenFlags::FOPEN_KEEP_CACHE),
            Err(FsError::NotFile) if self.fs.attr(ino.0).is_ok_and(|a| a.kind == Kind::Dir) => {
                reply.error(Errno::EISDIR)
            }
            Err(e) => reply.error(self.errno(e)),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.fs.read(ino.0, offset, size) {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(self.errno(e)),
        }
    }

    fn readdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        let (entries, parent) = match (self.fs.entries(ino.0), self.fs.parent(ino.0)) {
            (Ok(entries), Ok(parent)) => (entries, parent),
            (Err(e), _) | (_, Err(e)) => return reply.error(self.errno(e)),
        };
        let dots = [(b".".as_slice(), ino.0, Kind::Dir), (b"..".as_slice(), parent, Kind::Dir)];
        let all = dots.into_iter().chain(entries.iter().map(|e| (e.name.as_slice(), e.ino, e.kind)));
        for (i, (name, ino, kind)) in all.enumerate().skip(usize::try_from(offset).unwrap_or(usize::MAX)) {
            // The offset given back is where the next call starts.
            if reply.add(INodeNo(ino), i as u64 + 1, file_type(kind), OsStr::from_bytes(name)) {
                break;
            }
        }
        reply.ok();
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        match self.fs.xattrs(ino.0) {
            Ok(xattrs) => match xattrs.iter().find(|(n, _)| n.as_slice() == name.as_bytes()) {
                Some((_, value)) => reply_xattr(reply, size, value),
                None => reply.error(Errno::NO_XATTR),
            },
            Err(e) => reply.error(self.errno(e)),
        }
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        match self.fs.xattrs(ino.0) {
            Ok(xattrs) => {
                let names: Vec<u8> = xattrs.iter().flat_map(|(n, _)| n.iter().copied().chain([0])).collect();
                reply_xattr(reply, size, &names);
            }
            Err(e) => reply.error(self.errno(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fuse_rdev;

    #[test]
    fn device_numbers_reencode_for_fuse() {
        // makedev(8, 1) (sda1) and makedev(259, 70000) in glibc's layout.
        let makedev = |major: u64, minor: u64| {
            ((major & 0xfff) << 8) | ((major & !0xfff) << 32) | (minor & 0xff) | ((minor & !0xff) << 12)
        };
        assert_eq!(fuse_rdev(makedev(8, 1)), (8 << 8) | 1);
        assert_eq!(fuse_rdev(makedev(259, 70000)), (70000 & 0xff) | (259 << 8) | ((70000 & !0xff) << 12));
        assert_eq!(fuse_rdev(0), 0);
    }
}
