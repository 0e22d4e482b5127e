//! Directories listed ahead of the walk, on I/O threads.
//!
//! The walk is one thread, depth first in name order, so the tree comes out ordered. With a cold
//! page cache every directory costs it disk reads it waits for, one after the other: the
//! directory's blocks (`getdents`), then the inodes of its entries (one `lstat` each). On an
//! unchanged snapshot that is nearly all the walk waits on.
//!
//! Reader threads ([`THREADS`]) list directories in about the order the walk will enter them:
//! each opens a directory as the walker would, lists it, lstats every entry and puts the
//! directory's subdirectories on top of a stack, so the readers run down the tree ahead of the
//! walker without waiting for it (depth first, as the walk goes). The walker takes a
//! directory's listing when it enters it: ready, or being listed (it waits), or not started (it
//! lists it itself, ahead of the queue). Once the walker is done with a directory, whatever was
//! listed below it and never taken (gone, a marker file found) is dropped.
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
//! Bounded: at most [`MAX_DIRS`] directories are being listed or held listed (each holds a file
//! descriptor), listing stops while they hold [`MAX_ENTRIES`] entries or more, and a directory
//! of more than [`MAX_LISTED`] entries is left to the walker (which lstats them on all cores).
//! Directories waiting to be listed are a path and a key each, and hold no descriptor.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, Weak};

use rustix::fs::FileType;

use super::exclude::Excluder;
use crate::hostfs::{self, Stat};

/// Listings in flight at once (I/O waits, not CPU).
const THREADS: usize = 8;
/// Directories being listed or listed and not yet taken, at most.
const MAX_DIRS: usize = 64;
/// Entries of the directories held listed past which no more are listed.
const MAX_ENTRIES: usize = 32 << 10;
/// Entries past which a directory is left to the walker.
const MAX_LISTED: usize = 4096;
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
/// Jobs left on the stack then keep no file descriptors open.
struct Job {
    parent: Weak<OwnedFd>,
    name: Vec<u8>,
    path: PathBuf,
    key: DirKey,
}

#[derive(Default)]
struct State {
    wanted: HashMap<DirKey, Loading>,
    /// The subdirectories queued below each directory listed, to drop once it is walked.
    children: HashMap<DirKey, Vec<DirKey>>,
    /// Directories to list, the next on top (those no longer queued are skipped).
    stack: Vec<Job>,
    /// Directories being listed or held listed, and the entries those hold.
    held_dirs: usize,
    held_entries: usize,
    closed: bool,
}

impl State {
    fn has_room(&self, limits: Limits) -> bool {
        self.held_dirs < limits.dirs && self.held_entries < limits.entries
    }

