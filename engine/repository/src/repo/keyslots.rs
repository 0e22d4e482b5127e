//! Key management on an open repository: list, add and remove slots, change a password, rotate
//! the repository key (its last steps, re-sealing under the new epoch, and retiring an epoch
//! are in `epochs.rs`). The caller holds the exclusive lock for everything that writes.
//!
//! The keyring lists the valid slots (id and public key): a slot is added by listing it, then
//! storing it; removed by unlisting it, then deleting it. Only listed slots open the
//! repository, and only they are re-sealed by a rotation, so a removed slot that the storage
//! puts back opens nothing.
//!
//! Rotation order (a crash at any step leaves every listed slot able to open a keyring holding
//! every epoch written under it, and no new key is ever sealed under the old K):
//! 1. a new keyring (old epochs + a new one, the same slot list) sealed under a new K', as a
//!    new object;
//! 2. the slot in use re-sealed to K' first, so the same secret can always finish the job;
//! 3. every other listed slot re-sealed to K' (each an atomic overwrite; no slot secret is
//!    needed, K' is sealed to the slot's public key);
//! 4. every other keyring deleted, the old one included;
//! 5. every config, snapshot, index segment and audit entry re-sealed under the new epoch;
//! 6. the keyring's metadata floor raised to the new epoch: such objects sealed under an older
//!    epoch are refused from then on, so a holder of a revoked key cannot forge them. (Data
//!    blobs and pack headers of older epochs stay readable: they are reached only through the
//!    index, and every blob is checked against its keyed id.)
//!
//! Until step 4, a client opening through a slot not yet moved sees the old keyring: it reads
//! and writes under the old epochs (which the new keyring holds too) and cannot read what
//! clients on K' wrote (once they wrote an audit entry, its writing commands are refused: it
//! cannot follow the log's chain past that entry). A rotation started from such a slot is refused, since it could not
//! carry the new epoch over: it is finished from a moved slot (the one that started it).

use std::collections::BTreeSet;

use serde::Serialize;

use super::{Access, Repository, slot_name};
use crate::crypto::{Argon2Params, Key32, SecretBytes};
use crate::error::{Error, Result};
use crate::format::MAX_SMALL_OBJECT;
use crate::format::names::Dir;
use crate::format::slot::{SlotAccess, SlotDoc, SlotKind};
use crate::id::ObjectId;
use crate::keys::{self, HsmConfig, HsmSession, KeyFile, Keyring, NewSlotSecret, RecoveryCode};
use crate::storage::PutMode;

/// One slot as `key list` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct SlotSummary {
    /// Slot id.
    pub id: ObjectId,
    /// `password`, `recovery`, `hsm` or `key_file`.
    pub kind: String,
    /// Whether the slot is write-only (opens a write kit, not the repository key).
    pub write_only: bool,
    /// The user's label.
    pub label: String,
    /// When it was made (ns), when the sealed info could be read.
    pub created_ns: Option<i64>,
    /// HSM token and key labels.
    pub hsm_token: Option<String>,
    /// Key label on the token.
    pub hsm_key: Option<String>,
    /// Whether this slot opened the repository now.
    pub in_use: bool,
    /// Whether the slot opens the current key (false only mid-rotation).
    pub current: bool,
    /// Whether the keyring lists the slot as valid (false for a removed slot put back, which
    /// opens nothing).
    pub listed: bool,
}

/// What a rotation did.
#[derive(Debug, Clone, Serialize)]
pub struct RotateOutcome {
    /// The new data-key epoch.
    pub epoch: u32,
    /// Slots re-sealed to the new key.
    pub slots: Vec<ObjectId>,
    /// Keyrings deleted.
    pub keyrings_deleted: usize,
    /// Config, snapshots, index segments and audit entries re-sealed under the new epoch.
    pub objects_resealed: u64,
    /// Objects left as they were because they could not be read (damaged or forged): readers
    /// refuse them from now on, and `check` reports them.
    pub objects_refused: Vec<String>,
}

