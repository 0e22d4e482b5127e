//! Spec: format-spec/SPEC.md#blobs
//!
//! A blob's sealed plaintext is a padded plaintext (see `padding`) around `codec (1) || body`,
//! padded so that the sealed blob's size is a Padmé class: storage, which sees sealed sizes in
//! the ranges clients read, learns a chunk's size class, never its exact compressed size.

use crate::compress;
use crate::crypto::TAG_LEN;
use crate::envelope::{HEADER_LEN, OVERHEAD};
use crate::error::{Error, Result};
use crate::padding::{self, LENGTH_LEN};

/// The sealed size of a blob whose `codec || body` is `payload` bytes long, in a version 1
/// envelope.
pub fn sealed_len(payload: usize) -> u64 {
    sealed_len_with(OVERHEAD, payload)
}

/// The sealed size of a blob whose `codec || body` is `payload` bytes long, in an envelope
/// adding `overhead` bytes.
pub fn sealed_len_with(overhead: usize, payload: usize) -> u64 {
    padding::padme((overhead + LENGTH_LEN + payload) as u64)
}

/// Compresses `data` (zstd at `level`, raw when that does not shrink it; 0 = raw) and pads it
/// into one buffer ready for [`crate::envelope::seal_in_place`]: room for the envelope
/// header, the padded plaintext, and spare capacity for the tag, so nothing is copied again.
pub fn encode_for_sealing(data: &[u8], level: i32) -> Result<Vec<u8>> {
    encode_for_envelope(data, level, HEADER_LEN, OVERHEAD)
}

/// As [`encode_for_sealing`], for an envelope with `header_len` bytes before its ciphertext
/// and `overhead` bytes in all (see [`crate::sealer::Sealer`]).
pub fn encode_for_envelope(data: &[u8], level: i32, header_len: usize, overhead: usize) -> Result<Vec<u8>> {
    let worst = overhead + LENGTH_LEN + compress::encoded_bound(data.len());
    let room = TAG_LEN + usize::try_from(padding::max_padding(worst as u64)).unwrap_or(0);
    let mut buf = compress::encode_after(data, level, header_len + LENGTH_LEN, room);
    let payload = buf.len().saturating_sub(header_len + LENGTH_LEN);
    let total = usize::try_from(sealed_len_with(overhead, payload))
        .ok()
        .and_then(|n| n.checked_sub(overhead))
        .ok_or_else(|| Error::InvalidInput("blob too large".into()))?;
    padding::frame_in_place(&mut buf, header_len, total)?;
    Ok(buf)
}

/// The padded plaintext alone, as [`encode_for_sealing`] leaves it after the header's room.
pub fn encode(data: &[u8], level: i32) -> Result<Vec<u8>> {
    let mut buf = encode_for_sealing(data, level)?;
    buf.drain(..HEADER_LEN);
    Ok(buf)
}

/// The content of a blob from its opened plaintext: the padding is checked and decompression
/// is bounded by `max_len` (the blob's raw length from the index). The caller still checks the
/// length and the id of what comes back.
pub fn decode(plain: &[u8], max_len: usize, object: &str) -> Result<Vec<u8>> {
    compress::decode(padding::unframe(plain, object)?, max_len, object)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Key32;
    use crate::envelope::{self, ObjectKind};
    use proptest::prelude::*;

    #[test]
    fn sealed_blobs_of_one_class_have_one_size() {
        let key = Key32::from_bytes([3; 32]);
        let seal = |data: &[u8]| {
            let mut buf = encode_for_sealing(data, 3).unwrap();
            let room = buf.capacity();
            envelope::seal_in_place(&key, 0, ObjectKind::DataBlob, b"id", &mut buf).unwrap();
            assert_eq!(buf.capacity(), room, "the padding and the tag fit the room reserved");
            buf
        };
        // Incompressible, so stored raw: 99,000 and 100,000 bytes fall in one class
        // (multiples of 2 KiB from 64 KiB).
        let noise = |n: usize| (0..n as u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8).collect::<Vec<u8>>();
        let (a, b) = (seal(&noise(99_000)), seal(&noise(100_000)));
        assert_eq!(a.len(), b.len());
        assert_eq!(a.len() as u64, padding::padme(a.len() as u64));
        for (sealed, n) in [(&a, 99_000), (&b, 100_000)] {
            let plain = envelope::open(sealed, ObjectKind::DataBlob, b"id", "o", |_| Ok(&key)).unwrap();
            assert_eq!(decode(&plain, n, "o").unwrap(), noise(n));
        }
        // Compressed text pads the same way.
        let text = b"size classes hide exact sizes ".repeat(3000);
        let sealed = seal(&text);
        assert_eq!(sealed.len() as u64, padding::padme(sealed.len() as u64));
        assert!(sealed.len() < text.len() / 10);
    }

    proptest! {
        #[test]
        fn round_trip_and_class(data in proptest::collection::vec(any::<u8>(), 0..5000), level in 0i32..4) {
            let plain = encode(&data, level).unwrap();
            let sealed = plain.len() + OVERHEAD;
            prop_assert_eq!(sealed as u64, padding::padme(sealed as u64));
            prop_assert_eq!(decode(&plain, data.len(), "b").unwrap(), data);
        }

        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..500)) {
            let _ = decode(&data, 1 << 16, "b");
        }
    }
}
