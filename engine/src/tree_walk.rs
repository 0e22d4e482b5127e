//! Every tree reachable from some roots, read once each, for walks that need only what trees
//! refer to (prune's mark phase, `stats`). Reader threads locate, read, open and decode trees
//! while the caller's thread takes each one as soon as it is ready and queues the subtrees it
//! has not seen. With a cold page cache every tree is a disk read (a round trip on a remote
//! store): the readers keep several in flight, and no read waits for a batch's slowest one.
//! Trees are decoded to their references only ([`TreeRefs`]): names and metadata are skipped.
//!
//! Memory: the decoded trees waiting for the caller are bounded in number and in bytes (a tree
//! larger than the byte budget is read alone); the set of trees seen and the queue hold ids.

use std::collections::HashSet;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

use crate::error::{Error, Result};
use crate::format::tree::TreeRefs;
use crate::id::ChunkId;
use crate::repo::Repository;

/// Decoded trees waiting for the caller, at most (besides one per reader being read).
const TREES_WAITING: usize = 32;
/// Plaintext bytes of the trees being read or waiting for the caller, at most, unless one tree
/// alone is larger.
const TREE_BYTES_AT_ONCE: u64 = 16 << 20;
/// Readers on a local store, at least: reads that wait on the disk leave a core free for
/// another reader's decoding.
const MIN_READERS: usize = 4;

/// One tree of the walk.
#[derive(Debug)]
pub struct WalkedTree {
    /// Its id.
    pub id: ChunkId,
    /// Its plaintext length (fixed by its id: the blob was hashed to it).
    pub length: u32,
    /// What it refers to.
    pub refs: TreeRefs,
}

/// The queue the caller fills and the readers empty.
#[derive(Default)]
struct Queue {
    ids: Vec<ChunkId>,
    /// Plaintext bytes of the trees being read or waiting for the caller.
    bytes: u64,
    /// Set when the walk ends (done, or stopped by an error).
    stop: bool,
    /// Readers waiting for an id, and for room in the byte budget: a wake-up is a system
    /// call, made only when someone waits.
    idle: usize,
    short: usize,
}

struct Shared<'r> {
    repo: &'r Repository,
    queue: Mutex<Queue>,
    /// Signalled when ids are queued or the walk stops.
    work: Condvar,
    /// Signalled when bytes are freed or the walk stops.
    room: Condvar,
}

impl Shared<'_> {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A reader's loop: until the walk stops or the caller is gone.
    fn read(&self, done: &SyncSender<Result<WalkedTree>>) {
        loop {
            let Some(id) = self.next_id() else { return };
            // A panic ends the walk with an error (its reservation, if any, then no longer matters).
            let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.read_one(id)))
                .unwrap_or_else(|_| Err(Error::Internal(format!("reading tree {id} panicked"))));
            if done.send(read).is_err() {
                return;
            }
        }
    }

    fn next_id(&self) -> Option<ChunkId> {
        let mut q = self.lock();
        loop {
            if q.stop {
                return None;
            }
            if let Some(id) = q.ids.pop() {
                return Some(id);
            }
            q.idle += 1;
            q = self.work.wait(q).unwrap_or_else(PoisonError::into_inner);
            q.idle -= 1;
        }
    }

    /// Reads tree `id`, holding its length in the byte budget until the caller has visited it
    /// (or it failed). Prune and stats need a full key: a write-only handle gets the keyring's
    /// clear refusal here.
    fn read_one(&self, id: ChunkId) -> Result<WalkedTree> {
        let loc = self.repo.locate(&id)?;
        let length = u64::from(loc.raw_length);
        self.reserve(length);
        let read = self.repo.read_blob_located(&id, &loc).and_then(|bytes| {
            let refs = TreeRefs::decode(&bytes, &format!("tree {id}"))?;
            Ok(WalkedTree { id, length: loc.raw_length, refs })
        });
        if read.is_err() {
            self.release(length);
        }
        read
    }

    /// Waits until the byte budget has room for `length` more (or holds nothing), and takes it.
    fn reserve(&self, length: u64) {
        let mut q = self.lock();
        while q.bytes > 0 && q.bytes.saturating_add(length) > TREE_BYTES_AT_ONCE && !q.stop {
            q.short += 1;
            q = self.room.wait(q).unwrap_or_else(PoisonError::into_inner);
            q.short -= 1;
        }
        q.bytes = q.bytes.saturating_add(length);
    }

    fn release(&self, length: u64) {
        let mut q = self.lock();
        q.bytes = q.bytes.saturating_sub(length);
        if q.short > 0 {
            self.room.notify_all();
        }
    }

    /// Queues `ids` (in reverse: readers take the last first).
    fn queue(&self, ids: Vec<ChunkId>) {
        let mut q = self.lock();
        let waking = q.idle.min(ids.len());
        q.ids.extend(ids.into_iter().rev());
        for _ in 0..waking {
            self.work.notify_one();
        }
    }

    fn stop(&self) {
        self.lock().stop = true;
        self.work.notify_all();
        self.room.notify_all();
    }
}

/// Calls `visit` once with every tree reachable from `roots`, on the calling thread, in no
/// particular order. The first tree that cannot be read, or the first error of `visit`, stops
/// the walk and is returned.
pub fn walk_trees(
    repo: &Repository,
    roots: impl IntoIterator<Item = ChunkId>,
    mut visit: impl FnMut(WalkedTree) -> Result<()>,
) -> Result<()> {
    let shared = Shared { repo, queue: Mutex::default(), work: Condvar::new(), room: Condvar::new() };
    let mut seen: HashSet<ChunkId> = HashSet::new();
    let mut outstanding = 0usize;
    {
        let mut q = shared.lock();
        for root in roots {
            if seen.insert(root) {
                q.ids.push(root);
                outstanding += 1;
            }
        }
    }
    if outstanding == 0 {
        return Ok(());
    }
    let readers = repo.storage_connections().max(MIN_READERS);
    let (done, results) = sync_channel(TREES_WAITING);
    std::thread::scope(|scope| {
        // Stops the readers however this ends, a panic of `visit` included: the scope waits
        // for them before it returns or unwinds.
        let _stop = StopOnDrop(&shared);
        for _ in 0..readers {
            let done = done.clone();
            let shared = &shared;
            scope.spawn(move || shared.read(&done));
        }
        drop(done);
        take_trees(&shared, results, &mut seen, outstanding, &mut visit)
    })
}

/// Stops the walk when dropped.
struct StopOnDrop<'s, 'r>(&'s Shared<'r>);

impl Drop for StopOnDrop<'_, '_> {
    fn drop(&mut self) {
        self.0.stop();
    }
}

/// The caller's side: takes each tree read, queues its unseen subtrees, visits it; until no
/// tree is queued or being read. Dropping `results` on the way out frees readers blocked on a
/// full channel.
fn take_trees(
    shared: &Shared<'_>,
    results: Receiver<Result<WalkedTree>>,
    seen: &mut HashSet<ChunkId>,
    mut outstanding: usize,
    visit: &mut impl FnMut(WalkedTree) -> Result<()>,
) -> Result<()> {
    while outstanding > 0 {
        let tree =
            results.recv().map_err(|_| Error::Internal("the tree readers stopped before the walk ended".into()))??;
        outstanding -= 1;
        let fresh: Vec<ChunkId> = tree.refs.subtrees.iter().filter(|id| seen.insert(**id)).copied().collect();
        if !fresh.is_empty() {
            outstanding += fresh.len();
            shared.queue(fresh);
        }
        let length = u64::from(tree.length);
        let visited = visit(tree);
        shared.release(length);
        visited?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
