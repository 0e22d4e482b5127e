//! Blobs by id: where the index says they are, read and verified against their keyed id (other
//! copies tried when one is missing or damaged), trees loaded.

use super::index_sync::SYNC_BATCH;
use super::*;

/// Tree packs a handle remembers having asked the storage to read ahead, at most.
const READ_AHEAD_REMEMBERED: usize = 1 << 16;

impl Repository {
    /// Where a blob lives.
    pub fn locate(&self, id: &ChunkId) -> Result<BlobLocation> {
        self.index.get(id)?.ok_or(Error::NotIndexed(*id))
    }

    /// Reads, opens, decompresses and verifies a blob: its keyed hash must equal `id`, so a
    /// restore can never write bytes other than the ones backed up. When the copy the index
    /// cache names is missing or damaged, other copies the index segments list are tried.
    pub fn read_blob(&self, id: &ChunkId) -> Result<Vec<u8>> {
        self.read_blob_located(id, &self.locate(id)?)
    }

    /// [`Repository::read_blob`] of a blob the caller located already (prune sizes its batches
    /// of trees by their locations): one index lookup instead of two.
    pub fn read_blob_located(&self, id: &ChunkId, loc: &BlobLocation) -> Result<Vec<u8>> {
        match self.read_blob_at(id, loc) {
            Err(e @ (Error::Corrupt { .. } | Error::Missing(_))) => {
                let copies = self.blob_copies(&HashSet::from([*id]))?.remove(id).unwrap_or_default();
                copies
                    .iter()
                    .filter(|other| other.pack != loc.pack)
                    .find_map(|other| self.read_blob_at(id, other).ok())
                    .ok_or(e)
            }
            other => other,
        }
    }

    fn read_blob_at(&self, id: &ChunkId, loc: &BlobLocation) -> Result<Vec<u8>> {
        // A tree comes from the client's copy of its pack when there is one (remote stores).
        // A damaged copy is dropped and the pack fetched again; a blob that does not open from
        // an intact copy (or fails otherwise) is read from storage, whose bytes decide.
        if let Some(cache) = self.tree_packs.as_ref().filter(|_| loc.kind == BlobKind::Tree) {
            for _ in 0..2 {
                let cached = cache.read(self.storage.as_ref(), loc, self.config.max_pack_size());
                match cached.and_then(|sealed| self.open_blob(id, loc, &pack_name(&loc.pack), &sealed)) {
                    Ok(plain) => return Ok(plain),
                    Err(Error::Corrupt { .. }) if !cache.copy_is_intact(&loc.pack) => cache.forget(&loc.pack),
                    Err(_) => break,
                }
            }
        }
        if loc.kind == BlobKind::Tree {
            self.read_tree_pack_ahead(&loc.pack);
        }
        let sealed = self.sealed_blob_reader().read(loc)?;
        self.open_blob(id, loc, &pack_name(&loc.pack), &sealed)
    }

    /// Asks the storage to read a tree pack ahead (at most the largest pack this repository
    /// makes), the first time one of its trees is read. A pack's blobs are stored shuffled, so
    /// a walk reads a pack's trees in an order the kernel's own read-ahead never anticipates:
    /// with a cold page cache, each would be a disk seek of its own. Trees and data never share
    /// a pack, so what is read ahead is trees. The set of packs asked for is bounded: past
    /// [`READ_AHEAD_REMEMBERED`] it starts over (asking twice costs a few system calls).
    fn read_tree_pack_ahead(&self, pack: &PackId) {
        let mut asked = self.trees_read_ahead.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if asked.len() >= READ_AHEAD_REMEMBERED {
            asked.clear();
        }
        if asked.insert(*pack) {
            drop(asked);
            self.storage.read_ahead(&pack_name(pack), self.config.max_pack_size());
        }
    }

