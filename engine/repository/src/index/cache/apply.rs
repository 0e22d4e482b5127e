//! Applying an index segment to the cache.
//!
//! A segment's entries, its pack lists and its marker (`s<segment id>`) were once written in
//! one batch. A backup's segment lists up to 65,536 blobs, and that batch (about 8 MB) plus the
//! memtable it lands in whole were a fifth of a backup's peak memory. Entries now go in
//! batches of [`ENTRIES_PER_WRITE`], in id order, and a crash between them must not leave
//! entries the cache does not know it holds (a prune that then deletes their segment's packs
//! would not make the next sync rebuild the cache, and a backup would reuse blobs that are
//! gone). So the first batch of a split segment holds `i<segment id>` and the last deletes it
//! in the same batch as it writes the marker: a sync that finds any `i` key rebuilds the cache
//! ([`IndexCache::interrupted`]). Of the writes made without a write-ahead log, what survives a
//! crash is a prefix (one column family, memtables flushed in order, a batch never split over
//! two memtables), so an entry written after the `i` key never survives without it. Two writes
//! use the log and so may survive where earlier ones did not: `clear`, which deletes the `i`
//! keys with the entries, and the id file's `g`, written by `fold_new_ids` after a flush and
//! never during an apply (both hold the `applying` lock).

use std::collections::HashMap;
use std::sync::PoisonError;

use rocksdb::{Direction, IteratorMode, WriteBatch, WriteOptions};

use super::schema::{LOCATION_LEN, key, ordinal_key, pack_key, unverified_key};
use super::{BlobLocation, FileSlot, IndexCache, NEW_IDS_CAPACITY};
use crate::error::{Error, Result};
use crate::format::index::IndexSegment;
use crate::id::{ChunkId, ObjectId, PackId};

/// Entries written per batch.
pub(super) const ENTRIES_PER_WRITE: usize = 8192;

