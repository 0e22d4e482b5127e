//! HSM slots through PKCS#11 (`cryptoki`): a non-extractable, sensitive AES-256 key on a token
//! wraps the slot's X25519 secret with CKM_AES_GCM (12-byte IV drawn from the token, 128-bit
//! tag, the slot's associated data as AAD). The key never leaves the token; the unwrapped
//! secret lives only in this process and is zeroized on drop.

use std::fmt;
use std::path::PathBuf;

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;

use crate::crypto::SecretBytes;
use crate::error::{Error, Result};

/// GCM IV length.
pub const IV_LEN: usize = 12;
const TAG_BITS: u64 = 128;

/// Where the HSM key is: module, token, key label and the user PIN.
#[derive(Clone)]
pub struct HsmConfig {
    /// Path of the PKCS#11 module (e.g. /usr/lib/softhsm/libsofthsm2.so).
    pub module: PathBuf,
    /// Token label.
    pub token: String,
    /// Label of the AES key on the token.
    pub key_label: String,
    /// User PIN.
    pub pin: SecretBytes,
}

impl fmt::Debug for HsmConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HsmConfig")
            .field("module", &self.module)
            .field("token", &self.token)
            .field("key_label", &self.key_label)
            .field("pin", &"<redacted>")
            .finish()
    }
}

/// A logged-in session on the token with the key found (or created).
pub struct HsmSession {
    // Field order matters: the session must close before the context finalizes.
    session: Session,
    key: ObjectHandle,
    _context: Pkcs11,
}

impl fmt::Debug for HsmSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HsmSession")
    }
}

fn hsm_err(what: &str, e: CkError) -> Error {
    let why = match &e {
        CkError::Pkcs11(RvError::PinIncorrect, _) => "the PIN is wrong".to_string(),
        CkError::Pkcs11(RvError::PinLocked, _) => "the PIN is locked (too many wrong attempts)".to_string(),
        CkError::Pkcs11(RvError::PinLenRange, _) => "the PIN has an invalid length".to_string(),
        CkError::Pkcs11(RvError::TokenNotPresent, _) => "the token is not present".to_string(),
        CkError::LibraryLoading(e) => format!("cannot load the PKCS#11 module: {e}"),
        other => other.to_string(),
    };
    Error::Hsm(format!("{what}: {why}"))
}

