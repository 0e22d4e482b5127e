//! Index cache lookups (the id file in front of RocksDB) at repository scale: a synthetic cache of N
//! chunk entries (default 1M and 10M; `CAIRN_BENCH_INDEX_SIZES=1000000,50000000` for more),
//! then point lookups on one thread, each batch 10,000 ids, reported as lookups per second per
//! core:
//! - `absent`: new data, the lookup every new chunk makes;
//! - `present_in_order`: stored ids in the order they were stored, from a different place each
//!   round, as a re-snapshot checks its parent's chunks or reads a moved file (the locality set
//!   answers most of them from memory);
//! - `present_random`: stored ids spread over the whole cache with no order, the worst case
//!   (one block read of the cache's id file each);
//! - `present_random_floor`: the same ids in a plain sorted file read with one `pread` each
//!   (see [`SortedIds`]): what any lookup of a random stored id costs while the ids live
//!   outside the process's memory, the yardstick for `present_random`.

use std::fs::File;
use std::hint::black_box;
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

use cairn_benches::{SEGMENT_ENTRIES, synthetic_segment};
use cairn_engine::id::{ChunkId, ObjectId, PackId};
use cairn_engine::index::IndexCache;
use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

const BATCH: u64 = 10_000;

fn id(n: u64) -> ChunkId {
    ChunkId(*blake3::hash(&n.to_le_bytes()).as_bytes())
}

fn build(dir: &std::path::Path, entries: u64) -> IndexCache {
    let cache = IndexCache::open(dir, ObjectId([1; 32])).unwrap();
    let pack = |first: u64| PackId(*blake3::hash(&first.to_be_bytes()).as_bytes());
    for first in (0..entries).step_by(SEGMENT_ENTRIES as usize) {
        let segment = ObjectId(*blake3::hash(&first.to_be_bytes()).as_bytes());
        cache.apply_segment(segment, &synthetic_segment(first, entries, id, pack)).unwrap();
    }
    cache.flush().unwrap();
    // As a sync or a backup ends: the new ids go into the cache's id file.
    cache.fold_new_ids().unwrap();
    if std::env::var_os("CAIRN_BENCH_INDEX_NO_COMPACT").is_none() {
        cache.compact();
    }
    cache
}

/// Bytes per block of [`SortedIds`]: 32 ids.
const BLOCK: usize = 1024;

/// The ids `id(0..entries)` sorted in a file of [`BLOCK`]-byte blocks, and in memory only the
/// first 8 bytes of each block's first id (the fence: 8 bytes per 32 ids, 12.5 MB at 50M).
/// A lookup finds its block in the fence by interpolation (keyed ids are uniform), reads it
/// with one `pread` and scans it. It holds no locations and takes no updates: the least a
/// lookup of a random stored id can cost when the ids are not in the process's memory.
struct SortedIds {
    file: File,
    fence: Vec<u64>,
}

fn prefix(bytes: &[u8]) -> u64 {
    bytes.get(..8).and_then(|b| b.try_into().ok()).map_or(0, u64::from_be_bytes)
}

impl SortedIds {
    fn open_or_build(path: &Path, entries: u64) -> SortedIds {
        if !path.exists() {
            let mut ids: Vec<[u8; 32]> = (0..entries).map(|n| *id(n).as_bytes()).collect();
            ids.sort_unstable();
            let partial = path.with_extension("partial");
            let mut out = BufWriter::new(File::create(&partial).unwrap());
            for i in &ids {
                out.write_all(i).unwrap();
            }
            out.into_inner().unwrap().sync_all().unwrap();
            std::fs::rename(&partial, path).unwrap();
        }
        let file = File::open(path).unwrap();
        let mut fence = Vec::new();
        let mut buf = vec![0u8; 256 * BLOCK];
        let mut at = 0u64;
        loop {
            let got = file.read_at(&mut buf, at).unwrap();
            if got == 0 {
                break;
            }
            fence.extend(buf[..got].chunks(BLOCK).map(prefix));
            at += got as u64;
        }
        SortedIds { file, fence }
    }

