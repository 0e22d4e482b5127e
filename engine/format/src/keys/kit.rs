//! The write kit: what a write-only slot opens instead of the repository key K (SPEC §7.6).
//!
//! It holds what a backup needs to add data that deduplicates and that full keys can read:
//! K_id (chunk ids) and K_cdc (chunk boundaries), the current epoch's reader public key (new
//! objects are sealed to it, see [`super::ReaderSealer`]), the slot's own audit MAC key, and
//! the repository's config (chunker and pack parameters), which it could not open itself. It
//! holds no data key, no reader secret and not K_audit, so nothing in the repository opens with
//! it, not even what the slot wrote.
//!
//! A kit is sealed to the slot's public key, which anyone can do, so it is also authenticated:
//! a MAC under BLAKE3-derive(KIT_MAC, K_audit || slot id), a key full keys derive and the
//! slot's wrapped secret carries. The storage therefore cannot hand a write-only client a kit
//! naming a reader key it chose, and a thief of one write-only slot cannot forge another's.

use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::codec::{decode_versioned, encode_versioned};
use crate::crypto::Key32;
use crate::error::{Error, Result};
use crate::id::{ChunkId, ObjectId};

use super::{ReaderSealer, RepoIdentity};

/// Payload version of a kit.
pub const KIT_VERSION: u8 = 1;

#[derive(Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
struct KitDoc {
    repository_id: [u8; 32],
    identity: [u8; 32],
    id_key: [u8; 32],
    cdc_key: [u8; 32],
    epoch: u32,
    reader_public: [u8; 32],
    audit_key: [u8; 32],
    revision: u64,
    config: Vec<u8>,
}

/// An opened write kit (keys zeroize on drop).
pub struct WriteKit {
    slot: ObjectId,
    repository_id: ObjectId,
    identity: RepoIdentity,
    id_key: Key32,
    cdc_key: Key32,
    epoch: u32,
    reader_public: [u8; 32],
    audit_key: Key32,
    revision: u64,
    config: Vec<u8>,
}

impl std::fmt::Debug for WriteKit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WriteKit(slot {}, epoch {}, revision {}, <redacted>)", self.slot.short(), self.epoch, self.revision)
    }
}

/// The parts of a kit, as a keyring issues it.
pub(super) struct KitParts<'a> {
    pub slot: ObjectId,
    pub repository_id: ObjectId,
    pub identity: RepoIdentity,
    pub id_key: &'a Key32,
    pub cdc_key: &'a Key32,
    pub epoch: u32,
    pub reader_public: [u8; 32],
    pub audit_key: Key32,
    pub revision: u64,
    pub config: Vec<u8>,
}

impl WriteKit {
    pub(super) fn new(p: KitParts<'_>) -> Self {
        WriteKit {
            slot: p.slot,
            repository_id: p.repository_id,
            identity: p.identity,
            id_key: p.id_key.clone(),
            cdc_key: p.cdc_key.clone(),
            epoch: p.epoch,
            reader_public: p.reader_public,
            audit_key: p.audit_key,
            revision: p.revision,
            config: p.config,
        }
    }

    /// `KIT_VERSION || postcard(kit)`; zeroized when dropped.
    pub(super) fn encode(&self) -> Zeroizing<Vec<u8>> {
        let doc = KitDoc {
            repository_id: *self.repository_id.as_bytes(),
            identity: self.identity.0,
            id_key: *self.id_key.expose(),
            cdc_key: *self.cdc_key.expose(),
            epoch: self.epoch,
            reader_public: self.reader_public,
            audit_key: *self.audit_key.expose(),
            revision: self.revision,
            config: self.config.clone(),
        };
        Zeroizing::new(encode_versioned(KIT_VERSION, &doc))
    }

    /// Parses an authenticated kit of slot `slot`.
    pub(super) fn decode(bytes: &[u8], slot: ObjectId, object: &str) -> Result<Self> {
        let doc: KitDoc = decode_versioned(bytes, KIT_VERSION, object)?;
        Ok(WriteKit {
            slot,
            repository_id: ObjectId(doc.repository_id),
            identity: RepoIdentity(doc.identity),
            id_key: Key32::from_bytes(doc.id_key),
            cdc_key: Key32::from_bytes(doc.cdc_key),
            epoch: doc.epoch,
            reader_public: doc.reader_public,
            audit_key: Key32::from_bytes(doc.audit_key),
            revision: doc.revision,
            config: doc.config.clone(),
        })
    }

    /// The slot the kit was opened from.
    pub fn slot(&self) -> ObjectId {
        self.slot
    }

    /// The repository.
    pub fn repository_id(&self) -> ObjectId {
        self.repository_id
    }

    /// The reader public key of the kit's epoch: what everything this slot writes is sealed to.
    pub fn reader_public(&self) -> [u8; 32] {
        self.reader_public
    }

    /// The repository identity (as in the slot's wrapped secret; checked when opened).
    pub fn identity(&self) -> RepoIdentity {
        self.identity
    }

    /// Keyed BLAKE3 id of a blob's plaintext, as full keys compute it.
    pub fn chunk_id(&self, plaintext: &[u8]) -> ChunkId {
        ChunkId(*blake3::keyed_hash(self.id_key.expose(), plaintext).as_bytes())
    }

    /// The key that expands into the gear table.
    pub fn cdc_key(&self) -> &Key32 {
        &self.cdc_key
    }

    /// The epoch new objects are sealed under.
    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    /// The keyring revision the kit was issued at (clients pin it: an older kit served back
    /// may name an epoch rotated away after a leak).
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// The repository's config plaintext (`0x01 || postcard(Config)`, SPEC §6) as the kit's
    /// issuer read it: a write-only client cannot open the sealed config.
    pub fn config_plaintext(&self) -> &[u8] {
        &self.config
    }

    /// A sealer with a fresh ephemeral key, for one pack or one object.
    pub fn sealer(&self) -> Result<ReaderSealer> {
        ReaderSealer::new(self.epoch, &self.reader_public)
    }

    /// The MAC key of the slot's audit entries.
    pub fn audit_key(&self) -> &Key32 {
        &self.audit_key
    }

    /// Every secret the kit yields, for the tests that try them on every object
    /// (tests and the `test-vectors` and `testing` features only).
    #[cfg(any(test, feature = "test-vectors", feature = "testing"))]
    pub fn all_keys_for_tests(&self) -> Vec<[u8; 32]> {
        vec![*self.id_key.expose(), *self.cdc_key.expose(), self.reader_public, *self.audit_key.expose()]
    }
}

/// Decodes `bytes` as an authenticated kit and, when it decodes, checks that what it encodes to
/// decodes to the same kit (the fuzz target `slot`; feature `fuzzing` only: it panics on a
/// finding).
#[cfg(feature = "fuzzing")]
#[allow(clippy::expect_used, clippy::panic)] // A panic is how a fuzz body reports a finding.
pub fn fuzz_kit_decode(bytes: &[u8]) {
    if let Ok(kit) = WriteKit::decode(bytes, ObjectId([0; 32]), "fuzz") {
        let once = kit.encode();
        let again = WriteKit::decode(&once, ObjectId([0; 32]), "fuzz").expect("a kit encoded decodes");
        assert_eq!(again.encode().as_slice(), once.as_slice(), "decode(encode(kit)) != kit");
    }
}

/// The check a kit's MAC makes: not a valid kit of this slot.
pub(super) fn forged(object: &str) -> Error {
    Error::KeysChanged(format!(
        "{object}: the write kit does not authenticate: it was not issued by a holder of the repository's keys (the \
         storage or another slot's holder replaced it). Nothing was written"
    ))
}
