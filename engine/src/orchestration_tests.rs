//! The operations on an in-memory repository, without the CLI: check passes a whole repository
//! and attributes a damaged pack to its snapshot and paths (the same whether its working sets
//! fit in memory or spill to disk), and prune after forget deletes only what no snapshot uses
//! and keeps a full key's copy of what a write-only slot stored too.

use cairn_repository::repo::testing::TestRepository;

use cairn_format::test_util::pseudo_random as noise;

use crate::repo::pack_name;
use crate::storage::{PutMode, Storage};

/// A source tree of `files` incompressible files of `size` bytes, backed up; its snapshot id.
fn back_up(t: &TestRepository, dir: &std::path::Path, files: u64, size: usize, seed: u64) -> crate::id::ObjectId {
    std::fs::create_dir_all(dir).unwrap();
    for i in 0..files {
        std::fs::write(dir.join(format!("f{i}")), noise(size, seed + i)).unwrap();
    }
    back_up_again(&t.repo, dir)
}

/// Backs `dir` up (again) through `repo`; the snapshot's id.
fn back_up_again(repo: &crate::Repository, dir: &std::path::Path) -> crate::id::ObjectId {
    let opts = crate::backup::BackupOptions {
        paths: vec![dir.to_path_buf()],
        hostname: "host".into(),
        username: "user".into(),
        program: "unit tests".into(),
        ..crate::backup::BackupOptions::default()
    };
    crate::backup::backup(repo, &opts, &crate::NoProgress).unwrap().snapshot_id
}

fn check_all(t: &TestRepository) -> crate::check::CheckReport {
    let opts = crate::check::CheckOptions { read_data: Some(crate::check::Subset::All) };
    crate::check::check(&t.repo, &opts, &crate::NoProgress).unwrap()
}

#[test]
fn check_passes_a_whole_repository_and_attributes_a_damaged_pack_to_its_snapshot() {
    let t = TestRepository::new(64 << 10);
    let src = tempfile::tempdir().unwrap();
    let snap = back_up(&t, &src.path().join("src"), 4, 100_000, 1);
    let clean = check_all(&t);
    assert!(!clean.has_errors(), "{:?}", clean.findings);
    assert!(clean.packs >= 4 && clean.packs_read == clean.packs, "{} packs, {} read", clean.packs, clean.packs_read);

    // The largest pack holds file data: damage its middle.
    let (_, name) =
        t.repo.list_packs().unwrap().into_iter().max_by_key(|(_, n)| t.storage.stat(n).unwrap().unwrap_or(0)).unwrap();
    let mut bytes = t.storage.get(&name).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x10;
    t.storage.put(&name, &bytes, PutMode::Overwrite).unwrap();
    let damaged = check_all(&t);
    assert!(damaged.has_errors(), "a damaged pack must be an error");
    assert!(
        damaged.findings.iter().any(|f| f.snapshots.contains(&snap) && !f.paths.is_empty()),
        "the damage is attributed to the snapshot and its paths: {:?}",
        damaged.findings
    );

    // Gone altogether: the structural check (no data read) reports it.
    t.storage.delete(&name).unwrap();
    let structural = crate::check::check(&t.repo, &Default::default(), &crate::NoProgress).unwrap();
    assert_eq!(structural.packs_read, 0);
    assert!(
        structural.findings.iter().any(|f| f.object == name && f.problem.contains("missing")),
        "{:?}",
        structural.findings
    );
}

