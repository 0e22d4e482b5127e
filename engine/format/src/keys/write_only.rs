//! Write-only slots (SPEC §7.6): opened by a password, a recovery code, a key file or an HSM
//! key like any slot, they yield a [`WriteKit`] instead of the repository key K.
//!
//! The slot's wrapped secret carries, beside its X25519 secret and the repository identity, the
//! key that authenticates its kit (random per slot); its `sealed_key` holds the kit and the
//! kit's MAC, sealed to the slot's public key. The keyring lists the slot as write-only with the
//! same key, so a rotation issues a new kit (the new epoch's reader key) without the slot's
//! secret, and takes the slot's access from the keyring, never from its editable document.

use zeroize::Zeroizing;

use crate::crypto::{Key32, SecretBytes};
use crate::error::{Error, Result};
use crate::id::ObjectId;
use crate::names::Dir;
use crate::slot::{SlotAccess, SlotDoc};

use super::kit::forged;
use super::slots::{
    keyring_id, new_slot_doc, open_with, seal_info, seal_to_slot, unwrap_secret, wrap_secret, x25519_shared_key,
};
use super::{HsmSession, Keyring, NewSlotSecret, OpenSecret, WriteKit};

/// The MAC over a kit: keyed BLAKE3 of `"cairn\0kit\0" || sealed_key AD || kit bytes`.
fn kit_mac(mac_key: &Key32, slot: &SlotDoc, kit: &[u8]) -> blake3::Hash {
    let mut h = blake3::Hasher::new_keyed(mac_key.expose());
    h.update(b"cairn\0kit\0");
    h.update(&slot.sealed_key_ad());
    h.update(kit);
    h.finalize()
}

/// Issues `ring`'s current kit to `slot` (K is the key `ring` is sealed under: the slot names
/// its keyring, so rotation bookkeeping treats it like any slot; `config` is the repository's
/// config plaintext).
fn seal_kit(slot: &mut SlotDoc, k: &Key32, ring: &Keyring, mac_key: &Key32, config: &[u8]) -> Result<()> {
    slot.keyring = keyring_id(k);
    let kit = ring.write_kit(slot.id, config)?.encode();
    let mac = kit_mac(mac_key, slot, &kit);
    let mut plain = Zeroizing::new(kit.to_vec());
    plain.extend_from_slice(mac.as_bytes());
    seal_to_slot(slot, &plain)
}

/// Makes a write-only slot with id `id` opened by `secret`, for the repository whose keyring
/// is `ring` (sealed under `k`) and whose config plaintext is `config`; `kit_mac_key` (random)
/// authenticates its kits, and the caller lists the slot in the keyring with it
/// ([`Keyring::with_write_only_slot`]).
pub fn create_write_only_slot(
    id: ObjectId,
    k: &Key32,
    ring: &Keyring,
    config: &[u8],
    kit_mac_key: &Key32,
    secret: NewSlotSecret<'_>,
    label: &str,
) -> Result<SlotDoc> {
    let (mut slot, sk) = new_slot_doc(ring.repository_id(), id, SlotAccess::WriteOnly, &secret)?;
    let mut plain = Zeroizing::new(Vec::with_capacity(96));
    plain.extend_from_slice(sk.as_bytes());
    plain.extend_from_slice(&ring.identity().0);
    plain.extend_from_slice(kit_mac_key.expose());
    let info = wrap_secret(&mut slot, SecretBytes::new(plain.to_vec()), secret, label)?;
    seal_kit(&mut slot, k, ring, kit_mac_key, config)?;
    seal_info(&mut slot, &ring.slot_info_key(), &info)?;
    Ok(slot)
}

/// The same write-only slot with a kit from `ring` (sealed under `k`): after a rotation, the
/// new epoch's reader key. The slot's secret is not needed. `ring` must list the slot as
/// write-only: its MAC key comes from there.
pub fn reissue_kit(slot: &SlotDoc, k: &Key32, ring: &Keyring, config: &[u8]) -> Result<SlotDoc> {
    if slot.access != SlotAccess::WriteOnly || !ring.is_write_only(slot.id) {
        return Err(Error::InvalidInput("only slots the keyring lists as write-only hold a kit".into()));
    }
    let mac_key = ring.kit_mac_key(slot.id)?.clone();
    let mut out = slot.clone();
    seal_kit(&mut out, k, ring, &mac_key, config)?;
    Ok(out)
}