    fn contains(&self, id: &ChunkId) -> bool {
        let key = prefix(id.as_bytes());
        let last = self.fence.len().saturating_sub(1);
        let mut b = ((u128::from(key) * self.fence.len() as u128) >> 64) as usize;
        b = b.min(last);
        while b > 0 && self.fence[b] > key {
            b -= 1;
        }
        while b < last && self.fence[b + 1] <= key {
            b += 1;
        }
        let mut block = [0u8; BLOCK];
        let got = self.file.read_at(&mut block, (b * BLOCK) as u64).unwrap();
        block[..got].chunks_exact(32).any(|c| c == id.as_bytes())
    }
}

const SMALL: BatchSize = BatchSize::SmallInput;

/// Looks up every id of a batch, each expected to be stored.
fn lookup_all(ids: &[ChunkId], contains: impl Fn(&ChunkId) -> bool) {
    for id in ids {
        assert!(black_box(contains(black_box(id))));
    }
}

/// Looks up every id of a batch, none expected to be stored.
fn lookup_none(ids: &[ChunkId], contains: impl Fn(&ChunkId) -> bool) {
    for id in ids {
        assert!(!black_box(contains(black_box(id))));
    }
}

fn sizes() -> Vec<u64> {
    std::env::var("CAIRN_BENCH_INDEX_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1_000_000, 10_000_000])
}

fn lookups(c: &mut Criterion) {
    let mut g = c.benchmark_group("index_lookup");
    g.throughput(Throughput::Elements(BATCH));
    g.sample_size(20);
    for entries in sizes() {
        // CAIRN_BENCH_INDEX_DIR keeps the built caches there and reuses them on later runs
        // (building 50M entries takes minutes), e.g. to compare RocksDB options.
        let kept =
            std::env::var_os("CAIRN_BENCH_INDEX_DIR").map(|d| std::path::PathBuf::from(d).join(entries.to_string()));
        let temp = tempfile::tempdir().unwrap();
        let dir = kept.clone().unwrap_or_else(|| temp.path().to_path_buf());
        let start = std::time::Instant::now();
        let cache = if kept.as_ref().is_some_and(|d| d.join("built").exists()) {
            IndexCache::open(&dir, ObjectId([1; 32])).unwrap()
        } else {
            let cache = build(&dir, entries);
            std::fs::write(dir.join("built"), b"").unwrap();
            cache
        };
        eprintln!("index_lookup: {entries} entries ready in {:.1}s", start.elapsed().as_secs_f64());
        // Each batch's ids are made before it is timed: a backup has its chunk ids from the
        // hash stage (benched on its own), and making one here (a BLAKE3 of 8 bytes, about
        // 90 ns) would count as lookup time.
        let mut round = 0u64;
        let mut batch = |ids: &dyn Fn(u64, u64) -> u64| {
            round += 1;
            (0..BATCH).map(|i| id(ids(round, i))).collect::<Vec<_>>()
        };
        let in_order = |round: u64, i: u64| round.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(i) % entries;
        // A spread of ids over the whole cache, different each round.
        let random = |round: u64, i: u64| (round * BATCH + i).wrapping_mul(0x9E37_79B9_7F4A_7C15) % entries;
        let absent = |round: u64, i: u64| entries + round * BATCH + i;
        g.bench_function(BenchmarkId::new("present_in_order", entries), |b| {
            b.iter_batched_ref(|| batch(&in_order), |ids| lookup_all(ids, |id| cache.contains(id).unwrap()), SMALL)
        });
        g.bench_function(BenchmarkId::new("present_random", entries), |b| {
            b.iter_batched_ref(|| batch(&random), |ids| lookup_all(ids, |id| cache.contains(id).unwrap()), SMALL)
        });
        let sorted = SortedIds::open_or_build(&dir.join("ids.sorted"), entries);
        g.bench_function(BenchmarkId::new("present_random_floor", entries), |b| {
            b.iter_batched_ref(|| batch(&random), |ids| lookup_all(ids, |id| sorted.contains(id)), SMALL)
        });
        g.bench_function(BenchmarkId::new("absent", entries), |b| {
            b.iter_batched_ref(|| batch(&absent), |ids| lookup_none(ids, |id| cache.contains(id).unwrap()), SMALL)
        });
    }
    g.finish();
}

criterion_group!(benches, lookups);
criterion_main!(benches);
