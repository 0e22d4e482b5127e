//! Key derivation: BLAKE3 `derive_key` with one fixed context string per purpose, and
//! Argon2id for password slots (its cost is chosen at `init` and stored in the slot).

use serde::{Deserialize, Serialize};

use super::Key32;
use crate::error::{Error, Result};

/// The BLAKE3 derivation contexts. Changing any string is a format change.
pub mod context {
    /// K -> key that seals the keyring.
    pub const KEYRING_SEAL: &str = "cairn v1 2026-11-23 keyring sealing key";
    /// K -> name of the keyring object (so a slot finds the keyring K opens).
    pub const KEYRING_NAME: &str = "cairn v1 2026-11-23 keyring object name";
    /// K_cdc -> FastCDC gear table (XOF output, 256 little-endian u64).
    pub const GEAR_TABLE: &str = "cairn v1 2026-11-23 fastcdc gear table";
    /// recovery code || salt -> recovery slot wrapping key.
    pub const RECOVERY_SLOT: &str = "cairn v1 2026-11-23 recovery slot wrapping key";
    /// X25519 shared secret || ephemeral public || slot public -> key sealing K to a slot.
    pub const SLOT_SEAL: &str = "cairn v1 2026-11-24 slot sealed repository key";
    /// K_id -> key sealing each slot's label and creation time.
    pub const SLOT_INFO: &str = "cairn v1 2026-11-24 slot info";
    /// K_audit -> MAC key of audit entries (kept apart from any other use of K_audit).
    pub const AUDIT_MAC: &str = "cairn v1 2026-11-24 audit entry mac";
    /// K_id || repository id -> the repository's identity, which every slot's wrapped secret
    /// carries and every client pins: only holders of K_id can name it.
    pub const REPO_IDENTITY: &str = "cairn v2 2026-12-03 repository identity";
    /// epoch (u32 LE) || data key -> the epoch's fingerprint, which clients pin.
    pub const EPOCH_FINGERPRINT: &str = "cairn v2 2026-12-03 epoch key fingerprint";
    /// machine id || boot id || pid namespace -> the machine identity in locks.
    pub const LOCK_MACHINE: &str = "cairn v2 2026-12-03 lock machine identity";
    /// key file secret || salt -> key-file slot wrapping key.
    pub const KEY_FILE_SLOT: &str = "cairn v2 2026-12-04 key file slot wrapping key";
    /// epoch (u32 LE) || data key -> the epoch's reader X25519 secret (write-only slots seal to
    /// its public half).
    pub const READER_SECRET: &str = "cairn v3 2026-12-04 epoch reader secret";
    /// X25519 shared secret || ephemeral public || reader public -> key of objects sealed to the
    /// reader (envelope version 2).
    pub const READER_SEAL: &str = "cairn v3 2026-12-04 reader sealed object key";
    /// K_audit || slot id -> a write-only slot's audit entry MAC key.
    pub const AUDIT_SLOT: &str = "cairn v3 2026-12-04 write-only slot audit mac";
    /// A write-only slot's audit key -> the key its client seals its own trees and previous
    /// snapshots with in its cache (never stored in the repository).
    pub const WRITE_ONLY_CACHE: &str = "cairn v3 2026-12-05 write-only client cache";
    /// A write-only slot's audit key -> the MAC key of the snapshots it writes (payload
    /// version 2), which full keys check to know the snapshot's writer.
    pub const SNAPSHOT_WRITER: &str = "cairn v3 2026-12-05 write-only snapshot writer mac";
}

/// BLAKE3 `derive_key(context, material)` as a zeroizing key.
pub fn derive(context: &str, material: &[u8]) -> Key32 {
    Key32::from_bytes(blake3::derive_key(context, material))
}

/// Argon2id cost parameters, stored in each password slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Argon2Params {
    /// Memory in KiB.
    pub m_kib: u32,
    /// Iterations.
    pub t: u32,
    /// Lanes.
    pub p: u32,
}

impl Argon2Params {
    /// The floor accepted when opening or creating a slot: weaker settings are refused so a
    /// tampered slot cannot downgrade the KDF to nothing.
    pub const MIN: Argon2Params = Argon2Params { m_kib: 8 * 1024, t: 1, p: 1 };
    /// The ceiling accepted when opening, so a slot planted by the storage cannot exhaust
    /// memory: 1 GiB, 16 times the default.
    pub const MAX_M_KIB: u32 = 1024 * 1024;
    /// The most iterations accepted (calibration picks at most 16 at 64 MiB), so a planted
    /// slot cannot make one attempt take minutes.
    pub const MAX_T: u32 = 16;
    /// The most lanes accepted.
    pub const MAX_P: u32 = 8;

    /// Checks the parameters are within the accepted range.
    pub fn validate(&self) -> Result<()> {
        if self.m_kib < Self::MIN.m_kib
            || self.m_kib > Self::MAX_M_KIB
            || self.t == 0
            || self.t > Self::MAX_T
            || self.p == 0
            || self.p > Self::MAX_P
        {
            return Err(Error::InvalidInput(format!(
                "Argon2id parameters out of range: m={} KiB t={} p={} (accepted: m {}..={} KiB, t 1..={}, p 1..={})",
                self.m_kib,
                self.t,
                self.p,
                Self::MIN.m_kib,
                Self::MAX_M_KIB,
                Self::MAX_T,
                Self::MAX_P
            )));
        }
        Ok(())
    }
}

/// Argon2id(password, salt) -> 32-byte key.
pub fn argon2id(password: &[u8], salt: &[u8], params: Argon2Params) -> Result<Key32> {
    params.validate()?;
    let p = argon2::Params::new(params.m_kib, params.t, params.p, Some(32))
        .map_err(|e| Error::InvalidInput(format!("Argon2id parameters: {e}")))?;
    let a = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, p);
    let mut out = [0u8; 32];
    a.hash_password_into(password, salt, &mut out).map_err(|e| Error::InvalidInput(format!("Argon2id: {e}")))?;
    let key = Key32::from_bytes(out);
    zeroize::Zeroize::zeroize(&mut out);
    Ok(key)
}
