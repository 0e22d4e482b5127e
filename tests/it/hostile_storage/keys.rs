//! Attacks on the keys: substituting them, undoing a revocation, rolling them back, and
//! tampering with the clear epoch field that key retirement reads.

use std::sync::Arc;

use cairn_engine::chunker::ChunkerParams;
use cairn_engine::crypto::{Key32, SecretBytes};
use cairn_engine::format::FORMAT_VERSION;
use cairn_engine::format::config::{CONFIG_NAME, Config};
use cairn_engine::format::envelope::{self, ObjectKind};
use cairn_engine::format::slot::SlotDoc;
use cairn_engine::keys::{self, Keyring, OpenSecret};
use cairn_engine::storage::{PutMode, Storage};
use cairn_engine::{Error, Repository};

use super::adversary::{self, CliRepo, Recording};

fn slots(storage: &dyn Storage) -> Vec<(String, SlotDoc)> {
    storage
        .list("keys/")
        .unwrap()
        .into_iter()
        .map(|n| (n.clone(), SlotDoc::decode(&storage.get(&n).unwrap(), &n).unwrap()))
        .collect()
}

/// The storage makes its own K*, keyring (its own K_id, K_cdc, K_audit, data keys) and config,
/// seals K* to every slot's public key (which needs no secret), and hides the snapshots and
/// the index. A client that typed the right password must refuse before it writes a byte:
/// otherwise it would chunk, name and seal the next backup under keys the storage knows.
#[test]
fn substituted_keys_are_refused_before_the_client_writes_a_byte() {
    let r = CliRepo::new();
    let storage = r.storage();
    let slots = slots(storage.as_ref());
    let repository_id = slots[0].1.repository_id;
    let evil_k = Key32::random().unwrap();
    let evil_ring = Keyring::generate(repository_id).unwrap();
    for name in storage.list("keyring/").unwrap() {
        storage.delete(&name).unwrap();
    }
    let ring_name = keys::keyring_name(&evil_k);
    let sealed_ring = evil_ring.seal(&keys::keyring_seal_key(&evil_k), &ring_name).unwrap();
    storage.put(&ring_name, &sealed_ring, PutMode::CreateNew).unwrap();
    for (name, slot) in &slots {
        storage.put(name, &keys::reseal_slot(slot, &evil_k).unwrap().encode(), PutMode::Overwrite).unwrap();
    }
    let config = Config {
        format_version: FORMAT_VERSION,
        repository_id,
        chunker: ChunkerParams::default(),
        pack_target_size: 16 << 20,
        zstd_level: 3,
        created_ns: 0,
    };
    let (epoch, key) = evil_ring.current();
    let sealed = envelope::seal(key, epoch, ObjectKind::Config, CONFIG_NAME.as_bytes(), &config.encode()).unwrap();
    storage.put(CONFIG_NAME, &sealed, PutMode::Overwrite).unwrap();
    for prefix in ["snapshots/", "index/", "audit/"] {
        for name in storage.list(prefix).unwrap() {
            storage.delete(&name).unwrap();
        }
    }
    let before = r.objects();
    // The client that saw the real repository, and a new machine that never did: the slot's
    // own binding refuses the keys for both, with the password and with the recovery code.
    for cmd in [r.cli("cache"), r.cli("new-machine"), r.cli_recovery("new-machine-2")] {
        let mut cmd = cmd;
        cmd.arg("snapshot").arg(r.p("src"));
        let (code, text) = r.run(cmd);
        assert_eq!(code, 12, "{text}");
        assert!(text.contains("the keys of the repository changed"), "{text}");
    }
    assert!(r.objects() == before, "a refused client wrote to the repository");
}

/// Every keyring the rotation writes, captured by the storage as it is written, holds no key
/// of the new epoch under the old K: a removed holder who kept the old K learns nothing new.
#[test]
fn a_keyring_captured_mid_rotation_gives_the_old_key_no_new_data_key() {
    let r = CliRepo::new();
    let recording = Recording::new(r.storage());
    let storage: Arc<dyn Storage> = recording.clone();
    let secret = OpenSecret::Password(SecretBytes::from("hostile storage test password".to_string()));
    let repo = Repository::open(storage, &secret, r.p("engine-cache")).unwrap();
    let old_k = Key32::from_bytes(repo.key_material_for_tests()[0]);
    let repository_id = repo.config().repository_id;
    let (_, outcome) = repo.rotate_key().unwrap();
    let written = recording.written("keyring/");
    assert!(!written.is_empty());
    for (name, bytes) in written {
        if let Ok(ring) = Keyring::open(&bytes, &keys::keyring_seal_key(&old_k), &name, repository_id) {
            assert!(
                !ring.epochs().contains(&outcome.epoch),
                "{name}, sealed under the old K, holds the key of new epoch {}",
                outcome.epoch
            );
        }
    }
}

