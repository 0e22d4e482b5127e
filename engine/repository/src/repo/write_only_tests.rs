//! Write-only slots on a repository: adding one moves the config to format 3, full keys still
//! open it and read what a kit seals, the slot's own secret never opens the repository, a
//! rotation issues it the new epoch's reader key, and nothing the kit yields opens any object.

use std::sync::Arc;

use super::testing::{PASSWORD, TestRepository};
use super::{Repository, WriteOnlySecret, slot_name};
use crate::crypto::{Argon2Params, Key32, SecretBytes};
use crate::error::Error;
use crate::format::envelope::{self, ObjectKind};
use crate::format::names::Dir;
use crate::format::slot::SlotDoc;
use crate::format::{FORMAT_VERSION, WRITE_ONLY_FORMAT_VERSION};
use crate::keys::{self, OpenSecret, WriteKit};
use crate::storage::{MemStorage, PutMode, Storage};

pub(super) fn write_only_password() -> SecretBytes {
    SecretBytes::from("web1's password".to_string())
}

pub(super) fn add_write_only(t: &mut TestRepository) -> crate::id::ObjectId {
    let pw = write_only_password();
    t.repo.add_write_only_slot(WriteOnlySecret::Password(&pw, Argon2Params::MIN), "web1").unwrap().0
}

pub(super) fn kit_of(storage: &MemStorage, id: crate::id::ObjectId, secret: &OpenSecret) -> WriteKit {
    let doc = SlotDoc::decode(&storage.get(&slot_name(&id)).unwrap(), "slot").unwrap();
    keys::open_write_only_slot(&doc, secret, None).unwrap().expect("the slot opens")
}

/// A write-only handle of web1's slot (added by [`add_write_only`]) with its cache in `cache`.
pub(super) fn open_write_only(t: &TestRepository, cache: &std::path::Path) -> Repository {
    let storage: Arc<dyn Storage> = t.storage.clone();
    let secret = OpenSecret::Password(write_only_password());
    Repository::open_for_backup(storage, &secret, cache.to_path_buf()).unwrap()
}

/// Opens `t` with `secret` on a cache of its own (removed with `t`).
pub(super) fn open(t: &TestRepository, secret: &OpenSecret) -> crate::error::Result<Repository> {
    let storage: Arc<dyn Storage> = t.storage.clone();
    Repository::open(storage, secret, t.another_cache())
}

#[test]
fn a_write_only_slot_upgrades_the_format_and_never_opens_the_repository() {
    let mut t = TestRepository::new(1 << 20);
    assert_eq!(t.repo.config().format_version, FORMAT_VERSION);
    let id = add_write_only(&mut t);
    let full = OpenSecret::Password(SecretBytes::from(PASSWORD.to_string()));
    let again = open(&t, &full).unwrap();
    assert_eq!(again.config().format_version, WRITE_ONLY_FORMAT_VERSION, "the upgrade is stored");
    let slots = again.list_slots().unwrap();
    assert!(slots.iter().any(|s| s.id == id && s.write_only && s.listed && s.current), "{slots:?}");
    let wo = OpenSecret::Password(write_only_password());
    match open(&t, &wo) {
        Err(Error::WrongKey(m)) => assert!(m.contains("write-only"), "{m}"),
        other => panic!("a write-only secret opened the repository: {other:?}"),
    }
    let kit = kit_of(&t.storage, id, &wo);
    assert_eq!(kit.config_plaintext(), again.config().encode(), "the kit carries the config");
    // What the kit seals, a full key reads through the repository.
    let name = Dir::Snapshots.join("aa");
    let sealed = kit.sealer().unwrap().seal(ObjectKind::Snapshot, name.as_bytes(), b"from web1").unwrap();
    t.storage.put(&name, &sealed, PutMode::CreateNew).unwrap();
    assert_eq!(again.load_object(ObjectKind::Snapshot, &name).unwrap(), b"from web1");
    // Sealed to the reader, a config is refused even by full keys.
    let forged = kit.sealer().unwrap().seal(ObjectKind::Snapshot, b"config", b"x").unwrap();
    t.storage.put("config", &forged, PutMode::Overwrite).unwrap();
    assert!(open(&t, &full).is_err());
}

