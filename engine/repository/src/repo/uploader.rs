//! Background pack uploads, so storing a pack (an fsync locally, a round trip to S3) overlaps
//! with chunking and sealing instead of stalling a sealing thread.
//!
//! At most `connections` uploads run at once and one more waits to be taken: a full queue
//! blocks the producer, so memory stays bounded at `(connections + 1)` packs however fast
//! the source is read. With 0 connections every upload runs in the calling thread.

use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use crate::error::{Error, Result};

/// One upload; it records its own outcome (the pack it stored) when it succeeds.
pub(crate) type UploadJob = Box<dyn FnOnce() -> Result<()> + Send>;

#[derive(Debug, Default)]
struct Shared {
    /// Jobs submitted and not finished.
    pending: Mutex<usize>,
    idle: Condvar,
    /// The first failure, handed to the next caller of `submit` or `wait`.
    error: Mutex<Option<Error>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A small pool of upload threads fed through a bounded queue.
#[derive(Debug)]
pub(crate) struct Uploader {
    tx: Option<SyncSender<UploadJob>>,
    threads: Vec<JoinHandle<()>>,
    shared: Arc<Shared>,
}

impl Uploader {
    /// Starts `connections` upload threads (none: uploads run inline).
    pub(crate) fn new(connections: usize) -> Result<Self> {
        let shared = Arc::new(Shared::default());
        if connections == 0 {
            return Ok(Uploader { tx: None, threads: Vec::new(), shared });
        }
        let (tx, rx) = sync_channel::<UploadJob>(0);
        let rx = Arc::new(Mutex::new(rx));
        let mut threads = Vec::with_capacity(connections);
        for i in 0..connections {
            let rx = Arc::clone(&rx);
            let shared = Arc::clone(&shared);
            let handle = std::thread::Builder::new()
                .name(format!("cairn-upload-{i}"))
                .spawn(move || worker(&rx, &shared))
                .map_err(|e| Error::Internal(format!("cannot start upload threads: {e}")))?;
            threads.push(handle);
        }
        Ok(Uploader { tx: Some(tx), threads, shared })
    }

    /// Queues `job`, blocking while every connection is busy. Returns an earlier upload's
    /// failure instead, if there was one.
    pub(crate) fn submit(&self, job: UploadJob) -> Result<()> {
        self.take_error()?;
        let Some(tx) = &self.tx else { return job() };
        *lock(&self.shared.pending) += 1;
        if tx.send(job).is_err() {
            finish(&self.shared, Err(Error::Internal("the upload threads are gone".into())));
        }
        Ok(())
    }

    /// Waits until every queued upload has finished; the first failure, if any.
    pub(crate) fn wait(&self) -> Result<()> {
        let mut pending = lock(&self.shared.pending);
        while *pending > 0 {
            pending = self.shared.idle.wait(pending).unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        drop(pending);
        self.take_error()
    }

    /// Uploads queued or running.
    pub(crate) fn pending(&self) -> usize {
        *lock(&self.shared.pending)
    }

    fn take_error(&self) -> Result<()> {
        match lock(&self.shared.error).take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

fn worker(rx: &Mutex<Receiver<UploadJob>>, shared: &Shared) {
    loop {
        // The lock is held only while waiting for the next job.
        let job = match lock(rx).recv() {
            Ok(job) => job,
            Err(_) => return,
        };
        // A panic in an upload (a bug, in a dependency too) fails the operation like an error
        // instead of leaving the producer waiting on a dead thread.
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)).unwrap_or_else(|p| {
            let what = p.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| p.downcast_ref::<String>().cloned());
            Err(Error::Internal(format!("pack upload panicked: {}", what.unwrap_or_default())))
        });
        finish(shared, outcome);
    }
}

fn finish(shared: &Shared, outcome: Result<()>) {
    if let Err(e) = outcome {
        lock(&shared.error).get_or_insert(e);
    }
    let mut pending = lock(&shared.pending);
    *pending = pending.saturating_sub(1);
    if *pending == 0 {
        shared.idle.notify_all();
    }
}

impl Drop for Uploader {
    fn drop(&mut self) {
        // Closing the queue ends the threads once they finish what they hold.
        self.tx = None;
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[test]
    fn runs_everything_and_bounds_concurrency() {
        for connections in [0, 1, 3] {
            let up = Uploader::new(connections).unwrap();
            let running = Arc::new(AtomicUsize::new(0));
            let peak = Arc::new(AtomicUsize::new(0));
            let done = Arc::new(AtomicUsize::new(0));
            for _ in 0..12 {
                let (running, peak, done) = (running.clone(), peak.clone(), done.clone());
                up.submit(Box::new(move || {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(5));
                    running.fetch_sub(1, Ordering::SeqCst);
                    done.fetch_add(1, Ordering::SeqCst);
                    Ok(())
                }))
                .unwrap();
            }
            up.wait().unwrap();
            assert_eq!(done.load(Ordering::SeqCst), 12);
            assert!(
                peak.load(Ordering::SeqCst) <= connections.max(1),
                "{connections}: {}",
                peak.load(Ordering::SeqCst)
            );
        }
    }

    #[test]
    fn a_failure_reaches_the_producer() {
        let up = Uploader::new(2).unwrap();
        up.submit(Box::new(|| Err(Error::InvalidInput("disk full".into())))).unwrap();
        let e = up.wait().unwrap_err();
        assert!(e.to_string().contains("disk full"));
        // Reported once; the uploader keeps working afterwards.
        up.submit(Box::new(|| Ok(()))).unwrap();
        up.wait().unwrap();
    }
}
