//! Directories listed ahead of the walk, on I/O threads.
//!
//! The walk is one thread, depth first in name order, so the tree comes out ordered. With a cold
//! page cache every directory costs it disk reads it waits for, one after the other: the
//! directory's blocks (`getdents`), then the inodes of its entries (one `lstat` each). On an
//! unchanged snapshot that is nearly all the walk waits on.
//!
//! Reader threads ([`THREADS`]) list directories in the order the walk will enter them: each
//! opens a directory as the walker would, lists it, lstats every entry and queues the
//! directory's subdirectories, and a reader always starts the queued directory the walk will
//! enter first (depth first, names in byte order), so the readers run down the tree just ahead
//! of the walker without waiting for it. (Taking the latest queued instead, a stack, sent the
//! readers deep into whichever subtree a reader had just listed: on an unchanged snapshot of
//! 14,000 directories the walker then found 81% of them not started and listed them itself,
//! one disk read at a time.) The walker takes a directory's listing when it enters it: ready,
//! or being listed (it waits), or not started (it lists it itself). Once the walker is done
//! with a directory, whatever was listed below it and never taken (gone, a marker file found)
//! is dropped.
//!
//! The readers skip what the walk would not enter: directories the exclude patterns name,
//! directories holding an exclusion marker (nothing below them is listed), other devices under
//! `--one-file-system`. A path is often excluded because it hangs (a dead network mount), so
//! nothing waits for the readers: the walker never waits on a directory it does not enter, and
//! the threads are not joined.
//!
//! A directory is known by its device and inode, as the lstat of its entry in its parent gave
//! them; a reader that opens another inode by that name (the entry was replaced) lists nothing.
//! A listing can wait a while for the walker (a large file is being read), so the walker takes
//! it only if the directory is still there under that name and unchanged since it was listed
//! (`Listed::still_current`); otherwise it lists the directory again itself.
//!
//! On a first snapshot (no parent: every file will be read) a reader also primes the first
//! [`PRIMED_FILES`] files of each directory it lists: it opens each and queues the read of its
//! first [`PRIMED_FILE_BYTES`] in the kernel (`WILLNEED`, which does not wait), unless the
//! directory's first file is in the page cache already (then it takes the rest to be too).
//! The walk's own read-ahead of small files ([`super::readahead`]) only looks into the
//! directory being walked; most directories hold a few files, so at every directory it started
//! over, waiting for the disk, while the compression threads ran out of work. Cold first
//! snapshot of the mixed set (14,000 directories, 105,000 files): 6.9-7.0 s against
//! 8.1-9.0 s; priming every file rather than the first 64 was no faster there, and on the set
//! of 200,000 small files in directories of 1,000 it cost 15% (an extra open per file that
//! the read-ahead, with whole directories to work on, does not need).
//!
//! Bounded: at most [`MAX_DIRS`] directories are being listed or held listed (each holds a file
//! descriptor), listing stops while they hold [`MAX_ENTRIES`] entries or more, and a directory
//! of more than [`MAX_LISTED`] entries is left to the walker (which lstats them on all cores).
//! Directories waiting to be listed are a path and a key each, and hold no descriptor. The
//! bytes primed in listings not yet taken are at most [`MAX_PRIMED`]; nothing is primed under
//! an open-file limit below [`PRIMING_FROM_LIMIT`].

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, Weak};

use rustix::fs::FileType;

use super::exclude::Excluder;
use super::sleepers::Sleepers;
use crate::hostfs::{self, Stat};

