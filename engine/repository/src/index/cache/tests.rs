//! The index cache against real RocksDB directories: answers, id files, claims, bulk loads.

use super::*;
use crate::format::BlobKind;
use crate::format::index::{IndexSegment, IndexedPack};
use crate::format::pack::BlobEntry;
use crate::id::PackId;

fn id(n: u64) -> ChunkId {
    ChunkId(*blake3::hash(&n.to_le_bytes()).as_bytes())
}

/// The cache of the tests' repository in `dir`.
fn open_cache(dir: &Path) -> IndexCache {
    IndexCache::open(dir, ObjectId([9; 32])).unwrap()
}

/// A cache holding `packs` packs of `per_pack` ids each: ids `p * per_pack ..` in pack `p`.
fn cache_with(dir: &Path, packs: u64, per_pack: u64) -> IndexCache {
    let cache = open_cache(dir);
    apply_in_packs(&cache, 0, packs * per_pack, per_pack, 3);
    cache
}

fn pack_of(first: u64) -> PackId {
    PackId(*blake3::hash(&first.to_be_bytes()).as_bytes())
}

/// Applies `count` ids starting at `from`, in packs of `per_pack`, as one segment.
fn apply_in_packs(cache: &IndexCache, from: u64, count: u64, per_pack: u64, segment: u8) {
    let packs = (from..from + count)
        .step_by(per_pack as usize)
        .map(|first| IndexedPack {
            pack: pack_of(first),
            size: 1 << 20,
            blobs: (first..(first + per_pack).min(from + count))
                .map(|n| BlobEntry { kind: BlobKind::Data, id: id(n), offset: n as u32, length: 10, raw_length: 20 })
                .collect(),
        })
        .collect();
    cache
        .apply_segment(ObjectId([segment; 32]), &IndexSegment { packs, supersedes: Vec::new(), unverified: Vec::new() })
        .unwrap();
}

/// Applies `count` ids starting at `from`, in packs of 500, as one segment.
fn apply(cache: &IndexCache, from: u64, count: u64, segment: u8) {
    apply_in_packs(cache, from, count, 500, segment);
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
    assert_eq!((loc.pack, loc.offset), (pack_of(1000), 1234));
}

fn level0_tables(cache: &IndexCache) -> u64 {
    cache.db.property_int_value("rocksdb.num-files-at-level0").unwrap().unwrap()
}

/// Applies ids `n * 1000 ..` as segment `n` and flushes it into a level-0 table.
fn apply_and_flush(cache: &IndexCache, segments: std::ops::Range<u64>) {
    for n in segments {
        apply(cache, n * 1000, 1000, n as u8);
        cache.flush().unwrap();
    }
}

#[test]
fn a_bulk_load_leaves_tables_to_one_final_compaction_and_then_compactions_resume() {
    let dir = tempfile::tempdir().unwrap();
    let cache = open_cache(dir.path());
    let bulk = cache.bulk_load(BULK_SEGMENTS);
    // More tables than the level-0 compaction trigger (4): none is compacted meanwhile.
    apply_and_flush(&cache, 0..8);
    assert_eq!(level0_tables(&cache), 8);
    cache.compact();
    assert_eq!(level0_tables(&cache), 0);
    drop(bulk);
    assert_answers(&cache, 0..8000, "after the bulk load");
    // Compactions are back on: the level-0 tables of later syncs get merged.
    apply_and_flush(&cache, 8..14);
    cache.db.wait_for_compact(&rocksdb::WaitForCompactOptions::default()).unwrap();
    assert!(level0_tables(&cache) < 4, "{} level-0 tables", level0_tables(&cache));
    assert_answers(&cache, 0..14_000, "after compactions");
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
                        open_cache(dir.path())
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

fn id_files(cache: &IndexCache) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(&cache.path)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("ids-"))
        .collect();
    files.sort();
    files
}

/// Present ids in `range` found (and not from the locality set), absent ones not.
fn assert_answers(cache: &IndexCache, present: std::ops::Range<u64>, what: &str) {
    for n in present.clone().step_by(7) {
        cache.locality.clear();
        assert!(cache.contains(&id(n)).unwrap(), "{what}: id {n} missing");
    }
    for n in (present.end..present.end + 3000).chain(1 << 40..(1 << 40) + 3000) {
        assert!(!cache.contains(&id(n)).unwrap(), "{what}: absent id {n} found");
    }
}

