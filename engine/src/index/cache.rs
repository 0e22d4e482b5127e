//! RocksDB cache of the repository index, one per repository on the client.
//!
//! Keys: `v` (cache version and repository id), `s<segment id>` -> the ids it supersedes
//! (segments already applied),
//! `b<chunk id>` -> location (45 fixed bytes), `p<pack id>` -> the ids of the pack's blobs (32
//! bytes each, for [`Locality`]). Entries and their segment marker are written in one batch, so
//! a crash loses both or neither and the next sync re-applies the segment.
//! If a segment the cache applied has disappeared from the repository, the cache is cleared and
//! rebuilt: the repository is the truth and deleting the cache loses nothing.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use rocksdb::{BlockBasedOptions, DB, Direction, IteratorMode, Options, WriteBatch, WriteOptions};

use crate::error::{Error, Result};
use crate::format::BlobKind;
use crate::format::index::IndexSegment;
use crate::format::pack::BlobEntry;
use crate::id::{ChunkId, ObjectId, PackId};
use crate::index::locality::Locality;

const CACHE_VERSION: &[u8] = b"cairn-index-cache-v3";
const LOCATION_LEN: usize = 32 + 4 + 4 + 4 + 1;

/// Where a blob is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobLocation {
    /// Pack holding the blob.
    pub pack: PackId,
    /// Data or tree.
    pub kind: BlobKind,
    /// Offset of the blob's envelope.
    pub offset: u32,
    /// Length of the blob's envelope.
    pub length: u32,
    /// Plaintext length.
    pub raw_length: u32,
}

impl BlobLocation {
    fn encode(&self) -> [u8; LOCATION_LEN] {
        let mut out = [0u8; LOCATION_LEN];
        let mut w = out.iter_mut();
        for b in self
            .pack
            .as_bytes()
            .iter()
            .chain(&self.offset.to_le_bytes())
            .chain(&self.length.to_le_bytes())
            .chain(&self.raw_length.to_le_bytes())
            .chain(&[self.kind.code()])
        {
            if let Some(slot) = w.next() {
                *slot = *b;
            }
        }
        out
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        let mut r = crate::codec::Reader::new(bytes, "index cache");
        let pack = PackId(r.array().ok()?);
        let offset = r.u32_le().ok()?;
        let length = r.u32_le().ok()?;
        let raw_length = r.u32_le().ok()?;
        let kind = BlobKind::from_code(r.u8().ok()?)?;
        Some(BlobLocation { pack, kind, offset, length, raw_length })
    }

    /// The location of `entry` in `pack`.
    pub fn of(pack: PackId, entry: &BlobEntry) -> Self {
        BlobLocation {
            pack,
            kind: entry.kind,
            offset: entry.offset,
            length: entry.length,
            raw_length: entry.raw_length,
        }
    }
}

/// The client-side index cache.
#[derive(Debug)]
pub struct IndexCache {
    db: DB,
    path: PathBuf,
    /// Ids of packs that lookups keep hitting (answers runs of present ids from memory).
    locality: Locality,
    // Declared after `db`: the database is closed before the shared cache is let go.
    _owner: Option<std::fs::File>,
    // Declared after `db` so the database is closed before its directory is removed.
    _cleanup: PrivateDirCleanup,
}

/// Who may open the shared cache, decided by `dir/index.lock` (an advisory `flock`).
///
/// RocksDB's own LOCK is taken only after opening rotates and trims the info log files, so
/// two processes opening one cache at once raced over deleting the same `LOG.old.*` file, and
/// the loser failed with "No such file or directory" instead of falling back to a private
/// cache (seen as a failed prune beside two snapshots). Only the holder of this lock opens
/// the shared cache; others go straight to a private one.
#[derive(Debug)]
enum Claim {
    /// This process holds the lock while the file stays open (the kernel releases it if the
    /// process dies).
    Held(std::fs::File),
    /// Another process holds it.
    Taken,
    /// The file system refuses `flock` (some network and FUSE file systems): the cache opens
    /// as it did before the lock, and RocksDB's own LOCK decides.
    Unsupported,
}

impl Claim {
    /// The lock file to keep open while the shared cache is in use.
    fn into_lock(self) -> Option<std::fs::File> {
        match self {
            Claim::Held(file) => Some(file),
            Claim::Taken | Claim::Unsupported => None,
        }
    }
}