    /// Takes `loading` out of the budget (it was removed from `wanted`).
    fn release(&mut self, loading: &Loading) {
        match loading {
            Loading::Queued => {}
            Loading::Listing | Loading::Ready(None) => self.held_dirs -= 1,
            Loading::Ready(Some(listed)) => {
                self.held_dirs -= 1;
                self.held_entries -= listed.entries.len();
            }
        }
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
    /// not descend into others). Without threads (the system refused them) nothing is listed
    /// ahead.
    pub(super) fn start(devices: Option<Vec<u64>>, rules: Excluder) -> Self {
        Self::with_limits(devices, rules, Limits { dirs: MAX_DIRS, entries: MAX_ENTRIES })
    }

    fn with_limits(devices: Option<Vec<u64>>, rules: Excluder, limits: Limits) -> Self {
        let shared = Arc::new(Shared {
            state: Mutex::default(),
            work: Condvar::new(),
            ready: Condvar::new(),
            limits,
            devices,
            rules,
            closed: AtomicBool::new(false),
        });
        let threads = (0..THREADS)
            .filter(|i| {
                let shared = Arc::clone(&shared);
                std::thread::Builder::new().name(format!("cairn-list-{i}")).spawn(move || list_jobs(&shared)).is_ok()
            })
            .count();
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
                    state = self.shared.ready.wait(state).unwrap_or_else(PoisonError::into_inner);
                }
                Loading::Queued | Loading::Ready(_) => {
                    let loading = state.wanted.remove(&key)?;
                    state.release(&loading);
                    self.shared.work.notify_one();
                    return match loading {
                        Loading::Ready(listed) => listed,
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
        if let Some(loading) = state.wanted.remove(&key) {
            state.release(&loading);
        }
        let mut below = vec![key];
        while let Some(dir) = below.pop() {
            for child in state.children.remove(&dir).unwrap_or_default() {
                if let Some(loading) = state.wanted.remove(&child) {
                    state.release(&loading);
                }
                below.push(child);
            }
        }
        if state.wanted.is_empty() {
            state.stack.clear();
        }
        self.shared.work.notify_all();
    }
}

impl Shared {
    /// Queues the subdirectories among `entries` of `key` (at `path`, open as `dir`) that the
    /// walk will enter and that are not queued yet, the first on top of the stack.
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
            jobs.push(Job { parent: Arc::downgrade(dir), name: name.clone(), path: child_path, key: child });
        }
        if jobs.is_empty() {
            return;
        }
        state.children.entry(key).or_default().extend(jobs.iter().map(|j| j.key));
        // Jobs no longer queued (taken or dropped before a reader got to them) are skipped
        // when popped; bounded here.
        if state.stack.len() > 4 * (state.wanted.len() + MAX_DIRS) {
            let wanted = &state.wanted;
            state.stack.retain(|j| matches!(wanted.get(&j.key), Some(Loading::Queued)));
        }
        state.stack.extend(jobs.into_iter().rev());
        self.work.notify_all();
    }

    /// The next job a reader may start, marked as being listed; `None` once closed.
    fn next_job(&self) -> Option<Job> {
        let mut state = lock(&self.state);
        loop {
            if state.closed {
                return None;
            }
            if state.has_room(self.limits) {
                while let Some(job) = state.stack.pop() {
                    if let Some(loading @ Loading::Queued) = state.wanted.get_mut(&job.key) {
                        *loading = Loading::Listing;
                        state.held_dirs += 1;
                        return Some(job);
                    }
                }
            }
            state = self.work.wait(state).unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Records the listing of `job` (unless it was taken or dropped meanwhile) and queues its
    /// subdirectories.
    fn listed(&self, job: &Job, listed: Option<Listed>) {
        let mut state = lock(&self.state);
        if !matches!(state.wanted.get(&job.key), Some(Loading::Listing)) {
            return;
        }
        if let Some(listed) = &listed {
            state.held_entries += listed.entries.len();
            self.queue(&mut state, job.key, &listed.fd, &job.path, &listed.entries);
        }
        state.wanted.insert(job.key, Loading::Ready(listed));
        self.ready.notify_all();
    }
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
        self.shared.ready.notify_all();
    }
}

fn list_jobs(shared: &Shared) {
    while let Some(job) = shared.next_job() {
        let unlisted = Unlisted { shared, key: job.key };
        let listed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| list(shared, &job))).unwrap_or(None);
        shared.listed(&job, listed);
        std::mem::forget(unlisted);
    }
}

