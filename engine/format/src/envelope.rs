//! Spec: format-spec/SPEC.md#sealed-object-envelope
//!
//! Every repository object except key slots is sealed the same way:
//! `version(1) | epoch(u32 LE) | nonce(24) | ciphertext | tag(16)`, with associated data that
//! binds the version, the object's kind, the key epoch and the object's name, so storage cannot
//! swap one object for another or replay it under another name.

use crate::codec::Reader;
use crate::crypto::{Key32, NONCE_LEN, TAG_LEN, open_detached, random_array, seal_detached};
use crate::error::{Error, Result};

/// Envelope format version.
pub const ENVELOPE_VERSION: u8 = 1;
/// Bytes before an envelope's ciphertext: version, epoch, nonce.
pub const HEADER_LEN: usize = 1 + 4 + NONCE_LEN;
/// The clear bytes an envelope opens with that name its key epoch: the version byte and the
/// epoch ([`epoch_of`] reads them).
pub const EPOCH_PREFIX_LEN: usize = 1 + 4;
/// Bytes an envelope adds to its plaintext.
pub const OVERHEAD: usize = 1 + 4 + NONCE_LEN + TAG_LEN;

/// What a sealed object is; part of the associated data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ObjectKind {
    /// `config`
    Config = 1,
    /// `keyring/<name>`
    Keyring = 2,
    /// A file-content blob inside a pack.
    DataBlob = 3,
    /// A tree blob inside a pack.
    TreeBlob = 4,
    /// A pack's header (named by the BLAKE3 of the pack's blob area).
    PackHeader = 5,
    /// `index/<id>`
    IndexSegment = 6,
    /// `snapshots/<id>`
    Snapshot = 7,
    /// `locks/<id>`
    Lock = 8,
    /// `audit/<seq>-<id>`
    Audit = 9,
    /// The fixed-size envelope ending a pack, which locates its header.
    PackLocator = 10,
    /// `marks/<id>`: packs prune marked for deletion.
    PruneMarks = 11,
}

/// The associated data: `"cairn\0" | version | kind | epoch LE | name length LE | name`.
pub fn associated_data(kind: ObjectKind, epoch: u32, name: &[u8]) -> Vec<u8> {
    let mut ad = Vec::with_capacity(16 + name.len());
    ad.extend_from_slice(b"cairn\0");
    ad.push(ENVELOPE_VERSION);
    ad.push(kind as u8);
    ad.extend_from_slice(&epoch.to_le_bytes());
    ad.extend_from_slice(&u32::try_from(name.len()).unwrap_or(u32::MAX).to_le_bytes());
    ad.extend_from_slice(name);
    ad
}

/// Seals `plaintext` with a fresh random nonce.
pub fn seal(key: &Key32, epoch: u32, kind: ObjectKind, name: &[u8], plaintext: &[u8]) -> Result<Vec<u8>> {
    seal_inner(key, epoch, kind, name, plaintext, &random_array()?)
}

/// Seals with a caller-chosen nonce: the test-vector seam. Reusing a nonce under one key
/// breaks confidentiality, so this is public only with the `test-vectors` feature.
#[cfg(feature = "test-vectors")]
pub fn seal_with_nonce(
    key: &Key32,
    epoch: u32,
    kind: ObjectKind,
    name: &[u8],
    plaintext: &[u8],
    nonce: &[u8; NONCE_LEN],
) -> Result<Vec<u8>> {
    seal_inner(key, epoch, kind, name, plaintext, nonce)
}

fn seal_inner(
    key: &Key32,
    epoch: u32,
    kind: ObjectKind,
    name: &[u8],
    plaintext: &[u8],
    nonce: &[u8; NONCE_LEN],
) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(plaintext.len() + OVERHEAD);
    out.resize(HEADER_LEN, 0);
    out.extend_from_slice(plaintext);
    seal_buffer(key, epoch, kind, name, &mut out, nonce)?;
    Ok(out)
}

/// Seals in place: `buf` holds [`HEADER_LEN`] bytes of room, then the plaintext (as
/// [`crate::compress::encode_after`] leaves it). The header is written, the plaintext
/// encrypted where it is and the tag appended: the same bytes as [`seal`], with no copy.
pub fn seal_in_place(key: &Key32, epoch: u32, kind: ObjectKind, name: &[u8], buf: &mut Vec<u8>) -> Result<()> {
    if buf.len() < HEADER_LEN {
        return Err(Error::InvalidInput("no room for the envelope header".into()));
    }
    seal_buffer(key, epoch, kind, name, buf, &random_array()?)
}

fn seal_buffer(
    key: &Key32,
    epoch: u32,
    kind: ObjectKind,
    name: &[u8],
    buf: &mut Vec<u8>,
    nonce: &[u8; NONCE_LEN],
) -> Result<()> {
    let header = std::iter::once(ENVELOPE_VERSION).chain(epoch.to_le_bytes()).chain(*nonce);
    for (room, byte) in buf.iter_mut().zip(header) {
        *room = byte;
    }
    let ad = associated_data(kind, epoch, name);
    let tag = seal_detached(key, nonce, &ad, buf.get_mut(HEADER_LEN..).unwrap_or_default())?;
    buf.extend_from_slice(&tag);
    Ok(())
}

