//! Data-key epochs on an open repository: which epochs are still in use (packs and sealed
//! objects), retiring an epoch nothing uses, and re-sealing objects and locks under the current
//! epoch (the last steps of a key rotation). The caller holds the exclusive lock for everything
//! that writes.

use std::collections::BTreeMap;

use serde::Serialize;

use super::Repository;
use crate::error::{Error, Result};
use crate::format::MAX_SMALL_OBJECT;
use crate::format::config::CONFIG_NAME;
use crate::format::envelope::{self, ObjectKind};
use crate::format::names::Dir;
use crate::keys::Keyring;
use crate::storage::PutMode;

/// Where each data-key epoch is still used.
#[derive(Debug, Clone, Default, Serialize)]
pub struct EpochUsage {
    /// Packs sealed under the epoch.
    pub packs: u64,
    /// Other sealed objects (config, snapshots, index segments, audit entries, deletion marks).
    pub objects: u64,
}

impl EpochUsage {
    /// Whether nothing uses the epoch.
    pub fn is_unused(&self) -> bool {
        self.packs == 0 && self.objects == 0
    }
}

/// The lasting small sealed objects besides `config`, by directory. Locks are left out: they live
/// for one command, and the command retiring an epoch holds one sealed under it.
const SEALED_OBJECTS: [(Dir, ObjectKind); 4] = [
    (Dir::Snapshots, ObjectKind::Snapshot),
    (Dir::Index, ObjectKind::IndexSegment),
    (Dir::Audit, ObjectKind::Audit),
    (Dir::Marks, ObjectKind::PruneMarks),
];

impl Repository {
    /// The data-key epochs the keyring holds, current last.
    pub fn key_epochs(&self) -> Result<Vec<(u32, Option<i64>)>> {
        let ring = self.keyring()?;
        Ok(ring.epochs().into_iter().map(|e| (e, ring.epoch_created(e))).collect())
    }

