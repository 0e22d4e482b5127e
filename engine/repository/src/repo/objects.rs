//! The rest of the object namespace: raw listings of a directory (strays included, for check
//! and repair to report), the prune marks objects, the temporary files interrupted writes
//! left, and a reader of sealed blobs for background threads. With the packs, segments and
//! snapshots services, operations reach stored objects only through the repository.

use super::*;
use crate::format::marks::PruneMarks;
use crate::storage::Leftover;

impl Repository {
    /// Every name stored under `dir`, sorted, including names that are not well-formed object
    /// names (check and repair report those).
    pub fn list_names(&self, dir: Dir) -> Result<Vec<String>> {
        let mut names = self.storage.list(dir.prefix())?;
        names.sort();
        Ok(names)
    }

    /// Reads a stored object whole (at most [`MAX_SMALL_OBJECT`] bytes), as stored: for
    /// checks of objects whose envelope a layout opens itself (key slots).
    pub fn read_raw(&self, name: &str) -> Result<Vec<u8>> {
        self.storage.get_bounded(name, MAX_SMALL_OBJECT)
    }

    /// Ids of the prune marks objects present, sorted.
    pub fn marks_ids(&self) -> Result<Vec<ObjectId>> {
        let mut ids = Dir::Marks.ids(&self.storage.list(Dir::Marks.prefix())?);
        ids.sort();
        Ok(ids)
    }

    /// The prune marks object `id`, read, opened and decoded.
    pub fn load_marks(&self, id: &ObjectId) -> Result<PruneMarks> {
        let name = Dir::Marks.object(id);
        PruneMarks::decode(&self.load_object(ObjectKind::PruneMarks, &name)?, &name)
    }

    /// Stores a new prune marks object; returns its id.
    pub fn save_marks(&self, marks: &PruneMarks) -> Result<ObjectId> {
        let id = ObjectId::random()?;
        self.save_object(ObjectKind::PruneMarks, &Dir::Marks.object(&id), &marks.encode())?;
        Ok(id)
    }

    /// Deletes the prune marks objects `ids`.
    pub fn delete_marks(&self, ids: &[ObjectId]) -> Result<()> {
        self.storage.delete_many(&ids.iter().map(|id| Dir::Marks.object(id)).collect::<Vec<_>>())
    }

    /// The temporary files interrupted writes left in the storage.
    pub fn leftovers(&self) -> Result<Vec<Leftover>> {
        self.storage.leftovers()
    }

    /// Removes one of the [`Repository::leftovers`].
    pub fn remove_leftover(&self, leftover: &Leftover) -> Result<()> {
        self.storage.remove_leftover(&leftover.name)
    }

    /// A reader of sealed blobs that background threads can own.
    pub fn sealed_blob_reader(&self) -> SealedBlobReader {
        SealedBlobReader { storage: Arc::clone(&self.storage) }
    }
}

/// Reads the sealed bytes of a blob where the index places it (the caller opens them with
/// [`Repository::open_blob`]).
#[derive(Clone)]
pub struct SealedBlobReader {
    storage: Arc<dyn Storage>,
}

impl std::fmt::Debug for SealedBlobReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedBlobReader").finish_non_exhaustive()
    }
}

impl SealedBlobReader {
    /// The sealed bytes at `loc`.
    pub fn read(&self, loc: &BlobLocation) -> Result<Vec<u8>> {
        self.storage.get_range(&pack_name(&loc.pack), u64::from(loc.offset), u64::from(loc.length))
    }
}
