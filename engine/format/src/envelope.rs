//! Spec: format-spec/SPEC.md#sealed-object-envelope
//!
//! Every repository object except key slots is sealed the same way:
//! `version(1) | epoch(u32 LE) | nonce(24) | ciphertext | tag(16)`, with associated data that
//! binds the version, the object's kind, the key epoch and the object's name, so storage cannot
//! swap one object for another or replay it under another name.
//!
//! Version 2 is the same envelope sealed *to the reader*: `2 | epoch | E(32) | nonce | ct |
//! tag`, under a key agreed between an ephemeral X25519 key E and the epoch's reader public key
//! (see `keys::reader`). Write-only slots seal with it: they hold the reader public key, not
//! the secret half, so they can write objects they cannot open again. Only the kinds a backup
//! writes may be sealed that way ([`ObjectKind::reader_sealable`]).

use std::borrow::Cow;

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
/// Version of an envelope sealed to a reader public key.
pub const READER_ENVELOPE_VERSION: u8 = 2;
/// Bytes before a version 2 envelope's ciphertext: version, epoch, ephemeral key, nonce.
pub const READER_HEADER_LEN: usize = 1 + 4 + 32 + NONCE_LEN;
/// Bytes a version 2 envelope adds to its plaintext.
pub const READER_OVERHEAD: usize = READER_HEADER_LEN + TAG_LEN;

/// What an envelope says it was sealed under (authenticated only once it opens).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SealedTo {
    /// Version 1: the data key of this epoch.
    Epoch(u32),
    /// Version 2: the reader key pair of this epoch, with the writer's ephemeral public key.
    Reader {
        /// The key epoch whose reader public key the writer used.
        epoch: u32,
        /// The writer's ephemeral X25519 public key.
        ephemeral: [u8; 32],
    },
}

impl SealedTo {
    /// The key epoch.
    pub fn epoch(&self) -> u32 {
        match self {
            SealedTo::Epoch(e) | SealedTo::Reader { epoch: e, .. } => *e,
        }
    }
}

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

