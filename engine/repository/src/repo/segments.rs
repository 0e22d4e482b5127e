//! The index segments service: which segments exist, one read and opened, which are
//! superseded, and their deletion. Operations reach index segments only through it.

use super::*;

impl Repository {
    /// Ids of the index segments in the repository, sorted.
    pub fn segment_ids(&self) -> Result<Vec<ObjectId>> {
        let mut ids = Dir::Index.ids(&self.storage.list(Dir::Index.prefix())?);
        ids.sort();
        Ok(ids)
    }

    /// The index segment `id`, read, opened and decoded.
    pub fn load_segment(&self, id: &ObjectId) -> Result<IndexSegment> {
        self.load_segment_named(&Dir::Index.object(id))
    }

    /// The index segment stored as `name` (a name from a listing of `index/`).
    pub fn load_segment_named(&self, name: &str) -> Result<IndexSegment> {
        let (plain, to_reader) = self.load_object_sealed_how(ObjectKind::IndexSegment, name)?;
        let mut segment = IndexSegment::decode(&plain, name)?;
        // Superseding is prune's (a full key's): a write-only slot naming segments it
        // supersedes would empty the full clients' index caches.
        if to_reader && !segment.supersedes.is_empty() {
            return Err(Error::corrupt(
                name,
                "written by a write-only slot (sealed to the reader key), yet it supersedes other segments, which only \
                 a full key's prune does: forged with a stolen write-only slot",
            ));
        }
        if to_reader {
            // Whatever it says: no full key has checked what a write-only slot stored.
            segment.unverified = segment.packs.iter().map(|p| p.pack).collect();
        }
        Ok(segment)
    }

    /// The present segments, sorted, and those of them a present segment supersedes. Every
    /// segment is read (one at a time; only their `supersedes` lists are kept); one that
    /// cannot be read is an error, since what it supersedes is then unknown.
    pub fn segments_and_superseded(&self) -> Result<(Vec<ObjectId>, HashSet<ObjectId>)> {
        let ids = self.segment_ids()?;
        let mut superseded = HashSet::new();
        for id in &ids {
            superseded.extend(self.load_segment(id)?.supersedes);
        }
        Ok((ids, superseded))
    }

    /// Deletes the index segments `ids` (prune and repair, once a new index supersedes them).
    pub fn delete_segments(&self, ids: &[ObjectId]) -> Result<()> {
        self.storage.delete_many(&ids.iter().map(|id| Dir::Index.object(id)).collect::<Vec<_>>())
    }
}