impl Repository {
    fn slot_docs(&self) -> Result<Vec<SlotDoc>> {
        let mut out = Vec::new();
        for name in self.storage.list(Dir::Keys.prefix())? {
            out.push(SlotDoc::decode(&self.storage.get_bounded(&name, MAX_SMALL_OBJECT)?, &name)?);
        }
        out.sort_by_key(|s| s.id);
        Ok(out)
    }

    fn keyring_id(&self) -> Result<String> {
        Ok(Dir::Keyring.file_of(&keys::keyring_name(self.master()?)).unwrap_or_default().to_string())
    }

    /// The keyring as stored now (another command may have changed its slot list since this
    /// one opened), checked to be this repository's.
    pub(super) fn stored_keyring(&self) -> Result<Keyring> {
        let name = keys::keyring_name(self.master()?);
        let ring = Keyring::open(
            &self.storage.get_bounded(&name, MAX_SMALL_OBJECT)?,
            &keys::keyring_seal_key(self.master()?),
            &name,
            self.config.repository_id,
        )?;
        if ring.identity() != self.keyring()?.identity() {
            return Err(Error::KeysChanged(format!("{name} no longer holds this repository's keys")));
        }
        if ring.revision() < self.keyring()?.revision() {
            return Err(Error::KeysChanged(format!(
                "{name} went back to revision {} from {} when this command opened it: an older copy was served back",
                ring.revision(),
                self.keyring()?.revision()
            )));
        }
        Ok(ring)
    }

    /// Writes `ring` (the next revision of it) over the keyring K opens, and pins that
    /// revision: the storage serving the previous one back is then refused.
    pub(super) fn store_keyring(&self, ring: &Keyring) -> Result<()> {
        let name = keys::keyring_name(self.master()?);
        let ring = ring.next_revision();
        self.storage.put(&name, &ring.seal(&keys::keyring_seal_key(self.master()?), &name)?, PutMode::Overwrite)?;
        super::pins::check_and_pin(&self.cache_dir, &ring)
    }

    /// Slot changes rewrite the keyring's slot list, which only works while there is one
    /// keyring: an unfinished rotation is finished first.
    pub(super) fn refuse_unfinished_rotation(&self) -> Result<()> {
        if self.storage.list(Dir::Keyring.prefix())?.len() > 1 {
            return Err(Error::InvalidInput(
                "a key rotation did not finish (more than one keyring); run `cairn key rotate` first".into(),
            ));
        }
        Ok(())
    }

    /// Lists `slot` in the keyring, then stores it.
    fn list_and_store_slot(&self, slot: &SlotDoc) -> Result<()> {
        self.refuse_unfinished_rotation()?;
        self.store_keyring(&self.stored_keyring()?.with_slot(slot.id, &slot.public_key)?)?;
        self.storage.put(&slot_name(&slot.id), &slot.encode(), PutMode::CreateNew)
    }

    /// Every slot, with its sealed label.
    pub fn list_slots(&self) -> Result<Vec<SlotSummary>> {
        let ring = self.keyring()?;
        let info_key = ring.slot_info_key();
        let current = self.keyring_id()?;
        Ok(self
            .slot_docs()?
            .into_iter()
            .map(|s| {
                let info = keys::slot_info(&s, &info_key).ok();
                SlotSummary {
                    id: s.id,
                    kind: s.kind.name().to_string(),
                    // As the keyring lists it: the document's own field is not authenticated.
                    write_only: ring.is_write_only(s.id),
                    label: info.as_ref().map(|i| i.label.clone()).unwrap_or_default(),
                    created_ns: info.as_ref().map(|i| i.created_ns),
                    hsm_token: info.as_ref().and_then(|i| i.hsm_token.clone()),
                    hsm_key: info.as_ref().and_then(|i| i.hsm_key.clone()),
                    in_use: s.id == self.opened_with,
                    current: s.keyring == current,
                    listed: ring.lists_slot(s.id, &s.public_key),
                }
            })
            .collect())
    }

    /// A new slot, with a fresh id, wrapping this repository's key under `secret`.
    fn new_slot(&self, secret: NewSlotSecret<'_>, label: &str) -> Result<SlotDoc> {
        keys::create_slot(
            self.config.repository_id,
            ObjectId::random()?,
            self.master()?,
            &self.keyring()?.identity(),
            &self.keyring()?.slot_info_key(),
            secret,
            label,
        )
    }

