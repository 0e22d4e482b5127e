//! Spec: format-spec/SPEC.md#config
//!
//! The repository's parameters, sealed under a data key: they are needed before anything can
//! be written (chunker sizes, pack size, compression level) and must not leak.

use serde::{Deserialize, Serialize};

use crate::chunker::ChunkerParams;
use crate::codec::{decode_versioned, encode_versioned};
use crate::error::{Error, Result};
use crate::id::ObjectId;

/// Payload version of the config.
pub const CONFIG_VERSION: u8 = 1;
/// Object name of the config.
pub const CONFIG_NAME: &str = super::names::CONFIG;

/// Repository-wide settings fixed at `init`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    /// Repository format version.
    pub format_version: u32,
    /// Random id of the repository (also in every key slot and the keyring).
    pub repository_id: ObjectId,
    /// FastCDC bounds.
    pub chunker: ChunkerParams,
    /// Packs are closed once they reach this many bytes.
    pub pack_target_size: u32,
    /// zstd level for blobs (0 = store raw).
    pub zstd_level: i32,
    /// Creation time, ns since the Unix epoch.
    pub created_ns: i64,
}

impl Config {
    /// The largest pack a writer with this config makes, with room to spare: a pack closes
    /// once it reaches the target, so it holds at most the target plus one largest chunk
    /// (sealed), plus its header. Readers refuse larger packs before reading them.
    pub fn max_pack_size(&self) -> u64 {
        2 * (u64::from(self.pack_target_size) + u64::from(self.chunker.max_size)) + (1 << 20)
    }

    /// Checks invariants a tampered or buggy config could break.
    pub fn validate(&self) -> Result<()> {
        self.chunker.validate()?;
        if !(64 * 1024..=1024 * 1024 * 1024).contains(&self.pack_target_size) {
            return Err(Error::InvalidInput(format!(
                "pack target size {} outside 64 KiB ..= 1 GiB",
                self.pack_target_size
            )));
        }
        if !(0..=22).contains(&self.zstd_level) {
            return Err(Error::InvalidInput(format!("zstd level {} outside 0..=22", self.zstd_level)));
        }
        Ok(())
    }

    /// Plaintext bytes.
    pub fn encode(&self) -> Vec<u8> {
        encode_versioned(CONFIG_VERSION, self)
    }

    /// Parses and validates plaintext bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let c: Config = decode_versioned(bytes, CONFIG_VERSION, CONFIG_NAME)?;
        c.validate().map_err(|e| Error::corrupt(CONFIG_NAME, e.to_string()))?;
        Ok(c)
    }
}
