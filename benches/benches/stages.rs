//! Per-stage throughput on in-memory data: chunk, keyed hash, compress (text and random), seal,
//! open, and pack building (shuffle, sealed header, pack id, store into memory).
//! Compare stages with each other within one run; absolute numbers vary with the machine.

use std::hint::black_box;

use cairn_engine::chunker::{Chunker, ChunkerParams};
use cairn_engine::compress;
use cairn_engine::crypto::Key32;
use cairn_engine::crypto::{Argon2Params, SecretBytes};
use cairn_engine::format::BlobKind;
use cairn_engine::format::envelope::{ObjectKind, open, seal};
use cairn_engine::storage::{MemStorage, PutMode, Storage};
use cairn_engine::{ChunkId, InitOptions, Repository};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const SIZE: usize = 8 << 20;

fn random(n: usize) -> Vec<u8> {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn text(n: usize) -> Vec<u8> {
    let words = ["backup ", "restore ", "chunk ", "pack ", "index ", "snapshot\n"];
    let r = random(n / 4);
    let mut out = Vec::with_capacity(n + 16);
    let mut i = 0;
    while out.len() < n {
        out.extend_from_slice(words[r[i % r.len()] as usize % words.len()].as_bytes());
        i += 1;
    }
    out.truncate(n);
    out
}

fn stages(c: &mut Criterion) {
    let data = random(SIZE);
    let txt = text(SIZE);
    let key = Key32::from_bytes([7; 32]);
    let mut g = c.benchmark_group("stage");
    g.throughput(Throughput::Bytes(SIZE as u64));
    g.sample_size(20);
    let chunker = Chunker::new(&key, ChunkerParams::default()).unwrap();
    g.bench_function("chunk_keyed_fastcdc", |b| b.iter(|| black_box(chunker.cut_all(black_box(&data)))));
    g.bench_function("hash_keyed_blake3", |b| b.iter(|| black_box(blake3::keyed_hash(&[1; 32], black_box(&data)))));
    g.bench_function("compress_zstd3_text", |b| b.iter(|| black_box(compress::encode(black_box(&txt), 3))));
    g.bench_function("compress_zstd3_random", |b| b.iter(|| black_box(compress::encode(black_box(&data), 3))));
    g.bench_function("seal_xchacha20poly1305", |b| {
        b.iter(|| black_box(seal(&key, 0, ObjectKind::DataBlob, &[0; 32], black_box(&data)).unwrap()))
    });
    let sealed = seal(&key, 0, ObjectKind::DataBlob, &[0; 32], &data).unwrap();
    g.bench_function("open_xchacha20poly1305", |b| {
        b.iter(|| black_box(open(black_box(&sealed), ObjectKind::DataBlob, &[0; 32], "bench", |_| Ok(&key)).unwrap()))
    });
    g.finish();
    pack_build(c);
}

/// Repository objects in memory, packs read and dropped: the pack bench measures assembly,
/// not copying into a map.
#[derive(Debug)]
struct DropPacks(MemStorage);

impl Storage for DropPacks {
    fn location(&self) -> String {
        "drop-packs".into()
    }
    fn put(&self, name: &str, data: &[u8], mode: PutMode) -> cairn_engine::Result<()> {
        self.put_parts(name, &[data], mode)
    }
    fn put_parts(&self, name: &str, parts: &[&[u8]], mode: PutMode) -> cairn_engine::Result<()> {
        if name.starts_with("data/") {
            black_box(parts.iter().map(|p| p.len()).sum::<usize>());
            return Ok(());
        }
        self.0.put_parts(name, parts, mode)
    }
    fn get(&self, name: &str) -> cairn_engine::Result<Vec<u8>> {
        self.0.get(name)
    }
    fn get_range(&self, name: &str, offset: u64, len: u64) -> cairn_engine::Result<Vec<u8>> {
        self.0.get_range(name, offset, len)
    }
    fn list(&self, prefix: &str) -> cairn_engine::Result<Vec<String>> {
        self.0.list(prefix)
    }
    fn delete(&self, name: &str) -> cairn_engine::Result<()> {
        self.0.delete(name)
    }
    fn stat(&self, name: &str) -> cairn_engine::Result<Option<u64>> {
        self.0.stat(name)
    }
}

/// Building 16 MiB packs from 256 sealed blobs of 64 KiB (prune's path: blobs already sealed):
/// shuffling, the sealed header, the pack id over all bytes, the hand-off to an upload thread.
fn pack_build(c: &mut Criterion) {
    let storage: std::sync::Arc<dyn Storage> = std::sync::Arc::new(DropPacks(MemStorage::new()));
    let dir = tempfile::tempdir().unwrap();
    Repository::init(storage.clone(), &InitOptions::new(SecretBytes::from("bench".to_string()), Argon2Params::MIN))
        .unwrap();
    let repo = Repository::open(
        storage,
        &cairn_engine::keys::OpenSecret::Password(SecretBytes::from("bench".to_string())),
        dir.path().to_path_buf(),
    )
    .unwrap();
    let blob = random(64 << 10);
    let blobs: Vec<(ChunkId, Vec<u8>)> = (0..256u32)
        .map(|i| {
            let mut b = blob.clone();
            b[..4].copy_from_slice(&i.to_le_bytes());
            (repo.chunk_id(&b), b)
        })
        .collect();
    let mut g = c.benchmark_group("stage");
    g.throughput(Throughput::Bytes(256 * (64 << 10)));
    g.sample_size(20);
    g.bench_function("pack_build_16mib", |b| {
        b.iter(|| {
            let w = repo.repack_writer().unwrap();
            for (id, sealed) in &blobs {
                w.add(BlobKind::Data, *id, sealed.len() as u32, sealed.clone()).unwrap();
            }
            black_box(w.finish().unwrap())
        })
    });
    g.finish();
}

criterion_group!(benches, stages);
criterion_main!(benches);
