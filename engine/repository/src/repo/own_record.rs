//! What a write-only client remembers of its own backups, in its cache (SPEC §7.6): it cannot
//! read the repository, so the trees it wrote and the last snapshot of each set of paths are
//! kept here, for the next backup to compare files with and reuse unchanged ones. Sealed at
//! rest under a key derived from the slot's audit key (which only the slot's holder has): a
//! copy of the cache without the slot's secret says nothing about the files. Lost or
//! unreadable, the record costs one backup that reads every file and stores what the local
//! index does not know; nothing else depends on it.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use rocksdb::{BlockBasedOptions, DB, Options};

use crate::crypto::{Key32, context, derive};
use crate::error::{Error, Result};
use crate::format::envelope::{self, ObjectKind};
use crate::format::snapshot::Snapshot;
use crate::format::tree::Tree;
use crate::id::{ChunkId, ObjectId};
use crate::keys::WriteKit;

/// The record of one write-only slot's client.
pub(crate) struct OwnRecord {
    dir: PathBuf,
    key: Key32,
    /// The tree store, opened at first use; `None` when another process holds it (that run
    /// then neither reuses nor records trees).
    trees: OnceLock<Option<DB>>,
}

impl std::fmt::Debug for OwnRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OwnRecord").field("dir", &self.dir).finish_non_exhaustive()
    }
}

/// Name of the sealed last snapshot of a host and its set of paths.
fn parent_file(dir: &Path, key: &Key32, hostname: &str, paths: &[Vec<u8>]) -> PathBuf {
    let mut sorted = paths.to_vec();
    sorted.sort();
    let mut h = blake3::Hasher::new_keyed(key.expose());
    h.update(&(hostname.len() as u64).to_le_bytes());
    h.update(hostname.as_bytes());
    for p in &sorted {
        h.update(&(p.len() as u64).to_le_bytes());
        h.update(p);
    }
    dir.join("parents").join(h.finalize().to_hex().as_str())
}

impl OwnRecord {
    /// The record in `dir` (the slot's cache directory) for `kit`'s slot.
    pub(crate) fn new(dir: &Path, kit: &WriteKit) -> Self {
        OwnRecord {
            dir: dir.to_path_buf(),
            key: derive(context::WRITE_ONLY_CACHE, kit.audit_key().expose()),
            trees: OnceLock::new(),
        }
    }

    fn trees(&self) -> Option<&DB> {
        self.trees
            .get_or_init(|| {
                let mut opts = Options::default();
                opts.create_if_missing(true);
                opts.set_write_buffer_size(4 << 20);
                opts.set_max_open_files(64);
                let mut table = BlockBasedOptions::default();
                table.set_bloom_filter(10.0, false);
                table.set_block_cache(&rocksdb::Cache::new_lru_cache(8 << 20));
                opts.set_block_based_table_factory(&table);
                // Held by another backup of this slot on this machine: this run goes without.
                DB::open(&opts, self.dir.join("own-trees")).ok()
            })
            .as_ref()
    }

    /// Whether the tree store can be used (and so a snapshot recorded as a parent).
    pub(crate) fn available(&self) -> bool {
        self.trees().is_some()
    }

    /// Keeps the tree `id` (its plaintext), unless kept already.
    pub(crate) fn keep_tree(&self, id: &ChunkId, plaintext: &[u8]) -> Result<()> {
        let Some(db) = self.trees() else { return Ok(()) };
        let err = |e: rocksdb::Error| Error::Cache { path: self.dir.join("own-trees"), why: e.to_string() };
        if db.get_pinned(id.as_bytes()).map_err(err)?.is_some() {
            return Ok(());
        }
        let sealed = envelope::seal(&self.key, 0, ObjectKind::TreeBlob, id.as_bytes(), plaintext)?;
        db.put(id.as_bytes(), sealed).map_err(err)
    }

    /// The tree `id`, if kept; its content checked against its keyed id (`chunk_id`).
    pub(crate) fn tree(&self, id: &ChunkId, chunk_id: &dyn Fn(&[u8]) -> ChunkId) -> Result<Tree> {
        let what = format!("tree {id} in the write-only client's cache");
        let db = self.trees().ok_or(Error::NotIndexed(*id))?;
        let sealed = db
            .get_pinned(id.as_bytes())
            .map_err(|e| Error::Cache { path: self.dir.join("own-trees"), why: e.to_string() })?
            .ok_or(Error::NotIndexed(*id))?;
        let plain = envelope::open(&sealed, ObjectKind::TreeBlob, id.as_bytes(), &what, |_| Ok(&self.key))?;
        if chunk_id(&plain) != *id {
            return Err(Error::corrupt(what, "content does not match its id"));
        }
        Tree::decode(&plain, &what)
    }

