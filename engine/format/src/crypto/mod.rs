//! Cryptographic primitives: zeroizing secrets, BLAKE3 derivation contexts, XChaCha20-Poly1305
//! and Argon2id. Nothing here knows about repository objects; `format::envelope` is the only
//! caller of the AEAD for repository objects and `keys` the only holder of key material.

mod aead;
mod kdf;
mod secret;

pub use aead::{NONCE_LEN, TAG_LEN, open_detached, seal_detached};
pub use kdf::{Argon2Params, argon2id, context, derive};
pub use secret::{Key32, SecretBytes};

use crate::error::{Error, Result};

/// Fills an array from the operating system's CSPRNG.
pub fn random_array<const N: usize>() -> Result<[u8; N]> {
    let mut out = [0u8; N];
    getrandom::fill(&mut out)
        .map_err(|e| Error::InvalidInput(format!("operating system random source failed: {e}")))?;
    Ok(out)
}

/// A uniformly random integer below `bound` (> 0), without modulo bias.
pub fn random_below(bound: u64) -> Result<u64> {
    if bound <= 1 {
        return Ok(0);
    }
    let zone = u64::MAX - (u64::MAX % bound);
    loop {
        let v = u64::from_le_bytes(random_array()?);
        if v < zone {
            return Ok(v % bound);
        }
    }
}