    fn store_new_slot(&self, secret: NewSlotSecret<'_>, label: &str) -> Result<ObjectId> {
        let slot = self.new_slot(secret, label)?;
        self.list_and_store_slot(&slot)?;
        Ok(slot.id)
    }

    /// Adds a password slot.
    pub fn add_password_slot(&self, password: &SecretBytes, params: Argon2Params, label: &str) -> Result<ObjectId> {
        self.store_new_slot(NewSlotSecret::Password(password, params), label)
    }

    /// Adds a recovery slot; the caller shows the code once.
    pub fn add_recovery_slot(&self, label: &str) -> Result<(ObjectId, RecoveryCode)> {
        let code = RecoveryCode::generate()?;
        let id = self.store_new_slot(NewSlotSecret::Recovery(&code), label)?;
        Ok((id, code))
    }

    /// Adds a key-file slot; the caller writes the key file (it exists only in memory until
    /// then, and the slot opens with nothing else).
    pub fn add_key_file_slot(&self, label: &str) -> Result<(ObjectId, KeyFile)> {
        let id = ObjectId::random()?;
        let file = KeyFile::generate(self.config.repository_id, id)?;
        let slot = keys::create_slot(
            self.config.repository_id,
            id,
            self.master()?,
            &self.keyring()?.identity(),
            &self.keyring()?.slot_info_key(),
            NewSlotSecret::KeyFile(&file),
            label,
        )?;
        self.list_and_store_slot(&slot)?;
        Ok((id, file))
    }

    /// Adds an HSM slot, creating the token key when it does not exist yet. Before the slot is
    /// stored, it is opened again through the token, so a slot that cannot open is never kept.
    pub fn add_hsm_slot(&self, cfg: &HsmConfig, label: &str) -> Result<ObjectId> {
        let session = HsmSession::open(cfg, true)?;
        let slot = self.new_slot(NewSlotSecret::Hsm(&session, cfg), label)?;
        let back = keys::open_slot(&slot, &keys::OpenSecret::Hsm(cfg.clone()), Some(&session))?;
        if back.as_ref().map(|o| (&o.key, o.identity)) != Some((self.master()?, self.keyring()?.identity())) {
            return Err(Error::Hsm("the new slot does not open again through the token; not stored".into()));
        }
        self.list_and_store_slot(&slot)?;
        Ok(slot.id)
    }

    /// Finds one slot by id or unique id prefix.
    pub fn resolve_slot(&self, prefix: &str) -> Result<ObjectId> {
        let prefix = prefix.to_ascii_lowercase();
        let matches: Vec<ObjectId> =
            self.slot_docs()?.into_iter().map(|s| s.id).filter(|id| id.to_hex().starts_with(&prefix)).collect();
        match matches.as_slice() {
            [one] => Ok(*one),
            [] => Err(Error::InvalidInput(format!("no key slot {prefix}"))),
            _ => Err(Error::InvalidInput(format!(
                "{} key slots start with {prefix}; give more characters",
                matches.len()
            ))),
        }
    }

    /// Removes a slot. Refuses the last slot that opens the current key, and the slot in use
    /// unless `force`.
    pub fn remove_slot(&self, id: ObjectId, force: bool) -> Result<()> {
        let slots = self.slot_docs()?;
        let current = self.keyring_id()?;
        let ring = self.stored_keyring()?;
        // A slot the keyring lists may have lost its document (hidden or deleted): it can still
        // be removed from the list.
        let listed = ring.listed_slots().iter().any(|(i, _)| *i == id);
        let target = slots.iter().find(|s| s.id == id);
        if target.is_none() && !listed {
            return Err(Error::InvalidInput(format!("no key slot {id}")));
        }
        // Only listed slots open anything: a removed slot put back by the storage does not count.
        // A write-only slot opens nothing that reads: it does not count.
        let others_open = slots
            .iter()
            .filter(|s| {
                s.id != id && s.keyring == current && ring.lists_slot(s.id, &s.public_key) && !ring.is_write_only(s.id)
            })
            .count();
        if target.is_some_and(|t| t.keyring == current) && others_open == 0 {
            return Err(Error::InvalidInput(format!(
                "slot {} is the last one that opens the repository; add another slot first",
                id.short()
            )));
        }
        if id == self.opened_with && !force {
            return Err(Error::InvalidInput(format!(
                "slot {} is the one this command opened the repository with; use --force to remove it anyway",
                id.short()
            )));
        }
        self.refuse_unfinished_rotation()?;
        // Unlisted first: from then on the slot opens nothing, whether or not its document is
        // deleted (or put back by the storage). Its holder keeps K until `key rotate`.
        self.store_keyring(&ring.without_slot(id, None))?;
        match self.storage.delete(&slot_name(&id)) {
            Err(Error::Missing(_)) => Ok(()),
            other => other,
        }
    }

