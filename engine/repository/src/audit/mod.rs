//! The tamper-evident audit log: every operation that changes the repository or uses a key
//! appends a sealed, MACed, hash-chained entry under `audit/`. `verify` proves the chain is whole
//! (no entry removed, altered or reordered), reports forks left by concurrent writers, checks
//! the snapshots in the repository against the snapshots the log says were made and deleted,
//! and compares the log with the newest entry this client has seen (a rollback of the whole
//! `audit/` directory shows as a log that went backwards).

use std::collections::BTreeSet;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::crypto::{Key32, context, derive};
use crate::error::{Error, Result};
use crate::format::audit::{AuditEntry, MAC_LEN, entry_name, parse_entry_name};
use crate::format::envelope::{self, ObjectKind};
use crate::format::names::Dir;
use crate::format::now_ns;
use crate::format::sealer::Sealer;
use crate::id::ObjectId;
use crate::keys::{Keyring, WriteKit};
use crate::repo::Repository;
use crate::storage::{PutMode, Storage};

mod verify;
mod write_only;

pub use verify::LoggedSnapshots;
use verify::{verify_chain, verify_snapshots};

/// The `outcome` of an entry written before an operation deletes or writes snapshots: its
/// `snapshots_deleted` lists what the operation is about to delete, its `snapshots_created` the
/// snapshot about to be written. The operation's own entry follows with the outcome; one killed
/// in between leaves the intent, so the snapshots it deleted are never taken for snapshots the
/// storage hides, nor the one it wrote for one the storage planted.
pub const INTENT: &str = "intent";

/// Who runs an operation.
#[derive(Debug, Clone, Default)]
pub struct Actor {
    /// Host name.
    pub host: String,
    /// User name.
    pub user: String,
}

/// What an operation did, as recorded.
#[derive(Debug, Clone, Default)]
pub struct AuditRecord {
    /// Operation name.
    pub operation: String,
    /// `ok`, `partial`, `failed: ...`, or [`INTENT`] for an entry written before the operation.
    pub outcome: String,
    /// Snapshots written.
    pub snapshots_created: Vec<ObjectId>,
    /// Snapshots deleted.
    pub snapshots_deleted: Vec<ObjectId>,
    /// Packs written.
    pub packs_created: u64,
    /// Packs deleted.
    pub packs_deleted: u64,
    /// Slots added or rewritten.
    pub slots_created: Vec<ObjectId>,
    /// Slots removed.
    pub slots_removed: Vec<ObjectId>,
    /// Free text.
    pub detail: String,
}

impl AuditRecord {
    /// A successful `operation` with nothing else recorded yet.
    pub fn new(operation: &str) -> Self {
        AuditRecord { operation: operation.to_string(), outcome: "ok".into(), ..Default::default() }
    }
}

/// One entry read back from the repository.
#[derive(Debug, Clone)]
pub struct LoadedEntry {
    /// Object name.
    pub name: String,
    /// Its MAC (the chain link).
    pub mac: [u8; MAC_LEN],
    /// The entry.
    pub entry: AuditEntry,
    /// Whether a write-only slot wrote it (MACed with its slot's audit key).
    pub write_only: bool,
}

/// The log as read: authentic entries, and what could not be read.
#[derive(Debug, Default)]
pub struct AuditLog {
    /// Entries that authenticate, by sequence number then name.
    pub entries: Vec<LoadedEntry>,
    /// Entries that failed to read or authenticate.
    pub problems: Vec<String>,
}

/// What `verify` found.
#[derive(Debug, Default, Serialize)]
pub struct AuditReport {
    /// Entries that authenticate.
    pub entries: usize,
    /// The highest sequence number.
    pub head_seq: Option<u64>,
    /// Forks left by concurrent writers (each branch verified).
    pub forks: Vec<String>,
    /// Operations that announced what they would write and never logged their end: a crash,
    /// not tampering (what they wrote is checked like anything else).
    pub interrupted: Vec<String>,
    /// Everything that shows tampering or loss.
    pub problems: Vec<String>,
}

