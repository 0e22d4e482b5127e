//! Audit entries written through a write-only slot (SPEC §7.6, §14). Such a client reads no
//! entry: it MACs its own with its slot's audit key, seals them to the reader key, and chains
//! them on the names at the newest level of the listing (a name carries the entry's sequence
//! number and MAC), which it cannot authenticate. Full keys verify what it wrote and that it
//! recorded nothing but snapshots ([`check_claims`]). Its rollback check is
//! what names allow: the newest entry it wrote itself must still be listed.

use super::*;

/// Most entries of the newest level a write-only entry names as its predecessors: the storage
/// could list any number of names there, and an entry must stay small. Levels that wide come
/// only from planted names, which `verify` reports either way.
const MAX_PREV: usize = 64;

/// Appends `record` through write-only slot `kit` on top of the newest level listed.
pub(super) fn append(
    storage: &dyn Storage,
    kit: &WriteKit,
    actor: &Actor,
    record: &AuditRecord,
    cache_dir: &Path,
) -> Result<u64> {
    let head = cached_head(cache_dir);
    let existing = list_entries(storage)?;
    check_own_entry_listed(&existing, cache_dir, head)?;
    // A name at the highest sequence number a log may have was planted: following it, this
    // entry would fall outside the log. (`existing` is sorted by sequence number.)
    let (seq, prev) = match existing.iter().rfind(|(s, _, _)| *s < MAX_SEQ) {
        None => (0, Vec::new()),
        Some(&(top, _, _)) => {
            let heads = existing.iter().filter(|(s, _, _)| *s == top).map(|(_, m, _)| *m).take(MAX_PREV).collect();
            (top.saturating_add(1), heads)
        }
    };
    append_at(storage, &Signer::write_only(kit)?, kit.slot(), actor, record, (seq, prev), Some(cache_dir))
}

/// Refuses a log that no longer lists the newest entry this client wrote (remembered in
/// `dir`): entries were deleted or the log rolled back.
pub(super) fn check_own_entry_listed(
    existing: &[(u64, [u8; MAC_LEN], String)],
    dir: &Path,
    head: Option<Head>,
) -> Result<()> {
    let Some(head) = head else { return Ok(()) };
    if existing.iter().any(|(s, m, _)| *s == head.seq && hex::encode(m) == head.mac) {
        return Ok(());
    }
    Err(Error::RolledBack(format!(
        "this client wrote audit entry {} at seq {}, and the repository's log no longer lists it: entries (and what \
         they logged) were deleted or rolled back. Nothing was written. Ask whoever holds a full key to run `cairn \
         audit verify`; if you know why (a repository restored from an older copy), remove {} to accept the log as it \
         is",
        head.mac.get(..12).unwrap_or_default(),
        head.seq,
        dir.join(HEAD_FILE).display()
    )))
}

/// Refuses an entry written through a write-only slot that records more than such a slot can
/// do (add snapshots, and log that it did): a stolen write-only slot must not forge the record
/// of a deletion, of key changes or of snapshots accepted as gone.
pub(super) fn check_claims(entry: &AuditEntry, name: &str) -> Result<()> {
    let allowed = match entry.operation.as_str() {
        "snapshot" | "save snapshot" => true,
        "merge" => entry.snapshots_created.is_empty() && entry.packs_created == 0,
        _ => false,
    };
    if !allowed
        || !entry.snapshots_deleted.is_empty()
        || !entry.slots_created.is_empty()
        || !entry.slots_removed.is_empty()
        || entry.packs_deleted != 0
    {
        return Err(Error::corrupt(
            name,
            format!(
                "an entry MACed by write-only slot {} records `{}` with deletions or key changes, which only a full key \
                 can do: forged with a stolen write-only slot",
                ObjectId(entry.slot).short(),
                entry.operation
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::*;
    use crate::storage::MemStorage;

    #[test]
    fn an_entry_sealed_to_the_reader_with_a_full_keys_mac_is_refused() {
        let slot = ObjectId([2; 32]);
        let ring = Keyring::generate(ObjectId([1; 32]))
            .unwrap()
            .with_write_only_slot(slot, &[9; 32], Key32::from_bytes([3; 32]))
            .unwrap();
        let kit = ring.write_kit(slot, b"config").unwrap();
        let storage = MemStorage::new();
        let actor = Actor { host: "h".into(), user: "u".into() };
        // A deletion, MACed as a full key's (a revoked full key holds K_audit), sealed to the
        // reader (which any kit can do).
        let record = AuditRecord { snapshots_deleted: vec![ObjectId([4; 32])], ..AuditRecord::new("forget") };
        let forged = Signer { mac_key: mac_key(&ring), sealer: Sealer::Reader(kit.sealer().unwrap()) };
        let mac = write_entry(&storage, &forged, slot, &actor, &record, 0, Vec::new()).unwrap();
        match read_entry(&storage, &ring, &entry_name(0, &mac)) {
            Err(Error::Corrupt { .. }) => {}
            other => panic!("a reader-sealed entry passed for a full key's: {other:?}"),
        }
        // Under a data key, the same entry is a full key's.
        let mac = write_entry(&storage, &Signer::full(&ring), slot, &actor, &record, 0, Vec::new()).unwrap();
        assert!(!read_entry(&storage, &ring, &entry_name(0, &mac)).unwrap().write_only);
    }
}
