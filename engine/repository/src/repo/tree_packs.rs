//! A client-side copy of the repository's tree packs, for remote stores.
//!
//! A backup compares every directory with its parent snapshot's tree, and restore, ls and
//! find walk trees: one small ranged read per directory. On a local disk that is a pread; over
//! S3 or `cairn serve` each is a round trip, and an unchanged snapshot of 1,700 directories
//! spent most of its time on them. Trees and data never share a pack (SPEC §10), so the
//! client keeps whole tree packs, as stored, under `trees/` in the repository's cache
//! directory: a pack is fetched once (by whichever reader wants it first; the others wait for
//! that download), and the packs a backup writes are kept as they are uploaded.
//!
//! The copies are the stored bytes, sealed as in the repository: the cache reveals nothing
//! the storage does not. A pack is kept only when its bytes hash to its name, and every blob
//! read from a copy is opened and verified against its keyed id like any other
//! ([`super::Repository::read_blob`]); a copy that fails is dropped and the blob read from
//! storage. Copies of packs the storage no longer lists are removed whenever a backup lists
//! the packs ([`TreePackCache::retain`]) and when prune deletes packs. `check`, `repair` and
//! `prune` do not read from the cache: they judge what the storage holds, not this copy.
//!
//! Bounds: at most [`FETCHES_AT_ONCE`] whole packs are held in memory at once, and only for
//! repositories whose packs are at most [`LARGEST_TARGET`] (others read trees by range, as
//! without the cache). A pack that cannot be kept (its bytes do not hash to its name, or the
//! copy cannot be written) is read by range from then on, never downloaded whole again.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::error::{Error, Result};
use crate::id::PackId;
use crate::index::BlobLocation;
use crate::storage::Storage;

impl super::Repository {
    /// Whether trees are read from (and tree packs kept in) a copy on the client from now on:
    /// for a remote store, and not for `check`, which verifies what the storage holds.
    pub fn set_tree_pack_cache(&mut self, keep: bool) {
        let fits = self.config.pack_target_size <= LARGEST_TARGET;
        // A write-only handle could not open the packs it kept: it reads its own trees from
        // its own record instead.
        let keep = keep && !self.is_write_only();
        self.tree_packs = (keep && fits).then(|| Arc::new(TreePackCache::new(&self.cache_dir)));
    }

    /// Removes the client's copies of `packs` (deleted from storage), whether or not this
    /// handle reads from the cache.
    pub(crate) fn forget_tree_pack_copies(&self, packs: &[PackId]) {
        let cache = TreePackCache::new(&self.cache_dir);
        for pack in packs {
            cache.forget(pack);
        }
    }

    /// The tree-pack cache, when [`super::Repository::set_tree_pack_cache`] turned it on.
    pub(crate) fn tree_pack_cache(&self) -> Option<&Arc<TreePackCache>> {
        self.tree_packs.as_ref()
    }
}

/// The directory under a repository's cache directory.
const DIR: &str = "trees";

/// Whole packs fetched into memory at once, at most (readers beyond wait their turn).
const FETCHES_AT_ONCE: usize = 2;

/// The largest pack target size whose tree packs are fetched whole (64 MiB): beyond it a
/// fetch would hold too much memory, and trees are read by range.
pub(crate) const LARGEST_TARGET: u32 = 64 << 20;

/// A temporary file younger than this may be another process's copy being written: `retain`
/// leaves it.
const TEMP_GRACE: std::time::Duration = std::time::Duration::from_secs(3600);

/// Whole tree packs kept on the client (see the module documentation).
#[derive(Debug)]
pub(crate) struct TreePackCache {
    dir: PathBuf,
    /// Packs being fetched: a reader that wants one waits on its gate for the download
    /// another reader started, then finds the copy.
    fetching: Mutex<HashMap<PackId, Arc<Mutex<()>>>>,
    /// Whole fetches in progress, at most [`FETCHES_AT_ONCE`].
    fetches: Mutex<usize>,
    fetch_done: std::sync::Condvar,
    /// Packs this process could not keep: read by range.
    unkeepable: Mutex<HashSet<PackId>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A whole fetch in progress ([`TreePackCache::fetch_turn`]).
struct FetchTurn<'a>(&'a TreePackCache);