impl AuditReport {
    /// Whether the log is whole and agrees with the repository.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

fn mac_key(keyring: &Keyring) -> Key32 {
    derive(context::AUDIT_MAC, keyring.audit_key().expose())
}

fn mac_of(keyring: &Keyring, body: &[u8]) -> [u8; MAC_LEN] {
    *blake3::keyed_hash(mac_key(keyring).expose(), body).as_bytes()
}

/// The MAC key of entries written through the write-only slot whose audit key (SPEC §7.6,
/// AUDIT_SLOT) is `slot_audit_key`: full keys derive it for any slot, a write-only slot's
/// holder only for its own.
fn write_only_mac_key(slot_audit_key: &Key32) -> Key32 {
    derive(context::AUDIT_MAC, slot_audit_key.expose())
}

/// What an entry is MACed and sealed with: the repository's audit key and data key, or a
/// write-only slot's audit key and the reader key.
pub(crate) struct Signer {
    mac_key: Key32,
    sealer: Sealer,
}

impl Signer {
    /// A full key's.
    pub(crate) fn full(keyring: &Keyring) -> Self {
        let (epoch, key) = keyring.current();
        Signer { mac_key: mac_key(keyring), sealer: Sealer::Key { epoch, key: key.clone() } }
    }

    /// A write-only slot's (its kit's).
    pub(crate) fn write_only(kit: &WriteKit) -> Result<Self> {
        Ok(Signer { mac_key: write_only_mac_key(kit.audit_key()), sealer: Sealer::Reader(kit.sealer()?) })
    }
}

/// The highest sequence number an entry may have. A log grows by one level per operation: no
/// repository comes near 2^40 (a thousand operations a second for 34 years). A name beyond it
/// was planted (or forged by a key holder) to make readers walk or list the levels below it;
/// such entries are not part of the log, and `verify` reports them.
pub const MAX_SEQ: u64 = 1 << 40;

/// Entries above the top that fail to authenticate that an append reads through before giving
/// up: each costs one read, and a storage planting junk names must not make an append endless.
const MAX_JUNK_AT_TOP: usize = 1000;

/// Names of the entries in storage with their (seq, mac), sorted; names with an absurd
/// sequence number (above [`MAX_SEQ`]) left out.
fn list_entries(storage: &dyn Storage) -> Result<Vec<(u64, [u8; MAC_LEN], String)>> {
    let mut out: Vec<_> = storage
        .list(Dir::Audit.prefix())?
        .into_iter()
        .filter_map(|name| parse_entry_name(&name).map(|(seq, mac)| (seq, mac, name)))
        .filter(|(seq, _, _)| *seq <= MAX_SEQ)
        .collect();
    out.sort();
    Ok(out)
}

/// The refusal for an entry sealed under a key epoch newer than `keyring`'s newest: written
/// through a slot an unfinished rotation already moved. A client whose slot it has not moved
/// cannot follow the log past it, and must not write beside it (under the old keys).
fn sealed_under_newer_keys(storage: &dyn Storage, keyring: &Keyring, name: &str) -> Option<Error> {
    let sealed = storage.get_bounded(name, crate::format::MAX_SMALL_OBJECT).ok()?;
    let epoch = envelope::epoch_of(&sealed, name).ok()?;
    (epoch > keyring.current().0).then(|| {
        Error::InvalidInput(format!(
            "a key rotation did not finish: audit entry {name} is sealed under key epoch {epoch}, newer than the keys \
             the slot in use opens. Nothing was written. Finish the rotation with `cairn key rotate` opened through a \
             slot that opens the newest keys (`cairn key list` marks the others as not current)"
        ))
    })
}

/// The newest level of the log that holds entries which authenticate, and their MACs: what the
/// next entry follows. Levels above it hold only objects that do not authenticate (damaged, or
/// planted by the storage); they are skipped, so one bad object cannot stop every writer, and
/// `verify` reports them. `None` for a log with no authentic entry.
fn authentic_top(
    storage: &dyn Storage,
    keyring: &Keyring,
    existing: &[(u64, [u8; MAC_LEN], String)],
) -> Result<Option<(u64, Vec<[u8; MAC_LEN]>)>> {
    let mut skipped = 0usize;
    let mut rest = existing;
    while let Some(&(seq, _, _)) = rest.last() {
        let (below, level) = rest.split_at(rest.partition_point(|(s, _, _)| *s < seq));
        let mut macs = Vec::new();
        for (_, mac, name) in level {
            match read_entry(storage, keyring, name) {
                Ok(_) => macs.push(*mac),
                Err(e @ Error::Storage { .. }) => return Err(e),
                Err(_) if let Some(refusal) = sealed_under_newer_keys(storage, keyring, name) => return Err(refusal),
                Err(_) => {
                    skipped += 1;
                    if skipped > MAX_JUNK_AT_TOP {
                        return Err(Error::corrupt(
                            Dir::Audit.prefix(),
                            format!(
                                "more than {MAX_JUNK_AT_TOP} entries at the top of the audit log do not authenticate \
                                 (planted or damaged); `cairn audit verify` lists them"
                            ),
                        ));
                    }
                }
            }
        }
        if !macs.is_empty() {
            return Ok(Some((seq, macs)));
        }
        rest = below;
    }
    Ok(None)
}

/// Appends an entry with the storage and keyring directly (init has no `Repository` yet).
/// `cache_dir` remembers the newest entry this client wrote, for rollback detection.
pub fn append_raw(
    storage: &dyn Storage,
    keyring: &Keyring,
    slot: ObjectId,
    actor: &Actor,
    record: &AuditRecord,
    cache_dir: Option<&Path>,
) -> Result<u64> {
    // The remembered head is read before the listing: another process sharing this cache may
    // append (and remember its entry) at any time, and a head newer than the listing would
    // look like a rollback.
    let head = cache_dir.and_then(cached_head);
    let existing = list_entries(storage)?;
    let top = authentic_top(storage, keyring, &existing)?;
    if let Some(dir) = cache_dir {
        check_not_rolled_back(storage, keyring, &existing, top.as_ref().map(|(s, _)| *s), dir, head)?;
    }
    let (seq, prev) = match top {
        None => (0, Vec::new()),
        Some((top, heads)) => (top + 1, heads),
    };
    append_at(storage, &Signer::full(keyring), slot, actor, record, (seq, prev), cache_dir)
}

/// Writes the entry at `seq` after `prev`, merges a fork a concurrent writer made at the same
/// level, and remembers the newest entry in `cache_dir`.
fn append_at(
    storage: &dyn Storage,
    signer: &Signer,
    slot: ObjectId,
    actor: &Actor,
    record: &AuditRecord,
    (seq, prev): (u64, Vec<[u8; MAC_LEN]>),
    cache_dir: Option<&Path>,
) -> Result<u64> {
    let mac = write_entry(storage, signer, slot, actor, record, seq, prev)?;
    // A sibling at the same sequence number means another writer appended concurrently: merge
    // the fork right away so no branch is left dangling.
    let siblings: Vec<[u8; MAC_LEN]> =
        list_entries(storage)?.into_iter().filter(|(s, _, _)| *s == seq).map(|(_, m, _)| m).collect();
    let (mut last_seq, mut last_mac) = (seq, mac);
    if siblings.len() > 1 {
        let merge = AuditRecord {
            detail: format!("{} concurrent entries at seq {seq}", siblings.len()),
            ..AuditRecord::new("merge")
        };
        last_seq = seq.saturating_add(1);
        last_mac = write_entry(storage, signer, slot, actor, &merge, last_seq, siblings)?;
    }
    if let Some(dir) = cache_dir {
        remember_head(dir, last_seq, &last_mac);
    }
    Ok(seq)
}

/// Refuses a log that no longer holds the newest entry this client remembered (from `dir`), or
/// whose chain from its newest entries down to that entry's level is cut (an entry names a
/// predecessor that is gone): entries were deleted, a rollback the next append would otherwise
/// paper over. The remembered entry need not be an ancestor of the newest ones: two writers
/// racing can leave it on a fork branch nobody merged, which `verify` reports as a fork. Reads
/// the entries appended since this client's last one; a client that remembers nothing checks
/// nothing.
fn check_not_rolled_back(
    storage: &dyn Storage,
    keyring: &Keyring,
    existing: &[(u64, [u8; MAC_LEN], String)],
    top: Option<u64>,
    dir: &Path,
    head: Option<Head>,
) -> Result<()> {
    let Some(head) = head else { return Ok(()) };
    let rolled_back = |why: String| {
        Error::RolledBack(format!(
            "this client last saw audit entry {} at seq {}, but {why}: entries (and what they logged) were deleted \
             or replaced. Nothing was written. `cairn audit verify` shows the log; if you know why (a repository \
             restored from an older copy), remove {} to accept the log as it is",
            head.mac.get(..12).unwrap_or_default(),
            head.seq,
            dir.join(HEAD_FILE).display()
        ))
    };
    let Some(top) = top else {
        return Err(rolled_back("the repository's audit log holds no entry that authenticates".into()));
    };
    if !existing.iter().any(|(s, m, _)| *s == head.seq && hex::encode(m) == head.mac) {
        return Err(rolled_back(format!("the repository's log (ending at seq {top}) no longer holds it")));
    }
    // Walk down from every newest entry along `prev` to the remembered level: every link must
    // name an entry that is there. Each level read is one the links reach, so the walk ends at
    // the first level a link misses, however far above the remembered entry the top claims to be.
    let mut reachable: BTreeSet<[u8; MAC_LEN]> =
        existing.iter().filter(|(s, _, _)| *s == top).map(|(_, m, _)| *m).collect();
    for seq in (head.seq.saturating_add(1)..=top).rev() {
        if reachable.is_empty() {
            return Err(rolled_back(format!(
                "the chain above it stops at seq {seq}: an entry there names no predecessor"
            )));
        }
        let mut below = BTreeSet::new();
        for (_, _, name) in existing.iter().filter(|(s, m, _)| *s == seq && reachable.contains(m)) {
            let entry = read_entry(storage, keyring, name).map_err(|e| {
                // Sealed under an epoch newer than this keyring's: written through a slot that
                // an unfinished rotation already moved, not a rollback. Refused all the same
                // (the chain cannot be followed), with the way out.
                sealed_under_newer_keys(storage, keyring, name)
                    .unwrap_or_else(|| rolled_back(format!("entry {name} above it cannot be read ({e})")))
            })?;
            below.extend(entry.entry.prev.iter().copied());
        }
        let below_seq = seq - 1;
        if let Some(gone) = below.iter().find(|m| !existing.iter().any(|(s, em, _)| *s == below_seq && em == *m)) {
            return Err(rolled_back(format!(
                "an entry after it names entry {} at seq {below_seq}, which is gone",
                hex::encode(gone).get(..12).unwrap_or_default()
            )));
        }
        reachable = below;
    }
    Ok(())
}

fn write_entry(
    storage: &dyn Storage,
    signer: &Signer,
    slot: ObjectId,
    actor: &Actor,
    record: &AuditRecord,
    seq: u64,
    prev: Vec<[u8; MAC_LEN]>,
) -> Result<[u8; MAC_LEN]> {
    let ids = |v: &[ObjectId]| v.iter().map(|i| *i.as_bytes()).collect::<Vec<_>>();
    let entry = AuditEntry {
        seq,
        prev,
        time_ns: now_ns(),
        host: actor.host.clone(),
        user: actor.user.clone(),
        slot: *slot.as_bytes(),
        operation: record.operation.clone(),
        outcome: record.outcome.clone(),
        snapshots_created: ids(&record.snapshots_created),
        snapshots_deleted: ids(&record.snapshots_deleted),
        packs_created: record.packs_created,
        packs_deleted: record.packs_deleted,
        slots_created: ids(&record.slots_created),
        slots_removed: ids(&record.slots_removed),
        detail: record.detail.clone(),
    };
    let mut plain = entry.encode();
    let mac = *blake3::keyed_hash(signer.mac_key.expose(), &plain).as_bytes();
    plain.extend_from_slice(&mac);
    let name = entry_name(seq, &mac);
    let sealed = signer.sealer.seal(ObjectKind::Audit, name.as_bytes(), &plain)?;
    storage.put(&name, &sealed, PutMode::CreateNew)?;
    Ok(mac)
}

/// Reads one entry and checks its MAC, its name and its sealing.
pub fn read_entry(storage: &dyn Storage, keyring: &Keyring, name: &str) -> Result<LoadedEntry> {
    let (seq, name_mac) = parse_entry_name(name).ok_or_else(|| Error::corrupt(name, "not an audit entry name"))?;
    let sealed = storage.get_bounded(name, crate::format::MAX_SMALL_OBJECT)?;
    let mut to_reader = false;
    let plain = envelope::open_sealed(&sealed, ObjectKind::Audit, name.as_bytes(), name, |to| {
        to_reader = matches!(to, envelope::SealedTo::Reader { .. });
        keyring.open_key(ObjectKind::Audit, to, name)
    })?;
    let (entry, mac, body) = AuditEntry::decode_with_mac(&plain, name)?;
    if mac != name_mac {
        return Err(Error::corrupt(name, "audit entry MAC does not match"));
    }
    // Sealed to the reader, it can only be a write-only slot's (held to what such entries may
    // say): anyone with a reader public key seals one, so a full key's MAC there proves
    // nothing about who wrote it.
    let write_only = to_reader || mac_of(keyring, &body) != mac;
    if write_only {
        let key = write_only_mac_key(&keyring.slot_audit_key(ObjectId(entry.slot)));
        if *blake3::keyed_hash(key.expose(), &body).as_bytes() != mac {
            return Err(Error::corrupt(name, "audit entry MAC does not match"));
        }
        write_only::check_claims(&entry, name)?;
    }
    if entry.seq != seq {
        return Err(Error::corrupt(name, format!("entry claims seq {} but is stored as {seq}", entry.seq)));
    }
    Ok(LoadedEntry { name: name.to_string(), mac, entry, write_only })
}

/// Reads every entry; failures are collected, not fatal.
pub fn read_log(storage: &dyn Storage, keyring: &Keyring) -> Result<AuditLog> {
    let mut log = AuditLog::default();
    for name in storage.list(Dir::Audit.prefix())? {
        let Some((seq, _)) = parse_entry_name(&name) else {
            log.problems.push(format!("{name}: not an audit entry name (a foreign or renamed object)"));
            continue;
        };
        if seq > MAX_SEQ {
            log.problems.push(format!(
                "{name}: a sequence number beyond any log's ({MAX_SEQ}): planted or forged, not part of the log"
            ));
            continue;
        }
        match read_entry(storage, keyring, &name) {
            Ok(e) => log.entries.push(e),
            Err(e) => log.problems.push(format!("{name}: cannot be read or does not authenticate ({e})")),
        }
    }
    log.entries.sort_by(|a, b| (a.entry.seq, &a.name).cmp(&(b.entry.seq, &b.name)));
    Ok(log)
}

#[derive(Debug, Serialize, Deserialize)]
struct Head {
    seq: u64,
    mac: String,
}

const HEAD_FILE: &str = "audit-head.json";

fn cached_head(dir: &Path) -> Option<Head> {
    serde_json::from_slice(&std::fs::read(dir.join(HEAD_FILE)).ok()?).ok()
}

/// Records the newest entry seen. Callers pass only an entry that descends from the one
/// remembered before (they checked, or wrote it on top of a checked log). Best effort: a client
/// that cannot write its cache only loses the rollback check. Processes sharing the cache may
/// race here: each writes its own temporary file, and an entry below the one remembered does
/// not replace it.
fn remember_head(dir: &Path, seq: u64, mac: &[u8; MAC_LEN]) {
    let head = Head { seq, mac: hex::encode(mac) };
    if cached_head(dir).is_some_and(|h| h.seq > seq) {
        return;
    }
    if std::fs::create_dir_all(dir).is_ok()
        && let Ok(bytes) = serde_json::to_vec(&head)
    {
        let tmp = dir.join(format!("{HEAD_FILE}.{}.tmp", std::process::id()));
        if std::fs::write(&tmp, bytes).is_ok() {
            let _ = std::fs::rename(&tmp, dir.join(HEAD_FILE));
        }
    }
}

impl Repository {
    /// Refuses with [`Error::RolledBack`] when the audit log lost the newest entry this client
    /// saw, or its newest entries do not descend from it. Commands call it before they change
    /// anything; [`Repository::audit`] checks again before appending.
    pub fn check_not_rolled_back(&self) -> Result<()> {
        let storage = self.storage().as_ref();
        let head = cached_head(self.cache_dir());
        let existing = list_entries(storage)?;
        if self.is_write_only() {
            return write_only::check_own_entry_listed(&existing, self.cache_dir(), head);
        }
        let top = authentic_top(storage, self.keyring()?, &existing)?.map(|(s, _)| s);
        check_not_rolled_back(storage, self.keyring()?, &existing, top, self.cache_dir(), head)
    }

