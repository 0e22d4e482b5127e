//! The packs service: every pack listed, a pack read whole (bounded by the sealed config's
//! largest pack size, never by what the storage claims), its header opened and bound to its
//! name, and the key epoch its locator names. Operations read packs only through it.

use super::*;
use crate::format::pack::{MAX_LOCATOR_LEN, OpenedPack, locator_lens};

impl Repository {
    /// Every pack in the storage (one listing of `data/`), with its object name. Objects there
    /// whose name is not a pack's (strays, temporary files) are not packs and are left out.
    pub fn list_packs(&self) -> Result<Vec<(PackId, String)>> {
        Ok(self
            .storage
            .list(Dir::Data.prefix())?
            .into_iter()
            .filter_map(|n| names::pack_id(&n).map(|id| (id, n)))
            .collect())
    }

    /// The bytes of the pack `id`, whole. A pack larger than the config allows is refused
    /// before it is read into memory.
    pub fn read_pack(&self, id: &PackId) -> Result<Vec<u8>> {
        self.storage.get_bounded(&pack_name(id), self.config.max_pack_size())
    }

    /// `len` bytes of the pack `id` from `offset` (a run of blobs restore or mount reads).
    pub fn read_pack_range(&self, id: &PackId, offset: u64, len: u64) -> Result<Vec<u8>> {
        self.storage.get_range(&pack_name(id), offset, len)
    }

    /// The stored size of the pack `id`; `None` when it is not there.
    pub fn pack_size(&self, id: &PackId) -> Result<Option<u64>> {
        self.storage.stat(&pack_name(id))
    }

    /// Opens and verifies the header of the whole pack `bytes` stored as `name` (SPEC §10):
    /// the header must be bound to the blobs before it. The result also holds the BLAKE3 of
    /// the bytes, which the caller compares with the pack's name ([`Self::read_verified_pack`]
    /// does).
    pub fn open_pack(&self, name: &str, bytes: &[u8]) -> Result<OpenedPack> {
        crate::format::pack::open(bytes, name, |kind, ad_name, sealed| {
            envelope::open_sealed(sealed, kind, ad_name, name, |to| self.keyring()?.open_pack_key(to, name))
        })
    }

    /// The pack `id` read whole, its header opened, and its bytes checked against its name:
    /// a header moved from another pack, or bytes that do not hash to the name, are refused.
    pub fn read_verified_pack(&self, id: &PackId) -> Result<(Vec<u8>, OpenedPack)> {
        let name = pack_name(id);
        let bytes = self.read_pack(id)?;
        let opened = self.open_pack(&name, &bytes)?;
        if opened.id != *id {
            return Err(Error::corrupt(&name, "pack content does not match its name (BLAKE3 of the bytes)"));
        }
        Ok((bytes, opened))
    }

    /// The epoch of the pack `id` of `size` bytes as its locator claims it in clear: enough to
    /// pick packs to re-encrypt and to show usage, not to drop a key (see
    /// [`Self::verified_pack_epoch`]).
    pub fn pack_epoch(&self, id: &PackId, size: u64) -> Result<u32> {
        let name = pack_name(id);
        let want = size.min(MAX_LOCATOR_LEN as u64);
        let tail = self.storage.get_range(&name, size - want, want)?;
        locator_epoch(&tail, &name)
    }

    /// The epoch of the pack `id`, on authenticated bytes: the whole pack is read, its header
    /// opened over its blob area under the locator's epoch, and its bytes checked against its
    /// name. The clear epoch field alone could be edited by the storage (or a locator moved from
    /// another pack) to make a key in use look unused. An epoch the keyring does not hold
    /// cannot be checked and is an error.
    pub fn verified_pack_epoch(&self, id: &PackId, size: u64) -> Result<u32> {
        let name = pack_name(id);
        if size > self.config.max_pack_size() {
            return Err(crate::storage::too_large(&name, size, self.config.max_pack_size()));
        }
        let bytes = self.read_pack(id)?;
        let opened = self.open_pack(&name, &bytes)?;
        if opened.id != *id {
            return Err(Error::corrupt(&name, "the pack's bytes do not hash to its name"));
        }
        Ok(opened.epoch)
    }

    /// Deletes the packs `ids` (prune, once no index entry a reader uses points into them).
    pub fn delete_packs(&self, ids: &[PackId]) -> Result<()> {
        self.forget_tree_pack_copies(ids);
        self.storage.delete_many(&ids.iter().map(pack_name).collect::<Vec<_>>())
    }
}

/// The epoch the locator at the end of `tail` (a pack's last bytes) claims in clear, at the
/// first locator length its version byte allows. An unauthenticated claim, and for about one
/// reader-sealed pack in 256 the wrong place: only opening the pack decides
/// ([`Repository::verified_pack_epoch`]).
fn locator_epoch(tail: &[u8], name: &str) -> Result<u32> {
    let len = locator_lens(tail)
        .into_iter()
        .next()
        .ok_or_else(|| Error::corrupt(name, "pack shorter than its locator, or no locator at its end"))?;
    envelope::epoch_of(tail.get(tail.len().saturating_sub(len)..).unwrap_or_default(), name)
}