/// Listings in flight at once (I/O waits, not CPU).
const THREADS: usize = 8;
/// Directories being listed or listed and not yet taken, at most (fewer under an open-file
/// limit below 4,096: [`max_dirs`]). The readers list the directories the walk enters next, but a
/// directory's subdirectories are only known once it is listed, and by then its later siblings
/// may hold the room: with 64, the walker found 14% of the directories of an unchanged
/// snapshot (14,000 in all) not started and listed them itself (cold: 1.22-1.32 s); with 256,
/// none (0.99-1.00 s); 1,024 was no faster.
const MAX_DIRS: usize = 256;
/// Entries of the directories held listed past which no more are listed.
const MAX_ENTRIES: usize = 32 << 10;
/// Entries past which a directory is left to the walker.
const MAX_LISTED: usize = 4096;
/// Files of a directory primed on a first snapshot, at most.
const PRIMED_FILES: usize = 64;
/// Bytes of a file primed, at most.
const PRIMED_FILE_BYTES: u64 = 1 << 20;
/// Bytes primed in the listings held and not yet taken, at most (they are held in the page
/// cache, not here). A listing's bytes are given back when the walker takes it, before it has
/// read those files: what is primed and not yet read may exceed this while the walk is below
/// a directory whose files come after its subdirectories.
const MAX_PRIMED: u64 = 64 << 20;
/// Open-file limit below which nothing is primed: a reader priming holds a file open beside
/// its directory, and the walk must not run out of descriptors (the CLI raises the soft
/// limit to the hard one; the read-ahead budgets take shares of it: [`max_dirs`]).
const PRIMING_FROM_LIMIT: u64 = 256;
/// Entries lstat'ed between two looks at whether the walk still runs.
const STATS_BETWEEN_CHECKS: usize = 256;

/// A directory: the device and inode of its entry's lstat.
pub(super) type DirKey = (u64, u64);

/// The key of the directory whose lstat (or fstat) is `st`.
pub(super) fn key_of(st: &Stat) -> DirKey {
    (st.dev, st.ino)
}

/// A directory's entries with their lstats, sorted by name; `None` where not yet stat'ed.
pub(super) type Entries = Vec<(Vec<u8>, Option<io::Result<Stat>>)>;

/// A directory as a reader listed it.
#[derive(Debug)]
pub(super) struct Listed {
    /// The open directory (the walker opens its entries through it).
    pub fd: Arc<OwnedFd>,
    /// Its fstat before it was listed (`None` where the walker listed it).
    pub opened: Option<Stat>,
    /// Its entries, each stat'ed.
    pub entries: Entries,
    /// What its reader primed, counted against [`MAX_PRIMED`] until taken.
    pub primed: Option<Primed>,
}

/// Bytes primed for a listing, given back to the budget when dropped.
#[derive(Debug)]
pub(super) struct Primed {
    bytes: u64,
    budget: Arc<AtomicU64>,
}

