//! Identifiers. A [`ChunkId`] names a blob by the keyed BLAKE3 hash of its plaintext (so equal
//! content dedups without revealing content); a [`PackId`] is the unkeyed BLAKE3 of a pack's
//! bytes (so storage can be verified without keys); an [`ObjectId`] is 32 random bytes naming
//! snapshots, index segments and key slots.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub struct $name(pub [u8; 32]);

        impl $name {
            /// Lower-case hex, 64 characters.
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }

            /// Parses 64 hex characters.
            pub fn from_hex(s: &str) -> Result<Self> {
                let mut out = [0u8; 32];
                hex::decode_to_slice(s, &mut out)
                    .map_err(|e| Error::InvalidInput(format!("bad id {s:?}: {e}")))?;
                Ok(Self(out))
            }

            /// The first 12 hex characters, as shown to people.
            pub fn short(&self) -> String {
                hex::encode(self.0.get(..6).unwrap_or_default())
            }

            /// The raw bytes.
            pub fn as_bytes(&self) -> &[u8; 32] {
                &self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), hex::encode(self.0.get(..6).unwrap_or_default()))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }
    };
}

id_type!(
    /// Keyed BLAKE3 of a blob's plaintext under the repository's K_id.
    ChunkId
);
id_type!(
    /// Unkeyed BLAKE3 of a whole pack file.
    PackId
);
id_type!(
    /// Random identifier of a snapshot, index segment, key slot or repository.
    ObjectId
);

impl PackId {
    /// Computes the id of the given pack bytes.
    pub fn of(bytes: &[u8]) -> Self {
        PackId(*blake3::hash(bytes).as_bytes())
    }

    /// The id of the concatenation of `parts`.
    pub fn of_parts(parts: &[&[u8]]) -> Self {
        let mut h = blake3::Hasher::new();
        for p in parts {
            h.update(p);
        }
        PackId(*h.finalize().as_bytes())
    }
}

impl ObjectId {
    /// A fresh random id.
    pub fn random() -> Result<Self> {
        Ok(ObjectId(crate::crypto::random_array()?))
    }
}
