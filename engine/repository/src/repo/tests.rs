//! The repository service on an in-memory repository, without the CLI: the blob writer packs
//! and indexes what it is given, another client's index sync finds it, damage is reported as
//! damage, snapshots are listed, named and told apart when unreadable, the audit chain and key
//! slots hold, and a writer whose uploads fail says so and leaves no index entry pointing at a
//! pack it lost.

use std::collections::HashSet;

use super::testing::TestRepository;
use crate::error::Error;
use crate::format::BlobKind;
use crate::format::names::Dir;
use crate::format::snapshot::{Snapshot, SnapshotSummary};
use crate::id::ChunkId;
use crate::storage::{PutMode, Storage};
use cairn_format::test_util::pseudo_random as noise;

pub(super) fn store_blobs(t: &TestRepository, blobs: &[Vec<u8>]) -> (Vec<ChunkId>, super::WriteStats) {
    let writer = t.repo.blob_writer().unwrap();
    let ids: Vec<ChunkId> = blobs.iter().map(|b| writer.add(BlobKind::Data, b.clone()).unwrap()).collect();
    (ids, writer.finish().unwrap())
}

#[test]
fn the_blob_writer_packs_dedups_and_indexes_what_it_is_given() {
    let t = TestRepository::new(64 << 10);
    let mut blobs: Vec<Vec<u8>> = (0..40).map(|i| noise(8_000 + i * 10, i as u64)).collect();
    blobs.push(blobs[3].clone());
    let (ids, stats) = store_blobs(&t, &blobs);
    assert_eq!(ids[3], ids[40], "equal content, equal id");
    assert_eq!(stats.blobs, 40, "the duplicate is stored once");
    assert!(stats.packs >= 4, "{} packs of about 64 KiB for 320 KB", stats.packs);
    for (id, blob) in ids.iter().zip(&blobs) {
        assert_eq!(&t.repo.read_blob(id).unwrap(), blob);
        assert_eq!(t.repo.locate(id).unwrap().raw_length as usize, blob.len());
    }
    let listed: HashSet<_> = t.repo.list_packs().unwrap().into_iter().map(|(id, _)| id).collect();
    let indexed: HashSet<_> = ids.iter().map(|id| t.repo.locate(id).unwrap().pack).collect();
    assert_eq!(listed, indexed, "every pack stored is indexed and the other way round");
    // A second writer stores nothing already there.
    let (_, again) = store_blobs(&t, &blobs[..10]);
    assert_eq!((again.blobs, again.packs), (0, 0));
}

#[test]
fn a_long_writer_forgets_the_ids_it_indexed_and_still_stores_each_blob_once() {
    let t = TestRepository::new(64 << 10);
    // About 8 blobs per 64 KiB pack: a segment (128 packs) is stored mid-run.
    let blobs: Vec<Vec<u8>> = (0..3_000).map(|i| noise(8_000, 2 * i + 7_001)).collect();
    let writer = t.repo.blob_writer().unwrap();
    for b in &blobs {
        writer.add(BlobKind::Data, b.clone()).unwrap();
    }
    assert!(!t.repo.segment_ids().unwrap().is_empty(), "a segment was stored before the end");
    assert!(writer.session_len() < blobs.len() / 2, "{} ids still held", writer.session_len());
    // Blobs of the stored segment, and of packs still open, added again.
    let ids: Vec<ChunkId> =
        blobs.iter().rev().chain(&blobs[..300]).map(|b| writer.add(BlobKind::Data, b.clone()).unwrap()).collect();
    let stats = writer.finish().unwrap();
    assert_eq!(stats.blobs, 3_000, "every blob stored once");
    for (id, blob) in ids.iter().rev().take(300).zip(blobs[..300].iter().rev()) {
        assert_eq!(&t.repo.read_blob(id).unwrap(), blob);
    }
}

#[test]
fn a_sync_after_a_segment_was_cut_short_rebuilds_the_cache_from_the_repository() {
    let t = TestRepository::new(64 << 10);
    let blobs: Vec<Vec<u8>> = (0..12).map(|i| noise(20_000, 2 * i + 301)).collect();
    let (ids, _) = store_blobs(&t, &blobs);
    // The entry of a blob whose pack a prune then deleted, left by the crash.
    let stale = ChunkId([7; 32]);
    t.repo.index().leave_an_interrupted_apply(crate::ObjectId([5; 32]), &stale, t.repo.locate(&ids[0]).unwrap());
    assert!(t.repo.locate(&stale).is_ok());
    t.repo.sync_index().unwrap();
    assert!(matches!(t.repo.locate(&stale), Err(Error::NotIndexed(_))), "the stale entry is gone");
    assert!(!t.repo.index().interrupted().unwrap());
    for (id, blob) in ids.iter().zip(&blobs) {
        assert_eq!(&t.repo.read_blob(id).unwrap(), blob);
    }
}

