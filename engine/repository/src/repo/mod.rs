//! The repository service: init and open (slots -> K -> keyring -> config) and sealed objects
//! by name here; blobs by id through the index cache (`blobs`), the index cache kept in step
//! (`index_sync`), snapshots (`snapshots`), key slots and epochs (`keyslots`, `epochs`), locks,
//! and the parallel blob writer.
//! Operations (`backup`, `restore`, ...) use this and nothing below it directly.

mod blob_writer;
mod blobs;
mod epochs;
mod index_rewrite;
mod index_sync;
mod keyslots;
mod lock;
mod objects;
mod pack_buffers;
mod packer;
mod packs;
mod pins;
mod repack;
mod segments;
mod snapshots;
#[cfg(any(test, feature = "testing"))]
#[doc(hidden)]
pub mod testing;
#[cfg(test)]
mod tests;
mod tree_packs;
mod uploader;

pub use blob_writer::{BlobWriter, WriteStats};
pub use epochs::EpochUsage;
pub use index_rewrite::IndexRewrite;
pub use keyslots::{RotateOutcome, SlotSummary};
pub use lock::{LockGuard, LockInfo, LockOptions, REFRESH_EVERY, ReadLock, STALE_AFTER, is_stale};
pub use objects::SealedBlobReader;
pub use repack::RepackWriter;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rayon::prelude::*;

use crate::audit::{Actor, AuditRecord};
use crate::chunker::{Chunker, ChunkerParams};
use crate::crypto::{Argon2Params, Key32, SecretBytes};
use crate::error::{Error, Result};
use crate::format::config::{CONFIG_NAME, Config};
use crate::format::envelope::{self, ObjectKind};
use crate::format::index::IndexSegment;
use crate::format::names::{self, Dir};
use crate::format::slot::SlotDoc;
use crate::format::snapshot::Snapshot;
use crate::format::tree::Tree;
use crate::format::{BlobKind, FORMAT_VERSION, MAX_SMALL_OBJECT, blob, now_ns};
use crate::id::{ChunkId, ObjectId, PackId};
use crate::index::{BlobLocation, IndexCache};
use crate::keys::{self, Keyring, NewSlotSecret, OpenSecret, RecoveryCode};
use crate::storage::{PutMode, Storage};

/// Blob entries per index segment at most (besides the pack limits): a segment is decoded and
/// applied whole, so this bounds the memory of reading the index, whatever the chunk size.
pub(crate) const BLOBS_PER_SEGMENT: usize = 65_536;

/// What `init` creates.
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// Password of the first slot.
    pub password: SecretBytes,
    /// Argon2id cost of the password slot (see [`calibrate_argon2`]).
    pub argon2: Argon2Params,
    /// Label of the password slot.
    pub label: String,
    /// Whether to create a recovery-code slot (strongly recommended).
    pub recovery_code: bool,
    /// Who runs init (for the audit log).
    pub actor: Actor,
    /// FastCDC bounds.
    pub chunker: ChunkerParams,
    /// Target pack size in bytes.
    pub pack_target_size: u32,
    /// zstd level (0 = off).
    pub zstd_level: i32,
}

impl InitOptions {
    /// Defaults: 512 KiB/1 MiB/8 MiB chunks, 16 MiB packs, zstd 3, a recovery code.
    pub fn new(password: SecretBytes, argon2: Argon2Params) -> Self {
        InitOptions {
            password,
            argon2,
            label: "password".into(),
            recovery_code: true,
            actor: Actor::default(),
            chunker: ChunkerParams::default(),
            pack_target_size: 16 * 1024 * 1024,
            zstd_level: 3,
        }
    }
}

/// What `init` made.
#[derive(Debug)]
pub struct InitOutcome {
    /// The new repository's id.
    pub repository_id: ObjectId,
    /// The recovery code, to show once.
    pub recovery_code: Option<RecoveryCode>,
}

/// Picks Argon2id iterations at 64 MiB so one derivation takes about `target` on this machine
/// (at least 3 iterations, at most 16).
pub fn calibrate_argon2(target: Duration) -> Result<Argon2Params> {
    let probe = Argon2Params { m_kib: 64 * 1024, t: 1, p: 1 };
    let start = Instant::now();
    crate::crypto::argon2id(b"calibration", &[0u8; 32], probe)?;
    let one = start.elapsed().as_secs_f64().max(1e-3);
    let t = (target.as_secs_f64() / one).ceil().clamp(3.0, 16.0) as u32;
    Ok(Argon2Params { t, ..probe })
}

