//! Objects planted by an identity that may only add them (an append-only `cairn serve` host,
//! SPEC §15.4). Such a host holds the repository key, so what it stores is validly sealed: packs
//! whose blobs carry the ids of used blobs but other content, or exact copies of used blobs that
//! their own headers do not list, and index segments that list them first, list a real pack
//! short, or supersede the real segments. None of it may make an admin's prune delete data
//! snapshots use. Each attack is planted, then prune runs twice with no grace period (a pack the
//! first one marks, the second deletes): it refuses, naming what to run, or keeps the real pack;
//! either way the snapshot restores byte for byte afterwards. And what prune must still clean,
//! it cleans: a crashed backup's packs, readable or cut short.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use cairn_engine::backup::{BackupOptions, BackupOutcome, ParentChoice, backup};
use cairn_engine::check::{CheckOptions, Subset, check};
use cairn_engine::crypto::SecretBytes;
use cairn_engine::format::BlobKind;
use cairn_engine::format::envelope::ObjectKind;
use cairn_engine::format::index::{IndexSegment, IndexedPack};
use cairn_engine::keys::OpenSecret;
use cairn_engine::prune::{PruneOptions, PruneOutcome, prune};
use cairn_engine::repair::repair_index;
use cairn_engine::repo::pack_name;
use cairn_engine::storage::{PutMode, Storage};
use cairn_engine::{ChunkId, Error, NoProgress, ObjectId, PackId, Repository};

use crate::support::*;

/// The storage as a host's own client sees it while it plants: no index listed (so it
/// deduplicates against nothing and stores every blob it is given), and, unless `store_index`,
/// no index segment stored (the attacker writes its own; a crashed backup never got to it).
#[derive(Debug)]
struct HostView {
    inner: Arc<dyn Storage>,
    store_index: bool,
}

impl HostView {
    fn open(t: &TestRepo, cache: &Path, store_index: bool) -> Repository {
        let view: Arc<dyn Storage> = Arc::new(HostView { inner: t.storage.clone(), store_index });
        Repository::open(view, &OpenSecret::Password(SecretBytes::from(PASSWORD.to_string())), cache.to_path_buf())
            .unwrap()
    }
}

impl Storage for HostView {
    fn location(&self) -> String {
        self.inner.location()
    }
    fn put(&self, name: &str, data: &[u8], mode: PutMode) -> cairn_engine::Result<()> {
        if name.starts_with("index/") && !self.store_index {
            return Err(Error::storage("write", name, std::io::Error::other("the host stops before its index")));
        }
        self.inner.put(name, data, mode)
    }
    fn get(&self, name: &str) -> cairn_engine::Result<Vec<u8>> {
        self.inner.get(name)
    }
    fn get_range(&self, name: &str, offset: u64, len: u64) -> cairn_engine::Result<Vec<u8>> {
        self.inner.get_range(name, offset, len)
    }
    fn list(&self, prefix: &str) -> cairn_engine::Result<Vec<String>> {
        if prefix.starts_with("index") {
            return Ok(Vec::new());
        }
        self.inner.list(prefix)
    }
    fn delete(&self, name: &str) -> cairn_engine::Result<()> {
        self.inner.delete(name)
    }
    fn stat(&self, name: &str) -> cairn_engine::Result<Option<u64>> {
        self.inner.stat(name)
    }
}

/// How the host lays out a pack holding an exact copy of each sealed blob of a real pack, a
/// copy its own header does not list where the planted segment places it.
#[derive(Debug, Clone, Copy)]
enum Copies {
    /// The real pack's blob area, then bytes that are no header: `repair index` leaves it out.
    GarbageHeader,
    /// A valid pack whose header lists other ids at the copies, and the blobs' ids at garbage
    /// of the same lengths: `repair index` points the blobs at the garbage.
    ListedElsewhere,
}

/// A repository with one snapshot of a small tree (small chunks: a pack of many data blobs).
struct Fixture {
    work: tempfile::TempDir,
    t: TestRepo,
    src: PathBuf,
    out: BackupOutcome,
}