#[test]
fn check_finds_the_same_whether_the_index_fits_in_memory_or_spills_to_disk() {
    let t = TestRepository::new(64 << 10);
    let src = tempfile::tempdir().unwrap();
    back_up(&t, &src.path().join("a"), 6, 50_000, 10);
    back_up(&t, &src.path().join("b"), 3, 80_000, 20);
    // Clients whose caches hold the whole index (the damaged segment too), and one with none:
    // holding the index in memory or spilling it, all find the same.
    let cache = tempfile::tempdir().unwrap();
    let mut clients = Vec::new();
    for (n, sort_memory) in [cairn_repository::repo::DEFAULT_SORT_MEMORY, 1].into_iter().enumerate() {
        let mut repo = TestRepository::open_at(&t.storage, &cache.path().join(n.to_string()));
        repo.set_sort_memory(sort_memory);
        repo.sync_index().unwrap();
        clients.push(repo);
    }
    // Damage: one segment unreadable, and of the packs another segment lists, one pack's
    // bytes changed and another pack gone.
    let segments = t.repo.segment_ids().unwrap();
    assert!(segments.len() >= 2, "a segment per backup at least");
    let packs: Vec<String> =
        t.repo.load_segment(&segments[1]).unwrap().packs.iter().map(|p| pack_name(&p.pack)).collect();
    assert!(packs.len() >= 2, "{packs:?}");
    let (damaged, gone) = (&packs[0], &packs[packs.len() - 1]);
    let mut bytes = t.storage.get(damaged).unwrap();
    let at = bytes.len() / 3;
    bytes[at] ^= 1;
    t.storage.put(damaged, &bytes, PutMode::Overwrite).unwrap();
    t.storage.delete(gone).unwrap();
    let segment = crate::format::names::Dir::Index.object(&segments[0]);
    t.storage.put(&segment, b"not a segment", PutMode::Overwrite).unwrap();

    clients.push(TestRepository::open_at(&t.storage, &cache.path().join("fresh")));
    let opts = crate::check::CheckOptions { read_data: Some(crate::check::Subset::All) };
    let reports: Vec<_> =
        clients.iter().map(|repo| crate::check::check(repo, &opts, &crate::NoProgress).unwrap()).collect();
    let (fits, spills, fresh) = (&reports[0], &reports[1], &reports[2]);
    assert!(fits.has_errors());
    for object in [damaged, gone, &segment] {
        assert!(fits.findings.iter().any(|f| f.object == *object), "{object} is reported: {:#?}", fits.findings);
    }
    assert!(fits.findings.iter().any(|f| !f.snapshots.is_empty()), "{:#?}", fits.findings);
    let counts = |r: &crate::check::CheckReport| (r.packs, r.packs_read, r.blobs_read, r.bytes_read, r.trees);
    for other in [spills, fresh] {
        assert_eq!(fits.findings, other.findings);
        assert_eq!(counts(fits), counts(other));
    }
}

#[test]
fn prune_after_forget_deletes_what_no_snapshot_uses_and_leaves_the_rest_whole() {
    let t = TestRepository::new(64 << 10);
    let src = tempfile::tempdir().unwrap();
    let old = back_up(&t, &src.path().join("old"), 4, 100_000, 10);
    back_up(&t, &src.path().join("new"), 4, 100_000, 20);
    let packs_before = t.repo.list_packs().unwrap().len();
    let actor = crate::audit::Actor { host: "host".into(), user: "user".into() };
    crate::forget::remove(&t.repo, &[old], &actor).unwrap();
    let opts = crate::prune::PruneOptions { instant_delete: true, ..Default::default() };
    let dry = crate::prune::prune(&t.repo, opts, true, &crate::NoProgress).unwrap();
    assert!(!dry.plan.delete.is_empty(), "the old snapshot's packs are planned for deletion");
    assert_eq!(t.repo.list_packs().unwrap().len(), packs_before, "a dry run deletes nothing");
    // A client whose working sets spill to disk from the first blob plans the same.
    let cache = tempfile::tempdir().unwrap();
    let mut spilling = TestRepository::open_at(&t.storage, cache.path());
    spilling.set_sort_memory(1);
    let spilled = crate::prune::prune(&spilling, opts, true, &crate::NoProgress).unwrap();
    assert_eq!(spilled.plan.delete, dry.plan.delete);
    assert_eq!(spilled.plan.repack, dry.plan.repack);
    assert_eq!(spilled.used_blobs, dry.used_blobs);
    assert!(dry.used_blobs > 0);
    // The spilling client runs it: its used-blob and kept-copy tables are on disk.
    let done = crate::prune::prune(&spilling, opts, false, &crate::NoProgress).unwrap();
    assert_eq!(done.plan.delete, dry.plan.delete, "the run does what the dry run planned");
    t.repo.sync_index().unwrap();
    let packs_after = t.repo.list_packs().unwrap().len();
    assert!(packs_after < packs_before, "{packs_before} packs before, {packs_after} after");
    let report = check_all(&t);
    assert!(!report.has_errors(), "what remains is whole: {:?}", report.findings);
    assert_eq!(t.repo.snapshot_ids().unwrap().len(), 1);
}