/// An open repository.
#[derive(Debug)]
pub struct Repository {
    storage: Arc<dyn Storage>,
    config: Config,
    keyring: Arc<Keyring>,
    chunker: Chunker,
    index: IndexCache,
    opened_with: ObjectId,
    /// The repository key K, kept for key management (slots, rotation); zeroized on drop.
    master: Key32,
    /// Segments the last index sync could not read.
    index_problems: std::sync::Mutex<Vec<Error>>,
    /// This repository's directory in the client cache.
    cache_dir: PathBuf,
    /// Requests to storage at once (`--storage-connections`): packs uploaded in the
    /// background, and packs read in parallel by restore and check.
    storage_connections: usize,
    /// Memory a working set sorted on the client may take before it goes to disk
    /// ([`Repository::sorted_records`]).
    sort_memory: usize,
    /// A wider pool for reading from storage, when connections outnumber the cores.
    io_pool: std::sync::OnceLock<Option<rayon::ThreadPool>>,
    /// The locks taken through this handle and not yet released.
    held_locks: std::sync::Mutex<Vec<std::sync::Weak<lock::LockHealth>>>,
    /// Who runs the operations of this handle, when the caller said
    /// ([`Repository::set_actor`]): snapshots are then announced in the audit log before they
    /// are written, so one a crash left unlogged is told apart from one the storage planted.
    actor: Option<crate::audit::Actor>,
    /// Set (by a signal handler, say) to ask the running operation to stop at its next safe
    /// point ([`Repository::check_interrupted`]).
    stop: Arc<std::sync::atomic::AtomicBool>,
    /// Whole tree packs kept on the client for a remote store ([`Repository::set_tree_pack_cache`]).
    tree_packs: Option<Arc<tree_packs::TreePackCache>>,
}

/// The snapshots that could be read, oldest first, and those that could not, each with why.
pub type SnapshotsRead = (Vec<(ObjectId, Snapshot)>, Vec<(ObjectId, Error)>);

/// Default for [`Repository::set_storage_connections`]: as many requests as cores suit a local
/// disk; remote stores want more to hide latency (the CLI sets 4 for S3).
pub const DEFAULT_STORAGE_CONNECTIONS: usize = 2;

/// Default for [`Repository::set_sort_memory`]: 32 MiB per sorted working set (check keeps two
/// while it reads the index).
pub const DEFAULT_SORT_MEMORY: usize = 32 << 20;

/// Object name of a pack.
pub fn pack_name(id: &PackId) -> String {
    names::pack(id)
}

/// Object name of a key slot.
pub fn slot_name(id: &ObjectId) -> String {
    Dir::Keys.object(id)
}

