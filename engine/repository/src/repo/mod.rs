//! The repository service: init and open (slots -> K -> keyring -> config) and sealed objects
//! by name here; blobs by id through the index cache (`blobs`), the index cache kept in step
//! (`index_sync`), snapshots (`snapshots`), key slots and epochs (`keyslots`, `epochs`), locks,
//! and the parallel blob writer.
//! Operations (`backup`, `restore`, ...) use this and nothing below it directly.

mod blob_writer;
mod blobs;
mod epochs;
mod genesis;
mod index_rewrite;
mod index_sync;
mod keyslots;
mod lock;
mod objects;
mod own_record;
mod pack_buffers;
mod packer;
mod packs;
mod pins;
mod repack;
#[cfg(any(test, feature = "testing"))]
mod sealed_inventory;
mod segments;
mod snapshots;
#[cfg(any(test, feature = "testing"))]
#[doc(hidden)]
pub mod testing;
#[cfg(test)]
mod tests;
mod tree_packs;
mod uploader;
mod write_only;
#[cfg(test)]
mod write_only_tests;
#[cfg(test)]
mod write_only_writer_tests;

pub use blob_writer::{BlobWriter, WriteStats};
pub use epochs::EpochUsage;
pub use index_rewrite::IndexRewrite;
pub use keyslots::{RotateOutcome, SlotSummary};
pub use lock::{LockGuard, LockInfo, LockOptions, REFRESH_EVERY, ReadLock, STALE_AFTER, is_stale};
pub use objects::SealedBlobReader;
pub use repack::RepackWriter;
#[cfg(any(test, feature = "testing"))]
pub use sealed_inventory::SealedThing;
pub use write_only::WriteOnlySecret;

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
use crate::format::slot::{SlotAccess, SlotDoc};
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
    /// What the key that opened this handle reads and writes with.
    access: Access,
    chunker: Chunker,
    index: IndexCache,
    opened_with: ObjectId,
    /// When set, what this handle writes is sealed to the reader key of this write kit
    /// (envelope version 2), as a write-only slot writes it.
    write_kit: Option<Arc<keys::WriteKit>>,
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
    /// Tree packs whose read-ahead was asked for ([`Repository::read_tree_pack_ahead`]).
    trees_read_ahead: std::sync::Mutex<HashSet<PackId>>,
}