    /// Appends an audit entry for an operation run through this repository handle.
    pub fn audit(&self, actor: &Actor, record: &AuditRecord) -> Result<u64> {
        self.check_key_not_rotated()?;
        if let Some(kit) = self.write_kit_in_use() {
            return write_only::append(self.storage().as_ref(), kit, actor, record, self.cache_dir());
        }
        append_raw(self.storage().as_ref(), self.keyring()?, self.opened_with(), actor, record, Some(self.cache_dir()))
    }

    /// Writes an authentic entry at `seq` following `prev`, as only a key holder can (a
    /// malicious or revoked one, or a bug): for tests of what readers do with such entries.
    /// Returns the entry's name.
    #[cfg(feature = "test-vectors")]
    pub fn forge_audit_entry(&self, seq: u64, prev: Vec<[u8; MAC_LEN]>, record: &AuditRecord) -> Result<String> {
        let actor = Actor { host: "forger".into(), user: "forger".into() };
        let signer = Signer::full(self.keyring()?);
        let mac = write_entry(self.storage().as_ref(), &signer, self.opened_with(), &actor, record, seq, prev)?;
        Ok(entry_name(seq, &mac))
    }

    /// Reads the whole log.
    pub fn audit_log(&self) -> Result<AuditLog> {
        read_log(self.storage().as_ref(), self.keyring()?)
    }