impl Drop for Primed {
    fn drop(&mut self) {
        self.budget.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

impl Listed {
    /// Whether the listing still stands for `name` in `dir`: the same inode under that name,
    /// not removed, and not changed since it was listed (an entry added, removed or renamed
    /// changes a directory's mtime and ctime).
    pub(super) fn still_current(&self, dir: BorrowedFd<'_>, name: &[u8]) -> bool {
        let Some(opened) = &self.opened else { return true };
        let (Ok(now), Ok(named)) = (hostfs::fstat(self.fd.as_fd()), hostfs::stat_at(dir, name)) else {
            return false;
        };
        now.nlink > 0
            && key_of(&now) == key_of(opened)
            && key_of(&named) == key_of(opened)
            && (now.mtime_ns, now.ctime_ns) == (opened.mtime_ns, opened.ctime_ns)
    }
}

#[derive(Debug)]
enum Loading {
    Queued,
    Listing,
    /// Listed; `None` when a reader could not (the walker lists it itself, and says why).
    Ready(Option<Listed>),
}

/// A directory to list: `name` in the open directory `parent`, at `path`. The parent is not
/// held open by the job: the walker holds a directory open while it walks it (and a listing
/// not yet taken holds it), and once that is done its subdirectories are no longer wanted.
/// Jobs left queued then keep no file descriptors open.
struct Job {
    parent: Weak<OwnedFd>,
    name: Vec<u8>,
    key: DirKey,
}

#[derive(Default)]
struct State {
    wanted: HashMap<DirKey, Loading>,
    /// The subdirectories queued below each directory listed, to drop once it is walked.
    children: HashMap<DirKey, Vec<DirKey>>,
    /// Directories to list, by [`walk_order`] (those no longer queued are skipped).
    queue: BTreeMap<Vec<u8>, Job>,
    /// Directories being listed or held listed, and the entries those hold.
    held_dirs: usize,
    held_entries: usize,
    closed: bool,
    /// Readers waiting for work, and whether the walker waits for a listing: nobody is woken
    /// who has nothing to do, and readers are woken only once there is room for several
    /// listings each ([`Shared::wake_readers`]). Waking every reader at every directory cost
    /// 5.5 futex calls per file of an unchanged snapshot, and waking one each time the walker
    /// took a listing (room for one), one futex call per directory on each side.
    sleepers: Sleepers,
    walker_waiting: bool,
    /// Reader threads running.
    readers: usize,
}

impl State {
    fn has_room(&self, limits: Limits) -> bool {
        self.held_dirs < limits.dirs && self.held_entries < limits.entries
    }

    /// Whether there is room enough to wake readers for: an eighth of the budget, or any room
    /// while no reader is at work (none running, none woken).
    fn has_room_to_wake(&self, limits: Limits) -> bool {
        self.has_room(limits)
            && (limits.dirs - self.held_dirs >= (limits.dirs / 8).max(1) || self.sleepers.all_idle(self.readers))
    }

    /// Takes `loading` out of the budget (it was removed from `wanted`); whether it made room.
    fn release(&mut self, loading: &Loading) -> bool {
        match loading {
            Loading::Queued => return false,
            Loading::Listing | Loading::Ready(None) => self.held_dirs -= 1,
            Loading::Ready(Some(listed)) => {
                self.held_dirs -= 1;
                self.held_entries -= listed.entries.len();
            }
        }
        true
    }
}

#[derive(Debug, Clone, Copy)]
struct Limits {
    dirs: usize,
    entries: usize,
}

struct Shared {
    state: Mutex<State>,
    /// Jobs queued, room made, or closed.
    work: Condvar,
    /// A listing finished.
    ready: Condvar,
    limits: Limits,
    /// With `--one-file-system`, the devices whose directories are listed.
    devices: Option<Vec<u64>>,
    /// The backup's exclusion rules (patterns and markers; an instance of its own, whose
    /// record of the patterns used is not the walk's).
    rules: Excluder,
    /// The walk is over: a reader stops listing.
    closed: AtomicBool,
    /// Whether readers prime the files of what they list (a first snapshot).
    prime_files: bool,
    /// Bytes primed in listings not yet taken.
    primed: Arc<AtomicU64>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The reader threads (told to stop on drop, not waited for: one may hang in a directory the
/// walk never entered).
pub(super) struct DirAhead {
    shared: Arc<Shared>,
    threads: usize,
}

impl std::fmt::Debug for DirAhead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirAhead").field("threads", &self.threads).finish_non_exhaustive()
    }
}

impl DirAhead {
    /// Starts the readers; with `devices`, only directories on those are listed (the walk does
    /// not descend into others); with `prime_files` (a first snapshot, which reads every file),
    /// the first files of each directory are primed. Without threads (the system refused them)
    /// nothing is listed ahead.
    pub(super) fn start(devices: Option<Vec<u64>>, rules: Excluder, prime_files: bool) -> Self {
        let prime_files = prime_files && hostfs::open_file_limit() >= PRIMING_FROM_LIMIT;
        Self::with_limits(devices, rules, Limits { dirs: max_dirs(), entries: MAX_ENTRIES }, prime_files)
    }

    fn with_limits(devices: Option<Vec<u64>>, rules: Excluder, limits: Limits, prime_files: bool) -> Self {
        let shared = Arc::new(Shared {
            state: Mutex::default(),
            work: Condvar::new(),
            ready: Condvar::new(),
            limits,
            devices,
            rules,
            closed: AtomicBool::new(false),
            prime_files,
            primed: Arc::default(),
        });
        let threads = (0..THREADS)
            .filter(|i| {
                let shared = Arc::clone(&shared);
                std::thread::Builder::new().name(format!("cairn-list-{i}")).spawn(move || list_jobs(&shared)).is_ok()
            })
            .count();
        lock(&shared.state).readers = threads;
        DirAhead { shared, threads }
    }

    /// Queues the subdirectories among `entries` of the directory `key` at `path`, open as
    /// `dir`, which the walker listed itself.
    pub(super) fn queue_below(&self, key: DirKey, dir: &Arc<OwnedFd>, path: &Path, entries: &Entries) {
        if self.threads == 0 {
            return;
        }
        let mut state = lock(&self.shared.state);
        self.shared.queue(&mut state, key, dir, path, entries);
    }

    /// The listing of the directory `key`, if the readers have it or are at it (then it
    /// waits); `None` when the walker must list it itself.
    pub(super) fn take(&self, key: DirKey) -> Option<Listed> {
        let mut state = lock(&self.shared.state);
        loop {
            match state.wanted.get(&key)? {
                Loading::Listing => {
                    state.walker_waiting = true;
                    state = self.shared.ready.wait(state).unwrap_or_else(PoisonError::into_inner);
                    state.walker_waiting = false;
                }
                Loading::Queued | Loading::Ready(_) => {
                    let loading = state.wanted.remove(&key)?;
                    if state.release(&loading) {
                        self.shared.wake_readers(&mut state, THREADS);
                    }
                    return match loading {
                        Loading::Ready(Some(mut listed)) => {
                            listed.primed = None; // the walk reads those files now
                            Some(listed)
                        }
                        _ => None,
                    };
                }
            }
        }
    }

    /// Drops whatever was queued or listed below the directory `key` (its walk is done, or it
    /// is not walked), and the directory itself if it was never taken.
    pub(super) fn done(&self, key: DirKey) {
        let mut state = lock(&self.shared.state);
        let mut freed = 0;
        if let Some(loading) = state.wanted.remove(&key) {
            freed += usize::from(state.release(&loading));
        }
        let mut below = vec![key];
        while let Some(dir) = below.pop() {
            for child in state.children.remove(&dir).unwrap_or_default() {
                if let Some(loading) = state.wanted.remove(&child) {
                    freed += usize::from(state.release(&loading));
                }
                below.push(child);
            }
        }
        if state.wanted.is_empty() {
            state.queue.clear();
        }
        if freed > 0 {
            self.shared.wake_readers(&mut state, THREADS);
        }
    }
}

impl Shared {
    /// Queues the subdirectories among `entries` of `key` (at `path`, open as `dir`) that the
    /// walk will enter and that are not queued yet.
    fn queue(&self, state: &mut State, key: DirKey, dir: &Arc<OwnedFd>, path: &Path, entries: &Entries) {
        let mut jobs = Vec::new();
        for (name, st) in entries {
            let Some(Ok(st)) = st else { continue };
            if st.file_type() != FileType::Directory
                || self.devices.as_ref().is_some_and(|devs| !devs.contains(&st.dev))
            {
                continue;
            }
            let child = key_of(st);
            if state.wanted.contains_key(&child) {
                continue; // the same directory seen twice (a bind mount): listed once
            }
            let child_path = path.join(OsStr::from_bytes(name));
            if self.rules.excludes_dir_quietly(&child_path) {
                continue;
            }
            state.wanted.insert(child, Loading::Queued);
            jobs.push((walk_order(&child_path), Job { parent: Arc::downgrade(dir), name: name.clone(), key: child }));
        }
        if jobs.is_empty() {
            return;
        }
        state.children.entry(key).or_default().extend(jobs.iter().map(|(_, j)| j.key));
        // Jobs no longer queued (taken or dropped before a reader got to them) are skipped
        // when popped; bounded here.
        if state.queue.len() > 4 * (state.wanted.len() + MAX_DIRS) {
            let wanted = &state.wanted;
            state.queue.retain(|_, j| matches!(wanted.get(&j.key), Some(Loading::Queued)));
        }
        let queued = jobs.len();
        for (order, job) in jobs {
            state.queue.insert(order, job);
        }
        self.wake_readers(state, queued);
    }

    /// Wakes up to `n` idle readers not woken already, and no more than there is room for
    /// listings, if there is work they may start and room for more than a listing or two (an
    /// eighth of the budget). A reader once woken lists directories until the budget is full,
    /// so while the walker takes listings one by one, readers are woken once per eighth of the
    /// budget rather than once per directory. Nothing waits on a reader that is not woken: the
    /// walker lists a directory not started itself.
    ///
    /// While no reader is at work one is woken for any room (the next directories in walk
    /// order may be ones not listed, below the one just taken). Before, every idle reader was
    /// woken for it, each but one to find no room and sleep again: 70,000 context switches
    /// on a warm first snapshot of 14,000 directories.
    fn wake_readers(&self, state: &mut State, n: usize) {
        if state.queue.is_empty() || !state.has_room_to_wake(self.limits) {
            return;
        }
        let room = self.limits.dirs.saturating_sub(state.held_dirs);
        state.sleepers.wake(&self.work, n.min(room));
    }

    /// The next job a reader may start (with its [`walk_order`]), marked as being listed;
    /// `None` once closed.
    fn next_job(&self) -> Option<(Vec<u8>, Job)> {
        let mut state = lock(&self.state);
        loop {
            if state.closed {
                return None;
            }
            if state.has_room(self.limits) {
                while let Some((order, job)) = state.queue.pop_first() {
                    if let Some(loading @ Loading::Queued) = state.wanted.get_mut(&job.key) {
                        *loading = Loading::Listing;
                        state.held_dirs += 1;
                        return Some((order, job));
                    }
                }
            }
            state = Sleepers::wait(state, &self.work, |s| &mut s.sleepers);
        }
    }

    /// Records the listing of `job` (whose [`walk_order`] is `order`), unless it was taken or
    /// dropped meanwhile, and queues its subdirectories.
    fn listed(&self, order: &[u8], job: &Job, listed: Option<Listed>) {
        let mut state = lock(&self.state);
        if !matches!(state.wanted.get(&job.key), Some(Loading::Listing)) {
            return;
        }
        if let Some(listed) = &listed {
            state.held_entries += listed.entries.len();
            self.queue(&mut state, job.key, &listed.fd, &path_of(order), &listed.entries);
        }
        state.wanted.insert(job.key, Loading::Ready(listed));
        if state.walker_waiting {
            self.ready.notify_all();
        }
    }
}

/// Listings held at most: [`MAX_DIRS`], or a sixteenth of the open-file limit where that is
/// lower, and at least 8 (each holds a descriptor; the small-file read-ahead holds up to a
/// sixty-fourth of the limit, the walk one per level of the tree, the index cache and uploads
/// their own).
fn max_dirs() -> usize {
    usize::try_from(hostfs::open_file_limit() / 16).unwrap_or(usize::MAX).clamp(8, MAX_DIRS)
}

/// The key that sorts directories in the order the walk enters them: depth first, the entries
/// of a directory in byte order. That is the order of their paths compared component by
/// component, and since a name holds neither `/` nor NUL, of their paths' bytes with every `/`
/// made the lowest byte (a directory's subtree, `a/b/...`, then comes before its next sibling
/// `a/b...`, as `a/b\0` sorts before `a/b` followed by any name byte).
fn walk_order(path: &Path) -> Vec<u8> {
    path.as_os_str().as_bytes().iter().map(|&b| if b == b'/' { 0 } else { b }).collect()
}

/// The path whose [`walk_order`] is `order` (queued directories keep only that).
fn path_of(order: &[u8]) -> PathBuf {
    PathBuf::from(OsStr::from_bytes(&order.iter().map(|&b| if b == 0 { b'/' } else { b }).collect::<Vec<u8>>()))
}

impl Drop for DirAhead {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::Relaxed);
        lock(&self.shared.state).closed = true;
        self.shared.work.notify_all();
    }
}

