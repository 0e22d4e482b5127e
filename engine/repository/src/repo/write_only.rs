//! Write-only slots on an open repository (SPEC §7.6): adding one (the config moves to format
//! 3 first, the keyring lists the slot as write-only with its kit's MAC key, then the slot is
//! stored). Rotation issues their kits (`keyslots.rs`).

use super::*;
use crate::format::WRITE_ONLY_FORMAT_VERSION;
use crate::keys::KeyFile;

/// What opens a new write-only slot.
#[derive(Debug)]
pub enum WriteOnlySecret<'a> {
    /// A password with its Argon2id cost.
    Password(&'a SecretBytes, Argon2Params),
    /// A key file, made with the slot.
    KeyFile,
    /// An AES key on a PKCS#11 token (created when missing, as for a full HSM slot).
    Hsm(&'a keys::HsmConfig),
}

impl Repository {
    /// Adds a write-only slot (SPEC §7.6) opened by a password, or by a key file made here
    /// (returned for the caller to write). The config moves to format version 3 first, so
    /// clients that cannot open what write-only slots write refuse the repository as a whole.
    pub fn add_write_only_slot(&self, secret: WriteOnlySecret<'_>, label: &str) -> Result<(ObjectId, Option<KeyFile>)> {
        self.refuse_unfinished_rotation()?;
        let config = self.upgrade_for_write_only()?;
        let id = ObjectId::random()?;
        let key_file = match secret {
            WriteOnlySecret::KeyFile => Some(KeyFile::generate(self.config.repository_id, id)?),
            WriteOnlySecret::Password(..) | WriteOnlySecret::Hsm(_) => None,
        };
        let session = match secret {
            WriteOnlySecret::Hsm(cfg) => Some(keys::HsmSession::open(cfg, true)?),
            _ => None,
        };
        let new_secret = match (&secret, &key_file, &session) {
            (WriteOnlySecret::Password(pw, params), ..) => NewSlotSecret::Password(pw, *params),
            (WriteOnlySecret::KeyFile, Some(file), _) => NewSlotSecret::KeyFile(file),
            (WriteOnlySecret::Hsm(cfg), _, Some(session)) => NewSlotSecret::Hsm(session, cfg),
            _ => return Err(Error::InvalidInput("no secret for the new slot".into())),
        };
        let ring = self.stored_keyring()?;
        let kit_mac_key = Key32::random()?;
        let slot =
            keys::create_write_only_slot(id, self.master()?, &ring, &config.encode(), &kit_mac_key, new_secret, label)?;
        if let (WriteOnlySecret::Hsm(cfg), Some(session)) = (&secret, &session) {
            // As for a full HSM slot: one that does not open again through the token is never kept.
            let back = keys::open_write_only_slot(&slot, &keys::OpenSecret::Hsm((*cfg).clone()), Some(session))?;
            if back.is_none() {
                return Err(Error::Hsm("the new slot does not open again through the token; not stored".into()));
            }
        }
        self.list_and_store_write_only_slot(&ring, &slot, kit_mac_key)?;
        Ok((id, key_file))
    }

    /// Moves the config to [`WRITE_ONLY_FORMAT_VERSION`] (an atomic overwrite; idempotent) and
    /// returns it. This handle keeps the config it opened: nothing it does after adding a slot
    /// depends on the version.
    fn upgrade_for_write_only(&self) -> Result<Config> {
        if self.config.format_version >= WRITE_ONLY_FORMAT_VERSION {
            return Ok(self.config.clone());
        }
        let mut config = self.config.clone();
        config.format_version = WRITE_ONLY_FORMAT_VERSION;
        // Under the keyring as stored now: one a rotation moved on since this handle opened
        // it would seal the config under an epoch below the new floor.
        let ring = self.stored_keyring()?;
        if ring.current().0 != self.keyring()?.current().0 {
            return Err(Error::KeysChanged(
                "the repository key was rotated since this command opened it; run it again".into(),
            ));
        }
        let (epoch, key) = ring.current();
        let name = crate::format::config::CONFIG_NAME;
        let sealed = crate::format::envelope::seal(key, epoch, ObjectKind::Config, name.as_bytes(), &config.encode())?;
        self.storage.put(name, &sealed, PutMode::Overwrite)?;
        Ok(config)
    }

    /// Lists `slot` in `ring` (the keyring as stored) as write-only with its kit's MAC key,
    /// then stores it.
    fn list_and_store_write_only_slot(&self, ring: &Keyring, slot: &SlotDoc, kit_mac_key: Key32) -> Result<()> {
        self.store_keyring(&ring.with_write_only_slot(slot.id, &slot.public_key, kit_mac_key)?)?;
        self.storage.put(&slot_name(&slot.id), &slot.encode(), PutMode::CreateNew)
    }
}
