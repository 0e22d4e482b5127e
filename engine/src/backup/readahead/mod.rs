//! Small files read ahead of the walk, on I/O threads.
//!
//! The walk is one thread, in name order, so the tree comes out ordered. With a cold page cache
//! every new small file costs it a disk read it waits for: open (the inode), then read (the
//! data), one file after the other. bupstash, the fastest peer there, keeps a few reads in
//! flight on threads of their own. Here the walker, once it has stat'ed a directory's entries,
//! hands the regular files it will read (new or changed since the parent snapshot) to
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
//! A larger file is only primed: a reader opens it and queues the read of its first
//! [`PRIMED`] bytes, and the walker reads it itself when it comes to it (without waiting for
//! the reader).
//!
//! Bounded: at most [`MAX_FILES`] files and [`MAX_BYTES`] bytes are held ahead, and
//! [`MAX_PRIMED`] bytes primed (a file the budget has no room for is read by the walker
//! itself, so the walk never waits for room); only files of at most [`SMALL`] bytes, not
//! sparse, are read whole.

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
/// Of a larger file the readers only queue the reads of its first bytes, up to this many (what
/// the walker asks the kernel for at once when it opens one: `hostfs::advise_sequential`).
const PRIMED: u64 = 8 << 20;
/// Bytes of larger files primed and not yet reached by the walker, at most (they are held in
/// the page cache, not here).
const MAX_PRIMED: u64 = 64 << 20;

/// What a reader found, for the walker to check and store.
#[derive(Debug)]
pub(super) enum Fetched {
    /// The file could not be opened, or its fstat after the read failed.
    Unopened(io::Error),
    /// Not read: a larger file, only primed, or the process had no file descriptor to spare
    /// when the reader opened it (the walker reads it itself rather than leave it out).
    Left,
    /// The file as read.
    Read(Box<ReadFile>),
}

struct Job {
    dir: Arc<OwnedFd>,
    name: Vec<u8>,
    /// Its size when stat'ed: what is read (a small file) or primed (a larger one).
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
    primed: u64,
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
    /// A larger file, primed only: the walker reads it itself.
    primed: bool,
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
        if self.primed {
            return Fetched::Left;
        }
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
    /// The file's job, when no reader has taken it yet (then no reader will: the walker waits
    /// only for a job a reader has). Readers take jobs from the front of the queue and the
    /// walker its tickets in the order it queued them, so a job not taken is mostly at the
    /// front, behind jobs cancelled since (dropped here on the way); or behind the files
    /// further on in a directory the walk is below, queued before it.
    fn take_back(&self) -> Option<Job> {
        let mut queue = lock(&self.shared.queue);
        while queue.jobs.front().is_some_and(|job| job.slot.cancelled.load(Ordering::Relaxed)) {
            queue.jobs.pop_front();
        }
        let at = queue.jobs.iter().position(|job| Arc::ptr_eq(&job.slot, &self.slot))?;
        queue.jobs.remove(at)
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.slot.cancelled.store(true, Ordering::Relaxed);
        let mut queue = lock(&self.shared.queue);
        queue.files = queue.files.saturating_sub(1);
        if self.primed {
            queue.primed = queue.primed.saturating_sub(self.bytes);
        } else {
            queue.bytes = queue.bytes.saturating_sub(self.bytes);
        }
    }
}

impl ReadAhead {
    /// Starts the readers. Without threads (the system refused them) nothing is read ahead.
    pub(super) fn start() -> Self {
        Self::with_batch(batch_size())
    }

    /// Starts the readers, each taking up to `batch` files at once.
    fn with_batch(batch: usize) -> Self {
        let shared = Arc::new(Shared { batch, ..Shared::default() });
        let threads = (0..THREADS)
            .filter_map(|i| {
                let shared = Arc::clone(&shared);
                std::thread::Builder::new().name(format!("cairn-read-{i}")).spawn(move || read_jobs(&shared)).ok()
            })
            .collect();
        ReadAhead { shared, threads }
    }

    /// Hands the file `name` in `dir` (`size` bytes when stat'ed) to the readers, when the
    /// budget has room for it: read whole if at most [`SMALL`] bytes, else primed (its first
    /// [`PRIMED`] bytes queued in the kernel, for the walker to read once it comes to it).
    pub(super) fn submit(&self, dir: &Arc<OwnedFd>, name: &[u8], size: u64) -> Option<Ticket> {
        if self.threads.is_empty() {
            return None;
        }
        let primed = size > SMALL;
        let bytes = if primed { size.min(PRIMED) } else { size };
        let slot = Arc::new(Slot::default());
        {
            let mut queue = lock(&self.shared.queue);
            let full = if primed { queue.primed + bytes > MAX_PRIMED } else { queue.bytes + bytes > MAX_BYTES };
            if queue.files >= MAX_FILES || full {
                return None;
            }
            queue.files += 1;
            if primed {
                queue.primed += bytes;
            } else {
                queue.bytes += bytes;
            }
            queue.jobs.push_back(Job { dir: Arc::clone(dir), name: name.to_vec(), size, slot: Arc::clone(&slot) });
            if queue.jobs.len() >= self.shared.batch {
                queue.sleepers.wake(&self.shared.work, 1);
            }
        }
        Some(Ticket { slot, shared: Arc::clone(&self.shared), bytes, primed })
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
            if job.slot.cancelled.load(Ordering::Relaxed) || job.size > SMALL {
                continue; // a larger file was primed in open_ahead: nobody waits for it
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
/// O_NOATIME, never a symlink), reads what the page cache holds of each small one
/// ([`hostfs::read_cached`]) and queues the reads of the rest ([`hostfs::advise_willneed`]);
/// a larger file is primed so and closed. `None` for a file not opened here, to open when read:
/// cancelled, or after the process ran out of descriptors (the batch's files are read and
/// closed one by one before; if the process still has none to spare then, the file is left to
/// the walker); and for a larger file, primed.
fn open_ahead(jobs: &[Job]) -> Vec<Option<io::Result<Opened>>> {
    let mut opened = Vec::with_capacity(jobs.len());
    for job in jobs {
        if job.slot.cancelled.load(Ordering::Relaxed) {
            opened.push(None);
            continue;
        }
        match hostfs::open_file_at(job.dir.as_fd(), &job.name) {
            Ok(file) if job.size > SMALL => {
                hostfs::prime(&file, job.size.min(PRIMED));
                opened.push(None);
            }
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
/// as it can: one read of what is left of the `size` bytes its lstat gave after what the page
/// cache gave when opened (none for an empty or a cached file), one fstat
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
mod tests;
