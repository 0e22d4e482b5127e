//! A small in-memory set of the chunk ids of packs that lookups keep hitting, so that a run of
//! lookups of stored chunks costs one disk read per pack instead of one per chunk.
//!
//! Chunks that were stored together are looked up together: an unchanged file's chunks when a
//! snapshot checks that its parent's chunks are still indexed, a moved or copied file, a second
//! machine with the same data. They sit in the same packs, because a pack is filled with the
//! chunks of consecutive files. Each lookup of a present id in a large cache costs a disk block
//! read (8 µs at 50M entries, warm page cache), so such runs are read from packs' id lists
//! instead. This is the "locality-preserved caching" of Data Domain's deduplication file
//! system (Zhu, Li and Patterson, FAST 2008).
//!
//! Only positive answers come from here, and only for ids that the cache holds: every id of a
//! pack's list is also a `b` entry (both are written in one batch and cleared together). A miss
//! falls through to the cache's id file and RocksDB, so the set can drop anything at any time.
//!
//! Memory is bounded: at most [`CAPACITY`] ids (4.5 MiB), enough for a pack of 16 MiB whose
//! blobs average 150 bytes (small files that compress well). A pack is loaded only on its second
//! hit among the last [`RECENT`] packs hit, so lookups without locality (random ids) rarely pay
//! for a load.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::id::ChunkId;

/// Most ids held at once: 7/8 of 131,072, so the map never grows past 131,072 buckets of 36
/// bytes. It grows only as packs are loaded, and no pack is loaded without lookups of stored ids.
pub const CAPACITY: usize = 114_688;

/// Packs hit once and remembered, waiting for a second hit.
pub const RECENT: usize = 16;

/// Packs remembered as too large to hold, at most (forgotten all at once past it).
const REFUSED: usize = 4096;

/// The ids of recently loaded packs.
#[derive(Debug, Default)]
pub struct Locality {
    inner: Mutex<Inner>,
    /// Ids held, mirrored outside the lock so that lookups skip it while nothing is loaded
    /// (every lookup of an initial snapshot). A stale value only costs a fall-through.
    held: AtomicUsize,
}

#[derive(Debug, Default)]
struct Inner {
    /// Id -> the load that brought it (loads are numbered in order).
    /// Keyed hashing (SipHash with a random key): the ids come from index segments, which an
    /// append-only identity may fill with chosen ids, and colliding ids would make every lookup
    /// walk the table.
    ids: HashMap<[u8; 32], u32, RandomState>,
    /// Loads, oldest first: the load's number and how many ids it brought.
    loads: VecDeque<(u32, usize)>,
    next_load: u32,
    /// Bumped by every clear: a load that read its list before a clear is refused.
    epoch: u64,
    /// Packs (by the cache's ordinal) hit once recently and not loaded, oldest first.
    recent: VecDeque<u32>,
    /// Packs whose lists were read and found longer than [`CAPACITY`]: never loaded, so their
    /// hits are not counted. Without this, every second hit of such a pack read its whole list
    /// again (a pack of 184,000 small blobs has a 5.9 MB list, and an unchanged snapshot of
    /// 200,000 small files read it 92,000 times).
    refused: HashSet<u32>,
}

impl Locality {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether `id` is in a loaded pack (then the cache holds it).
    pub fn contains(&self, id: &ChunkId) -> bool {
        self.held.load(Ordering::Relaxed) != 0 && self.lock().ids.contains_key(id.as_bytes())
    }

    /// Records a hit of an id stored in `pack` (the cache's ordinal for it). When the pack should be loaded now (it
    /// was hit once before, among the last [`RECENT`] packs hit), returns the ticket to pass
    /// to [`Locality::load`] with the pack's list, which must be read after this call.
    pub fn hit(&self, pack: u32) -> Option<u64> {
        let mut inner = self.lock();
        if inner.refused.contains(&pack) {
            return None;
        }
        if let Some(at) = inner.recent.iter().position(|p| *p == pack) {
            inner.recent.remove(at);
            return Some(inner.epoch);
        }
        if inner.recent.len() == RECENT {
            inner.recent.pop_front();
        }
        inner.recent.push_back(pack);
        None
    }

    /// Adds the ids of `pack` (its `list`, 32 bytes each, back to back), dropping the oldest
    /// loads to make room. A pack with more than [`CAPACITY`] ids is not held (and its hits
    /// are no longer counted), nor a malformed list, nor a list read before the last
    /// [`Locality::clear`] (its `ticket` from [`Locality::hit`] is then stale): the cache it
    /// came from may have lost those ids since.
    pub fn load(&self, pack: u32, list: &[u8], ticket: u64) {
        let count = list.len() / 32;
        let mut inner = self.lock();
        if inner.epoch != ticket {
            return;
        }
        if count > CAPACITY {
            if inner.refused.len() >= REFUSED {
                inner.refused.clear();
            }
            inner.refused.insert(pack);
            return;
        }
        if count == 0 || !list.len().is_multiple_of(32) {
            return;
        }
        if inner.next_load == u32::MAX {
            inner.clear();
        }
        if inner.ids.len() + count > CAPACITY {
            inner.evict_for(count);
        }
        let load = inner.next_load;
        inner.next_load += 1;
        for id in list.chunks_exact(32) {
            if let Ok(id) = <[u8; 32]>::try_from(id) {
                inner.ids.insert(id, load);
            }
        }
        inner.loads.push_back((load, count));
        self.held.store(inner.ids.len(), Ordering::Relaxed);
    }

    /// Forgets everything and refuses loads of lists read before now. The cache calls it before
    /// and after it deletes entries, so no list read before the deletion gets in.
    pub fn clear(&self) {
        let mut inner = self.lock();
        inner.clear();
        self.held.store(0, Ordering::Relaxed);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().ids.len()
    }
}

