//! The live keyring: K_id, K_cdc, K_audit and the data keys by epoch.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;

use zeroize::Zeroize;

use crate::crypto::Key32;
use crate::envelope::{self, ObjectKind, SealedTo};
use crate::error::{Error, Result};
use crate::id::{ChunkId, ObjectId};
use crate::keyring::{EpochKeyDoc, KeyringDoc, SlotRefDoc};
use crate::now_ns;

/// Unsealed keys of a repository.
#[derive(Debug)]
pub struct Keyring {
    repository_id: ObjectId,
    id_key: Key32,
    cdc_key: Key32,
    audit_key: Key32,
    epochs: BTreeMap<u32, Key32>,
    epoch_created: BTreeMap<u32, i64>,
    /// The valid slots: (id, public key). Authenticated with the keys, so the storage cannot
    /// add to it; a slot may be listed with two keys while its password changes.
    slots: BTreeSet<(ObjectId, [u8; 32])>,
    /// Metadata (config, snapshots, index segments, audit entries) sealed under an epoch below
    /// this is refused (see [`Keyring::key_for`]).
    metadata_floor: u32,
    /// Keyrings (16-byte names) the rotation that made this one replaces.
    replaces: BTreeSet<[u8; 16]>,
    /// Writes of the keyring so far (see [`Keyring::revision`]).
    revision: u64,
    /// Fingerprints of retired epochs.
    retired: BTreeMap<u32, [u8; 32]>,
    /// The listed slots that are write-only, with the MAC key of their kits.
    write_only: BTreeMap<ObjectId, Key32>,
    /// Keys agreed for version 2 envelopes, by (epoch, ephemeral key). A pack's blobs share one
    /// ephemeral key, so reading a pack costs one X25519 agreement, not one per blob.
    reader_keys: Mutex<HashMap<(u32, [u8; 32]), Key32>>,
}

/// How many agreed reader keys a keyring remembers before it forgets them all.
const READER_KEYS_KEPT: usize = 4096;

impl Keyring {
    /// A fresh keyring with random keys and data-key epoch 0.
    pub fn generate(repository_id: ObjectId) -> Result<Self> {
        let mut ring =
            Self::from_parts(repository_id, Key32::random()?, Key32::random()?, Key32::random()?, Key32::random()?);
        ring.epoch_created.insert(0, now_ns());
        Ok(ring)
    }

    /// Builds a keyring from fixed keys (test vectors).
    pub fn from_parts(
        repository_id: ObjectId,
        id_key: Key32,
        cdc_key: Key32,
        audit_key: Key32,
        data_key: Key32,
    ) -> Self {
        let mut epochs = BTreeMap::new();
        epochs.insert(0, data_key);
        let mut epoch_created = BTreeMap::new();
        epoch_created.insert(0, 0);
        Keyring {
            repository_id,
            id_key,
            cdc_key,
            audit_key,
            epochs,
            epoch_created,
            slots: BTreeSet::new(),
            metadata_floor: 0,
            replaces: BTreeSet::new(),
            revision: 0,
            retired: BTreeMap::new(),
            write_only: BTreeMap::new(),
            reader_keys: Mutex::default(),
        }
    }

    /// Whether the slot `id` with `public_key` is one of the repository's valid slots.
    pub fn lists_slot(&self, id: ObjectId, public_key: &[u8]) -> bool {
        self.slots.iter().any(|(i, pk)| *i == id && pk.as_slice() == public_key)
    }

    /// The valid slots: (id, public key).
    pub fn listed_slots(&self) -> Vec<(ObjectId, [u8; 32])> {
        self.slots.iter().copied().collect()
    }

    /// A copy that also lists slot `id` with `public_key`.
    pub fn with_slot(&self, id: ObjectId, public_key: &[u8]) -> Result<Self> {
        let pk: [u8; 32] =
            public_key.try_into().map_err(|_| Error::InvalidInput("a slot public key has 32 bytes".into()))?;
        let mut out = self.clone_keys();
        out.slots.insert((id, pk));
        Ok(out)
    }