/// A slot removed with `key remove` and put back by the storage opens nothing, before and
/// after a rotation, and the rotation does not re-seal it.
#[test]
fn a_removed_slot_put_back_opens_nothing() {
    let r = CliRepo::new();
    let storage = r.storage();
    let (code, text) = r.run({
        let mut c = r.cli("cache");
        c.args(["--json", "key", "list"]);
        c
    });
    assert_eq!(code, 0, "{text}");
    let list: serde_json::Value = serde_json::from_str(&text).unwrap();
    let recovery =
        list.as_array().unwrap().iter().find(|s| s["kind"] == "recovery").unwrap()["id"].as_str().unwrap().to_string();
    let name = format!("keys/{recovery}");
    let kept = storage.get(&name).unwrap();
    r.cli("cache").args(["key", "remove", &recovery]).assert().success();
    storage.put(&name, &kept, PutMode::CreateNew).unwrap();
    let open_with_code = || {
        let mut c = r.cli_recovery("recovery-holder");
        c.arg("snapshots");
        r.run(c)
    };
    let (code, text) = open_with_code();
    assert_eq!(code, 12, "the removed slot opened the repository: {text}");
    assert!(text.contains("not one of the repository's key slots"), "{text}");
    r.cli("cache").args(["key", "rotate"]).assert().success();
    assert_eq!(storage.get(&name).unwrap(), kept, "the rotation re-sealed a slot that was removed");
    let (code, text) = open_with_code();
    assert_eq!(code, 12, "the removed slot opened the repository after the rotation: {text}");
}

/// The storage serves back the slots and keyring from before a rotation (a versioned bucket).
/// A client that saw the rotation refuses them before writing.
#[test]
fn keys_rolled_back_to_before_a_rotation_are_refused() {
    let r = CliRepo::new();
    let storage = r.storage();
    let prefixes = ["keys/", "keyring/"];
    let before_rotation = adversary::capture(storage.as_ref(), &prefixes);
    r.cli("cache").args(["key", "rotate"]).assert().success();
    adversary::replay(storage.as_ref(), &prefixes, &before_rotation);
    let before = r.objects();
    let (code, text) = r.run({
        let mut c = r.cli("cache");
        c.arg("snapshot").arg(r.p("src"));
        c
    });
    assert_eq!(code, 12, "{text}");
    assert!(text.contains("rolled back to before a key rotation"), "{text}");
    assert!(r.objects() == before, "a refused client wrote to the repository");
}

/// Offset of a pack's locator envelope, whose clear epoch field says the pack's epoch.
fn locator_offset(pack: &[u8]) -> usize {
    pack.len() - cairn_engine::format::pack::LOCATOR_LEN
}

/// A rotation re-seals every small object under the new epoch, so only packs still use epoch
/// 0. The storage rewrites the clear epoch field of every pack's locator to say 1, so epoch 0
/// looks unused. `key retire-epoch 0` must not drop the key: it decides from authenticated
/// bytes only, and the data stays readable once the edit is undone.
#[test]
fn a_tampered_clear_epoch_does_not_retire_a_key_in_use() {
    let r = CliRepo::new();
    r.cli("cache").args(["key", "rotate"]).assert().success();
    let storage = r.storage();
    let original = r.objects();
    for (name, bytes) in
        original.iter().filter(|(n, _)| ["config", "snapshots/", "index/", "audit/"].iter().any(|p| n.starts_with(p)))
    {
        assert_eq!(bytes[1..5], 1u32.to_le_bytes(), "{name} was re-sealed by the rotation");
    }
    let mut edited = 0;
    for (name, bytes) in original.iter().filter(|(n, _)| n.starts_with("data/")) {
        let at = locator_offset(bytes);
        assert_eq!(bytes[at + 1..at + 5], 0u32.to_le_bytes(), "{name} is sealed under epoch 0");
        let mut b = bytes.clone();
        b[at + 1..at + 5].copy_from_slice(&1u32.to_le_bytes());
        storage.put(name, &b, PutMode::Overwrite).unwrap();
        edited += 1;
    }
    assert!(edited >= 2, "data and tree packs: {edited}");
    let (code, text) = r.run({
        let mut c = r.cli("cache");
        c.args(["key", "retire-epoch", "0"]);
        c
    });
    assert_ne!(code, 0, "epoch 0 was retired: {text}");
    // Undo the edit: the key of epoch 0 is still there and everything restores.
    for (name, bytes) in &original {
        storage.put(name, bytes, PutMode::Overwrite).unwrap();
    }
    let target = r.p("restored");
    r.cli("cache").args(["restore", "latest", "--target"]).arg(&target).assert().success();
    let restored = crate::support::restored_path(&target, &r.p("src"));
    crate::support::assert_same_tree(&r.p("src"), &restored);
}

