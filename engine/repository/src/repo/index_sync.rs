//! The index cache kept in step with the repository's index segments: new segments applied,
//! superseded ones dropped, memory bounded by reading segments in batches; new segments
//! stored.

use super::*;

/// Index segments read at once while syncing the cache (memory: this many decoded segments).
pub(super) const SYNC_BATCH: usize = 8;
/// Entries of decoded segments a sync keeps between its two passes (about 100 MiB).
#[cfg(not(feature = "test-vectors"))]
const SYNC_KEEP_ENTRIES: usize = 1 << 20;
/// Test builds keep almost nothing, so the integration tests exercise the re-reading path.
#[cfg(feature = "test-vectors")]
const SYNC_KEEP_ENTRIES: usize = 64;

impl Repository {
    /// Brings the index cache up to the repository's segments: applies segments it has not
    /// seen, ignores segments another segment supersedes (prune writes its new index before
    /// deleting the old one), and rebuilds the cache when a segment it applied is gone or
    /// superseded (the repository is the truth). A segment that cannot be read is skipped and
    /// reported by [`Repository::index_problems`]: the blobs it lists look missing, which
    /// backup survives (it stores them again) and `check` reports.
    /// A write-only handle reads no segment: its cache lists what it stored itself (applied
    /// as it stores each segment), and a backup's listing of packs drops what a prune deleted.
    /// When a segment it stored is gone, a prune rewrote the index: the packs it repacked stay
    /// stored for the grace period, but their unused blobs are in no index any more, and a
    /// snapshot reusing one could not be restored. The cache then starts over (the next backup
    /// stores its data again).
    pub fn sync_index(&self) -> Result<()> {
        if self.is_write_only() {
            let present: HashSet<ObjectId> =
                Dir::Index.ids(&self.storage.list(Dir::Index.prefix())?).into_iter().collect();
            if self.index.applied_segments()?.keys().any(|id| !present.contains(id)) || self.index.interrupted()? {
                self.index.clear()?;
            }
            return Ok(());
        }
        let names = self.storage.list(Dir::Index.prefix())?;
        let present: HashSet<ObjectId> = Dir::Index.ids(&names).into_iter().collect();
        let applied = self.index.applied_segments()?;
        let load = |id: &ObjectId| -> (ObjectId, Result<IndexSegment>) { (*id, self.load_segment(id)) };
        let mut fresh_ids: Vec<ObjectId> = present.iter().filter(|id| !applied.contains_key(id)).copied().collect();
        fresh_ids.sort();
        // Pass 1, in bounded batches: learn what the fresh segments supersede. Decoded segments
        // are kept for pass 2 up to a budget of entries; beyond it they are read again, so a
        // first sync of a huge repository does not hold its whole index in memory.
        // What the present applied segments supersede (one gone no longer supersedes anything).
        let mut superseded: HashSet<ObjectId> =
            applied.iter().filter(|(id, _)| present.contains(id)).flat_map(|(_, s)| s.iter().copied()).collect();
        let mut kept: HashMap<ObjectId, IndexSegment> = HashMap::new();
        let mut kept_entries = 0usize;
        let mut problems = Vec::new();
        let mut failed: HashSet<ObjectId> = HashSet::new();
        for batch in fresh_ids.chunks(SYNC_BATCH) {
            for (id, seg) in self.with_io_pool(|| batch.par_iter().map(load).collect::<Vec<_>>()) {
                match seg {
                    Ok(seg) => {
                        superseded.extend(seg.supersedes.iter().copied());
                        let n: usize = seg.packs.iter().map(|p| p.blobs.len()).sum();
                        if kept_entries + n <= SYNC_KEEP_ENTRIES {
                            kept_entries += n;
                            kept.insert(id, seg);
                        }
                    }
                    Err(e) => {
                        failed.insert(id);
                        problems.push(e);
                    }
                }
            }
        }
        // A crash while a segment was applied in several batches: its marker may be missing
        // beside entries that made it, so only a rebuild is sure to drop them.
        let rebuild =
            applied.keys().any(|id| !present.contains(id) || superseded.contains(id)) || self.index.interrupted()?;
        let mut to_apply: Vec<ObjectId> = Vec::new();
        if rebuild {
            self.index.clear()?;
            to_apply.extend(applied.keys().filter(|id| present.contains(id)));
        }
        to_apply.extend(fresh_ids.iter().filter(|id| !failed.contains(id)));
        to_apply.retain(|id| !superseded.contains(id));
        // Many segments: applied with background compactions off, then compacted once.
        let compact = rebuild || to_apply.len() >= SYNC_BATCH;
        let bulk = compact.then(|| self.index.bulk_load(to_apply.len()));
        // Pass 2: apply, reading again what pass 1 did not keep, again in bounded batches.
        for batch in to_apply.chunks(SYNC_BATCH) {
            let missing: Vec<ObjectId> = batch.iter().filter(|id| !kept.contains_key(id)).copied().collect();
            let mut loaded: HashMap<ObjectId, Result<IndexSegment>> =
                self.with_io_pool(|| missing.par_iter().map(load).collect());
            for id in batch {
                let seg = match kept.remove(id) {
                    Some(seg) => Ok(seg),
                    None => loaded.remove(id).unwrap_or_else(|| Err(Error::Missing(Dir::Index.object(id)))),
                };
                match seg {
                    Ok(seg) => self.index.apply_segment(*id, &seg)?,
                    Err(e) => problems.push(e),
                }
            }
        }
        if compact {
            // Before compactions are back on, so none starts on part of level 0 first.
            self.index.compact();
        }
        drop(bulk);
        // After compacting: the fold then reads few tables. Not fatal, as at the end of a
        // backup: lookups stay right without a new id file.
        let _ = self.index.fold_new_ids();
        *self.index_problems.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = problems;
        Ok(())
    }

