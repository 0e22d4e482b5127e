//! The cache's RocksDB schema: key prefixes and layouts, a blob location's 45 bytes, the
//! database options. The module comment of `cache` describes what each key holds.

use std::path::{Path, PathBuf};

use rocksdb::{BlockBasedOptions, Options};

use crate::format::BlobKind;
use crate::format::pack::BlobEntry;
use crate::id::PackId;
use crate::index::id_file::Generation;

pub(super) const CACHE_VERSION: &[u8] = b"cairn-index-cache-v6";
pub(super) const LOCATION_LEN: usize = 32 + 4 + 4 + 4 + 1;

/// Where a blob is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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
    pub(super) fn encode(&self) -> [u8; LOCATION_LEN] {
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

    pub(super) fn decode(bytes: &[u8]) -> Option<Self> {
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

pub(super) fn key(prefix: u8, id: &[u8; 32]) -> [u8; 33] {
    let mut k = [0u8; 33];
    k[0] = prefix;
    for (d, s) in k.iter_mut().skip(1).zip(id) {
        *d = *s;
    }
    k
}

pub(super) fn pack_key(ordinal: u32) -> [u8; 5] {
    let o = ordinal.to_be_bytes();
    [b'p', o[0], o[1], o[2], o[3]]
}

/// `u<ordinal>` -> the pack's id, for a pack applied as unverified.
pub(super) fn unverified_key(ordinal: u32) -> [u8; 5] {
    let o = ordinal.to_be_bytes();
    [b'u', o[0], o[1], o[2], o[3]]
}

pub(super) fn ordinal_key(ordinal: u32) -> [u8; 5] {
    let o = ordinal.to_be_bytes();
    [b'o', o[0], o[1], o[2], o[3]]
}

pub(super) fn id_file_path(dir: &Path, generation: &Generation) -> PathBuf {
    dir.join(format!("ids-{}", hex::encode(generation)))
}

/// The id (after the one-byte prefix) and ordinal (at `at` in the value) of an entry.
pub(super) fn entry(k: &[u8], v: &[u8], at: usize) -> Option<([u8; 32], u32)> {
    let id = <[u8; 32]>::try_from(k.get(1..)?).ok()?;
    let ordinal = <[u8; 4]>::try_from(v.get(at..at + 4)?).ok()?;
    Some((id, u32::from_le_bytes(ordinal)))
}

/// Memtable size outside bulk loads.
pub(super) const WRITE_BUFFER: usize = 8 << 20;
/// Memtable size while a bulk load runs: fewer, larger level-0 tables for its final merge.
pub(super) const BULK_WRITE_BUFFER: usize = 32 << 20;

pub(super) fn options() -> Options {
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
    // A backup applies its new entries a segment at a time: a small memtable keeps a backup of
    // 200,000 small files some 20 MB lighter than RocksDB's 64 MiB default or 32 MiB did
    // (flushed to level 0 more often, which compactions merge in the background). A bulk
    // load raises it (see [`IndexCache::bulk_load`]).
    opts.set_write_buffer_size(WRITE_BUFFER);
    let mut table = BlockBasedOptions::default();
    // Point lookups dominate (is this chunk known?): a bloom filter answers most "no" without
    // touching data blocks.
    table.set_bloom_filter(10.0, false);
    // A hash index inside each data block finds a key without a binary search over it.
    table.set_data_block_index_type(rocksdb::DataBlockIndexType::BinaryAndHash);
    table.set_data_block_hash_ratio(0.75);
    // Lookups rarely come back to a block within a run (ids are random; the id file and the
    // locality set answer the hot questions), so the block cache holds little worth keeping,
    // and whatever it holds counts in every command's peak memory: 8 MiB in 8 shards of 1 MiB
    // (the shard size RocksDB picked for 64 MiB, so the same blocks fit), not 64 MiB.
    let mut cache = rocksdb::LruCacheOptions::default();
    cache.set_capacity(8 << 20);
    cache.set_num_shard_bits(3);
    table.set_block_cache(&rocksdb::Cache::new_lru_cache_opts(&cache));
    opts.set_block_based_table_factory(&table);
    // The id file answers "is this chunk stored?" (absent ids included), so RocksDB mostly
    // serves `get` of stored blobs, which a filter does not speed up in the last level. Without
    // filters there (90% of the entries), a 50M-entry cache keeps about 55 MB less in memory;
    // lookups RocksDB still answers for absent ids (past the in-memory new ids, until the next
    // fold) read one last-level block each.
    opts.set_optimize_filters_for_hits(true);
    // A bulk load (see [`IndexCache::bulk_load`]) ends in one compaction of every table it
    // flushed, a merge of a few hundred inputs at 50M entries: each input's read-ahead buffer
    // is this size (RocksDB's default of 2 MiB would be 500 MB; none at all measured slower
    // and no smaller: 249 s and 345 MiB against 176 s and 273-282 MiB), and the merge is
    // split over two threads.
    opts.set_compaction_readahead_size(128 << 10);
    opts.set_max_subcompactions(2);
    // Not mmap reads: they make present-key lookups ~1.6x faster at 10M entries, but every
    // table page touched (compaction touches all) counts in the process's RSS, which then grows
    // with the repository (2.6 GB at 50M entries against 135 MB without).
    opts
}