#[test]
fn a_rotation_gives_write_only_slots_the_new_reader_key_and_no_key() {
    let mut t = TestRepository::new(1 << 20);
    let id = add_write_only(&mut t);
    let wo = OpenSecret::Password(write_only_password());
    let before = kit_of(&t.storage, id, &wo);
    let name = Dir::Index.join("bb");
    let old = before.sealer().unwrap().seal(ObjectKind::IndexSegment, name.as_bytes(), b"old epoch").unwrap();
    let storage = t.storage.clone();
    let (rotated, out) = t.repo.rotate_key().unwrap();
    assert!(out.slots.contains(&id), "the write-only slot is moved too");
    let after = kit_of(&storage, id, &wo);
    assert_eq!((before.epoch(), after.epoch()), (0, 1));
    assert!(after.revision() > before.revision());
    assert_eq!(rotated.list_slots().unwrap().iter().find(|s| s.id == id).map(|s| s.current), Some(true));
    // The rotated keys read both epochs' reader-sealed objects.
    let new = after.sealer().unwrap().seal(ObjectKind::IndexSegment, name.as_bytes(), b"new epoch").unwrap();
    for (sealed, plain) in [(old, &b"old epoch"[..]), (new, &b"new epoch"[..])] {
        let opened = envelope::open_sealed(&sealed, ObjectKind::IndexSegment, name.as_bytes(), &name, |to| {
            rotated.keyring().unwrap().open_pack_key(to, &name)
        });
        assert_eq!(opened.unwrap(), plain);
    }
}

/// Tries every key in `keys` on every envelope of `repo` (as a data key, and as the source of
/// a reader secret for envelopes sealed to the reader), with the kind and name each really has:
/// nothing opens. Returns how many envelopes were tried.
pub(crate) fn assert_nothing_opens_with(repo: &Repository, keys: &[[u8; 32]]) -> usize {
    let inventory = repo.sealed_inventory_for_tests().unwrap();
    for thing in &inventory {
        for key in keys {
            let key = Key32::from_bytes(*key);
            let opened = envelope::open_sealed(&thing.sealed, thing.kind, &thing.ad_name, &thing.what, |to| {
                keys::opening_key(&key, to, &thing.what)
            });
            assert!(opened.is_err(), "{} opened with a write-only key", thing.what);
        }
    }
    inventory.len()
}

/// A snapshot of `/srv` on `host` whose root is `tree`.
pub(super) fn snapshot_of(host: &str, tree: crate::id::ChunkId) -> crate::format::snapshot::Snapshot {
    crate::format::snapshot::Snapshot {
        time_ns: 1,
        hostname: host.into(),
        username: "root".into(),
        paths: vec![b"/srv".to_vec()],
        tags: Vec::new(),
        tree,
        parent: None,
        program: "test".into(),
        summary: Default::default(),
        writer: Default::default(),
    }
}

/// A backup through write-only handle `repo`: a data blob, a tree, a snapshot (logged).
pub(super) fn write_only_backup(mut repo: Repository, data: &[u8]) {
    repo.set_actor(crate::audit::Actor { host: "host".into(), user: "root".into() });
    let writer = repo.blob_writer().unwrap();
    writer.add(crate::format::BlobKind::Data, data.repeat(300)).unwrap();
    let tree_id = writer.add(crate::format::BlobKind::Tree, crate::format::tree::Tree::default().encode()).unwrap();
    writer.finish().unwrap();
    let snapshot = snapshot_of("host", tree_id);
    repo.save_snapshot(&snapshot).unwrap();
}

