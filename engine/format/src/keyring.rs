//! Spec: format-spec/SPEC.md#keyring
//!
//! The keyring holds every long-lived key, sealed under a key derived from the repository key
//! K. Its plaintext is zeroized after parsing; only `keys` turns it into live secrets.

use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::codec::{decode_versioned, encode_versioned};
use crate::error::{Error, Result};

/// Payload version of the keyring.
pub const KEYRING_VERSION: u8 = 2;
/// Payload version of a keyring that lists write-only slots: version 2's payload followed by
/// `postcard(Vec<WriteOnlySlotDoc>)`. Written only when there are such slots, so repositories
/// without them stay readable by clients of format 2.
pub const KEYRING_WRITE_ONLY_VERSION: u8 = 3;

/// A slot the keyring lists as write-only, with the key that authenticates its kit (random per
/// slot, known to full keys and to the slot's holder only: SPEC §7.6). Rotation takes a slot's
/// access from here, never from the slot's document, which the storage could edit.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub struct WriteOnlySlotDoc {
    /// The slot's id (it is also in `slots`).
    pub id: [u8; 32],
    /// The MAC key of its kits.
    pub kit_mac_key: [u8; 32],
}

impl std::fmt::Debug for WriteOnlySlotDoc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WriteOnlySlotDoc({}.., <redacted>)", hex::encode(self.id.get(..4).unwrap_or_default()))
    }
}

/// A key slot the keyring lists as valid: its id and its X25519 public key. Only listed slots
/// open the repository and only they are re-sealed by a rotation, so a removed slot the storage
/// puts back opens nothing.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Zeroize, ZeroizeOnDrop, Debug)]
pub struct SlotRefDoc {
    /// The slot's id (its name under `keys/`).
    pub id: [u8; 32],
    /// The slot's public key.
    pub public_key: [u8; 32],
}

/// One data-key epoch.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub struct EpochKeyDoc {
    /// Epoch number, as written in envelopes.
    pub epoch: u32,
    /// XChaCha20-Poly1305 key.
    pub key: [u8; 32],
    /// When the epoch was created, ns since the Unix epoch.
    pub created_ns: i64,
}

/// The keyring's plaintext.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub struct KeyringDoc {
    /// The repository this keyring belongs to.
    pub repository_id: [u8; 32],
    /// Keys chunk ids (keyed BLAKE3).
    pub id_key: [u8; 32],
    /// Expands into the FastCDC gear table.
    pub cdc_key: [u8; 32],
    /// MACs the audit chain.
    pub audit_key: [u8; 32],
    /// Data keys; new objects use the highest epoch.
    pub epochs: Vec<EpochKeyDoc>,
    /// The valid key slots, sorted.
    pub slots: Vec<SlotRefDoc>,
    /// Config, snapshots, index segments and audit entries sealed under an older epoch are
    /// refused: a rotation re-seals them all, then raises this to its new epoch, so a holder of
    /// a revoked key cannot forge metadata clients accept.
    pub metadata_floor: u32,
    /// Names (the 16 bytes of `keyring/<hex>`) of the keyrings the rotation that made this one
    /// replaces: a client on this keyring may finish that rotation; one on an older keyring,
    /// which does not name this one, may not.
    pub replaces: Vec<[u8; 16]>,
    /// Counts every write of a keyring, across rotations. Clients pin the highest they saw and
    /// refuse an older one: a replayed keyring would undo a slot removal or a password change.
    pub revision: u64,
    /// Fingerprints of retired epochs' keys (`epoch`, BLAKE3-derive(EPOCH_FINGERPRINT, epoch LE
    /// || key)), so a client that pinned an epoch since retired can still check it.
    pub retired: Vec<RetiredEpochDoc>,
    /// The write-only slots among `slots` (payload version 3 only).
    #[serde(skip)]
    pub write_only: Vec<WriteOnlySlotDoc>,
}

/// A retired epoch's fingerprint.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Zeroize, ZeroizeOnDrop, Debug)]
pub struct RetiredEpochDoc {
    /// The epoch number.
    pub epoch: u32,
    /// Its key's fingerprint.
    pub fingerprint: [u8; 32],
}

impl std::fmt::Debug for KeyringDoc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyringDoc(<redacted>)")
    }
}

impl std::fmt::Debug for EpochKeyDoc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EpochKeyDoc(epoch {}, <redacted>)", self.epoch)
    }
}

impl KeyringDoc {
    /// Plaintext bytes; the caller zeroizes them after sealing.
    pub fn encode(&self) -> Vec<u8> {
        if self.write_only.is_empty() {
            return encode_versioned(KEYRING_VERSION, self);
        }
        let out = encode_versioned(KEYRING_WRITE_ONLY_VERSION, self);
        postcard::to_extend(&self.write_only, out).unwrap_or_default()
    }

    /// Parses plaintext bytes (payload version 2 or 3).
    pub fn decode(bytes: &[u8], object: &str) -> Result<Self> {
        if bytes.first() != Some(&KEYRING_WRITE_ONLY_VERSION) {
            return decode_versioned(bytes, KEYRING_VERSION, object);
        }
        let body = bytes.get(1..).unwrap_or_default();
        let (mut doc, rest): (KeyringDoc, _) =
            postcard::take_from_bytes(body).map_err(|e| Error::corrupt(object, format!("undecodable keyring: {e}")))?;
        let (write_only, rest): (Vec<WriteOnlySlotDoc>, _) =
            postcard::take_from_bytes(rest).map_err(|e| Error::corrupt(object, format!("undecodable keyring: {e}")))?;
        if !rest.is_empty() || write_only.is_empty() {
            return Err(Error::corrupt(
                object,
                "keyring payload version 3 without write-only slots, or trailing bytes",
            ));
        }
        doc.write_only = write_only;
        Ok(doc)
    }
}
