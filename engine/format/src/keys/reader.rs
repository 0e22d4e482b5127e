//! Sealing to the reader: how a write-only slot writes objects it cannot read back.
//!
//! Each data-key epoch has a reader key pair. Its secret half is derived from the epoch's data
//! key (BLAKE3-derive(READER_SECRET, epoch LE || data key)), so every full key holds it through
//! the keyring without a format change, and a write-only slot, which holds no data key, never
//! does. A writer draws an ephemeral X25519 key e per pack (or per object), agrees
//! k = BLAKE3-derive(READER_SEAL, X25519(e, R) || E || R) with the reader public key R, seals
//! every object of the pack under k with its own random nonce, puts E in each envelope, and
//! forgets e when the pack is closed. The reader recomputes k from its secret and E.

use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

use crate::crypto::{Key32, context, derive, random_array};
use std::borrow::Cow;

use crate::envelope::{self, ObjectKind, SealedTo};
use crate::error::{Error, Result};

/// The reader secret of `epoch`, from its data key.
pub fn reader_secret(epoch: u32, data_key: &Key32) -> StaticSecret {
    let mut material = Zeroizing::new(epoch.to_le_bytes().to_vec());
    material.extend_from_slice(data_key.expose());
    StaticSecret::from(*derive(context::READER_SECRET, &material).expose())
}

/// The reader public key of `epoch`, from its data key.
pub fn reader_public(epoch: u32, data_key: &Key32) -> [u8; 32] {
    PublicKey::from(&reader_secret(epoch, data_key)).to_bytes()
}

/// k = BLAKE3-derive(READER_SEAL, shared || E || R); `None` for a non-contributory (low-order)
/// point, which an honest writer never produces.
fn agreed_key(shared: &x25519_dalek::SharedSecret, ephemeral: &[u8; 32], reader: &[u8; 32]) -> Option<Key32> {
    if !shared.was_contributory() {
        return None;
    }
    let mut material = Zeroizing::new(Vec::with_capacity(96));
    material.extend_from_slice(shared.as_bytes());
    material.extend_from_slice(ephemeral);
    material.extend_from_slice(reader);
    Some(derive(context::READER_SEAL, &material))
}

/// The key a reader opens a version 2 envelope with: from the epoch's data key and the
/// envelope's ephemeral key. `object` names the object in errors.
pub fn reader_open_key(epoch: u32, data_key: &Key32, ephemeral: &[u8; 32], object: &str) -> Result<Key32> {
    let secret = reader_secret(epoch, data_key);
    let public = PublicKey::from(&secret).to_bytes();
    let shared = secret.diffie_hellman(&PublicKey::from(*ephemeral));
    agreed_key(&shared, ephemeral, &public)
        .ok_or_else(|| Error::corrupt(object, "sealed with a low-order ephemeral key"))
}

/// The key that opens an envelope sealed as `to`, from the data key of its epoch: that key
/// (version 1), or the key agreed with the envelope's ephemeral key (version 2). How a holder of
/// one data key opens either version without a keyring (vectors, fuzzing, tests).
pub fn opening_key<'k>(data_key: &'k Key32, to: SealedTo, object: &str) -> Result<Cow<'k, Key32>> {
    match to {
        SealedTo::Reader { epoch, ephemeral } => reader_open_key(epoch, data_key, &ephemeral, object).map(Cow::Owned),
        SealedTo::Epoch(_) => Ok(Cow::Borrowed(data_key)),
    }
}

/// Seals objects to one epoch's reader public key under one ephemeral key: one per pack (its
/// blobs, header and locator), or one per object. It holds the agreed key, never the
/// ephemeral secret, which is dropped as soon as the key is agreed.
pub struct ReaderSealer {
    epoch: u32,
    ephemeral: [u8; 32],
    key: Key32,
}

impl std::fmt::Debug for ReaderSealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ReaderSealer(epoch {}, <redacted>)", self.epoch)
    }
}

impl ReaderSealer {
    /// A sealer with a fresh ephemeral key. Refuses a low-order reader key (one that would
    /// make the agreed key predictable).
    pub fn new(epoch: u32, reader: &[u8; 32]) -> Result<Self> {
        let e = StaticSecret::from(random_array::<32>()?);
        let ephemeral = PublicKey::from(&e).to_bytes();
        let shared = e.diffie_hellman(&PublicKey::from(*reader));
        drop(e);
        let key = agreed_key(&shared, &ephemeral, reader)
            .ok_or_else(|| Error::InvalidInput("the reader public key is a low-order point".into()))?;
        Ok(ReaderSealer { epoch, ephemeral, key })
    }

    /// A sealer from a fixed ephemeral secret (test vectors only).
    #[cfg(feature = "test-vectors")]
    pub fn from_ephemeral_secret(epoch: u32, reader: &[u8; 32], secret: [u8; 32]) -> Result<Self> {
        let e = StaticSecret::from(secret);
        let ephemeral = PublicKey::from(&e).to_bytes();
        let shared = e.diffie_hellman(&PublicKey::from(*reader));
        let key = agreed_key(&shared, &ephemeral, reader)
            .ok_or_else(|| Error::InvalidInput("the reader public key is a low-order point".into()))?;
        Ok(ReaderSealer { epoch, ephemeral, key })
    }

    /// Seals `plaintext` with a fixed nonce (test vectors only).
    #[cfg(feature = "test-vectors")]
    pub fn seal_with_nonce(
        &self,
        kind: ObjectKind,
        name: &[u8],
        plaintext: &[u8],
        nonce: &[u8; 24],
    ) -> Result<Vec<u8>> {
        let mut buf = vec![0; envelope::READER_HEADER_LEN];
        buf.extend_from_slice(plaintext);
        envelope::seal_to_reader_with_nonce(&self.key, self.epoch, &self.ephemeral, kind, name, &mut buf, nonce)?;
        Ok(buf)
    }