fn fixture() -> Fixture {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    fs::create_dir_all(src.join("d")).unwrap();
    fs::write(src.join("d/data"), random_bytes(400_000, 41)).unwrap();
    fs::write(src.join("note"), text_bytes(20_000, 42)).unwrap();
    let chunker = cairn_engine::chunker::ChunkerParams { min_size: 4096, avg_size: 16384, max_size: 65536 };
    let t = TestRepo::with_chunker(chunker);
    let out = snapshot(&t.open(), &[&src]);
    Fixture { work, t, src, out }
}

impl Fixture {
    /// The index as the backup wrote it: each segment with its id.
    fn segments(&self) -> Vec<(ObjectId, IndexSegment)> {
        let repo = self.t.open();
        repo.segment_ids().unwrap().into_iter().map(|id| (id, repo.load_segment(&id).unwrap())).collect()
    }

    /// The real packs holding data blobs, and those holding trees.
    fn real_packs(&self) -> (Vec<IndexedPack>, Vec<IndexedPack>) {
        let packs = self.segments().into_iter().flat_map(|(_, s)| s.packs);
        packs.partition(|p| p.blobs.iter().all(|b| b.kind == BlobKind::Data))
    }

    fn stored_packs(&self) -> BTreeSet<PackId> {
        self.t.open().list_packs().unwrap().into_iter().map(|(id, _)| id).collect()
    }

    /// The host stores, under the id of every data blob of `packs`, random bytes of the same
    /// length (validly sealed with the key: they open, but do not hash to the id). Returns the
    /// new packs as their own headers list them.
    fn plant_garbage(&self, packs: &[IndexedPack]) -> Vec<IndexedPack> {
        let before = self.stored_packs();
        let host = HostView::open(&self.t, &self.work.path().join("host-cache"), false);
        let w = host.blob_writer().unwrap();
        for (n, b) in packs.iter().flat_map(|p| &p.blobs).enumerate() {
            w.add_with_id(BlobKind::Data, b.id, random_bytes(b.raw_length as usize, 1000 + n as u64)).unwrap();
        }
        assert!(w.finish().is_err(), "the host writes its own index segment");
        let repo = self.t.open();
        let planted: Vec<IndexedPack> = self
            .stored_packs()
            .difference(&before)
            .map(|id| {
                let (bytes, opened) = repo.read_verified_pack(id).unwrap();
                IndexedPack { pack: *id, size: bytes.len() as u64, blobs: opened.header.blobs }
            })
            .collect();
        assert!(!planted.is_empty());
        planted
    }

    /// The host stores, for `packs`, packs holding exact copies of their sealed blobs laid out
    /// as `how` says. Returns listings that place each blob on its copy (what a planted segment
    /// says, not what the packs' headers say).
    fn plant_copies(&self, packs: &[IndexedPack], how: Copies) -> Vec<IndexedPack> {
        let real = |p: &IndexedPack| self.t.storage.get(&pack_name(&p.pack)).unwrap();
        match how {
            Copies::GarbageHeader => packs
                .iter()
                .enumerate()
                .map(|(n, p)| {
                    let area: u32 = p.blobs.iter().map(|b| b.length).sum();
                    let copy = [&real(p)[..area as usize], &random_bytes(20_000, 2000 + n as u64)[..]].concat();
                    let id = PackId(*blake3::hash(&copy).as_bytes());
                    self.t.storage.put(&pack_name(&id), &copy, PutMode::CreateNew).unwrap();
                    IndexedPack { pack: id, size: copy.len() as u64, blobs: p.blobs.clone() }
                })
                .collect(),
            Copies::ListedElsewhere => {
                let host = HostView::open(&self.t, &self.work.path().join("host-cache"), false);
                let w = host.repack_writer().unwrap();
                let mut decoys = HashMap::new();
                for p in packs {
                    let bytes = real(p);
                    for b in &p.blobs {
                        let sealed = bytes[b.offset as usize..(b.offset + b.length) as usize].to_vec();
                        let decoy = ChunkId(*blake3::hash(b.id.as_bytes()).as_bytes());
                        decoys.insert(decoy, b.id);
                        w.add(b.kind, decoy, b.raw_length, sealed).unwrap();
                        let garbage = random_bytes(b.length as usize, 3000 + u64::from(b.offset));
                        w.add(b.kind, b.id, b.raw_length, garbage).unwrap();
                    }
                }
                let written = w.finish().unwrap();
                written
                    .into_iter()
                    .map(|mut p| {
                        p.blobs.retain(|b| decoys.contains_key(&b.id));
                        p.blobs.iter_mut().for_each(|b| b.id = decoys[&b.id]);
                        p
                    })
                    .collect()
            }
        }
    }