#[test]
fn nothing_in_the_repository_opens_with_what_a_write_only_slot_yields() {
    let mut t = TestRepository::new(1 << 20);
    // Full-key content: blobs in packs, an index, a snapshot, audit entries.
    let ids = super::tests::store_blobs(&t, &[b"full key data".repeat(100), b"another blob".to_vec()]).0;
    assert_eq!(ids.len(), 2);
    let id = add_write_only(&mut t);
    let wo = OpenSecret::Password(write_only_password());
    let kit = kit_of(&t.storage, id, &wo);
    // And what the kit wrote itself.
    let name = Dir::Snapshots.join("cc");
    let sealed = kit.sealer().unwrap().seal(ObjectKind::Snapshot, name.as_bytes(), b"web1's snapshot").unwrap();
    t.storage.put(&name, &sealed, PutMode::CreateNew).unwrap();
    // Through the write-only handle as a backup writes: data and tree blobs, index, a snapshot
    // announced in the audit log, under a lock that stays (a host killed mid-backup); and
    // another write-only host's backup.
    let storage: Arc<dyn Storage> = t.storage.clone();
    let cache = tempfile::tempdir().unwrap();
    let handle = Repository::open_for_backup(Arc::clone(&storage), &wo, cache.path().to_path_buf()).unwrap();
    let lock_opts = super::LockOptions {
        exclusive: false,
        operation: "snapshot".into(),
        hostname: "web1".into(),
        username: "root".into(),
        retry_for: std::time::Duration::ZERO,
        refresh_every: super::REFRESH_EVERY,
    };
    let lock = handle.lock(&lock_opts).unwrap();
    write_only_backup(handle, b"web1's files");
    std::mem::forget(lock);
    let pw2 = SecretBytes::from("web2's password".to_string());
    t.repo.add_write_only_slot(WriteOnlySecret::Password(&pw2, Argon2Params::MIN), "web2").unwrap();
    let web2 = Repository::open_for_backup(storage, &OpenSecret::Password(pw2), cache.path().join("2")).unwrap();
    write_only_backup(web2, b"web2's files");
    let full = open(&t, &OpenSecret::Password(SecretBytes::from(PASSWORD.to_string()))).unwrap();
    assert!(!t.storage.list(Dir::Locks.prefix()).unwrap().is_empty(), "the lock is there to be tried");
    assert_eq!(full.snapshots().unwrap().len(), 2, "web1 and web2 wrote snapshots a full key reads");
    let tried = assert_nothing_opens_with(&full, &kit.all_keys_for_tests());
    assert!(tried >= 8, "config, keyring, pack blobs, header, locator, index, snapshots, audit: {tried}");
    // The check is real: the full key's own data key opens them.
    let data_key = *full.keyring().unwrap().current().1.expose();
    let result =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| assert_nothing_opens_with(&full, &[data_key])));
    assert!(result.is_err(), "the data key opens objects, so the check would have seen a leak");
}

