//! Replacing the whole index (prune, repair): new segments are written as packs come, and only
//! the last one names the old segments as superseded, so a crash while writing leaves the old
//! index in force (SPEC §11). The caller deletes the old segments afterwards.

use crate::error::Result;
use crate::format::envelope::ObjectKind;
use crate::format::index::{IndexSegment, IndexedPack};
use crate::format::names::Dir;
use std::collections::HashSet;

use crate::id::{ObjectId, PackId};

use super::Repository;

/// Packs per segment written.
const PACKS_PER_SEGMENT: usize = 256;

/// Writes a replacement index.
#[derive(Debug)]
pub struct IndexRewrite<'r> {
    repo: &'r Repository,
    batch: Vec<IndexedPack>,
    blobs: usize,
    written: u64,
    /// The packs the index cache knows as unverified (a write-only slot wrote them): the new
    /// index marks them so too, or a rewrite would launder them into trusted ones.
    unverified: HashSet<PackId>,
}

impl<'r> IndexRewrite<'r> {
    /// Starts a replacement index. The caller synced the index cache (what it marks as
    /// unverified is carried over).
    pub fn new(repo: &'r Repository) -> Result<Self> {
        let unverified = repo.index().unverified_packs()?;
        Ok(IndexRewrite { repo, batch: Vec::new(), blobs: 0, written: 0, unverified })
    }

    fn write(&mut self, supersedes: Vec<ObjectId>) -> Result<()> {
        let packs = std::mem::take(&mut self.batch);
        let unverified = packs.iter().map(|p| p.pack).filter(|p| self.unverified.contains(p)).collect();
        let segment = IndexSegment { packs, supersedes, unverified };
        self.blobs = 0;
        let name = Dir::Index.object(&ObjectId::random()?);
        self.repo.save_object(ObjectKind::IndexSegment, &name, &segment.encode())?;
        self.written += 1;
        Ok(())
    }

    /// Adds a pack read from storage (repair): unverified exactly when its own header is sealed
    /// to the reader key (a write-only slot wrote it), whatever the cache said of it.
    pub fn add_read(&mut self, pack: IndexedPack, reader_sealed: bool) -> Result<()> {
        if reader_sealed {
            self.unverified.insert(pack.pack);
        } else {
            self.unverified.remove(&pack.pack);
        }
        self.add(pack)
    }

    /// Adds a pack to the new index.
    pub fn add(&mut self, pack: IndexedPack) -> Result<()> {
        self.blobs += pack.blobs.len();
        self.batch.push(pack);
        if self.batch.len() >= PACKS_PER_SEGMENT || self.blobs >= super::BLOBS_PER_SEGMENT {
            self.write(Vec::new())?;
        }
        Ok(())
    }

    /// Writes the last segment, superseding `old`; returns how many segments were written.
    pub fn finish(mut self, old: Vec<ObjectId>) -> Result<u64> {
        self.write(old)?;
        Ok(self.written)
    }
}
