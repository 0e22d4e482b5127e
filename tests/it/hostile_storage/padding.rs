//! Sizes and pack headers (SPEC §4.1, §9, §10). Storage sees every object's size and the
//! ranges clients read: sealed blobs and packs are padded to size classes, so chunks of one
//! class, and packs of one class whatever their blob count, look alike. A pack header is
//! bound to its pack's blobs, so storage cannot move it onto others and have the index trust it.

use std::fs;
use std::path::Path;

use cairn_engine::crypto::SecretBytes;
use cairn_engine::format::BlobKind;
use cairn_engine::format::tree::NodeKind;
use cairn_engine::keys::OpenSecret;
use cairn_engine::repair::repair_index;
use cairn_engine::repo::pack_name;
use cairn_engine::storage::{PutMode, Storage};
use cairn_engine::{ChunkId, NoProgress, PackId, Repository};

use super::adversary::{Hiding, capture, replay};
use crate::support::*;

/// Backs up one directory holding a file of random (incompressible) bytes per entry of
/// `sizes` and returns the repository's data packs: each file's chunk with its sealed length,
/// and the size of the pack holding the chunks.
fn back_up(sizes: &[usize], seed: u64) -> (TestRepo, Vec<(ChunkId, u32, u32)>, u64) {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    fs::create_dir_all(&src).unwrap();
    for (i, n) in sizes.iter().enumerate() {
        fs::write(src.join(format!("f{i}")), random_bytes(*n, seed + i as u64)).unwrap();
    }
    let t = TestRepo::new();
    let repo = t.open();
    let out = snapshot(&repo, &[&src]);
    let mut chunks = Vec::new();
    let mut packs = Vec::new();
    for i in 0..sizes.len() {
        let chunk = only_chunk(&repo, out.snapshot.tree, &src.join(format!("f{i}")));
        let loc = repo.locate(&chunk).unwrap();
        chunks.push((chunk, loc.length, loc.raw_length));
        packs.push(loc.pack);
    }
    packs.dedup();
    assert_eq!(packs.len(), 1, "the files' chunks share one data pack");
    let size = t.storage.stat(&pack_name(&packs[0])).unwrap().unwrap();
    (t, chunks, size)
}

fn only_chunk(repo: &Repository, root: ChunkId, path: &Path) -> ChunkId {
    let cairn_engine::trees::Resolved::Node(_, node) =
        cairn_engine::trees::resolve(repo, root, path.as_os_str().as_encoded_bytes()).unwrap()
    else {
        panic!("{} not found", path.display())
    };
    let NodeKind::File { chunks, .. } = node.kind else { panic!("not a file") };
    assert_eq!(chunks.len(), 1, "a small file is one chunk");
    chunks[0]
}

/// Sizes of every pack in the repository, sorted.
fn pack_sizes(t: &TestRepo) -> Vec<u64> {
    let mut sizes: Vec<u64> =
        t.storage.list("data/").unwrap().iter().map(|n| t.storage.stat(n).unwrap().unwrap()).collect();
    sizes.sort();
    sizes
}

/// The storage knows that a file of 99,000 or 100,000 bytes was backed up, and looks for its
/// chunk by size: the sealed blobs (their ranged reads) and the packs holding them are the
/// same size in both repositories, so it cannot tell which.
#[test]
fn chunks_of_one_size_class_make_blobs_and_packs_of_one_size() {
    let (ta, a, pack_a) = back_up(&[99_000], 1);
    let (tb, b, pack_b) = back_up(&[100_000], 2);
    assert_eq!((a[0].2, b[0].2), (99_000, 100_000), "raw lengths differ");
    assert_eq!(a[0].1, b[0].1, "sealed blob lengths");
    assert_eq!(pack_a, pack_b, "data pack sizes");
    assert_eq!(pack_sizes(&ta), pack_sizes(&tb), "every pack");
}

/// A pack's size does not give its blob count: small packs all have the smallest pack size,
/// and larger ones the size class of their blobs, however many there are.
#[test]
fn a_packs_size_does_not_reveal_its_blob_count() {
    // Small: one blob of 1,000 bytes, two of 1,000 each.
    let (_, one, small_one) = back_up(&[1_000], 3);
    let (_, two, small_two) = back_up(&[1_000, 1_000], 4);
    assert_eq!((one.len(), two.len()), (1, 2));
    assert_eq!(small_one, small_two, "a pack of 1 blob and one of 2");
    // Larger: one blob of 40,000 bytes, or two of 20,400.
    let (_, _, large_one) = back_up(&[40_000], 5);
    let (_, _, large_two) = back_up(&[20_400, 20_400], 6);
    assert_eq!(large_one, large_two, "a pack of 1 blob and one of 2");
    assert!(large_one > small_one);
}

/// Storage takes the header (and whatever follows it) of a pack holding a small blob and
/// splices it onto another pack's blobs, stored under the spliced bytes' hash, then hides the
/// original: if `repair index` trusted the header, the index would send reads of the small
/// blob to bytes of the other. The header is bound to its own blobs, so the spliced pack is
/// reported and left out.
#[test]
fn a_pack_header_moved_onto_other_blobs_is_refused_by_repair_index() {
    let t = TestRepo::new();
    let storage = Hiding::new(t.storage.clone());
    let secret = OpenSecret::Password(SecretBytes::from(PASSWORD.to_string()));
    let repo = Repository::open(storage.clone(), &secret, t.cache()).unwrap();
    let write = |data: Vec<u8>| {
        let w = repo.blob_writer().unwrap();
        let id = w.add(BlobKind::Data, data).unwrap();
        w.finish().unwrap();
        id
    };
    let big = write(random_bytes(200_000, 7));
    let small = write(random_bytes(3_000, 8));
    let (lb, ls) = (repo.locate(&big).unwrap(), repo.locate(&small).unwrap());
    assert_ne!(lb.pack, ls.pack);
    let before = capture(storage.as_ref(), &["data/"]);
    let b = storage.get(&pack_name(&lb.pack)).unwrap();
    let a = storage.get(&pack_name(&ls.pack)).unwrap();
    // Each pack holds one blob from offset 0; its header follows it.
    let (b_area, a_area) = ((lb.offset + lb.length) as usize, (ls.offset + ls.length) as usize);
    let spliced = [&b[..b_area], &a[a_area..]].concat();
    let name = pack_name(&PackId::of(&spliced));
    storage.put(&name, &spliced, PutMode::CreateNew).unwrap();
    storage.hide(&pack_name(&ls.pack));

    let out = repair_index(&repo, &NoProgress).unwrap();
    assert!(out.unreadable.iter().any(|(n, _)| *n == name), "the spliced pack is reported: {out:?}");
    assert_eq!(out.packs, 1, "only the intact pack is indexed: {out:?}");
    assert!(repo.locate(&small).is_err(), "the moved header's blob is not in the index");
    assert_eq!(repo.locate(&big).unwrap().pack, lb.pack);
    assert_eq!(repo.read_blob(&big).unwrap(), random_bytes(200_000, 7));

    // Once storage serves the packs as they were (the original shown, the spliced pack gone),
    // a repair indexes the blob where it really is.
    storage.reveal_all();
    replay(storage.as_ref(), &["data/"], &before);
    let out = repair_index(&repo, &NoProgress).unwrap();
    assert!(out.unreadable.is_empty() && out.packs == 2, "{out:?}");
    assert_eq!(repo.locate(&small).unwrap().pack, ls.pack);
    assert_eq!(repo.read_blob(&small).unwrap(), random_bytes(3_000, 8));
}
