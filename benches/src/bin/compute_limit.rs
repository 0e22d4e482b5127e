//! The compute limit of a snapshot: chunk (keyed FastCDC) and keyed-BLAKE3 every file of a
//! directory, then zstd and seal each distinct chunk once (as dedup would), in memory, on all
//! cores, with no I/O, index or packing. The whole
//! pipeline cannot beat this; `benches/compare.sh` reports how close `cairn snapshot` gets.
//!
//! Usage: compute-limit DIR [MAX_MIB] (reads at most MAX_MIB, default 2048, into memory first).

use std::path::{Path, PathBuf};
use std::time::Instant;

use cairn_engine::chunker::{Chunker, ChunkerParams};
use cairn_engine::crypto::Key32;
use cairn_engine::format::blob;
use cairn_engine::format::envelope::{ObjectKind, seal_in_place};
use rayon::prelude::*;

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let Ok(t) = e.file_type() else { continue };
        if t.is_dir() {
            files(&e.path(), out);
        } else if t.is_file() {
            out.push(e.path());
        }
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(dir) = args.next() else {
        eprintln!("usage: compute-limit DIR [MAX_MIB]");
        std::process::exit(2);
    };
    let max = args.next().and_then(|m| m.parse::<u64>().ok()).unwrap_or(2048) << 20;
    let mut paths = Vec::new();
    files(Path::new(&dir), &mut paths);
    paths.sort();
    let mut data = Vec::new();
    let mut total = 0u64;
    for p in paths {
        if total >= max {
            break;
        }
        if let Ok(bytes) = std::fs::read(&p) {
            total += bytes.len() as u64;
            data.push(bytes);
        }
    }
    let chunker = Chunker::new(&Key32::from_bytes([7; 32]), ChunkerParams::default()).expect("default chunker");
    let id_key = [9u8; 32];
    let data_key = Key32::from_bytes([11; 32]);
    let start = Instant::now();
    // Chunk and hash every file (files in parallel), keep the first copy of each chunk (what
    // dedup leaves), then compress and seal the unique chunks (chunks in parallel, so one big
    // file does not leave a core idle).
    let cut: Vec<Vec<(blake3::Hash, usize, usize)>> = data
        .par_iter()
        .map(|file| {
            let mut at = 0;
            chunker
                .cut_all(file)
                .into_iter()
                .map(|len| {
                    let id = blake3::keyed_hash(&id_key, &file[at..at + len]);
                    at += len;
                    (id, at - len, len)
                })
                .collect()
        })
        .collect();
    let mut seen = std::collections::HashSet::new();
    let unique: Vec<&[u8]> = cut
        .iter()
        .enumerate()
        .flat_map(|(f, chunks)| chunks.iter().map(move |c| (f, c)))
        .filter(|(_, (id, _, _))| seen.insert(*id))
        .map(|(f, (_, off, len))| &data[f][*off..off + len])
        .collect();
    let sealed: u64 = unique
        .par_iter()
        .map(|chunk| {
            let id = blake3::keyed_hash(&id_key, chunk);
            // The pipeline's own path: compressed and padded into the buffer it is sealed in.
            let mut sealed = blob::encode_for_sealing(chunk, 3).expect("encode");
            seal_in_place(&data_key, 0, ObjectKind::DataBlob, id.as_bytes(), &mut sealed).expect("seal");
            sealed.len() as u64
        })
        .sum();
    let secs = start.elapsed().as_secs_f64();
    let mib = total as f64 / 1048576.0;
    println!(
        "files={} mib={mib:.1} sealed_mib={:.1} threads={} seconds={secs:.3} limit_mib_s={:.1}",
        data.len(),
        sealed as f64 / 1048576.0,
        rayon::current_num_threads(),
        mib / secs
    );
}
