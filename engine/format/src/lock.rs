//! Spec: format-spec/SPEC.md#locks
//!
//! A lock names who holds the repository and how: shared (snapshot, restore, check) or
//! exclusive (forget, prune, key changes). The holder rewrites it while it works, so a lock
//! whose refresh time is old belongs to a process that died. `machine` says where its pid
//! means something: only a client with the same identity may judge the pid dead.

use serde::{Deserialize, Serialize};

use crate::codec::{decode_versioned, encode_versioned};
use crate::error::Result;

/// Payload version of a lock.
pub const LOCK_VERSION: u8 = 2;

/// A lock's plaintext.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockDoc {
    /// Exclusive (nobody else may hold any lock) or shared.
    pub exclusive: bool,
    /// What the holder is doing (`snapshot`, `prune`...).
    pub operation: String,
    /// Host name of the holder.
    pub hostname: String,
    /// User name of the holder.
    pub username: String,
    /// Process id of the holder on its host.
    pub pid: u32,
    /// When the lock was taken, ns since the epoch.
    pub created_ns: i64,
    /// When the holder last rewrote it, ns since the epoch.
    pub refreshed_ns: i64,
    /// The holder's machine identity (SPEC §13a): equal for processes that see the same pids.
    pub machine: [u8; 16],
}

impl LockDoc {
    /// Plaintext bytes.
    pub fn encode(&self) -> Vec<u8> {
        encode_versioned(LOCK_VERSION, self)
    }

    /// Parses plaintext bytes.
    pub fn decode(bytes: &[u8], object: &str) -> Result<Self> {
        decode_versioned(bytes, LOCK_VERSION, object)
    }

    /// "operation by user@host (pid N)", for messages.
    pub fn holder(&self) -> String {
        format!(
            "{} {} by {}@{} (pid {})",
            if self.exclusive { "exclusive" } else { "shared" },
            self.operation,
            self.username,
            self.hostname,
            self.pid
        )
    }
}
