//! Spec: format-spec/SPEC.md#packfiles
//!
//! A pack is `blob envelopes... | header envelope | header length (u32 LE)`. The header lists
//! every blob's kind, id, offset, length and raw length; it is sealed, so storage learns only the
//! pack's total size. Blob order inside a pack is shuffled by the writer.

use serde::{Deserialize, Serialize};

use crate::codec::{Reader, decode_versioned, encode_versioned};
use crate::error::{Error, Result};
use crate::format::BlobKind;
use crate::id::ChunkId;

/// Payload version of a pack header.
pub const PACK_HEADER_VERSION: u8 = 1;
/// Length of the trailing header-length field.
pub const TRAILER_LEN: usize = 4;

/// Where one blob sits in its pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobEntry {
    /// Data or tree.
    pub kind: BlobKind,
    /// Keyed id of the plaintext.
    pub id: ChunkId,
    /// Offset of the blob's envelope in the pack.
    pub offset: u32,
    /// Length of the blob's envelope.
    pub length: u32,
    /// Length of the plaintext (uncompressed).
    pub raw_length: u32,
}

/// A pack header's plaintext.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackHeader {
    /// Blobs in the order they sit in the pack.
    pub blobs: Vec<BlobEntry>,
}

impl PackHeader {
    /// Plaintext bytes.
    pub fn encode(&self) -> Vec<u8> {
        encode_versioned(PACK_HEADER_VERSION, self)
    }

    /// Parses plaintext and checks that every blob lies before `header_offset`, in order,
    /// without overlap.
    pub fn decode(bytes: &[u8], header_offset: u64, object: &str) -> Result<Self> {
        let h: PackHeader = decode_versioned(bytes, PACK_HEADER_VERSION, object)?;
        let mut end = 0u64;
        for b in &h.blobs {
            let start = u64::from(b.offset);
            let stop = start + u64::from(b.length);
            if start < end || stop > header_offset {
                return Err(Error::corrupt(
                    object,
                    format!("pack header entry for blob {} points outside the blob area", b.id),
                ));
            }
            end = stop;
        }
        Ok(h)
    }
}

/// Splits a pack's tail into (header envelope offset, header envelope length).
/// `pack_len` is the whole pack's size and `tail` its last bytes (at least 4).
pub fn header_location(pack_len: u64, tail: &[u8], object: &str) -> Result<(u64, u32)> {
    let start =
        tail.len().checked_sub(TRAILER_LEN).ok_or_else(|| Error::corrupt(object, "pack shorter than its trailer"))?;
    let mut r = Reader::new(tail.get(start..).unwrap_or_default(), object);
    let len = r.u32_le()?;
    let offset = pack_len
        .checked_sub(TRAILER_LEN as u64)
        .and_then(|v| v.checked_sub(u64::from(len)))
        .ok_or_else(|| Error::corrupt(object, format!("pack header length {len} exceeds the pack size {pack_len}")))?;
    Ok((offset, len))
}
