//! Parallel blob writing: the caller (reading and chunking files) hands over plaintext blobs;
//! compression and sealing run on a rayon pool; full packs are stored by the worker that filled
//! them, so storing overlaps with reading. In-flight plaintext is bounded by a byte budget, so
//! memory does not grow with file or repository size.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::format::BlobKind;
use crate::format::blob;
use crate::format::index::{IndexSegment, IndexedPack};
use crate::format::sealer::Sealer;
use crate::id::{ChunkId, PackId};

use super::Repository;
use super::packer::Packer;

/// Bytes of plaintext that may be queued or in compression at once.
const IN_FLIGHT_BYTES: u64 = 6 * 1024 * 1024;
/// Write an index segment once this many packs are stored (bounds what a crash loses).
const PACKS_PER_SEGMENT: usize = 128;
/// Small blobs are compressed and sealed in batches of up to this many bytes or blobs: one task
/// per 2 KiB blob costs more in thread wake-ups than the work itself (backups of many small
/// files were bound by scheduler traffic).
const BATCH_BYTES: usize = 512 * 1024;
const BATCH_BLOBS: usize = 256;
/// How often a writer looks for index segments other writers have finished.
const RESYNC_EVERY: Duration = Duration::from_secs(30);

/// Counters of what a writer added.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteStats {
    /// New blobs.
    pub blobs: u64,
    /// Their plaintext bytes.
    pub raw_bytes: u64,
    /// Bytes stored (packs and index segments).
    pub stored_bytes: u64,
    /// Packs stored.
    pub packs: u64,
}

#[derive(Debug, Default)]
struct Budget {
    used: Mutex<u64>,
    freed: Condvar,
}

impl Budget {
    fn acquire(&self, n: u64) {
        let mut used = self.used.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // A single blob larger than the budget still proceeds once nothing else is in flight.
        while *used > 0 && *used + n > IN_FLIGHT_BYTES {
            used = self.freed.wait(used).unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        *used += n;
    }

    fn release(&self, n: u64) {
        let mut used = self.used.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *used = used.saturating_sub(n);
        self.freed.notify_all();
    }

    fn wait_idle(&self) {
        let mut used = self.used.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        while *used > 0 {
            used = self.freed.wait(used).unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }
}

/// Blobs waiting to be compressed and sealed together.
#[derive(Debug, Default)]
struct Batch {
    items: Vec<Pending>,
    bytes: usize,
}

#[derive(Debug)]
struct Pending {
    kind: BlobKind,
    id: ChunkId,
    raw_length: u32,
    plaintext: Vec<u8>,
}

#[derive(Debug, Default)]
struct Shared {
    budget: Budget,
    error: Mutex<Option<Error>>,
    raw_bytes: AtomicU64,
    sealed_bytes: AtomicU64,
}

/// Deduplicating, parallel writer of blobs. Call [`BlobWriter::finish`] to store the last packs
/// and their index; blobs are referenced safely only after that.
#[derive(Debug)]
pub struct BlobWriter<'r> {
    repo: &'r Repository,
    packer: Arc<Packer>,
    sealer: Arc<Sealer>,
    pool: rayon::ThreadPool,
    shared: Arc<Shared>,
    /// Ids claimed by this writer and not in the index cache yet (blobs in open packs, and
    /// in packs whose segment is not stored yet).
    session: Mutex<HashSet<ChunkId>>,
    batch: Mutex<Batch>,
    last_sync: Mutex<Instant>,
    blobs: AtomicU64,
    stored_index_bytes: AtomicU64,
    packs: AtomicU64,
    /// The packs this writer stored and indexed.
    written: Mutex<Vec<PackId>>,
    /// Count what would be stored, store nothing (`snapshot --dry-run`).
    dry_run: bool,
}

impl<'r> BlobWriter<'r> {
    pub(super) fn new(repo: &'r Repository, dry_run: bool) -> Result<Self> {
        // One sealer for the writer's blobs and its packs' headers and locators.
        let sealer = repo.sealer()?;
        let packer = Packer::new(
            repo.storage().clone(),
            Arc::clone(&sealer),
            repo.config().pack_target_size as usize,
            repo.storage_connections(),
        )?
        .keeping_tree_packs(repo.tree_pack_cache().cloned());
        let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("cairn-seal-{i}"))
            .build()
            .map_err(|e| Error::Internal(format!("cannot start worker threads: {e}")))?;
        // Chunks whose pack is gone (deleted by a prune that took a backup's lock for stale,
        // or lost) are stored again rather than referenced: one listing of the packs.
        let present = stored_packs(repo)?;
        repo.index().set_gone_packs(&present)?;
        if let Some(cache) = repo.tree_pack_cache() {
            cache.retain(&present);
        }
        Ok(BlobWriter {
            repo,
            packer: Arc::new(packer),
            sealer,
            pool,
            shared: Arc::default(),
            session: Mutex::default(),
            batch: Mutex::default(),
            last_sync: Mutex::new(Instant::now()),
            blobs: AtomicU64::new(0),
            stored_index_bytes: AtomicU64::new(0),
            packs: AtomicU64::new(0),
            written: Mutex::default(),
            dry_run,
        })
    }