#[test]
fn packs_index_and_snapshots_a_kit_writes_open_with_full_keys_only() {
    let mut t = TestRepository::new(64 * 1024);
    super::tests::store_blobs(&t, &[b"written with the full key".repeat(50)]);
    let id = add_write_only(&mut t);
    let wo = OpenSecret::Password(write_only_password());
    let full = OpenSecret::Password(SecretBytes::from(PASSWORD.to_string()));
    let mut writer = open(&t, &full).unwrap();
    writer.seal_as_write_only_for_tests(kit_of(&t.storage, id, &wo));
    let before: std::collections::HashSet<String> = t.storage.list(Dir::Data.prefix()).unwrap().into_iter().collect();
    let contents: Vec<Vec<u8>> =
        (0..40u8).map(|i| cairn_format::test_util::pseudo_random(20_000 + usize::from(i), u64::from(i))).collect();
    let w = writer.blob_writer().unwrap();
    let ids: Vec<_> = contents.iter().map(|c| w.add(crate::format::BlobKind::Data, c.clone()).unwrap()).collect();
    let tree = w.add(crate::format::BlobKind::Tree, b"a tree blob".to_vec()).unwrap();
    w.finish().unwrap();
    let (snapshot_id, _) = writer.save_snapshot(&super::tests::snapshot(7, "web1", tree)).unwrap();
    // Every new pack ends in a version 2 locator; the index segment is sealed to the reader too.
    let new: Vec<String> =
        t.storage.list(Dir::Data.prefix()).unwrap().into_iter().filter(|n| !before.contains(n)).collect();
    assert!(new.len() >= 2, "data and tree packs: {new:?}");
    // (One pack in 256 also has a 1 where a version 1 locator would start: readers try that
    // first and go on when it does not open.)
    let data_key = t.repo.keyring().unwrap().current().1.clone();
    for name in &new {
        let bytes = t.storage.get(name).unwrap();
        assert!(crate::format::pack::locator_lens(&bytes).contains(&crate::format::pack::READER_LOCATOR_LEN), "{name}");
        let as_version_1 = crate::format::pack::open(&bytes, name, |kind, ad, sealed| {
            envelope::open(sealed, kind, ad, name, |_| Ok(&data_key))
        });
        assert!(as_version_1.is_err(), "{name} opens as a version 1 pack");
    }
    let segments = t.storage.list(Dir::Index.prefix()).unwrap();
    assert!(segments.iter().any(|n| t.storage.get(n).unwrap()[0] == envelope::READER_ENVELOPE_VERSION));
    // Another client with the full key finds and reads every blob.
    let reader = open(&t, &full).unwrap();
    for (id, content) in ids.iter().zip(&contents) {
        assert_eq!(&reader.read_blob(id).unwrap(), content);
    }
    assert_eq!(reader.read_blob(&tree).unwrap(), b"a tree blob");
    let name = super::snapshot_name(&snapshot_id);
    assert_eq!(t.storage.get(&name).unwrap()[0], envelope::READER_ENVELOPE_VERSION);
    assert_eq!(reader.load_snapshot(&snapshot_id).unwrap().hostname, "web1");
    for name in &new {
        let id = crate::format::names::pack_id(name).unwrap();
        reader.read_verified_pack(&id).unwrap();
        assert_eq!(reader.verified_pack_epoch(&id, t.storage.get(name).unwrap().len() as u64).unwrap(), 0);
    }
    // And nothing in the repository, these packs included, opens with what the kit yields.
    assert_nothing_opens_with(&reader, &kit_of(&t.storage, id, &wo).all_keys_for_tests());
}

#[test]
fn a_write_only_slot_rewritten_as_full_is_never_sealed_the_repository_key() {
    let mut t = TestRepository::new(1 << 20);
    let id = add_write_only(&mut t);
    // The storage (or the slot's thief) rewrites the document as a full slot with the same id
    // and public key, the lengths a full slot has.
    let name = slot_name(&id);
    let mut doc = SlotDoc::decode(&t.storage.get(&name).unwrap(), "slot").unwrap();
    doc.access = crate::format::slot::SlotAccess::Full;
    doc.wrapped_secret.truncate(80);
    doc.sealed_key.truncate(104);
    t.storage.put(&name, &doc.encode(), PutMode::Overwrite).unwrap();
    let before: Vec<(String, Vec<u8>)> =
        t.storage.list("").unwrap().into_iter().map(|n| (n.clone(), t.storage.get(&n).unwrap())).collect();
    let (cache, storage): (_, Arc<dyn Storage>) = (t.another_cache(), t.storage.clone());
    let err = t.repo.rotate_key().unwrap_err();
    assert!(matches!(err, Error::KeysChanged(_)), "{err}");
    let after: Vec<(String, Vec<u8>)> =
        t.storage.list("").unwrap().into_iter().map(|n| (n.clone(), t.storage.get(&n).unwrap())).collect();
    assert_eq!(before, after, "the refused rotation wrote nothing");
    // `key list` shows the access the keyring lists, not the document's.
    let full = OpenSecret::Password(SecretBytes::from(PASSWORD.to_string()));
    let slots = Repository::open(storage, &full, cache).unwrap().list_slots().unwrap();
    assert!(slots.iter().any(|s| s.id == id && s.write_only), "{slots:?}");
}