#[test]
fn folded_ids_are_answered_from_the_id_file_across_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let cache = open_cache(dir.path());
    apply(&cache, 0, 3000, 1);
    cache.fold_new_ids().unwrap();
    assert!(id_files(&cache).is_empty(), "3,000 new ids are below the fold threshold");
    apply(&cache, 3000, 3000, 2);
    cache.fold_new_ids().unwrap();
    assert_eq!(id_files(&cache).len(), 1);
    {
        let state = cache.read_ids().unwrap();
        assert!(state.new_ids.is_empty() && !state.overflow);
        assert!(matches!(&state.file, FileSlot::Ready(f) if f.count() == 6000));
    }
    assert_answers(&cache, 0..6000, "after the fold");
    cache.locality.clear();
    for n in 3500..3510 {
        assert!(cache.contains(&id(n)).unwrap());
    }
    assert!((3500..4000).all(|n| cache.locality.contains(&id(n))), "a run in one pack loads the pack");
    apply(&cache, 6000, 100, 3);
    assert_answers(&cache, 0..6100, "file and new ids");
    drop(cache);
    let cache = open_cache(dir.path());
    assert!(matches!(cache.ids.read().unwrap().file, FileSlot::Unread(_)), "not read at open");
    for n in (0..6100).step_by(61) {
        assert!(cache.contains(&id(n)).unwrap(), "reopened, answered by RocksDB: id {n} missing");
        assert!(!cache.contains(&id(1 << 41 | n)).unwrap(), "reopened, answered by RocksDB: absent id found");
    }
    assert!(matches!(cache.ids.read().unwrap().file, FileSlot::Unread(_)), "not read for a few lookups");
    cache.lookups_before_file.store(LOOKUPS_BEFORE_FILE, Ordering::Relaxed);
    assert_answers(&cache, 0..6100, "reopened, from the file");
    assert!(matches!(cache.ids.read().unwrap().file, FileSlot::Ready(_)), "read after many lookups");
    assert_eq!(cache.read_ids().unwrap().new_ids.len(), 100, "the new ids came back from `d`");
    let loc = cache.get(&id(4321)).unwrap().unwrap();
    assert_eq!(loc.offset, 4321, "locations still come from RocksDB");
    // A second fold merges the file with the new ids (one applied again among them).
    apply(&cache, 6000, 5000, 4);
    cache.fold_new_ids().unwrap();
    assert!(matches!(&cache.read_ids().unwrap().file, FileSlot::Ready(f) if f.count() == 11_000));
    assert_eq!(id_files(&cache).len(), 1, "the old file is removed");
    assert_answers(&cache, 0..11_000, "after merging");
}

#[test]
fn a_cleared_cache_trusts_no_id_file_even_one_put_back() {
    let dir = tempfile::tempdir().unwrap();
    let cache = open_cache(dir.path());
    apply(&cache, 0, 5000, 1);
    cache.fold_new_ids().unwrap();
    let file = id_files(&cache).pop().unwrap();
    let saved = std::fs::read(&file).unwrap();
    cache.clear().unwrap();
    assert!(id_files(&cache).is_empty(), "clear removes the id file");
    apply(&cache, 0, 10, 2);
    assert_answers(&cache, 0..10, "after clear");
    drop(cache);
    // As if a crash had left the old file behind after the clear.
    std::fs::write(&file, saved).unwrap();
    let cache = open_cache(dir.path());
    assert_answers(&cache, 0..10, "old file put back");
    assert!(id_files(&cache).is_empty(), "a file `g` does not name is removed at open");
}

#[test]
fn a_lost_id_file_falls_back_to_rocksdb_and_the_next_fold_writes_it_from_all_entries() {
    let dir = tempfile::tempdir().unwrap();
    let cache = open_cache(dir.path());
    apply(&cache, 0, 5000, 1);
    cache.fold_new_ids().unwrap();
    apply(&cache, 5000, 50, 2);
    drop(cache);
    let cache = open_cache(dir.path());
    std::fs::remove_file(id_files(&cache).pop().unwrap()).unwrap();
    assert_answers(&cache, 0..5050, "file lost");
    assert!(matches!(cache.read_ids().unwrap().file, FileSlot::Lost));
    cache.fold_new_ids().unwrap();
    assert!(matches!(&cache.read_ids().unwrap().file, FileSlot::Ready(f) if f.count() == 5050));
    assert_answers(&cache, 0..5050, "file written again");
}