/// The keys a handle holds, by the kind of slot that opened it.
#[derive(Debug)]
enum Access {
    /// A full slot: the keyring (reads and writes everything) and the repository key K, kept
    /// for key management (slots, rotation); zeroized on drop.
    Full { keyring: Arc<Keyring>, master: Key32 },
    /// A write-only slot (SPEC §7.6): its write kit. It seals to the reader key and opens
    /// nothing, so every read path refuses it.
    WriteOnly {
        kit: Arc<keys::WriteKit>,
        /// The slot's document as read at open: a rotation changes it (a new kit).
        slot_doc: Vec<u8>,
        /// Its own trees and last snapshots, kept in its cache (it cannot read them back from
        /// the repository).
        own: own_record::OwnRecord,
    },
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
        match &self.access {
            Access::Full { keyring, .. } => keyring.chunk_id(data),
            Access::WriteOnly { kit, .. } => kit.chunk_id(data),
        }
    }

    /// Whether a write-only slot opened this handle: it can add backups and read nothing.
    pub fn is_write_only(&self) -> bool {
        matches!(self.access, Access::WriteOnly { .. })
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

    /// The keyring, which only a full slot opens: a write-only handle gets
    /// [`Error::WrongKey`] saying so, on every path that reads or manages keys.
    pub(crate) fn keyring(&self) -> Result<&Arc<Keyring>> {
        match &self.access {
            Access::Full { keyring, .. } => Ok(keyring),
            Access::WriteOnly { kit, .. } => Err(write_only_refusal(kit.slot())),
        }
    }

    /// What a write-only client remembers of its own backups; `None` for a full key.
    pub(crate) fn own_record(&self) -> Option<&own_record::OwnRecord> {
        match &self.access {
            Access::WriteOnly { own, .. } => Some(own),
            Access::Full { .. } => None,
        }
    }

    /// The last snapshot this write-only client made of `hostname` and `paths` (sorted), from
    /// its cache: the parent of its next backup. `None` for a full key, which reads parents
    /// from the repository.
    pub fn own_parent(&self, hostname: &str, paths: &[Vec<u8>]) -> Option<(ObjectId, Snapshot)> {
        self.own_record()?.parent(hostname, paths)
    }

    /// The write kit of the write-only slot that opened this handle.
    pub(crate) fn write_kit_in_use(&self) -> Option<&keys::WriteKit> {
        match &self.access {
            Access::WriteOnly { kit, .. } => Some(kit),
            Access::Full { .. } => None,
        }
    }

    /// The kit this handle seals with: its write-only slot's, or one set for tests.
    fn sealing_kit(&self) -> Option<&keys::WriteKit> {
        self.write_kit.as_deref().or(match &self.access {
            Access::WriteOnly { kit, .. } => Some(kit),
            Access::Full { .. } => None,
        })
    }

    /// A full key's sealer to the current epoch's reader key: what a write-only slot wrote,
    /// sealed again (rotation) or saved again (`tag`, `rewrite`, `copy`) by a full key, stays
    /// marked as a write-only slot's.
    pub(crate) fn current_reader_sealer(&self) -> Result<crate::format::sealer::Sealer> {
        let keyring = self.keyring()?;
        let (epoch, _) = keyring.current();
        let public = keyring
            .reader_public(epoch)
            .ok_or_else(|| Error::Internal(format!("no reader key for the current epoch {epoch}")))?;
        Ok(crate::format::sealer::Sealer::Reader(keys::ReaderSealer::new(epoch, &public)?))
    }

    /// Who the snapshots this handle writes come from.
    pub fn writer(&self) -> crate::format::snapshot::Writer {
        match self.sealing_kit() {
            Some(kit) => crate::format::snapshot::Writer::WriteOnly(kit.slot()),
            None => crate::format::snapshot::Writer::Full,
        }
    }

    /// The repository key K (full slots only).
    fn master(&self) -> Result<&Key32> {
        match &self.access {
            Access::Full { master, .. } => Ok(master),
            Access::WriteOnly { kit, .. } => Err(write_only_refusal(kit.slot())),
        }
    }

    /// The index cache.
    pub fn index(&self) -> &IndexCache {
        &self.index
    }

    /// Seals `plaintext` under the current epoch and stores it as `name` (create-only).
    pub fn save_object(&self, kind: ObjectKind, name: &str, plaintext: &[u8]) -> Result<u64> {
        let sealed = self.sealer()?.seal(kind, name.as_bytes(), plaintext)?;
        self.storage.put(name, &sealed, PutMode::CreateNew)?;
        Ok(sealed.len() as u64)
    }

    /// How this client seals what it writes: under the current epoch's data key, or, with a
    /// write kit, to its reader key under a fresh ephemeral key.
    pub(crate) fn sealer(&self) -> Result<Arc<crate::format::sealer::Sealer>> {
        if let Some(kit) = self.sealing_kit() {
            return Ok(Arc::new(crate::format::sealer::Sealer::Reader(kit.sealer()?)));
        }
        let (epoch, key) = self.keyring()?.current();
        Ok(Arc::new(crate::format::sealer::Sealer::Key { epoch, key: key.clone() }))
    }

    /// Seals what this handle writes from now on with `kit`, as its write-only slot would
    /// (tests of the write-only format; feature `testing`).
    #[cfg(any(test, feature = "testing"))]
    pub fn seal_as_write_only_for_tests(&mut self, kit: keys::WriteKit) {
        self.write_kit = Some(Arc::new(kit));
    }

    /// Loads and opens the sealed object `name`.
    pub fn load_object(&self, kind: ObjectKind, name: &str) -> Result<Vec<u8>> {
        Ok(self.load_object_sealed_how(kind, name)?.0)
    }

    /// [`Repository::load_object`], and whether the object was sealed to the reader key: written
    /// by a write-only slot, which may write only what a backup writes.
    pub(crate) fn load_object_sealed_how(&self, kind: ObjectKind, name: &str) -> Result<(Vec<u8>, bool)> {
        let sealed = self.storage.get_bounded(name, MAX_SMALL_OBJECT)?;
        let mut to_reader = false;
        let plain = envelope::open_sealed(&sealed, kind, name.as_bytes(), name, |to| {
            to_reader = matches!(to, envelope::SealedTo::Reader { .. });
            self.keyring()?.open_key(kind, to, name)
        })?;
        Ok((plain, to_reader))
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

/// What a write-only handle answers on a path that reads the repository or manages its keys.
pub(crate) fn write_only_refusal(slot: ObjectId) -> Error {
    Error::WrongKey(format!(
        "this key is write-only (slot {}): it can add backups, and cannot read the repository or change it \
         otherwise; use a full key",
        slot.short()
    ))
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
