//! Repairs. `snapshots` rewrites snapshots around missing data (see there).
//!
//! `repair index`: rebuild the index from the packs themselves. Every pack's sealed header
//! lists its blobs, so the index can always be recomputed from the data: read each pack whole,
//! open its header (which must be bound to the pack's blobs by their hash, and the bytes must
//! hash to the pack's name), write a replacement index (superseding every old segment, SPEC
//! §11), then delete the old segments. A pack whose header cannot be read or verified is
//! reported and left out; its blobs are then missing, which `check` names.

mod snapshots;

pub use snapshots::{DAMAGED_SUFFIX, RepairSnapshotsOutcome, RepairedSnapshot, repair_snapshots};

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::format::index::IndexedPack;
use crate::format::names::Dir;
use crate::progress::Progress;
use crate::repo::{IndexRewrite, Repository};

/// What `repair index` did.
#[derive(Debug, Clone, Default)]
pub struct RepairIndexOutcome {
    /// Packs indexed.
    pub packs: u64,
    /// Blobs indexed.
    pub blobs: u64,
    /// Packs left out: (object, why).
    pub unreadable: Vec<(String, String)>,
    /// Segments written.
    pub segments_written: u64,
    /// Old segments deleted.
    pub segments_deleted: u64,
}

/// Reads the pack `name` whole and opens its header. The header opens only with the hash of
/// the blobs before it (SPEC §10), so a header moved from another pack is refused here, and
/// so are bytes that do not hash to the pack's name.
/// A pack's index entry from its header, and whether that header is sealed to the reader key
/// (the pack was written by a write-only slot: unverified, SPEC §11). The header opened, so
/// its version byte is authentic.
fn read_header(repo: &Repository, name: &str) -> Result<(IndexedPack, bool)> {
    let id = crate::format::names::pack_id(name).ok_or_else(|| Error::corrupt(name, "not a pack name"))?;
    let (bytes, opened) = repo.read_verified_pack(&id)?;
    let reader_sealed = usize::try_from(opened.header_offset).ok().and_then(|o| bytes.get(o))
        == Some(&crate::format::envelope::READER_ENVELOPE_VERSION);
    Ok((IndexedPack { pack: id, size: bytes.len() as u64, blobs: opened.header.blobs }, reader_sealed))
}

/// Rebuilds the index from every pack's header (the caller holds the exclusive lock).
pub fn repair_index(repo: &Repository, progress: &dyn Progress) -> Result<RepairIndexOutcome> {
    let mut out = RepairIndexOutcome::default();
    let old = repo.segment_ids()?;
    let packs = repo.list_names(Dir::Data)?;
    progress.phase("repair: reading pack headers", Some(packs.len() as u64));
    let mut rewrite = IndexRewrite::new(repo)?;
    // Packs are read whole, as many at once as there are storage connections: that bounds
    // the memory (a pack each) and keeps the order of the new index.
    for batch in packs.chunks(repo.storage_connections()) {
        let read: Vec<Result<(IndexedPack, bool)>> =
            repo.with_io_pool(|| batch.par_iter().map(|name| read_header(repo, name)).collect());
        for (name, result) in batch.iter().zip(read) {
            progress.bytes(1);
            match result {
                Ok((pack, reader_sealed)) => {
                    out.packs += 1;
                    out.blobs += pack.blobs.len() as u64;
                    rewrite.add_read(pack, reader_sealed)?;
                }
                Err(e @ (Error::Corrupt { .. } | Error::UnsupportedVersion { .. })) => {
                    out.unreadable.push((name.clone(), e.to_string()))
                }
                Err(e) => return Err(e),
            }
        }
    }
    out.segments_written = rewrite.finish(old.clone())?;
    repo.delete_segments(&old)?;
    out.segments_deleted += old.len() as u64;
    repo.sync_index()?;
    progress.done();
    Ok(out)
}