#[test]
fn another_client_finds_the_blobs_after_an_index_sync() {
    let t = TestRepository::new(64 << 10);
    let blobs: Vec<Vec<u8>> = (0..12).map(|i| noise(20_000, 100 + i)).collect();
    let other_cache = tempfile::tempdir().unwrap();
    let other = TestRepository::open_at(&t.storage, other_cache.path());
    let (ids, _) = store_blobs(&t, &blobs);
    assert!(matches!(other.locate(&ids[0]), Err(Error::NotIndexed(id)) if id == ids[0]), "not synced yet");
    other.sync_index().unwrap();
    for (id, blob) in ids.iter().zip(&blobs) {
        assert_eq!(&other.read_blob(id).unwrap(), blob);
    }
    assert_eq!(other.segment_ids().unwrap(), t.repo.segment_ids().unwrap());
}

#[test]
fn a_damaged_blob_is_reported_as_damage_never_returned() {
    let t = TestRepository::new(64 << 10);
    let (ids, _) = store_blobs(&t, &[noise(30_000, 7)]);
    let loc = t.repo.locate(&ids[0]).unwrap();
    let name = super::pack_name(&loc.pack);
    let mut pack = t.storage.get(&name).unwrap();
    let at = (loc.offset + loc.length / 2) as usize;
    pack[at] ^= 0x80;
    t.storage.put(&name, &pack, PutMode::Overwrite).unwrap();
    assert!(matches!(t.repo.read_blob(&ids[0]), Err(Error::Corrupt { .. })));
}

pub(super) fn snapshot(time_ns: i64, host: &str, tree: ChunkId) -> Snapshot {
    Snapshot {
        time_ns,
        hostname: host.into(),
        username: "tester".into(),
        paths: vec![b"/src".to_vec()],
        tags: Vec::new(),
        tree,
        parent: None,
        program: "unit tests".into(),
        summary: SnapshotSummary::default(),
        writer: Default::default(),
    }
}

#[test]
fn snapshots_are_listed_named_by_prefix_and_unreadable_ones_told_apart() {
    let t = TestRepository::new(64 << 10);
    let tree = ChunkId([7; 32]);
    let (old, _) = t.repo.save_snapshot(&snapshot(1_000, "a", tree)).unwrap();
    let (new, _) = t.repo.save_snapshot(&snapshot(2_000, "b", tree)).unwrap();
    let mut ids = t.repo.snapshot_ids().unwrap();
    ids.sort();
    let mut want = vec![old, new];
    want.sort();
    assert_eq!(ids, want);
    assert_eq!(t.repo.find_snapshot("latest").unwrap().0, new);
    assert_eq!(t.repo.resolve_snapshot_id(&old.to_hex()[..10]).unwrap(), old);
    assert!(matches!(t.repo.resolve_snapshot_id("zz"), Err(Error::SnapshotNotFound(_))));
    assert_eq!(t.repo.load_snapshot(&old).unwrap().hostname, "a");

    // The newer one damaged: it is named as unreadable, and `latest` is the older one.
    let name = Dir::Snapshots.object(&new);
    let mut bytes = t.storage.get(&name).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    t.storage.put(&name, &bytes, PutMode::Overwrite).unwrap();
    let (readable, unreadable) = t.repo.readable_snapshots().unwrap();
    assert_eq!(readable.iter().map(|(id, _)| *id).collect::<Vec<_>>(), vec![old]);
    assert_eq!(unreadable.iter().map(|(id, _)| *id).collect::<Vec<_>>(), vec![new]);
    assert_eq!(t.repo.find_snapshot("latest").unwrap().0, old);
    assert!(t.repo.snapshots().is_err(), "listing all of them fails on the damaged one");
}

#[test]
fn the_audit_log_appends_a_chain_and_verify_reports_an_entry_removed() {
    use crate::audit::{Actor, AuditRecord};
    let t = TestRepository::new(64 << 10);
    let actor = Actor { host: "host".into(), user: "user".into() };
    for op in ["snapshot", "forget", "prune", "check"] {
        t.repo.audit(&actor, &AuditRecord::new(op)).unwrap();
    }
    let report = t.repo.audit_verify().unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    let before = report.entries;
    assert!(before >= 4, "init's entry and the four appended: {before}");

    // An entry in the middle deleted: the chain shows the gap.
    let mut names = t.storage.list(Dir::Audit.prefix()).unwrap();
    names.sort();
    t.storage.delete(&names[names.len() / 2]).unwrap();
    let report = t.repo.audit_verify().unwrap();
    assert!(!report.is_ok(), "a removed entry must be reported");
}