    /// A path in the cache directory no other working set (of this process or another) uses:
    /// `<kind>-<purpose>-<pid>-<random>`.
    fn working_set_path(&self, kind: &str, purpose: &str) -> Result<std::path::PathBuf> {
        let unique = hex::encode(crate::crypto::random_array::<6>()?);
        Ok(self.cache_dir.join(format!("{kind}-{purpose}-{}-{unique}", std::process::id())))
    }

    /// A new, empty scratch table in this repository's cache directory (deleted when dropped).
    pub fn scratch_table(&self, purpose: &str) -> Result<crate::index::ScratchTable> {
        crate::index::ScratchTable::create(&self.working_set_path("scratch", purpose)?)
    }

    /// A new, empty map from ids to values of at most `V` bytes, in memory up to
    /// [`crate::index::IDS_IN_MEMORY`] entries (fewer when [`Repository::set_sort_memory`]
    /// allows less), beyond that in a scratch table in this repository's cache directory
    /// (deleted when dropped).
    pub fn id_map<const V: usize>(&self, purpose: &str) -> Result<crate::index::IdMap<V>> {
        let path = self.working_set_path("scratch", purpose)?;
        // A budget of 7/8 of a power of two, so the table's buckets (a power of two, filled to
        // 7/8) never take more than the memory allowed.
        let allowed = self.sort_memory / (32 + V + 1);
        let mut budget = crate::index::IDS_IN_MEMORY;
        while budget > allowed {
            budget /= 2;
        }
        Ok(crate::index::IdMap::new(budget, path))
    }

    /// A new, empty set of sorted records whose spill table goes into this repository's cache
    /// directory; it keeps up to [`Repository::set_sort_memory`] bytes in memory.
    pub fn sorted_records<const N: usize>(&self, purpose: &str) -> Result<crate::index::SortedRecords<N>> {
        let budget = self.sort_memory / N.max(1);
        Ok(crate::index::SortedRecords::new(budget, self.working_set_path("sorted", purpose)?))
    }

    /// Makes the index cache hold exactly the segments `live` (a caller's own reading of the
    /// index: check's), rebuilding it from them when the segments it applied differ, so that
    /// a storage that answers two listings differently cannot make the cache vouch for a
    /// segment the caller did not see. A segment that cannot be read now is left out: its
    /// blobs then look missing, never present. Returns whether the cache was rebuilt.
    pub fn align_index_cache(&self, live: &HashSet<ObjectId>) -> Result<bool> {
        let applied = self.index.applied_segments()?;
        if applied.len() == live.len() && applied.keys().all(|id| live.contains(id)) {
            return Ok(false);
        }
        self.index.clear()?;
        let mut ids: Vec<ObjectId> = live.iter().copied().collect();
        ids.sort();
        let bulk = self.index.bulk_load(ids.len());
        for batch in ids.chunks(SYNC_BATCH) {
            let loaded: Vec<(ObjectId, Result<IndexSegment>)> =
                self.with_io_pool(|| batch.par_iter().map(|id| (*id, self.load_segment(id))).collect());
            for (id, segment) in loaded {
                if let Ok(segment) = segment {
                    self.index.apply_segment(id, &segment)?;
                }
            }
        }
        self.index.compact();
        drop(bulk);
        let _ = self.index.fold_new_ids();
        Ok(true)
    }

    /// Index segments the last [`Repository::sync_index`] could not read, as errors naming them.
    pub fn index_problems(&self) -> Vec<String> {
        self.index_problems
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .map(|e| e.to_string())
            .collect()
    }

    /// Writes an index segment and applies it to the cache. Returns its stored size.
    /// [`Error::LockLost`] (nothing written) when a lock this handle holds was lost.
    pub fn save_index_segment(&self, segment: &IndexSegment) -> Result<u64> {
        if let Some(kit) = self.write_kit_in_use().filter(|_| !segment.supersedes.is_empty()) {
            return Err(write_only_refusal(kit.slot()));
        }
        self.check_locks()?;
        let id = ObjectId::random()?;
        let size = self.save_object(ObjectKind::IndexSegment, &Dir::Index.object(&id), &segment.encode())?;
        self.index.apply_segment(id, segment)?;
        Ok(size)
    }
}
