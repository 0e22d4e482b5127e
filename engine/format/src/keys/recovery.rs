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
        let plain = zeroize::Zeroizing::new(crockford().map(|e| e.encode(&self.0)).unwrap_or_default());
        let mut out = zeroize::Zeroizing::new(String::with_capacity(39));
        for (i, c) in plain.chars().enumerate() {
            if i > 0 && i % 4 == 0 {
                out.push('-');
            }
            out.push(c);
        }
        out
    }

    /// Parses a typed code; rejects wrong length, unknown characters and a bad checksum.
    pub fn parse(text: &str) -> Result<Self> {
        if let Some(c) = text.chars().find(|c| !c.is_ascii() || !typable(*c)) {
            return Err(Error::InvalidInput(format!("recovery code contains {c:?}, which is not a code character")));
        }
        let significant = text.chars().filter(|c| !SEPARATORS.contains(*c)).count();
        if significant != 32 {
            return Err(Error::InvalidInput(format!("a recovery code has 32 characters, this has {significant}")));
        }
        let bytes = zeroize::Zeroizing::new(
            crockford()?
                .decode(text.as_bytes())
                .map_err(|e| Error::InvalidInput(format!("recovery code does not decode: {e}")))?,
        );
        let mut out = [0u8; LEN];
        if bytes.len() != LEN {
            return Err(Error::InvalidInput(format!("a recovery code holds {LEN} bytes, this holds {}", bytes.len())));
        }
        out.copy_from_slice(&bytes);
        let code = RecoveryCode(out);
        out.zeroize();
        let (entropy, sum) = code.0.split_at(ENTROPY);
        if checksum(entropy) != sum {
            return Err(Error::InvalidInput("recovery code checksum does not match: check for a typo".into()));
        }
        Ok(code)
    }
}

/// What a typed code may hold besides code characters: group separators and blanks.
const SEPARATORS: &str = "- \t\n\r";

/// Whether `c` may appear in a typed code: a code character in either case, a look-alike
/// (O for 0, I and L for 1), or a separator.
fn typable(c: char) -> bool {
    let u = c.to_ascii_uppercase();
    ALPHABET.contains(&(u as u8)) || matches!(u, 'O' | 'I' | 'L') || SEPARATORS.contains(c)
}

/// Crockford's base32 (data-encoding): upper case out; lower case, the look-alikes O, I and L,
/// and separators accepted in. The specification is a constant, so building it never fails in
/// practice; if it did, no code would be shown or read (never one in another alphabet).
fn crockford() -> Result<&'static data_encoding::Encoding> {
    static ENCODING: std::sync::OnceLock<std::result::Result<data_encoding::Encoding, String>> =
        std::sync::OnceLock::new();
    ENCODING
        .get_or_init(|| {
            let mut spec = data_encoding::Specification::new();
            spec.symbols.push_str(std::str::from_utf8(ALPHABET).map_err(|e| e.to_string())?);
            spec.translate.from.push_str("abcdefghjkmnpqrstvwxyzoOiIlL");
            spec.translate.to.push_str("ABCDEFGHJKMNPQRSTVWXYZ001111");
            spec.ignore.push_str(SEPARATORS);
            spec.encoding().map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| Error::InvalidInput(format!("the recovery code alphabet: {e}")))
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
