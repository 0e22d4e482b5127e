//! Key slots. Each slot has an X25519 key pair; its secret half is wrapped under the slot's
//! secret (password, recovery code, HSM key) and K is sealed to its public half. Adding or
//! removing a slot never touches data, and rotation re-seals a new K to every slot's public key
//! without any slot's secret.
//!
//! Sealing to a public key authenticates nothing: anyone, the storage included, can seal a K of
//! their own to it. So the wrapped secret also carries the repository's identity (a hash of
//! K_id, [`super::RepoIdentity`]), authenticated by the slot's secret: a slot opens only a
//! keyring whose K_id it was made for, and a storage that substitutes K, the keyring and K_id
//! is refused before anything is written under its keys.

use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroize;

use crate::crypto::{
    Argon2Params, Key32, NONCE_LEN, SecretBytes, TAG_LEN, argon2id, context, derive, open_detached, random_array,
    seal_detached,
};
use crate::error::{Error, Result};
use crate::id::ObjectId;
use crate::names::Dir;
use crate::now_ns;
use crate::slot::{SEALED_KEY_LEN, SLOT_SECRET_LEN, SLOT_VERSION, SlotAccess, SlotDoc, SlotInfo, SlotKind};

use super::hsm::{HsmConfig, HsmSession};
use super::{KeyFile, RecoveryCode, RepoIdentity};

/// A secret that may open a slot.
#[derive(Debug, Clone)]
pub enum OpenSecret {
    /// A password (opens password slots).
    Password(SecretBytes),
    /// A recovery code (opens recovery slots).
    Recovery(RecoveryCode),
    /// A key on a PKCS#11 token (opens HSM slots).
    Hsm(HsmConfig),
    /// A key file (opens the key-file slot it names).
    KeyFile(KeyFile),
}

impl OpenSecret {
    /// Whether this secret can open `slot` at all: a slot of its kind (for a key file, the one
    /// slot it names).
    pub fn fits(&self, slot: &SlotDoc) -> bool {
        match (self, &slot.kind) {
            (OpenSecret::Password(_), SlotKind::Password { .. })
            | (OpenSecret::Recovery(_), SlotKind::Recovery)
            | (OpenSecret::Hsm(_), SlotKind::Hsm) => true,
            (OpenSecret::KeyFile(file), SlotKind::KeyFile) => file.slot == slot.id,
            (OpenSecret::Password(_) | OpenSecret::Recovery(_) | OpenSecret::Hsm(_) | OpenSecret::KeyFile(_), _) => {
                false
            }
        }
    }
}

