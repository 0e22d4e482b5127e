//! Small files read ahead of the walk, on I/O threads.
//!
//! The walk is one thread, in name order, so the tree comes out ordered. With a cold page cache
//! every new small file costs it a disk read it waits for: open (the inode), then read (the
//! data), one file after the other. bupstash, the fastest peer there, keeps a few reads in
//! flight on threads of their own. Here the walker, once it has stat'ed a directory's entries,
//! hands the small regular files it will read (new or changed since the parent snapshot) to
//! [`THREADS`] readers, a window ahead of itself. A reader takes up to [`BATCH`] files at once,
//! opens each as the walker would and reads what the page cache holds of it without waiting
//! (`RWF_NOWAIT`: a file read recently is read whole then, in one system call); a file not
//! cached has its read queued in the kernel (`WILLNEED`, which does not wait). Then it reads
//! the rest of each and takes its xattrs, flags and a stat after the read: it waits for the
//! disk about once per batch rather than once per file, and the disk gets the reads together.
//! The walker then takes each result in order ([`Ticket::wait`]) and checks it as if it had
//! read the file itself (replaced since listed, changed while read).
//!
//! Readers are woken once a batch is queued, or when the walker has queued a directory's
//! first files ([`ReadAhead::start_reading`]); a file no reader has started when the walker
//! comes to it, the walker reads itself. With a warm page cache the readers outrun the walk:
//! woken for every file, each read one and slept again (two context switches per file).
//!
//! Bounded: at most [`MAX_FILES`] files and [`MAX_BYTES`] bytes are held ahead (a file the
//! budget has no room for is read by the walker itself, so the walk never waits for room), and
//! only files of at most [`SMALL`] bytes, not sparse, are read ahead.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use rustix::fs::FileType;

use crate::error::Result;
use crate::hostfs::{self, Stat, Xattrs};

use super::sleepers::Sleepers;
use super::walker::{StoredContent, Walker};

/// Files up to this size are read ahead (whole).
pub(super) const SMALL: u64 = 256 << 10;
/// Reader threads, and the files each takes at once: up to `THREADS * BATCH` reads queued in
/// the kernel (and as many files open; fewer under a low open-file limit: [`batch_size`]).
/// Cold first snapshots of 200,000 small files (2 cores, virtio disk), alternating: 16
/// threads reading one file at a time (each waiting for its read) 4.18-4.86 s, 4.6-5.5 s of
/// system time; 4 x 32 2.97-3.07 s, 3.2 s of system time (8 x 16 the same, 4 x 8 3.45-3.75 s,
/// 16 x 16 3.36 s). The 1.93 GB mixed set: 8.67-8.81 s against 9.01-9.08 s.
const THREADS: usize = 4;
const BATCH: usize = 32;
/// Files read ahead and not yet taken, at most.
pub(super) const MAX_FILES: usize = 256;
/// Bytes read ahead and not yet taken, at most.
const MAX_BYTES: u64 = 16 << 20;

/// What a reader found, for the walker to check and store.
#[derive(Debug)]
pub(super) enum Fetched {
    /// The file could not be opened, or its fstat after the read failed.
    Unopened(io::Error),
    /// Not read: the process had no file descriptor to spare when the reader opened it (the
    /// walker reads it itself rather than leave it out).
    Left,
    /// The file as read.
    Read(Box<ReadFile>),
}

struct Job {
    dir: Arc<OwnedFd>,
    name: Vec<u8>,
    /// Its size when stat'ed: what one read asks for.
    size: u64,
    slot: Arc<Slot>,
}

impl Job {
    /// Opens and reads the file, nothing read ahead: [`Fetched::Left`] when the process has no
    /// descriptor to spare.
    fn read(&self) -> Fetched {
        match hostfs::open_file_at(self.dir.as_fd(), &self.name) {
            Err(e) if out_of_descriptors(&e) => Fetched::Left,
            opened => fetch(opened.map(|file| Opened { file, content: Vec::new() }), self.size),
        }
    }
}