/// Object name of a snapshot.
pub fn snapshot_name(id: &ObjectId) -> String {
    Dir::Snapshots.object(id)
}

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
        for slot in slots {
            if let Some(o) = keys::open_slot(&slot, secret, hsm.as_ref())? {
                if storage.stat(&keys::keyring_name(&o.key))?.is_none() {
                    no_keyring = Some(keyslots::keyring_gone(&slot, &slot_repos));
                    continue;
                }
                opened = Some((slot, o));
                break;
            }
        }
        drop(hsm);
        if let (None, Some(e)) = (&opened, no_keyring) {
            return Err(e);
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
        if config.format_version != FORMAT_VERSION {
            return Err(Error::UnsupportedVersion {
                object: CONFIG_NAME.into(),
                found: config.format_version,
                supported: FORMAT_VERSION,
            });
        }
        let chunker = Chunker::new(keyring.cdc_key(), config.chunker)?;
        let index = IndexCache::open(&cache_dir, config.repository_id)?;
        let repo = Repository {
            storage,
            config,
            keyring: Arc::new(keyring),
            chunker,
            index,
            opened_with: slot.id,
            storage_connections: DEFAULT_STORAGE_CONNECTIONS,
            sort_memory: DEFAULT_SORT_MEMORY,
            io_pool: std::sync::OnceLock::new(),
            master: k,
            index_problems: Default::default(),
            cache_dir,
            held_locks: Default::default(),
            actor: None,
            stop: Default::default(),
            tree_packs: None,
        };
        repo.sync_index()?;
        Ok(repo)
    }

    /// This repository's directory in the client cache.
    pub fn cache_dir(&self) -> &std::path::Path {
        &self.cache_dir
    }

    /// The storage backend.
    pub fn storage(&self) -> &Arc<dyn Storage> {
        &self.storage
    }

    /// Whether the storage lets this client do `access` (asked before an operation starts).
    pub fn permits(&self, access: cairn_storage::Access) -> Result<()> {
        self.storage.permits(access)
    }

    /// The config.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The keyed chunker.
    pub fn chunker(&self) -> &Chunker {
        &self.chunker
    }

    /// Keyed chunk id of `data`.
    pub fn chunk_id(&self, data: &[u8]) -> ChunkId {
        self.keyring.chunk_id(data)
    }

    /// Requests to storage at once.
    pub fn storage_connections(&self) -> usize {
        self.storage_connections
    }

    /// How many requests to storage may run at once (at least 1): packs stored in the
    /// background while the next ones fill (each holds a pack in memory), and packs read in
    /// parallel by restore and check.
    pub fn set_storage_connections(&mut self, n: usize) {
        self.storage_connections = n.max(1);
        self.io_pool = std::sync::OnceLock::new();
    }

    /// Sets how much memory a sorted working set may take before it spills to the cache
    /// directory (tests set a few bytes to exercise the spilling path).
    pub fn set_sort_memory(&mut self, bytes: usize) {
        self.sort_memory = bytes;
    }

    /// Whether a wider I/O pool is in use (more storage connections than cores: a remote store).
    pub fn has_io_pool(&self) -> bool {
        self.io_pool().is_some()
    }

    /// Runs `f` on the I/O pool in the background; `false` (and `f` dropped) without one.
    pub fn spawn_io(&self, f: impl FnOnce() + Send + 'static) -> bool {
        match self.io_pool() {
            Some(pool) => {
                pool.spawn(f);
                true
            }
            None => false,
        }
    }

    fn io_pool(&self) -> Option<&rayon::ThreadPool> {
        self.io_pool
            .get_or_init(|| {
                let cores = std::thread::available_parallelism().map_or(2, |n| n.get()); // once: reads cgroups
                (self.storage_connections > cores)
                    .then(|| {
                        rayon::ThreadPoolBuilder::new()
                            .num_threads(self.storage_connections)
                            .thread_name(|i| format!("cairn-io-{i}"))
                            .build()
                            .ok()
                    })
                    .flatten()
            })
            .as_ref()
    }

    /// Runs `f`, whose parallel iterators read from storage, on a pool with a thread per
    /// storage connection when there are more connections than cores: waiting on the network
    /// must not leave cores idle. Otherwise on the global pool.
    pub fn with_io_pool<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        match self.io_pool() {
            Some(pool) => pool.install(f),
            None => f(),
        }
    }

    /// The slot this repository was opened with.
    pub fn opened_with(&self) -> ObjectId {
        self.opened_with
    }

    pub(crate) fn keyring(&self) -> &Arc<Keyring> {
        &self.keyring
    }

    /// The index cache.
    pub fn index(&self) -> &IndexCache {
        &self.index
    }

    /// Seals `plaintext` under the current epoch and stores it as `name` (create-only).
    pub fn save_object(&self, kind: ObjectKind, name: &str, plaintext: &[u8]) -> Result<u64> {
        let (epoch, key) = self.keyring.current();
        let sealed = envelope::seal(key, epoch, kind, name.as_bytes(), plaintext)?;
        self.storage.put(name, &sealed, PutMode::CreateNew)?;
        Ok(sealed.len() as u64)
    }

    /// Loads and opens the sealed object `name`.
    pub fn load_object(&self, kind: ObjectKind, name: &str) -> Result<Vec<u8>> {
        let sealed = self.storage.get_bounded(name, MAX_SMALL_OBJECT)?;
        envelope::open(&sealed, kind, name.as_bytes(), name, |e| self.keyring.key_for(kind, e, name))
    }

    /// A blob writer for this repository (see [`BlobWriter`]).
    pub fn blob_writer(&self) -> Result<BlobWriter<'_>> {
        BlobWriter::new(self, false)
    }

    /// A writer that stores nothing and counts the blobs (and their bytes) the repository
    /// lacks: what a backup would add (`snapshot --dry-run`).
    pub fn dry_run_blob_writer(&self) -> Result<BlobWriter<'_>> {
        BlobWriter::new(self, true)
    }

    /// Says who runs this handle's operations: from then on every snapshot is announced in the
    /// audit log before it is written (see [`Repository::save_snapshot`]).
    pub fn set_actor(&mut self, actor: crate::audit::Actor) {
        self.actor = Some(actor);
    }

    /// Shares `flag` as this handle's stop request: once it is set, operations stop at their
    /// next safe point with [`Error::Interrupted`].
    pub fn set_stop_flag(&mut self, flag: Arc<std::sync::atomic::AtomicBool>) {
        self.stop = flag;
    }

    /// [`Error::Interrupted`] when a stop was requested. `what` says where the operation
    /// stopped and what it kept, for the message.
    pub fn check_interrupted(&self, what: &str) -> Result<()> {
        if self.stop.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(Error::Interrupted(what.to_string()));
        }
        Ok(())
    }

    /// Whether a stop was requested.
    pub fn stop_requested(&self) -> bool {
        self.stop.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Writes a CACHEDIR.TAG (https://bford.info/cachedir/) into the cache root, once: backing up a
/// home directory or `/` with `--exclude-caches` then leaves the index caches out, as every
/// other tool's caches. Best effort: a cache that cannot be tagged works the same.
fn mark_as_cache(cache_root: &std::path::Path) {
    let tag = cache_root.join("CACHEDIR.TAG");
    if !tag.exists() {
        let _ = std::fs::write(
            &tag,
            "Signature: 8a477f597d28d172789f06886806bc55\n# This file is a cache directory tag created by cairn.\n# For \
             information about cache directory tags, see https://bford.info/cachedir/\n",
        );
    }
}