/// Engine-level: what opening through a substituted slot returns.
#[test]
fn the_engine_names_substituted_keys_as_such() {
    let r = CliRepo::new();
    let storage = r.storage();
    let slots = slots(storage.as_ref());
    let evil_k = Key32::random().unwrap();
    let evil_ring = Keyring::generate(slots[0].1.repository_id).unwrap();
    let ring_name = keys::keyring_name(&evil_k);
    storage
        .put(&ring_name, &evil_ring.seal(&keys::keyring_seal_key(&evil_k), &ring_name).unwrap(), PutMode::CreateNew)
        .unwrap();
    for (name, slot) in &slots {
        storage.put(name, &keys::reseal_slot(slot, &evil_k).unwrap().encode(), PutMode::Overwrite).unwrap();
    }
    let secret = OpenSecret::Password(SecretBytes::from("hostile storage test password".to_string()));
    match Repository::open(storage, &secret, r.p("engine-cache")) {
        Err(Error::KeysChanged(why)) => assert!(why.contains("not the one it was made for"), "{why}"),
        other => panic!("expected KeysChanged, got {other:?}"),
    }
}

/// A holder removed before a rotation kept the old data key. After the rotation, a snapshot it
/// forges under the old epoch (here: an old snapshot's plaintext sealed under a new name) is
/// refused: every snapshot, index segment, audit entry and the config were re-sealed under the
/// new epoch, and older epochs no longer seal metadata.
#[test]
fn metadata_forged_with_a_revoked_key_is_refused_after_a_rotation() {
    let r = CliRepo::new();
    let secret = OpenSecret::Password(SecretBytes::from("hostile storage test password".to_string()));
    let genuine = r.storage().list("snapshots/").unwrap().remove(0);
    let (old_data_key, plain) = {
        let repo = Repository::open(r.storage(), &secret, r.p("revoked-holder")).unwrap();
        (repo.key_material_for_tests()[4], repo.load_object(ObjectKind::Snapshot, &genuine).unwrap())
    };
    r.cli("cache").args(["key", "rotate"]).assert().success();
    let forged_id = cairn_engine::ObjectId([0x5a; 32]);
    let name = format!("snapshots/{}", forged_id.to_hex());
    let sealed =
        envelope::seal(&Key32::from_bytes(old_data_key), 0, ObjectKind::Snapshot, name.as_bytes(), &plain).unwrap();
    r.storage().put(&name, &sealed, PutMode::CreateNew).unwrap();
    let repo = Repository::open(r.storage(), &secret, r.p("engine-cache")).unwrap();
    match repo.load_snapshot(&forged_id) {
        Err(Error::Corrupt { why, .. }) => assert!(why.contains("rotated away"), "{why}"),
        other => panic!("the forged snapshot was accepted: {other:?}"),
    }
    // The genuine snapshot was re-sealed and still loads.
    let genuine_id = cairn_engine::ObjectId::from_hex(genuine.trim_start_matches("snapshots/")).unwrap();
    repo.load_snapshot(&genuine_id).unwrap();
}