/// A file a reader opened, and what it read of it from the page cache then ([`open_ahead`]).
struct Opened {
    file: File,
    content: Vec<u8>,
}

/// A file as a reader read it.
#[derive(Debug)]
pub(super) struct ReadFile {
    /// Its content; `Ok(None)` when it grew past [`SMALL`] (the walker reads it itself).
    pub content: io::Result<Option<Vec<u8>>>,
    pub xattrs: io::Result<Xattrs>,
    pub flags: u32,
    /// fstat of the open file after the read: the walker compares it with its lstat (the
    /// same inode, or replaced since listed?) and with what was read (changed while read?).
    pub after: Stat,
}

#[derive(Default)]
struct Slot {
    result: Mutex<SlotResult>,
    ready: Condvar,
    /// The walker no longer wants it (excluded, or the walk failed): not read.
    cancelled: AtomicBool,
}

/// A file's read, once done, and whether the walker waits for it (only then is it notified:
/// a notification is a system call, and the walker finds most files read already).
#[derive(Default)]
struct SlotResult {
    fetched: Option<Fetched>,
    waiting: bool,
}

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    files: usize,
    bytes: u64,
    closed: bool,
    /// Readers waiting for a job (notifying at every file was a futex call per file on the
    /// walker's side, one more on a reader's).
    sleepers: Sleepers,
}

#[derive(Default)]
struct Shared {
    queue: Mutex<Queue>,
    work: Condvar,
    /// Files a reader takes at once ([`batch_size`]).
    batch: usize,
}

/// Files a reader takes (and holds open) at once: [`BATCH`], or fewer so that the readers
/// hold at most a sixty-fourth of the open-file limit (the directory read-ahead takes a
/// sixteenth, the walk one per level, the index cache and uploads their own).
fn batch_size() -> usize {
    usize::try_from(hostfs::open_file_limit() / 64 / THREADS as u64).unwrap_or(usize::MAX).clamp(1, BATCH)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The reader threads (stopped and joined on drop).
pub(super) struct ReadAhead {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for ReadAhead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadAhead").field("threads", &self.threads.len()).finish_non_exhaustive()
    }
}

/// A file handed to the readers: its result, once, in the walker's order. Dropping it frees
/// its room in the budget (and cancels the read if it has not started).
pub(super) struct Ticket {
    slot: Arc<Slot>,
    shared: Arc<Shared>,
    bytes: u64,
}

impl std::fmt::Debug for Ticket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ticket").field("bytes", &self.bytes).finish_non_exhaustive()
    }
}

impl Ticket {
    /// The file's read: done by a reader, waited for if one is at it, or done here if none
    /// has started it.
    pub(super) fn wait(self) -> Fetched {
        if let Some(job) = self.take_back() {
            return job.read();
        }
        let mut result = lock(&self.slot.result);
        loop {
            if let Some(fetched) = result.fetched.take() {
                return fetched;
            }
            result.waiting = true;
            result = self.slot.ready.wait(result).unwrap_or_else(PoisonError::into_inner);
        }
    }
}

impl Ticket {
    /// The file's job, when no reader has taken it yet. Readers take jobs from the front of
    /// the queue and the walker its tickets in the order it queued them, so a job not taken
    /// is at the front, behind only jobs cancelled since (dropped here on the way).
    fn take_back(&self) -> Option<Job> {
        let mut queue = lock(&self.shared.queue);
        while queue.jobs.front().is_some_and(|job| job.slot.cancelled.load(Ordering::Relaxed)) {
            queue.jobs.pop_front();
        }
        if queue.jobs.front().is_some_and(|job| Arc::ptr_eq(&job.slot, &self.slot)) {
            return queue.jobs.pop_front();
        }
        None
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.slot.cancelled.store(true, Ordering::Relaxed);
        let mut queue = lock(&self.shared.queue);
        queue.files = queue.files.saturating_sub(1);
        queue.bytes = queue.bytes.saturating_sub(self.bytes);
    }
}

