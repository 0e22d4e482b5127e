//! Who wrote a snapshot, kept through what full keys do: a full key reads the slot a
//! write-only snapshot's proof names and refuses a forged, moved or missing proof; a rotation
//! and a full key saving the snapshot again keep its writer; an object planted to fail does not
//! stop a rotation from raising the floor.

use super::WriteOnlySecret;
use super::testing::{PASSWORD, TestRepository};
use super::write_only_tests::{
    add_write_only, kit_of, open, open_write_only, snapshot_of, write_only_backup, write_only_password,
};
use crate::crypto::{Argon2Params, SecretBytes};
use crate::error::Error;
use crate::format::envelope::ObjectKind;
use crate::format::names::Dir;
use crate::keys::OpenSecret;
use crate::storage::{PutMode, Storage};

#[test]
fn a_full_key_knows_which_slot_wrote_a_snapshot_and_refuses_a_forged_or_moved_proof() {
    use super::snapshot_name;
    use crate::format::snapshot::Writer;
    let mut t = TestRepository::new(1 << 20);
    let web1 = add_write_only(&mut t);
    let web2_pw = SecretBytes::from("web2's password".to_string());
    let web2 = t.repo.add_write_only_slot(WriteOnlySecret::Password(&web2_pw, Argon2Params::MIN), "web2").unwrap().0;
    write_only_backup(open_write_only(&t, &t.another_cache()), b"web1's data");
    let full = open(&t, &OpenSecret::Password(SecretBytes::from(PASSWORD.to_string()))).unwrap();
    let (real_id, real) = full.snapshots().unwrap().pop().unwrap();
    assert_eq!(real.writer, Writer::WriteOnly(web1));
    // web1's kit claims to be web2: the proof does not verify.
    let kit = kit_of(&t.storage, web1, &OpenSecret::Password(write_only_password()));
    let put = |id: crate::id::ObjectId, plain: &[u8]| {
        let name = snapshot_name(&id);
        let sealed = kit.sealer().unwrap().seal(ObjectKind::Snapshot, name.as_bytes(), plain).unwrap();
        t.storage.put(&name, &sealed, PutMode::CreateNew).unwrap();
        id
    };
    let claim = snapshot_of("db1", real.tree);
    let forged_id = crate::id::ObjectId([0xf0; 32]);
    let forged = put(forged_id, &claim.encode_attested(&snapshot_name(&forged_id), web2, kit.audit_key()));
    match full.load_snapshot(&forged) {
        Err(Error::Corrupt { why, .. }) => assert!(why.contains("does not verify"), "{why}"),
        other => panic!("a forged writer was accepted: {other:?}"),
    }
    // web1's own proof, copied into another snapshot (another name), does not verify either.
    let moved_id = crate::id::ObjectId([0xf1; 32]);
    let moved = put(moved_id, &claim.encode_attested(&snapshot_name(&real_id), web1, kit.audit_key()));
    assert!(matches!(full.load_snapshot(&moved), Err(Error::Corrupt { .. })));
    // Without a proof, it could come from any write-only slot: refused.
    let bare = put(crate::id::ObjectId([0xf2; 32]), &claim.encode());
    match full.load_snapshot(&bare) {
        Err(Error::Corrupt { why, .. }) => assert!(why.contains("without its writer's proof"), "{why}"),
        other => panic!("a snapshot without a proof was accepted: {other:?}"),
    }
    // A proof under a data key (a full key never writes one) is refused.
    let odd_id = crate::id::ObjectId([0xf3; 32]);
    full.save_object(
        ObjectKind::Snapshot,
        &snapshot_name(&odd_id),
        &claim.encode_attested(&snapshot_name(&odd_id), web1, kit.audit_key()),
    )
    .unwrap();
    assert!(matches!(full.load_snapshot(&odd_id), Err(Error::Corrupt { .. })));
    // Listing keeps the readable ones and names the forgeries.
    let (readable, unreadable) = full.readable_snapshots().unwrap();
    assert_eq!(readable.len(), 1);
    let mut bad: Vec<_> = unreadable.iter().map(|(id, _)| *id).collect();
    bad.sort();
    assert_eq!(bad, vec![forged, moved, bare, odd_id]);
}

#[test]
fn a_rotation_and_a_full_key_saving_a_write_only_snapshot_again_keep_its_writer_and_its_packs_marks() {
    use crate::format::snapshot::Writer;
    let mut t = TestRepository::new(1 << 20);
    let web1 = add_write_only(&mut t);
    write_only_backup(open_write_only(&t, &t.another_cache()), b"web1's data");
    let full_secret = OpenSecret::Password(SecretBytes::from(PASSWORD.to_string()));
    let full = open(&t, &full_secret).unwrap();
    let marked = full.index().unverified_packs().unwrap();
    assert!(!marked.is_empty());
    // `tag` (or rewrite, repair, copy) saves the snapshot again with a full key.
    let (old_id, mut snapshot) = full.snapshots().unwrap().pop().unwrap();
    snapshot.tags.push("kept".into());
    let (again, _) = full.save_snapshot(&snapshot).unwrap();
    full.delete_snapshot(&old_id).unwrap();
    // A rotation re-seals every small object under the new epoch.
    let (rotated, _) = full.rotate_key().unwrap();
    drop(rotated);
    let fresh = open(&t, &full_secret).unwrap();
    let reloaded = fresh.load_snapshot(&again).unwrap();
    assert_eq!(reloaded.writer, Writer::WriteOnly(web1), "still web1's");
    assert_eq!(reloaded.tags, vec!["kept".to_string()]);
    assert_eq!(fresh.index().unverified_packs().unwrap(), marked, "its packs are still unverified");
}

#[test]
fn an_object_planted_to_fail_does_not_stop_a_rotation_from_raising_the_floor() {
    let mut t = TestRepository::new(1 << 20);
    let web1 = add_write_only(&mut t);
    // The thief plants an audit entry (which nothing may delete) sealed under the current
    // epoch whose contents do not open.
    let kit = kit_of(&t.storage, web1, &OpenSecret::Password(write_only_password()));
    let name = format!("{}000000000001-{}", Dir::Audit.prefix(), "ab".repeat(32));
    let mut sealed = kit.sealer().unwrap().seal(ObjectKind::Audit, name.as_bytes(), b"x").unwrap();
    let last = sealed.len() - 1;
    sealed[last] ^= 1;
    t.storage.put(&name, &sealed, PutMode::CreateNew).unwrap();
    let (rotated, out) = t.repo.rotate_key().unwrap();
    assert_eq!(out.objects_refused, vec![name]);
    assert_eq!(rotated.keyring().unwrap().metadata_floor(), out.epoch, "the floor is raised");
}
