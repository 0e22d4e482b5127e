//! Step 1 of a prune that rewrites the index: the used blobs whose kept copy is in a pack being
//! repacked are read, verified (or re-sealed under the current epoch) and written into new
//! packs. Only those blobs are read, in runs of nearby ranges: a pack read whole (up to its
//! size limit) beside the new pack being filled was the largest thing prune held in memory.

use std::collections::HashSet;

use crate::error::{Error, Result};
use crate::format::index::IndexedPack;
use crate::format::pack::BlobEntry;
use crate::id::PackId;
use crate::index::{BlobLocation, IdMap};
use crate::progress::Progress;
use crate::repo::{RepackWriter, Repository, pack_name};

use super::claims::{CLAIM_LEN, Claim};

/// Blobs to copy closer than this share one ranged read.
const GAP: u64 = 64 * 1024;
/// The largest ranged read (a blob larger than this is read alone).
const MAX_RANGE: u64 = 4 << 20;

/// The claims whose copy lies in a pack being repacked, in a table of their own (in memory up
/// to its budget, then on disk: re-encrypting an epoch repacks every pack).
pub(super) fn kept_copies(
    repo: &Repository,
    used: &mut IdMap<CLAIM_LEN>,
    repack: &HashSet<PackId>,
) -> Result<IdMap<CLAIM_LEN>> {
    let mut out = repo.id_map("prune-keep")?;
    used.for_each_unordered(|id, value| {
        if let Some(claim) = Claim::decode(value)?
            && repack.contains(&claim.loc.pack)
        {
            out.put(id, value)?;
        }
        Ok(())
    })?;
    Ok(out)
}

/// Copies the blobs of `pack` whose claimed copy (in `keep`, from [`kept_copies`]) is this one,
/// the whole location alike (so another entry at the same offset, of a listing that lies, is
/// not taken for it), each id once should the pack list it twice, into `writer`; `reseal`
/// re-encrypts them under the current epoch.
pub(super) fn copy_kept(
    repo: &Repository,
    writer: &RepackWriter,
    pack: &IndexedPack,
    keep: &mut IdMap<CLAIM_LEN>,
    reseal: bool,
    progress: &dyn Progress,
) -> Result<()> {
    let mut copied = HashSet::new();
    let mut kept: Vec<&BlobEntry> = Vec::new();
    for b in &pack.blobs {
        let claim = keep.get(b.id.as_bytes())?.map(|v| Claim::decode(&v)).transpose()?.flatten();
        if claim.is_some_and(|c| c.loc == BlobLocation::of(pack.pack, b)) && copied.insert(b.id) {
            kept.push(b);
        }
    }
    kept.sort_by_key(|b| b.offset);
    let name = pack_name(&pack.pack);
    for run in runs(&kept) {
        let Some(first) = run.first() else { continue };
        let start = u64::from(first.offset);
        // The furthest end, not the last entry's: a listing may overlap its entries.
        let end = run.iter().map(|b| u64::from(b.offset) + u64::from(b.length)).max().unwrap_or(start);
        // Nothing past the largest size a pack may have (reading the pack whole was bounded
        // so), which also bounds the read.
        if end > repo.config().max_pack_size() {
            return Err(Error::corrupt(
                &name,
                format!("its listing has a blob ending at byte {end}, past the largest pack size"),
            ));
        }
        let bytes = repo.read_pack_range(&pack.pack, start, end - start)?;
        for b in run {
            let at = (u64::from(b.offset) - start) as usize;
            let sealed = bytes
                .get(at..at + b.length as usize)
                .ok_or_else(|| Error::corrupt(&name, format!("blob {} lies beyond the pack's end", b.id)))?;
            let loc = BlobLocation::of(pack.pack, b);
            let bytes = if reseal {
                repo.reseal_blob(&b.id, &loc, &name, sealed)?
            } else {
                repo.open_blob(&b.id, &loc, &name, sealed)?;
                sealed.to_vec()
            };
            progress.bytes(u64::from(b.length));
            writer.add(b.kind, b.id, b.raw_length, bytes)?;
        }
    }
    Ok(())
}

/// `blobs` (in offset order) cut into runs read at once: a gap of more than [`GAP`], or a run
/// that would pass [`MAX_RANGE`], starts the next run. Overlapping entries (a damaged listing)
/// stay in one run.
fn runs<'a>(blobs: &'a [&'a BlobEntry]) -> Vec<&'a [&'a BlobEntry]> {
    let mut out = Vec::new();
    let mut from = 0;
    let mut run_start = 0u64;
    let mut run_end = 0u64;
    for (i, b) in blobs.iter().enumerate() {
        let (start, end) = (u64::from(b.offset), u64::from(b.offset) + u64::from(b.length));
        if i > from && (start > run_end + GAP || end.max(run_end) - run_start > MAX_RANGE) {
            out.extend(blobs.get(from..i));
            from = i;
        }
        if i == from {
            (run_start, run_end) = (start, end);
        } else {
            run_end = run_end.max(end);
        }
    }
    out.extend(blobs.get(from..));
    out.retain(|r| !r.is_empty());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::BlobKind;
    use crate::id::ChunkId;

    fn entry(offset: u32, length: u32) -> BlobEntry {
        BlobEntry { kind: BlobKind::Data, id: ChunkId([offset as u8; 32]), offset, length, raw_length: length }
    }

    fn shape(entries: &[BlobEntry]) -> Vec<Vec<u32>> {
        let refs: Vec<&BlobEntry> = entries.iter().collect();
        runs(&refs).iter().map(|r| r.iter().map(|b| b.offset).collect()).collect()
    }

    #[test]
    fn nearby_blobs_share_a_read_and_gaps_or_size_split_them() {
        assert!(shape(&[]).is_empty());
        let near = [entry(0, 1000), entry(1000, 1000), entry(2000 + GAP as u32, 10)];
        assert_eq!(shape(&near), vec![vec![0, 1000, 2000 + GAP as u32]], "a gap of exactly GAP is bridged");
        let far = [entry(0, 1000), entry(1001 + GAP as u32, 10)];
        assert_eq!(shape(&far), vec![vec![0], vec![1001 + GAP as u32]]);
        let mib = 1 << 20;
        let big = [entry(0, 3 * mib), entry(3 * mib, mib), entry(4 * mib, 1), entry(4 * mib + 1, 5 * mib)];
        assert_eq!(
            shape(&big),
            vec![vec![0, 3 * mib], vec![4 * mib], vec![4 * mib + 1]],
            "at most MAX_RANGE, but a large blob alone"
        );
    }
}