    /// Every location the repository's index segments give for `ids`, superseded segments
    /// aside. The cache keeps one location per blob; a blob stored more than once (backups
    /// that ran at once each store the same new data) has more, and a reader falls back on
    /// them when the one it read is missing or damaged. Reads every segment (in batches, so
    /// memory stays bounded): for that rare path only. Segments that cannot be read are
    /// skipped.
    pub fn blob_copies(&self, ids: &HashSet<ChunkId>) -> Result<HashMap<ChunkId, Vec<BlobLocation>>> {
        let mut names = self.storage.list(Dir::Index.prefix())?;
        names.sort();
        let mut superseded: HashSet<ObjectId> = HashSet::new();
        let mut found: Vec<(String, ChunkId, BlobLocation)> = Vec::new();
        for batch in names.chunks(SYNC_BATCH) {
            let segments: Vec<Option<IndexSegment>> =
                self.with_io_pool(|| batch.par_iter().map(|name| self.load_segment_named(name).ok()).collect());
            for (name, seg) in batch.iter().zip(segments) {
                let Some(seg) = seg else { continue };
                superseded.extend(seg.supersedes.iter().copied());
                for pack in &seg.packs {
                    for b in pack.blobs.iter().filter(|b| ids.contains(&b.id)) {
                        found.push((name.clone(), b.id, BlobLocation::of(pack.pack, b)));
                    }
                }
            }
        }
        let mut out: HashMap<ChunkId, Vec<BlobLocation>> = HashMap::new();
        for (name, id, loc) in found {
            let live = Dir::Index.id_of(&name).is_some_and(|s| !superseded.contains(&s));
            let copies = out.entry(id).or_default();
            if live && !copies.contains(&loc) {
                copies.push(loc);
            }
        }
        Ok(out)
    }

    /// Opens a blob's sealed bytes read from `pack` and verifies them against `id`.
    pub fn open_blob(&self, id: &ChunkId, loc: &BlobLocation, pack: &str, sealed: &[u8]) -> Result<Vec<u8>> {
        Ok(self.open_blob_parts(id, loc, pack, sealed)?.1)
    }

    /// The opened plaintext (padded, compressed or raw) and the verified content of a sealed
    /// blob.
    fn open_blob_parts(
        &self,
        id: &ChunkId,
        loc: &BlobLocation,
        pack: &str,
        sealed: &[u8],
    ) -> Result<(Vec<u8>, Vec<u8>)> {
        let object = format!("{pack} (blob {id})");
        let opened = envelope::open_sealed(sealed, loc.kind.object_kind(), id.as_bytes(), &object, |to| {
            self.keyring()?.open_pack_key(to, &object)
        })?;
        let plain = blob::decode(&opened, loc.raw_length as usize, &object)?;
        if plain.len() != loc.raw_length as usize || self.keyring()?.chunk_id(&plain) != *id {
            return Err(Error::corrupt(object, "content does not match its id"));
        }
        Ok((opened, plain))
    }

    /// Opens and verifies a blob like [`Repository::open_blob`], then seals its plaintext
    /// (padded, compressed or raw, as it was) again under the current epoch: re-encryption
    /// without recompressing, and the same size.
    pub fn reseal_blob(&self, id: &ChunkId, loc: &BlobLocation, pack: &str, sealed: &[u8]) -> Result<Vec<u8>> {
        let (opened, _) = self.open_blob_parts(id, loc, pack, sealed)?;
        let (epoch, key) = self.keyring()?.current();
        envelope::seal(key, epoch, loc.kind.object_kind(), id.as_bytes(), &opened)
    }

    /// Loads a tree blob.
    pub fn load_tree(&self, id: &ChunkId) -> Result<Tree> {
        if let Some(own) = self.own_record() {
            // A write-only client reads only the trees it wrote, from its cache.
            return own.tree(id, &|plain| self.chunk_id(plain));
        }
        let bytes = self.read_blob(id)?;
        Tree::decode(&bytes, &format!("tree {id}"))
    }