    /// Replaces the password of the slot in use (a password slot): same id, new salt, new key
    /// pair. The old password stops working at once.
    pub fn change_password(&self, password: &SecretBytes, params: Argon2Params) -> Result<ObjectId> {
        let slots = self.slot_docs()?;
        let slot = slots
            .iter()
            .find(|s| s.id == self.opened_with)
            .ok_or_else(|| Error::InvalidInput("the slot in use is gone".into()))?;
        if !matches!(slot.kind, SlotKind::Password { .. }) {
            return Err(Error::InvalidInput(format!(
                "the repository was opened with a {} slot; open it with the password to change",
                slot.kind.name()
            )));
        }
        let info_key = self.keyring()?.slot_info_key();
        let label = keys::slot_info(slot, &info_key).map(|i| i.label).unwrap_or_default();
        let new = keys::create_slot(
            self.config.repository_id,
            slot.id,
            self.master()?,
            &self.keyring()?.identity(),
            &info_key,
            NewSlotSecret::Password(password, params),
            &label,
        )?;
        self.refuse_unfinished_rotation()?;
        // The slot is listed with both key pairs while its document is replaced, so a crash
        // leaves either password working.
        let ring = self.stored_keyring()?.with_slot(new.id, &new.public_key)?;
        self.store_keyring(&ring)?;
        self.storage.put(&slot_name(&new.id), &new.encode(), PutMode::Overwrite)?;
        // Every other key of this id goes (an earlier interrupted change left one listed too).
        self.store_keyring(&ring.without_slot(slot.id, None).with_slot(new.id, &new.public_key)?)?;
        Ok(new.id)
    }

