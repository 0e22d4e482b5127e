//! Acceptance 3: nothing readable in the repository, and keyed chunking differs per repository.

use std::collections::HashSet;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use cairn_engine::chunker::ChunkerParams;
use cairn_engine::format::tree::NodeKind;

use crate::support::*;

const WINDOW: usize = 32;
const BASE: u64 = 0x100_0000_01b3;

/// Polynomial fingerprints of every 32-byte window of `data`.
fn windows(data: &[u8], mut f: impl FnMut(u64, usize)) {
    if data.len() < WINDOW {
        return;
    }
    let top = BASE.wrapping_pow(WINDOW as u32 - 1);
    let mut h = 0u64;
    for &b in &data[..WINDOW] {
        h = h.wrapping_mul(BASE).wrapping_add(u64::from(b) + 1);
    }
    f(h, 0);
    for i in WINDOW..data.len() {
        h = h.wrapping_sub((u64::from(data[i - WINDOW]) + 1).wrapping_mul(top));
        h = h.wrapping_mul(BASE).wrapping_add(u64::from(data[i]) + 1);
        f(h, i + 1 - WINDOW);
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn no_name_target_or_32_byte_content_run_appears_in_the_repository() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    copy_real_files(Path::new("/usr/include/linux"), &src.join("linux"), 400);
    fs::write(src.join("needle-file-name-visible-if-leaked.txt"), text_bytes(300_000, 9)).unwrap();
    fs::write(src.join("random"), random_bytes(3 << 20, 10)).unwrap();
    fs::write(src.join("small"), b"a small file of exactly forty-two bytes!!\n").unwrap();
    std::os::unix::fs::symlink("symlink-target-that-must-not-leak", src.join("link")).unwrap();

    let t = TestRepo::new();
    let repo = t.open();
    snapshot(&repo, &[&src]);
    drop(repo);

    // Every 32-byte window of every source file.
    let mut source = HashSet::new();
    let mut names: Vec<Vec<u8>> = vec![b"symlink-target-that-must-not-leak".to_vec()];
    for f in walk_files(&src) {
        windows(&fs::read(&f).unwrap(), |h, _| {
            source.insert(h);
        });
        let name = f.file_name().unwrap().as_bytes().to_vec();
        if name.len() >= 8 {
            names.push(name);
        }
    }
    assert!(source.len() > 1_000_000);
    let objects = walk_files(&t.repo_path());
    assert!(objects.len() >= 5);
    for obj in objects {
        let bytes = fs::read(&obj).unwrap();
        windows(&bytes, |h, at| {
            assert!(!source.contains(&h), "{} holds a 32-byte run of source content at offset {at}", obj.display());
        });
        for n in &names {
            assert!(!contains(&bytes, n), "{} contains the name {:?}", obj.display(), String::from_utf8_lossy(n));
        }
    }
}

#[test]
fn two_repositories_cut_the_same_file_at_different_boundaries() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("f"), random_bytes(4 << 20, 77)).unwrap();
    let params = ChunkerParams { min_size: 16 * 1024, avg_size: 64 * 1024, max_size: 256 * 1024 };
    let lengths = |t: &TestRepo| -> Vec<u32> {
        let repo = t.open();
        let out = snapshot(&repo, &[&src]);
        let path = format!("{}/f", src.display());
        let cairn_engine::trees::Resolved::Node(_, node) =
            cairn_engine::trees::resolve(&repo, out.snapshot.tree, path.as_bytes()).unwrap()
        else {
            panic!("file not found")
        };
        let NodeKind::File { chunks, .. } = node.kind else { panic!("not a file") };
        chunks.iter().map(|id| repo.locate(id).unwrap().raw_length).collect()
    };
    let a = lengths(&TestRepo::with_chunker(params));
    let b = lengths(&TestRepo::with_chunker(params));
    assert!(a.len() > 20 && b.len() > 20);
    assert_eq!(a.iter().map(|&l| u64::from(l)).sum::<u64>(), 4 << 20);
    assert_ne!(a, b, "chunk boundaries must depend on the repository key");
}