/// The key epoch an envelope claims (authenticated only once opened).
pub fn epoch_of(sealed: &[u8], object: &str) -> Result<u32> {
    let mut r = Reader::new(sealed, object);
    check_version(r.u8()?, object)?;
    r.u32_le()
}

fn check_version(v: u8, object: &str) -> Result<()> {
    if v != ENVELOPE_VERSION {
        return Err(Error::UnsupportedVersion {
            object: object.to_string(),
            found: v.into(),
            supported: ENVELOPE_VERSION.into(),
        });
    }
    Ok(())
}

/// Opens an envelope. `key_for_epoch` maps the claimed epoch to its key; `object` names the
/// object in errors. Fails with [`Error::Corrupt`] when the bytes do not authenticate.
pub fn open<'k>(
    sealed: &[u8],
    kind: ObjectKind,
    name: &[u8],
    object: &str,
    key_for_epoch: impl FnOnce(u32) -> Result<&'k Key32>,
) -> Result<Vec<u8>> {
    let mut r = Reader::new(sealed, object);
    check_version(r.u8()?, object)?;
    let epoch = r.u32_le()?;
    let nonce: [u8; NONCE_LEN] = r.array()?;
    let body = r.rest();
    let ct_len =
        body.len().checked_sub(TAG_LEN).ok_or_else(|| Error::corrupt(object, "sealed object shorter than its tag"))?;
    let (ct, tag) = body.split_at(ct_len);
    let mut tag_arr = [0u8; TAG_LEN];
    tag_arr.copy_from_slice(tag);
    let key = key_for_epoch(epoch)?;
    let mut buf = ct.to_vec();
    let ad = associated_data(kind, epoch, name);
    if !open_detached(key, &nonce, &ad, &mut buf, &tag_arr) {
        return Err(Error::corrupt(
            object,
            "authentication failed (tampered, truncated, swapped, or sealed under another key)",
        ));
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn binds_kind_name_and_epoch() {
        let key = Key32::from_bytes([9; 32]);
        let sealed = seal(&key, 0, ObjectKind::Snapshot, b"abc", b"hello").unwrap();
        assert_eq!(open(&sealed, ObjectKind::Snapshot, b"abc", "o", |_| Ok(&key)).unwrap(), b"hello");
        assert!(open(&sealed, ObjectKind::Config, b"abc", "o", |_| Ok(&key)).is_err());
        assert!(open(&sealed, ObjectKind::Snapshot, b"abd", "o", |_| Ok(&key)).is_err());
        let mut other_epoch = sealed.clone();
        other_epoch[1] = 1;
        assert!(open(&other_epoch, ObjectKind::Snapshot, b"abc", "o", |_| Ok(&key)).is_err());
        let wrong = Key32::from_bytes([8; 32]);
        assert!(open(&sealed, ObjectKind::Snapshot, b"abc", "o", |_| Ok(&wrong)).is_err());
    }

    #[test]
    fn sealing_in_place_makes_an_envelope_like_seal() {
        let key = Key32::from_bytes([4; 32]);
        let mut buf = crate::compress::encode_after(&b"blob ".repeat(500), 3, HEADER_LEN, TAG_LEN);
        let body = buf.clone();
        let room = buf.capacity();
        seal_in_place(&key, 7, ObjectKind::DataBlob, b"id", &mut buf).unwrap();
        assert_eq!(buf.capacity(), room, "the tag fits the room left for it");
        assert_eq!(buf.len(), body.len() + TAG_LEN);
        assert_eq!(&buf[1..5], &7u32.to_le_bytes());
        let opened = open(&buf, ObjectKind::DataBlob, b"id", "o", |_| Ok(&key)).unwrap();
        assert_eq!(opened, &body[HEADER_LEN..]);
        assert!(open(&buf, ObjectKind::TreeBlob, b"id", "o", |_| Ok(&key)).is_err());
        assert!(seal_in_place(&key, 7, ObjectKind::DataBlob, b"id", &mut vec![0; HEADER_LEN - 1]).is_err());
    }

    proptest! {
        #[test]
        fn flipping_any_bit_fails(data in proptest::collection::vec(any::<u8>(), 0..300), bit in any::<usize>()) {
            let key = Key32::from_bytes([5; 32]);
            let sealed = seal(&key, 0, ObjectKind::DataBlob, b"n", &data).unwrap();
            prop_assert_eq!(open(&sealed, ObjectKind::DataBlob, b"n", "o", |_| Ok(&key)).unwrap(), data);
            let mut bad = sealed.clone();
            let i = bit % (bad.len() * 8);
            bad[i / 8] ^= 1 << (i % 8);
            prop_assert!(open(&bad, ObjectKind::DataBlob, b"n", "o", |_| Ok(&key)).is_err());
        }

        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            let key = Key32::from_bytes([5; 32]);
            prop_assert!(open(&data, ObjectKind::DataBlob, b"n", "o", |_| Ok(&key)).is_err());
        }
    }
}