impl HsmSession {
    /// Loads the module, finds the token by label, logs in and finds the key by label. With
    /// `create_key`, a missing key is generated on the token (AES-256, sensitive,
    /// non-extractable); otherwise a missing key is an error.
    pub fn open(cfg: &HsmConfig, create_key: bool) -> Result<Self> {
        if !cfg.module.exists() {
            return Err(Error::Hsm(format!("PKCS#11 module {} does not exist", cfg.module.display())));
        }
        let context = Pkcs11::new(&cfg.module).map_err(|e| hsm_err("loading the PKCS#11 module", e))?;
        context
            .initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
            .map_err(|e| hsm_err("initializing the PKCS#11 module", e))?;
        let mut found = None;
        for slot in context.get_slots_with_token().map_err(|e| hsm_err("listing tokens", e))? {
            let info = context.get_token_info(slot).map_err(|e| hsm_err("reading token info", e))?;
            if info.label().trim_end() == cfg.token {
                found = Some(slot);
                break;
            }
        }
        let slot = found
            .ok_or_else(|| Error::Hsm(format!("no token labelled {:?} in {}", cfg.token, cfg.module.display())))?;
        let session = context.open_rw_session(slot).map_err(|e| hsm_err("opening a session", e))?;
        let pin = String::from_utf8(cfg.pin.expose().to_vec())
            .map_err(|_| Error::Hsm("the PIN is not valid UTF-8".into()))?;
        session
            .login(UserType::User, Some(&AuthPin::new(pin.into())))
            .map_err(|e| hsm_err(&format!("logging in to token {:?}", cfg.token), e))?;
        let template = [
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::AES),
            Attribute::Label(cfg.key_label.as_bytes().to_vec()),
        ];
        let keys = session.find_objects(&template).map_err(|e| hsm_err("looking for the key", e))?;
        let key = match keys.as_slice() {
            [key] => *key,
            [] if create_key => generate_key(&session, &cfg.key_label)?,
            [] => {
                return Err(Error::Hsm(format!("no AES key labelled {:?} on token {:?}", cfg.key_label, cfg.token)));
            }
            _ => {
                return Err(Error::Hsm(format!(
                    "{} AES keys are labelled {:?} on token {:?}; labels must be unique",
                    keys.len(),
                    cfg.key_label,
                    cfg.token
                )));
            }
        };
        check_key(&session, key, &cfg.key_label)?;
        Ok(HsmSession { session, key, _context: context })
    }

    /// Encrypts `plaintext` with a fresh IV from the token; returns (IV, ciphertext || tag).
    pub fn seal(&self, ad: &[u8], plaintext: &[u8]) -> Result<([u8; IV_LEN], Vec<u8>)> {
        let mut iv = [0u8; IV_LEN];
        self.session.generate_random_slice(&mut iv).map_err(|e| hsm_err("drawing an IV from the token", e))?;
        let mut iv_param = iv;
        let params = GcmParams::new(&mut iv_param, ad, TAG_BITS.into()).map_err(|e| hsm_err("GCM parameters", e))?;
        let ct = self
            .session
            .encrypt(&Mechanism::AesGcm(params), self.key, plaintext)
            .map_err(|e| hsm_err("encrypting with the token key", e))?;
        Ok((iv, ct))
    }

    /// Decrypts; `Ok(None)` when the tag does not authenticate (another key, or tampering:
    /// tokens report a failed GCM tag as a general or data error).
    pub fn open_sealed(&self, ad: &[u8], iv: &[u8], ciphertext: &[u8]) -> Result<Option<SecretBytes>> {
        let mut iv_param = iv.to_vec();
        let params = GcmParams::new(&mut iv_param, ad, TAG_BITS.into()).map_err(|e| hsm_err("GCM parameters", e))?;
        match self.session.decrypt(&Mechanism::AesGcm(params), self.key, ciphertext) {
            Ok(plain) => Ok(Some(SecretBytes::new(plain))),
            Err(CkError::Pkcs11(
                RvError::EncryptedDataInvalid
                | RvError::EncryptedDataLenRange
                | RvError::GeneralError
                | RvError::DataInvalid
                | RvError::FunctionFailed,
                _,
            )) => Ok(None),
            Err(e) => Err(hsm_err("decrypting with the token key", e)),
        }
    }
}

fn generate_key(session: &Session, label: &str) -> Result<ObjectHandle> {
    let template = [
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::AES),
        Attribute::ValueLen(32.into()),
        Attribute::Label(label.as_bytes().to_vec()),
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Encrypt(true),
        Attribute::Decrypt(true),
    ];
    session.generate_key(&Mechanism::AesKeyGen, &template).map_err(|e| hsm_err("generating an AES-256 key", e))
}

/// Refuses keys that could leave the token: a slot is only as strong as its key's custody.
fn check_key(session: &Session, key: ObjectHandle, label: &str) -> Result<()> {
    let attrs = session
        .get_attributes(key, &[AttributeType::Sensitive, AttributeType::Extractable, AttributeType::ValueLen])
        .map_err(|e| hsm_err("reading the key's attributes", e))?;
    for a in attrs {
        match a {
            Attribute::Sensitive(false) => {
                return Err(Error::Hsm(format!("key {label:?} is not marked sensitive; refusing to use it")));
            }
            Attribute::Extractable(true) => {
                return Err(Error::Hsm(format!("key {label:?} is extractable; refusing to use it")));
            }
            Attribute::ValueLen(len) if u64::from(len) != 32 => {
                return Err(Error::Hsm(format!("key {label:?} is not a 256-bit AES key")));
            }
            _ => {}
        }
    }
    Ok(())
}
