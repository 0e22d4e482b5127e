//! RocksDB cache of the repository index, one per repository on the client.
//!
//! Keys: `v` (cache version and repository id), `s<segment id>` -> the ids it supersedes
//! (segments already applied),
//! `b<chunk id>` -> location (45 fixed bytes). Entries and their segment marker are written in
//! one batch, so a crash loses both or neither and the next sync re-applies the segment.
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

const CACHE_VERSION: &[u8] = b"cairn-index-cache-v2";
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
    // Declared after `db` so the database is closed before its directory is removed.
    _cleanup: PrivateDirCleanup,
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
        let (db, path, remove_on_drop) = match DB::open(&options(), &main) {
            Ok(db) => (db, main, false),
            Err(e) if e.to_string().contains("lock") => {
                let private = dir.join(format!(
                    "index-{}-{}",
                    std::process::id(),
                    hex::encode(crate::crypto::random_array::<4>()?)
                ));
                let db = DB::open(&options(), &private).map_err(|e| err(&private, e))?;
                (db, private, true)
            }
            Err(e) => return Err(err(&main, e)),
        };
        let cleanup = PrivateDirCleanup(remove_on_drop.then(|| path.clone()));
        let cache = IndexCache { db, path, _cleanup: cleanup };
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

    /// Removes every blob entry and segment marker (keeps the version marker).
    pub fn clear(&self) -> Result<()> {
        let mut batch = WriteBatch::default();
        batch.delete_range(b"b".as_slice(), b"c".as_slice());
        batch.delete_range(b"s".as_slice(), b"t".as_slice());
        self.db.write(batch).map_err(|e| self.err(e))
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
        for pack in &segment.packs {
            for blob in &pack.blobs {
                batch.put(key(b'b', blob.id.as_bytes()), BlobLocation::of(pack.pack, blob).encode());
            }
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

    /// Whether `id` is stored.
    pub fn contains(&self, id: &ChunkId) -> Result<bool> {
        Ok(self.db.get_pinned(key(b'b', id.as_bytes())).map_err(|e| self.err(e))?.is_some())
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