    /// A copy that no longer lists slot `id` (with any key, or only with `public_key`).
    pub fn without_slot(&self, id: ObjectId, public_key: Option<&[u8]>) -> Self {
        let mut out = self.clone_keys();
        out.slots.retain(|(i, pk)| !(*i == id && public_key.is_none_or(|p| p == pk.as_slice())));
        if !out.slots.iter().any(|(i, _)| *i == id) {
            out.write_only.remove(&id);
        }
        out
    }

    /// A copy that lists slot `id` with `public_key` as write-only, its kits authenticated by
    /// `kit_mac_key` (random per slot, see [`Keyring::kit_mac_key`]).
    pub fn with_write_only_slot(&self, id: ObjectId, public_key: &[u8], kit_mac_key: Key32) -> Result<Self> {
        let mut out = self.with_slot(id, public_key)?;
        out.write_only.insert(id, kit_mac_key);
        Ok(out)
    }

    /// Whether the keyring lists slot `id` as write-only. Rotation and key management take a
    /// slot's access from here, never from its document, which the storage could edit.
    pub fn is_write_only(&self, id: ObjectId) -> bool {
        self.write_only.contains_key(&id)
    }

    /// The repository this keyring belongs to.
    pub fn repository_id(&self) -> ObjectId {
        self.repository_id
    }

    /// Keyed BLAKE3 id of a blob's plaintext.
    pub fn chunk_id(&self, plaintext: &[u8]) -> ChunkId {
        ChunkId(*blake3::keyed_hash(self.id_key.expose(), plaintext).as_bytes())
    }

    /// The key that expands into the gear table.
    pub fn cdc_key(&self) -> &Key32 {
        &self.cdc_key
    }

    /// The key sealing slot labels. Derived from K_id, which never changes, so labels survive
    /// rotation without being re-sealed.
    pub fn slot_info_key(&self) -> Key32 {
        crate::crypto::derive(crate::crypto::context::SLOT_INFO, self.id_key.expose())
    }

    /// The repository's identity: BLAKE3-derive(REPO_IDENTITY, K_id || repository id). K_id
    /// never changes, so neither does the identity; a keyring made by anyone who does not hold
    /// K_id (the storage, substituting keys) has another one.
    pub fn identity(&self) -> super::RepoIdentity {
        let mut material = self.id_key.expose().to_vec();
        material.extend_from_slice(self.repository_id.as_bytes());
        let d = crate::crypto::derive(crate::crypto::context::REPO_IDENTITY, &material);
        material.zeroize();
        super::RepoIdentity(*d.expose())
    }

    /// A copy with a new data-key epoch (highest + 1), which new objects then use.
    pub fn with_new_epoch(&self) -> Result<Self> {
        let mut out = self.clone_keys();
        let next = self.current().0.checked_add(1).ok_or_else(|| Error::InvalidInput("no epoch number left".into()))?;
        out.epochs.insert(next, Key32::random()?);
        out.epoch_created.insert(next, now_ns());
        Ok(out)
    }

    /// A copy without `epoch` (which must not be the current one).
    pub fn without_epoch(&self, epoch: u32) -> Result<Self> {
        if epoch == self.current().0 {
            return Err(Error::InvalidInput(format!("epoch {epoch} is the current epoch; rotate first")));
        }
        if !self.epochs.contains_key(&epoch) {
            return Err(Error::InvalidInput(format!("the keyring holds no epoch {epoch}")));
        }
        let mut out = self.clone_keys();
        if let Some(fp) = self.epoch_fingerprint(epoch) {
            out.retired.insert(epoch, fp);
        }
        out.epochs.remove(&epoch);
        out.epoch_created.remove(&epoch);
        Ok(out)
    }