    /// Stores `segment` as the host would, under `index/00…00`: the name every listing sorts
    /// first.
    fn plant_segment(&self, segment: IndexSegment) {
        let name = format!("index/{}", "00".repeat(32));
        self.t.open().save_object(ObjectKind::IndexSegment, &name, &segment.encode()).unwrap();
    }

    /// Plants a segment listing `packs`, and with `supersede` also `trees` and a claim to
    /// replace every segment stored: the index then holds only what the host wrote.
    fn plant_listing(&self, mut packs: Vec<IndexedPack>, trees: &[IndexedPack], supersede: bool) {
        let supersedes = if supersede {
            packs.extend(trees.iter().cloned());
            self.segments().into_iter().map(|(id, _)| id).collect()
        } else {
            Vec::new()
        };
        self.plant_segment(IndexSegment { packs, supersedes, unverified: Vec::new() });
    }

    /// Two prunes, no grace period: what the first marks, the second deletes.
    fn prune_twice(&self) -> cairn_engine::Result<[PruneOutcome; 2]> {
        let opts = PruneOptions { grace_period: Duration::ZERO, ..PruneOptions::default() };
        let repo = self.t.open();
        Ok([prune(&repo, opts, false, &NoProgress)?, prune(&repo, opts, false, &NoProgress)?])
    }

    /// The snapshot restores byte for byte for a client with no cache, and `check --read-data`
    /// finds nothing wrong.
    fn assert_whole(&self, label: &str) {
        let _ = fs::remove_dir_all(self.t.cache());
        let repo = self.t.open();
        let target = self.work.path().join(format!("restore-{label}"));
        let r = restore_all(&repo, &self.out, &target).unwrap();
        assert!(r.damaged.is_empty(), "{label}: {r:?}");
        assert_same_tree(&self.src, &restored_path(&target, &self.src));
        let report = check(&repo, &CheckOptions { read_data: Some(Subset::All) }, &NoProgress).unwrap();
        assert!(!report.has_errors(), "{label}: {:?}", report.findings);
    }

    /// What an admin does on prune's refusal: `repair index` (the index from every pack's own
    /// header), then prune; the planted packs go, the real ones stay.
    fn repair_and_prune(&self, real: &[IndexedPack], planted: &[IndexedPack]) {
        repair_index(&self.t.open(), &NoProgress).unwrap();
        self.prune_twice().unwrap();
        let stored = self.stored_packs();
        assert!(real.iter().all(|p| stored.contains(&p.pack)), "a real pack was deleted");
        assert!(planted.iter().all(|p| !stored.contains(&p.pack)), "the planted packs hold nothing snapshots use");
    }
}

/// A backup of `paths` that reads every file (no parent: the host sees no index to read one by).
fn unaware_backup(repo: &Repository, paths: &[&Path]) -> cairn_engine::Result<BackupOutcome> {
    let paths = paths.iter().map(|p| p.to_path_buf()).collect();
    let opts = BackupOptions { paths, parent: ParentChoice::None, ..Default::default() };
    backup(repo, &opts, &NoProgress)
}

fn assert_refused(result: cairn_engine::Result<[PruneOutcome; 2]>, names: &[&str], run: &str) {
    let err = result.expect_err("prune refuses");
    let msg = err.to_string();
    assert!(names.iter().all(|n| msg.contains(n)) && msg.contains(run), "{msg}");
}

#[test]
fn a_planted_copy_listed_first_does_not_make_the_real_pack_unused() {
    let f = fixture();
    let (data, _) = f.real_packs();
    let planted = f.plant_garbage(&data);
    // Listed by a segment every listing shows first: without verification, its copies would
    // be the ones kept, and the real pack would look unused.
    f.plant_segment(IndexSegment { packs: planted.clone(), supersedes: Vec::new(), unverified: Vec::new() });
    let [first, second] = f.prune_twice().unwrap();
    for p in &data {
        assert!(!first.plan.delete.contains(&p.pack) && !second.plan.delete.contains(&p.pack), "real pack discarded");
    }
    assert!(planted.iter().all(|p| first.plan.delete.contains(&p.pack)), "{:?}", first.plan);
    let stored = f.stored_packs();
    assert!(data.iter().all(|p| stored.contains(&p.pack)), "the real pack is kept");
    assert!(planted.iter().all(|p| !stored.contains(&p.pack)), "the planted pack is deleted");
    f.assert_whole("after");
}