impl Drop for FetchTurn<'_> {
    fn drop(&mut self) {
        let mut running = lock(&self.0.fetches);
        *running = running.saturating_sub(1);
        drop(running);
        self.0.fetch_done.notify_one();
    }
}

impl TreePackCache {
    /// The cache under `cache_dir` (created when the first pack is kept).
    pub(crate) fn new(cache_dir: &std::path::Path) -> Self {
        TreePackCache {
            dir: cache_dir.join(DIR),
            fetching: Mutex::default(),
            fetches: Mutex::default(),
            fetch_done: std::sync::Condvar::new(),
            unkeepable: Mutex::default(),
        }
    }

    fn path(&self, pack: &PackId) -> PathBuf {
        self.dir.join(pack.to_hex())
    }

    /// The sealed bytes at `loc` (a tree blob), from the copy of its pack, fetched whole from
    /// `storage` (at most `max_pack` bytes) when there is none yet.
    pub(crate) fn read(&self, storage: &dyn Storage, loc: &BlobLocation, max_pack: u64) -> Result<Vec<u8>> {
        if let Some(bytes) = self.read_copy(loc, max_pack) {
            return Ok(bytes);
        }
        if lock(&self.unkeepable).contains(&loc.pack) {
            return storage.get_range(&super::pack_name(&loc.pack), u64::from(loc.offset), u64::from(loc.length));
        }
        let gate = Arc::clone(lock(&self.fetching).entry(loc.pack).or_default());
        let fetched = {
            let _turn = lock(&gate);
            match self.read_copy(loc, max_pack) {
                Some(bytes) => Ok(bytes),
                None => self.fetch(storage, loc, max_pack),
            }
        };
        let mut fetching = lock(&self.fetching);
        drop(gate);
        if fetching.get(&loc.pack).is_some_and(|g| Arc::strong_count(g) == 1) {
            fetching.remove(&loc.pack);
        }
        fetched
    }

    /// Fetches `loc`'s pack whole (waiting while [`FETCHES_AT_ONCE`] others are held), keeps
    /// it when it hashes to its name, and returns the blob's range of it.
    fn fetch(&self, storage: &dyn Storage, loc: &BlobLocation, max_pack: u64) -> Result<Vec<u8>> {
        let name = super::pack_name(&loc.pack);
        let pack = {
            let _turn = self.fetch_turn();
            storage.get_bounded(&name, max_pack)?
        };
        let (start, len) = (loc.offset as usize, loc.length as usize);
        let blob = pack
            .get(start..start.saturating_add(len))
            .ok_or_else(|| Error::corrupt(&name, format!("a blob at {start}+{len} is beyond the pack's end")))?
            .to_vec();
        let kept = PackId(*blake3::hash(&pack).as_bytes()) == loc.pack && self.keep(&loc.pack, &[&pack]);
        if !kept {
            lock(&self.unkeepable).insert(loc.pack);
        }
        Ok(blob)
    }