impl ReadAhead {
    /// Starts the readers. Without threads (the system refused them) nothing is read ahead.
    pub(super) fn start() -> Self {
        let shared = Arc::new(Shared { batch: batch_size(), ..Shared::default() });
        let threads = (0..THREADS)
            .filter_map(|i| {
                let shared = Arc::clone(&shared);
                std::thread::Builder::new().name(format!("cairn-read-{i}")).spawn(move || read_jobs(&shared)).ok()
            })
            .collect();
        ReadAhead { shared, threads }
    }

    /// Hands the file `name` in `dir` (`size` bytes when stat'ed) to the readers, when the
    /// budget has room for it.
    pub(super) fn submit(&self, dir: &Arc<OwnedFd>, name: &[u8], size: u64) -> Option<Ticket> {
        if self.threads.is_empty() || size > SMALL {
            return None;
        }
        let slot = Arc::new(Slot::default());
        {
            let mut queue = lock(&self.shared.queue);
            if queue.files >= MAX_FILES || queue.bytes + size > MAX_BYTES {
                return None;
            }
            queue.files += 1;
            queue.bytes += size;
            queue.jobs.push_back(Job { dir: Arc::clone(dir), name: name.to_vec(), size, slot: Arc::clone(&slot) });
            if queue.jobs.len() >= self.shared.batch {
                queue.sleepers.wake(&self.shared.work, 1);
            }
        }
        Some(Ticket { slot, shared: Arc::clone(&self.shared), bytes: size })
    }
}

impl ReadAhead {
    /// Wakes readers for the files queued: one per batch, as many as sleep. [`submit`] wakes
    /// one only once a whole batch is queued (a reader woken for each file, which it reads
    /// at once when the page cache has it, then sleeps again, was two context switches per
    /// file); the walker calls this once it has queued a directory's first files, and takes
    /// back a file no reader started when it comes to it ([`Ticket::wait`]).
    ///
    /// [`submit`]: ReadAhead::submit
    pub(super) fn start_reading(&self) {
        let mut queue = lock(&self.shared.queue);
        let batches = queue.jobs.len().div_ceil(self.shared.batch);
        queue.sleepers.wake(&self.shared.work, batches);
    }
}

impl Drop for ReadAhead {
    fn drop(&mut self) {
        lock(&self.shared.queue).closed = true;
        self.shared.work.notify_all();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn read_jobs(shared: &Shared) {
    loop {
        let jobs: Vec<Job> = {
            let mut queue = lock(&shared.queue);
            loop {
                if !queue.jobs.is_empty() {
                    let n = queue.jobs.len().min(shared.batch);
                    break queue.jobs.drain(..n).collect();
                }
                if queue.closed {
                    return;
                }
                queue = Sleepers::wait(queue, &shared.work, |q| &mut q.sleepers);
            }
        };
        // A reader that panicked would leave the walker waiting for ever on these files (and
        // the thread gone for the files after them): the panic becomes each file's error.
        let failed = || Fetched::Unopened(io::Error::other("the read-ahead of this file failed"));
        let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| open_ahead(&jobs)))
            .unwrap_or_else(|_| jobs.iter().map(|_| None).collect());
        for (job, file) in jobs.iter().zip(opened) {
            if job.slot.cancelled.load(Ordering::Relaxed) {
                continue;
            }
            let fetched = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match file {
                Some(opened) => fetch(opened, job.size),
                None => job.read(),
            }))
            .unwrap_or_else(|_| failed());
            let mut result = lock(&job.slot.result);
            result.fetched = Some(fetched);
            if result.waiting {
                job.slot.ready.notify_one();
            }
        }
    }
}

