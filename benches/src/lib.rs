//! Criterion benches live in benches/; this library holds what they share with the tools in
//! src/bin.

use cairn_engine::format::BlobKind;
use cairn_engine::format::index::{IndexSegment, IndexedPack};
use cairn_engine::format::pack::BlobEntry;
use cairn_engine::id::{ChunkId, PackId};

/// Blobs per synthetic pack.
pub const BLOBS_PER_PACK: u64 = 1024;
/// Packs per synthetic index segment.
pub const PACKS_PER_SEGMENT: u64 = 64;
/// Entries per synthetic index segment.
pub const SEGMENT_ENTRIES: u64 = BLOBS_PER_PACK * PACKS_PER_SEGMENT;

/// The synthetic index segment holding entries `first..` (at most [`SEGMENT_ENTRIES`], none
/// from `total` on): packs of [`BLOBS_PER_PACK`] consecutive ids, as a pack holds the chunks
/// of consecutive files. Entry `n` is `id(n)`; the pack starting at entry `n` is `pack(n)`.
pub fn synthetic_segment(
    first: u64,
    total: u64,
    id: impl Fn(u64) -> ChunkId,
    pack: impl Fn(u64) -> PackId,
) -> IndexSegment {
    let packs = (0..PACKS_PER_SEGMENT)
        .map(|p| first + p * BLOBS_PER_PACK)
        .take_while(|start| *start < total)
        .map(|start| IndexedPack {
            pack: pack(start),
            size: 1 << 20,
            blobs: (start..(start + BLOBS_PER_PACK).min(total))
                .map(|i| BlobEntry {
                    kind: BlobKind::Data,
                    id: id(i),
                    offset: (i % BLOBS_PER_PACK) as u32 * 1024,
                    length: 1000,
                    raw_length: 2000,
                })
                .collect(),
        })
        .collect();
    IndexSegment { packs, supersedes: Vec::new(), unverified: Vec::new() }
}
