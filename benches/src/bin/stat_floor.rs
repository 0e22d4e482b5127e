//! The stat floor of a tree: list every directory and lstat every entry, on THREADS threads,
//! and nothing else. An unchanged snapshot must do at least this much (one `lstat` per entry
//! decides whether a file changed), so with a cold page cache it is what the machine alone
//! costs for one; `benches/compare.sh --cold` reports it beside the unchanged snapshots.
//!
//! Usage: stat-floor DIR [THREADS] (default 8). Prints `entries=N seconds=S threads=T`.

use std::path::PathBuf;
use std::sync::{Condvar, Mutex};
use std::time::Instant;

/// Directories to list, and how many are being listed (the walk is over when both are none).
struct Work {
    dirs: Vec<PathBuf>,
    busy: usize,
}

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(root) = args.next() else {
        eprintln!("usage: stat-floor DIR [THREADS]");
        std::process::exit(2);
    };
    let threads: usize = args.next().and_then(|t| t.parse().ok()).unwrap_or(8).max(1);
    let work = Mutex::new(Work { dirs: vec![PathBuf::from(root)], busy: 0 });
    let changed = Condvar::new();
    let entries = Mutex::new(0u64);
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                let mut seen = 0u64;
                while let Some(dir) = next_dir(&work, &changed) {
                    let mut below = Vec::new();
                    for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                        let path = entry.path();
                        if let Ok(meta) = std::fs::symlink_metadata(&path) {
                            seen += 1;
                            if meta.is_dir() {
                                below.push(path);
                            }
                        }
                    }
                    let mut w = work.lock().unwrap_or_else(|e| e.into_inner());
                    w.dirs.extend(below);
                    w.busy -= 1;
                    changed.notify_all();
                }
                *entries.lock().unwrap_or_else(|e| e.into_inner()) += seen;
            });
        }
    });
    let seconds = started.elapsed().as_secs_f64();
    let entries = *entries.lock().unwrap_or_else(|e| e.into_inner());
    println!("entries={entries} seconds={seconds:.3} threads={threads}");
}

/// The next directory to list; `None` once none is left and none is being listed.
fn next_dir(work: &Mutex<Work>, changed: &Condvar) -> Option<PathBuf> {
    let mut w = work.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        if let Some(dir) = w.dirs.pop() {
            w.busy += 1;
            return Some(dir);
        }
        if w.busy == 0 {
            return None;
        }
        w = changed.wait(w).unwrap_or_else(|e| e.into_inner());
    }
}