/// Opens the files of `jobs` not cancelled, as the walker would (`hostfs::open_file_at`:
/// O_NOATIME, never a symlink), and queues their reads ([`hostfs::advise_willneed`]). `None`
/// for a file not opened here, to open when read: cancelled, or after the process ran out of
/// descriptors (the batch's files are read and closed one by one before; if the process still
/// has none to spare then, the file is left to the walker).
fn open_ahead(jobs: &[Job]) -> Vec<Option<io::Result<Opened>>> {
    let mut opened = Vec::with_capacity(jobs.len());
    for job in jobs {
        if job.slot.cancelled.load(Ordering::Relaxed) {
            opened.push(None);
            continue;
        }
        match hostfs::open_file_at(job.dir.as_fd(), &job.name) {
            Ok(file) => {
                let want = usize::try_from(job.size).unwrap_or(usize::MAX);
                let mut content = Vec::with_capacity(want + 1);
                if want > 0 && hostfs::read_cached(&file, &mut content, want) < want {
                    hostfs::advise_willneed(&file, job.size);
                }
                opened.push(Some(Ok(Opened { file, content })));
            }
            Err(e) if out_of_descriptors(&e) => break,
            Err(e) => opened.push(Some(Err(e))),
        }
    }
    opened.resize_with(jobs.len(), || None);
    opened
}

/// Whether `e` says this process or the system has no file descriptor left.
fn out_of_descriptors(e: &io::Error) -> bool {
    matches!(rustix::io::Errno::from_io_error(e), Some(rustix::io::Errno::MFILE | rustix::io::Errno::NFILE))
}

/// Reads a file opened as the walker would (`hostfs::open_file_at`), in as few system calls
/// as it can: one read of the `size` bytes its lstat gave (none for an empty file), one fstat
/// after it, which tells both whether the inode is the one listed and whether the file grew
/// meanwhile (then it is read on, to its end or past [`SMALL`]), its xattrs and its flags.
fn fetch(opened: io::Result<Opened>, size: u64) -> Fetched {
    let Opened { file, mut content } = match opened {
        Ok(opened) => opened,
        Err(e) => return Fetched::Unopened(e),
    };
    let unread = size.min(SMALL + 1).saturating_sub(content.len() as u64);
    let mut read = read_up_to(&file, &mut content, unread);
    let mut after = match hostfs::fstat(&file) {
        Ok(st) => st,
        Err(e) => return Fetched::Unopened(e),
    };
    if read.is_ok() && after.size != content.len() as u64 && content.len() as u64 <= SMALL {
        // Not the size listed: read on to the end (a file that shrank ends at once).
        let room = SMALL + 1 - content.len() as u64;
        read = read_up_to(&file, &mut content, room);
        after = match hostfs::fstat(&file) {
            Ok(st) => st,
            Err(e) => return Fetched::Unopened(e),
        };
    }
    let content = read.map(|()| (content.len() as u64 <= SMALL).then_some(content));
    let xattrs = hostfs::read_xattrs_fd(&file);
    let flags = hostfs::inode_flags(&file);
    Fetched::Read(Box::new(ReadFile { content, xattrs, flags, after }))
}

/// Appends at most `limit` more bytes of `file` to `content`: one read system call when the
/// file holds them (`take` stops without asking for more), two at its end.
fn read_up_to(mut file: &File, content: &mut Vec<u8>, limit: u64) -> io::Result<()> {
    (&mut file).take(limit).read_to_end(content).map(|_| ())
}