    /// The epoch a small sealed object is sealed under, authenticated like
    /// [`Self::verified_pack_epoch`] when `verify`. `None` when the object is gone.
    fn object_epoch(&self, name: &str, kind: ObjectKind, verify: bool) -> Result<Option<u32>> {
        let sealed = match self.storage.get_bounded(name, MAX_SMALL_OBJECT) {
            Ok(b) => b,
            Err(Error::Missing(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        let epoch = envelope::epoch_of(&sealed, name)?;
        if verify {
            envelope::open_sealed(&sealed, kind, name.as_bytes(), name, |to| self.keyring()?.open_pack_key(to, name))?;
        }
        Ok(Some(epoch))
    }

    /// Counts, per epoch the objects sealed under it: every pack and every other sealed object.
    /// Epochs the keyring no longer holds show up too. With `verify` (before a key is dropped)
    /// every object is read whole and opened, so the counts rest on authenticated bytes, and an
    /// object that does not open, or claims an epoch the keyring lacks, is an error; without,
    /// the clear epoch fields are read (what `key epochs` shows).
    pub fn epoch_usage(&self, verify: bool) -> Result<BTreeMap<u32, EpochUsage>> {
        let mut usage: BTreeMap<u32, EpochUsage> =
            self.keyring()?.epochs().into_iter().map(|e| (e, EpochUsage::default())).collect();
        for (id, name) in self.list_packs()? {
            let size = self.storage.stat(&name)?.unwrap_or(0);
            let epoch = if verify { self.verified_pack_epoch(&id, size)? } else { self.pack_epoch(&id, size)? };
            usage.entry(epoch).or_default().packs += 1;
        }
        let mut names = vec![(CONFIG_NAME.to_string(), ObjectKind::Config)];
        for (dir, kind) in SEALED_OBJECTS {
            names.extend(self.storage.list(dir.prefix())?.into_iter().map(|n| (n, kind)));
        }
        for (name, kind) in names {
            if let Some(epoch) = self.object_epoch(&name, kind, verify)? {
                usage.entry(epoch).or_default().objects += 1;
            }
        }
        Ok(usage)
    }

    /// Drops `epoch` from the keyring once nothing is sealed under it.
    pub fn retire_epoch(&self, epoch: u32) -> Result<()> {
        let keyrings = self.storage.list(Dir::Keyring.prefix())?;
        if keyrings.len() > 1 {
            return Err(Error::InvalidInput(
                "a key rotation did not finish (more than one keyring); run `cairn key rotate` first".into(),
            ));
        }
        // Validates first: the current epoch and unknown epochs are refused before any scan.
        let ring: Keyring = self.stored_keyring()?.without_epoch(epoch)?;
        let usage = self.epoch_usage(true)?;
        if let Some(u) = usage.get(&epoch)
            && !u.is_unused()
        {
            return Err(Error::InvalidInput(format!(
                "epoch {epoch} still seals {} packs and {} other objects; run `cairn prune --reencrypt-epoch {epoch}` first",
                u.packs, u.objects
            )));
        }
        self.reseal_locks(epoch)?;
        self.store_keyring(&ring)
    }

    /// Re-seals the locks sealed under `epoch` under the current epoch, before `epoch` is
    /// retired: a lock nobody can read blocks exclusive work until it turns stale by age, and
    /// a stale lock must stay recognisable as one. A live holder's next refresh seals its lock
    /// under its own key again; it is live then, and it turns stale by age once it stops. A
    /// lock its holder deletes between the read and the write comes back, as the lock of a
    /// finished process: stale at once on its machine, after [`super::STALE_AFTER`] elsewhere.
    pub(super) fn reseal_locks(&self, epoch: u32) -> Result<u64> {
        let (current, key) = self.keyring()?.current();
        let mut count = 0;
        for name in self.storage.list(Dir::Locks.prefix())? {
            let sealed = match self.storage.get_bounded(&name, MAX_SMALL_OBJECT) {
                Ok(b) => b,
                Err(Error::Missing(_)) => continue,
                Err(e) => return Err(e),
            };
            if envelope::epoch_of(&sealed, &name).ok() != Some(epoch) {
                continue;
            }
            // A lock that does not open is damaged already; it turns stale by age.
            let Ok(plain) = envelope::open_sealed(&sealed, ObjectKind::Lock, name.as_bytes(), &name, |to| {
                self.keyring()?.open_pack_key(to, &name)
            }) else {
                continue;
            };
            let resealed = envelope::seal(key, current, ObjectKind::Lock, name.as_bytes(), &plain)?;
            self.storage.put(&name, &resealed, PutMode::Overwrite)?;
            count += 1;
        }
        Ok(count)
    }

    /// Re-seals every small object (config, snapshots, index segments, audit entries, deletion
    /// marks) sealed under `epoch` under the current epoch, in place (each an atomic overwrite
    /// of the same plaintext under the same name). Returns how many were re-sealed.
    pub fn reseal_objects(&self, epoch: u32) -> Result<u64> {
        Ok(self.reseal_objects_where(|e| e == epoch)?.0)
    }

    /// Re-seals the objects sealed under an epoch `sealed_under` accepts; returns how many, and
    /// the names of those that could not be read as objects (damaged, forged, of an unknown
    /// envelope, too large). Those are left as they are and never stop the work: anyone who may
    /// add objects could plant one, and a rotation that stopped on it would never raise the
    /// metadata floor, leaving a stolen slot's kit accepted. Once the floor is raised, readers
    /// refuse them (`check` reports them). Storage errors stop it.
    pub(super) fn reseal_objects_where(&self, sealed_under: impl Fn(u32) -> bool) -> Result<(u64, Vec<String>)> {
        let (current, key) = self.keyring()?.current();
        let mut names = vec![(CONFIG_NAME.to_string(), ObjectKind::Config)];
        for (dir, kind) in SEALED_OBJECTS {
            names.extend(self.storage.list(dir.prefix())?.into_iter().map(|n| (n, kind)));
        }
        let mut count = 0;
        let mut refused = Vec::new();
        let unreadable = |e: &Error| matches!(e, Error::Corrupt { .. } | Error::UnsupportedVersion { .. });
        for (name, kind) in names {
            let sealed = match self.storage.get_bounded(&name, MAX_SMALL_OBJECT) {
                Ok(sealed) => sealed,
                Err(e) if unreadable(&e) => {
                    refused.push(name);
                    continue;
                }
                // Gone meanwhile (a forget, a lock released): nothing to re-seal.
                Err(Error::Missing(_)) => continue,
                Err(e) => return Err(e),
            };
            let epoch = match envelope::epoch_of(&sealed, &name) {
                Ok(epoch) => epoch,
                Err(e) if unreadable(&e) => {
                    refused.push(name);
                    continue;
                }
                Err(e) => return Err(e),
            };
            if epoch == current || !sealed_under(epoch) {
                continue;
            }
            // With the metadata floor: an object sealed under an epoch below it was made by a
            // holder of a key rotated away (or of a write-only kit of that time), and readers
            // refuse it. Re-sealing it under the current epoch would launder it: it is left as
            // it is, still refused (`check` reports it).
            let mut to_reader = false;
            let plain = match envelope::open_sealed(&sealed, kind, name.as_bytes(), &name, |to| {
                to_reader = matches!(to, envelope::SealedTo::Reader { .. });
                self.keyring()?.open_key(kind, to, &name)
            }) {
                Ok(plain) => plain,
                Err(Error::Corrupt { .. }) if epoch < self.keyring()?.metadata_floor() => continue,
                Err(e) if unreadable(&e) => {
                    refused.push(name);
                    continue;
                }
                Err(e) => return Err(e),
            };
            // What a write-only slot wrote stays sealed to the reader (now the current epoch's):
            // under a data key it would pass for a full key's (SPEC §7.4): its snapshots would
            // lose their writer and its index segments the mark of their packs (§11).
            let resealed = if to_reader {
                self.current_reader_sealer()?.seal(kind, name.as_bytes(), &plain)?
            } else {
                envelope::seal(key, current, kind, name.as_bytes(), &plain)?
            };
            self.storage.put(&name, &resealed, PutMode::Overwrite)?;
            count += 1;
        }
        Ok((count, refused))
    }
}
