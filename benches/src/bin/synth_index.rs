//! Fills an existing local repository's index with ENTRIES synthetic chunk entries (real,
//! sealed index segments of 64 packs of 1,024 blobs each, naming packs that do not exist), so
//! that `cairn snapshot` can be measured against an index of repository scale without storing
//! terabytes. The repository is only good for that afterwards: `check` reports the packs as
//! missing.
//!
//! Usage: CAIRN_PASSWORD=... synth-index REPO_DIR ENTRIES

use std::sync::Arc;

use cairn_benches::{SEGMENT_ENTRIES, synthetic_segment};
use cairn_engine::crypto::SecretBytes;
use cairn_engine::id::{ChunkId, PackId};
use cairn_engine::keys::OpenSecret;
use cairn_engine::repo::Repository;
use cairn_engine::storage::LocalStorage;

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(repo_dir), Some(entries)) = (args.next(), args.next().and_then(|n| n.parse::<u64>().ok())) else {
        eprintln!("usage: CAIRN_PASSWORD=... synth-index REPO_DIR ENTRIES");
        std::process::exit(2);
    };
    let password = std::env::var("CAIRN_PASSWORD").unwrap_or_default();
    let scratch = std::env::temp_dir().join(format!("synth-index-cache-{}", std::process::id()));
    let repo = Repository::open(
        Arc::new(LocalStorage::new(&repo_dir)),
        &OpenSecret::Password(SecretBytes::from(password)),
        scratch.clone(),
    )
    .unwrap_or_else(|e| {
        eprintln!("synth-index: {e}");
        std::process::exit(1);
    });
    let seed = *blake3::hash(repo_dir.as_bytes()).as_bytes();
    let id = |n: u64| *blake3::keyed_hash(&seed, &n.to_le_bytes()).as_bytes();
    let start = std::time::Instant::now();
    for first in (0..entries).step_by(SEGMENT_ENTRIES as usize) {
        let segment = synthetic_segment(first, entries, |i| ChunkId(id(i)), |start| PackId(id(u64::MAX - start)));
        if let Err(e) = repo.save_index_segment(&segment) {
            eprintln!("synth-index: {e}");
            std::process::exit(1);
        }
    }
    drop(repo);
    let _ = std::fs::remove_dir_all(&scratch);
    println!("synth-index: {entries} entries in {:.1}s", start.elapsed().as_secs_f64());
}