    /// Kind of blob for a location (helper for callers holding only ids).
    pub fn blob_kind(&self, id: &ChunkId) -> Result<BlobKind> {
        Ok(self.locate(id)?.kind)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::crypto::SecretBytes;
    use crate::keys::OpenSecret;
    use crate::repo::testing::{PASSWORD, TestRepository};
    use crate::storage::{MemStorage, PutMode, RetryPolicy, Retrying, Storage, Throttled};

    /// Records the objects it is asked to read ahead.
    #[derive(Debug)]
    struct Recording {
        inner: Arc<MemStorage>,
        asked: Mutex<Vec<String>>,
    }

    impl Storage for Recording {
        fn location(&self) -> String {
            self.inner.location()
        }
        fn put(&self, name: &str, data: &[u8], mode: PutMode) -> Result<()> {
            self.inner.put(name, data, mode)
        }
        fn get(&self, name: &str) -> Result<Vec<u8>> {
            self.inner.get(name)
        }
        fn get_range(&self, name: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
            self.inner.get_range(name, offset, len)
        }
        fn read_ahead(&self, name: &str, max_len: u64) {
            assert!(max_len >= 64 << 10, "the bound is the largest pack: {max_len}");
            self.asked.lock().unwrap().push(name.to_string());
        }
        fn list(&self, prefix: &str) -> Result<Vec<String>> {
            self.inner.list(prefix)
        }
        fn delete(&self, name: &str) -> Result<()> {
            self.inner.delete(name)
        }
        fn stat(&self, name: &str) -> Result<Option<u64>> {
            self.inner.stat(name)
        }
    }

    /// A client walking trees asks for each tree pack to be read ahead once, the first time
    /// it reads a tree from it, and never for a data pack.
    #[test]
    fn each_tree_pack_is_read_ahead_once_and_no_data_pack() {
        let t = TestRepository::new(64 << 10);
        let trees: Vec<Vec<u8>> = (0..40).map(|i| cairn_format::test_util::pseudo_random(9_000, i)).collect();
        let writer = t.repo.blob_writer().unwrap();
        let ids: Vec<ChunkId> = trees.iter().map(|b| writer.add(BlobKind::Tree, b.clone()).unwrap()).collect();
        let data = writer.add(BlobKind::Data, vec![5u8; 10_000]).unwrap();
        writer.finish().unwrap();
        let recording = Arc::new(Recording { inner: t.storage.clone(), asked: Mutex::default() });
        let cache = t.another_cache();
        let secret = OpenSecret::Password(SecretBytes::from(PASSWORD.to_string()));
        let storage: Arc<dyn Storage> = recording.clone();
        let client = Repository::open(storage, &secret, cache).unwrap();
        for _ in 0..2 {
            for (id, tree) in ids.iter().zip(&trees) {
                assert_eq!(&client.read_blob(id).unwrap(), tree);
            }
        }
        assert_eq!(client.read_blob(&data).unwrap(), vec![5u8; 10_000]);
        let mut asked = recording.asked.lock().unwrap().clone();
        let tree_packs: HashSet<String> = ids.iter().map(|id| pack_name(&client.locate(id).unwrap().pack)).collect();
        assert!(tree_packs.len() >= 3, "{} tree packs", tree_packs.len());
        asked.sort();
        let mut expected: Vec<String> = tree_packs.into_iter().collect();
        expected.sort();
        assert_eq!(asked, expected, "each tree pack once, no data pack");

        // The wrappers a CLI puts around a store pass the hint on, unless a download limit
        // would be passed by.
        let retrying: Arc<dyn Storage> = Arc::new(Retrying::new(recording.clone(), RetryPolicy::default()));
        for (download_limit, hints) in [(None, expected.len()), (Some(1 << 30), 0)] {
            recording.asked.lock().unwrap().clear();
            let storage: Arc<dyn Storage> = Arc::new(Throttled::new(retrying.clone(), None, download_limit));
            let client = Repository::open(storage, &secret, t.another_cache()).unwrap();
            for id in &ids {
                client.read_blob(id).unwrap();
            }
            assert_eq!(recording.asked.lock().unwrap().len(), hints, "download limit {download_limit:?}");
        }
    }
}
