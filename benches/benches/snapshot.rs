//! End to end: `snapshot` of generated mixed data (random and text files) into a fresh local
//! repository, and an unchanged re-snapshot, through the engine's public API.

use std::fs;
use std::path::Path;

use cairn_engine::backup::{BackupOptions, backup};
use cairn_engine::crypto::{Argon2Params, SecretBytes};
use cairn_engine::keys::OpenSecret;
use cairn_engine::storage::{LocalStorage, Storage};
use cairn_engine::{InitOptions, NoProgress, Repository};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const FILES: usize = 16;
const FILE_SIZE: usize = 4 << 20;

fn generate(dir: &Path) {
    fs::create_dir_all(dir).unwrap();
    let mut x = 0x1234_5678_9abc_def1u64;
    for i in 0..FILES {
        let bytes: Vec<u8> = if i % 2 == 0 {
            (0..FILE_SIZE)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect()
        } else {
            format!("line {i} of a text-like file with some repetition\n").into_bytes().repeat(FILE_SIZE / 48)
        };
        fs::write(dir.join(format!("f{i}")), bytes).unwrap();
    }
}

fn open_new(root: &Path) -> Repository {
    let storage: std::sync::Arc<dyn Storage> = std::sync::Arc::new(LocalStorage::new(root.join("repo")));
    let opts = InitOptions::new(SecretBytes::from("bench".to_string()), Argon2Params::MIN);
    Repository::init(storage.clone(), &opts).unwrap();
    Repository::open(storage, &OpenSecret::Password(SecretBytes::from("bench".to_string())), root.join("cache"))
        .unwrap()
}

fn snapshot(c: &mut Criterion) {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    generate(&src);
    let opts = BackupOptions { paths: vec![src.clone()], hostname: "bench".into(), ..BackupOptions::default() };
    let mut g = c.benchmark_group("end_to_end");
    g.throughput(Throughput::Bytes((FILES * FILE_SIZE) as u64));
    g.sample_size(10);
    g.bench_function("snapshot_initial", |b| {
        b.iter_with_setup(
            || tempfile::tempdir().unwrap(),
            |dir| {
                let repo = open_new(dir.path());
                backup(&repo, &opts, &NoProgress).unwrap();
            },
        )
    });
    let dir = tempfile::tempdir().unwrap();
    let repo = open_new(dir.path());
    backup(&repo, &opts, &NoProgress).unwrap();
    g.bench_function("snapshot_unchanged", |b| b.iter(|| backup(&repo, &opts, &NoProgress).unwrap()));
    g.finish();
}

criterion_group!(benches, snapshot);
criterion_main!(benches);
