//! XChaCha20-Poly1305 with detached tags, in place. Callers supply the nonce so the
//! format-spec test vectors can pin it; production callers always pass a fresh random one.

use chacha20poly1305::aead::AeadInOut;
use chacha20poly1305::{KeyInit, Tag, XChaCha20Poly1305, XNonce};

use super::Key32;
use crate::error::{Error, Result};

/// Nonce length of XChaCha20-Poly1305.
pub const NONCE_LEN: usize = 24;
/// Poly1305 tag length.
pub const TAG_LEN: usize = 16;

/// Encrypts `buf` in place and returns the tag. Fails only for messages longer than the
/// cipher allows (256 GiB), far beyond any object; never returns a tag that does not
/// authenticate.
pub fn seal_detached(key: &Key32, nonce: &[u8; NONCE_LEN], ad: &[u8], buf: &mut [u8]) -> Result<[u8; TAG_LEN]> {
    let cipher = XChaCha20Poly1305::new(key.expose().into());
    let nonce = XNonce::from(*nonce);
    cipher
        .encrypt_inout_detached(&nonce, ad, buf.into())
        .map(Into::into)
        .map_err(|_| Error::InvalidInput(format!("cannot encrypt {} bytes in one object", buf.len())))
}

/// Decrypts `buf` in place; `false` when the tag does not authenticate (buf is then garbage).
#[must_use]
pub fn open_detached(key: &Key32, nonce: &[u8; NONCE_LEN], ad: &[u8], buf: &mut [u8], tag: &[u8; TAG_LEN]) -> bool {
    let cipher = XChaCha20Poly1305::new(key.expose().into());
    let nonce = XNonce::from(*nonce);
    let tag = Tag::from(*tag);
    cipher.decrypt_inout_detached(&nonce, ad, buf.into(), &tag).is_ok()
}
