//! Spec: format-spec/SPEC.md#keyring
//!
//! The keyring holds every long-lived key, sealed under a key derived from the repository key
//! K. Its plaintext is zeroized after parsing; only `keys` turns it into live secrets.

use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::codec::{decode_versioned, encode_versioned};
use crate::error::Result;

/// Payload version of the keyring.
pub const KEYRING_VERSION: u8 = 2;

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
        encode_versioned(KEYRING_VERSION, self)
    }

    /// Parses plaintext bytes.
    pub fn decode(bytes: &[u8], object: &str) -> Result<Self> {
        decode_versioned(bytes, KEYRING_VERSION, object)
    }
}
