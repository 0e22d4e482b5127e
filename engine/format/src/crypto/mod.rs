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
    below(bound, &mut || Ok(u64::from_le_bytes(random_array()?)))
}

/// A uniformly random permutation of `items` (Fisher-Yates), from one request to the
/// operating system's CSPRNG for the whole list (a pack of small files holds thousands of
/// blobs: one request per swap was a system call per file backed up).
pub fn shuffle<T>(items: &mut [T]) -> Result<()> {
    let mut bytes = vec![0u8; items.len().saturating_sub(1) * 8];
    getrandom::fill(&mut bytes)
        .map_err(|e| Error::InvalidInput(format!("operating system random source failed: {e}")))?;
    let mut words = bytes.chunks_exact(8).filter_map(|w| <[u8; 8]>::try_from(w).ok()).map(u64::from_le_bytes);
    let mut next = || match words.next() {
        Some(w) => Ok(w),
        // A rejected draw (rarer than 1 in 2^40 for any pack) takes a fresh word.
        None => Ok(u64::from_le_bytes(random_array()?)),
    };
    for i in (1..items.len()).rev() {
        let j = below(i as u64 + 1, &mut next)? as usize;
        items.swap(i, j);
    }
    Ok(())
}

/// A uniform draw below `bound` from the words `next` yields, by rejection.
fn below(bound: u64, next: &mut impl FnMut() -> Result<u64>) -> Result<u64> {
    if bound <= 1 {
        return Ok(0);
    }
    let zone = u64::MAX - (u64::MAX % bound);
    loop {
        let v = next()?;
        if v < zone {
            return Ok(v % bound);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A shuffle is a permutation, and every element reaches every position (3 elements,
    /// 6,000 shuffles: each of the 6 orders comes up; a biased or fixed shuffle fails).
    #[test]
    fn shuffle_permutes_and_reaches_every_order() {
        let mut seen = std::collections::HashMap::new();
        for _ in 0..6000 {
            let mut v = [0u8, 1, 2];
            shuffle(&mut v).unwrap();
            let mut sorted = v;
            sorted.sort_unstable();
            assert_eq!(sorted, [0, 1, 2]);
            *seen.entry(v).or_insert(0u32) += 1;
        }
        assert_eq!(seen.len(), 6);
        assert!(seen.values().all(|&n| (700..1300).contains(&n)), "{seen:?}");
        let mut empty: [u8; 0] = [];
        shuffle(&mut empty).unwrap();
        let mut many: Vec<u32> = (0..10_000).collect();
        shuffle(&mut many).unwrap();
        assert_ne!(many, (0..10_000).collect::<Vec<u32>>());
        many.sort_unstable();
        assert_eq!(many, (0..10_000).collect::<Vec<u32>>());
    }
}
