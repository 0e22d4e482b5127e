//! `check`'s view of the index as the segments in the repository say, in bounded memory: every
//! entry goes into two sorted record sets on the client's disk (by pack, to read each pack
//! with its entries; by blob, to count the copies of each blob). Only pack sizes and the blobs
//! stored more than once stay in memory. Whether a blob is indexed at all is asked of the
//! index cache, made first to hold exactly the live segments read here.

use std::collections::{HashMap, HashSet};

use rayon::prelude::*;

use crate::error::Result;
use crate::format::BlobKind;
use crate::format::names::Dir;
use crate::format::pack::BlobEntry;
use crate::id::{ChunkId, ObjectId, PackId};
use crate::index::SortedRecords;
use crate::repo::Repository;

/// Index segments read at once (memory: this many decoded segments).
const BATCH: usize = 8;

/// A record by pack: pack, blob, offset, length, raw length (big-endian), kind, then the
/// ordinal of the segment that lists it. Everything before the ordinal is the entry itself.
const BY_PACK: usize = 32 + 32 + 4 + 4 + 4 + 1 + 4;
const ENTRY: usize = BY_PACK - 4;
/// A record by blob: blob, pack, the ordinal of the segment that lists it.
const BY_BLOB: usize = 32 + 32 + 4;

/// The live index: what the segments not superseded by another say.
pub(super) struct IndexView {
    /// Every pack the live segments list, with its size.
    pub packs: HashMap<PackId, u64>,
    /// How many packs hold each blob stored in more than one.
    pub copies: HashMap<ChunkId, u32>,
    /// Entries that lie beyond the end of their pack: (pack, blob, the segment listing it).
    pub outside: Vec<(PackId, ChunkId, String)>,
    by_pack: SortedRecords<BY_PACK>,
    /// Per segment ordinal: whether it was read and no other segment supersedes it.
    live: Vec<bool>,
}

/// A problem found while reading the index: (object, what is wrong).
pub(super) type Problem = (String, String);

fn pack_record(pack: &PackId, b: &BlobEntry, segment: u32) -> [u8; BY_PACK] {
    let mut r = [0u8; BY_PACK];
    r[..32].copy_from_slice(&pack.0);
    r[32..64].copy_from_slice(b.id.as_bytes());
    r[64..68].copy_from_slice(&b.offset.to_be_bytes());
    r[68..72].copy_from_slice(&b.length.to_be_bytes());
    r[72..76].copy_from_slice(&b.raw_length.to_be_bytes());
    r[76] = b.kind.code();
    r[77..].copy_from_slice(&segment.to_be_bytes());
    r
}

fn blob_record(id: &ChunkId, pack: &PackId, segment: u32) -> [u8; BY_BLOB] {
    let mut r = [0u8; BY_BLOB];
    r[..32].copy_from_slice(id.as_bytes());
    r[32..64].copy_from_slice(&pack.0);
    r[64..].copy_from_slice(&segment.to_be_bytes());
    r
}

fn u32_at(r: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(r.get(at..at + 4).and_then(|b| b.try_into().ok()).unwrap_or_default())
}

fn id_at(r: &[u8], at: usize) -> [u8; 32] {
    r.get(at..at + 32).and_then(|b| b.try_into().ok()).unwrap_or_default()
}

