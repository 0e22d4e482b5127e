//! Per-stage throughput on in-memory data: chunk, keyed hash, compress (text and random), seal.
//! Compare stages with each other within one run; absolute numbers vary with the machine.

use std::hint::black_box;

use cairn_engine::chunker::{Chunker, ChunkerParams};
use cairn_engine::compress;
use cairn_engine::crypto::Key32;
use cairn_engine::format::envelope::{ObjectKind, seal};
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
    g.finish();
}

criterion_group!(benches, stages);
criterion_main!(benches);