#[test]
fn a_rotation_does_not_launder_objects_sealed_under_an_epoch_below_the_floor() {
    let t = TestRepository::new(1 << 20);
    let storage = t.storage.clone();
    let (once, _) = t.repo.rotate_key().unwrap();
    assert_eq!(once.keyring().unwrap().metadata_floor(), 1);
    // A holder of a key (or a kit) of epoch 0 plants a snapshot sealed to that epoch's reader
    // key after the rotation.
    let reader = once.keyring().unwrap().reader_public(0).unwrap();
    let name = Dir::Snapshots.join("dd");
    let planted =
        keys::ReaderSealer::new(0, &reader).unwrap().seal(ObjectKind::Snapshot, name.as_bytes(), b"x").unwrap();
    storage.put(&name, &planted, PutMode::CreateNew).unwrap();
    assert!(once.load_object(ObjectKind::Snapshot, &name).is_err(), "below the floor: refused");
    let (twice, _) = once.rotate_key().unwrap();
    assert_eq!(storage.get(&name).unwrap(), planted, "left as it was, not re-sealed under the new epoch");
    assert!(twice.load_object(ObjectKind::Snapshot, &name).is_err());
}

#[test]
fn a_write_only_handle_refuses_every_read_and_key_path_and_writes_what_full_keys_read() {
    let mut t = TestRepository::new(1 << 20);
    let id = add_write_only(&mut t);
    let full_secret = OpenSecret::Password(SecretBytes::from(PASSWORD.to_string()));
    let full = open(&t, &full_secret).unwrap();
    let wo_secret = OpenSecret::Password(write_only_password());
    let storage: Arc<dyn Storage> = t.storage.clone();
    let cache = tempfile::tempdir().unwrap();
    let wo = Repository::open_for_backup(Arc::clone(&storage), &wo_secret, cache.path().to_path_buf()).unwrap();
    assert!(wo.is_write_only() && wo.opened_with() == id);
    // Written through the handle: a tree (kept in its own record too) and a snapshot.
    let writer = wo.blob_writer().unwrap();
    let tree = crate::format::tree::Tree::default().encode();
    let tree_id = writer.add(crate::format::BlobKind::Tree, tree.clone()).unwrap();
    writer.finish().unwrap();
    assert_eq!(wo.load_tree(&tree_id).unwrap().encode(), tree, "its own tree, from its cache");
    let snapshot = snapshot_of("web1", tree_id);
    let (snap_id, _) = wo.save_snapshot(&snapshot).unwrap();
    assert_eq!(wo.own_parent("web1", &[b"/srv".to_vec()]).map(|p| p.0), Some(snap_id));
    assert!(wo.own_parent("web2", &[b"/srv".to_vec()]).is_none());
    // Every read and key path refuses, saying why.
    let refusals: Vec<(&str, Error)> = vec![
        ("load_snapshot", wo.load_snapshot(&snap_id).unwrap_err()),
        ("snapshots", wo.snapshots().unwrap_err()),
        ("read_blob", wo.read_blob(&tree_id).unwrap_err()),
        ("load_object", wo.load_object(ObjectKind::Snapshot, &super::snapshot_name(&snap_id)).unwrap_err()),
        ("audit_log", wo.audit_log().unwrap_err()),
        ("list_slots", wo.list_slots().unwrap_err()),
        ("key_epochs", wo.key_epochs().unwrap_err()),
        ("add_recovery_slot", wo.add_recovery_slot("x").unwrap_err()),
        ("remove_slot", wo.remove_slot(id, true).unwrap_err()),
    ];
    for (what, e) in refusals {
        assert!(matches!(&e, Error::WrongKey(m) if m.contains("write-only")), "{what}: {e}");
    }
    // A full key on another cache reads what it wrote.
    full.sync_index().unwrap();
    assert_eq!(full.load_snapshot(&snap_id).unwrap().hostname, "web1");
    assert_eq!(full.load_tree(&tree_id).unwrap().encode(), tree);
    // The plain `open` refuses the slot outright.
    assert!(matches!(open(&t, &wo_secret), Err(Error::WrongKey(_))));
}