#[test]
fn a_prune_whose_tables_spill_repacks_and_keeps_every_used_blob() {
    let t = TestRepository::new(64 << 10);
    let src = tempfile::tempdir().unwrap();
    let dir = src.path().join("data");
    // Files of about a third of a pack, written together: the ones removed later share packs
    // with the ones kept, so those packs are repacked.
    let old = back_up(&t, &dir, 24, 20_000, 1_001);
    for i in (0..24).step_by(2) {
        std::fs::remove_file(dir.join(format!("f{i}"))).unwrap();
    }
    back_up_again(&t.repo, &dir);
    let actor = crate::audit::Actor { host: "host".into(), user: "user".into() };
    crate::forget::remove(&t.repo, &[old], &actor).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let mut spilling = TestRepository::open_at(&t.storage, cache.path());
    spilling.set_sort_memory(1);
    let opts = crate::prune::PruneOptions { instant_delete: true, ..Default::default() };
    let done = crate::prune::prune(&spilling, opts, false, &crate::NoProgress).unwrap();
    assert!(!done.plan.repack.is_empty() && done.packs_written > 0, "{:?}", done.plan);
    t.repo.sync_index().unwrap();
    let report = check_all(&t);
    assert!(!report.has_errors(), "what remains is whole: {:?}", report.findings);
    // Byte for byte, the kept files come back from the new packs.
    let snapshot = t.repo.load_snapshot(&t.repo.snapshot_ids().unwrap()[0]).unwrap();
    let target = tempfile::tempdir().unwrap();
    let opts =
        crate::restore::RestoreOptions { target: target.path().to_path_buf(), verify: true, ..Default::default() };
    let outcome = crate::restore::restore(&t.repo, snapshot.tree, &opts, &crate::NoProgress).unwrap();
    assert!(outcome.damaged.is_empty(), "{:?}", outcome.damaged);
    assert_eq!(outcome.files, 12);
    let restored = target.path().join(dir.strip_prefix("/").unwrap());
    for i in (1..24).step_by(2) {
        let rel = format!("f{i}");
        assert!(std::fs::read(dir.join(&rel)).unwrap() == std::fs::read(restored.join(&rel)).unwrap(), "{rel}");
    }
}

