//! The live keyring: K_id, K_cdc, K_audit and the data keys by epoch.

use std::collections::BTreeMap;

use zeroize::Zeroize;

use crate::crypto::Key32;
use crate::error::{Error, Result};
use crate::format::envelope::{self, ObjectKind};
use crate::format::keyring::{EpochKeyDoc, KeyringDoc};
use crate::format::now_ns;
use crate::id::{ChunkId, ObjectId};

/// Unsealed keys of a repository.
#[derive(Debug)]
pub struct Keyring {
    repository_id: ObjectId,
    id_key: Key32,
    cdc_key: Key32,
    audit_key: Key32,
    epochs: BTreeMap<u32, Key32>,
    epoch_created: BTreeMap<u32, i64>,
}

impl Keyring {
    /// A fresh keyring with random keys and data-key epoch 0.
    pub fn generate(repository_id: ObjectId) -> Result<Self> {
        let mut epochs = BTreeMap::new();
        epochs.insert(0, Key32::random()?);
        let mut epoch_created = BTreeMap::new();
        epoch_created.insert(0, now_ns());
        Ok(Keyring {
            repository_id,
            id_key: Key32::random()?,
            cdc_key: Key32::random()?,
            audit_key: Key32::random()?,
            epochs,
            epoch_created,
        })
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
        Keyring { repository_id, id_key, cdc_key, audit_key, epochs, epoch_created }
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
        out.epochs.remove(&epoch);
        out.epoch_created.remove(&epoch);
        Ok(out)
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
        })
    }
}