#[test]
fn more_new_ids_than_memory_holds_are_answered_by_rocksdb_until_folded() {
    let dir = tempfile::tempdir().unwrap();
    let cache = open_cache(dir.path());
    let many = NEW_IDS_CAPACITY as u64 + 1000;
    apply(&cache, 0, many, 1);
    assert!(cache.read_ids().unwrap().overflow);
    assert_answers(&cache, 0..many, "overflowed");
    cache.locality.clear();
    for n in 1000..1010 {
        assert!(cache.contains(&id(n)).unwrap());
    }
    assert!((1000..1500).all(|n| cache.locality.contains(&id(n))), "a run in one pack loads the pack");
    drop(cache);
    let cache = open_cache(dir.path());
    {
        let state = cache.read_ids().unwrap();
        assert!(state.overflow && state.new_ids.is_empty(), "reopened: the map stays empty");
    }
    assert_answers(&cache, 0..many, "reopened overflowed");
    cache.fold_new_ids().unwrap();
    assert!(!cache.read_ids().unwrap().overflow);
    assert_answers(&cache, 0..many, "folded");
}

#[test]
fn an_older_cache_version_is_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    drop(cache_with(dir.path(), 1, 10));
    {
        let db = DB::open(&options(), dir.path().join("index")).unwrap();
        let mut old = b"cairn-index-cache-v3".to_vec();
        old.extend_from_slice(&[9; 32]);
        db.put(b"v", old).unwrap();
    }
    let cache = open_cache(dir.path());
    assert!(!cache.contains(&id(0)).unwrap(), "a v3 cache has no pack ordinals: it starts over");
    assert!(cache.applied_segments().unwrap().is_empty());
}

#[test]
fn within_one_segment_the_last_trusted_copy_wins_and_an_unverified_one_never_replaces_it() {
    let dir = tempfile::tempdir().unwrap();
    let cache = open_cache(dir.path());
    let pack = |first: u64, ids: &[u64]| IndexedPack {
        pack: pack_of(first),
        size: 1 << 20,
        blobs: ids
            .iter()
            .map(|n| BlobEntry { kind: BlobKind::Data, id: id(*n), offset: first as u32, length: 10, raw_length: 20 })
            .collect(),
    };
    // Ids in random order across packs, 1 and 2 listed twice by trusted packs, 1 and 3 by an
    // unverified pack after them.
    let packs = vec![pack(100, &[5, 1, 9, 2]), pack(200, &[2, 7, 1]), pack(300, &[1, 3])];
    let segment = IndexSegment { packs, supersedes: Vec::new(), unverified: vec![pack_of(300)] };
    cache.apply_segment(ObjectId([1; 32]), &segment).unwrap();
    let at = |n: u64| cache.get(&id(n)).unwrap().map(|loc| loc.pack);
    assert_eq!(at(1), Some(pack_of(200)), "the later trusted copy, not the unverified one after it");
    assert_eq!(at(2), Some(pack_of(200)));
    assert_eq!(at(5), Some(pack_of(100)));
    assert_eq!(at(3), Some(pack_of(300)), "an id only an unverified pack lists is still located");
    assert_eq!(at(4), None);
    assert!(cache.contains(&id(9)).unwrap());
    assert!(!cache.contains(&id(3)).unwrap(), "unverified entries never count as stored");
}

#[test]
fn a_segment_applied_in_several_batches_leaves_no_mark_and_one_cut_short_is_seen() {
    let dir = tempfile::tempdir().unwrap();
    let cache = open_cache(dir.path());
    // Exactly one batch of entries; then, beside an id file (`d` entries too), a segment
    // whose `b` and `d` puts together pass a batch; then several batches.
    let per = apply::ENTRIES_PER_WRITE as u64;
    apply(&cache, 0, per, 1);
    cache.fold_new_ids().unwrap();
    assert!(matches!(cache.read_ids().unwrap().file, FileSlot::Ready(_)));
    apply(&cache, per, 5_000, 3);
    let count = 4 * per + 17;
    apply(&cache, per + 5_000, count - per - 5_000, 4);
    for segment in [1, 3, 4] {
        assert!(cache.applied_segments().unwrap().contains_key(&ObjectId([segment; 32])));
    }
    assert!(!cache.interrupted().unwrap());
    assert_answers(&cache, 0..count, "split segments");
    drop(cache);
    let cache = open_cache(dir.path());
    assert_answers(&cache, 0..count, "reopened");
    // A crash after the first batches of segment 2: its `i` key and some entries, no marker.
    cache.db.put(key(b'i', &[2; 32]), b"").unwrap();
    cache.db.put(key(b'b', id(count).as_bytes()), [0u8; LOCATION_LEN + 4]).unwrap();
    assert!(cache.interrupted().unwrap());
    assert!(!cache.applied_segments().unwrap().contains_key(&ObjectId([2; 32])));
    cache.clear().unwrap();
    assert!(!cache.interrupted().unwrap(), "clearing drops the mark with the entries");
    assert!(cache.get(&id(count)).unwrap().is_none());
}