#[test]
fn prune_keeps_a_full_keys_copy_of_what_a_write_only_slot_stored_too_whichever_it_meets_first() {
    use crate::crypto::{Argon2Params, SecretBytes};
    use crate::format::envelope::ObjectKind;
    use crate::format::names::Dir;
    use crate::format::slot::SlotDoc;
    use crate::keys::OpenSecret;
    let t = TestRepository::new(64 << 10);
    let pw = SecretBytes::from("web1's password".to_string());
    let write_only = crate::repo::WriteOnlySecret::Password(&pw, Argon2Params::MIN);
    let slot = t.repo.add_write_only_slot(write_only, "web1").unwrap().0;
    let src = tempfile::tempdir().unwrap();
    let dir = src.path().join("data");
    back_up(&t, &dir, 4, 100_000, 30);
    let full_packs: Vec<crate::PackId> = t.repo.list_packs().unwrap().into_iter().map(|(p, _)| p).collect();
    let full_segments = t.repo.segment_ids().unwrap();
    // The host backs the same files up with its write-only key: its own copy of every blob.
    let cache = tempfile::tempdir().unwrap();
    let storage: std::sync::Arc<dyn Storage> = t.storage.clone();
    let secret = OpenSecret::Password(pw.clone());
    let host = crate::Repository::open_for_backup(storage, &secret, cache.path().to_path_buf()).unwrap();
    back_up_again(&host, &dir);
    // Its segment, listed once more under the lowest name, so prune meets its copies first.
    let doc = SlotDoc::decode(&t.storage.get(&crate::repo::slot_name(&slot)).unwrap(), "slot").unwrap();
    let kit = crate::keys::open_write_only_slot(&doc, &secret, None).unwrap().unwrap();
    for id in t.repo.segment_ids().unwrap().iter().filter(|id| !full_segments.contains(id)) {
        let segment = t.repo.load_segment(id).unwrap();
        let name = Dir::Index.object(&crate::ObjectId([0; 32]));
        let sealed = kit.sealer().unwrap().seal(ObjectKind::IndexSegment, name.as_bytes(), &segment.encode()).unwrap();
        t.storage.put(&name, &sealed, PutMode::CreateNew).unwrap();
    }
    let opts = crate::prune::PruneOptions { instant_delete: true, ..Default::default() };
    crate::prune::prune(&t.repo, opts, false, &crate::NoProgress).unwrap();
    let left: Vec<crate::PackId> = t.repo.list_packs().unwrap().into_iter().map(|(p, _)| p).collect();
    for pack in &full_packs {
        assert!(left.contains(pack), "the full key's pack {pack:?} was dropped for the write-only copy");
    }
    let report = check_all(&t);
    assert!(!report.has_errors(), "{:?}", report.findings);
}

#[test]
fn a_restore_that_writes_its_files_in_many_flushes_restores_links_across_them_and_verifies_each() {
    use std::os::unix::fs::MetadataExt;
    let t = TestRepository::new(64 << 10);
    let src = tempfile::tempdir().unwrap();
    let dir = src.path().join("data");
    for d in 0..4 {
        let sub = dir.join(format!("d{d}"));
        std::fs::create_dir_all(&sub).unwrap();
        for i in 0..15u64 {
            let size = if i % 5 == 0 { 0 } else { 1_000 * i as usize };
            std::fs::write(sub.join(format!("f{i}")), noise(size, d * 100 + i)).unwrap();
        }
    }
    // Links whose first member is written flushes before them.
    for d in 1..4 {
        std::fs::hard_link(dir.join("d0/f3"), dir.join(format!("d{d}/link"))).unwrap();
    }
    let id = back_up_again(&t.repo, &dir);
    let snapshot = t.repo.load_snapshot(&id).unwrap();
    let target = tempfile::tempdir().unwrap();
    let opts = crate::restore::RestoreOptions {
        target: target.path().to_path_buf(),
        verify: true,
        flush_files: 7,
        ..Default::default()
    };
    let outcome = crate::restore::restore(&t.repo, snapshot.tree, &opts, &crate::NoProgress).unwrap();
    assert!(outcome.damaged.is_empty(), "{:?}", outcome.damaged);
    assert_eq!((outcome.files, outcome.hardlinks), (60, 3), "{outcome:?}");
    assert_eq!(outcome.verified, 60);
    let restored = target.path().join(dir.strip_prefix("/").unwrap());
    for d in 0..4 {
        for i in 0..15 {
            let rel = format!("d{d}/f{i}");
            assert!(std::fs::read(dir.join(&rel)).unwrap() == std::fs::read(restored.join(&rel)).unwrap(), "{rel}");
        }
    }
    let first = std::fs::metadata(restored.join("d0/f3")).unwrap().ino();
    for d in 1..4 {
        assert_eq!(std::fs::metadata(restored.join(format!("d{d}/link"))).unwrap().ino(), first);
    }
}
