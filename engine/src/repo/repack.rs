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
    epoch: u32,
    key: crate::crypto::Key32,
    zstd_level: i32,
}

impl RepackWriter {
    /// Adds one sealed blob (checked by the caller with [`Repository::open_blob`]).
    pub fn add(&self, kind: BlobKind, id: ChunkId, raw_length: u32, sealed: Vec<u8>) -> Result<()> {
        self.packer.add(kind, id, raw_length, sealed)
    }

    /// Adds one blob's plaintext, compressed and sealed anew under the current epoch (prune's
    /// re-encryption of an old epoch).
    pub fn add_plaintext(&self, kind: BlobKind, id: ChunkId, plaintext: &[u8]) -> Result<()> {
        let body = crate::compress::encode(plaintext, self.zstd_level);
        let sealed = crate::format::envelope::seal(&self.key, self.epoch, kind.object_kind(), id.as_bytes(), &body)?;
        let raw_length = u32::try_from(plaintext.len())
            .map_err(|_| crate::error::Error::InvalidInput("blob larger than 4 GiB".into()))?;
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
    pub fn repack_writer(&self) -> RepackWriter {
        let (epoch, key) = self.keyring().current();
        let target = self.config().pack_target_size as usize;
        RepackWriter {
            packer: Packer::new(self.storage().clone(), epoch, key.clone(), target),
            epoch,
            key: key.clone(),
            zstd_level: self.config().zstd_level,
        }
    }
}
