//! Spec: format-spec/SPEC.md#snapshots
//!
//! A snapshot names its root tree and says when, where and what was backed up. One written by a
//! write-only slot (payload version 2) carries its slot and a MAC only that slot and full keys
//! can make: a reader-sealed envelope authenticates nothing about its writer, since any holder
//! of the reader public key can seal one, so without it a stolen write-only key could write
//! snapshots that pass for any host's (SPEC §13, §15.5).

use serde::{Deserialize, Serialize};

use crate::codec::{decode_versioned, encode_versioned};
use crate::crypto::Key32;
use crate::crypto::{context, derive};
use crate::error::{Error, Result};
use crate::id::{ChunkId, ObjectId};

/// Payload version of a snapshot.
pub const SNAPSHOT_VERSION: u8 = 1;

/// Payload version of a snapshot a write-only slot wrote: version 1's body, then the slot id
/// (32 bytes) and the MAC (32 bytes) of [`Snapshot::encode_attested`].
pub const SNAPSHOT_ATTESTED_VERSION: u8 = 2;

/// Who wrote a snapshot, as its reader established it when loading it (never stored as such:
/// [`Snapshot::decode`] alone leaves the default, which only a repository's loader may trust).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Writer {
    /// Sealed under a data key: written by a full key.
    #[default]
    Full,
    /// Sealed to the reader key, with a valid proof from this write-only slot.
    WriteOnly(ObjectId),
}

/// The proof a version 2 snapshot carries: its slot, and a MAC a verifier recomputes (never
/// compared as a value: [`Attestation::verify`] compares in constant time).
#[derive(Debug, Clone)]
pub struct Attestation {
    /// The write-only slot that claims the snapshot.
    pub slot: ObjectId,
    mac: [u8; 32],
}

/// The MAC key of a write-only slot's snapshots, from the slot's audit key (which the slot's
/// kit holds and full keys derive for any slot).
pub fn writer_mac_key(slot_audit_key: &Key32) -> Key32 {
    derive(context::SNAPSHOT_WRITER, slot_audit_key.expose())
}

/// MAC over the object name (so a proof cannot be moved to another snapshot), the slot and the
/// version 1 body.
fn writer_mac(key: &Key32, name: &str, slot: &ObjectId, body: &[u8]) -> blake3::Hash {
    let mut h = blake3::Hasher::new_keyed(key.expose());
    h.update(&(name.len() as u64).to_le_bytes());
    h.update(name.as_bytes());
    h.update(slot.as_bytes());
    h.update(body);
    h.finalize()
}

/// Counters recorded with a snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotSummary {
    /// Files not seen in the parent.
    pub files_new: u64,
    /// Files whose content or metadata changed since the parent.
    pub files_changed: u64,
    /// Files unchanged since the parent.
    pub files_unchanged: u64,
    /// Directories.
    pub dirs: u64,
    /// Other nodes (symlinks, devices...).
    pub others: u64,
    /// Bytes of file content read.
    pub bytes_read: u64,
    /// Total file content size in the snapshot.
    pub bytes_total: u64,
    /// Blobs added to the repository.
    pub blobs_added: u64,
    /// Plaintext bytes of the blobs added.
    pub bytes_added_raw: u64,
    /// Bytes added to the repository (packs, index, snapshot).
    pub bytes_added_stored: u64,
    /// Sources that could not be read.
    pub errors: u64,
    /// Start and end, ns since the Unix epoch.
    pub started_ns: i64,
    /// End time.
    pub finished_ns: i64,
}

/// A snapshot's plaintext.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// When the snapshot was taken, ns since the Unix epoch.
    pub time_ns: i64,
    /// Host name.
    pub hostname: String,
    /// User name.
    pub username: String,
    /// Absolute source paths as given (raw bytes).
    pub paths: Vec<Vec<u8>>,
    /// Tags.
    pub tags: Vec<String>,
    /// Root tree blob.
    pub tree: ChunkId,
    /// Parent snapshot used for change detection.
    pub parent: Option<ObjectId>,
    /// Program that wrote it.
    pub program: String,
    /// Counters.
    pub summary: SnapshotSummary,
    /// Who wrote it, as established when it was loaded (not part of the payload).
    #[serde(skip)]
    pub writer: Writer,
}

impl Snapshot {
    /// Plaintext bytes.
    pub fn encode(&self) -> Vec<u8> {
        encode_versioned(SNAPSHOT_VERSION, self)
    }

    /// Parses plaintext bytes (payload version 1).
    pub fn decode(bytes: &[u8], object: &str) -> Result<Self> {
        decode_versioned(bytes, SNAPSHOT_VERSION, object)
    }

    /// Plaintext bytes of the snapshot `name` written by write-only slot `slot`, whose audit
    /// key is `slot_audit_key` (payload version 2).
    pub fn encode_attested(&self, name: &str, slot: ObjectId, slot_audit_key: &Key32) -> Vec<u8> {
        let body = self.encode().split_off(1);
        let mac = writer_mac(&writer_mac_key(slot_audit_key), name, &slot, &body);
        let mut out = vec![SNAPSHOT_ATTESTED_VERSION];
        out.extend_from_slice(&body);
        out.extend_from_slice(slot.as_bytes());
        out.extend_from_slice(mac.as_bytes());
        out
    }

    /// Parses plaintext bytes of either version; a version 2 snapshot comes with its
    /// attestation, which the caller must [`Attestation::verify`].
    pub fn decode_any(bytes: &[u8], object: &str) -> Result<(Self, Option<Attestation>)> {
        if bytes.first() != Some(&SNAPSHOT_ATTESTED_VERSION) {
            return Ok((Self::decode(bytes, object)?, None));
        }
        let split = bytes
            .len()
            .checked_sub(64)
            .filter(|&at| at >= 1)
            .ok_or_else(|| Error::corrupt(object, "a version 2 snapshot too short for its writer's proof"))?;
        let (payload, proof) = bytes.split_at(split);
        let (slot, mac) = proof.split_at(32);
        let mut v1 = vec![SNAPSHOT_VERSION];
        v1.extend_from_slice(payload.get(1..).unwrap_or_default());
        let snapshot = Self::decode(&v1, object)?;
        let slot = ObjectId(slot.try_into().map_err(|_| Error::corrupt(object, "slot id"))?);
        let mac = mac.try_into().map_err(|_| Error::corrupt(object, "writer MAC"))?;
        Ok((snapshot, Some(Attestation { slot, mac })))
    }
}

impl Attestation {
    /// Checks the proof of the snapshot `name` whose plaintext is `bytes`, with the claimed
    /// slot's audit key.
    pub fn verify(&self, bytes: &[u8], name: &str, slot_audit_key: &Key32) -> Result<()> {
        let body = bytes.len().checked_sub(64).and_then(|end| bytes.get(1..end)).unwrap_or_default();
        let expected = writer_mac(&writer_mac_key(slot_audit_key), name, &self.slot, body);
        // blake3::Hash compares in constant time.
        if expected != blake3::Hash::from(self.mac) {
            return Err(Error::corrupt(
                name,
                format!("its proof of being written by write-only slot {} does not verify", self.slot.short()),
            ));
        }
        Ok(())
    }
}