impl ObjectKind {
    /// Whether an object of this kind may be sealed to the reader key (version 2), i.e. may be
    /// written by a write-only slot: what a backup writes. The config, the keyring and prune's
    /// marks are written by full keys only.
    pub fn reader_sealable(self) -> bool {
        !matches!(self, ObjectKind::Config | ObjectKind::Keyring | ObjectKind::PruneMarks)
    }
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

/// The associated data of a version 2 envelope: as version 1's (with version 2), then the
/// ephemeral public key.
pub fn reader_associated_data(kind: ObjectKind, epoch: u32, ephemeral: &[u8; 32], name: &[u8]) -> Vec<u8> {
    let mut ad = associated_data(kind, epoch, name);
    if let Some(v) = ad.get_mut(6) {
        *v = READER_ENVELOPE_VERSION;
    }
    ad.extend_from_slice(ephemeral);
    ad
}

/// Seals in place as version 2: `buf` holds [`READER_HEADER_LEN`] bytes of room, then the
/// plaintext. `key` is the key agreed for `ephemeral` (see `keys::ReaderSealer`), which the
/// caller uses for every object of one pack; each gets a fresh random nonce.
pub fn seal_to_reader_in_place(
    key: &Key32,
    epoch: u32,
    ephemeral: &[u8; 32],
    kind: ObjectKind,
    name: &[u8],
    buf: &mut Vec<u8>,
) -> Result<()> {
    reader_seal_buffer(key, epoch, ephemeral, kind, name, buf, &random_array()?)
}

/// As [`seal_to_reader_in_place`] with a caller-chosen nonce: the test-vector seam (feature
/// `test-vectors` only; a reused nonce under one key breaks confidentiality).
#[cfg(feature = "test-vectors")]
pub fn seal_to_reader_with_nonce(
    key: &Key32,
    epoch: u32,
    ephemeral: &[u8; 32],
    kind: ObjectKind,
    name: &[u8],
    buf: &mut Vec<u8>,
    nonce: &[u8; NONCE_LEN],
) -> Result<()> {
    reader_seal_buffer(key, epoch, ephemeral, kind, name, buf, nonce)
}

fn reader_seal_buffer(
    key: &Key32,
    epoch: u32,
    ephemeral: &[u8; 32],
    kind: ObjectKind,
    name: &[u8],
    buf: &mut Vec<u8>,
    nonce: &[u8; NONCE_LEN],
) -> Result<()> {
    if !kind.reader_sealable() {
        return Err(Error::InvalidInput(format!("{kind:?} objects are not sealed to the reader key")));
    }
    if buf.len() < READER_HEADER_LEN {
        return Err(Error::InvalidInput("no room for the envelope header".into()));
    }
    let nonce = *nonce;
    let header = std::iter::once(READER_ENVELOPE_VERSION).chain(epoch.to_le_bytes()).chain(*ephemeral).chain(nonce);
    for (room, byte) in buf.iter_mut().zip(header) {
        *room = byte;
    }
    let ad = reader_associated_data(kind, epoch, ephemeral, name);
    let tag = seal_detached(key, &nonce, &ad, buf.get_mut(READER_HEADER_LEN..).unwrap_or_default())?;
    buf.extend_from_slice(&tag);
    Ok(())
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
    if v != ENVELOPE_VERSION && v != READER_ENVELOPE_VERSION {
        return Err(Error::UnsupportedVersion {
            object: object.to_string(),
            found: v.into(),
            supported: ENVELOPE_VERSION.into(),
        });
    }
    Ok(())
}

/// Opens a version 1 envelope. `key_for_epoch` maps the claimed epoch to its key; `object`
/// names the object in errors. Fails with [`Error::Corrupt`] when the bytes do not
/// authenticate, and refuses a version 2 envelope: for objects only a repository key seals.
pub fn open<'k>(
    sealed: &[u8],
    kind: ObjectKind,
    name: &[u8],
    object: &str,
    key_for_epoch: impl FnOnce(u32) -> Result<&'k Key32>,
) -> Result<Vec<u8>> {
    open_sealed(sealed, kind, name, object, |to| match to {
        SealedTo::Epoch(e) => key_for_epoch(e).map(Cow::Borrowed),
        SealedTo::Reader { .. } => {
            Err(Error::corrupt(object, "sealed to a reader key, where only a repository key seals"))
        }
    })
}

/// Opens a version 1 or 2 envelope. `key_for` gives the key for what the envelope says it was
/// sealed under (for version 2, the key agreed with its ephemeral key); `object` names the
/// object in errors. Fails with [`Error::Corrupt`] when the bytes do not authenticate, and for
/// a version 2 envelope of a kind only full keys write.
pub fn open_sealed<'k>(
    sealed: &[u8],
    kind: ObjectKind,
    name: &[u8],
    object: &str,
    key_for: impl FnOnce(SealedTo) -> Result<Cow<'k, Key32>>,
) -> Result<Vec<u8>> {
    let mut r = Reader::new(sealed, object);
    let version = r.u8()?;
    check_version(version, object)?;
    let epoch = r.u32_le()?;
    let to = if version == READER_ENVELOPE_VERSION {
        if !kind.reader_sealable() {
            return Err(Error::corrupt(object, "sealed to a reader key, where only a repository key seals"));
        }
        SealedTo::Reader { epoch, ephemeral: r.array()? }
    } else {
        SealedTo::Epoch(epoch)
    };
    let nonce: [u8; NONCE_LEN] = r.array()?;
    let body = r.rest();
    let ct_len =
        body.len().checked_sub(TAG_LEN).ok_or_else(|| Error::corrupt(object, "sealed object shorter than its tag"))?;
    let (ct, tag) = body.split_at(ct_len);
    let mut tag_arr = [0u8; TAG_LEN];
    tag_arr.copy_from_slice(tag);
    let key = key_for(to)?;
    let mut buf = ct.to_vec();
    let ad = match &to {
        SealedTo::Epoch(_) => associated_data(kind, epoch, name),
        SealedTo::Reader { ephemeral, .. } => reader_associated_data(kind, epoch, ephemeral, name),
    };
    if !open_detached(&key, &nonce, &ad, &mut buf, &tag_arr) {
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