fn claim_shared(dir: &Path) -> Result<Claim> {
    let path = dir.join("index.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::Cache { path, why: e.to_string() })?;
    Ok(match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Claim::Held(file),
        Err(rustix::io::Errno::WOULDBLOCK) => Claim::Taken,
        Err(_) => Claim::Unsupported,
    })
}

/// Removes a private cache directory when dropped.
#[derive(Debug)]
struct PrivateDirCleanup(Option<PathBuf>);

impl Drop for PrivateDirCleanup {
    fn drop(&mut self) {
        if let Some(p) = &self.0 {
            let _ = std::fs::remove_dir_all(p);
        }
    }
}

fn key(prefix: u8, id: &[u8; 32]) -> [u8; 33] {
    let mut k = [0u8; 33];
    k[0] = prefix;
    for (d, s) in k.iter_mut().skip(1).zip(id) {
        *d = *s;
    }
    k
}

fn options() -> Options {
    let mut opts = Options::default();
    opts.create_if_missing(true);
    // Every table stays open: a table reader holds the table's bloom filter and index, and a
    // lookup in a table that is not open first reads and checksums them from the file. With
    // 256 handles spread over RocksDB's default 64 table-cache shards (about 4 per shard), a
    // 50M-entry cache (67 tables) kept evicting them, and absent-key lookups fell to 134k/s.
    // The price is memory for filters and indexes, about 2 bytes per indexed chunk.
    opts.set_max_open_files(4096);
    opts.set_table_cache_num_shard_bits(4);
    opts.set_keep_log_file_num(2);
    opts.set_max_log_file_size(1 << 20);
    opts.set_write_buffer_size(32 << 20);
    let mut table = BlockBasedOptions::default();
    // Point lookups dominate (is this chunk known?): a bloom filter answers most "no" without
    // touching data blocks.
    table.set_bloom_filter(10.0, false);
    // A hash index inside each data block finds a key without a binary search over it.
    table.set_data_block_index_type(rocksdb::DataBlockIndexType::BinaryAndHash);
    table.set_data_block_hash_ratio(0.75);
    table.set_block_cache(&rocksdb::Cache::new_lru_cache(64 << 20));
    opts.set_block_based_table_factory(&table);
    // Not mmap reads: they make present-key lookups ~1.6x faster at 10M entries, but every
    // table page touched (compaction touches all) counts in the process's RSS, which then grows
    // with the repository (2.6 GB at 50M entries against 135 MB without).
    opts
}

impl IndexCache {
    /// Opens (or creates) the cache in `dir` for `repository_id`. When another process holds
    /// that cache, a private one is used for this run and deleted afterwards.
    pub fn open(dir: &Path, repository_id: ObjectId) -> Result<Self> {
        let err = |path: &Path, e: rocksdb::Error| Error::Cache { path: path.to_path_buf(), why: e.to_string() };
        std::fs::create_dir_all(dir).map_err(|e| Error::Cache { path: dir.to_path_buf(), why: e.to_string() })?;
        let main = dir.join("index");
        let claim = claim_shared(dir)?;
        let shared = match claim {
            Claim::Taken => None,
            Claim::Held(_) | Claim::Unsupported => match DB::open(&options(), &main) {
                Ok(db) => Some(db),
                // A process that does not take `index.lock` holds RocksDB's own.
                Err(e) if e.to_string().contains("lock") => None,
                Err(e) => return Err(err(&main, e)),
            },
        };
        // A private cache holds no claim on the shared one.
        let (db, path, owner, cleanup) = match shared {
            Some(db) => (db, main, claim.into_lock(), PrivateDirCleanup(None)),
            None => {
                let private = dir.join(format!(
                    "index-{}-{}",
                    std::process::id(),
                    hex::encode(crate::crypto::random_array::<4>()?)
                ));
                let db = DB::open(&options(), &private).map_err(|e| err(&private, e))?;
                (db, private.clone(), None, PrivateDirCleanup(Some(private)))
            }
        };
        let cache = IndexCache { db, path, locality: Locality::default(), _owner: owner, _cleanup: cleanup };
        let mut want = CACHE_VERSION.to_vec();
        want.extend_from_slice(repository_id.as_bytes());
        let have = cache.db.get(b"v").map_err(|e| cache.err(e))?;
        if have.as_deref() != Some(want.as_slice()) {
            cache.clear()?;
            cache.db.put(b"v", &want).map_err(|e| cache.err(e))?;
        }
        Ok(cache)
    }

    fn err(&self, e: rocksdb::Error) -> Error {
        Error::Cache { path: self.path.clone(), why: e.to_string() }
    }

