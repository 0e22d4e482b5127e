//! Creating a repository (`init`: keyring, slots, config, first audit entry) and opening one
//! (slots -> K -> keyring, checked against the slot's identity and the client's pins ->
//! config -> index cache).

use super::*;
use crate::format::WRITE_ONLY_FORMAT_VERSION;

impl Repository {
    /// Refuses a location that already holds a repository, or the key material of an
    /// interrupted init: what [`Repository::init`] checks first, for a caller to check before it
    /// asks for a password.
    pub fn check_can_init(storage: &dyn Storage) -> Result<()> {
        storage.permits(cairn_storage::Access::Admin)?;
        if storage.stat(CONFIG_NAME)?.is_some() {
            return Err(Error::AlreadyExists(storage.location()));
        }
        if !storage.list(Dir::Keys.prefix())?.is_empty() || !storage.list(Dir::Keyring.prefix())?.is_empty() {
            return Err(Error::InvalidInput(format!(
                "{} holds key material but no config (an interrupted init?); remove it or pick another location",
                storage.location()
            )));
        }
        Ok(())
    }

    /// Creates a repository in `storage`. Writes the keyring, then the slots, then the config:
    /// the config's presence is what makes a repository exist, so an interrupted init leaves
    /// nothing that can be opened and is reported as incomplete.
    pub fn init(storage: Arc<dyn Storage>, opts: &InitOptions) -> Result<InitOutcome> {
        Self::check_can_init(storage.as_ref())?;
        let config = Config {
            format_version: FORMAT_VERSION,
            repository_id: ObjectId::random()?,
            chunker: opts.chunker,
            pack_target_size: opts.pack_target_size,
            zstd_level: opts.zstd_level,
            created_ns: now_ns(),
        };
        config.validate()?;
        let repository_id = config.repository_id;
        let k = Key32::random()?;
        let mut keyring = Keyring::generate(repository_id)?;
        let identity = keyring.identity();
        let new_slot = |secret: NewSlotSecret<'_>, label: &str| {
            keys::create_slot(
                repository_id,
                ObjectId::random()?,
                &k,
                &identity,
                &keyring.slot_info_key(),
                secret,
                label,
            )
        };
        let mut slots = vec![new_slot(NewSlotSecret::Password(&opts.password, opts.argon2), &opts.label)?];
        let recovery_code = if opts.recovery_code {
            let code = RecoveryCode::generate()?;
            slots.push(new_slot(NewSlotSecret::Recovery(&code), "recovery code")?);
            Some(code)
        } else {
            None
        };
        // The keyring lists the valid slots, so it is written knowing them; the slots follow.
        for slot in &slots {
            keyring = keyring.with_slot(slot.id, &slot.public_key)?;
        }
        let ring_name = keys::keyring_name(&k);
        storage.put(&ring_name, &keyring.seal(&keys::keyring_seal_key(&k), &ring_name)?, PutMode::CreateNew)?;
        for slot in &slots {
            storage.put(&slot_name(&slot.id), &slot.encode(), PutMode::CreateNew)?;
        }
        let slots_created: Vec<ObjectId> = slots.iter().map(|s| s.id).collect();
        let first =
            slots_created.first().copied().ok_or_else(|| Error::InvalidInput("init made no key slot".into()))?;
        let (epoch, key) = keyring.current();
        let sealed = envelope::seal(key, epoch, ObjectKind::Config, CONFIG_NAME.as_bytes(), &config.encode())?;
        storage.put(CONFIG_NAME, &sealed, PutMode::CreateNew)?;
        let record = AuditRecord { slots_created, ..AuditRecord::new("init") };
        crate::audit::append_raw(storage.as_ref(), &keyring, first, &opts.actor, &record, None)?;
        Ok(InitOutcome { repository_id, recovery_code })
    }

    /// Opens a repository with `secret`; `cache_root` holds one index cache per repository
    /// (and is marked as a cache directory, so backups with `--exclude-caches` leave it out).
    /// Errors: [`Error::NoRepository`], [`Error::WrongKey`], [`Error::Corrupt`].
    pub fn open(storage: Arc<dyn Storage>, secret: &OpenSecret, cache_root: PathBuf) -> Result<Self> {
        Self::open_as(storage, secret, cache_root, false)
    }

    /// Opens a repository to add a backup: as [`Repository::open`], and a write-only slot
    /// (SPEC §7.6) opens it too, as a handle that writes sealed to the reader key and reads
    /// nothing ([`Repository::is_write_only`]).
    pub fn open_for_backup(storage: Arc<dyn Storage>, secret: &OpenSecret, cache_root: PathBuf) -> Result<Self> {
        Self::open_as(storage, secret, cache_root, true)
    }

    fn open_as(
        storage: Arc<dyn Storage>,
        secret: &OpenSecret,
        cache_root: PathBuf,
        write_only_allowed: bool,
    ) -> Result<Self> {
        let config_exists = storage.stat(CONFIG_NAME)?.is_some();
        let mut slot_names = storage.list(Dir::Keys.prefix())?;
        slot_names.sort();
        if !config_exists {
            return Err(Error::NoRepository(storage.location()));
        }
        // A damaged or foreign document in keys/ must not lock out every other slot: it is
        // skipped here (and named if nothing opens), and `check` reports it.
        let mut slots = Vec::new();
        let mut unreadable = Vec::new();
        let mut older_slots = 0;
        // The repository each readable slot says it opens: a slot that opens with the secret
        // but names another repository than the others was copied from elsewhere.
        let mut slot_repos = Vec::new();
        for name in &slot_names {
            match storage.get_bounded(name, MAX_SMALL_OBJECT).and_then(|b| SlotDoc::decode(&b, name)) {
                Ok(slot) if secret.fits(&slot) => {
                    slot_repos.push(slot.repository_id);
                    slots.push(slot);
                }
                Ok(slot) => slot_repos.push(slot.repository_id),
                Err(e @ Error::Storage { .. }) => return Err(e),
                Err(Error::UnsupportedVersion { found, supported, .. }) if found < supported => older_slots += 1,
                Err(e) => unreadable.push(e.to_string()),
            }
        }
        if slots.is_empty() && older_slots > 0 {
            return Err(Error::UnsupportedVersion {
                object: format!(
                    "{} (format version 1: its key slots do not bind the repository's keys, so a storage could make \
                     clients write under keys it chose; this build refuses them. Restore its snapshots with the Cairn \
                     that wrote it and back them up into a new repository)",
                    storage.location()
                ),
                found: 1,
                supported: FORMAT_VERSION,
            });
        }
        let hsm = match secret {
            OpenSecret::Hsm(_) if slots.is_empty() => {
                return Err(Error::WrongKey("the repository has no HSM key slot".into()));
            }
            OpenSecret::Hsm(cfg) => Some(keys::HsmSession::open(cfg, false)?),
            _ => None,
        };
        let mut opened = None;
        // A slot that opens but whose keyring is not here (made before a rotation, or copied
        // from another repository) does not stop the search: another slot may open.
        let mut no_keyring = None;
        // Full slots first: a write-only slot yields a kit, not K, so it is tried (each try of
        // a password slot costs a key derivation) only to say why nothing opened.
        let (full, write_only_slots): (Vec<SlotDoc>, Vec<SlotDoc>) =
            slots.into_iter().partition(|s| s.access != SlotAccess::WriteOnly);
        for slot in full {
            if let Some(o) = keys::open_slot(&slot, secret, hsm.as_ref())? {
                if storage.stat(&keys::keyring_name(&o.key))?.is_none() {
                    no_keyring = Some(keyslots::keyring_gone(&slot, &slot_repos));
                    continue;
                }
                opened = Some((slot, o));
                break;
            }
        }
        let mut write_only = None;
        if opened.is_none() {
            for slot in write_only_slots {
                if let Some(kit) = keys::open_write_only_slot(&slot, secret, hsm.as_ref())? {
                    write_only = Some((slot, kit));
                    break;
                }
            }
        }
        drop(hsm);
        if let (None, Some(e)) = (&opened, no_keyring) {
            return Err(e);
        }
        if let (None, Some((slot, kit))) = (&opened, write_only) {
            if write_only_allowed {
                return Self::open_write_only(storage, slot, kit, &cache_root);
            }
            let id = slot.id;
            return Err(Error::WrongKey(format!(
                "this key opens write-only slot {}: it can add backups, and cannot read the repository or change it \
                 otherwise; open it with a full key",
                id.short()
            )));
        }
        let Some((slot, keys::OpenedSlot { key: k, identity })) = opened else {
            // A slot whose sealed secret was damaged fails to open exactly as under a wrong
            // secret (the AEAD tells no difference): say both.
            let what = match secret {
                OpenSecret::Password(_) => {
                    "no key slot opens with this password (a wrong password, or a damaged password slot: `cairn check`, \
                     opened with another slot such as the recovery code, checks the slots)"
                }
                OpenSecret::Recovery(_) => "no recovery slot opens with this recovery code",
                OpenSecret::Hsm(_) => "no HSM slot opens with this token key",
                OpenSecret::KeyFile(file) => &keyslots::key_file_refused(file, &slot_repos, &slot_names),
            };
            let also = if unreadable.is_empty() {
                String::new()
            } else {
                format!(" ({} slot(s) could not be read: {})", unreadable.len(), unreadable.join("; "))
            };
            return Err(Error::WrongKey(format!("{what}{also}")));
        };
        let ring_name = keys::keyring_name(&k);
        if ring_name != Dir::Keyring.join(&slot.keyring) {
            return Err(Error::corrupt(slot_name(&slot.id), "the slot names another keyring than its key opens"));
        }
        let ring_bytes = storage.get_bounded(&ring_name, MAX_SMALL_OBJECT).map_err(|e| match e {
            Error::Missing(_) => keyslots::keyring_gone(&slot, &slot_repos),
            e => e,
        })?;
        let keyring = Keyring::open(&ring_bytes, &keys::keyring_seal_key(&k), &ring_name, slot.repository_id)?;
        // Invariant: nothing read through K counts before this check. Anyone can seal a K to
        // the slot's public key; only a holder of the slot's secret could have bound the slot
        // to this K_id.
        if keyring.identity() != identity {
            return Err(Error::KeysChanged(format!(
                "slot {} opens a keyring that is not the one it was made for: the storage replaced the repository's \
                 keys. Nothing was written; do not use this repository until you know why",
                slot.id.short()
            )));
        }
        if keyring.is_write_only(slot.id) {
            return Err(Error::KeysChanged(format!(
                "slot {} is write-only in the keyring, yet its document held the repository key: it was altered. \
                 Nothing was written",
                slot.id.short()
            )));
        }
        if !keyring.lists_slot(slot.id, &slot.public_key) {
            return Err(Error::WrongKey(format!(
                "slot {} is not one of the repository's key slots any more (it was removed; the copy in storage opens \
                 nothing)",
                slot.id.short()
            )));
        }
        let cache_dir = cache_root.join(slot.repository_id.to_hex());
        pins::check_and_pin(&cache_dir, &keyring)?;
        mark_as_cache(&cache_root);
        let sealed = storage.get_bounded(CONFIG_NAME, MAX_SMALL_OBJECT)?;
        let plain = envelope::open(&sealed, ObjectKind::Config, CONFIG_NAME.as_bytes(), CONFIG_NAME, |e| {
            keyring.key_for(ObjectKind::Config, e, CONFIG_NAME)
        })?;
        let config = Config::decode(&plain)?;
        if config.repository_id != slot.repository_id {
            return Err(Error::corrupt(CONFIG_NAME, "config belongs to another repository than its key slots"));
        }
        if !(FORMAT_VERSION..=WRITE_ONLY_FORMAT_VERSION).contains(&config.format_version) {
            return Err(Error::UnsupportedVersion {
                object: CONFIG_NAME.into(),
                found: config.format_version,
                supported: WRITE_ONLY_FORMAT_VERSION,
            });
        }
        let chunker = Chunker::new(keyring.cdc_key(), config.chunker)?;
        let access = Access::Full { keyring: Arc::new(keyring), master: k };
        Self::opened(storage, config, access, chunker, slot.id, cache_dir)
    }

    /// The handle once its keys are checked: its index cache opened and brought up to date.
    fn opened(
        storage: Arc<dyn Storage>,
        config: Config,
        access: Access,
        chunker: Chunker,
        opened_with: ObjectId,
        cache_dir: PathBuf,
    ) -> Result<Self> {
        let index = IndexCache::open(&cache_dir, config.repository_id)?;
        let repo = Repository {
            storage,
            config,
            access,
            chunker,
            index,
            opened_with,
            storage_connections: DEFAULT_STORAGE_CONNECTIONS,
            sort_memory: DEFAULT_SORT_MEMORY,
            io_pool: std::sync::OnceLock::new(),
            index_problems: Default::default(),
            cache_dir,
            held_locks: Default::default(),
            actor: None,
            stop: Default::default(),
            tree_packs: None,
            trees_read_ahead: Default::default(),
            write_kit: None,
        };
        repo.sync_index()?;
        Ok(repo)
    }

    /// A handle for a write-only slot's `kit` (its MAC checked under the slot's secret). Its
    /// cache is its own, apart from a full key's: the index there lists only what this slot
    /// stored, never what it read (it reads nothing). The kit is pinned as a keyring is: a
    /// storage serving an older slot document (a kit from before a rotation, sealing to an
    /// epoch a revoked holder reads) is refused.
    fn open_write_only(
        storage: Arc<dyn Storage>,
        slot: SlotDoc,
        kit: keys::WriteKit,
        cache_root: &std::path::Path,
    ) -> Result<Self> {
        let name = slot_name(&slot.id);
        let config = Config::decode(kit.config_plaintext())?;
        if kit.repository_id() != slot.repository_id || config.repository_id != slot.repository_id {
            return Err(Error::corrupt(name, "the write kit belongs to another repository than its slot"));
        }
        if config.format_version != WRITE_ONLY_FORMAT_VERSION {
            return Err(Error::corrupt(name, "the write kit carries a config of another format version"));
        }
        let cache_dir = cache_root.join(format!("{}-write-only-{}", slot.repository_id.to_hex(), slot.id.to_hex()));
        pins::check_and_pin_kit(&cache_dir, &kit)?;
        mark_as_cache(cache_root);
        let chunker = Chunker::new(kit.cdc_key(), config.chunker)?;
        let own = own_record::OwnRecord::new(&cache_dir, &kit);
        let access = Access::WriteOnly { kit: Arc::new(kit), slot_doc: slot.encode(), own };
        Self::opened(storage, config, access, chunker, slot.id, cache_dir)
    }
}
