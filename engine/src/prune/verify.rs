//! Whether a listed copy of a used blob holds it, for prune's claims (SPEC §15.4). A copy
//! verifies only when its own pack says so as well as its bytes: an identity holding the key
//! can store a pack whose bytes at some place are an exact copy of a used blob's sealed
//! envelope (a blob's envelope is bound to its id, not to its pack) under a header that does
//! not open, or that lists other blobs there. Such a copy opens, but `repair index`, which
//! trusts only pack headers, would not find it: were it kept and the real pack deleted, the
//! blob would be lost. So a copy verifies when
//!
//! - its listed raw length is one the blob can have (a data blob is at most the chunker's
//!   largest chunk; a tree has the length prune read it at, its id fixing its content), checked
//!   before anything is decompressed, so a listing cannot make prune allocate gigabytes;
//! - its pack, read whole, hashes to its name and its header opens (SPEC §10) and lists the
//!   very entry (kind, id, offset, length, raw length);
//! - and the bytes there open and hash to the id.
//!
//! A pack's header is read once per prune: which packs were read stays in memory (a flag per
//! pack), their entries go to an on-disk scratch table.

use std::collections::HashMap;

use crate::error::{Error, Result};
use crate::format::BlobKind;
use crate::format::pack::BlobEntry;
use crate::id::{ChunkId, PackId};
use crate::index::{BlobLocation, ScratchTable};
use crate::repo::{Repository, pack_name};

/// Verifies copies of used blobs; see the module's documentation.
pub(super) struct Verifier<'a> {
    repo: &'a Repository,
    /// The raw length of every used tree, as prune read it.
    tree_lengths: HashMap<ChunkId, u32>,
    /// The largest data blob this repository's writers make: the chunker's largest chunk.
    data_max: u32,
    /// Packs whose header was read: whether it opened (and the pack hashed to its name).
    headers: HashMap<PackId, bool>,
    /// The entries of the headers that opened, as [`entry_key`]s (made at the first).
    entries: Option<ScratchTable>,
}

impl std::fmt::Debug for Verifier<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier").field("headers_read", &self.headers.len()).finish_non_exhaustive()
    }
}

/// Bytes of an [`entry_key`]: pack, kind, id, offset, length, raw length.
const ENTRY_KEY_LEN: usize = 32 + 1 + 32 + 4 + 4 + 4;

/// The key of the entry `b` of `pack`'s header.
fn entry_key(pack: &PackId, b: &BlobEntry) -> Vec<u8> {
    let mut key = Vec::with_capacity(ENTRY_KEY_LEN);
    key.extend_from_slice(pack.as_bytes());
    key.push(b.kind.code());
    key.extend_from_slice(b.id.as_bytes());
    key.extend_from_slice(&b.offset.to_le_bytes());
    key.extend_from_slice(&b.length.to_le_bytes());
    key.extend_from_slice(&b.raw_length.to_le_bytes());
    key
}

/// Whether a blob can have the raw length `loc` lists: a data blob at most `data_max` bytes, a
/// tree exactly `tree_length` (none: not a tree snapshots use, so no copy of it is kept).
fn possible_length(loc: &BlobLocation, data_max: u32, tree_length: Option<u32>) -> bool {
    match loc.kind {
        BlobKind::Data => loc.raw_length <= data_max,
        BlobKind::Tree => tree_length == Some(loc.raw_length),
    }
}

impl<'a> Verifier<'a> {
    /// A verifier for `repo`, whose used trees have the raw lengths `tree_lengths`.
    pub(super) fn new(repo: &'a Repository, tree_lengths: HashMap<ChunkId, u32>) -> Self {
        Verifier {
            repo,
            tree_lengths,
            data_max: repo.config().chunker.max_size,
            headers: HashMap::new(),
            entries: None,
        }
    }