#[test]
fn a_write_only_client_refuses_a_kit_older_than_the_one_it_used() {
    let mut t = TestRepository::new(1 << 20);
    let id = add_write_only(&mut t);
    let wo_secret = OpenSecret::Password(write_only_password());
    let storage: Arc<dyn Storage> = t.storage.clone();
    let cache = tempfile::tempdir().unwrap();
    let old_doc = t.storage.get(&slot_name(&id)).unwrap();
    Repository::open_for_backup(Arc::clone(&storage), &wo_secret, cache.path().to_path_buf()).unwrap();
    let full_secret = OpenSecret::Password(SecretBytes::from(PASSWORD.to_string()));
    let full = open(&t, &full_secret).unwrap();
    full.rotate_key().unwrap();
    Repository::open_for_backup(Arc::clone(&storage), &wo_secret, cache.path().to_path_buf()).unwrap();
    // The storage serves the slot as it was before the rotation (its kit MAC still verifies).
    t.storage.put(&slot_name(&id), &old_doc, PutMode::Overwrite).unwrap();
    match Repository::open_for_backup(Arc::clone(&storage), &wo_secret, cache.path().to_path_buf()) {
        Err(Error::KeysChanged(m)) => assert!(m.contains("older"), "{m}"),
        other => panic!("an older kit was accepted: {:?}", other.map(|r| r.opened_with())),
    }
    // A client that pinned nothing cannot tell (SPEC §15.5); with its pins it can. What it
    // then writes is sealed to the epoch below the floor: full keys refuse it, so `check`
    // reports the snapshot instead of taking it for a backup.
    let fresh = tempfile::tempdir().unwrap();
    let replayed = Repository::open_for_backup(storage, &wo_secret, fresh.path().to_path_buf()).unwrap();
    write_only_backup(replayed, b"sealed to the old reader key");
    let reader = open(&t, &full_secret).unwrap();
    let (readable, unreadable) = reader.readable_snapshots().unwrap();
    assert!(readable.is_empty(), "{readable:?}");
    match unreadable.as_slice() {
        [(_, e)] => assert!(e.to_string().contains("epoch"), "{e}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_write_only_slot_logs_its_snapshots_and_cannot_log_a_deletion() {
    let mut t = TestRepository::new(1 << 20);
    add_write_only(&mut t);
    let cache = tempfile::tempdir().unwrap();
    let handle = open_write_only(&t, cache.path());
    let actor = crate::audit::Actor { host: "web1".into(), user: "root".into() };
    let made = crate::id::ObjectId([7; 32]);
    handle.audit(&actor, &crate::audit::AuditRecord::new("snapshot")).unwrap();
    let forged =
        crate::audit::AuditRecord { snapshots_deleted: vec![made], ..crate::audit::AuditRecord::new("forget") };
    handle.audit(&actor, &forged).unwrap();
    let full = open(&t, &OpenSecret::Password(SecretBytes::from(PASSWORD.to_string()))).unwrap();
    let log = full.audit_log().unwrap();
    assert!(log.entries.iter().any(|e| e.write_only && e.entry.operation == "snapshot"), "{:?}", log.entries);
    assert!(!log.entries.iter().any(|e| e.entry.operation == "forget"), "the forged deletion counts for nothing");
    let report = full.audit_verify().unwrap();
    assert!(report.problems.iter().any(|p| p.contains("only a full key")), "{:?}", report.problems);
}

#[test]
fn a_write_only_client_keeps_only_the_trees_its_recorded_parents_reach() {
    let mut t = TestRepository::new(1 << 20);
    add_write_only(&mut t);
    let cache = tempfile::tempdir().unwrap();
    let handle = open_write_only(&t, cache.path());
    let own = handle.own_record().unwrap();
    // Trees of older backups (their bytes need not decode: only reachable trees are read).
    let old: Vec<crate::id::ChunkId> = (0..200u32)
        .map(|i| {
            let bytes = format!("an older backup's tree {i}").into_bytes();
            let id = handle.chunk_id(&bytes);
            own.keep_tree(&id, &bytes).unwrap();
            id
        })
        .collect();
    let root = crate::format::tree::Tree::default().encode();
    let root_id = handle.chunk_id(&root);
    own.keep_tree(&root_id, &root).unwrap();
    let snapshot = snapshot_of("web1", root_id);
    own.keep_parent(&crate::id::ObjectId([1; 32]), &snapshot);
    own.collect_garbage(|plain| handle.chunk_id(plain));
    assert!(handle.load_tree(&root_id).is_ok(), "the parent's tree stays");
    for id in &old {
        assert!(matches!(handle.load_tree(id), Err(Error::NotIndexed(_))), "an older tree stayed");
    }
}

#[test]
fn a_full_key_stores_its_own_copy_of_what_only_a_write_only_slot_stored_and_a_rewrite_keeps_the_mark() {
    use crate::format::BlobKind;
    let mut t = TestRepository::new(1 << 20);
    add_write_only(&mut t);
    let cache = tempfile::tempdir().unwrap();
    let thief = open_write_only(&t, cache.path());
    // Other content under the id of a file the thief expects a full-key host to back up.
    let real = b"a file every host has".repeat(500);
    let id = thief.chunk_id(&real);
    let writer = thief.blob_writer().unwrap();
    writer.add_with_id(BlobKind::Data, id, b"ransom note".repeat(50)).unwrap();
    writer.finish().unwrap();
    let full_secret = OpenSecret::Password(SecretBytes::from(PASSWORD.to_string()));
    let full = open(&t, &full_secret).unwrap();
    assert_eq!(full.index().unverified_packs().unwrap().len(), 1);
    let writer = full.blob_writer().unwrap();
    assert_eq!(writer.add(BlobKind::Data, real.clone()).unwrap(), id);
    assert_eq!(writer.finish().unwrap().blobs, 1, "stored, not deduplicated against the write-only pack");
    assert_eq!(full.read_blob(&id).unwrap(), real);
    // A rewrite of the index (prune, repair) keeps the mark: it is not laundered into trust.
    let old = full.segment_ids().unwrap();
    let mut rewrite = super::IndexRewrite::new(&full).unwrap();
    for segment in &old {
        for pack in full.load_segment(segment).unwrap().packs {
            rewrite.add(pack).unwrap();
        }
    }
    rewrite.finish(old.clone()).unwrap();
    full.delete_segments(&old).unwrap();
    let fresh = open(&t, &full_secret).unwrap();
    assert_eq!(fresh.segment_ids().unwrap().len(), 1);
    assert_eq!(fresh.index().unverified_packs().unwrap().len(), 1, "the mark outlives the rewrite");
    // Whichever copy the cache names, a read ends at the right content.
    assert_eq!(fresh.read_blob(&id).unwrap(), real);
}

#[test]
fn a_write_only_segment_arriving_during_a_full_backup_neither_counts_as_stored_nor_shadows_a_trusted_copy() {
    use crate::format::BlobKind;
    let mut t = TestRepository::new(1 << 20);
    add_write_only(&mut t);
    let full_secret = OpenSecret::Password(SecretBytes::from(PASSWORD.to_string()));
    let full = open(&t, &full_secret).unwrap();
    let before = b"stored by a full key first".repeat(300);
    let later = b"a file the thief predicts".repeat(300);
    let (before_id, later_id) = (full.chunk_id(&before), full.chunk_id(&later));
    let writer = full.blob_writer().unwrap();
    writer.add(BlobKind::Data, before.clone()).unwrap();
    // Meanwhile the thief stores other content (of other lengths) under both ids.
    let cache = tempfile::tempdir().unwrap();
    let thief = open_write_only(&t, cache.path());
    let planted = thief.blob_writer().unwrap();
    planted.add_with_id(BlobKind::Data, before_id, b"x".to_vec()).unwrap();
    planted.add_with_id(BlobKind::Data, later_id, b"y".to_vec()).unwrap();
    planted.finish().unwrap();
    // The full writer picks the thief's segment up (as its resync does every 30 s).
    full.sync_index().unwrap();
    writer.add(BlobKind::Data, later.clone()).unwrap();
    assert_eq!(writer.finish().unwrap().blobs, 2, "the thief's copy did not count as stored");
    // On any full client the cache names the trusted copies.
    let fresh = open(&t, &full_secret).unwrap();
    assert_eq!(fresh.locate(&before_id).unwrap().raw_length as usize, before.len());
    assert_eq!(fresh.locate(&later_id).unwrap().raw_length as usize, later.len());
    assert_eq!(fresh.read_blob(&later_id).unwrap(), later);
}

#[test]
fn a_write_only_segment_naming_a_full_keys_pack_neither_marks_it_unverified_nor_outlives_a_rewrite_so() {
    use crate::format::BlobKind;
    use crate::format::index::IndexSegment;
    let mut t = TestRepository::new(1 << 20);
    let web1 = add_write_only(&mut t);
    let full_secret = OpenSecret::Password(SecretBytes::from(PASSWORD.to_string()));
    let full = open(&t, &full_secret).unwrap();
    let data = b"a full key's file".repeat(400);
    let writer = full.blob_writer().unwrap();
    let id = writer.add(BlobKind::Data, data.clone()).unwrap();
    writer.finish().unwrap();
    let segments = full.segment_ids().unwrap();
    let packs = full.load_segment(&segments[0]).unwrap().packs;
    // The thief lists the full key's pack in a segment of its own (sealed to the reader, so
    // every full key reads all its packs as unverified).
    let kit = kit_of(&t.storage, web1, &OpenSecret::Password(write_only_password()));
    let name = Dir::Index.object(&crate::id::ObjectId([0x5e; 32]));
    let forged = IndexSegment { packs, supersedes: Vec::new(), unverified: Vec::new() };
    let sealed = kit.sealer().unwrap().seal(ObjectKind::IndexSegment, name.as_bytes(), &forged.encode()).unwrap();
    t.storage.put(&name, &sealed, PutMode::CreateNew).unwrap();
    let fresh = open(&t, &full_secret).unwrap();
    assert!(fresh.index().unverified_packs().unwrap().is_empty(), "a full key's segment lists the pack");
    let writer = fresh.blob_writer().unwrap();
    writer.add(BlobKind::Data, data.clone()).unwrap();
    assert_eq!(writer.finish().unwrap().blobs, 0, "still deduplicated");
    // A rewrite (prune) writes no mark for it either.
    let old = fresh.segment_ids().unwrap();
    let mut rewrite = super::IndexRewrite::new(&fresh).unwrap();
    rewrite.add(fresh.load_segment(&segments[0]).unwrap().packs.remove(0)).unwrap();
    rewrite.finish(old.clone()).unwrap();
    fresh.delete_segments(&old).unwrap();
    let after = open(&t, &full_secret).unwrap();
    assert!(after.index().unverified_packs().unwrap().is_empty());
    assert_eq!(after.read_blob(&id).unwrap(), data);
}