impl Walker<'_, '_> {
    /// A file the readers read ahead, checked as the walker checks what it reads.
    /// `Ok(Some(None))` when it could not be read (reported); `Ok(None)` when it grew past
    /// what is read ahead or was not read (the walker reads it itself).
    pub(super) fn read_fetched(
        &mut self,
        path: &Path,
        st: &Stat,
        fetched: Fetched,
    ) -> Result<Option<Option<StoredContent>>> {
        let ReadFile { content, xattrs, flags, after } = match fetched {
            Fetched::Unopened(e) => {
                self.source_error(path, e);
                return Ok(Some(None));
            }
            Fetched::Left => return Ok(None),
            Fetched::Read(read) => *read,
        };
        if after.ino != st.ino || after.dev != st.dev || after.file_type() != FileType::RegularFile {
            self.source_error(path, "replaced while being backed up; not stored");
            return Ok(Some(None));
        }
        let content = match content {
            Ok(Some(content)) => content,
            Ok(None) => return Ok(None),
            Err(e) => {
                self.source_error(path, e);
                return Ok(Some(None));
            }
        };
        let xattrs = self.xattrs_or_report(xattrs, path);
        let reader: Box<dyn Read + '_> = Box::new(content.as_slice());
        Ok(Some(self.store_content(path, st, reader, Vec::new(), xattrs, flags, || Ok(after))?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir_with(files: &[(&str, &[u8])]) -> (tempfile::TempDir, Arc<OwnedFd>) {
        let dir = tempfile::tempdir().unwrap();
        for (name, content) in files {
            std::fs::write(dir.path().join(name), content).unwrap();
        }
        let fd = Arc::new(hostfs::open_dir(dir.path()).unwrap());
        (dir, fd)
    }

    /// Files come back whole and in the order asked, with what the walker checks.
    #[test]
    fn files_are_read_whole_with_their_stats() {
        let names: Vec<String> = (0..50).map(|i| format!("f{i}")).collect();
        let contents: Vec<Vec<u8>> = (0..50).map(|i| vec![i as u8; i * 100]).collect();
        let files: Vec<(&str, &[u8])> =
            names.iter().map(String::as_str).zip(contents.iter().map(Vec::as_slice)).collect();
        let (_dir, fd) = dir_with(&files);
        let ahead = ReadAhead::start();
        let tickets: Vec<Ticket> = names.iter().map(|n| ahead.submit(&fd, n.as_bytes(), 5000).unwrap()).collect();
        for (ticket, want) in tickets.into_iter().zip(&contents) {
            match ticket.wait() {
                Fetched::Read(read) => {
                    let ReadFile { content, after, .. } = *read;
                    assert_eq!(content.unwrap().unwrap(), *want);
                    assert_eq!(after.size, want.len() as u64);
                    assert_eq!(after.file_type(), FileType::RegularFile);
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(lock(&ahead.shared.queue).files, 0, "every ticket's room freed");
    }

    /// A file that grew since it was listed is read on to its end (the first read asked only
    /// for the size listed); one that shrank ends where it ends.
    #[test]
    fn files_that_grew_or_shrank_since_listed_come_back_whole() {
        let grown: Vec<u8> = (0..3000u32).map(|i| i as u8).collect();
        let (_dir, fd) = dir_with(&[("grown", &grown), ("shrunk", b"tail"), ("empty", b"")]);
        let ahead = ReadAhead::start();
        for (name, listed, want) in [("grown", 10, &grown[..]), ("shrunk", 4000, b"tail"), ("empty", 0, b"")] {
            match ahead.submit(&fd, name.as_bytes(), listed).unwrap().wait() {
                Fetched::Read(read) => {
                    assert_eq!(read.content.unwrap().unwrap(), want, "{name}");
                    assert_eq!(read.after.size, want.len() as u64);
                }
                other => panic!("{name}: {other:?}"),
            }
        }
    }

    /// A missing file is reported as unopened; a file past SMALL is left to the walker; the
    /// budget refuses what it has no room for, and frees it when tickets are dropped.
    #[test]
    fn failures_large_files_and_the_budget() {
        let big = vec![1u8; SMALL as usize + 1];
        let (_dir, fd) = dir_with(&[("big", &big), ("small", b"x")]);
        let ahead = ReadAhead::start();
        assert!(
            matches!(ahead.submit(&fd, b"gone", 1).unwrap().wait(), Fetched::Unopened(e) if e.kind() == io::ErrorKind::NotFound)
        );
        assert!(ahead.submit(&fd, b"big", SMALL + 1).is_none(), "too large when stat'ed");
        match ahead.submit(&fd, b"big", 10).unwrap().wait() {
            Fetched::Read(read) => assert!(read.content.unwrap().is_none(), "grew past SMALL"),
            other => panic!("{other:?}"),
        }
        let held: Vec<Ticket> = (0..MAX_FILES).map(|_| ahead.submit(&fd, b"small", 1).unwrap()).collect();
        assert!(ahead.submit(&fd, b"small", 1).is_none(), "no room past MAX_FILES");
        drop(held);
        assert!(ahead.submit(&fd, b"small", 1).is_some(), "room again once the tickets are dropped");
        let fit = (MAX_BYTES / SMALL) as usize;
        let held: Vec<Ticket> = (0..fit).map(|_| ahead.submit(&fd, b"small", SMALL).unwrap()).collect();
        assert!(ahead.submit(&fd, b"small", SMALL).is_none(), "no room past MAX_BYTES");
        drop(held);
    }

    /// Fewer files than a batch, never started: no reader is woken for them, and the walker
    /// reads each itself when it comes to it rather than wait.
    #[test]
    fn files_no_reader_started_are_read_by_the_walker_without_waking_one() {
        let (_dir, fd) = dir_with(&[("a", b"first"), ("b", b"second")]);
        let ahead = ReadAhead::start();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !lock(&ahead.shared.queue).sleepers.all_idle(THREADS) {
            assert!(std::time::Instant::now() < deadline, "the readers never went to sleep");
            std::thread::yield_now();
        }
        let notified = || lock(&ahead.shared.queue).sleepers.notified();
        let tickets = [ahead.submit(&fd, b"a", 5).unwrap(), ahead.submit(&fd, b"b", 6).unwrap()];
        assert_eq!(notified(), 0, "no reader woken for less than a batch");
        for (ticket, want) in tickets.into_iter().zip([&b"first"[..], b"second"]) {
            match ticket.wait() {
                Fetched::Read(read) => assert_eq!(read.content.unwrap().unwrap(), want),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(notified(), 0);
        assert!(lock(&ahead.shared.queue).jobs.is_empty());
        // Once a directory's first files are queued, the walker starts the readers: one per batch.
        let tickets: Vec<Ticket> = (0..3).map(|_| ahead.submit(&fd, b"a", 5).unwrap()).collect();
        ahead.start_reading();
        assert_eq!(notified(), 1);
        for ticket in tickets {
            assert!(matches!(ticket.wait(), Fetched::Read(_)));
        }
    }

    /// A batch opens what it may and leaves the rest: a cancelled file is not opened, a
    /// missing one is its own error, and the others come back in order, whole.
    #[test]
    fn a_batch_opens_each_file_once_and_skips_the_cancelled() {
        let (_dir, fd) = dir_with(&[("a", b"first"), ("c", b"third")]);
        let job = |name: &str, cancelled: bool| Job {
            dir: Arc::clone(&fd),
            name: name.as_bytes().to_vec(),
            size: 5,
            slot: Arc::new(Slot { cancelled: AtomicBool::new(cancelled), ..Slot::default() }),
        };
        let jobs = [job("a", false), job("b", false), job("c", true), job("c", false)];
        let opened = open_ahead(&jobs);
        assert_eq!(opened.len(), 4);
        assert!(matches!(&opened[1], Some(Err(e)) if e.kind() == io::ErrorKind::NotFound));
        assert!(opened[2].is_none(), "cancelled: not opened");
        let mut opened: Vec<_> = opened.into_iter().map(|o| o.and_then(Result::ok)).collect();
        for (i, want) in [(0, b"first"), (3, b"third")] {
            let file = opened[i].take().unwrap();
            assert!(want.starts_with(&file.content), "what the page cache gave is the file's start");
            match fetch(Ok(file), 5) {
                Fetched::Read(read) => assert_eq!(read.content.unwrap().unwrap(), want),
                other => panic!("{other:?}"),
            }
        }
        // Through the readers: tickets dropped before their turn are skipped, the rest kept.
        let ahead = ReadAhead::start();
        let tickets: Vec<(usize, Ticket)> =
            (0..200).map(|i| (i, ahead.submit(&fd, if i % 3 == 0 { b"a" } else { b"c" }, 5).unwrap())).collect();
        for (i, ticket) in tickets {
            if i % 2 == 1 {
                drop(ticket);
                continue;
            }
            match ticket.wait() {
                Fetched::Read(read) => {
                    assert_eq!(read.content.unwrap().unwrap(), if i % 3 == 0 { b"first" } else { b"third" })
                }
                other => panic!("{i}: {other:?}"),
            }
        }
    }
}
