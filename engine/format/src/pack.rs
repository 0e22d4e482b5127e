//! Spec: format-spec/SPEC.md#packfiles
//!
//! A pack is `blob envelopes... | header envelope | locator envelope`. The header lists every
//! blob's kind, id, offset, length and raw length; it is padded so the whole pack's size is a
//! size class, and its associated-data name is the BLAKE3 hash of the blob area, which binds it
//! to this pack's blobs. The locator, a fixed-size envelope at the very end, holds the header's
//! length: nothing in clear says where the header starts or how many blobs there are. Closing
//! and opening are pure; the caller's closures seal and open envelopes.

use serde::{Deserialize, Serialize};

use crate::BlobKind;
use crate::codec::{Reader, decode_versioned, encode_versioned};
use crate::envelope::{self, OVERHEAD, ObjectKind};
use crate::error::{Error, Result};
use crate::id::{ChunkId, PackId};
use crate::padding::{self, LENGTH_LEN};

/// Payload version of a pack header.
pub const PACK_HEADER_VERSION: u8 = 1;
/// Plaintext bytes of the locator: the header envelope's length, u32 LE.
pub const LOCATOR_PLAINTEXT_LEN: usize = 4;
/// Bytes of the locator envelope ending a pack sealed under a data key (version 1).
pub const LOCATOR_LEN: usize = OVERHEAD + LOCATOR_PLAINTEXT_LEN;
/// Bytes of the locator ending a pack sealed to the reader key (version 2, write-only writers).
pub const READER_LOCATOR_LEN: usize = envelope::READER_OVERHEAD + LOCATOR_PLAINTEXT_LEN;
/// The most bytes a locator takes: what a reader fetches from a pack's end to find it.
pub const MAX_LOCATOR_LEN: usize = READER_LOCATOR_LEN;

/// The lengths the locator ending a pack whose last bytes are `tail` may have, going by the
/// version byte each would start with (version 1 first). Only opening one tells which is real.
pub fn locator_lens(tail: &[u8]) -> Vec<usize> {
    [(LOCATOR_LEN, envelope::ENVELOPE_VERSION), (READER_LOCATOR_LEN, envelope::READER_ENVELOPE_VERSION)]
        .into_iter()
        .filter(|(len, version)| tail.len().checked_sub(*len).and_then(|at| tail.get(at)) == Some(version))
        .map(|(len, _)| len)
        .collect()
}
/// No pack is smaller: a pack of a few small blobs (a small incremental backup's data or
/// trees) shows storage only that it is small.
pub const MIN_PACK_SIZE: u64 = 16 * 1024;

/// Where one blob sits in its pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobEntry {
    /// Data or tree.
    pub kind: BlobKind,
    /// Keyed id of the plaintext.
    pub id: ChunkId,
    /// Offset of the blob's envelope in the pack.
    pub offset: u32,
    /// Length of the blob's envelope (padding included).
    pub length: u32,
    /// Length of the plaintext (uncompressed).
    pub raw_length: u32,
}

/// A pack header's payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackHeader {
    /// Blobs in the order they sit in the pack.
    pub blobs: Vec<BlobEntry>,
}

impl PackHeader {
    /// Payload bytes (before padding).
    pub fn encode(&self) -> Vec<u8> {
        encode_versioned(PACK_HEADER_VERSION, self)
    }

    /// Parses a payload and checks that the blobs tile the blob area `[0, header_offset)`:
    /// the first at 0, each where the previous ends, the last where the header begins.
    pub fn decode(bytes: &[u8], header_offset: u64, object: &str) -> Result<Self> {
        let h: PackHeader = decode_versioned(bytes, PACK_HEADER_VERSION, object)?;
        let mut end = 0u64;
        for b in &h.blobs {
            if u64::from(b.offset) != end {
                return Err(Error::corrupt(
                    object,
                    format!("pack header entry for blob {} does not start where the previous blob ends", b.id),
                ));
            }
            end += u64::from(b.length);
        }
        if end != header_offset {
            return Err(Error::corrupt(
                object,
                format!("the pack header's blobs end at {end}, the header starts at {header_offset}"),
            ));
        }
        Ok(h)
    }
}

