//! Key files: a 256-bit random secret in a small text file, for unattended jobs. A key file
//! opens its key slot with one BLAKE3 derivation instead of Argon2id, which a password needs
//! because people choose passwords; 256 random bits need no slow KDF. The file also names the
//! repository and the slot it was made for, so a key file given to the wrong repository or
//! whose slot was removed gets an error that says so, instead of "wrong key".
//!
//! The text form (SPEC §7):
//! ```text
//! # cairn key file: opens one key slot of one repository. Keep it secret (mode 0600).
//! cairn-key-file v1
//! repository <64 hex>
//! slot <64 hex>
//! secret <64 hex>
//! ```
//! Lines starting with `#` and blank lines are ignored; every other line must be one of the
//! four, each exactly once, the version line first.

use std::fmt;

use zeroize::{Zeroize, Zeroizing};

use crate::crypto::{Key32, context, derive, random_array};
use crate::error::{Error, Result};
use crate::id::ObjectId;

const VERSION_LINE: &str = "cairn-key-file v1";

/// A key file's contents (the secret zeroizes on drop and is redacted in Debug).
#[derive(Clone, PartialEq, Eq)]
pub struct KeyFile {
    /// The repository the slot belongs to.
    pub repository_id: ObjectId,
    /// The slot the secret opens.
    pub slot: ObjectId,
    secret: Key32,
}

impl fmt::Debug for KeyFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyFile(repository {}, slot {}, <redacted>)", self.repository_id.short(), self.slot.short())
    }
}

impl KeyFile {
    /// A fresh random secret for slot `slot` of `repository_id`.
    pub fn generate(repository_id: ObjectId, slot: ObjectId) -> Result<Self> {
        Ok(Self::from_secret(repository_id, slot, random_array()?))
    }

    /// A key file with a fixed secret (test vectors).
    pub fn from_secret(repository_id: ObjectId, slot: ObjectId, mut secret: [u8; 32]) -> Self {
        let k = Key32::from_bytes(secret);
        secret.zeroize();
        KeyFile { repository_id, slot, secret: k }
    }

    /// The slot's wrapping key: BLAKE3 derive_key(KEY_FILE_SLOT, secret || salt).
    pub fn wrapping_key(&self, salt: &[u8]) -> Key32 {
        let mut material = Zeroizing::new(self.secret.expose().to_vec());
        material.extend_from_slice(salt);
        derive(context::KEY_FILE_SLOT, &material)
    }

    /// The file's text. It zeroizes when dropped.
    pub fn encode(&self) -> Zeroizing<String> {
        Zeroizing::new(format!(
            "# cairn key file: opens one key slot of one repository. Keep it secret (mode 0600).\n\
             {VERSION_LINE}\nrepository {}\nslot {}\nsecret {}\n",
            self.repository_id.to_hex(),
            self.slot.to_hex(),
            Zeroizing::new(hex::encode(self.secret.expose())).as_str(),
        ))
    }

    /// Parses a key file's text; the error names what is wrong, never the secret.
    pub fn parse(text: &str) -> Result<Self> {
        let bad = |why: &str| Error::InvalidInput(format!("not a cairn key file: {why}"));
        let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#'));
        if lines.next() != Some(VERSION_LINE) {
            return Err(bad(&format!("the first line is not {VERSION_LINE:?}")));
        }
        let (mut repository, mut slot, mut secret) = (None, None, None::<Zeroizing<[u8; 32]>>);
        for line in lines {
            // Nothing from the file is ever quoted back: a mangled line may hold the secret.
            let (field, value) = line.split_once(' ').ok_or_else(|| bad("a line is not `field value`"))?;
            let field = match field {
                "repository" | "slot" | "secret" => field,
                _ => return Err(bad("a line starts with an unknown field")),
            };
            let value = value.trim();
            let mut bytes = Zeroizing::new([0u8; 32]);
            if value.len() != 64 || hex::decode_to_slice(value, bytes.as_mut_slice()).is_err() {
                return Err(bad(&format!("{field} is not 64 hex digits")));
            }
            let target = match field {
                "repository" => repository.replace(ObjectId(*bytes)).map(|_| ()),
                "slot" => slot.replace(ObjectId(*bytes)).map(|_| ()),
                _ => secret.replace(bytes).map(|_| ()),
            };
            if target.is_some() {
                return Err(bad(&format!("{field} is given twice")));
            }
        }
        match (repository, slot, secret) {
            (Some(repository_id), Some(slot), Some(secret)) => Ok(Self::from_secret(repository_id, slot, *secret)),
            _ => Err(bad("it needs a repository, a slot and a secret line")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> KeyFile {
        KeyFile::from_secret(ObjectId([1; 32]), ObjectId([2; 32]), [3; 32])
    }

    #[test]
    fn a_key_file_reads_back_as_written() {
        let k = KeyFile::generate(ObjectId([1; 32]), ObjectId([2; 32])).unwrap();
        assert_eq!(KeyFile::parse(&k.encode()).unwrap(), k);
        assert_ne!(k, KeyFile::generate(ObjectId([1; 32]), ObjectId([2; 32])).unwrap(), "secrets are random");
        // Line ends and indentation of a hand-copied file are forgiven.
        let crlf = k.encode().replace('\n', "\r\n").replace("slot", "  slot");
        assert_eq!(KeyFile::parse(&crlf).unwrap(), k);
    }

    #[test]
    fn malformed_files_are_refused_with_a_reason() {
        let good = sample().encode();
        let cases = [
            (good.replace("cairn-key-file v1", "cairn-key-file v2"), "first line"),
            (good.replace("slot ", "slots "), "unknown field"),
            (good.replace("secret ", "secret=").replace("secret=", &format!("{} ", "03".repeat(32))), "unknown field"),
            (good.replace("secret 0303", "secret 03"), "64 hex digits"),
            (good.replace("secret 0303", "secret zz03"), "64 hex digits"),
            (good.lines().filter(|l| !l.starts_with("repository")).collect::<Vec<_>>().join("\n"), "needs"),
            (format!("{}slot {}\n", *good, "0".repeat(64)), "twice"),
            (String::new(), "first line"),
        ];
        for (text, why) in cases {
            let err = KeyFile::parse(&text).unwrap_err().to_string();
            assert!(err.contains(why), "{err:?} should say {why:?}");
            assert!(!err.contains(&"03".repeat(32)), "an error never shows the secret");
        }
    }

    #[test]
    fn the_wrapping_key_depends_on_secret_and_salt() {
        let k = sample();
        assert_eq!(k.wrapping_key(&[9; 32]), k.wrapping_key(&[9; 32]));
        assert_ne!(k.wrapping_key(&[9; 32]), k.wrapping_key(&[8; 32]));
        let other = KeyFile::from_secret(ObjectId([1; 32]), ObjectId([2; 32]), [4; 32]);
        assert_ne!(k.wrapping_key(&[9; 32]), other.wrapping_key(&[9; 32]));
        assert!(!format!("{k:?}").contains("0303"), "Debug redacts the secret");
    }
}