    /// Waits until fewer than [`FETCHES_AT_ONCE`] whole fetches run, and counts this one
    /// until the turn is dropped (whether the fetch returns, fails or panics).
    fn fetch_turn(&self) -> FetchTurn<'_> {
        let mut running = lock(&self.fetches);
        while *running >= FETCHES_AT_ONCE {
            running = self.fetch_done.wait(running).unwrap_or_else(PoisonError::into_inner);
        }
        *running += 1;
        FetchTurn(self)
    }

    /// The range of `loc` in the pack's copy, if there is a copy that holds it. A copy too
    /// short for it (a crash while it was written) is removed.
    fn read_copy(&self, loc: &BlobLocation, max_pack: u64) -> Option<Vec<u8>> {
        let file = File::open(self.path(&loc.pack)).ok()?;
        let end = u64::from(loc.offset) + u64::from(loc.length);
        if end > max_pack || file.metadata().ok()?.len() < end {
            self.forget(&loc.pack);
            return None;
        }
        let mut bytes = vec![0u8; loc.length as usize];
        match file.read_exact_at(&mut bytes, u64::from(loc.offset)) {
            Ok(()) => Some(bytes),
            Err(_) => {
                self.forget(&loc.pack);
                None
            }
        }
    }

    /// Whether the copy of `pack` hashes to its name: a blob that does not open from an
    /// intact copy is damaged in storage too (or the index entry is wrong), and fetching the
    /// pack again would not help.
    pub(crate) fn copy_is_intact(&self, pack: &PackId) -> bool {
        let Ok(mut file) = File::open(self.path(pack)) else { return false };
        let mut hasher = blake3::Hasher::new();
        std::io::copy(&mut file, &mut hasher).is_ok() && PackId(*hasher.finalize().as_bytes()) == *pack
    }

    /// Keeps a copy of the pack made of `parts` (written aside, then renamed into place, so a
    /// reader never sees half a copy). A copy that cannot be written is only a lost shortcut:
    /// returns whether it was kept.
    pub(crate) fn keep(&self, pack: &PackId, parts: &[&[u8]]) -> bool {
        let write = || -> std::io::Result<()> {
            std::fs::create_dir_all(&self.dir)?;
            let mut file = tempfile::NamedTempFile::new_in(&self.dir)?;
            for part in parts {
                file.write_all(part)?;
            }
            file.persist(self.path(pack)).map_err(|e| e.error)?;
            Ok(())
        };
        write().is_ok()
    }

    /// Removes the copy of `pack` (damaged, or the pack is gone).
    pub(crate) fn forget(&self, pack: &PackId) {
        let _ = std::fs::remove_file(self.path(pack));
    }

    /// Removes the copies of packs not in `present` (a listing of the storage's packs), and
    /// files that are no pack's copy, left by a crash while a copy was written (those younger
    /// than an hour may be another process's copy being written, and stay).
    pub(crate) fn retain(&self, present: &HashSet<PackId>) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let pack = name.to_str().and_then(|n| PackId::from_hex(n).ok());
            let stale = match pack {
                Some(id) => !present.contains(&id),
                None => entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| t.elapsed().is_ok_and(|age| age > TEMP_GRACE)),
            };
            if stale {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::BlobKind;
    use crate::storage::{MemStorage, PutMode};
    use std::sync::atomic::AtomicUsize;
    use std::sync::atomic::Ordering::Relaxed;

    fn stored(storage: &MemStorage, bytes: &[u8]) -> PackId {
        let id = PackId(*blake3::hash(bytes).as_bytes());
        storage.put(&super::super::pack_name(&id), bytes, PutMode::CreateNew).unwrap();
        id
    }

    fn loc(pack: PackId, offset: u32, length: u32) -> BlobLocation {
        BlobLocation { pack, kind: BlobKind::Tree, offset, length, raw_length: length }
    }

    /// The first read fetches the pack whole and keeps it; later reads of any blob in it come
    /// from the copy, even with the pack gone from storage.
    #[test]
    fn a_pack_is_fetched_once_and_its_blobs_read_from_the_copy() {
        let dir = tempfile::tempdir().unwrap();
        let storage = MemStorage::new();
        let bytes: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let id = stored(&storage, &bytes);
        let cache = TreePackCache::new(dir.path());
        assert_eq!(cache.read(&storage, &loc(id, 10, 20), 1 << 20).unwrap(), bytes[10..30]);
        storage.delete(&super::super::pack_name(&id)).unwrap();
        assert_eq!(cache.read(&storage, &loc(id, 99_000, 1000), 1 << 20).unwrap(), bytes[99_000..]);
        assert_eq!(std::fs::read(dir.path().join(DIR).join(id.to_hex())).unwrap(), bytes);
    }

    /// Bytes that do not hash to the pack's name are served (the blob's own check judges them)
    /// but never kept, and the pack is read by range from then on, not downloaded whole again.
    #[test]
    fn a_pack_that_does_not_match_its_name_is_not_kept_nor_fetched_again() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Counting::default();
        let id = PackId([7; 32]);
        storage.put(&super::super::pack_name(&id), &[1u8; 64], PutMode::CreateNew).unwrap();
        let cache = TreePackCache::new(dir.path());
        assert_eq!(cache.read(&storage, &loc(id, 0, 8), 1 << 20).unwrap(), vec![1u8; 8]);
        assert!(!dir.path().join(DIR).join(id.to_hex()).exists());
        assert_eq!(cache.read(&storage, &loc(id, 8, 8), 1 << 20).unwrap(), vec![1u8; 8]);
        assert_eq!((storage.gets.load(Relaxed), storage.ranges.load(Relaxed)), (1, 1));
        let other = stored(&storage.inner, &[2u8; 64]);
        assert!(matches!(cache.read(&storage, &loc(other, 60, 8), 1 << 20), Err(Error::Corrupt { .. })));
    }

    /// A copy cut short by a crash is removed and fetched again; `retain` removes copies of
    /// packs not listed and stray files, but not one another process may be writing.
    #[test]
    fn a_short_copy_is_fetched_again_and_retain_removes_what_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let storage = MemStorage::new();
        let (a, b) = (stored(&storage, &[3u8; 5000]), stored(&storage, &[4u8; 5000]));
        let (old, fresh) = (dir.path().join(DIR).join(".tmpOLD"), dir.path().join(DIR).join(".tmpNEW"));
        let cache = TreePackCache::new(dir.path());
        assert!(cache.keep(&a, &[&[3u8; 100]]));
        assert_eq!(cache.read(&storage, &loc(a, 4000, 10), 1 << 20).unwrap(), vec![3u8; 10]);
        assert_eq!(std::fs::metadata(cache.path(&a)).unwrap().len(), 5000);
        cache.read(&storage, &loc(b, 0, 10), 1 << 20).unwrap();
        std::fs::write(&old, b"half").unwrap();
        let two_hours_ago = std::time::SystemTime::now() - 2 * TEMP_GRACE;
        File::options().write(true).open(&old).unwrap().set_modified(two_hours_ago).unwrap();
        std::fs::write(&fresh, b"being written").unwrap();
        cache.retain(&HashSet::from([b]));
        let mut left: Vec<String> = std::fs::read_dir(dir.path().join(DIR))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, vec![".tmpNEW".to_string(), b.to_hex()]);
    }

    /// Counts whole-object and ranged reads, and the most whole reads at once.
    #[derive(Debug, Default)]
    struct Counting {
        inner: MemStorage,
        gets: AtomicUsize,
        ranges: AtomicUsize,
        in_flight: AtomicUsize,
        most_at_once: AtomicUsize,
    }

    impl Storage for Counting {
        fn location(&self) -> String {
            self.inner.location()
        }
        fn put(&self, name: &str, data: &[u8], mode: PutMode) -> Result<()> {
            self.inner.put(name, data, mode)
        }
        fn get(&self, name: &str) -> Result<Vec<u8>> {
            self.gets.fetch_add(1, Relaxed);
            let now = self.in_flight.fetch_add(1, Relaxed) + 1;
            self.most_at_once.fetch_max(now, Relaxed);
            for _ in 0..200 {
                std::thread::yield_now();
            }
            self.in_flight.fetch_sub(1, Relaxed);
            self.inner.get(name)
        }
        fn get_range(&self, name: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
            self.ranges.fetch_add(1, Relaxed);
            self.inner.get_range(name, offset, len)
        }
        fn list(&self, prefix: &str) -> Result<Vec<String>> {
            self.inner.list(prefix)
        }
        fn delete(&self, name: &str) -> Result<()> {
            self.inner.delete(name)
        }
        fn stat(&self, name: &str) -> Result<Option<u64>> {
            self.inner.stat(name)
        }
    }

    /// Readers that want the same uncached pack at once download it once; readers of many
    /// packs hold at most `FETCHES_AT_ONCE` of them in memory at once.
    #[test]
    fn readers_at_once_download_a_pack_once_and_few_packs_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Counting::default();
        let packs: Vec<PackId> = (0..6u8).map(|i| stored(&storage.inner, &vec![i; 300_000])).collect();
        let cache = TreePackCache::new(dir.path());
        std::thread::scope(|s| {
            for i in 0..24u32 {
                let (cache, storage, pack) = (&cache, &storage, packs[i as usize % 6]);
                s.spawn(move || {
                    let got = cache.read(storage, &loc(pack, i * 1000, 100), 1 << 20).unwrap();
                    assert_eq!(got, vec![(i % 6) as u8; 100]);
                });
            }
        });
        assert_eq!(storage.gets.load(Relaxed), 6);
        assert!(storage.most_at_once.load(Relaxed) <= FETCHES_AT_ONCE);
        assert!(lock(&cache.fetching).is_empty());
    }

    /// Through the repository: the tree packs a writer stores are kept as stored; a tree is
    /// read from the copy; a damaged copy is dropped and the storage's pack read (and kept
    /// again); a pack damaged in storage too is reported, never kept; a writer's listing of the
    /// packs removes the copies of packs gone from storage; data packs are never kept.
    #[test]
    fn the_repository_reads_trees_from_checked_copies_and_drops_damaged_or_gone_ones() {
        use crate::repo::testing::TestRepository;
        let mut t = TestRepository::new(64 << 10);
        t.repo.set_tree_pack_cache(true);
        let trees: Vec<Vec<u8>> = (0..90).map(|i| cairn_format::test_util::pseudo_random(9_000, i)).collect();
        let writer = t.repo.blob_writer().unwrap();
        let ids: Vec<_> = trees.iter().map(|b| writer.add(BlobKind::Tree, b.clone()).unwrap()).collect();
        writer.add(BlobKind::Data, vec![5u8; 10_000]).unwrap();
        writer.finish().unwrap();
        let copies = t.repo.cache_dir().join(DIR);
        let tree_packs: HashSet<PackId> = ids.iter().map(|id| t.repo.locate(id).unwrap().pack).collect();
        let kept: HashSet<PackId> = std::fs::read_dir(&copies)
            .unwrap()
            .map(|e| PackId::from_hex(e.unwrap().file_name().to_str().unwrap()).unwrap())
            .collect();
        assert!(tree_packs.len() >= 3, "{} tree packs", tree_packs.len());
        assert_eq!(kept, tree_packs, "every tree pack kept, no data pack");
        for pack in &tree_packs {
            let stored = t.storage.get(&super::super::pack_name(pack)).unwrap();
            assert_eq!(std::fs::read(copies.join(pack.to_hex())).unwrap(), stored);
        }
        let loc = t.repo.locate(&ids[0]).unwrap();
        let copy = copies.join(loc.pack.to_hex());
        let name = super::super::pack_name(&loc.pack);
        // A damaged copy: the tree is read from storage and the copy replaced.
        let mut damaged = std::fs::read(&copy).unwrap();
        damaged[loc.offset as usize + 40] ^= 1;
        std::fs::write(&copy, &damaged).unwrap();
        assert_eq!(t.repo.read_blob(&ids[0]).unwrap(), trees[0]);
        assert_eq!(std::fs::read(&copy).unwrap(), t.storage.get(&name).unwrap());
        // Damaged in storage and in the copy: reported as damage, nothing kept.
        std::fs::write(&copy, &damaged).unwrap();
        t.storage.tamper(&name, |b| b[loc.offset as usize + 40] ^= 1);
        assert!(matches!(t.repo.read_blob(&ids[0]), Err(Error::Corrupt { .. })));
        assert!(!copy.exists());
        // Another tree of a pack gone from storage is still read from its copy; the next
        // writer's listing removes the copies of packs storage no longer has.
        let other = ids.iter().position(|id| t.repo.locate(id).unwrap().pack != loc.pack).unwrap();
        let gone = t.repo.locate(&ids[other]).unwrap().pack;
        t.storage.delete(&super::super::pack_name(&gone)).unwrap();
        assert_eq!(t.repo.read_blob(&ids[other]).unwrap(), trees[other]);
        t.repo.blob_writer().unwrap().finish().unwrap();
        assert!(!copies.join(gone.to_hex()).exists());
        let left: Vec<PackId> = tree_packs.iter().filter(|p| **p != gone && **p != loc.pack).copied().collect();
        assert!(!left.is_empty() && left.iter().all(|p| copies.join(p.to_hex()).exists()));
        // Packs deleted through the repository (prune) lose their copies with them.
        t.repo.delete_packs(&left).unwrap();
        assert!(left.iter().all(|p| !copies.join(p.to_hex()).exists()));
    }
}