    /// The epoch sealed under.
    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    /// Seals in place (see [`envelope::seal_to_reader_in_place`]): `buf` holds
    /// [`envelope::READER_HEADER_LEN`] bytes of room, then the plaintext.
    pub fn seal_in_place(&self, kind: ObjectKind, name: &[u8], buf: &mut Vec<u8>) -> Result<()> {
        envelope::seal_to_reader_in_place(&self.key, self.epoch, &self.ephemeral, kind, name, buf)
    }

    /// Seals `plaintext` as a version 2 envelope.
    pub fn seal(&self, kind: ObjectKind, name: &[u8], plaintext: &[u8]) -> Result<Vec<u8>> {
        let mut buf = Vec::with_capacity(plaintext.len() + envelope::READER_OVERHEAD);
        buf.resize(envelope::READER_HEADER_LEN, 0);
        buf.extend_from_slice(plaintext);
        self.seal_in_place(kind, name, &mut buf)?;
        Ok(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::{open, open_sealed};

    fn open_as_reader(sealed: &[u8], kind: ObjectKind, name: &[u8], data_key: &Key32) -> Result<Vec<u8>> {
        open_sealed(sealed, kind, name, "o", |to| opening_key(data_key, to, "o"))
    }

    #[test]
    fn what_is_sealed_to_the_reader_opens_with_the_data_key_only() {
        let data_key = Key32::from_bytes([3; 32]);
        let sealer = ReaderSealer::new(5, &reader_public(5, &data_key)).unwrap();
        let sealed = sealer.seal(ObjectKind::Snapshot, b"snapshots/x", b"hello").unwrap();
        assert_eq!(sealed.len(), 5 + envelope::READER_OVERHEAD);
        assert_eq!(envelope::epoch_of(&sealed, "o").unwrap(), 5);
        assert_eq!(open_as_reader(&sealed, ObjectKind::Snapshot, b"snapshots/x", &data_key).unwrap(), b"hello");
        // Name, kind, epoch and ephemeral key are bound; another epoch's key does not open it.
        assert!(open_as_reader(&sealed, ObjectKind::Snapshot, b"snapshots/y", &data_key).is_err());
        assert!(open_as_reader(&sealed, ObjectKind::IndexSegment, b"snapshots/x", &data_key).is_err());
        for i in [1, 5, 20, 40] {
            let mut t = sealed.clone();
            t[i] ^= 1;
            assert!(open_as_reader(&t, ObjectKind::Snapshot, b"snapshots/x", &data_key).is_err(), "byte {i}");
        }
        assert!(open_as_reader(&sealed, ObjectKind::Snapshot, b"snapshots/x", &Key32::from_bytes([4; 32])).is_err());
        // The plain data-key path refuses version 2 outright.
        assert!(open(&sealed, ObjectKind::Snapshot, b"snapshots/x", "o", |_| Ok(&data_key)).is_err());
    }

    #[test]
    fn one_sealer_seals_many_objects_with_fresh_nonces_and_others_differ() {
        let data_key = Key32::from_bytes([3; 32]);
        let reader = reader_public(0, &data_key);
        let sealer = ReaderSealer::new(0, &reader).unwrap();
        let a = sealer.seal(ObjectKind::DataBlob, b"id", b"same").unwrap();
        let b = sealer.seal(ObjectKind::DataBlob, b"id", b"same").unwrap();
        assert_eq!(a[5..37], b[5..37], "one ephemeral key per sealer");
        assert_ne!(a[37..61], b[37..61], "a fresh nonce per object");
        let other = ReaderSealer::new(0, &reader).unwrap().seal(ObjectKind::DataBlob, b"id", b"same").unwrap();
        assert_ne!(a[5..37], other[5..37], "a fresh ephemeral key per sealer");
        for s in [a, b, other] {
            assert_eq!(open_as_reader(&s, ObjectKind::DataBlob, b"id", &data_key).unwrap(), b"same");
        }
    }

    #[test]
    fn full_key_objects_are_never_sealed_to_the_reader() {
        let data_key = Key32::from_bytes([3; 32]);
        let sealer = ReaderSealer::new(0, &reader_public(0, &data_key)).unwrap();
        for kind in [ObjectKind::Config, ObjectKind::Keyring, ObjectKind::PruneMarks] {
            assert!(sealer.seal(kind, b"n", b"x").is_err(), "{kind:?} is not sealed by write-only writers");
            // Nor opened: a version 2 config made by hand is refused before any key is asked for.
            let mut forged = ReaderSealer::new(0, &reader_public(0, &data_key))
                .unwrap()
                .seal(ObjectKind::Snapshot, b"n", b"x")
                .unwrap();
            forged[0] = envelope::READER_ENVELOPE_VERSION;
            assert!(open_as_reader(&forged, kind, b"n", &data_key).is_err());
        }
        // A low-order reader key is refused when sealing, and a low-order ephemeral key when opening.
        assert!(ReaderSealer::new(0, &[0; 32]).is_err());
        let mut sealed = sealer.seal(ObjectKind::Snapshot, b"n", b"x").unwrap();
        sealed[5..37].copy_from_slice(&[0; 32]);
        let err = open_as_reader(&sealed, ObjectKind::Snapshot, b"n", &data_key).unwrap_err().to_string();
        assert!(err.contains("low-order"), "{err}");
    }
}
