//! How a writer seals what it writes: under the current epoch's data key (a full key), or to
//! the epoch's reader public key (a write-only slot's kit, envelope version 2). Blobs, packs
//! and objects take their envelope's header room and overhead from here, so one writer path
//! serves both.

use crate::crypto::Key32;
use crate::envelope::{self, ObjectKind};
use crate::error::Result;
use crate::keys::ReaderSealer;

/// A writer's sealing.
#[derive(Debug)]
pub enum Sealer {
    /// Version 1 under a data key.
    Key {
        /// The key's epoch.
        epoch: u32,
        /// The data key.
        key: Key32,
    },
    /// Version 2 to a reader public key, under one ephemeral key.
    Reader(ReaderSealer),
}

impl Sealer {
    /// The epoch sealed under.
    pub fn epoch(&self) -> u32 {
        match self {
            Sealer::Key { epoch, .. } => *epoch,
            Sealer::Reader(r) => r.epoch(),
        }
    }

    /// Bytes before the ciphertext: the room a buffer sealed in place starts with.
    pub fn header_len(&self) -> usize {
        match self {
            Sealer::Key { .. } => envelope::HEADER_LEN,
            Sealer::Reader(_) => envelope::READER_HEADER_LEN,
        }
    }

    /// Bytes an envelope adds to its plaintext.
    pub fn overhead(&self) -> usize {
        match self {
            Sealer::Key { .. } => envelope::OVERHEAD,
            Sealer::Reader(_) => envelope::READER_OVERHEAD,
        }
    }

    /// Seals in place: `buf` holds [`Sealer::header_len`] bytes of room, then the plaintext.
    pub fn seal_in_place(&self, kind: ObjectKind, name: &[u8], buf: &mut Vec<u8>) -> Result<()> {
        match self {
            Sealer::Key { epoch, key } => envelope::seal_in_place(key, *epoch, kind, name, buf),
            Sealer::Reader(r) => r.seal_in_place(kind, name, buf),
        }
    }

    /// Seals `plaintext`.
    pub fn seal(&self, kind: ObjectKind, name: &[u8], plaintext: &[u8]) -> Result<Vec<u8>> {
        match self {
            Sealer::Key { epoch, key } => envelope::seal(key, *epoch, kind, name, plaintext),
            Sealer::Reader(r) => r.seal(kind, name, plaintext),
        }
    }
}