/// The size of a pack whose blob area is `blob_area` bytes and whose header payload is
/// `header_payload` bytes: the Padmé class of the unpadded pack, at least [`MIN_PACK_SIZE`].
pub fn padded_size(blob_area: u64, header_payload: usize) -> u64 {
    padded_size_with(OVERHEAD, blob_area, header_payload)
}

/// [`padded_size`] for header and locator envelopes adding `overhead` bytes each.
pub fn padded_size_with(overhead: usize, blob_area: u64, header_payload: usize) -> u64 {
    let tail = (overhead + LENGTH_LEN + header_payload + overhead + LOCATOR_PLAINTEXT_LEN) as u64;
    padding::padme(blob_area.saturating_add(tail)).max(MIN_PACK_SIZE)
}

/// A sealed blob going into a pack.
#[derive(Debug, Clone, Copy)]
pub struct PackBlob<'a> {
    /// Data or tree.
    pub kind: BlobKind,
    /// Its id.
    pub id: ChunkId,
    /// Its plaintext length.
    pub raw_length: u32,
    /// Its envelope.
    pub sealed: &'a [u8],
}

/// A closed pack: its blobs' entries, then the sealed header and locator that follow the blobs.
#[derive(Debug)]
pub struct ClosedPack {
    /// The header's entries, in pack order.
    pub blobs: Vec<BlobEntry>,
    /// The header envelope (padded).
    pub header: Vec<u8>,
    /// The locator envelope.
    pub locator: Vec<u8>,
    /// BLAKE3 of the pack's bytes.
    pub id: PackId,
    /// The pack's size.
    pub size: u64,
}