/// Opens a write-only slot's kit with `secret`. `Ok(None)` when the secret does not open the
/// slot; an error when the kit does not authenticate (replaced) or names another repository.
pub fn open_write_only_slot(slot: &SlotDoc, secret: &OpenSecret, hsm: Option<&HsmSession>) -> Result<Option<WriteKit>> {
    let object = Dir::Keys.object(&slot.id);
    if slot.access != SlotAccess::WriteOnly {
        return Ok(None);
    }
    let Some((sk, identity, Some(mac_key))) = unwrap_secret(slot, secret, hsm)? else {
        return Ok(None);
    };
    let pk: [u8; 32] = slot.public_key.as_slice().try_into().map_err(|_| Error::corrupt(&object, "bad public key"))?;
    let (epk, sealed) =
        slot.sealed_key.split_at_checked(32).ok_or_else(|| Error::corrupt(&object, "sealed kit is too short"))?;
    let epk: [u8; 32] = epk.try_into().map_err(|_| Error::corrupt(&object, "bad ephemeral key"))?;
    let wk = x25519_shared_key(&sk, &epk, &epk, &pk)
        .ok_or_else(|| Error::corrupt(&object, "ephemeral key is a low-order point"))?;
    let plain = Zeroizing::new(open_with(&wk, &slot.sealed_key_ad(), sealed).ok_or_else(|| forged(&object))?);
    let (kit, mac) = plain.split_at_checked(plain.len().saturating_sub(32)).ok_or_else(|| forged(&object))?;
    // blake3::Hash compares in constant time.
    if mac.len() != 32 || kit_mac(&mac_key, slot, kit) != blake3::Hash::from_slice(mac).map_err(|_| forged(&object))? {
        return Err(forged(&object));
    }
    let kit = WriteKit::decode(kit, slot.id, &object)?;
    if kit.identity() != identity || kit.repository_id() != slot.repository_id {
        return Err(forged(&object));
    }
    Ok(Some(kit))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::{self, ObjectKind};
    use crate::keys::{RecoveryCode, open_slot, opening_key, reseal_slot};

    const CONFIG: &[u8] = b"\x01config bytes";

    struct Fixture {
        k: Key32,
        ring: Keyring,
        slot: SlotDoc,
        secret: OpenSecret,
    }

    fn fixture() -> Fixture {
        let ring = Keyring::generate(ObjectId([1; 32])).unwrap();
        let k = Key32::random().unwrap();
        let code = RecoveryCode::from_entropy([7; 18]);
        let mac = Key32::random().unwrap();
        let id = ObjectId([2; 32]);
        let slot = create_write_only_slot(id, &k, &ring, CONFIG, &mac, NewSlotSecret::Recovery(&code), "web1").unwrap();
        let ring = ring.with_write_only_slot(id, &slot.public_key, mac).unwrap();
        Fixture { k, ring, slot, secret: OpenSecret::Recovery(code) }
    }

    fn open_as_full(ring: &Keyring, sealed: &[u8], kind: ObjectKind, name: &[u8]) -> Result<Vec<u8>> {
        envelope::open_sealed(sealed, kind, name, "o", |to| ring.open_key(kind, to, "o"))
    }

    #[test]
    fn a_write_only_slot_yields_a_kit_whose_objects_full_keys_read_and_it_cannot() {
        let f = fixture();
        assert_eq!(SlotDoc::decode(&f.slot.encode(), "s").unwrap(), f.slot, "the document round-trips");
        let kit = open_write_only_slot(&f.slot, &f.secret, None).unwrap().expect("the secret opens the slot");
        assert_eq!((kit.slot(), kit.epoch(), kit.identity()), (f.slot.id, 0, f.ring.identity()));
        assert_eq!(kit.chunk_id(b"content"), f.ring.chunk_id(b"content"), "ids deduplicate with full keys");
        assert_eq!(kit.cdc_key(), f.ring.cdc_key());
        assert_eq!(kit.config_plaintext(), CONFIG);
        // What the kit seals, full keys open; nothing the kit yields opens it, or anything a
        // full key sealed.
        let mine = kit.sealer().unwrap().seal(ObjectKind::Snapshot, b"snapshots/a", b"mine").unwrap();
        assert_eq!(open_as_full(&f.ring, &mine, ObjectKind::Snapshot, b"snapshots/a").unwrap(), b"mine");
        let theirs = envelope::seal(f.ring.current().1, 0, ObjectKind::Snapshot, b"snapshots/b", b"theirs").unwrap();
        for key in kit.all_keys_for_tests() {
            let key = Key32::from_bytes(key);
            assert!(envelope::open(&theirs, ObjectKind::Snapshot, b"snapshots/b", "o", |_| Ok(&key)).is_err());
            let as_reader = envelope::open_sealed(&mine, ObjectKind::Snapshot, b"snapshots/a", "o", |to| {
                opening_key(&key, to, "o")
            });
            assert!(as_reader.is_err(), "a kit key opens what the kit sealed");
        }
        // The slot never opens K, and other secrets open nothing.
        assert!(open_slot(&f.slot, &f.secret, None).is_err());
        let other = OpenSecret::Recovery(RecoveryCode::from_entropy([8; 18]));
        assert!(open_write_only_slot(&f.slot, &other, None).unwrap().is_none());
        assert!(reseal_slot(&f.slot, &f.k).is_err(), "K is never sealed to a write-only slot");
    }

    #[test]
    fn the_storage_can_neither_forge_a_kit_nor_make_the_slot_full() {
        let f = fixture();
        // A kit from keys the storage made (its own keyring, K, reader key and MAC key), sealed
        // to the slot's public key: the MAC key it cannot know does not match.
        let evil_ring = Keyring::generate(ObjectId([1; 32]))
            .unwrap()
            .with_write_only_slot(f.slot.id, &f.slot.public_key, Key32::random().unwrap())
            .unwrap();
        let forged = reissue_kit(&f.slot, &Key32::random().unwrap(), &evil_ring, CONFIG).unwrap();
        let err = open_write_only_slot(&forged, &f.secret, None).unwrap_err();
        assert!(matches!(err, Error::KeysChanged(_)), "{err}");
        // Flipping the slot to full (and giving it a K-sized sealed key) unbinds its secret.
        let mut flipped = f.slot.clone();
        flipped.access = SlotAccess::Full;
        assert!(SlotDoc::decode(&flipped.encode(), "s").is_err(), "lengths no longer fit");
        flipped.wrapped_secret.truncate(80);
        flipped.sealed_key.truncate(104);
        assert_eq!(open_slot(&flipped, &f.secret, None).unwrap(), None);
        // Any byte of the sealed kit changed: refused, never a different kit.
        for i in (0..f.slot.sealed_key.len()).step_by(7) {
            let mut t = f.slot.clone();
            t.sealed_key[i] ^= 1;
            assert!(open_write_only_slot(&t, &f.secret, None).is_err(), "byte {i}");
        }
    }

    #[test]
    fn a_rotation_issues_the_new_epochs_reader_key_without_the_slot_secret() {
        let f = fixture();
        let old = open_write_only_slot(&f.slot, &f.secret, None).unwrap().unwrap();
        let before = old.sealer().unwrap().seal(ObjectKind::IndexSegment, b"index/a", b"old").unwrap();
        let rotated = f.ring.rotated(&[]).unwrap();
        let k2 = Key32::random().unwrap();
        let moved = reissue_kit(&f.slot, &k2, &rotated, CONFIG).unwrap();
        assert_eq!(moved.wrapped_secret, f.slot.wrapped_secret, "the slot secret is untouched");
        assert_ne!(moved.keyring, f.slot.keyring);
        let kit = open_write_only_slot(&moved, &f.secret, None).unwrap().unwrap();
        assert_eq!(kit.epoch(), 1);
        assert!(kit.revision() > old.revision());
        let after = kit.sealer().unwrap().seal(ObjectKind::IndexSegment, b"index/b", b"new").unwrap();
        assert_eq!(envelope::epoch_of(&after, "o").unwrap(), 1);
        // The rotated keyring reads both epochs; the old one cannot read the new epoch.
        assert_eq!(open_as_full(&rotated, &before, ObjectKind::IndexSegment, b"index/a").unwrap(), b"old");
        assert_eq!(open_as_full(&rotated, &after, ObjectKind::IndexSegment, b"index/b").unwrap(), b"new");
        assert!(open_as_full(&f.ring, &after, ObjectKind::IndexSegment, b"index/b").is_err());
        assert!(reissue_kit(&f.slot, &k2, &rotated, CONFIG).is_ok());
        // A keyring that does not list the slot as write-only issues it nothing.
        let unlisted = rotated.without_slot(f.slot.id, None).with_slot(f.slot.id, &f.slot.public_key).unwrap();
        assert!(reissue_kit(&f.slot, &k2, &unlisted, CONFIG).is_err());
    }
}