    /// Removes every blob entry, pack list and segment marker (keeps the version marker).
    pub fn clear(&self) -> Result<()> {
        // Before and after: a lookup running meanwhile may have read a pack list that is
        // about to go, and the second clear refuses it.
        self.locality.clear();
        let mut batch = WriteBatch::default();
        batch.delete_range(b"b".as_slice(), b"c".as_slice());
        batch.delete_range(b"p".as_slice(), b"q".as_slice());
        batch.delete_range(b"s".as_slice(), b"t".as_slice());
        let written = self.db.write(batch).map_err(|e| self.err(e));
        self.locality.clear();
        written
    }

    /// Segments already applied, each with the segments it supersedes.
    pub fn applied_segments(&self) -> Result<HashMap<ObjectId, Vec<ObjectId>>> {
        let mut out = HashMap::new();
        for item in self.db.iterator(IteratorMode::From(b"s", Direction::Forward)) {
            let (k, v) = item.map_err(|e| self.err(e))?;
            let Some(rest) = k.strip_prefix(b"s") else {
                break;
            };
            if let Ok(id) = <[u8; 32]>::try_from(rest) {
                let supersedes =
                    v.chunks_exact(32).filter_map(|c| <[u8; 32]>::try_from(c).ok()).map(ObjectId).collect();
                out.insert(ObjectId(id), supersedes);
            }
        }
        Ok(out)
    }

    /// Applies a segment's entries and marks it applied, atomically.
    pub fn apply_segment(&self, id: ObjectId, segment: &IndexSegment) -> Result<()> {
        let mut batch = WriteBatch::default();
        let mut ids = Vec::new();
        for pack in &segment.packs {
            ids.clear();
            for blob in &pack.blobs {
                batch.put(key(b'b', blob.id.as_bytes()), BlobLocation::of(pack.pack, blob).encode());
                ids.extend_from_slice(blob.id.as_bytes());
            }
            batch.put(key(b'p', pack.pack.as_bytes()), &ids);
        }
        // The marker remembers what the segment supersedes, so later syncs skip those.
        let supersedes: Vec<u8> = segment.supersedes.iter().flat_map(|s| s.0).collect();
        batch.put(key(b's', id.as_bytes()), supersedes);
        let mut wo = WriteOptions::default();
        // The cache is rebuildable, so skip the WAL: a crash loses entries and their segment
        // marker together, and the next sync re-applies the segment.
        wo.disable_wal(true);
        self.db.write_opt(batch, &wo).map_err(|e| self.err(e))
    }

    /// Where `id` is stored, if anywhere.
    pub fn get(&self, id: &ChunkId) -> Result<Option<BlobLocation>> {
        match self.db.get_pinned(key(b'b', id.as_bytes())).map_err(|e| self.err(e))? {
            Some(v) => BlobLocation::decode(&v).map(Some).ok_or_else(|| Error::Cache {
                path: self.path.clone(),
                why: format!("entry for {id} is malformed; delete the cache directory"),
            }),
            None => Ok(None),
        }
    }

    /// Whether `id` is stored. A run of hits in one pack loads that pack's ids, and the rest
    /// of the run is answered from memory (see [`Locality`]).
    pub fn contains(&self, id: &ChunkId) -> Result<bool> {
        if self.locality.contains(id) {
            return Ok(true);
        }
        let Some(location) = self.db.get_pinned(key(b'b', id.as_bytes())).map_err(|e| self.err(e))? else {
            return Ok(false);
        };
        let pack = location.get(..32).and_then(|p| <[u8; 32]>::try_from(p).ok()).map(PackId);
        drop(location);
        if let Some(pack) = pack
            && let Some(ticket) = self.locality.hit(pack)
        {
            self.load_pack_ids(pack, ticket)?;
        }
        Ok(true)
    }

    /// Loads a pack's id list into the locality set. A malformed list is skipped: the set is
    /// only a shortcut, and every id is still found in RocksDB.
    fn load_pack_ids(&self, pack: PackId, ticket: u64) -> Result<()> {
        if let Some(list) = self.db.get_pinned(key(b'p', pack.as_bytes())).map_err(|e| self.err(e))? {
            self.locality.load(&list, ticket);
        }
        Ok(())
    }

    /// Compacts the whole cache into as few sorted runs as possible: a lookup then probes one
    /// level instead of every freshly flushed file. Worth it after a rebuild.
    pub fn compact(&self) {
        self.db.compact_range::<&[u8], &[u8]>(None, None);
    }