#[test]
fn copies_that_all_fail_stop_prune_naming_the_blob() {
    let f = fixture();
    let (data, _) = f.real_packs();
    let planted = f.plant_garbage(&data);
    f.plant_segment(IndexSegment { packs: planted.clone(), supersedes: Vec::new(), unverified: Vec::new() });
    // The real pack is damaged too: no copy of its blobs verifies.
    // (Damaged on the disk: a server in front refuses a pack that does not hash to its name.)
    let real = f.t.repo_path().join(pack_name(&data[0].pack));
    let mut bytes = fs::read(&real).unwrap();
    for b in &data[0].blobs {
        bytes[b.offset as usize + 40] ^= 1;
    }
    fs::write(&real, &bytes).unwrap();
    let before = f.stored_packs();
    let msg = f.prune_twice().expect_err("prune refuses").to_string();
    let named = data[0].blobs.iter().any(|b| msg.contains(&format!("blob {}", hex::encode(b.id.as_bytes()))));
    assert!(named && msg.contains("no copy of it the index lists") && msg.contains("cairn check --read-data"), "{msg}");
    assert_eq!(f.stored_packs(), before, "nothing deleted");
}

#[test]
fn a_planted_segment_superseding_the_index_does_not_orphan_the_real_packs() {
    let f = fixture();
    let (data, trees) = f.real_packs();
    let planted = f.plant_garbage(&data);
    // The planted segment replaces the whole index: the tree packs as they are, the planted
    // pack for every data blob. The real data pack is then in no live segment.
    let all: Vec<ObjectId> = f.segments().into_iter().map(|(id, _)| id).collect();
    let mut packs = trees.clone();
    packs.extend(planted.iter().cloned());
    f.plant_segment(IndexSegment { packs, supersedes: all, unverified: Vec::new() });
    let before = f.stored_packs();
    let real = pack_name(&data[0].pack);
    assert_refused(f.prune_twice(), &[&real, "snapshots use that the index does not list"], "cairn repair index");
    assert_eq!(f.stored_packs(), before, "nothing deleted");
    f.repair_and_prune(&data, &planted);
    f.assert_whole("after repair");
}

#[test]
fn a_planted_segment_listing_a_real_pack_short_is_refused() {
    // Both ways: beside the real segments, and replacing them.
    for supersede in [false, true] {
        let f = fixture();
        let (data, trees) = f.real_packs();
        let planted = f.plant_garbage(&data);
        let short: Vec<IndexedPack> = data.iter().map(|p| IndexedPack { blobs: Vec::new(), ..p.clone() }).collect();
        let mut packs = short;
        packs.extend(planted.iter().cloned());
        f.plant_listing(packs, &trees, supersede);
        let before = f.stored_packs();
        let real = pack_name(&data[0].pack);
        assert_refused(f.prune_twice(), &[&real, "listed differently"], "cairn repair index");
        assert_eq!(f.stored_packs(), before, "nothing deleted (superseding: {supersede})");
        f.repair_and_prune(&data, &planted);
        f.assert_whole(&format!("after repair, superseding: {supersede}"));
    }
}