/// The storage serves back the keyring and slots from before a `key remove` (same K, so no
/// epoch changed). The client that removed the slot refuses them (the keyring's revision went
/// back), so neither the removed slot opens through it nor does its next rotation re-seal the
/// new key to the removed slot.
#[test]
fn a_keyring_replayed_to_before_a_slot_removal_is_refused() {
    let r = CliRepo::new();
    let storage = r.storage();
    let prefixes = ["keys/", "keyring/"];
    let before_removal = adversary::capture(storage.as_ref(), &prefixes);
    let recovery = slots(storage.as_ref())
        .into_iter()
        .find(|(_, s)| s.kind.name() == "recovery")
        .map(|(_, s)| s.id.to_hex())
        .unwrap();
    r.cli("cache").args(["key", "remove", &recovery]).assert().success();
    adversary::replay(storage.as_ref(), &prefixes, &before_removal);
    let kept = storage.get(&format!("keys/{recovery}")).unwrap();
    for args in [vec!["snapshots"], vec!["key", "rotate"]] {
        let (code, text) = r.run({
            let mut c = r.cli("cache");
            c.args(&args);
            c
        });
        assert_eq!(code, 12, "{args:?}: {text}");
        assert!(text.contains("older copy was served back"), "{args:?}: {text}");
    }
    assert_eq!(storage.get(&format!("keys/{recovery}")).unwrap(), kept, "the removed slot was re-sealed");
}

/// A holder removed and rotated away kept K_id, K_cdc and K_audit. With the storage, it forges
/// a whole keyring (same identity, epochs of its own above the current one, the victim's slot
/// listed) sealed under a K of its own, and seals that K to the victim's slot. A client that saw
/// the rotation refuses it: the key of the epoch it pinned is not there.
#[test]
fn a_keyring_forged_by_a_revoked_holder_is_refused_by_a_client_that_saw_the_rotation() {
    let r = CliRepo::new();
    let secret = OpenSecret::Password(SecretBytes::from("hostile storage test password".to_string()));
    let (repository_id, material) = {
        let repo = Repository::open(r.storage(), &secret, r.p("revoked-holder")).unwrap();
        (repo.config().repository_id, repo.key_material_for_tests())
    };
    r.cli("cache").args(["key", "rotate"]).assert().success();
    let storage = r.storage();
    let k = |i: usize| Key32::from_bytes(material[i]);
    let forged =
        Keyring::from_parts(repository_id, k(1), k(2), k(3), k(4)).with_new_epoch().unwrap().with_new_epoch().unwrap();
    let mut forged = forged;
    let slots = slots(storage.as_ref());
    for (_, slot) in &slots {
        forged = forged.with_slot(slot.id, &slot.public_key).unwrap();
    }
    let evil_k = Key32::random().unwrap();
    for name in storage.list("keyring/").unwrap() {
        storage.delete(&name).unwrap();
    }
    let ring_name = keys::keyring_name(&evil_k);
    storage
        .put(&ring_name, &forged.seal(&keys::keyring_seal_key(&evil_k), &ring_name).unwrap(), PutMode::CreateNew)
        .unwrap();
    for (name, slot) in &slots {
        storage.put(name, &keys::reseal_slot(slot, &evil_k).unwrap().encode(), PutMode::Overwrite).unwrap();
    }
    let before = r.objects();
    let (code, text) = r.run({
        let mut c = r.cli("cache");
        c.arg("snapshot").arg(r.p("src"));
        c
    });
    assert_eq!(code, 12, "{text}");
    assert!(text.contains("is not the one this client saw"), "{text}");
    assert!(r.objects() == before, "a refused client wrote to the repository");
}

/// A repository whose slots are of the version before the identity binding (format version 1)
/// is refused with a message that says why and what to do, not opened: accepting such slots
/// at all would let the storage serve them back to undo the binding.
#[test]
fn slots_without_the_identity_binding_are_refused_with_a_clear_message() {
    let r = CliRepo::new();
    let storage = r.storage();
    for (name, _) in slots(storage.as_ref()) {
        let mut doc: serde_json::Value = serde_json::from_slice(&storage.get(&name).unwrap()).unwrap();
        doc["version"] = serde_json::json!(2);
        storage.put(&name, &serde_json::to_vec(&doc).unwrap(), PutMode::Overwrite).unwrap();
    }
    let before = r.objects();
    let (code, text) = r.run({
        let mut c = r.cli("new-machine");
        c.arg("snapshots");
        c
    });
    assert_ne!(code, 0, "{text}");
    assert!(text.contains("format version 1") && text.contains("new repository"), "{text}");
    assert!(r.objects() == before);
}
