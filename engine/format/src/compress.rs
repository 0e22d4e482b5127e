//! zstd compression of blob plaintext. A blob is stored raw when zstd does not make it
//! smaller (already-compressed data), so restore never pays for a useless decompression.
//! Each thread keeps one compression and one decompression context: making a context costs
//! more than compressing a small blob.

use std::cell::RefCell;

use zstd::bulk::{Compressor, Decompressor};

use crate::error::{Error, Result};

thread_local! {
    static COMPRESSOR: RefCell<Option<(i32, Compressor<'static>)>> = const { RefCell::new(None) };
    static DECOMPRESSOR: RefCell<Option<Decompressor<'static>>> = const { RefCell::new(None) };
}

/// Decompresses one frame of at most `max_len` bytes with this thread's context.
fn zstd_decompress(frame: &[u8], max_len: usize) -> std::io::Result<Vec<u8>> {
    DECOMPRESSOR.with(|cell| {
        let Ok(mut slot) = cell.try_borrow_mut() else {
            return zstd::bulk::decompress(frame, max_len);
        };
        if slot.is_none() {
            *slot = Some(Decompressor::new()?);
        }
        match slot.as_mut() {
            Some(d) => d.decompress(frame, max_len),
            None => zstd::bulk::decompress(frame, max_len),
        }
    })
}

/// How a blob body is encoded inside its sealed envelope (first plaintext byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Codec {
    /// Stored as is.
    Raw = 0,
    /// One zstd frame.
    Zstd = 1,
}

impl Codec {
    /// Parses the codec byte.
    pub fn from_byte(b: u8) -> Option<Codec> {
        match b {
            0 => Some(Codec::Raw),
            1 => Some(Codec::Zstd),
            _ => None,
        }
    }
}

/// Encodes `data` as `codec byte || body`, choosing zstd only when it shrinks the data.
/// `level` 0 disables compression.
pub fn encode(data: &[u8], level: i32) -> Vec<u8> {
    encode_after(data, level, 0, 0)
}

/// [`encode`] into one new buffer that starts with `prefix` zero bytes and has room for
/// `suffix` more at the end: a blob is compressed straight into the buffer it is then sealed
/// in ([`crate::envelope::seal_in_place`]), one allocation instead of three.
pub fn encode_after(data: &[u8], level: i32, prefix: usize, suffix: usize) -> Vec<u8> {
    let body = prefix + 1;
    if level != 0 && !data.is_empty() {
        let mut out = vec![0u8; body + zstd::zstd_safe::compress_bound(data.len())];
        out.reserve_exact(suffix);
        if let Some(written) = zstd_compress_into(data, level, out.get_mut(body..).unwrap_or_default())
            && written < data.len()
        {
            out.truncate(body + written);
            if let Some(codec) = out.get_mut(prefix) {
                *codec = Codec::Zstd as u8;
            }
            return out;
        }
        // Not smaller: stored raw, in the same buffer (zstd's bound exceeds the data's length).
        out.truncate(prefix);
        out.push(Codec::Raw as u8);
        out.extend_from_slice(data);
        return out;
    }
    let mut out = Vec::with_capacity(body + data.len() + suffix);
    out.resize(prefix, 0);
    out.push(Codec::Raw as u8);
    out.extend_from_slice(data);
    out
}

/// The longest `codec byte || body` that [`encode`] makes of `len` bytes.
pub fn encoded_bound(len: usize) -> usize {
    1 + zstd::zstd_safe::compress_bound(len).max(len)
}

/// zstd-compresses `data` into `dst` with this thread's context; the compressed length, or
/// `None` on failure.
fn zstd_compress_into(data: &[u8], level: i32, dst: &mut [u8]) -> Option<usize> {
    COMPRESSOR.with(|cell| {
        let Ok(mut slot) = cell.try_borrow_mut() else {
            return zstd::bulk::Compressor::new(level).ok()?.compress_to_buffer(data, dst).ok();
        };
        if slot.as_ref().is_none_or(|(l, _)| *l != level) {
            *slot = Some((level, Compressor::new(level).ok()?));
        }
        slot.as_mut()?.1.compress_to_buffer(data, dst).ok()
    })
}

/// Decodes `codec byte || body`. `max_len` bounds the decompressed size (a blob's raw length
/// from the index, or the chunker's maximum) so a hostile frame cannot exhaust memory.
pub fn decode(encoded: &[u8], max_len: usize, object: &str) -> Result<Vec<u8>> {
    let (&codec, body) = encoded.split_first().ok_or_else(|| Error::corrupt(object, "empty blob body"))?;
    match Codec::from_byte(codec) {
        Some(Codec::Raw) => Ok(body.to_vec()),
        Some(Codec::Zstd) => {
            zstd_decompress(body, max_len).map_err(|e| Error::corrupt(object, format!("zstd frame: {e}")))
        }
        None => Err(Error::corrupt(object, format!("unknown blob codec {codec}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn compressible_data_is_compressed_and_random_data_stored_raw() {
        let text = b"hello hello hello hello hello hello hello hello".repeat(100);
        let enc = encode(&text, 3);
        assert_eq!(enc.first(), Some(&(Codec::Zstd as u8)));
        assert!(enc.len() < text.len() / 4);
        let random: Vec<u8> = (0..4096u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
        let enc = encode(&random, 3);
        assert_eq!(decode(&enc, random.len(), "t").unwrap(), random);
    }

    #[test]
    fn a_bad_frame_does_not_spoil_the_threads_context() {
        let text = b"the same context serves every blob of this thread ".repeat(50);
        let good = encode(&text, 3);
        let mut bad = good.clone();
        let mid = bad.len() / 2;
        bad[mid] ^= 0xff;
        bad.truncate(bad.len() - 3);
        assert!(decode(&bad, text.len(), "t").is_err());
        assert!(decode(&good[..good.len() / 2], text.len(), "t").is_err());
        assert_eq!(decode(&good, text.len(), "t").unwrap(), text);
        // Levels change the compression context; both round-trip.
        for level in [1, 19, 3] {
            assert_eq!(decode(&encode(&text, level), text.len(), "t").unwrap(), text);
        }
    }

    #[test]
    fn decompression_bomb_is_refused() {
        let zeros = vec![0u8; 1 << 20];
        let enc = encode(&zeros, 3);
        assert!(decode(&enc, 1000, "blob x").is_err());
    }

    proptest! {
        #[test]
        fn round_trip(data in proptest::collection::vec(any::<u8>(), 0..5000), level in 0i32..5) {
            let enc = encode(&data, level);
            prop_assert_eq!(&decode(&enc, data.len(), "t").unwrap(), &data);
            // With room around it: the same encoding after the prefix, the room still there.
            let (prefix, suffix) = (29, 16);
            let framed = encode_after(&data, level, prefix, suffix);
            prop_assert_eq!(&framed[..prefix], &[0u8; 29][..]);
            prop_assert_eq!(&framed[prefix..], &enc[..]);
            prop_assert!(framed.capacity() >= framed.len() + suffix);
        }

        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..500)) {
            let _ = decode(&data, 1 << 16, "t");
        }
    }
}