#[test]
fn a_crashed_backups_packs_are_still_deleted() {
    let f = fixture();
    let before = f.stored_packs();
    // A backup that died before its index: it stored the snapshot's data again (its cache was
    // gone) and data no snapshot uses. Its packs are in no index.
    let new = f.work.path().join("new");
    fs::create_dir_all(&new).unwrap();
    fs::write(new.join("file"), random_bytes(200_000, 43)).unwrap();
    let crashed = HostView::open(&f.t, &f.work.path().join("crashed-cache"), false);
    assert!(unaware_backup(&crashed, &[&f.src, &new]).is_err());
    // And one that died while storing a pack: the bytes cut short under the pack's name.
    let whole = f.stored_packs().difference(&before).next().copied().unwrap();
    let cut = PackId(*blake3::hash(b"a pack cut short").as_bytes());
    let bytes = f.t.storage.get(&pack_name(&whole)).unwrap();
    let path = f.t.repo_path().join(pack_name(&cut));
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let left: BTreeSet<PackId> = f.stored_packs().difference(&before).copied().collect();
    assert!(left.len() >= 2, "{left:?}");

    let [first, second] = f.prune_twice().unwrap();
    assert_eq!(first.plan.orphans.iter().copied().collect::<BTreeSet<_>>(), left);
    assert_eq!(second.sweep.delete_now.iter().copied().collect::<BTreeSet<_>>(), left);
    assert_eq!(f.stored_packs(), before, "every leftover is gone, nothing else");
    f.assert_whole("after");
}

#[test]
fn duplicates_of_backups_that_ran_at_once_are_still_pruned() {
    let f = fixture();
    let before = f.stored_packs();
    // A second backup of the same data that did not see the first one's index (they ran at
    // once): every blob is stored and indexed twice, both copies good.
    let other = HostView::open(&f.t, &f.work.path().join("other-cache"), true);
    let again = unaware_backup(&other, &[&f.src]).unwrap();
    drop(other);
    let added: BTreeSet<PackId> = f.stored_packs().difference(&before).copied().collect();
    assert!(!added.is_empty());
    let [first, second] = f.prune_twice().unwrap();
    let deleted: BTreeSet<PackId> = second.sweep.delete_now.iter().copied().collect();
    assert!(!first.plan.delete.is_empty() && !deleted.is_empty(), "{:?}", first.plan);
    assert!(deleted.iter().all(|p| before.contains(p) || added.contains(p)));
    f.assert_whole("after");
    let target = f.work.path().join("restore-again");
    let r = restore_all(&f.t.open(), &again, &target).unwrap();
    assert!(r.damaged.is_empty(), "{r:?}");
    assert_same_tree(&f.src, &restored_path(&target, &f.src));
}

#[test]
fn a_copy_its_own_pack_header_does_not_list_does_not_make_the_real_pack_unused() {
    for how in [Copies::GarbageHeader, Copies::ListedElsewhere] {
        // Beside the real segments (listed first), and replacing them (the real pack orphaned).
        for supersede in [false, true] {
            let label = format!("{how:?}, superseding: {supersede}");
            let f = fixture();
            let (data, trees) = f.real_packs();
            let planted = f.plant_copies(&data, how);
            // Every copy opens and holds its blob where the planted segment says; only the
            // packs' own headers tell that `repair index` would not find it there.
            let repo = f.t.open();
            for p in &planted {
                for b in &p.blobs {
                    let loc = cairn_engine::index::BlobLocation::of(p.pack, b);
                    let sealed = repo.sealed_blob_reader().read(&loc).unwrap();
                    repo.open_blob(&b.id, &loc, &pack_name(&p.pack), &sealed).unwrap();
                }
            }
            drop(repo);
            f.plant_listing(planted.clone(), &trees, supersede);
            if supersede {
                let before = f.stored_packs();
                let msg = f.prune_twice().expect_err("prune refuses").to_string();
                let named = data.iter().any(|p| msg.contains(&pack_name(&p.pack)));
                let why = msg.contains("snapshots use that the index does not list");
                assert!(named && why && msg.contains("cairn repair index"), "{label}: {msg}");
                assert_eq!(f.stored_packs(), before, "{label}: nothing deleted");
            } else {
                let [first, second] = f.prune_twice().unwrap();
                for p in &data {
                    let discarded = first.plan.delete.contains(&p.pack) || second.plan.delete.contains(&p.pack);
                    assert!(!discarded, "{label}: real pack discarded");
                }
                let stored = f.stored_packs();
                assert!(data.iter().all(|p| stored.contains(&p.pack)), "{label}: the real pack is kept");
                assert!(planted.iter().all(|p| !stored.contains(&p.pack)), "{label}: the planted pack is deleted");
                f.assert_whole(&label);
            }
            f.repair_and_prune(&data, &planted);
            f.assert_whole(&format!("{label}, after repair"));
        }
    }
}
