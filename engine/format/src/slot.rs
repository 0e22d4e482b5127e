//! Spec: format-spec/SPEC.md#key-slots
//!
//! A key slot is the only object stored unsealed: it must be readable before any key is known.
//! It is a small JSON document. Each slot has an X25519 key pair: the secret half is wrapped
//! under the key the slot's secret derives (password, recovery code, key file) or by an HSM key, and the
//! repository key K is sealed to the public half. That split is what makes rotation work: a new
//! K can be sealed to every remaining slot without knowing any slot's password or holding its
//! HSM. The slot reveals the repository id (random), the slot kind, the KDF cost and which
//! keyring object it opens (a name derived from K); its label, creation time and HSM token and
//! key labels are sealed under a key derived from K_id.

use serde::{Deserialize, Serialize};

use crate::crypto::Argon2Params;
use crate::error::{Error, Result};
use crate::id::ObjectId;

/// Slot document version.
pub const SLOT_VERSION: u32 = 3;

/// Plaintext length of `wrapped_secret`: the X25519 secret (32) || the repository identity (32).
pub const SLOT_SECRET_LEN: usize = 64;

/// Length of `sealed_key`: ephemeral public key (32) || nonce (24) || K (32) || tag (16).
pub const SEALED_KEY_LEN: usize = 32 + 24 + 32 + 16;

/// Plaintext length of a write-only slot's `wrapped_secret`: the X25519 secret (32) || the
/// repository identity (32) || the key that authenticates its kit (32).
pub const WRITE_ONLY_SECRET_LEN: usize = 96;

/// Bounds of a write-only slot's `sealed_key` (ephemeral key, nonce, the kit and its MAC, tag).
pub const SEALED_KIT_LEN: std::ops::RangeInclusive<usize> = (32 + 24 + 64 + 16)..=(32 + 24 + 1024 + 16);

/// What opening a slot gives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SlotAccess {
    /// The repository key K: everything.
    #[default]
    Full,
    /// A write kit: what a backup needs to add data, and nothing that reads (SPEC §7.6).
    WriteOnly,
}

impl SlotAccess {
    fn is_full(&self) -> bool {
        *self == SlotAccess::Full
    }
}

/// How the slot's X25519 secret is protected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum SlotKind {
    /// XChaCha20-Poly1305 under Argon2id(password, salt, params).
    Password {
        /// Argon2id cost.
        argon2id: Argon2Params,
    },
    /// XChaCha20-Poly1305 under BLAKE3 derive_key(RECOVERY_SLOT, code bytes || salt): the code
    /// has 144 random bits, so a slow KDF adds nothing.
    Recovery,
    /// AES-256-GCM (CKM_AES_GCM, 12-byte IV from the token, 128-bit tag) under a non-extractable
    /// key on a PKCS#11 token. Which token and key is not stored in clear: the user names them.
    Hsm,
    /// XChaCha20-Poly1305 under BLAKE3 derive_key(KEY_FILE_SLOT, secret || salt): the key file
    /// holds 256 random bits, so a slow KDF adds nothing.
    KeyFile,
}

impl SlotKind {
    /// The kind's name as stored and shown.
    pub fn name(&self) -> &'static str {
        match self {
            SlotKind::Password { .. } => "password",
            SlotKind::Recovery => "recovery",
            SlotKind::Hsm => "hsm",
            SlotKind::KeyFile => "key_file",
        }
    }

    /// Nonce (IV) length of the secret's wrapping.
    pub fn nonce_len(&self) -> usize {
        match self {
            SlotKind::Hsm => 12,
            _ => 24,
        }
    }
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
    /// How the slot secret is protected.
    #[serde(flatten)]
    pub kind: SlotKind,
    /// What the slot opens; absent for full slots (so their documents are as before).
    #[serde(default, skip_serializing_if = "SlotAccess::is_full")]
    pub access: SlotAccess,
    /// KDF salt, 32 bytes hex (random and unused for HSM slots).
    #[serde(with = "hex_bytes")]
    pub salt: Vec<u8>,
    /// Nonce of `wrapped_secret`: 24 bytes, or the 12-byte GCM IV for HSM slots.
    #[serde(with = "hex_bytes")]
    pub nonce: Vec<u8>,
    /// The slot's X25519 secret key (32) || the repository identity (32), encrypted under the
    /// slot key, then the tag (16).
    #[serde(with = "hex_bytes")]
    pub wrapped_secret: Vec<u8>,
    /// The slot's X25519 public key (32 bytes).
    #[serde(with = "hex_bytes")]
    pub public_key: Vec<u8>,
    /// Name of the keyring object the sealed K opens (`keyring/<this>`), 32 hex characters.
    pub keyring: String,
    /// K sealed to `public_key`: ephemeral public key || nonce || ciphertext || tag.
    #[serde(with = "hex_bytes")]
    pub sealed_key: Vec<u8>,
    /// [`SlotInfo`] sealed under BLAKE3-derive(SLOT_INFO, K_id): nonce (24) || ciphertext || tag.
    #[serde(with = "hex_bytes")]
    pub info: Vec<u8>,
}