#[test]
fn a_password_slot_added_opens_the_repository_and_once_removed_opens_nothing() {
    use crate::crypto::{Argon2Params, SecretBytes};
    use crate::keys::OpenSecret;
    let t = TestRepository::new(64 << 10);
    let second = SecretBytes::from("a second password".to_string());
    let id = t.repo.add_password_slot(&second, Argon2Params::MIN, "second").unwrap();
    assert!(t.repo.list_slots().unwrap().iter().any(|s| s.id == id));
    let open = |secret: &SecretBytes| {
        let dir = tempfile::tempdir().unwrap();
        let storage: std::sync::Arc<dyn Storage> = t.storage.clone();
        super::Repository::open(storage, &OpenSecret::Password(secret.clone()), dir.path().to_path_buf()).map(|_| ())
    };
    open(&second).unwrap();
    t.repo.remove_slot(id, false).unwrap();
    assert!(matches!(open(&second), Err(Error::WrongKey(_))), "a removed slot opens nothing");
    open(&SecretBytes::from(super::testing::PASSWORD.to_string())).unwrap();
}

/// Uploads that fail at every point of a writer's run, in turn (the storage refuses every write
/// after the first `budget`): the writer reports the failure, never a success, and whatever it
/// left indexed names only packs that are stored whole. A rerun through a working storage
/// stores everything and reads back byte for byte.
#[test]
fn a_blob_writer_whose_uploads_fail_reports_it_and_indexes_no_pack_it_lost() {
    use std::sync::Arc;

    use crate::keys::OpenSecret;
    use crate::storage::FaultStorage;

    let blobs: Vec<Vec<u8>> = (0..24).map(|i| noise(9_000 + i * 7, 300 + i as u64)).collect();
    let full_run = {
        let t = TestRepository::new(64 << 10);
        let fault = Arc::new(FaultStorage::new(t.storage.clone(), None));
        let secret = OpenSecret::Password(crate::crypto::SecretBytes::from(super::testing::PASSWORD.to_string()));
        let cache = tempfile::tempdir().unwrap();
        let repo = super::Repository::open(fault.clone(), &secret, cache.path().to_path_buf()).unwrap();
        let before = fault.mutations();
        let writer = repo.blob_writer().unwrap();
        for b in &blobs {
            writer.add(BlobKind::Data, b.clone()).unwrap();
        }
        writer.finish().unwrap();
        fault.mutations() - before
    };
    assert!(full_run >= 4, "{full_run} writes: several packs and a segment");
    for budget in 0..full_run {
        let t = TestRepository::new(64 << 10);
        let secret = OpenSecret::Password(crate::crypto::SecretBytes::from(super::testing::PASSWORD.to_string()));
        let cache = tempfile::tempdir().unwrap();
        let fault = Arc::new(FaultStorage::new(t.storage.clone(), Some(budget)));
        let repo = super::Repository::open(fault.clone(), &secret, cache.path().to_path_buf()).unwrap();
        let outcome = repo.blob_writer().and_then(|writer| {
            for b in &blobs {
                writer.add(BlobKind::Data, b.clone())?;
            }
            writer.finish()
        });
        let e = outcome.expect_err("a writer whose writes failed must not report success");
        assert!(matches!(e, Error::Storage { .. }), "budget {budget}: {e}");
        // What another client sees: every indexed pack is there, and its blobs read back.
        let other_cache = tempfile::tempdir().unwrap();
        let other = TestRepository::open_at(&t.storage, other_cache.path());
        let stored: HashSet<_> = other.list_packs().unwrap().into_iter().map(|(id, _)| id).collect();
        for (blob, id) in blobs.iter().map(|b| (b, other.chunk_id(b))) {
            if let Ok(loc) = other.locate(&id) {
                assert!(stored.contains(&loc.pack), "budget {budget}: blob indexed in a pack not stored");
                assert_eq!(&other.read_blob(&id).unwrap(), blob, "budget {budget}");
            }
        }
        // The rerun, through the plain storage, completes.
        let writer = other.blob_writer().unwrap();
        let ids: Vec<ChunkId> = blobs.iter().map(|b| writer.add(BlobKind::Data, b.clone()).unwrap()).collect();
        writer.finish().unwrap();
        for (id, blob) in ids.iter().zip(&blobs) {
            assert_eq!(&other.read_blob(id).unwrap(), blob, "budget {budget}: after the rerun");
        }
    }
}