    /// Ids in the session set (for tests: it holds what is not indexed yet, not everything).
    #[cfg(test)]
    pub(super) fn session_len(&self) -> usize {
        self.session.lock().unwrap_or_else(std::sync::PoisonError::into_inner).len()
    }

    /// Whether `id` must be stored: not in the index and not added in this session. Marks it
    /// as added.
    fn claim(&self, id: &ChunkId) -> Result<bool> {
        self.resync_now_and_then()?;
        if self.repo.index().contains(id)? {
            return Ok(false);
        }
        Ok(self.session.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(*id))
    }

    /// Picks up index segments other writers have finished since the last look (at most every
    /// `RESYNC_EVERY`), so concurrent backups dedup against each other's stored packs.
    fn resync_now_and_then(&self) -> Result<()> {
        let mut last = self.last_sync.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if last.elapsed() < RESYNC_EVERY {
            return Ok(());
        }
        *last = Instant::now();
        drop(last);
        self.repo.sync_index()
    }

    /// Adds a blob, returning its id; stores it only if the repository lacks it.
    /// Packs handed to the uploads and not stored yet (for progress displays).
    pub fn uploads_pending(&self) -> usize {
        self.packer.uploads_pending()
    }

    pub fn add(&self, kind: BlobKind, plaintext: Vec<u8>) -> Result<ChunkId> {
        let id = self.repo.chunk_id(&plaintext);
        self.add_with_id(kind, id, plaintext)?;
        Ok(id)
    }

    /// Adds a blob whose keyed id the caller computed already.
    pub fn add_with_id(&self, kind: BlobKind, id: ChunkId, plaintext: Vec<u8>) -> Result<()> {
        if let Some(e) = self.shared.error.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take() {
            return Err(e);
        }
        if kind == BlobKind::Tree
            && !self.dry_run
            && let Some(own) = self.repo.own_record()
        {
            // Every tree of the snapshot, stored now or not: the next backup's parent.
            own.keep_tree(&id, &plaintext)?;
        }
        if !self.claim(&id)? {
            return Ok(());
        }
        let raw_length =
            u32::try_from(plaintext.len()).map_err(|_| Error::InvalidInput("blob larger than 4 GiB".into()))?;
        self.blobs.fetch_add(1, Ordering::Relaxed);
        if self.dry_run {
            self.shared.raw_bytes.fetch_add(u64::from(raw_length), Ordering::Relaxed);
            return Ok(());
        }
        let item = Pending { kind, id, raw_length, plaintext };
        if item.plaintext.len() >= BATCH_BYTES {
            self.dispatch(vec![item]);
        } else {
            let full = {
                let mut batch = self.batch.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                batch.bytes += item.plaintext.len();
                batch.items.push(item);
                (batch.bytes >= BATCH_BYTES || batch.items.len() >= BATCH_BLOBS).then(|| std::mem::take(&mut *batch))
            };
            if let Some(batch) = full {
                self.dispatch(batch.items);
            }
        }
        if self.packer.finished_len() >= PACKS_PER_SEGMENT || self.packer.finished_blobs() >= super::BLOBS_PER_SEGMENT {
            self.write_index()?;
        }
        Ok(())
    }

    /// Compresses, seals and packs `items` on the pool, within the in-flight budget.
    fn dispatch(&self, items: Vec<Pending>) {
        if items.is_empty() {
            return;
        }
        let cost = items.iter().map(|i| i.plaintext.len() as u64 + 1).sum::<u64>();
        self.shared.budget.acquire(cost);
        let shared = Arc::clone(&self.shared);
        let packer = Arc::clone(&self.packer);
        let sealer = Arc::clone(&self.sealer);
        let level = self.repo.config().zstd_level;
        self.pool.spawn(move || {
            let result = (|| {
                for Pending { kind, id, raw_length, plaintext } in items {
                    // Compressed and padded straight into the buffer it is sealed in.
                    let mut sealed =
                        blob::encode_for_envelope(&plaintext, level, sealer.header_len(), sealer.overhead())?;
                    drop(plaintext);
                    sealer.seal_in_place(kind.object_kind(), id.as_bytes(), &mut sealed)?;
                    shared.raw_bytes.fetch_add(u64::from(raw_length), Ordering::Relaxed);
                    shared.sealed_bytes.fetch_add(sealed.len() as u64, Ordering::Relaxed);
                    packer.add(kind, id, raw_length, sealed)?;
                }
                Ok::<(), Error>(())
            })();
            if let Err(e) = result {
                let mut slot = shared.error.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                slot.get_or_insert(e);
            }
            shared.budget.release(cost);
        });
    }

