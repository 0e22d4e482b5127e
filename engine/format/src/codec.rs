//! Bounds-checked encoding helpers. Structured payloads are `version byte || postcard(value)`;
//! fixed layouts (the envelope, the pack locator, padded plaintexts) are read through
//! [`Reader`], which never indexes out of bounds. Every decoder of repository bytes goes
//! through here.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Encodes `version || postcard(value)`.
pub fn encode_versioned<T: Serialize>(version: u8, value: &T) -> Vec<u8> {
    let out = vec![version];
    // Serializing plain data structures into a Vec cannot fail.
    match postcard::to_extend(value, out) {
        Ok(v) => v,
        Err(_) => vec![version],
    }
}

/// Decodes `version || postcard(value)`, rejecting other versions and trailing bytes.
pub fn decode_versioned<T: DeserializeOwned>(bytes: &[u8], version: u8, object: &str) -> Result<T> {
    decode_versioned_borrowed(bytes, version, object)
}

/// [`decode_versioned`] into a value that may borrow from `bytes` (names, strings).
pub fn decode_versioned_borrowed<'a, T: Deserialize<'a>>(bytes: &'a [u8], version: u8, object: &str) -> Result<T> {
    let (&found, body) = bytes.split_first().ok_or_else(|| Error::corrupt(object, "empty payload"))?;
    if found != version {
        return Err(Error::UnsupportedVersion {
            object: object.to_string(),
            found: found.into(),
            supported: version.into(),
        });
    }
    let (value, rest) =
        postcard::take_from_bytes(body).map_err(|e| Error::corrupt(object, format!("undecodable payload: {e}")))?;
    if !rest.is_empty() {
        return Err(Error::corrupt(object, format!("{} trailing bytes after payload", rest.len())));
    }
    Ok(value)
}

/// A cursor over untrusted bytes; every read checks its bounds.
#[derive(Debug)]
pub struct Reader<'a, 'o> {
    bytes: &'a [u8],
    object: &'o str,
}

impl<'a, 'o> Reader<'a, 'o> {
    /// Reads `bytes`, naming `object` in errors.
    pub fn new(bytes: &'a [u8], object: &'o str) -> Self {
        Reader { bytes, object }
    }

    /// Takes the next `n` bytes.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if n > self.bytes.len() {
            return Err(Error::corrupt(
                self.object,
                format!("truncated: needed {n} more bytes, {} left", self.bytes.len()),
            ));
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }

    /// Takes a fixed-size array.
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let s = self.take(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(s);
        Ok(out)
    }

    /// Reads one byte.
    pub fn u8(&mut self) -> Result<u8> {
        Ok(self.array::<1>()?[0])
    }

    /// Reads a little-endian u32.
    pub fn u32_le(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    /// Everything not yet read.
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.bytes)
    }

    /// Bytes left.
    pub fn remaining(&self) -> usize {
        self.bytes.len()
    }
}
