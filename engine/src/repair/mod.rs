//! Repairs. `snapshots` rewrites snapshots around missing data (see there).
//!
//! `repair index`: rebuild the index from the packs themselves. Every pack's sealed header
//! lists its blobs, so the index can always be recomputed from the data: read each pack's
//! trailer and header (two ranged reads), write a replacement index (superseding every old
//! segment, SPEC §11), then delete the old segments. A pack whose header cannot be read is
//! reported and left out; its blobs are then missing, which `check` names.

mod snapshots;

pub use snapshots::{DAMAGED_SUFFIX, RepairSnapshotsOutcome, RepairedSnapshot, repair_snapshots};

use crate::error::{Error, Result};
use crate::format::index::IndexedPack;
use crate::format::pack::TRAILER_LEN;
use crate::id::PackId;
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

/// Reads the header of the pack `name` of `size` bytes with two ranged reads.
fn read_header(repo: &Repository, name: &str, size: u64) -> Result<IndexedPack> {
    let id = name
        .rsplit('/')
        .next()
        .and_then(|h| PackId::from_hex(h).ok())
        .ok_or_else(|| Error::corrupt(name, "not a pack name"))?;
    let tail_len = TRAILER_LEN as u64;
    // The size comes from the storage: a pack larger than the config allows is not read (its
    // header could claim gigabytes).
    if size > repo.config().max_pack_size() {
        return Err(crate::storage::too_large(name, size, repo.config().max_pack_size()));
    }
    if size < tail_len {
        return Err(Error::corrupt(name, "shorter than a pack trailer"));
    }
    let trailer = repo.storage().get_range(name, size - tail_len, tail_len)?;
    let (offset, len) = crate::format::pack::header_location(size, &trailer, name)?;
    let header = repo.storage().get_range(name, offset, u64::from(len) + tail_len)?;
    let parsed = repo.pack_header_at(name, offset, &header)?;
    Ok(IndexedPack { pack: id, size, blobs: parsed.blobs })
}

/// Rebuilds the index from every pack's header (the caller holds the exclusive lock).
pub fn repair_index(repo: &Repository, progress: &dyn Progress) -> Result<RepairIndexOutcome> {
    let mut out = RepairIndexOutcome::default();
    let old = repo.segment_ids()?;
    let mut packs = repo.storage().list("data/")?;
    packs.sort();
    progress.phase("repair: reading pack headers", Some(packs.len() as u64));
    let mut rewrite = IndexRewrite::new(repo);
    for name in packs {
        progress.bytes(1);
        let size = repo.storage().stat(&name)?.unwrap_or(0);
        match read_header(repo, &name, size) {
            Ok(pack) => {
                out.packs += 1;
                out.blobs += pack.blobs.len() as u64;
                rewrite.add(pack)?;
            }
            Err(e @ (Error::Corrupt { .. } | Error::UnsupportedVersion { .. })) => {
                out.unreadable.push((name, e.to_string()))
            }
            Err(e) => return Err(e),
        }
    }
    out.segments_written = rewrite.finish(old.clone())?;
    for id in &old {
        repo.storage().delete(&format!("index/{id}"))?;
        out.segments_deleted += 1;
    }
    repo.sync_index()?;
    progress.done();
    Ok(out)
}