    /// Rotates the repository key: new K, new data-key epoch, every listed slot re-sealed (see
    /// the module docs for the order). Slots the keyring does not list are left as they are
    /// and open nothing afterwards. Returns the repository opened with the new key.
    pub fn rotate_key(self) -> Result<(Repository, RotateOutcome)> {
        // Every listed slot must be readable before anything changes: a damaged slot found
        // halfway would stop the rotation after the new keyring exists.
        let ring = self.stored_keyring()?;
        let docs = self.slot_docs()?;
        let own_keyring = self.keyring_id()?;
        // A keyring that some slot names, other than ours and other than those the rotation
        // that made ours replaced, comes from a rotation that moved that slot and not ours:
        // starting another from here would drop the epoch it made.
        let keyrings: Vec<String> = self
            .storage
            .list(Dir::Keyring.prefix())?
            .iter()
            .filter_map(|n| Dir::Keyring.file_of(n))
            .map(str::to_string)
            .collect();
        if let Some(moved) = docs.iter().find(|s| {
            s.keyring != own_keyring
                && !ring.replaces(&s.keyring)
                && ring.lists_slot(s.id, &s.public_key)
                && keyrings.contains(&s.keyring)
        }) {
            return Err(Error::InvalidInput(format!(
                "a key rotation did not finish, and slot {} already opens the newer keys while the slot in use does not; \
                 finish it with `cairn key rotate` opened through that slot (the rotation started with it)",
                moved.id.short()
            )));
        }
        // Every listed slot must be there to be moved: one left behind would lose its keyring
        // at step 4 (its secret would open nothing until a later rotation saw it).
        let mut listed = Vec::new();
        let listed_refs = ring.listed_slots();
        for (id, pk) in &listed_refs {
            if listed_refs.iter().filter(|(i, _)| i == id).count() > 1 {
                return Err(Error::InvalidInput(format!(
                    "slot {} is listed with two keys: a `cairn key passwd` was interrupted; run it again first",
                    id.short()
                )));
            }
            match docs.iter().find(|s| s.id == *id && s.public_key.as_slice() == pk.as_slice()) {
                Some(doc) => listed.push(doc.clone()),
                None => {
                    return Err(Error::InvalidInput(format!(
                        "key slot {} is listed as valid but its document is missing or altered: rotating now would \
                         leave it behind; rerun once it is back, or `cairn key remove {}`",
                        id.short(),
                        id.short()
                    )));
                }
            }
        }
        // The access the keyring lists decides, never the document's: a write-only slot whose
        // document the storage rewrote as a full one must not be sealed K. Checked before
        // anything is written.
        for slot in &listed {
            if ring.is_write_only(slot.id) != (slot.access == SlotAccess::WriteOnly) {
                return Err(Error::KeysChanged(format!(
                    "slot {}'s document says {:?} but the keyring lists it as {}: it was altered. Nothing was \
                     written; `cairn key remove {}` removes it",
                    slot.id.short(),
                    slot.access,
                    if ring.is_write_only(slot.id) { "write-only" } else { "full" },
                    slot.id.short()
                )));
            }
        }
        // The slot in use first.
        listed.sort_by_key(|s| s.id != self.opened_with);
        let new_k = Key32::random()?;
        let new_ring = ring.rotated(&keyrings)?;
        let (epoch, _) = new_ring.current();
        let new_name = keys::keyring_name(&new_k);
        // 1. The new keyring.
        self.storage.put(&new_name, &new_ring.seal(&keys::keyring_seal_key(&new_k), &new_name)?, PutMode::CreateNew)?;
        // 2, 3. Every listed slot to K', the one in use first.
        let mut moved = Vec::new();
        for slot in listed {
            let resealed = if new_ring.is_write_only(slot.id) {
                // A new kit: the new epoch's reader key, never K.
                keys::reissue_kit(&slot, &new_k, &new_ring, &self.config.encode())?
            } else {
                keys::reseal_slot(&slot, &new_k)?
            };
            self.storage.put(&slot_name(&slot.id), &resealed.encode(), PutMode::Overwrite)?;
            moved.push(slot.id);
        }
        // 4. Every other keyring.
        let mut deleted = 0;
        for name in self.storage.list(Dir::Keyring.prefix())? {
            if name != new_name {
                self.storage.delete(&name)?;
                deleted += 1;
            }
        }
        let chunker = crate::chunker::Chunker::new(new_ring.cdc_key(), self.config.chunker)?;
        let repo = Repository {
            storage: self.storage.clone(),
            config: self.config.clone(),
            access: Access::Full { keyring: std::sync::Arc::new(new_ring), master: new_k },
            chunker,
            index: self.index,
            opened_with: self.opened_with,
            storage_connections: self.storage_connections,
            sort_memory: self.sort_memory,
            io_pool: std::sync::OnceLock::new(),
            index_problems: Default::default(),
            cache_dir: self.cache_dir.clone(),
            // The locks taken before the rotation still guard the work done after it.
            held_locks: self.held_locks,
            actor: self.actor,
            stop: self.stop,
            tree_packs: self.tree_packs,
            trees_read_ahead: self.trees_read_ahead,
            write_kit: self.write_kit,
        };
        super::pins::check_and_pin(&repo.cache_dir, repo.keyring()?)?;
        // 5. Every metadata object under the new epoch; 6. older epochs refused for metadata
        // from now on, so a revoked holder cannot forge snapshots, index or audit entries.
        let mut repo = repo;
        let (resealed, refused) = repo.reseal_objects_where(|e| e < epoch)?;
        let floored = repo.stored_keyring()?.with_metadata_floor_at_current();
        repo.store_keyring(&floored)?;
        if let Access::Full { keyring, .. } = &mut repo.access {
            *keyring = std::sync::Arc::new(floored.next_revision());
        }
        super::pins::check_and_pin(&repo.cache_dir, repo.keyring()?)?;
        Ok((
            repo,
            RotateOutcome {
                epoch,
                slots: moved,
                keyrings_deleted: deleted,
                objects_resealed: resealed,
                objects_refused: refused,
            },
        ))
    }