/// What `key list` shows about a slot; sealed in the slot because labels are metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct SlotInfo {
    /// A label the user chose ("laptop", "offsite safe").
    #[serde(default)]
    pub label: String,
    /// When the slot was made, ns since the Unix epoch.
    pub created_ns: i64,
    /// For HSM slots: the token label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hsm_token: Option<String>,
    /// For HSM slots: the key label on the token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hsm_key: Option<String>,
}

impl SlotDoc {
    /// Associated data of every encryption in the slot: binds it to its repository, its id,
    /// its kind and (for write-only slots) its access, so the storage cannot turn a write-only
    /// slot into a full one or back.
    pub fn associated_data(&self) -> Vec<u8> {
        let mut ad = b"cairn\0slot\0".to_vec();
        ad.extend_from_slice(&self.version.to_le_bytes());
        ad.extend_from_slice(self.repository_id.as_bytes());
        ad.extend_from_slice(self.id.as_bytes());
        ad.extend_from_slice(self.kind.name().as_bytes());
        if self.access == SlotAccess::WriteOnly {
            ad.extend_from_slice(b"\0write_only");
        }
        ad
    }

    /// Length of the wrapped secret's plaintext for this slot's access.
    pub fn secret_len(&self) -> usize {
        match self.access {
            SlotAccess::Full => SLOT_SECRET_LEN,
            SlotAccess::WriteOnly => WRITE_ONLY_SECRET_LEN,
        }
    }

    /// Associated data of `sealed_key`: the slot's, plus the keyring name, so a sealed K cannot
    /// be paired with another keyring name.
    pub fn sealed_key_ad(&self) -> Vec<u8> {
        let mut ad = self.associated_data();
        ad.push(0);
        ad.extend_from_slice(self.keyring.as_bytes());
        ad
    }

    /// JSON bytes.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }

    /// Parses JSON bytes; `object` names the slot in errors.
    pub fn decode(bytes: &[u8], object: &str) -> Result<Self> {
        let version = serde_json::from_slice::<serde_json::Value>(bytes)
            .ok()
            .and_then(|v| v.get("version").and_then(serde_json::Value::as_u64));
        if let Some(v) = version
            && v != u64::from(SLOT_VERSION)
        {
            return Err(Error::UnsupportedVersion {
                object: object.into(),
                found: u32::try_from(v).unwrap_or(u32::MAX),
                supported: SLOT_VERSION,
            });
        }
        let doc: SlotDoc =
            serde_json::from_slice(bytes).map_err(|e| Error::corrupt(object, format!("key slot is not valid: {e}")))?;
        let keyring_ok = doc.keyring.len() == 32 && doc.keyring.bytes().all(|b| b.is_ascii_hexdigit());
        let sealed_ok = match doc.access {
            SlotAccess::Full => doc.sealed_key.len() == SEALED_KEY_LEN,
            SlotAccess::WriteOnly => SEALED_KIT_LEN.contains(&doc.sealed_key.len()),
        };
        if doc.salt.len() != 32
            || doc.nonce.len() != doc.kind.nonce_len()
            || doc.wrapped_secret.len() != doc.secret_len() + 16
            || doc.public_key.len() != 32
            || !sealed_ok
            || doc.info.len() < 24 + 16
            || !keyring_ok
        {
            return Err(Error::corrupt(object, "key slot fields have wrong lengths"));
        }
        // A slot planted with a huge KDF cost is damage to skip, not work to do.
        if let SlotKind::Password { argon2id } = &doc.kind {
            argon2id.validate().map_err(|e| Error::corrupt(object, e.to_string()))?;
        }
        Ok(doc)
    }
}

impl SlotInfo {
    /// JSON bytes (sealed by the caller).
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses the opened JSON.
    pub fn decode(bytes: &[u8], object: &str) -> Result<Self> {
        serde_json::from_slice(bytes).map_err(|e| Error::corrupt(object, format!("slot info is not valid: {e}")))
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