/// Closes a pack of `blobs`, in the order given. The blob area is hashed once: the header is
/// sealed with that hash as its name, and the same hash state, continued over header and
/// locator, gives the pack id. The header is padded so the pack's size is
/// [`padded_size`]. `seal(kind, name, plaintext)` seals one envelope.
pub fn close(
    blobs: &[PackBlob<'_>],
    seal: impl FnMut(ObjectKind, &[u8], &[u8]) -> Result<Vec<u8>>,
) -> Result<ClosedPack> {
    close_with(OVERHEAD, blobs, seal)
}

/// [`close`] with envelopes adding `overhead` bytes each (see [`crate::sealer::Sealer`]).
pub fn close_with(
    overhead: usize,
    blobs: &[PackBlob<'_>],
    mut seal: impl FnMut(ObjectKind, &[u8], &[u8]) -> Result<Vec<u8>>,
) -> Result<ClosedPack> {
    let locator_len = overhead + LOCATOR_PLAINTEXT_LEN;
    let too_large = || Error::InvalidInput("pack larger than 4 GiB".into());
    let mut hasher = blake3::Hasher::new();
    let mut entries = Vec::with_capacity(blobs.len());
    let mut area = 0u64;
    for b in blobs {
        let offset = u32::try_from(area).map_err(|_| too_large())?;
        let length = u32::try_from(b.sealed.len()).map_err(|_| too_large())?;
        entries.push(BlobEntry { kind: b.kind, id: b.id, offset, length, raw_length: b.raw_length });
        hasher.update(b.sealed);
        area += u64::from(length);
    }
    let area_hash = hasher.clone().finalize();
    let header = PackHeader { blobs: entries };
    let payload = header.encode();
    let size = padded_size_with(overhead, area, payload.len());
    let plain_len = size
        .checked_sub(area + (locator_len + overhead) as u64)
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(too_large)?;
    let sealed_header = seal(ObjectKind::PackHeader, area_hash.as_bytes(), &padding::frame(&payload, plain_len)?)?;
    let header_len = u32::try_from(sealed_header.len()).map_err(|_| too_large())?;
    let locator = seal(ObjectKind::PackLocator, b"", &header_len.to_le_bytes())?;
    if locator.len() != locator_len || area + u64::from(header_len) + locator_len as u64 != size {
        return Err(Error::InvalidInput("sealing did not add the envelope's overhead".into()));
    }
    hasher.update(&sealed_header);
    hasher.update(&locator);
    Ok(ClosedPack {
        blobs: header.blobs,
        header: sealed_header,
        locator,
        id: PackId(*hasher.finalize().as_bytes()),
        size,
    })
}

/// Where a pack's header envelope lies, from the pack's size and its opened version 1 locator:
/// (offset, length). Errors when the locator is malformed or the header does not fit.
pub fn header_span(pack_len: u64, locator: &[u8], object: &str) -> Result<(u64, u64)> {
    header_span_with(LOCATOR_LEN, pack_len, locator, object)
}

/// [`header_span`] for a locator envelope of `locator_len` bytes.
pub fn header_span_with(locator_len: usize, pack_len: u64, locator: &[u8], object: &str) -> Result<(u64, u64)> {
    if locator.len() != LOCATOR_PLAINTEXT_LEN {
        return Err(Error::corrupt(object, format!("pack locator of {} bytes", locator.len())));
    }
    let len = u64::from(Reader::new(locator, object).u32_le()?);
    let offset = pack_len
        .checked_sub(locator_len as u64)
        .and_then(|n| n.checked_sub(len))
        .ok_or_else(|| Error::corrupt(object, format!("pack header length {len} exceeds the pack size {pack_len}")))?;
    Ok((offset, len))
}

/// A pack's header, opened and verified.
#[derive(Debug)]
pub struct OpenedPack {
    /// The header.
    pub header: PackHeader,
    /// Where the header starts (the blob area's length).
    pub header_offset: u64,
    /// BLAKE3 of the pack's bytes: the name the pack must have.
    pub id: PackId,
    /// The key epoch of the locator that opened (and of the header).
    pub epoch: u32,
}

/// Opens the header of the whole pack `bytes`: the locator (the last [`LOCATOR_LEN`] bytes)
/// gives the header's length; the header must open with the BLAKE3 of the bytes before it as
/// its name, under the locator's epoch, and its blobs must tile those bytes. So a header moved
/// onto other blobs does not open. `open(kind, name, sealed)` opens one envelope. Errors name
/// `object`; nothing here panics on any bytes.
pub fn open(
    bytes: &[u8],
    object: &str,
    mut open: impl FnMut(ObjectKind, &[u8], &[u8]) -> Result<Vec<u8>>,
) -> Result<OpenedPack> {
    let truncated = || Error::corrupt(object, "pack shorter than its locator");
    // The locator's length depends on its envelope's version: the one that opens is the one.
    let mut found = Err(truncated());
    for len in locator_lens(bytes) {
        let at = bytes.len().checked_sub(len).ok_or_else(truncated)?;
        let (front, locator) = bytes.split_at_checked(at).ok_or_else(truncated)?;
        match open(ObjectKind::PackLocator, b"", locator) {
            Ok(plain) => {
                found = Ok((front, locator, plain, len));
                break;
            }
            Err(e) => found = Err(e),
        }
    }
    let (front, locator, plain, locator_len) = found?;
    let (offset, _) = header_span_with(locator_len, bytes.len() as u64, &plain, object)?;
    let (area, header) = usize::try_from(offset)
        .ok()
        .and_then(|at| front.split_at_checked(at))
        .ok_or_else(|| Error::corrupt(object, "pack header outside the pack"))?;
    if envelope::epoch_of(header, object)? != envelope::epoch_of(locator, object)? || header.first() != locator.first()
    {
        return Err(Error::corrupt(object, "pack header and locator sealed under different key epochs or versions"));
    }
    let mut hasher = blake3::Hasher::new();
    hasher.update(area);
    let area_hash = hasher.clone().finalize();
    hasher.update(header);
    hasher.update(locator);
    let plain = open(ObjectKind::PackHeader, area_hash.as_bytes(), header)?;
    let header = PackHeader::decode(padding::unframe(&plain, object)?, offset, object)?;
    let epoch = envelope::epoch_of(locator, object)?;
    Ok(OpenedPack { header, header_offset: offset, id: PackId(*hasher.finalize().as_bytes()), epoch })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Key32;

    fn seal_with(key: &Key32) -> impl FnMut(ObjectKind, &[u8], &[u8]) -> Result<Vec<u8>> + '_ {
        move |kind, name, plain| envelope::seal(key, 2, kind, name, plain)
    }

    fn open_with(key: &Key32) -> impl FnMut(ObjectKind, &[u8], &[u8]) -> Result<Vec<u8>> + '_ {
        move |kind, name, sealed| envelope::open(sealed, kind, name, "p", |_| Ok(key))
    }

    fn pack(key: &Key32, blobs: &[(u8, usize)]) -> (Vec<u8>, ClosedPack) {
        let bodies: Vec<Vec<u8>> = blobs.iter().map(|&(b, n)| vec![b; n]).collect();
        let parts: Vec<PackBlob<'_>> = bodies
            .iter()
            .map(|s| PackBlob { kind: BlobKind::Data, id: ChunkId([s[0]; 32]), raw_length: 9, sealed: s })
            .collect();
        let closed = close(&parts, seal_with(key)).unwrap();
        let bytes = [bodies.concat(), closed.header.clone(), closed.locator.clone()].concat();
        (bytes, closed)
    }

    #[test]
    fn a_pack_opens_and_its_size_is_a_class() {
        let key = Key32::from_bytes([1; 32]);
        for blobs in [&[(1u8, 100usize)][..], &[(1, 50_000), (2, 70_000), (3, 1)][..], &[][..]] {
            let (bytes, closed) = pack(&key, blobs);
            assert_eq!(bytes.len() as u64, closed.size);
            assert_eq!(closed.size, padding::padme(closed.size).max(MIN_PACK_SIZE));
            assert_eq!(PackId::of(&bytes), closed.id);
            let opened = open(&bytes, "p", open_with(&key)).unwrap();
            assert_eq!(opened.header.blobs, closed.blobs);
            assert_eq!(opened.id, closed.id);
            assert_eq!(opened.header_offset, blobs.iter().map(|b| b.1 as u64).sum::<u64>());
        }
    }

    #[test]
    fn a_pack_sealed_to_the_reader_opens_with_the_data_key_of_its_epoch() {
        use crate::keys::{ReaderSealer, opening_key, reader_public};
        let data_key = Key32::from_bytes([6; 32]);
        let sealer = ReaderSealer::new(4, &reader_public(4, &data_key)).unwrap();
        let bodies = [sealer.seal(ObjectKind::DataBlob, &[1; 32], &[9; 3000]).unwrap()];
        let parts = [PackBlob { kind: BlobKind::Data, id: ChunkId([1; 32]), raw_length: 3000, sealed: &bodies[0] }];
        let closed = close_with(envelope::READER_OVERHEAD, &parts, |k, n, p| sealer.seal(k, n, p)).unwrap();
        assert_eq!(closed.locator.len(), READER_LOCATOR_LEN);
        let bytes = [bodies.concat(), closed.header.clone(), closed.locator.clone()].concat();
        assert_eq!(bytes.len() as u64, closed.size);
        assert_eq!(closed.size, padding::padme(closed.size).max(MIN_PACK_SIZE));
        let opened = open(&bytes, "p", |kind, name, sealed| {
            envelope::open_sealed(sealed, kind, name, "p", |to| opening_key(&data_key, to, "p"))
        })
        .unwrap();
        assert_eq!((opened.header.blobs, opened.id), (closed.blobs, closed.id));
        assert!(locator_lens(&bytes).contains(&READER_LOCATOR_LEN));
        // A version 1 key alone does not open it.
        assert!(open(&bytes, "p", open_with(&data_key)).is_err());
    }

    #[test]
    fn a_reader_sealed_pack_that_looks_like_version_1_at_49_bytes_from_its_end_still_opens() {
        use crate::keys::{ReaderSealer, opening_key, reader_public};
        let data_key = Key32::from_bytes([6; 32]);
        let reader = reader_public(4, &data_key);
        let body = [9u8; 100];
        // About one pack in 256: try ephemeral keys until one gives such a pack.
        let bytes = (0..20_000)
            .find_map(|_| {
                let sealer = ReaderSealer::new(4, &reader).unwrap();
                let blob = sealer.seal(ObjectKind::DataBlob, &[1; 32], &body).unwrap();
                let parts = [PackBlob { kind: BlobKind::Data, id: ChunkId([1; 32]), raw_length: 100, sealed: &blob }];
                let closed = close_with(envelope::READER_OVERHEAD, &parts, |k, n, p| sealer.seal(k, n, p)).unwrap();
                let bytes = [blob.clone(), closed.header, closed.locator].concat();
                (bytes[bytes.len() - LOCATOR_LEN] == 1).then_some(bytes)
            })
            .expect("such a pack within 20,000 tries");
        assert_eq!(locator_lens(&bytes), vec![LOCATOR_LEN, READER_LOCATOR_LEN]);
        let opened = open(&bytes, "p", |kind, name, sealed| {
            envelope::open_sealed(sealed, kind, name, "p", |to| opening_key(&data_key, to, "p"))
        })
        .unwrap();
        assert_eq!((opened.header.blobs.len(), opened.epoch), (1, 4));
    }

    #[test]
    fn the_locator_length_follows_the_version_byte_it_would_start_with() {
        let mut tail = vec![0u8; MAX_LOCATOR_LEN];
        assert!(locator_lens(&tail).is_empty());
        tail[MAX_LOCATOR_LEN - LOCATOR_LEN] = 1;
        assert_eq!(locator_lens(&tail), vec![LOCATOR_LEN]);
        tail[0] = 2;
        assert_eq!(locator_lens(&tail), vec![LOCATOR_LEN, READER_LOCATOR_LEN]);
        assert_eq!(locator_lens(&tail[1..]), vec![LOCATOR_LEN], "too short for a version 2 locator");
    }

    #[test]
    fn small_packs_share_one_size_whatever_their_blob_count() {
        let key = Key32::from_bytes([1; 32]);
        let one = pack(&key, &[(1, 1100)]).1.size;
        let two = pack(&key, &[(1, 1100), (2, 1100)]).1.size;
        assert_eq!(one, MIN_PACK_SIZE);
        assert_eq!(two, MIN_PACK_SIZE);
    }

    #[test]
    fn a_header_moved_onto_other_blobs_does_not_open() {
        let key = Key32::from_bytes([1; 32]);
        let (a, ca) = pack(&key, &[(1, 5000)]);
        let (b, _) = pack(&key, &[(2, 5000)]);
        // B's blob area with A's header and locator: same lengths, other bytes.
        let spliced = [&b[..5000], &a[5000..]].concat();
        assert_eq!(spliced.len() as u64, ca.size);
        let err = open(&spliced, "p", open_with(&key)).unwrap_err();
        assert!(err.to_string().contains("authentication failed"), "{err}");
        // Any changed byte fails, in the blobs, the header or the locator.
        for at in [0, 4999, 5000, a.len() - LOCATOR_LEN - 1, a.len() - 1] {
            let mut bad = a.clone();
            bad[at] ^= 1;
            assert!(open(&bad, "p", open_with(&key)).is_err(), "byte {at}");
        }
        assert!(open(&a[1..], "p", open_with(&key)).is_err());
        assert!(open(&a[..LOCATOR_LEN - 1], "p", open_with(&key)).is_err());
    }

    #[test]
    fn header_and_locator_must_share_an_epoch() {
        let key = Key32::from_bytes([1; 32]);
        let blob = vec![7u8; 300];
        let parts = [PackBlob { kind: BlobKind::Tree, id: ChunkId([7; 32]), raw_length: 1, sealed: &blob }];
        let mut epoch = 0;
        let closed = close(&parts, |kind, name, plain| {
            epoch += 1;
            envelope::seal(&key, epoch, kind, name, plain)
        })
        .unwrap();
        let bytes = [blob.clone(), closed.header, closed.locator].concat();
        let err = open(&bytes, "p", open_with(&key)).unwrap_err();
        assert!(err.to_string().contains("epochs"), "{err}");
    }
}