    /// Whether the copy of `id` at `loc` is there, listed so by its own pack's header, opens
    /// and holds `id`'s content. Damage is `false`; a storage failure is an error (nothing can
    /// be decided on it).
    pub(super) fn verifies(&mut self, id: &ChunkId, loc: &BlobLocation) -> Result<bool> {
        // No blob of a pack the config allows is larger: a listing claiming more lies. Nor is
        // a blob's content longer than it can be: checked before it is decompressed.
        let tree_length = self.tree_lengths.get(id).copied();
        if u64::from(loc.length) > self.repo.config().max_pack_size()
            || !possible_length(loc, self.data_max, tree_length)
        {
            return Ok(false);
        }
        let entry =
            BlobEntry { kind: loc.kind, id: *id, offset: loc.offset, length: loc.length, raw_length: loc.raw_length };
        if !self.header_lists(&loc.pack, &entry)? {
            return Ok(false);
        }
        let read = self.repo.sealed_blob_reader().read(loc);
        match read.and_then(|sealed| self.repo.open_blob(id, loc, &pack_name(&loc.pack), &sealed)) {
            Ok(_) => Ok(true),
            Err(Error::Corrupt { .. } | Error::Missing(_) | Error::UnsupportedVersion { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Whether the header of `pack` opens (the pack read whole, hashing to its name) and
    /// lists `entry`. The pack is read the first time only.
    fn header_lists(&mut self, pack: &PackId, entry: &BlobEntry) -> Result<bool> {
        let opened = match self.headers.get(pack) {
            Some(&opened) => opened,
            None => {
                let opened = match self.repo.read_verified_pack(pack) {
                    Ok((_, opened)) => {
                        let entries = match &mut self.entries {
                            Some(table) => table,
                            None => self.entries.insert(self.repo.scratch_table("prune-headers")?),
                        };
                        for b in &opened.header.blobs {
                            entries.put(&entry_key(pack, b), b"")?;
                        }
                        true
                    }
                    Err(Error::Corrupt { .. } | Error::Missing(_) | Error::UnsupportedVersion { .. }) => false,
                    Err(e) => return Err(e),
                };
                self.headers.insert(*pack, opened);
                opened
            }
        };
        match &mut self.entries {
            Some(entries) if opened => Ok(entries.get(&entry_key(pack, entry))?.is_some()),
            _ => Ok(false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_keys_tell_every_field_apart() {
        let pack = PackId([1; 32]);
        let b = BlobEntry { kind: BlobKind::Data, id: ChunkId([2; 32]), offset: 3, length: 4, raw_length: 5 };
        let key = entry_key(&pack, &b);
        assert_eq!(key.len(), ENTRY_KEY_LEN);
        let others = [
            BlobEntry { kind: BlobKind::Tree, ..b },
            BlobEntry { id: ChunkId([9; 32]), ..b },
            BlobEntry { offset: 9, ..b },
            BlobEntry { length: 9, ..b },
            BlobEntry { raw_length: 9, ..b },
        ];
        assert!(others.iter().all(|o| entry_key(&pack, o) != key));
        assert_ne!(entry_key(&PackId([9; 32]), &b), key);
    }

    #[test]
    fn a_listed_raw_length_is_bounded_before_anything_is_decompressed() {
        let loc = |kind, raw_length| BlobLocation { pack: PackId([1; 32]), kind, offset: 0, length: 100, raw_length };
        let max = 8 << 20;
        assert!(possible_length(&loc(BlobKind::Data, max), max, None));
        assert!(!possible_length(&loc(BlobKind::Data, max + 1), max, None));
        assert!(!possible_length(&loc(BlobKind::Data, u32::MAX), max, Some(u32::MAX)));
        assert!(possible_length(&loc(BlobKind::Tree, 5000), max, Some(5000)));
        for (raw, known) in [(5001, Some(5000)), (u32::MAX, Some(5000)), (100, None)] {
            assert!(!possible_length(&loc(BlobKind::Tree, raw), max, known), "{raw} {known:?}");
        }
    }
}