    fn write_index(&self) -> Result<()> {
        self.save_segment(self.packer.take_finished())
    }

    fn save_segment(&self, packs: Vec<IndexedPack>) -> Result<()> {
        if packs.is_empty() {
            return Ok(());
        }
        self.written.lock().unwrap_or_else(std::sync::PoisonError::into_inner).extend(packs.iter().map(|p| p.pack));
        self.packs.fetch_add(packs.len() as u64, Ordering::Relaxed);
        let pack_bytes: u64 = packs.iter().map(|p| p.size).sum();
        let segment = IndexSegment { packs, supersedes: Vec::new(), unverified: Vec::new() };
        let size = self.repo.save_index_segment(&segment)?;
        self.stored_index_bytes.fetch_add(size + pack_bytes, Ordering::Relaxed);
        // The index cache now answers for these ids: the session set keeps only what is not
        // indexed yet, so it stays near a segment's worth of ids however large the backup. (A
        // claim that asked the index just before the segment was applied and finds its id
        // gone from the session stores a second copy, as any race with another writer does.)
        let mut session = self.session.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for blob in segment.packs.iter().flat_map(|p| &p.blobs) {
            session.remove(&blob.id);
        }
        if session.capacity() > 4 * session.len().max(1024) {
            session.shrink_to_fit();
        }
        Ok(())
    }

    /// Before the last index segment (and so before any snapshot): the locks still hold, and
    /// every pack this writer stored and every pack holding a chunk it reused is in the
    /// storage (one listing). A pack gone means a snapshot would reference data that is not
    /// there: [`Error::PacksGone`], and the cache stops counting those chunks as stored.
    fn check_present(&self, last: &[IndexedPack]) -> Result<()> {
        self.repo.check_locks()?;
        let present = stored_packs(self.repo)?;
        let mut needed: Vec<PackId> = self.written.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        needed.extend(last.iter().map(|p| p.pack));
        needed.extend(self.repo.index().used_packs()?);
        let mut gone: Vec<String> = needed.iter().filter(|p| !present.contains(p)).map(super::pack_name).collect();
        if gone.is_empty() {
            return Ok(());
        }
        gone.sort();
        gone.dedup();
        self.repo.index().set_gone_packs(&present)?;
        Err(Error::PacksGone { packs: gone })
    }

    /// Waits for every blob, stores the open packs, checks that every pack the writer needs
    /// is present, then stores the index segment naming its packs. After this returns, every
    /// id this writer returned is in the repository and its index.
    /// [`crate::Error::LockLost`] before any segment is stored when a lock the repository
    /// handle holds was lost; [`crate::Error::PacksGone`] when a pack it needs is gone.
    pub fn finish(self) -> Result<WriteStats> {
        if self.dry_run {
            // Nothing was sealed or packed: the counts of what would have been.
            return Ok(WriteStats {
                blobs: self.blobs.load(Ordering::Relaxed),
                raw_bytes: self.shared.raw_bytes.load(Ordering::Relaxed),
                stored_bytes: 0,
                packs: 0,
            });
        }
        let rest = std::mem::take(&mut *self.batch.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        self.dispatch(rest.items);
        self.shared.budget.wait_idle();
        if let Some(e) = self.shared.error.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take() {
            return Err(e);
        }
        self.packer.flush()?;
        let last = self.packer.take_finished();
        self.check_present(&last)?;
        self.save_segment(last)?;
        self.repo.index().flush()?;
        // Not fatal: the id file only speeds lookups up. A fold that fails (a full cache disk)
        // leaves them right, the next command tries again, and this backup's data is stored.
        let _ = self.repo.index().fold_new_ids();
        Ok(WriteStats {
            blobs: self.blobs.load(Ordering::Relaxed),
            raw_bytes: self.shared.raw_bytes.load(Ordering::Relaxed),
            stored_bytes: self.stored_index_bytes.load(Ordering::Relaxed),
            packs: self.packs.load(Ordering::Relaxed),
        })
    }
}

/// The packs in the storage (one listing of `data/`).
fn stored_packs(repo: &Repository) -> Result<HashSet<PackId>> {
    Ok(repo.list_packs()?.into_iter().map(|(id, _)| id).collect())
}