    /// Flushes memtables so the next open starts warm.
    pub fn flush(&self) -> Result<()> {
        self.db.flush().map_err(|e| self.err(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::index::IndexedPack;

    fn id(n: u64) -> ChunkId {
        ChunkId(*blake3::hash(&n.to_le_bytes()).as_bytes())
    }

    /// A cache holding `packs` packs of `per_pack` ids each: ids `p * per_pack ..` in pack `p`.
    fn cache_with(dir: &Path, packs: u64, per_pack: u64) -> IndexCache {
        let cache = IndexCache::open(dir, ObjectId([9; 32])).unwrap();
        let packs = (0..packs)
            .map(|p| IndexedPack {
                pack: PackId([p as u8 + 1; 32]),
                size: 1 << 20,
                blobs: (p * per_pack..(p + 1) * per_pack)
                    .map(|n| BlobEntry {
                        kind: BlobKind::Data,
                        id: id(n),
                        offset: n as u32,
                        length: 10,
                        raw_length: 20,
                    })
                    .collect(),
            })
            .collect();
        cache.apply_segment(ObjectId([3; 32]), &IndexSegment { packs, supersedes: Vec::new() }).unwrap();
        cache
    }

    #[test]
    fn runs_of_present_ids_load_their_pack_and_answer_like_rocksdb() {
        let dir = tempfile::tempdir().unwrap();
        let cache = cache_with(dir.path(), 4, 500);
        for n in 0..2000 {
            assert!(cache.contains(&id(n)).unwrap(), "id {n}");
            assert!(!cache.contains(&id(1_000_000 + n)).unwrap(), "absent id {}", 1_000_000 + n);
        }
        // The runs loaded every pack: the rest of each pack now comes from memory.
        assert!((0..2000).all(|n| cache.locality.contains(&id(n))));
        let loc = cache.get(&id(1234)).unwrap().unwrap();
        assert_eq!((loc.pack, loc.offset), (PackId([3; 32]), 1234));
    }

    #[test]
    fn clearing_the_cache_forgets_the_loaded_packs_too() {
        let dir = tempfile::tempdir().unwrap();
        let cache = cache_with(dir.path(), 2, 100);
        for n in 0..200 {
            assert!(cache.contains(&id(n)).unwrap());
        }
        cache.clear().unwrap();
        for n in 0..200 {
            assert!(!cache.contains(&id(n)).unwrap(), "id {n} answered after clear");
        }
    }

    /// Many openers of one cache directory at once (several backups and a prune from cron):
    /// each gets a working cache, one of them the shared one, and the private ones are gone
    /// once closed. Before the `index.lock`, concurrent opens raced over RocksDB's info log
    /// files and one failed.
    #[test]
    fn concurrent_openers_each_get_a_cache_and_private_ones_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        drop(cache_with(dir.path(), 1, 10));
        for _ in 0..5 {
            let barrier = std::sync::Barrier::new(6);
            let caches: Vec<IndexCache> = std::thread::scope(|s| {
                let openers: Vec<_> = (0..6)
                    .map(|_| {
                        s.spawn(|| {
                            barrier.wait();
                            IndexCache::open(dir.path(), ObjectId([9; 32])).unwrap()
                        })
                    })
                    .collect();
                openers.into_iter().map(|o| o.join().unwrap()).collect()
            });
            let shared: Vec<&IndexCache> = caches.iter().filter(|c| c.path == dir.path().join("index")).collect();
            assert_eq!(shared.len(), 1, "exactly one opener has the shared cache");
            assert!(shared[0].contains(&id(3)).unwrap(), "the shared cache keeps its entries");
            for c in &caches {
                c.applied_segments().unwrap();
            }
            drop(caches);
            let left: Vec<String> = std::fs::read_dir(dir.path())
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("index-"))
                .collect();
            assert!(left.is_empty(), "private caches left behind: {left:?}");
        }
    }

    #[test]
    fn an_older_cache_version_is_rebuilt() {
        let dir = tempfile::tempdir().unwrap();
        drop(cache_with(dir.path(), 1, 10));
        {
            let db = DB::open(&options(), dir.path().join("index")).unwrap();
            let mut old = b"cairn-index-cache-v2".to_vec();
            old.extend_from_slice(&[9; 32]);
            db.put(b"v", old).unwrap();
        }
        let cache = IndexCache::open(dir.path(), ObjectId([9; 32])).unwrap();
        assert!(!cache.contains(&id(0)).unwrap(), "a v2 cache has no pack lists: it starts over");
        assert!(cache.applied_segments().unwrap().is_empty());
    }
}
