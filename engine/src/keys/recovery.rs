//! Recovery codes: 18 random bytes plus a 2-byte checksum, written as 32 Crockford base32
//! characters in 8 groups of 4 (`XXXX-XXXX-...`). Typing is forgiving: case, spaces, dashes,
//! and the look-alikes O/I/L are accepted; a typo is caught by the checksum before any slot
//! is tried.

use std::fmt;

use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::error::{Error, Result};

const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
const ENTROPY: usize = 18;
const LEN: usize = 20;

/// A recovery code (secret; zeroized on drop, redacted in Debug).
#[derive(Clone, Zeroize, ZeroizeOnDrop, PartialEq, Eq)]
pub struct RecoveryCode([u8; LEN]);

impl fmt::Debug for RecoveryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RecoveryCode(<redacted>)")
    }
}

fn checksum(entropy: &[u8]) -> [u8; 2] {
    let h = blake3::derive_key("cairn v1 2026-11-23 recovery code checksum", entropy);
    [h[0], h[1]]
}

impl RecoveryCode {
    /// A fresh random code.
    pub fn generate() -> Result<Self> {
        let entropy: [u8; ENTROPY] = crate::crypto::random_array()?;
        Ok(Self::from_entropy(entropy))
    }

    /// A code from fixed entropy (test vectors).
    pub fn from_entropy(mut entropy: [u8; ENTROPY]) -> Self {
        let mut b = [0u8; LEN];
        let (head, tail) = b.split_at_mut(ENTROPY);
        head.copy_from_slice(&entropy);
        tail.copy_from_slice(&checksum(&entropy));
        entropy.zeroize();
        RecoveryCode(b)
    }

    /// The 20 code bytes (entropy then checksum), used as KDF input.
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }

    /// The printable form, e.g. `7K3M-...` (8 groups of 4). Show it once and forget it: the
    /// string zeroizes when dropped.
    pub fn display(&self) -> zeroize::Zeroizing<String> {
        let mut out = zeroize::Zeroizing::new(String::with_capacity(39));
        let mut chars = Vec::with_capacity(32);
        let mut acc: u64 = 0;
        let mut bits = 0;
        for &byte in &self.0 {
            acc = (acc << 8) | u64::from(byte);
            bits += 8;
            while bits >= 5 {
                bits -= 5;
                let idx = ((acc >> bits) & 31) as usize;
                chars.push(ALPHABET.get(idx).copied().unwrap_or(b'0'));
            }
        }
        for (i, c) in chars.iter().enumerate() {
            if i > 0 && i % 4 == 0 {
                out.push('-');
            }
            out.push(char::from(*c));
        }
        chars.zeroize();
        acc.zeroize();
        out
    }

    /// Parses a typed code; rejects wrong length, unknown characters and a bad checksum.
    pub fn parse(text: &str) -> Result<Self> {
        let mut values = Vec::with_capacity(32);
        for c in text.chars() {
            let c = c.to_ascii_uppercase();
            let c = match c {
                '-' | ' ' | '\t' | '\n' | '\r' => continue,
                'O' => '0',
                'I' | 'L' => '1',
                c => c,
            };
            let v = ALPHABET.iter().position(|&a| char::from(a) == c).ok_or_else(|| {
                Error::InvalidInput(format!("recovery code contains {c:?}, which is not a code character"))
            })?;
            values.push(v as u64);
        }
        if values.len() != 32 {
            return Err(Error::InvalidInput(format!("a recovery code has 32 characters, this has {}", values.len())));
        }
        let mut out = [0u8; LEN];
        let mut acc: u64 = 0;
        let mut bits = 0;
        let mut i = 0;
        for v in &values {
            acc = (acc << 5) | v;
            bits += 5;
            if bits >= 8 {
                bits -= 8;
                if let Some(slot) = out.get_mut(i) {
                    *slot = (acc >> bits) as u8;
                }
                i += 1;
            }
        }
        values.zeroize();
        let code = RecoveryCode(out);
        out.zeroize();
        let (entropy, sum) = code.0.split_at(ENTROPY);
        if checksum(entropy) != sum {
            return Err(Error::InvalidInput("recovery code checksum does not match: check for a typo".into()));
        }
        Ok(code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn display_parse_round_trip(entropy in any::<[u8; 18]>()) {
            let code = RecoveryCode::from_entropy(entropy);
            let shown = code.display();
            prop_assert_eq!(shown.len(), 39);
            prop_assert_eq!(RecoveryCode::parse(&shown).unwrap(), code.clone());
            prop_assert_eq!(RecoveryCode::parse(&shown.to_lowercase().replace('-', " ")).unwrap(), code);
        }

        #[test]
        fn arbitrary_text_never_panics(s in ".{0,60}") {
            let _ = RecoveryCode::parse(&s);
        }
    }

    #[test]
    fn a_typo_is_caught() {
        let code = RecoveryCode::from_entropy([7; 18]);
        let mut shown: Vec<char> = code.display().chars().collect();
        shown[0] = if shown[0] == 'A' { 'B' } else { 'A' };
        let typo: String = shown.into_iter().collect();
        assert!(RecoveryCode::parse(&typo).unwrap_err().to_string().contains("checksum"));
    }
}