impl Inner {
    fn clear(&mut self) {
        self.ids.clear();
        self.loads.clear();
        self.recent.clear();
        self.refused.clear();
        self.next_load = 0;
        self.epoch = self.epoch.wrapping_add(1);
    }

    /// Drops the oldest loads until `incoming` more ids fit in half the capacity, in one pass
    /// over the map (so the cost per id loaded stays constant).
    fn evict_for(&mut self, incoming: usize) {
        let mut kept = self.ids.len();
        let mut newest_dropped = None;
        while kept + incoming > CAPACITY / 2 {
            let Some((load, count)) = self.loads.pop_front() else {
                break;
            };
            kept = kept.saturating_sub(count);
            newest_dropped = Some(load);
        }
        match newest_dropped {
            _ if self.loads.is_empty() => self.ids.clear(),
            Some(cut) => self.ids.retain(|_, load| *load > cut),
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u64) -> [u8; 32] {
        *blake3::hash(&n.to_le_bytes()).as_bytes()
    }

    fn list(ids: &[[u8; 32]]) -> Vec<u8> {
        ids.concat()
    }

    fn pack(n: u64) -> u32 {
        n as u32 + 7
    }

    #[test]
    fn a_pack_loads_on_its_second_recent_hit() {
        let set = Locality::default();
        assert_eq!(set.hit(pack(1)), None);
        assert_eq!(set.hit(pack(2)), None);
        assert_eq!(set.hit(pack(1)), Some(0), "second hit of pack 1");
        assert_eq!(set.hit(pack(1)), None, "a load forgets the pack's hits");
        for n in 10..10 + RECENT as u64 {
            assert_eq!(set.hit(pack(n)), None);
        }
        assert_eq!(set.hit(pack(2)), None, "pack 2 fell out of the recent window");
    }

    #[test]
    fn loaded_ids_are_found_and_others_are_not() {
        let set = Locality::default();
        let ids: Vec<[u8; 32]> = (0..1000).map(id).collect();
        set.load(pack(0), &list(&ids), 0);
        assert!(ids.iter().all(|i| set.contains(&ChunkId(*i))));
        assert!((1000..2000).all(|n| !set.contains(&ChunkId(id(n)))));
        set.clear();
        assert!(!set.contains(&ChunkId(ids[0])));
        set.load(pack(0), &list(&ids), 0);
        assert!(!set.contains(&ChunkId(ids[0])), "a list read before the clear is refused");
        set.load(pack(0), &[7u8; 33], 1);
        set.load(pack(0), &[7u8; 31], 1);
        assert!(!set.contains(&ChunkId([7u8; 32])), "a list of partial ids is not loaded");
    }

    #[test]
    fn memory_stays_under_capacity_and_the_newest_loads_stay() {
        let set = Locality::default();
        let per_pack = 5000u64;
        let packs = 3 * CAPACITY as u64 / per_pack;
        for p in 0..packs {
            let ids: Vec<[u8; 32]> = (p * per_pack..(p + 1) * per_pack).map(id).collect();
            set.load(pack(0), &list(&ids), 0);
            assert!(set.len() <= CAPACITY, "{} ids held after load {p}", set.len());
            assert!(ids.iter().all(|i| set.contains(&ChunkId(*i))), "load {p} is held in full");
        }
        assert!(!set.contains(&ChunkId(id(0))), "the oldest load was dropped");
        set.load(pack(0), &list(&(0..CAPACITY as u64 + 1).map(id).collect::<Vec<_>>()), 0);
        assert!(!set.contains(&ChunkId(id(0))), "a pack larger than the capacity is not held");
    }

    /// A pack too large to hold is read once: its hits no longer ask for its list, until a
    /// clear, which forgets refusals with everything else.
    #[test]
    fn a_pack_too_large_to_hold_is_not_asked_for_again() {
        let set = Locality::default();
        let huge = list(&(0..CAPACITY as u64 + 1).map(id).collect::<Vec<_>>());
        assert_eq!(set.hit(pack(1)), None);
        let ticket = set.hit(pack(1)).expect("second hit: load");
        set.load(pack(1), &huge, ticket);
        assert_eq!(set.len(), 0);
        for _ in 0..10 {
            assert_eq!(set.hit(pack(1)), None, "refused: never loaded again");
        }
        assert_eq!(set.hit(pack(2)), None);
        assert!(set.hit(pack(2)).is_some(), "other packs still load");
        set.clear();
        assert_eq!(set.hit(pack(1)), None);
        assert!(set.hit(pack(1)).is_some(), "a clear forgets the refusal");
    }

    #[test]
    fn an_id_loaded_again_survives_the_eviction_of_its_first_load() {
        let set = Locality::default();
        let a: Vec<[u8; 32]> = (0..4000).map(id).collect();
        let b_len = CAPACITY as u64 / 2 - 6000;
        let b: Vec<[u8; 32]> = (1_000_000..1_000_000 + b_len).map(id).collect();
        set.load(pack(0), &list(&a), 0);
        set.load(pack(0), &list(&a), 0);
        set.load(pack(0), &list(&b), 0);
        let mut inner = set.lock();
        // Room for 5,000 more within half the capacity: only the first load of `a` goes.
        inner.evict_for(5000);
        assert_eq!(inner.loads.len(), 2);
        assert_eq!(inner.ids.len(), 4000 + b.len(), "the second load of `a` still holds its ids");
        drop(inner);
        assert!(a.iter().chain(&b).all(|i| set.contains(&ChunkId(*i))));
    }
}