    /// Problems of the chain alone (unreadable or altered entries, gaps, broken links), without
    /// the snapshot cross-check or the rollback check: what `check` reports.
    pub fn audit_chain_problems(&self) -> Result<Vec<String>> {
        let log = self.audit_log()?;
        let mut report = AuditReport { entries: log.entries.len(), ..Default::default() };
        report.problems.extend(log.problems.iter().cloned());
        verify_chain(&log, &mut report);
        Ok(report.problems)
    }

    /// Snapshots the audit log says exist (made, and neither deleted nor named by an intent to
    /// delete) that the listing of `snapshots/` does not show, sorted: hidden by the storage,
    /// not yet visible in a lagging listing, or deleted behind the tool's back.
    pub fn missing_snapshots(&self) -> Result<Vec<ObjectId>> {
        let present: BTreeSet<ObjectId> = self.snapshot_ids()?.into_iter().collect();
        Ok(self.audit_log()?.snapshots().missing(&present))
    }

    /// Records in the audit log that the snapshots `ids`, which the log says exist but storage
    /// no longer shows, are gone for good (an entry `accept missing` deleting them), so prune
    /// runs again. Refuses ids that are not missing: a snapshot present is removed with
    /// `forget`. Data a wrongly accepted snapshot used stays stored until a prune after the
    /// grace period finds it still unused.
    pub fn accept_missing(&self, actor: &Actor, ids: &[ObjectId]) -> Result<()> {
        let missing = self.missing_snapshots()?;
        if let Some(id) = ids.iter().find(|id| !missing.contains(id)) {
            return Err(Error::InvalidInput(format!(
                "snapshot {} is not one the audit log misses; only missing snapshots can be accepted as gone",
                id.short()
            )));
        }
        let record = AuditRecord {
            snapshots_deleted: ids.to_vec(),
            detail: format!("{} snapshot(s) the log says exist accepted as gone by the user", ids.len()),
            ..AuditRecord::new("accept missing")
        };
        self.audit(actor, &record)?;
        Ok(())
    }

    /// Verifies the log and cross-checks it with the snapshots present and with the newest
    /// entry this client saw before.
    pub fn audit_verify(&self) -> Result<AuditReport> {
        let log = self.audit_log()?;
        let mut report = AuditReport { entries: log.entries.len(), ..Default::default() };
        report.problems.extend(log.problems.iter().cloned());
        verify_chain(&log, &mut report);
        let present: BTreeSet<ObjectId> = self.snapshot_ids()?.into_iter().collect();
        verify_snapshots(&log, &present, &mut report);
        if let Err(e) = self.check_not_rolled_back() {
            report.problems.push(format!("the audit log went backwards: {e}"));
        }
        if report.is_ok()
            && let Some(last) = log.entries.last()
        {
            remember_head(self.cache_dir(), last.entry.seq, &last.mac);
        }
        Ok(report)
    }
}