    /// Records `snapshot` (stored as `id`) as the parent of the next backup of its host and
    /// paths. Best effort: without it the next backup reads every file again.
    pub(crate) fn keep_parent(&self, id: &ObjectId, snapshot: &Snapshot) {
        if !self.available() {
            return;
        }
        let file = parent_file(&self.dir, &self.key, &snapshot.hostname, &snapshot.paths);
        let mut plain = id.as_bytes().to_vec();
        plain.extend_from_slice(&snapshot.encode());
        let Some(ad) = file.file_name().map(|n| n.as_encoded_bytes().to_vec()) else { return };
        let Ok(sealed) = envelope::seal(&self.key, 0, ObjectKind::Snapshot, &ad, &plain) else {
            return;
        };
        let Some(parent_dir) = file.parent() else { return };
        let tmp = file.with_extension(format!("tmp-{}", std::process::id()));
        if std::fs::create_dir_all(parent_dir).is_ok() && std::fs::write(&tmp, sealed).is_ok() {
            let _ = std::fs::rename(&tmp, &file);
        }
    }

    /// Drops the trees no recorded parent reaches (trees of older backups: kept, they would
    /// show a thief of the host every directory it ever backed up). Runs when the store has
    /// grown to twice what the last collection kept, so an unchanged backup costs nothing.
    /// Best effort: a failure leaves trees behind, never removes a reachable one.
    pub(crate) fn collect_garbage(&self, chunk_id: impl Fn(&[u8]) -> ChunkId) {
        let Some(db) = self.trees() else { return };
        let count_file = self.dir.join("own-trees.kept");
        let kept: u64 = std::fs::read_to_string(&count_file).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0);
        let estimate = db.property_int_value("rocksdb.estimate-num-keys").ok().flatten().unwrap_or(0);
        if estimate <= kept.saturating_mul(2).max(64) {
            return;
        }
        let Ok(entries) = std::fs::read_dir(self.dir.join("parents")) else { return };
        let mut reachable: std::collections::HashSet<ChunkId> = std::collections::HashSet::new();
        let mut stack = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            let (Ok(sealed), Some(ad)) =
                (std::fs::read(&path), path.file_name().map(|n| n.as_encoded_bytes().to_vec()))
            else {
                continue;
            };
            let opened = envelope::open(&sealed, ObjectKind::Snapshot, &ad, "parent", |_| Ok(&self.key));
            let Some(snapshot) = opened.ok().and_then(|p| Snapshot::decode(p.get(32..)?, "parent").ok()) else {
                continue;
            };
            stack.push(snapshot.tree);
        }
        while let Some(id) = stack.pop() {
            if !reachable.insert(id) {
                continue;
            }
            // A reachable tree that cannot be read: collect nothing, rather than guess.
            let Ok(tree) = self.tree(&id, &chunk_id) else { return };
            stack.extend(tree.nodes.iter().filter_map(|n| match &n.kind {
                crate::format::tree::NodeKind::Dir { subtree } => Some(*subtree),
                _ => None,
            }));
        }
        let mut batch = rocksdb::WriteBatch::default();
        for item in db.iterator(rocksdb::IteratorMode::Start) {
            let Ok((key, _)) = item else { return };
            if <[u8; 32]>::try_from(&*key).map_or(true, |k| !reachable.contains(&ChunkId(k))) {
                batch.delete(key);
            }
        }
        if db.write(batch).is_ok() {
            let _ = std::fs::write(&count_file, reachable.len().to_string());
        }
    }

    /// The last snapshot this client recorded for `hostname` and `paths`, if any can be read.
    pub(crate) fn parent(&self, hostname: &str, paths: &[Vec<u8>]) -> Option<(ObjectId, Snapshot)> {
        let file = parent_file(&self.dir, &self.key, hostname, paths);
        let sealed = std::fs::read(&file).ok()?;
        let what = file.display().to_string();
        // Sealed with its file's name: a record moved to another host's or path set's name
        // does not open.
        let ad = file.file_name()?.as_encoded_bytes().to_vec();
        let plain = envelope::open(&sealed, ObjectKind::Snapshot, &ad, &what, |_| Ok(&self.key)).ok()?;
        let (id, rest) = plain.split_first_chunk::<32>()?;
        let snapshot = Snapshot::decode(rest, &what).ok()?;
        let (mut theirs, mut ours) = (snapshot.paths.clone(), paths.to_vec());
        theirs.sort();
        ours.sort();
        (snapshot.hostname == hostname && theirs == ours).then_some((ObjectId(*id), snapshot))
    }
}