/// Marks a directory being listed as one the walker lists itself, unless forgotten: a reader
/// that panicked anywhere would otherwise leave the walker waiting for ever on it.
struct Unlisted<'a> {
    shared: &'a Shared,
    key: DirKey,
}

impl Drop for Unlisted<'_> {
    fn drop(&mut self) {
        let mut state = lock(&self.shared.state);
        if let Some(loading @ Loading::Listing) = state.wanted.get_mut(&self.key) {
            *loading = Loading::Ready(None);
        }
        if state.walker_waiting {
            self.shared.ready.notify_all();
        }
    }
}

fn list_jobs(shared: &Shared) {
    while let Some((order, job)) = shared.next_job() {
        let unlisted = Unlisted { shared, key: job.key };
        let listed =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| list(shared, &order, &job))).unwrap_or(None);
        shared.listed(&order, &job, listed);
        std::mem::forget(unlisted);
    }
}

/// Opens and lists the directory of `job` as the walker would (`hostfs::open_dir_at`:
/// O_NOATIME, never a symlink), and lstats its entries. `None` (the walker lists it itself,
/// if it enters it) when it cannot be opened or listed, is not the inode the walk found under
/// that name, its parent was closed, it holds an exclusion marker or more than
/// [`MAX_LISTED`] entries, or the walk ended meanwhile.
fn list(shared: &Shared, order: &[u8], job: &Job) -> Option<Listed> {
    let parent = job.parent.upgrade()?;
    let fd = hostfs::open_dir_at(parent.as_fd(), &job.name).ok()?;
    drop(parent);
    let opened = hostfs::fstat(&fd).ok()?;
    if key_of(&opened) != job.key {
        return None;
    }
    let names = hostfs::list_dir(fd.as_fd()).ok()?;
    if names.len() > MAX_LISTED || shared.rules.has_marker(fd.as_fd(), &names) {
        return None;
    }
    let mut entries = Vec::with_capacity(names.len());
    let mut primer = shared.prime_files.then(|| Primer::new(shared, path_of(order)));
    for (i, name) in names.into_iter().enumerate() {
        if i % STATS_BETWEEN_CHECKS == 0 && shared.closed.load(Ordering::Relaxed) {
            return None;
        }
        let st = hostfs::stat_at(fd.as_fd(), &name);
        if let (Some(primer), Ok(st)) = (&mut primer, &st) {
            primer.prime(fd.as_fd(), &name, st);
        }
        entries.push((name, Some(st)));
    }
    let primed = primer.map(|p| p.primed);
    Some(Listed { fd: Arc::new(fd), opened: Some(opened), entries, primed })
}

