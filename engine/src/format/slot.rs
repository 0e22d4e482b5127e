//! Spec: format-spec/SPEC.md#key-slots
//!
//! A key slot is the only object stored unsealed: it must be readable before any key is known.
//! It is a small JSON document holding the slot kind, the KDF and its parameters, and the
//! repository key K wrapped (XChaCha20-Poly1305) under the key the slot's secret derives.
//! It reveals nothing but the repository id (random) and the KDF cost.

use serde::{Deserialize, Serialize};

use crate::crypto::Argon2Params;
use crate::error::{Error, Result};
use crate::id::ObjectId;

/// Slot document version.
pub const SLOT_VERSION: u32 = 1;

/// How the slot's wrapping key is derived from the secret a person holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum SlotKind {
    /// Argon2id(password, salt, params).
    Password {
        /// Argon2id cost.
        argon2id: Argon2Params,
    },
    /// BLAKE3 derive_key(RECOVERY_SLOT, code bytes || salt): the code has 144 random bits, so a
    /// slow KDF adds nothing.
    Recovery,
}

/// A key slot document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotDoc {
    /// Always [`SLOT_VERSION`].
    pub version: u32,
    /// Slot id (also its object name under `keys/`).
    pub id: ObjectId,
    /// Repository the slot opens.
    pub repository_id: ObjectId,
    /// Derivation of the wrapping key.
    #[serde(flatten)]
    pub kind: SlotKind,
    /// KDF salt, 32 bytes hex.
    #[serde(with = "hex_bytes")]
    pub salt: Vec<u8>,
    /// Wrapping nonce, 24 bytes hex.
    #[serde(with = "hex_bytes")]
    pub nonce: Vec<u8>,
    /// K encrypted under the wrapping key, followed by the tag (48 bytes hex).
    #[serde(with = "hex_bytes")]
    pub wrapped_key: Vec<u8>,
}

impl SlotDoc {
    /// Associated data when wrapping K: binds the slot to its repository and its id.
    pub fn associated_data(&self) -> Vec<u8> {
        let mut ad = b"cairn\0slot\0".to_vec();
        ad.extend_from_slice(&self.version.to_le_bytes());
        ad.extend_from_slice(self.repository_id.as_bytes());
        ad.extend_from_slice(self.id.as_bytes());
        ad
    }

    /// JSON bytes.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }

    /// Parses JSON bytes; `object` names the slot in errors.
    pub fn decode(bytes: &[u8], object: &str) -> Result<Self> {
        let doc: SlotDoc =
            serde_json::from_slice(bytes).map_err(|e| Error::corrupt(object, format!("key slot is not valid: {e}")))?;
        if doc.version != SLOT_VERSION {
            return Err(Error::UnsupportedVersion {
                object: object.into(),
                found: doc.version,
                supported: SLOT_VERSION,
            });
        }
        if doc.salt.len() != 32 || doc.nonce.len() != 24 || doc.wrapped_key.len() != 48 {
            return Err(Error::corrupt(object, "key slot fields have wrong lengths"));
        }
        Ok(doc)
    }
}

mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        hex::decode(s).map_err(serde::de::Error::custom)
    }
}