    /// The fingerprint of `epoch`'s key, held or retired: what clients pin to recognise the
    /// keys they saw (a keyring forged by someone who lacks that key cannot show it).
    pub fn epoch_fingerprint(&self, epoch: u32) -> Option<[u8; 32]> {
        if let Some(key) = self.epochs.get(&epoch) {
            let mut material = epoch.to_le_bytes().to_vec();
            material.extend_from_slice(key.expose());
            let fp = crate::crypto::derive(crate::crypto::context::EPOCH_FINGERPRINT, &material);
            material.zeroize();
            return Some(*fp.expose());
        }
        self.retired.get(&epoch).copied()
    }

    /// How many times a keyring was written (see the format's `revision`).
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// A copy with the next revision, for writing.
    pub fn next_revision(&self) -> Self {
        let mut out = self.clone_keys();
        out.revision = self.revision.saturating_add(1);
        out
    }

    /// When each epoch was created (ns).
    pub fn epoch_created(&self, epoch: u32) -> Option<i64> {
        self.epoch_created.get(&epoch).copied()
    }

    fn clone_keys(&self) -> Self {
        Keyring {
            repository_id: self.repository_id,
            id_key: self.id_key.clone(),
            cdc_key: self.cdc_key.clone(),
            audit_key: self.audit_key.clone(),
            epochs: self.epochs.clone(),
            epoch_created: self.epoch_created.clone(),
            slots: self.slots.clone(),
            metadata_floor: self.metadata_floor,
            replaces: self.replaces.clone(),
            revision: self.revision,
            retired: self.retired.clone(),
            write_only: self.write_only.clone(),
            reader_keys: Mutex::default(),
        }
    }

    /// Every key, for leak tests (`test-vectors` feature only).
    #[cfg(feature = "test-vectors")]
    pub fn all_keys_for_tests(&self) -> Vec<[u8; 32]> {
        let mut out = vec![*self.id_key.expose(), *self.cdc_key.expose(), *self.audit_key.expose()];
        out.extend(self.epochs.values().map(|k| *k.expose()));
        out
    }

    /// The audit MAC key.
    pub fn audit_key(&self) -> &Key32 {
        &self.audit_key
    }

    /// The epoch new objects are sealed under, with its key.
    pub fn current(&self) -> (u32, &Key32) {
        match self.epochs.iter().next_back() {
            Some((e, k)) => (*e, k),
            // Invariant: a keyring always has at least one epoch (checked when decoded).
            None => (0, &self.id_key),
        }
    }

    /// The data key of `epoch`.
    pub fn data_key(&self, epoch: u32, object: &str) -> Result<&Key32> {
        self.epochs.get(&epoch).ok_or_else(|| {
            Error::corrupt(object, format!("sealed under key epoch {epoch}, which the keyring does not hold"))
        })
    }

    /// The key that opens an object of `kind` sealed under `epoch`. Config, snapshots, index
    /// segments and audit entries sealed under an epoch below the metadata floor are refused:
    /// since the last finished rotation re-sealed every one of them, such an object was made by
    /// a holder of a revoked key (or left by a client that ran through an unfinished rotation).
    pub fn key_for(&self, kind: ObjectKind, epoch: u32, object: &str) -> Result<&Key32> {
        let metadata = matches!(
            kind,
            ObjectKind::Config
                | ObjectKind::IndexSegment
                | ObjectKind::Snapshot
                | ObjectKind::Audit
                | ObjectKind::PruneMarks
        );
        if metadata && epoch < self.metadata_floor {
            return Err(Error::corrupt(
                object,
                format!(
                    "sealed under key epoch {epoch}, older than the epoch every such object has used since the last key \
                     rotation ({}): written with a key that was rotated away (a revoked holder), or during an \
                     unfinished rotation (run `cairn key rotate` to finish it)",
                    self.metadata_floor
                ),
            ));
        }
        self.data_key(epoch, object)
    }

