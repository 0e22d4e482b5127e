//! RocksDB cache of the repository index, one per repository on the client, with a sorted id
//! file in front of it for "is this chunk stored?".
//!
//! Keys: `v` (cache version and repository id), `s<segment id>` -> the ids it supersedes
//! (segments already applied),
//! `b<chunk id>` -> location (45 fixed bytes) and the pack's ordinal (u32),
//! `p<ordinal>` -> the ids of the pack's blobs (32 bytes each, for [`Locality`]; ordinals are
//! numbered as packs are applied, big endian so they sort, and `n` holds the next one),
//! `o<ordinal>` -> the pack's id (for [`IndexCache::set_gone_packs`] and
//! [`IndexCache::used_packs`]),
//! `u<ordinal>` -> the pack's id, for a pack applied as unverified (a write-only slot wrote it;
//! [`IndexCache::unverified_packs`]),
//! `d<chunk id>` -> ordinal, for each entry applied since the id file was written,
//! `i<segment id>` while a segment is applied in several batches (see `apply`), and
//! `g` -> the generation of the id file ([`IdFile`]) that holds every other entry.
//! A crash while a segment is applied makes the next sync apply it again, or rebuild the cache
//! when it was cut between batches (see `apply`).
//! If a segment the cache applied has disappeared from the repository, the cache is cleared and
//! rebuilt: the repository is the truth and deleting the cache loses nothing.
//!
//! The id file must never say "stored" for an id the cache does not hold (a backup would then
//! reference a chunk that is gone). Entries leave the cache only by [`IndexCache::clear`], which
//! deletes `g` in the same batch as the entries, so no file is trusted after it; a new file is
//! written from entries made durable first, and only then named by `g` (see
//! [`IndexCache::fold_new_ids`]).

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use rocksdb::{DB, Direction, IteratorMode, WriteBatch};

use crate::error::{Error, Result};
use crate::id::{ChunkId, ObjectId};
use crate::index::id_file::{Generation, IdFile, IdFileWriter, merged};
use crate::index::locality::Locality;

mod apply;
mod claim;
mod pack_state;
mod schema;

use claim::{Claim, PrivateDirCleanup, claim_shared};
pub use schema::BlobLocation;
use schema::{CACHE_VERSION, LOCATION_LEN, entry, id_file_path, key, options, pack_key};

/// Lookups answered by RocksDB before the id file is read (a re-snapshot of unchanged files
/// asks about a few tree blobs only).
const LOOKUPS_BEFORE_FILE: u32 = 4096;

/// Most new ids (applied since the id file was written) mirrored in memory, as for the
/// locality set: the map never grows past 131,072 buckets (4.7 MiB). Beyond it, lookups that
/// miss the id file ask RocksDB until the next fold.
const NEW_IDS_CAPACITY: usize = 114_688;

/// New ids worth writing a new id file for: a fold rewrites the whole file, so it waits for
/// new ids in proportion to it (1/16), and always for enough to fill the in-memory map.
fn fold_threshold(file_len: u64) -> usize {
    usize::try_from(4096 + file_len / 16).unwrap_or(usize::MAX).min(NEW_IDS_CAPACITY)
}

/// Segments a bulk load applies from which its memtable is the larger one (a backup's segment
/// lists up to 65,536 entries: about a million entries).
pub const BULK_SEGMENTS: usize = 16;

/// The client-side index cache.
#[derive(Debug)]
pub struct IndexCache {
    db: DB,
    path: PathBuf,
    /// Ids of packs that lookups keep hitting (answers runs of present ids from memory).
    locality: Locality,
    /// What answers "is this id stored?" ahead of RocksDB.
    ids: RwLock<IdState>,
    /// The next pack ordinal; held while applying or folding, so neither runs beside the other.
    applying: Mutex<u32>,
    /// Counts lookups up to [`LOOKUPS_BEFORE_FILE`].
    lookups_before_file: AtomicU32,
    /// Ordinals of packs the storage no longer holds: their entries do not count as stored.
    gone: RwLock<std::collections::HashSet<u32>>,
    /// Whether `gone` holds anything (lookups skip its lock otherwise).
    any_gone: std::sync::atomic::AtomicBool,
    /// Ordinals of packs applied as unverified (a write-only slot wrote them, SPEC §11): their
    /// entries never count as stored, whenever they were applied.
    unverified: RwLock<std::collections::HashSet<u32>>,
    /// Ordinals of the packs [`IndexCache::contains`] answered "stored" from.
    used: Mutex<std::collections::HashSet<u32>>,
    // Declared after `db`: the database is closed before the shared cache is let go.
    _owner: Option<std::fs::File>,
    // Declared after `db` so the database is closed before its directory is removed.
    _cleanup: PrivateDirCleanup,
}

