//! Spec: format-spec/SPEC.md#audit-log
//!
//! An audit entry records one operation on the repository. Entries form a hash chain: each names
//! the MACs of the entries at the previous sequence number (normally one; several when
//! concurrent writers forked the chain and this entry merges them). The MAC is a keyed BLAKE3
//! over the entry's plaintext under a key derived from K_audit, so it survives re-sealing the
//! entry under a newer data-key epoch. Stored plaintext: `0x01 || postcard(AuditEntry) || mac`.

use serde::{Deserialize, Serialize};

use crate::codec::{decode_versioned, encode_versioned};
use crate::error::{Error, Result};

/// Payload version of audit entries.
pub const AUDIT_VERSION: u8 = 1;
/// Length of an entry MAC.
pub const MAC_LEN: usize = 32;

/// One audit entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct AuditEntry {
    /// Position in the chain; the genesis entry (init) is 0.
    pub seq: u64,
    /// MACs of the entries at `seq - 1` this entry follows (empty only for seq 0).
    pub prev: Vec<[u8; MAC_LEN]>,
    /// When, ns since the Unix epoch (the writer's clock).
    pub time_ns: i64,
    /// Host name of the writer.
    pub host: String,
    /// User name of the writer.
    pub user: String,
    /// The key slot that opened the repository.
    pub slot: [u8; 32],
    /// Operation (`init`, `snapshot`, `forget`, `key rotate`, ...).
    pub operation: String,
    /// `ok`, `partial`, or `failed: <why>`.
    pub outcome: String,
    /// Snapshots this operation wrote.
    pub snapshots_created: Vec<[u8; 32]>,
    /// Snapshots this operation deleted.
    pub snapshots_deleted: Vec<[u8; 32]>,
    /// Packs written.
    pub packs_created: u64,
    /// Packs deleted.
    pub packs_deleted: u64,
    /// Key slots added (or rewritten, for `key passwd`).
    pub slots_created: Vec<[u8; 32]>,
    /// Key slots removed.
    pub slots_removed: Vec<[u8; 32]>,
    /// Free text: arguments, epochs, counts.
    pub detail: String,
}

impl AuditEntry {
    /// The MAC input: the versioned encoding.
    pub fn encode(&self) -> Vec<u8> {
        encode_versioned(AUDIT_VERSION, self)
    }

    /// Splits stored plaintext into (entry, claimed MAC, MAC input).
    pub fn decode_with_mac(bytes: &[u8], object: &str) -> Result<(Self, [u8; MAC_LEN], Vec<u8>)> {
        if bytes.len() < 1 + MAC_LEN {
            return Err(Error::corrupt(object, "audit entry is too short"));
        }
        let (body, mac) = bytes.split_at(bytes.len() - MAC_LEN);
        let mac: [u8; MAC_LEN] = mac.try_into().map_err(|_| Error::corrupt(object, "bad MAC length"))?;
        let entry: AuditEntry = decode_versioned(body, AUDIT_VERSION, object)?;
        if entry.seq == 0 && !entry.prev.is_empty() {
            return Err(Error::corrupt(object, "genesis entry names a predecessor"));
        }
        if entry.seq > 0 && entry.prev.is_empty() {
            return Err(Error::corrupt(object, "entry names no predecessor"));
        }
        Ok((entry, mac, body.to_vec()))
    }
}

/// Object name of an entry: `audit/<seq, zero-padded to 12 digits>-<mac hex>`.
pub fn entry_name(seq: u64, mac: &[u8; MAC_LEN]) -> String {
    super::names::Dir::Audit.join(&format!("{seq:012}-{}", hex::encode(mac)))
}

/// Parses an entry name into (seq, mac); `None` for other names.
pub fn parse_entry_name(name: &str) -> Option<(u64, [u8; MAC_LEN])> {
    let rest = super::names::Dir::Audit.file_of(name)?;
    let (seq, mac) = rest.split_once('-')?;
    if !seq.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = seq.parse().ok()?;
    // Only the canonical spelling (at least 12 digits, no extra leading zeros) names an entry.
    if format!("{n:012}") != seq {
        return None;
    }
    // Lower-case hex only: one entry, one name (hex::decode also takes upper case).
    if !mac.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    let mac: [u8; MAC_LEN] = hex::decode(mac).ok()?.try_into().ok()?;
    Some((n, mac))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let mac = [7u8; 32];
        let name = entry_name(42, &mac);
        assert_eq!(parse_entry_name(&name), Some((42, mac)));
        assert_eq!(parse_entry_name("audit/42-00"), None);
        assert_eq!(parse_entry_name("snapshots/000000000042-00"), None);
    }

    #[test]
    fn an_entry_has_one_name() {
        // Found by the `audit` fuzz target: upper-case hex parsed to the same (seq, MAC), so a
        // copy under another spelling counted as a second head of the chain.
        let mac = [0x4b; 32];
        let name = entry_name(0, &mac);
        assert_eq!(parse_entry_name(&name), Some((0, mac)));
        assert_eq!(parse_entry_name(&name.to_uppercase().replace("AUDIT/", "audit/")), None);
        assert_eq!(parse_entry_name(&name.replacen("4b", "4B", 1)), None);
        assert_eq!(parse_entry_name(&name.replace("000000000000", "0000000000000")), None);
    }

    #[test]
    fn chain_rules_are_enforced_on_decode() {
        let mut e = AuditEntry { seq: 3, ..Default::default() };
        let mut bytes = e.encode();
        bytes.extend_from_slice(&[0u8; 32]);
        assert!(AuditEntry::decode_with_mac(&bytes, "x").unwrap_err().to_string().contains("no predecessor"));
        e.prev.push([1u8; 32]);
        let mut bytes = e.encode();
        bytes.extend_from_slice(&[9u8; 32]);
        let (back, mac, _) = AuditEntry::decode_with_mac(&bytes, "x").unwrap();
        assert_eq!((back, mac), (e, [9u8; 32]));
        assert!(AuditEntry::decode_with_mac(&[1, 2, 3], "x").is_err());
    }
}