    /// The key that opens an object of `kind` sealed as the envelope says (`to`), with the
    /// metadata floor of [`Keyring::key_for`].
    pub fn open_key(&self, kind: ObjectKind, to: SealedTo, object: &str) -> Result<Cow<'_, Key32>> {
        let data_key = self.key_for(kind, to.epoch(), object)?;
        self.resolve(to, data_key, object)
    }

    /// The key that opens a pack's blobs, header or locator sealed as the envelope says: any
    /// epoch held (packs are reached through the index and their blobs checked by id).
    pub fn open_pack_key(&self, to: SealedTo, object: &str) -> Result<Cow<'_, Key32>> {
        let data_key = self.data_key(to.epoch(), object)?;
        self.resolve(to, data_key, object)
    }

    fn resolve<'a>(&'a self, to: SealedTo, data_key: &'a Key32, object: &str) -> Result<Cow<'a, Key32>> {
        let SealedTo::Reader { epoch, ephemeral } = to else {
            return Ok(Cow::Borrowed(data_key));
        };
        let mut kept = self.reader_keys.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(k) = kept.get(&(epoch, ephemeral)) {
            return Ok(Cow::Owned(k.clone()));
        }
        let k = super::reader_open_key(epoch, data_key, &ephemeral, object)?;
        if kept.len() >= READER_KEYS_KEPT {
            kept.clear();
        }
        kept.insert((epoch, ephemeral), k.clone());
        Ok(Cow::Owned(k))
    }

    /// The kit a write-only slot `slot` gets now: K_id, K_cdc, the current epoch's reader
    /// public key, the slot's audit key, this keyring's revision and the repository's config
    /// plaintext `config`.
    pub fn write_kit(&self, slot: ObjectId, config: &[u8]) -> Result<super::WriteKit> {
        if self.epochs.is_empty() {
            return Err(Error::InvalidInput("a keyring without data keys issues no kit".into()));
        }
        let (epoch, data_key) = self.current();
        Ok(super::WriteKit::new(super::kit::KitParts {
            slot,
            repository_id: self.repository_id,
            identity: self.identity(),
            id_key: &self.id_key,
            cdc_key: &self.cdc_key,
            epoch,
            reader_public: super::reader_public(epoch, data_key),
            audit_key: self.slot_audit_key(slot),
            revision: self.revision,
            config: config.to_vec(),
        }))
    }

    fn derive_for_slot(&self, context: &str, slot: ObjectId) -> Key32 {
        let mut material = zeroize::Zeroizing::new(self.audit_key.expose().to_vec());
        material.extend_from_slice(slot.as_bytes());
        crate::crypto::derive(context, &material)
    }

    /// The key that authenticates write-only slot `slot`'s kits: random per slot, held in the
    /// keyring (so by full keys) and in the slot's wrapped secret (so by its holder). A holder
    /// of a full key revoked before the slot was made never saw it.
    pub fn kit_mac_key(&self, slot: ObjectId) -> Result<&Key32> {
        self.write_only.get(&slot).ok_or_else(|| {
            Error::InvalidInput(format!("slot {} is not listed as write-only in the keyring", slot.short()))
        })
    }

    /// The MAC key of write-only slot `slot`'s audit entries.
    pub fn slot_audit_key(&self, slot: ObjectId) -> Key32 {
        self.derive_for_slot(crate::crypto::context::AUDIT_SLOT, slot)
    }

    /// The reader public key of `epoch`, which write-only slots seal to.
    pub fn reader_public(&self, epoch: u32) -> Option<[u8; 32]> {
        self.epochs.get(&epoch).map(|k| super::reader_public(epoch, k))
    }

    /// A copy for a rotation: a new epoch, replacing the keyrings named (hex, as in slots).
    pub fn rotated(&self, replaces: &[String]) -> Result<Self> {
        let mut out = self.with_new_epoch()?.next_revision();
        out.replaces = replaces
            .iter()
            .filter_map(|h| hex::decode(h).ok().and_then(|b| <[u8; 16]>::try_from(b.as_slice()).ok()))
            .collect();
        Ok(out)
    }

    /// Whether the rotation that made this keyring replaces the keyring `name` (hex, as in
    /// slots).
    pub fn replaces(&self, name: &str) -> bool {
        self.replaces.iter().any(|r| hex::encode(r) == name)
    }

    /// The metadata floor (see [`Keyring::key_for`]).
    pub fn metadata_floor(&self) -> u32 {
        self.metadata_floor
    }

    /// A copy whose metadata floor is the current epoch: only once every metadata object is
    /// sealed under it.
    pub fn with_metadata_floor_at_current(&self) -> Self {
        let mut out = self.clone_keys();
        out.metadata_floor = self.current().0;
        out
    }

    /// Epoch numbers held.
    pub fn epochs(&self) -> Vec<u32> {
        self.epochs.keys().copied().collect()
    }

    /// Seals the keyring under `seal_key` as object `name`.
    pub fn seal(&self, seal_key: &Key32, name: &str) -> Result<Vec<u8>> {
        let doc = KeyringDoc {
            repository_id: *self.repository_id.as_bytes(),
            id_key: *self.id_key.expose(),
            cdc_key: *self.cdc_key.expose(),
            audit_key: *self.audit_key.expose(),
            epochs: self
                .epochs
                .iter()
                .map(|(e, k)| EpochKeyDoc {
                    epoch: *e,
                    key: *k.expose(),
                    created_ns: self.epoch_created.get(e).copied().unwrap_or(0),
                })
                .collect(),
            slots: self.slots.iter().map(|(id, pk)| SlotRefDoc { id: *id.as_bytes(), public_key: *pk }).collect(),
            metadata_floor: self.metadata_floor,
            replaces: self.replaces.iter().copied().collect(),
            revision: self.revision,
            retired: self
                .retired
                .iter()
                .map(|(e, f)| crate::keyring::RetiredEpochDoc { epoch: *e, fingerprint: *f })
                .collect(),
            write_only: self
                .write_only
                .iter()
                .map(|(id, m)| crate::keyring::WriteOnlySlotDoc { id: *id.as_bytes(), kit_mac_key: *m.expose() })
                .collect(),
        };
        let mut plain = doc.encode();
        let sealed = envelope::seal(seal_key, 0, ObjectKind::Keyring, name.as_bytes(), &plain);
        plain.zeroize();
        sealed
    }

    /// Opens a sealed keyring and checks it belongs to `repository_id`.
    pub fn open(sealed: &[u8], seal_key: &Key32, name: &str, repository_id: ObjectId) -> Result<Self> {
        let mut plain = envelope::open(sealed, ObjectKind::Keyring, name.as_bytes(), name, |_| Ok(seal_key))?;
        let doc = KeyringDoc::decode(&plain, name);
        plain.zeroize();
        let doc = doc?;
        if doc.repository_id != *repository_id.as_bytes() {
            return Err(Error::corrupt(name, "keyring belongs to another repository"));
        }
        if doc.epochs.is_empty() {
            return Err(Error::corrupt(name, "keyring holds no data key"));
        }
        let mut epochs = BTreeMap::new();
        let mut epoch_created = BTreeMap::new();
        for e in &doc.epochs {
            epochs.insert(e.epoch, Key32::from_bytes(e.key));
            epoch_created.insert(e.epoch, e.created_ns);
        }
        Ok(Keyring {
            repository_id,
            id_key: Key32::from_bytes(doc.id_key),
            cdc_key: Key32::from_bytes(doc.cdc_key),
            audit_key: Key32::from_bytes(doc.audit_key),
            epochs,
            epoch_created,
            slots: doc.slots.iter().map(|s| (ObjectId(s.id), s.public_key)).collect(),
            metadata_floor: doc.metadata_floor,
            replaces: doc.replaces.iter().copied().collect(),
            revision: doc.revision,
            retired: doc.retired.iter().map(|r| (r.epoch, r.fingerprint)).collect(),
            write_only: doc.write_only.iter().map(|w| (ObjectId(w.id), Key32::from_bytes(w.kit_mac_key))).collect(),
            reader_keys: Mutex::default(),
        })
    }
}
