//! Key slots: each wraps K under a key derived from a secret a person or device holds.
//! Adding or removing a slot never touches data.

use crate::crypto::{
    Argon2Params, Key32, SecretBytes, TAG_LEN, argon2id, context, derive, open_detached, random_array, seal_detached,
};
use crate::error::{Error, Result};
use crate::format::slot::{SLOT_VERSION, SlotDoc, SlotKind};
use crate::id::ObjectId;

use super::RecoveryCode;

/// A secret that may open a slot.
#[derive(Debug, Clone)]
pub enum OpenSecret {
    /// A password (opens password slots).
    Password(SecretBytes),
    /// A recovery code (opens recovery slots).
    Recovery(RecoveryCode),
}

fn wrapping_key(kind: &SlotKind, salt: &[u8], secret: &OpenSecret) -> Result<Option<Key32>> {
    match (kind, secret) {
        (SlotKind::Password { argon2id: params }, OpenSecret::Password(pw)) => {
            Ok(Some(argon2id(pw.expose(), salt, *params)?))
        }
        (SlotKind::Recovery, OpenSecret::Recovery(code)) => {
            let mut material = code.bytes().to_vec();
            material.extend_from_slice(salt);
            let k = derive(context::RECOVERY_SLOT, &material);
            zeroize::Zeroize::zeroize(&mut material);
            Ok(Some(k))
        }
        _ => Ok(None),
    }
}

fn wrap(repository_id: ObjectId, k: &Key32, kind: SlotKind, secret: &OpenSecret) -> Result<SlotDoc> {
    let salt: [u8; 32] = random_array()?;
    let nonce: [u8; 24] = random_array()?;
    let mut doc = SlotDoc {
        version: SLOT_VERSION,
        id: ObjectId::random()?,
        repository_id,
        kind,
        salt: salt.to_vec(),
        nonce: nonce.to_vec(),
        wrapped_key: Vec::new(),
    };
    let wk = wrapping_key(&doc.kind, &salt, secret)?
        .ok_or_else(|| Error::InvalidInput("secret does not fit the slot kind".into()))?;
    let mut buf = k.expose().to_vec();
    let tag = seal_detached(&wk, &nonce, &doc.associated_data(), &mut buf);
    buf.extend_from_slice(&tag);
    doc.wrapped_key = buf;
    Ok(doc)
}

/// A password slot with the given Argon2id cost.
pub fn create_password_slot(
    repository_id: ObjectId,
    k: &Key32,
    password: &SecretBytes,
    params: Argon2Params,
) -> Result<SlotDoc> {
    if password.expose().is_empty() {
        return Err(Error::InvalidInput("empty password".into()));
    }
    params.validate()?;
    wrap(repository_id, k, SlotKind::Password { argon2id: params }, &OpenSecret::Password(password.clone()))
}

/// A recovery slot with a fresh code; the caller shows the code once.
pub fn create_recovery_slot(repository_id: ObjectId, k: &Key32) -> Result<(SlotDoc, RecoveryCode)> {
    let code = RecoveryCode::generate()?;
    let doc = wrap(repository_id, k, SlotKind::Recovery, &OpenSecret::Recovery(code.clone()))?;
    Ok((doc, code))
}

/// Tries to unwrap K from `slot` with `secret`. `Ok(None)` when the secret is of another kind
/// or does not open this slot; errors only for malformed slots.
pub fn unwrap_slot(slot: &SlotDoc, secret: &OpenSecret) -> Result<Option<Key32>> {
    let Some(wk) = wrapping_key(&slot.kind, &slot.salt, secret)? else {
        return Ok(None);
    };
    let mut nonce = [0u8; 24];
    nonce.copy_from_slice(slot.nonce.get(..24).unwrap_or(&[0u8; 24]));
    let (ct, tag) = slot.wrapped_key.split_at(slot.wrapped_key.len().saturating_sub(TAG_LEN));
    let mut tag_arr = [0u8; TAG_LEN];
    tag_arr.copy_from_slice(tag.get(..TAG_LEN).unwrap_or(&[0u8; TAG_LEN]));
    let mut buf = ct.to_vec();
    if !open_detached(&wk, &nonce, &slot.associated_data(), &mut buf, &tag_arr) || buf.len() != 32 {
        zeroize::Zeroize::zeroize(&mut buf);
        return Ok(None);
    }
    let mut k = [0u8; 32];
    k.copy_from_slice(&buf);
    zeroize::Zeroize::zeroize(&mut buf);
    let key = Key32::from_bytes(k);
    zeroize::Zeroize::zeroize(&mut k);
    Ok(Some(key))
}