/// Reads every index segment. Problems (a segment that cannot be read, an entry outside its
/// pack) go to `problems`.
pub(super) fn load(repo: &Repository, problems: &mut Vec<Problem>) -> Result<IndexView> {
    let names = repo.list_names(Dir::Index)?;
    let mut by_pack = repo.sorted_records::<BY_PACK>("check-by-pack")?;
    let mut by_blob = repo.sorted_records::<BY_BLOB>("check-by-blob")?;
    let mut superseded: HashSet<String> = HashSet::new();
    let mut read = vec![false; names.len()];
    let mut pack_sizes: Vec<(u32, PackId, u64)> = Vec::new();
    let mut outside: Vec<(u32, PackId, ChunkId)> = Vec::new();
    for (batch_no, batch) in names.chunks(BATCH).enumerate() {
        let segments: Vec<_> =
            repo.with_io_pool(|| batch.par_iter().map(|name| repo.load_segment_named(name)).collect());
        for (i, (name, segment)) in batch.iter().zip(segments).enumerate() {
            let ordinal = batch_no * BATCH + i;
            let segment = match segment {
                Ok(s) => s,
                Err(e) => {
                    problems.push((
                        name.clone(),
                        format!("{e}; the blobs it lists look missing until `cairn repair index`"),
                    ));
                    continue;
                }
            };
            if let Some(read) = read.get_mut(ordinal) {
                *read = true;
            }
            let ordinal = ordinal as u32;
            superseded.extend(segment.supersedes.iter().map(|id| Dir::Index.object(id)));
            for pack in segment.packs {
                pack_sizes.push((ordinal, pack.pack, pack.size));
                for b in pack.blobs {
                    by_blob.push(blob_record(&b.id, &pack.pack, ordinal))?;
                    if u64::from(b.offset) + u64::from(b.length) > pack.size {
                        outside.push((ordinal, pack.pack, b.id));
                    } else {
                        by_pack.push(pack_record(&pack.pack, &b, ordinal))?;
                    }
                }
            }
        }
    }
    let live: Vec<bool> = names.iter().zip(&read).map(|(name, read)| *read && !superseded.contains(name)).collect();
    let is_live = |ordinal: u32| live.get(ordinal as usize).copied().unwrap_or(false);
    let packs = pack_sizes.into_iter().filter(|(o, ..)| is_live(*o)).map(|(_, p, size)| (p, size)).collect();
    let outside: Vec<(PackId, ChunkId, String)> = outside
        .into_iter()
        .filter(|(o, ..)| is_live(*o))
        .filter_map(|(o, pack, id)| Some((pack, id, names.get(o as usize)?.clone())))
        .collect();
    for (pack, id, segment) in &outside {
        problems.push((segment.clone(), format!("entry for blob {id} lies outside pack {pack}")));
    }
    let copies = count_copies(by_blob, &is_live)?;
    // The cache answers "is this blob indexed?" for the snapshots' walk: it must hold exactly
    // the live segments read here (not those of another listing, nor one unreadable now).
    let live_ids: HashSet<ObjectId> =
        names.iter().zip(&live).filter(|(_, live)| **live).filter_map(|(name, _)| Dir::Index.id_of(name)).collect();
    repo.align_index_cache(&live_ids)?;
    Ok(IndexView { packs, copies, outside, by_pack, live })
}

/// The blobs the live segments place in more than one pack, with the number of packs.
fn count_copies(by_blob: SortedRecords<BY_BLOB>, is_live: &dyn Fn(u32) -> bool) -> Result<HashMap<ChunkId, u32>> {
    let mut copies = HashMap::new();
    let mut current: Option<([u8; 32], [u8; 32], u32)> = None;
    let mut settle = |blob: [u8; 32], packs: u32| {
        if packs > 1 {
            copies.insert(ChunkId(blob), packs);
        }
    };
    by_blob.for_each(|r| {
        if !is_live(u32_at(r, 64)) {
            return Ok(());
        }
        let (blob, pack) = (id_at(r, 0), id_at(r, 32));
        match &mut current {
            Some((b, p, n)) if *b == blob => {
                if *p != pack {
                    *p = pack;
                    *n += 1;
                }
            }
            _ => {
                if let Some((b, _, n)) = current.take() {
                    settle(b, n);
                }
                current = Some((blob, pack, 1));
            }
        }
        Ok(())
    })?;
    if let Some((b, _, n)) = current {
        settle(b, n);
    }
    Ok(copies)
}

impl IndexView {
    /// Calls `f` with every pack of the live index and its entries, in pack order, each entry
    /// once however many segments list it.
    pub(super) fn for_each_pack(
        self,
        mut f: impl FnMut(PackId, Vec<(ChunkId, BlobEntry)>) -> Result<()>,
    ) -> Result<()> {
        let live = self.live;
        let mut current: Option<PackId> = None;
        let mut entries: Vec<(ChunkId, BlobEntry)> = Vec::new();
        let mut last = [0u8; ENTRY];
        self.by_pack.for_each(|r| {
            if !live.get(u32_at(r, ENTRY) as usize).copied().unwrap_or(false)
                || (current.is_some() && r[..ENTRY] == last)
            {
                return Ok(());
            }
            last.copy_from_slice(&r[..ENTRY]);
            let pack = PackId(id_at(r, 0));
            if current != Some(pack)
                && let Some(done) = current.replace(pack)
            {
                f(done, std::mem::take(&mut entries))?;
            }
            let id = ChunkId(id_at(r, 32));
            let kind = BlobKind::from_code(r[76]).unwrap_or(BlobKind::Data);
            let entry = BlobEntry { kind, id, offset: u32_at(r, 64), length: u32_at(r, 68), raw_length: u32_at(r, 72) };
            entries.push((id, entry));
            Ok(())
        })?;
        match current {
            Some(pack) => f(pack, entries),
            None => Ok(()),
        }
    }
}