    /// [`Error::KeysChanged`] when the repository key was rotated after this handle opened
    /// the repository (its keyring is gone): what it would write now would be sealed under an
    /// epoch the rotation may have retired, where nobody can read it. Checked when a lock is
    /// won and before an audit entry is appended; a rotation waits for every lock, so work
    /// that holds one is safe until it ends.
    pub fn check_key_not_rotated(&self) -> Result<()> {
        if let Access::WriteOnly { kit, slot_doc, .. } = &self.access {
            // A rotation issues every write-only slot a new kit: the slot's document changes.
            let name = slot_name(&kit.slot());
            let now = self.storage.get_bounded(&name, MAX_SMALL_OBJECT)?;
            if SlotDoc::decode(&now, &name)?.encode() != *slot_doc {
                return Err(Error::KeysChanged(
                    "the repository key was rotated (or this write-only slot changed) after this command opened the \
                     repository; nothing more was written, run the command again"
                        .into(),
                ));
            }
            return Ok(());
        }
        if self.storage.stat(&keys::keyring_name(self.master()?))?.is_none() {
            return Err(Error::KeysChanged(
                "the repository key was rotated (`cairn key rotate`) after this command opened the repository; \
                 nothing more was written, run the command again"
                    .into(),
            ));
        }
        Ok(())
    }

    /// Every key this handle holds (K, K_id, K_cdc, K_audit, the data keys), for tests that
    /// search outputs and files for leaked key bytes. Only with the `test-vectors` feature.
    #[cfg(feature = "test-vectors")]
    pub fn key_material_for_tests(&self) -> Vec<[u8; 32]> {
        match &self.access {
            Access::Full { keyring, master } => {
                let mut out = vec![*master.expose()];
                out.extend(keyring.all_keys_for_tests());
                out
            }
            Access::WriteOnly { kit, .. } => kit.all_keys_for_tests(),
        }
    }

    /// Slots present, for the audit cross-check of `key remove`.
    pub fn slot_ids(&self) -> Result<BTreeSet<ObjectId>> {
        Ok(self.slot_docs()?.into_iter().map(|s| s.id).collect())
    }
}

/// Why a slot that opens with the secret opens nothing here: its keyring is not in the
/// repository. `slot_repos` holds the repository of every readable slot present: a slot that
/// names another repository than all the others was copied from elsewhere.
pub(super) fn keyring_gone(slot: &SlotDoc, slot_repos: &[ObjectId]) -> Error {
    let other = slot_repos.iter().find(|r| **r != slot.repository_id);
    let alone = slot_repos.iter().filter(|r| **r == slot.repository_id).count() == 1;
    match other {
        Some(other) if alone => Error::WrongKey(format!(
            "slot {} belongs to another repository ({}; the other slots here open {}): it was copied here and opens \
             nothing in this one",
            slot.id.short(),
            slot.repository_id.short(),
            other.short()
        )),
        _ => Error::WrongKey(format!(
            "the keyring of slot {} is gone: the slot was made before a key rotation and no longer opens the repository",
            slot.id.short()
        )),
    }
}

/// Why a key file opened nothing, in words that point at the fix: a key file names its
/// repository and its slot, so "wrong key" is the last explanation, not the first.
pub(super) fn key_file_refused(file: &KeyFile, slot_repos: &[ObjectId], slot_names: &[String]) -> String {
    let slot_here = slot_names.iter().any(|n| *n == slot_name(&file.slot));
    if !slot_here && !slot_repos.is_empty() && !slot_repos.contains(&file.repository_id) {
        format!(
            "the key file was made for repository {}, and this is repository {}",
            file.repository_id.short(),
            slot_repos.first().map(ObjectId::short).unwrap_or_default()
        )
    } else if !slot_here {
        format!(
            "the key file's slot {} is not in this repository (it was removed, or the file was edited)",
            file.slot.short()
        )
    } else {
        format!(
            "the key file does not open its slot {} (another key file for the same slot, or a damaged slot: \
             `cairn check` with another key checks the slots)",
            file.slot.short()
        )
    }
}