/// The secret of a slot being created.
#[derive(Debug)]
pub enum NewSlotSecret<'a> {
    /// A password with its Argon2id cost.
    Password(&'a SecretBytes, Argon2Params),
    /// A recovery code.
    Recovery(&'a RecoveryCode),
    /// A logged-in HSM session and the labels to remember (sealed) in the slot.
    Hsm(&'a HsmSession, &'a HsmConfig),
    /// A key file made for this slot (its slot id is the slot's).
    KeyFile(&'a KeyFile),
}

/// The hex part of the keyring name K opens.
pub(super) fn keyring_id(k: &Key32) -> String {
    Dir::Keyring.file_of(&super::keyring_name(k)).unwrap_or_default().to_string()
}

fn secret_key_of(kind: &SlotKind, salt: &[u8], secret: &OpenSecret) -> Result<Option<Key32>> {
    match (kind, secret) {
        (SlotKind::Password { argon2id: params }, OpenSecret::Password(pw)) => {
            Ok(Some(argon2id(pw.expose(), salt, *params)?))
        }
        (SlotKind::Recovery, OpenSecret::Recovery(code)) => Ok(Some(recovery_key(code, salt))),
        (SlotKind::KeyFile, OpenSecret::KeyFile(file)) => Ok(Some(file.wrapping_key(salt))),
        _ => Ok(None),
    }
}

fn recovery_key(code: &RecoveryCode, salt: &[u8]) -> Key32 {
    let mut material = code.bytes().to_vec();
    material.extend_from_slice(salt);
    let k = derive(context::RECOVERY_SLOT, &material);
    material.zeroize();
    k
}

pub(super) fn seal_with(key: &Key32, ad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>> {
    let nonce: [u8; NONCE_LEN] = random_array()?;
    let mut buf = plaintext.to_vec();
    let tag = seal_detached(key, &nonce, ad, &mut buf)?;
    let mut out = nonce.to_vec();
    out.append(&mut buf);
    out.extend_from_slice(&tag);
    Ok(out)
}

/// Opens `nonce || ct || tag`; `None` when it does not authenticate.
pub(super) fn open_with(key: &Key32, ad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
    if sealed.len() < NONCE_LEN + TAG_LEN {
        return None;
    }
    let (nonce, rest) = sealed.split_at(NONCE_LEN);
    let (ct, tag) = rest.split_at(rest.len() - TAG_LEN);
    let nonce: [u8; NONCE_LEN] = nonce.try_into().ok()?;
    let tag: [u8; TAG_LEN] = tag.try_into().ok()?;
    let mut buf = ct.to_vec();
    if open_detached(key, &nonce, ad, &mut buf, &tag) {
        Some(buf)
    } else {
        buf.zeroize();
        None
    }
}

pub(super) fn x25519_shared_key(
    secret: &StaticSecret,
    public: &[u8; 32],
    epk: &[u8; 32],
    slot_pk: &[u8; 32],
) -> Option<Key32> {
    let shared = secret.diffie_hellman(&PublicKey::from(*public));
    if !shared.was_contributory() {
        return None;
    }
    let mut material = Vec::with_capacity(96);
    material.extend_from_slice(shared.as_bytes());
    material.extend_from_slice(epk);
    material.extend_from_slice(slot_pk);
    let k = derive(context::SLOT_SEAL, &material);
    material.zeroize();
    Some(k)
}

/// Seals K to the slot's public key and points the slot at K's keyring.
fn seal_repository_key(slot: &mut SlotDoc, k: &Key32) -> Result<()> {
    slot.keyring = keyring_id(k);
    seal_to_slot(slot, k.expose())
}

/// Puts `plaintext` (K, or a write kit) in the slot's `sealed_key`, sealed to its public key
/// under a fresh ephemeral key, with the sealed-key AD (which names the slot's keyring).
pub(super) fn seal_to_slot(slot: &mut SlotDoc, plaintext: &[u8]) -> Result<()> {
    let pk: [u8; 32] =
        slot.public_key.as_slice().try_into().map_err(|_| Error::corrupt("key slot", "bad public key"))?;
    let eph = StaticSecret::from(random_array::<32>()?);
    let epk = PublicKey::from(&eph).to_bytes();
    let wk = x25519_shared_key(&eph, &pk, &epk, &pk)
        .ok_or_else(|| Error::corrupt(Dir::Keys.object(&slot.id), "slot public key is a low-order point"))?;
    let mut out = epk.to_vec();
    out.extend(seal_with(&wk, &slot.sealed_key_ad(), plaintext)?);
    slot.sealed_key = out;
    Ok(())
}

pub(super) fn seal_info(slot: &mut SlotDoc, info_key: &Key32, info: &SlotInfo) -> Result<()> {
    slot.info = seal_with(info_key, &slot.associated_data(), &info.encode())?;
    Ok(())
}

/// The slot's label, creation time and HSM labels, opened with the keyring's
/// [`super::Keyring::slot_info_key`].
pub fn slot_info(slot: &SlotDoc, info_key: &Key32) -> Result<SlotInfo> {
    let object = Dir::Keys.object(&slot.id);
    let plain = open_with(info_key, &slot.associated_data(), &slot.info)
        .ok_or_else(|| Error::corrupt(&object, "slot info does not authenticate"))?;
    SlotInfo::decode(&plain, &object)
}

/// What opening a slot yields: K, and the repository identity the slot was made for (the caller
/// checks it against the keyring K opens).
#[derive(Debug, PartialEq, Eq)]
pub struct OpenedSlot {
    /// The repository key the slot's `sealed_key` holds.
    pub key: Key32,
    /// The identity sealed with the slot's secret.
    pub identity: RepoIdentity,
}

/// The wrapped plaintext: the X25519 secret, then the repository identity.
pub(super) fn secret_plaintext(sk: &StaticSecret, identity: &RepoIdentity) -> SecretBytes {
    let mut plain = Vec::with_capacity(SLOT_SECRET_LEN);
    plain.extend_from_slice(sk.as_bytes());
    plain.extend_from_slice(&identity.0);
    SecretBytes::new(plain)
}

/// Makes a slot with id `id` that opens K with `secret`, for the repository whose identity is
/// `identity`; `info_key` seals its label.
pub fn create_slot(
    repository_id: ObjectId,
    id: ObjectId,
    k: &Key32,
    identity: &RepoIdentity,
    info_key: &Key32,
    secret: NewSlotSecret<'_>,
    label: &str,
) -> Result<SlotDoc> {
    let (mut slot, sk) = new_slot_doc(repository_id, id, SlotAccess::Full, &secret)?;
    let info = wrap_secret(&mut slot, secret_plaintext(&sk, identity), secret, label)?;
    seal_repository_key(&mut slot, k)?;
    seal_info(&mut slot, info_key, &info)?;
    Ok(slot)
}

/// A slot document with a fresh salt and key pair, its secret not wrapped yet.
pub(super) fn new_slot_doc(
    repository_id: ObjectId,
    id: ObjectId,
    access: SlotAccess,
    secret: &NewSlotSecret<'_>,
) -> Result<(SlotDoc, StaticSecret)> {
    let kind = match secret {
        NewSlotSecret::Password(pw, params) => {
            if pw.expose().is_empty() {
                return Err(Error::InvalidInput("empty password".into()));
            }
            params.validate()?;
            SlotKind::Password { argon2id: *params }
        }
        NewSlotSecret::Recovery(_) => SlotKind::Recovery,
        NewSlotSecret::Hsm(..) => SlotKind::Hsm,
        NewSlotSecret::KeyFile(file) => {
            if file.slot != id || file.repository_id != repository_id {
                return Err(Error::InvalidInput("the key file was made for another slot".into()));
            }
            SlotKind::KeyFile
        }
    };
    let salt: [u8; 32] = random_array()?;
    let sk = StaticSecret::from(random_array::<32>()?);
    let slot = SlotDoc {
        version: SLOT_VERSION,
        id,
        repository_id,
        kind,
        access,
        salt: salt.to_vec(),
        nonce: Vec::new(),
        wrapped_secret: Vec::new(),
        public_key: PublicKey::from(&sk).to_bytes().to_vec(),
        keyring: String::new(),
        sealed_key: Vec::new(),
        info: Vec::new(),
    };
    Ok((slot, sk))
}

/// Wraps `plain` (the slot's secret material) under `secret` into `slot`; returns the slot's
/// info, with the HSM labels for HSM slots.
pub(super) fn wrap_secret(
    slot: &mut SlotDoc,
    plain: SecretBytes,
    secret: NewSlotSecret<'_>,
    label: &str,
) -> Result<SlotInfo> {
    let ad = slot.associated_data();
    let salt = slot.salt.clone();
    let mut info = SlotInfo { label: label.to_string(), created_ns: now_ns(), hsm_token: None, hsm_key: None };
    let wrapping_key = match &secret {
        NewSlotSecret::Password(pw, params) => Some(argon2id(pw.expose(), &salt, *params)?),
        NewSlotSecret::Recovery(code) => Some(recovery_key(code, &salt)),
        NewSlotSecret::KeyFile(file) => Some(file.wrapping_key(&salt)),
        NewSlotSecret::Hsm(..) => None,
    };
    if let Some(wk) = wrapping_key {
        let sealed = seal_with(&wk, &ad, plain.expose())?;
        let (nonce, wrapped) = sealed.split_at(NONCE_LEN);
        slot.nonce = nonce.to_vec();
        slot.wrapped_secret = wrapped.to_vec();
    } else if let NewSlotSecret::Hsm(session, cfg) = secret {
        let (iv, wrapped) = session.seal(&ad, plain.expose())?;
        slot.nonce = iv.to_vec();
        slot.wrapped_secret = wrapped;
        info.hsm_token = Some(cfg.token.clone());
        info.hsm_key = Some(cfg.key_label.clone());
    }
    if slot.wrapped_secret.len() != slot.secret_len() + TAG_LEN {
        return Err(Error::Hsm("the token returned a ciphertext of unexpected length".into()));
    }
    Ok(info)
}

/// The same slot with K replaced by `new_k` (rotation): the slot's secret is not needed.
pub fn reseal_slot(slot: &SlotDoc, new_k: &Key32) -> Result<SlotDoc> {
    // Never K to a write-only slot: it gets a new kit (`reissue_kit`).
    if slot.access != SlotAccess::Full {
        return Err(Error::InvalidInput("a write-only slot is never sealed the repository key".into()));
    }
    let mut out = slot.clone();
    seal_repository_key(&mut out, new_k)?;
    Ok(out)
}

/// Tries to open K from `slot` with `secret` (and, for HSM slots, the logged-in `hsm`).
/// `Ok(None)` when the secret is of another kind or does not open this slot; errors only for
/// malformed slots and HSM failures. The caller MUST check the returned identity against the
/// keyring K opens: until then K authenticates nothing (see the module docs).
pub fn open_slot(slot: &SlotDoc, secret: &OpenSecret, hsm: Option<&HsmSession>) -> Result<Option<OpenedSlot>> {
    let object = Dir::Keys.object(&slot.id);
    if slot.access != SlotAccess::Full {
        return Err(Error::WrongKey(format!("{object} is a write-only slot: it does not open the repository key")));
    }
    let Some((sk, identity, _)) = unwrap_secret(slot, secret, hsm)? else {
        return Ok(None);
    };
    let pk: [u8; 32] = slot.public_key.as_slice().try_into().map_err(|_| Error::corrupt(&object, "bad public key"))?;
    if slot.sealed_key.len() != SEALED_KEY_LEN {
        return Err(Error::corrupt(&object, "sealed key has the wrong length"));
    }
    let (epk, sealed) = slot.sealed_key.split_at(32);
    let epk: [u8; 32] = epk.try_into().map_err(|_| Error::corrupt(&object, "bad ephemeral key"))?;
    let wk = x25519_shared_key(&sk, &epk, &epk, &pk)
        .ok_or_else(|| Error::corrupt(&object, "ephemeral key is a low-order point"))?;
    let mut k = open_with(&wk, &slot.sealed_key_ad(), sealed)
        .ok_or_else(|| Error::corrupt(&object, "the sealed repository key does not authenticate"))?;
    let mut arr = [0u8; 32];
    if k.len() == 32 {
        arr.copy_from_slice(&k);
    }
    k.zeroize();
    let key = Key32::from_bytes(arr);
    arr.zeroize();
    Ok(Some(OpenedSlot { key, identity }))
}

/// Unwraps the slot's secret with `secret`: its X25519 secret (checked against its public
/// key), the repository identity and, for write-only slots, the kit's MAC key. `Ok(None)` when
/// the secret is of another kind or does not open the slot.
pub(super) fn unwrap_secret(
    slot: &SlotDoc,
    secret: &OpenSecret,
    hsm: Option<&HsmSession>,
) -> Result<Option<(StaticSecret, RepoIdentity, Option<Key32>)>> {
    let ad = slot.associated_data();
    let sk_bytes = match (&slot.kind, hsm) {
        (SlotKind::Hsm, Some(session)) if matches!(secret, OpenSecret::Hsm(_)) => {
            match session.open_sealed(&ad, &slot.nonce, &slot.wrapped_secret)? {
                Some(b) => b,
                None => return Ok(None),
            }
        }
        (SlotKind::Hsm, _) => return Ok(None),
        (kind, _) => {
            let Some(wk) = secret_key_of(kind, &slot.salt, secret)? else {
                return Ok(None);
            };
            let mut sealed = slot.nonce.clone();
            sealed.extend_from_slice(&slot.wrapped_secret);
            match open_with(&wk, &ad, &sealed) {
                Some(b) => SecretBytes::new(b),
                None => return Ok(None),
            }
        }
    };
    let object = Dir::Keys.object(&slot.id);
    let plain = sk_bytes.expose();
    if plain.len() != slot.secret_len() {
        return Err(Error::corrupt(&object, "slot secret has the wrong length"));
    }
    let part = |range: std::ops::Range<usize>| -> Result<[u8; 32]> {
        plain.get(range).and_then(|b| b.try_into().ok()).ok_or_else(|| Error::corrupt(&object, "bad slot secret"))
    };
    let mut sk_arr = part(0..32)?;
    let sk = StaticSecret::from(sk_arr);
    sk_arr.zeroize();
    let identity = RepoIdentity(part(32..64)?);
    let kit_mac = match slot.access {
        SlotAccess::Full => None,
        SlotAccess::WriteOnly => {
            let mut m = part(64..96)?;
            let k = Key32::from_bytes(m);
            m.zeroize();
            Some(k)
        }
    };
    let pk: [u8; 32] = slot.public_key.as_slice().try_into().map_err(|_| Error::corrupt(&object, "bad public key"))?;
    if PublicKey::from(&sk).to_bytes() != pk {
        return Err(Error::corrupt(&object, "slot secret does not match its public key"));
    }
    Ok(Some((sk, identity, kit_mac)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDENTITY: RepoIdentity = RepoIdentity([7; 32]);

    fn opened(k: &Key32) -> Option<OpenedSlot> {
        Some(OpenedSlot { key: k.clone(), identity: IDENTITY })
    }

    fn setup() -> (ObjectId, Key32, Key32, SlotDoc, SecretBytes) {
        let repo = ObjectId([3; 32]);
        let k = Key32::random().unwrap();
        let info_key = Key32::random().unwrap();
        let pw = SecretBytes::from("pw".to_string());
        let slot = create_slot(
            repo,
            ObjectId([4; 32]),
            &k,
            &IDENTITY,
            &info_key,
            NewSlotSecret::Password(&pw, Argon2Params::MIN),
            "laptop",
        )
        .unwrap();
        (repo, k, info_key, slot, pw)
    }

    #[test]
    fn a_slot_opens_with_its_secret_only() {
        let (_, k, info_key, slot, pw) = setup();
        assert_eq!(open_slot(&slot, &OpenSecret::Password(pw), None).unwrap(), opened(&k));
        let wrong = OpenSecret::Password(SecretBytes::from("nope".to_string()));
        assert_eq!(open_slot(&slot, &wrong, None).unwrap(), None);
        let code = RecoveryCode::from_entropy([1; 18]);
        assert_eq!(open_slot(&slot, &OpenSecret::Recovery(code), None).unwrap(), None, "other kinds do not fit");
        assert_eq!(slot_info(&slot, &info_key).unwrap().label, "laptop");
        assert!(slot_info(&slot, &Key32::random().unwrap()).is_err());
    }

    #[test]
    fn a_key_file_opens_its_own_slot_only() {
        let (repo, k, info_key, _, pw) = setup();
        let id = ObjectId([5; 32]);
        let file = KeyFile::generate(repo, id).unwrap();
        let slot = create_slot(repo, id, &k, &IDENTITY, &info_key, NewSlotSecret::KeyFile(&file), "cron").unwrap();
        assert_eq!(slot.kind, SlotKind::KeyFile);
        let secret = OpenSecret::KeyFile(file.clone());
        assert!(secret.fits(&slot));
        assert_eq!(open_slot(&slot, &secret, None).unwrap(), opened(&k));
        // Another secret for the same slot, or the same file for another slot, opens nothing.
        let other = OpenSecret::KeyFile(KeyFile::generate(repo, id).unwrap());
        assert_eq!(open_slot(&slot, &other, None).unwrap(), None);
        let mut moved = slot.clone();
        moved.id = ObjectId([6; 32]);
        assert!(!secret.fits(&moved), "a key file names its slot");
        assert_eq!(open_slot(&slot, &OpenSecret::Password(pw), None).unwrap(), None);
        // A file made for another slot is not accepted when creating one.
        let foreign = KeyFile::generate(repo, ObjectId([7; 32])).unwrap();
        assert!(create_slot(repo, id, &k, &IDENTITY, &info_key, NewSlotSecret::KeyFile(&foreign), "").is_err());
    }

    #[test]
    fn resealing_moves_a_slot_to_a_new_key_without_its_secret() {
        let (_, k, info_key, slot, pw) = setup();
        let k2 = Key32::random().unwrap();
        let moved = reseal_slot(&slot, &k2).unwrap();
        assert_ne!(moved.keyring, slot.keyring);
        assert_eq!(moved.wrapped_secret, slot.wrapped_secret, "the slot secret is untouched");
        assert_eq!(open_slot(&moved, &OpenSecret::Password(pw.clone()), None).unwrap(), opened(&k2));
        assert_ne!(open_slot(&moved, &OpenSecret::Password(pw), None).unwrap(), opened(&k), "the old K is gone");
        assert_eq!(slot_info(&moved, &info_key).unwrap().label, "laptop");
    }

    #[test]
    fn tampering_is_an_error_or_a_refusal_never_a_wrong_key() {
        let (_, _, _, slot, pw) = setup();
        let secret = OpenSecret::Password(pw);
        // Every byte of the sealed key, the public key and the keyring name is bound.
        for i in 0..slot.sealed_key.len() {
            let mut t = slot.clone();
            t.sealed_key[i] ^= 1;
            assert!(open_slot(&t, &secret, None).is_err(), "sealed_key byte {i}");
        }
        let mut t = slot.clone();
        t.public_key[0] ^= 1;
        assert!(open_slot(&t, &secret, None).is_err());
        let mut t = slot.clone();
        t.keyring = "0".repeat(32);
        assert!(open_slot(&t, &secret, None).is_err());
        // The wrapped secret and the slot id are bound too: the secret no longer opens it.
        let mut t = slot.clone();
        t.wrapped_secret[5] ^= 1;
        assert_eq!(open_slot(&t, &secret, None).unwrap(), None);
        let mut t = slot;
        t.id = ObjectId([9; 32]);
        assert_eq!(open_slot(&t, &secret, None).unwrap(), None);
    }
}