/// The id file and the ids applied since it was written (the `d` entries).
#[derive(Debug, Default)]
struct IdState {
    file: FileSlot,
    /// The `d` entries (id -> ordinal), unless there are more than [`NEW_IDS_CAPACITY`].
    /// Keyed hashing, as in [`Locality`]: segments may list chosen ids.
    new_ids: HashMap<[u8; 32], u32, RandomState>,
    /// `new_ids` does not hold every `d` entry: a lookup that misses asks RocksDB.
    overflow: bool,
}

#[derive(Debug, Default)]
enum FileSlot {
    /// No file: every entry is a `d` entry.
    #[default]
    None,
    /// `g` names this file, not read yet (commands that only locate blobs never read it).
    Unread(Generation),
    Ready(Arc<IdFile>),
    /// `g` names a file that is missing or not whole: entries outside `d` are unknown, so
    /// misses ask RocksDB, and the next fold writes a file from all entries.
    Lost,
}

/// Background compactions stay off while this lives (see [`IndexCache::bulk_load`]).
#[derive(Debug)]
pub struct BulkLoad<'a> {
    db: &'a DB,
    /// Whether compactions were turned off (a failure to do so only costs time).
    on: bool,
}

impl Drop for BulkLoad<'_> {
    fn drop(&mut self) {
        if self.on {
            let _ = self.db.set_options(&[
                ("disable_auto_compactions", "false"),
                ("write_buffer_size", &schema::WRITE_BUFFER.to_string()),
            ]);
        }
    }
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
        let cache = IndexCache {
            db,
            path,
            locality: Locality::default(),
            ids: RwLock::default(),
            applying: Mutex::new(0),
            lookups_before_file: AtomicU32::new(0),
            gone: RwLock::default(),
            any_gone: std::sync::atomic::AtomicBool::new(false),
            unverified: RwLock::default(),
            used: Mutex::default(),
            _owner: owner,
            _cleanup: cleanup,
        };
        let mut want = CACHE_VERSION.to_vec();
        want.extend_from_slice(repository_id.as_bytes());
        let have = cache.db.get(b"v").map_err(|e| cache.err(e))?;
        *cache.unverified.write().unwrap_or_else(PoisonError::into_inner) = cache.unverified_ordinals()?;
        if have.as_deref() != Some(want.as_slice()) {
            cache.clear()?;
            cache.db.put(b"v", &want).map_err(|e| cache.err(e))?;
        }
        cache.load_id_state()?;
        Ok(cache)
    }

    fn err(&self, e: rocksdb::Error) -> Error {
        Error::Cache { path: self.path.clone(), why: e.to_string() }
    }

    fn file_err(&self, why: impl std::fmt::Display) -> Error {
        Error::Cache { path: self.path.clone(), why: format!("id file: {why}") }
    }

    fn applying(&self) -> MutexGuard<'_, u32> {
        self.applying.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn write_ids(&self) -> RwLockWriteGuard<'_, IdState> {
        self.ids.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reads the next ordinal, the id file's generation and the `d` entries (up to the
    /// in-memory capacity).
    fn load_id_state(&self) -> Result<()> {
        let mut next = self.applying();
        *next = match self.db.get(b"n").map_err(|e| self.err(e))? {
            Some(v) => <[u8; 4]>::try_from(v.as_slice()).map(u32::from_le_bytes).unwrap_or(u32::MAX),
            None => 0,
        };
        let mut state = IdState::default();
        if let Some(g) = self.db.get(b"g").map_err(|e| self.err(e))? {
            state.file = <Generation>::try_from(g.as_slice()).map_or(FileSlot::Lost, FileSlot::Unread);
        }
        // Files a crash left behind (a fold cut short): only this process uses this directory.
        let keep = match &state.file {
            FileSlot::Unread(generation) => Some(id_file_path(&self.path, generation)),
            _ => None,
        };
        self.remove_id_files(keep.as_deref());
        // Without a file every entry is new.
        let new = if matches!(state.file, FileSlot::None) { b'b' } else { b'd' };
        for item in self.entries(new) {
            if state.new_ids.len() == NEW_IDS_CAPACITY {
                state.overflow = true;
                state.new_ids = HashMap::default();
                break;
            }
            let (id, ordinal) = item?;
            state.new_ids.insert(id, ordinal);
        }
        *self.write_ids() = state;
        Ok(())
    }

    /// The `b` or `d` entries in id order, as (id, pack ordinal), read past the block cache.
    fn entries(&self, prefix: u8) -> impl Iterator<Item = Result<([u8; 32], u32)>> + '_ {
        let mut ro = rocksdb::ReadOptions::default();
        ro.fill_cache(false);
        ro.set_readahead_size(2 << 20);
        ro.set_iterate_upper_bound([prefix + 1]);
        let at = if prefix == b'b' { LOCATION_LEN } else { 0 };
        self.db.iterator_opt(IteratorMode::From(&[prefix], Direction::Forward), ro).map(move |item| {
            let (k, v) = item.map_err(|e| self.err(e))?;
            entry(&k, &v, at).ok_or_else(|| Error::Cache {
                path: self.path.clone(),
                why: "malformed entry; delete the cache directory".into(),
            })
        })
    }

    /// The id state with the id file read, if `g` names one not read yet.
    fn read_ids(&self) -> Result<RwLockReadGuard<'_, IdState>> {
        let state = self.ids.read().unwrap_or_else(PoisonError::into_inner);
        if !matches!(state.file, FileSlot::Unread(_)) {
            return Ok(state);
        }
        drop(state);
        let mut state = self.write_ids();
        if let FileSlot::Unread(generation) = state.file {
            state.file = match IdFile::open(&id_file_path(&self.path, &generation), &generation)
                .map_err(|e| self.file_err(e))?
            {
                Some(file) => FileSlot::Ready(Arc::new(file)),
                // Lookups stay right (misses ask RocksDB), only slower until the next fold.
                None => FileSlot::Lost,
            };
        }
        drop(state);
        Ok(self.ids.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Removes every blob entry, pack list and segment marker, and the id file (keeps the
    /// version marker and the ordinal counter).
    pub fn clear(&self) -> Result<()> {
        // Before and after: a lookup running meanwhile may have read a pack list that is
        // about to go, and the second clear refuses it.
        self.locality.clear();
        let _applying = self.applying();
        let mut batch = WriteBatch::default();
        for (from, to) in
            [(b"b", b"c"), (b"o", b"p"), (b"p", b"q"), (b"s", b"t"), (b"d", b"e"), (b"u", b"v"), (b"i", b"j")]
        {
            batch.delete_range(from.as_slice(), to.as_slice());
        }
        // In the same batch: no id file is trusted once the entries are gone.
        batch.delete(b"g");
        *self.write_ids() = IdState::default();
        self.unverified.write().unwrap_or_else(PoisonError::into_inner).clear();
        let written = self.db.write(batch).map_err(|e| self.err(e));
        self.locality.clear();
        written?;
        self.remove_id_files(None);
        Ok(())
    }

    /// Deletes the id files other than `keep` (old generations, and any a crash left behind).
    fn remove_id_files(&self, keep: Option<&Path>) {
        let Ok(dir) = std::fs::read_dir(&self.path) else {
            return;
        };
        for e in dir.flatten() {
            let path = e.path();
            let ours = e.file_name().to_str().is_some_and(|n| n.starts_with("ids-"));
            if ours && Some(path.as_path()) != keep {
                let _ = std::fs::remove_file(&path);
            }
        }
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

    /// What a crash while a segment was applied in several batches leaves (for tests): the
    /// segment's in-progress mark and an entry for `id`, without its marker.
    #[cfg(test)]
    pub(crate) fn leave_an_interrupted_apply(&self, segment: ObjectId, id: &ChunkId, at: BlobLocation) {
        let mut value = [0u8; LOCATION_LEN + 4];
        value[..LOCATION_LEN].copy_from_slice(&at.encode());
        self.db.put(key(b'i', segment.as_bytes()), b"").unwrap();
        self.db.put(key(b'b', id.as_bytes()), value).unwrap();
    }

    /// Writes a new id file holding every entry, when enough entries were applied since the
    /// last one (or its file was lost), and then drops the `d` entries it covers. Cheap when
    /// there is nothing to fold, and it does not read the id file then.
    ///
    /// Order, so that `g` never names a file holding an id the cache may lose: applying is
    /// held off; the file is written from the old file and the `d` entries, synced and renamed;
    /// the memtables are flushed (applied entries skip the WAL, so until then a crash would
    /// lose entries the file holds); then `g` and the deletion of `d` go in one batch.
    ///
    /// On an error (a full disk), nothing changes: lookups stay right, only slower, and the
    /// half-written file is removed.
    pub fn fold_new_ids(&self) -> Result<()> {
        let _applying = self.applying();
        {
            let state = self.ids.read().unwrap_or_else(PoisonError::into_inner);
            let lost = matches!(state.file, FileSlot::Lost);
            if !lost && !state.overflow && state.new_ids.len() < fold_threshold(0) {
                return Ok(());
            }
        }
        let old = {
            let state = self.read_ids()?;
            let old = match &state.file {
                FileSlot::Ready(f) => Some(Arc::clone(f)),
                _ => None,
            };
            let lost = matches!(state.file, FileSlot::Lost);
            let due = fold_threshold(old.as_ref().map_or(0, |f| f.count()));
            if !lost && !state.overflow && state.new_ids.len() < due {
                return Ok(());
            }
            old
        };
        let generation = crate::crypto::random_array::<16>()?;
        let path = id_file_path(&self.path, &generation);
        let partial = path.with_extension("partial");
        if let Err(e) = self.write_id_file(old.as_deref(), &partial, generation) {
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
        let io = |e: std::io::Error| self.file_err(format!("{}: {e}", path.display()));
        std::fs::rename(&partial, &path).map_err(io)?;
        std::fs::File::open(&self.path).and_then(|d| d.sync_all()).map_err(io)?;
        let file = IdFile::open(&path, &generation)
            .map_err(|e| self.file_err(e))?
            .ok_or_else(|| self.file_err(format!("{} is not whole right after writing it", path.display())))?;
        self.db.flush().map_err(|e| self.err(e))?;
        let mut batch = WriteBatch::default();
        batch.put(b"g", generation);
        batch.delete_range(b"d".as_slice(), b"e".as_slice());
        // With the WAL: from here the file vouches for entries that are durable.
        self.db.write(batch).map_err(|e| self.err(e))?;
        *self.write_ids() = IdState { file: FileSlot::Ready(Arc::new(file)), ..IdState::default() };
        self.remove_id_files(Some(&path));
        Ok(())
    }

    /// Writes `old`'s records merged with the `d` entries (without an old file, all `b`
    /// entries) to `partial`, synced.
    fn write_id_file(&self, old: Option<&IdFile>, partial: &Path, generation: Generation) -> Result<()> {
        let io = |e: std::io::Error| self.file_err(format!("{}: {e}", partial.display()));
        let mut writer = IdFileWriter::create(partial, generation).map_err(io)?;
        let fresh = self.entries(if old.is_some() { b'd' } else { b'b' });
        let older = old.into_iter().flat_map(IdFile::records).map(|r| r.map_err(io));
        for record in merged(older, fresh) {
            let (id, ordinal) = record?;
            writer.push(&id, ordinal).map_err(io)?;
        }
        writer.finish().map_err(io)
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

    /// Whether `id` is stored: from the locality set, the new ids in memory, the id file (one
    /// block read, most absent ids stopped by its bloom filter), and RocksDB only for what
    /// those cannot answer. A run of hits in one pack loads that pack's ids, and the rest of
    /// the run is answered from memory (see [`Locality`]).
    pub fn contains(&self, id: &ChunkId) -> Result<bool> {
        if self.locality.contains(id) {
            return Ok(true);
        }
        let state = self.ids.read().unwrap_or_else(PoisonError::into_inner);
        let unread = matches!(state.file, FileSlot::Unread(_));
        // Reading the file's fence and bloom filter (77 MB at 50M entries) pays off only over
        // many lookups: the first ones go to RocksDB, which holds every entry too.
        let skip_file = unread && self.lookups_before_file.fetch_add(1, Ordering::Relaxed) < LOOKUPS_BEFORE_FILE;
        let state = if unread && !skip_file {
            drop(state);
            self.read_ids()?
        } else {
            state
        };
        let mut found = state.new_ids.get(id.as_bytes()).copied();
        if found.is_none()
            && let FileSlot::Ready(file) = &state.file
        {
            found = file.find(id.as_bytes()).map_err(|e| self.file_err(e))?;
        }
        let ask_rocksdb = found.is_none() && (skip_file || state.overflow || matches!(state.file, FileSlot::Lost));
        drop(state);
        if ask_rocksdb && let Some(v) = self.db.get_pinned(key(b'b', id.as_bytes())).map_err(|e| self.err(e))? {
            let ordinal = v.get(LOCATION_LEN..).and_then(<[u8]>::first_chunk::<4>);
            found = Some(ordinal.map_or(u32::MAX, |o| u32::from_le_bytes(*o)));
        }
        let Some(ordinal) = found else {
            return Ok(false);
        };
        if self.any_gone.load(Ordering::Relaxed)
            && self.gone.read().unwrap_or_else(PoisonError::into_inner).contains(&ordinal)
        {
            // Stored once, but its pack is gone: the chunk must be stored again.
            return Ok(false);
        }
        if self.unverified.read().unwrap_or_else(PoisonError::into_inner).contains(&ordinal) {
            // Only a write-only slot stored it, under an id it could compute for any content.
            return Ok(false);
        }
        self.used.lock().unwrap_or_else(PoisonError::into_inner).insert(ordinal);
        if let Some(ticket) = self.locality.hit(ordinal) {
            self.load_pack_ids(ordinal, ticket)?;
        }
        Ok(true)
    }

    /// Loads a pack's id list into the locality set. A malformed list is skipped: the set is
    /// only a shortcut, and every id is still found in RocksDB.
    fn load_pack_ids(&self, ordinal: u32, ticket: u64) -> Result<()> {
        if let Some(list) = self.db.get_pinned(pack_key(ordinal)).map_err(|e| self.err(e))? {
            self.locality.load(ordinal, &list, ticket);
        }
        Ok(())
    }

    /// Compacts the whole cache into as few sorted runs as possible: a lookup then probes one
    /// level instead of every freshly flushed file. Worth it after a rebuild.
    pub fn compact(&self) {
        self.db.compact_range::<&[u8], &[u8]>(None, None);
    }

    /// Turns background compactions off until the guard is dropped, for applying many
    /// segments at once, with a larger memtable meanwhile; the caller then calls
    /// [`IndexCache::compact`].
    ///
    /// Why: entries arrive in random key order, so with compactions on, every flushed table
    /// overlaps all of level 1 and each entry is rewritten level after level while the sync
    /// runs (a first sync of 50M entries spent over half its CPU time in compactions). Off,
    /// the tables pile up in level 0 and one final merge writes each entry once. Meanwhile
    /// lookups probe every level-0 table (its bloom filter first); a sync makes few. The
    /// setting lives in the open database only: after a crash the next open has compactions
    /// on again, and they merge what was left in level 0. The cost is disk: the final merge
    /// writes its output before it deletes its inputs, so the cache briefly takes about twice
    /// its size (some 14 GB for a moment at 50M entries, against 7.6 GB after). A full disk
    /// then is a cache error like any other (the repository is not written by a sync); not
    /// tested.
    ///
    /// `segments` is how many segments the load applies: from [`BULK_SEGMENTS`] on, the
    /// memtable grows to [`schema::BULK_WRITE_BUFFER`] so the final merge has fewer inputs;
    /// below, it keeps its usual size (a prune's rebuild of a small cache then peaks some
    /// 20 MB lower).
    pub fn bulk_load(&self, segments: usize) -> BulkLoad<'_> {
        let buffer = if segments >= BULK_SEGMENTS { schema::BULK_WRITE_BUFFER } else { schema::WRITE_BUFFER };
        let on = self
            .db
            .set_options(&[("disable_auto_compactions", "true"), ("write_buffer_size", &buffer.to_string())])
            .is_ok();
        BulkLoad { db: &self.db, on }
    }

    /// Flushes memtables so the next open starts warm.
    pub fn flush(&self) -> Result<()> {
        self.db.flush().map_err(|e| self.err(e))
    }
}

#[cfg(test)]
mod tests;