impl IndexCache {
    /// Applies a segment's entries and marks it applied; the packs it lists as `unverified`
    /// are kept as such ([`IndexCache::unverified_packs`]). Entries go in batches of
    /// [`ENTRIES_PER_WRITE`] puts (see the module doc).
    pub fn apply_segment(&self, id: ObjectId, segment: &IndexSegment) -> Result<()> {
        let mut next = self.applying();
        let first = *next;
        // `d` entries matter only beside a file (without one, or with a lost one, a fold
        // reads every `b` entry), and a first sync of a large repository writes fewer keys.
        let beside_file = matches!(
            self.ids.read().unwrap_or_else(PoisonError::into_inner).file,
            FileSlot::Unread(_) | FileSlot::Ready(_)
        );
        let mut batch = WriteBatch::default();
        let mut ids = Vec::new();
        let mut ordinal = first;
        let unverified: std::collections::HashSet<PackId> = segment.unverified.iter().copied().collect();
        let mut unverified_ordinals = Vec::new();
        // Entries of unverified packs never replace an entry already there: the cache keeps
        // naming a trusted copy, whatever a write-only slot lists after it.
        let mut shadowed: std::collections::HashSet<ChunkId> = std::collections::HashSet::new();
        // Blob entries go into the batch in key order: RocksDB's memtable inserts each key after
        // the previous one's position, so sorted keys skip most of the skip-list search (a
        // segment lists blobs by pack, in random id order). A stable sort keeps a later copy of
        // an id after an earlier one, and the last put wins, as before. Entries are held as
        // (pack, blob) positions in the segment: 8 bytes each, not a copy of the entry.
        let mut entries: Vec<(u32, u32)> = Vec::with_capacity(segment.packs.iter().map(|p| p.blobs.len()).sum());
        // Ids this segment lists in trusted packs (the batch is not visible to `get_pinned`),
        // kept only when it lists unverified packs too.
        let mut trusted_here: std::collections::HashSet<[u8; 32]> = std::collections::HashSet::new();
        for (p, pack) in (0u32..).zip(&segment.packs) {
            ids.clear();
            let is_unverified = unverified.contains(&pack.pack);
            if is_unverified {
                unverified_ordinals.push(ordinal);
                batch.put(unverified_key(ordinal), pack.pack.as_bytes());
            }
            for (b, blob) in (0u32..).zip(&pack.blobs) {
                ids.extend_from_slice(blob.id.as_bytes());
                if is_unverified
                    && (trusted_here.contains(blob.id.as_bytes())
                        || self.db.get_pinned(key(b'b', blob.id.as_bytes())).map_err(|e| self.err(e))?.is_some())
                {
                    shadowed.insert(blob.id);
                    continue;
                }
                entries.push((p, b));
                if !is_unverified && !unverified.is_empty() {
                    trusted_here.insert(*blob.id.as_bytes());
                }
            }
            batch.put(pack_key(ordinal), &ids);
            batch.put(ordinal_key(ordinal), pack.pack.as_bytes());
            ordinal = ordinal.checked_add(1).ok_or_else(|| Error::Cache {
                path: self.path.clone(),
                why: "pack ordinals exhausted; delete the cache directory".into(),
            })?;
        }
        let at = |(p, b): (u32, u32)| {
            let pack = segment.packs.get(p as usize)?;
            Some((pack, pack.blobs.get(b as usize)?, first + p))
        };
        let id_at = |e: &(u32, u32)| at(*e).map(|(_, blob, _)| blob.id);
        entries.sort_by_key(id_at);
        let mut wo = WriteOptions::default();
        // The cache is rebuildable, so skip the WAL (see the module doc for a crash).
        wo.disable_wal(true);
        // Before anything is written: the ordinals are taken (a failure part-way leaves a gap,
        // never a reused ordinal that stale entries would then name), and this process knows
        // the unverified packs before RocksDB holds any of their entries.
        batch.put(b"n", ordinal.to_le_bytes());
        *next = ordinal;
        if !unverified_ordinals.is_empty() {
            self.unverified.write().unwrap_or_else(PoisonError::into_inner).extend(unverified_ordinals);
        }
        // The first batch written before the last carries the in-progress key, and the last
        // deletes it: no batch but the last is ever written without it.
        let mark = key(b'i', id.as_bytes());
        let mut marked = false;
        let mut in_batch = 0usize;
        let mut write = |batch: &mut WriteBatch| -> Result<()> {
            in_batch += 1;
            if in_batch >= ENTRIES_PER_WRITE {
                if !marked {
                    batch.put(mark, b"");
                    marked = true;
                }
                self.db.write_opt(std::mem::take(batch), &wo).map_err(|e| self.err(e))?;
                in_batch = 0;
            }
            Ok(())
        };
        for (pack, blob, ordinal) in entries.iter().filter_map(|e| at(*e)) {
            let mut value = [0u8; LOCATION_LEN + 4];
            value[..LOCATION_LEN].copy_from_slice(&BlobLocation::of(pack.pack, blob).encode());
            value[LOCATION_LEN..].copy_from_slice(&ordinal.to_le_bytes());
            batch.put(key(b'b', blob.id.as_bytes()), value);
            write(&mut batch)?;
        }
        if beside_file {
            for (_, blob, ordinal) in entries.iter().filter_map(|e| at(*e)) {
                batch.put(key(b'd', blob.id.as_bytes()), ordinal.to_le_bytes());
                write(&mut batch)?;
            }
        }
        // The marker remembers what the segment supersedes, so later syncs skip those.
        let supersedes: Vec<u8> = segment.supersedes.iter().flat_map(|s| s.0).collect();
        batch.put(key(b's', id.as_bytes()), supersedes);
        if marked {
            batch.delete(mark);
        }
        self.db.write_opt(batch, &wo).map_err(|e| self.err(e))?;
        // After the write: a lookup meanwhile that misses only stores a chunk twice.
        let mut state = self.write_ids();
        // Decided before inserting: a map filled past its capacity first and only then
        // dropped had grown (and rehashed) to twice its bound, 14 MB at the peak of a backup.
        let adding: usize = segment.packs.iter().map(|p| p.blobs.len()).sum();
        if !state.overflow && state.new_ids.len() + adding > NEW_IDS_CAPACITY {
            state.overflow = true;
            state.new_ids = HashMap::default();
        }
        if !state.overflow {
            for (n, pack) in segment.packs.iter().enumerate() {
                let ordinal = first + n as u32;
                let is_unverified = unverified.contains(&pack.pack);
                for blob in pack.blobs.iter().filter(|b| !(is_unverified && shadowed.contains(&b.id))) {
                    state.new_ids.insert(*blob.id.as_bytes(), ordinal);
                }
            }
        }
        Ok(())
    }

    /// Whether a split segment's application was cut short by a crash: some of its entries
    /// may be in the cache without its marker. The caller rebuilds the cache.
    pub fn interrupted(&self) -> Result<bool> {
        match self.db.iterator(IteratorMode::From(b"i", Direction::Forward)).next() {
            None => Ok(false),
            Some(item) => Ok(item.map_err(|e| self.err(e))?.0.first() == Some(&b'i')),
        }
    }
}