/// The priming of one directory's files ([`PRIMED_FILES`] at most).
struct Primer<'s> {
    shared: &'s Shared,
    /// The directory's path (what exclude patterns match).
    path: PathBuf,
    files: usize,
    primed: Primed,
}

impl<'s> Primer<'s> {
    fn new(shared: &'s Shared, path: PathBuf) -> Self {
        Primer { shared, path, files: 0, primed: Primed { bytes: 0, budget: Arc::clone(&shared.primed) } }
    }

    /// Primes the entry `name` of `dir` (lstat `st`) if it is a file the walk will read
    /// (regular, not empty, not sparse, not excluded by size or pattern) and the budget has room:
    /// opens it as the walker would and queues the read of its first bytes. A directory whose
    /// first such file is in the page cache is taken to be cached: nothing more is primed.
    fn prime(&mut self, dir: BorrowedFd<'_>, name: &[u8], st: &Stat) {
        if self.files >= PRIMED_FILES
            || st.file_type() != FileType::RegularFile
            || st.size == 0
            || st.maybe_sparse()
            || self.shared.rules.excludes_size(st.size)
            || self.shared.rules.excludes_file_quietly(&self.path.join(OsStr::from_bytes(name)))
        {
            return;
        }
        self.files += 1;
        let bytes = st.size.min(PRIMED_FILE_BYTES);
        if self.shared.primed.fetch_add(bytes, Ordering::Relaxed) + bytes > MAX_PRIMED {
            self.shared.primed.fetch_sub(bytes, Ordering::Relaxed);
            self.files = PRIMED_FILES;
            return;
        }
        self.primed.bytes += bytes;
        let Ok(file) = hostfs::open_file_at(dir, name) else { return };
        if hostfs::prime(&file, bytes) && self.files == 1 {
            self.files = PRIMED_FILES;
        }
    }
}

#[cfg(test)]
mod tests;
