//! Copying sealed blobs into new packs as they are (prune's repack): a sealed blob is bound to
//! its kind and id, not to the pack holding it, so it moves without being re-encrypted.

use crate::error::Result;
use crate::format::BlobKind;
use crate::format::index::IndexedPack;
use crate::id::ChunkId;

use super::Repository;
use super::packer::Packer;

/// Writes already sealed blobs into new packs.
#[derive(Debug)]
pub struct RepackWriter {
    packer: Packer,
}

impl RepackWriter {
    /// Adds one sealed blob (checked by the caller with [`Repository::open_blob`]).
    pub fn add(&self, kind: BlobKind, id: ChunkId, raw_length: u32, sealed: Vec<u8>) -> Result<()> {
        self.packer.add(kind, id, raw_length, sealed)
    }

    /// Stores the last packs; returns every pack written, for the new index.
    pub fn finish(self) -> Result<Vec<IndexedPack>> {
        self.packer.flush()?;
        Ok(self.packer.take_finished())
    }
}

impl Repository {
    /// A writer of new packs from sealed blobs.
    pub fn repack_writer(&self) -> Result<RepackWriter> {
        let target = self.config().pack_target_size as usize;
        let packer = Packer::new(self.storage().clone(), self.sealer()?, target, self.storage_connections())?
            .keeping_tree_packs(self.tree_pack_cache().cloned());
        Ok(RepackWriter { packer })
    }
}