/// Opens and lists the directory of `job` as the walker would (`hostfs::open_dir_at`:
/// O_NOATIME, never a symlink), and lstats its entries. `None` (the walker lists it itself,
/// if it enters it) when it cannot be opened or listed, is not the inode the walk found under
/// that name, its parent was closed, it holds an exclusion marker or more than
/// [`MAX_LISTED`] entries, or the walk ended meanwhile.
fn list(shared: &Shared, job: &Job) -> Option<Listed> {
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
    for (i, name) in names.into_iter().enumerate() {
        if i % STATS_BETWEEN_CHECKS == 0 && shared.closed.load(Ordering::Relaxed) {
            return None;
        }
        let st = hostfs::stat_at(fd.as_fd(), &name);
        entries.push((name, Some(st)));
    }
    Some(Listed { fd: Arc::new(fd), opened: Some(opened), entries })
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::{Duration, Instant};

    use super::*;
    use crate::backup::ExcludeOptions;

    /// Exclusion rules of `patterns`, with CACHEDIR.TAG markers.
    fn rules(patterns: &[&str]) -> Excluder {
        let opts = ExcludeOptions {
            patterns: patterns.iter().map(|p| p.to_string()).collect(),
            caches: true,
            ..ExcludeOptions::default()
        };
        Excluder::new(&opts).unwrap()
    }

    /// `fanout` directories per level below `root`, `depth` levels, two files in each.
    fn make_tree(root: &Path, depth: usize, fanout: usize) -> usize {
        let mut dirs = 0;
        for i in 0..fanout {
            let d = root.join(format!("d{i}"));
            std::fs::create_dir(&d).unwrap();
            std::fs::write(d.join("f1"), b"one").unwrap();
            std::fs::write(d.join("f2"), b"two").unwrap();
            dirs += 1;
            if depth > 1 {
                dirs += make_tree(&d, depth - 1, fanout);
            }
        }
        dirs
    }

    /// The directory open as `fd` as the walker lists it itself.
    fn listing(fd: &OwnedFd) -> Entries {
        let names = hostfs::list_dir(fd.as_fd()).unwrap();
        names
            .into_iter()
            .map(|n| {
                let st = hostfs::stat_at(fd.as_fd(), &n);
                (n, Some(st))
            })
            .collect()
    }

    fn open_root(path: &Path) -> (Arc<OwnedFd>, DirKey, Entries) {
        let fd = Arc::new(hostfs::open_dir(path).unwrap());
        let key = key_of(&hostfs::fstat(fd.as_fd()).unwrap());
        let entries = listing(&fd);
        (fd, key, entries)
    }

    /// Waits (on listings finishing, never on the clock alone) until `done` holds of the state.
    fn wait_until(ahead: &DirAhead, what: &str, done: impl Fn(&State) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut state = lock(&ahead.shared.state);
        while !done(&state) {
            assert!(Instant::now() < deadline, "{what}: {} wanted, {} held", state.wanted.len(), state.held_dirs);
            state = ahead.shared.ready.wait_timeout(state, Duration::from_millis(50)).unwrap().0;
        }
    }

    fn ready(state: &State) -> usize {
        state.wanted.values().filter(|l| matches!(l, Loading::Ready(Some(_)))).count()
    }

    fn subdirs(entries: &Entries) -> Vec<(Vec<u8>, DirKey)> {
        entries
            .iter()
            .filter_map(|(n, st)| match st {
                Some(Ok(st)) if st.file_type() == FileType::Directory => Some((n.clone(), key_of(st))),
                _ => None,
            })
            .collect()
    }

    /// Walks as the walker does: takes each subdirectory's listing (which must be the readers'),
    /// checks it against the directory listed here, goes below it, then is done with it.
    fn walk(ahead: &DirAhead, fd: &OwnedFd, entries: &Entries) -> usize {
        let mut walked = 0;
        for (name, key) in subdirs(entries) {
            let listed = ahead.take(key).expect("listed ahead");
            let here = hostfs::open_dir_at(fd.as_fd(), &name).unwrap();
            let want = listing(&here);
            let names = |e: &Entries| e.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
            assert_eq!(names(&listed.entries), names(&want));
            for ((_, got), (_, want)) in listed.entries.iter().zip(&want) {
                let (got, want) = (got.as_ref().unwrap().as_ref().unwrap(), want.as_ref().unwrap().as_ref().unwrap());
                assert_eq!((got.ino, got.size, got.mode), (want.ino, want.size, want.mode));
            }
            assert_eq!(key_of(&hostfs::fstat(listed.fd.as_fd()).unwrap()), key);
            walked += 1 + walk(ahead, &listed.fd, &listed.entries);
            ahead.done(key);
        }
        walked
    }

    #[test]
    fn readers_list_the_whole_tree_ahead_and_the_walk_takes_each_directory_as_listed() {
        let dir = tempfile::tempdir().unwrap();
        let all = make_tree(dir.path(), 3, 3);
        let (fd, key, entries) = open_root(dir.path());
        let ahead = DirAhead::start(None, rules(&[]));
        ahead.queue_below(key, &fd, dir.path(), &entries);
        // The walker asked for the root's subdirectories only; the readers go on below.
        wait_until(&ahead, "every directory listed ahead", |s| ready(s) == all);
        assert_eq!(lock(&ahead.shared.state).held_entries, all * 2 + (all - 3), "entries held, counted");
        assert_eq!(walk(&ahead, &fd, &entries), all);
        ahead.done(key);
        let state = lock(&ahead.shared.state);
        assert!(state.wanted.is_empty() && state.children.is_empty() && state.stack.is_empty());
        assert_eq!((state.held_dirs, state.held_entries), (0, 0), "the budget is whole again");
    }

    #[test]
    fn the_budget_bounds_what_is_held_and_done_drops_everything_below() {
        let dir = tempfile::tempdir().unwrap();
        let all = make_tree(dir.path(), 3, 3);
        let (fd, key, entries) = open_root(dir.path());
        let ahead = DirAhead::with_limits(None, rules(&[]), Limits { dirs: 4, entries: 1 << 20 });
        ahead.queue_below(key, &fd, dir.path(), &entries);
        wait_until(&ahead, "four directories listed", |s| ready(s) == 4);
        {
            let state = lock(&ahead.shared.state);
            assert_eq!(state.held_dirs, 4, "no more listed than the budget holds");
            assert!(state.wanted.len() > 4 && state.wanted.len() < all, "{} queued", state.wanted.len());
        }
        // The walk takes the first: room for one more, which the readers fill.
        let (first, first_key) = subdirs(&entries).swap_remove(0);
        let taken = ahead.take(first_key).expect("the first directory was listed first");
        wait_until(&ahead, "the room refilled", |s| ready(s) == 4);
        assert!(taken.entries.iter().any(|(n, _)| n == b"d0"), "{first:?} holds its own d0");
        // The walk of the root is done (what is left was excluded, say): all of it dropped.
        ahead.done(first_key);
        ahead.done(key);
        let state = lock(&ahead.shared.state);
        assert!(state.wanted.is_empty() && state.children.is_empty() && state.stack.is_empty());
        assert_eq!((state.held_dirs, state.held_entries), (0, 0));
    }

    /// A reader lists only the inode the walk found under the name; anything else is left to
    /// the walker, which lists (and reports) it itself.
    #[test]
    fn replaced_missing_and_foreign_directories_are_left_to_the_walker() {
        let dir = tempfile::tempdir().unwrap();
        for d in ["kept", "replaced", "removed"] {
            std::fs::create_dir(dir.path().join(d)).unwrap();
        }
        let (fd, key, entries) = open_root(dir.path());
        let keys: HashMap<Vec<u8>, DirKey> = subdirs(&entries).into_iter().collect();
        std::fs::rename(dir.path().join("replaced"), dir.path().join("old")).unwrap();
        std::fs::create_dir(dir.path().join("replaced")).unwrap();
        std::fs::remove_dir(dir.path().join("removed")).unwrap();
        let ahead = DirAhead::start(None, rules(&[]));
        ahead.queue_below(key, &fd, dir.path(), &entries);
        wait_until(&ahead, "all three tried", |s| s.wanted.values().all(|l| matches!(l, Loading::Ready(_))));
        assert!(ahead.take(keys[b"kept".as_slice()]).is_some());
        assert!(ahead.take(keys[b"replaced".as_slice()]).is_none(), "another inode under the name");
        assert!(ahead.take(keys[b"removed".as_slice()]).is_none());
        ahead.done(key);
        assert_eq!(lock(&ahead.shared.state).held_dirs, 0);

        // With --one-file-system, directories on other devices are not even queued.
        let other_device = DirAhead::start(Some(vec![u64::MAX]), rules(&[]));
        other_device.queue_below(key, &fd, dir.path(), &entries);
        assert!(lock(&other_device.shared.state).wanted.is_empty());
    }

    /// Directories queued and not listed hold no descriptor of their parent: once the walker
    /// closes a directory, what is left of it on the stack is names only (and a reader that
    /// pops one lists nothing).
    #[test]
    fn queued_directories_do_not_hold_their_parent_open() {
        let dir = tempfile::tempdir().unwrap();
        make_tree(dir.path(), 1, 5);
        let (fd, key, entries) = open_root(dir.path());
        let ahead = DirAhead::with_limits(None, rules(&[]), Limits { dirs: 0, entries: 0 });
        ahead.queue_below(key, &fd, dir.path(), &entries);
        assert_eq!(lock(&ahead.shared.state).stack.len(), 5);
        assert_eq!(Arc::strong_count(&fd), 1, "only the walker holds the directory open");
        let job = lock(&ahead.shared.state).stack.pop().unwrap();
        drop(fd);
        assert!(list(&ahead.shared, &job).is_none(), "its parent closed: nothing to list");
    }

    /// What the walk would not enter is not listed: excluded directories are not queued, and a
    /// directory holding a marker is left to the walker (which skips it) with nothing below it
    /// queued.
    #[test]
    fn excluded_and_marked_directories_are_not_listed_ahead() {
        let dir = tempfile::tempdir().unwrap();
        make_tree(dir.path(), 2, 3);
        std::fs::write(dir.path().join("d1/CACHEDIR.TAG"), "Signature: 8a477f597d28d172789f06886806bc55").unwrap();
        let (fd, key, entries) = open_root(dir.path());
        let keys: HashMap<Vec<u8>, DirKey> = subdirs(&entries).into_iter().collect();
        let excluded = format!("{}/d2", dir.path().display());
        let ahead = DirAhead::start(None, rules(&[&excluded]));
        ahead.queue_below(key, &fd, dir.path(), &entries);
        wait_until(&ahead, "all tried", |s| s.wanted.values().all(|l| matches!(l, Loading::Ready(_))));
        let state = lock(&ahead.shared.state);
        assert!(!state.wanted.contains_key(&keys[b"d2".as_slice()]), "an excluded directory is not queued");
        assert!(matches!(state.wanted.get(&keys[b"d1".as_slice()]), Some(Loading::Ready(None))), "marked");
        assert!(matches!(state.wanted.get(&keys[b"d0".as_slice()]), Some(Loading::Ready(Some(_)))));
        // d0 and its three subdirectories: nothing of d1's or d2's.
        assert_eq!(state.wanted.len(), 1 + 1 + 3, "{:?}", state.wanted.keys());
    }

    /// A listing the directory no longer matches (an entry added since, or the directory
    /// removed) is not current: the walker lists it again.
    #[test]
    fn a_listing_is_current_only_while_its_directory_is_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        make_tree(dir.path(), 1, 2);
        let (fd, key, entries) = open_root(dir.path());
        let keys: HashMap<Vec<u8>, DirKey> = subdirs(&entries).into_iter().collect();
        let ahead = DirAhead::start(None, rules(&[]));
        ahead.queue_below(key, &fd, dir.path(), &entries);
        wait_until(&ahead, "both listed", |s| ready(s) == 2);
        let d0 = ahead.take(keys[b"d0".as_slice()]).unwrap();
        assert!(d0.still_current(fd.as_fd(), b"d0"));
        // An entry added since: its mtime moved on.
        let before = hostfs::fstat(d0.fd.as_fd()).unwrap();
        let mut added = 0;
        while hostfs::fstat(d0.fd.as_fd()).unwrap().mtime_ns == before.mtime_ns {
            std::fs::write(dir.path().join(format!("d0/new{added}")), b"x").unwrap();
            added += 1;
        }
        assert!(!d0.still_current(fd.as_fd(), b"d0"), "an entry was added since it was listed");
        let d1 = ahead.take(keys[b"d1".as_slice()]).unwrap();
        std::fs::remove_dir_all(dir.path().join("d1")).unwrap();
        assert!(!d1.still_current(fd.as_fd(), b"d1"), "removed since it was listed");
    }
}
