//! What the cache knows per pack, beside the blob entries: the packs gone from storage (their
//! blobs no longer count as stored), the packs lookups answered "stored" from, and the packs
//! a write-only slot wrote (unverified, SPEC §11).

use std::sync::PoisonError;
use std::sync::atomic::Ordering;

use rocksdb::{Direction, IteratorMode};

use super::IndexCache;
use super::schema::ordinal_key;
use crate::error::Result;
use crate::id::PackId;

impl IndexCache {
    /// Every pack the cache knows, by ordinal.
    fn pack_ordinals(&self) -> Result<Vec<(u32, PackId)>> {
        let mut out = Vec::new();
        for item in self.db.iterator(IteratorMode::From(b"o", Direction::Forward)) {
            let (k, v) = item.map_err(|e| self.err(e))?;
            let Some(rest) = k.strip_prefix(b"o") else { break };
            if let (Ok(o), Ok(pack)) = (<[u8; 4]>::try_from(rest), <[u8; 32]>::try_from(&*v)) {
                out.push((u32::from_be_bytes(o), PackId(pack)));
            }
        }
        Ok(out)
    }

    /// Makes [`IndexCache::contains`] answer "not stored" for every blob of a pack not in
    /// `present` (a listing of the storage's packs), so a backup stores those chunks again
    /// instead of referencing data that is gone. Returns the packs found gone.
    pub fn set_gone_packs(&self, present: &std::collections::HashSet<PackId>) -> Result<Vec<PackId>> {
        let mut gone = Vec::new();
        let mut ordinals = std::collections::HashSet::new();
        for (ordinal, pack) in self.pack_ordinals()? {
            if !present.contains(&pack) {
                ordinals.insert(ordinal);
                gone.push(pack);
            }
        }
        self.any_gone.store(!ordinals.is_empty(), Ordering::Relaxed);
        *self.gone.write().unwrap_or_else(PoisonError::into_inner) = ordinals;
        // A loaded pack list may belong to a pack now gone.
        self.locality.clear();
        Ok(gone)
    }

    /// The ordinals of the packs applied as unverified (the `u` keys).
    pub(super) fn unverified_ordinals(&self) -> Result<std::collections::HashSet<u32>> {
        let mut out = std::collections::HashSet::new();
        for item in self.db.iterator(IteratorMode::From(b"u", Direction::Forward)) {
            let (k, _) = item.map_err(|e| self.err(e))?;
            let Some(rest) = k.strip_prefix(b"u") else { break };
            if let Ok(o) = <[u8; 4]>::try_from(rest) {
                out.insert(u32::from_be_bytes(o));
            }
        }
        Ok(out)
    }

    /// The packs applied as unverified (written by a write-only slot, their blobs checked by
    /// no full key, SPEC §11) and listed by no segment without that mark. A reader-sealed
    /// segment may list any pack id: one a full key's segment lists too stays trusted, so a
    /// stolen write-only key cannot have a rewrite (prune) mark full keys' packs unverified
    /// and so stop their deduplication. Full-key writers do not count these packs' blobs as
    /// stored.
    pub fn unverified_packs(&self) -> Result<std::collections::HashSet<PackId>> {
        let marked = self.unverified_ordinals()?;
        let mut unverified = std::collections::HashSet::new();
        let mut trusted = std::collections::HashSet::new();
        for (ordinal, pack) in self.pack_ordinals()? {
            if marked.contains(&ordinal) {
                unverified.insert(pack);
            } else {
                trusted.insert(pack);
            }
        }
        unverified.retain(|p| !trusted.contains(p));
        Ok(unverified)
    }

    /// The packs of every blob [`IndexCache::contains`] has answered "stored" for so far: what
    /// a backup that reused those blobs needs to be present.
    pub fn used_packs(&self) -> Result<Vec<PackId>> {
        let used: Vec<u32> = self.used.lock().unwrap_or_else(PoisonError::into_inner).iter().copied().collect();
        let mut out = Vec::with_capacity(used.len());
        for ordinal in used {
            if let Some(v) = self.db.get_pinned(ordinal_key(ordinal)).map_err(|e| self.err(e))?
                && let Ok(pack) = <[u8; 32]>::try_from(&*v)
            {
                out.push(PackId(pack));
            }
        }
        Ok(out)
    }
}
