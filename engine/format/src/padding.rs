//! Spec: format-spec/SPEC.md#padding
//!
//! Size classes and the padded plaintext shared by blobs and pack headers. Sizes are rounded up
//! with Padmé, and a padded plaintext is `payload length (u32 LE) || payload || zero bytes`: the
//! padding sits inside the sealed plaintext, so storage can neither strip nor change it, and a
//! reader finds the payload by its length and rejects padding that is not all zeros.

use crate::codec::Reader;
use crate::error::{Error, Result};

/// Bytes the framing puts in front of a payload (its length).
pub const LENGTH_LEN: usize = 4;

/// `floor(log2 len) - (floor(log2 floor(log2 len)) + 1)`: how many low bits Padmé clears.
fn low_bits(len: u64) -> u32 {
    if len < 2 {
        return 0;
    }
    let e = 63 - len.leading_zeros(); // floor(log2 len), at least 1
    let s = 32 - e.leading_zeros(); // floor(log2 e) + 1, never above e
    e - s
}

/// Padmé: `len` rounded up to a multiple of 2^(E - S), where E = floor(log2 len) and
/// S = floor(log2 E) + 1. A size class then differs from its neighbours only in its top S bits,
/// so a padded size reveals O(log log len) bits of the length, for less than 2^-S more bytes:
/// 12.5 % below 256 bytes, 6.25 % below 64 KiB, 3.13 % below 4 GiB.
pub fn padme(len: u64) -> u64 {
    let mask = (1u64 << low_bits(len)) - 1;
    match len.checked_sub(1) {
        Some(below) => (below | mask).saturating_add(1),
        None => 0,
    }
}

/// An upper bound of `padme(l) - l` for every `l <= len` (E - S never falls as lengths grow).
pub fn max_padding(len: u64) -> u64 {
    (1u64 << low_bits(len)) - 1
}

/// Frames a payload already placed at `buf[start + LENGTH_LEN..]`: writes its length into
/// `buf[start..start + LENGTH_LEN]` and appends zero bytes until the padded plaintext, from
/// `start`, is `total` bytes long. Errors when the payload does not fit `total` or its length
/// does not fit a u32.
pub fn frame_in_place(buf: &mut Vec<u8>, start: usize, total: usize) -> Result<()> {
    let payload = buf
        .len()
        .checked_sub(start + LENGTH_LEN)
        .ok_or_else(|| Error::InvalidInput("no room for the padded length".into()))?;
    let end = start + total;
    if end < buf.len() {
        return Err(Error::InvalidInput(format!("a {payload}-byte payload does not fit {total} padded bytes")));
    }
    let len = u32::try_from(payload).map_err(|_| Error::InvalidInput("payload larger than 4 GiB".into()))?;
    let room = buf
        .get_mut(start..start + LENGTH_LEN)
        .ok_or_else(|| Error::InvalidInput("no room for the padded length".into()))?;
    room.copy_from_slice(&len.to_le_bytes());
    buf.resize(end, 0);
    Ok(())
}

/// `payload` framed and padded to `total` bytes.
pub fn frame(payload: &[u8], total: usize) -> Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(total.max(LENGTH_LEN + payload.len()));
    buf.extend_from_slice(&[0; LENGTH_LEN]);
    buf.extend_from_slice(payload);
    frame_in_place(&mut buf, 0, total)?;
    Ok(buf)
}

/// The payload of a padded plaintext. Errors ([`Error::Corrupt`] naming `object`) when the
/// length field exceeds the plaintext or a padding byte is not zero.
pub fn unframe<'a>(plain: &'a [u8], object: &str) -> Result<&'a [u8]> {
    let mut r = Reader::new(plain, object);
    let len = r.u32_le()?;
    let left = r.remaining();
    let payload = usize::try_from(len).ok().filter(|&n| n <= left).and_then(|n| r.take(n).ok()).ok_or_else(|| {
        Error::corrupt(object, format!("padded length {len} exceeds the {left} bytes that follow it"))
    })?;
    if r.rest().iter().any(|&b| b != 0) {
        return Err(Error::corrupt(object, "padding holds non-zero bytes"));
    }
    Ok(payload)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn padme_classes() {
        // E = 10, S = 4: multiples of 64 from 1 KiB.
        assert_eq!(padme(1024), 1024);
        assert_eq!(padme(1025), 1088);
        assert_eq!(padme(1088), 1088);
        // E = 20, S = 5: multiples of 32 KiB from 1 MiB.
        assert_eq!(padme((1 << 20) + 1), (1 << 20) + (32 << 10));
        for small in 0..=8 {
            assert!(padme(small) >= small && padme(small) <= small + 1, "{small}");
        }
        assert_eq!(padme(u64::MAX), u64::MAX);
        assert_eq!(max_padding(1088), 63);
    }

    #[test]
    fn bad_padding_is_refused() {
        let good = frame(b"abc", 10).unwrap();
        assert_eq!(good, [3, 0, 0, 0, b'a', b'b', b'c', 0, 0, 0]);
        assert_eq!(unframe(&good, "o").unwrap(), b"abc");
        let mut nonzero = good.clone();
        nonzero[9] = 1;
        assert!(unframe(&nonzero, "o").is_err());
        let mut long = good.clone();
        long[0] = 7;
        assert!(unframe(&long, "o").is_err());
        long[0] = 6;
        assert_eq!(unframe(&long, "o").unwrap(), b"abc\0\0\0");
        let mut huge = good;
        huge[3] = 0xff;
        assert!(unframe(&huge, "o").is_err());
        assert!(unframe(&[1, 0, 0], "o").is_err());
        assert!(frame(b"abcdef", 9).is_err());
    }

    proptest! {
        #[test]
        fn padme_rounds_up_within_its_bound(len in 0u64..(1 << 40)) {
            let p = padme(len);
            prop_assert!(p >= len);
            prop_assert!(p - len <= max_padding(len));
            prop_assert_eq!(padme(p), p, "a class is its own class");
            if len >= 1 << 10 {
                prop_assert!((p - len) * 100 < len * 7, "{} -> {}", len, p);
            }
        }

        #[test]
        fn padded_plaintext_round_trips(payload in proptest::collection::vec(any::<u8>(), 0..300), extra in 0usize..100) {
            let total = LENGTH_LEN + payload.len() + extra;
            let framed = frame(&payload, total).unwrap();
            prop_assert_eq!(framed.len(), total);
            prop_assert_eq!(unframe(&framed, "o").unwrap(), &payload[..]);
        }

        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = unframe(&data, "o");
        }
    }
}
