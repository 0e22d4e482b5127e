//! Who created each lock, so an identity that may only append can refresh and remove its own
//! locks and no one else's. The record lives in the repository's storage beside the lock
//! (`server/lock-owners/ID`, a directory no client can name: the server refuses every name
//! outside SPEC §3), so every instance of a scaled-out server sees the same owners.

use std::sync::Arc;

use cairn_format::error::{Error, Result};
use cairn_format::names::Dir;
use cairn_storage::{PutMode, Storage};

/// The owner record of lock `lock` (a `locks/ID` name).
fn record_name(lock: &str) -> Option<String> {
    Dir::Locks.file_of(lock).map(|id| format!("server/lock-owners/{id}"))
}

/// How a claim was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// This request wrote the record (and removes it if creating the lock fails).
    New,
    /// The record was there already, naming the same identity (an earlier attempt of the
    /// same create whose answer was lost): left alone whatever happens.
    Earlier,
}

/// Records `identity` as the creator of `lock`, before the lock is created: a lock never
/// exists without its owner, so a server killed between the two leaves at most a record of a
/// lock that never was. The record is written create-only, so two creates racing cannot both
/// own it; refused when the lock exists already or another identity holds the record.
pub fn claim(storage: &Arc<dyn Storage>, lock: &str, identity: &str) -> Result<Claim> {
    let record = record_name(lock).ok_or_else(|| Error::InvalidInput(format!("{lock} is not a lock")))?;
    if storage.stat(lock)?.is_some() {
        return Err(exists(lock));
    }
    match storage.put(&record, identity.as_bytes(), PutMode::CreateNew) {
        Ok(()) => Ok(Claim::New),
        Err(Error::Storage { source, .. }) if source.kind() == std::io::ErrorKind::AlreadyExists => {
            if owns(storage, lock, identity)? { Ok(Claim::Earlier) } else { Err(exists(lock)) }
        }
        Err(e) => Err(e),
    }
}

/// Removes the record of `lock` (after the lock is gone, or when creating it failed).
pub fn release(storage: &Arc<dyn Storage>, lock: &str) -> Result<()> {
    match record_name(lock) {
        Some(record) => storage.delete(&record),
        None => Ok(()),
    }
}

/// Whether `identity` created `lock`.
pub fn owns(storage: &Arc<dyn Storage>, lock: &str, identity: &str) -> Result<bool> {
    let Some(record) = record_name(lock) else { return Ok(false) };
    match storage.get_bounded(&record, 4096) {
        Ok(owner) => Ok(owner == identity.as_bytes()),
        Err(Error::Missing(_)) => Ok(false),
        Err(e) => Err(e),
    }
}

fn exists(name: &str) -> Error {
    Error::Storage {
        op: "write",
        object: name.to_string(),
        retryable: false,
        source: std::io::Error::new(std::io::ErrorKind::AlreadyExists, "the object exists"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCK: &str = "locks/0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn the_creator_owns_its_lock_and_no_one_claims_an_existing_one() {
        let storage: Arc<dyn Storage> = Arc::new(cairn_storage::MemStorage::new());
        assert_eq!(claim(&storage, LOCK, "web1").unwrap(), Claim::New);
        assert_eq!(claim(&storage, LOCK, "web1").unwrap(), Claim::Earlier, "a retry of the same create");
        let racing = claim(&storage, LOCK, "web2");
        assert!(racing.is_err(), "another identity cannot take over a claim in progress");
        storage.put(LOCK, b"lock", PutMode::CreateNew).unwrap();
        assert!(owns(&storage, LOCK, "web1").unwrap());
        assert!(!owns(&storage, LOCK, "web2").unwrap());
        assert!(claim(&storage, LOCK, "web2").is_err(), "the lock exists: web2 cannot become its owner");
        assert!(owns(&storage, LOCK, "web1").unwrap());
        release(&storage, LOCK).unwrap();
        assert!(!owns(&storage, LOCK, "web1").unwrap());
        assert!(claim(&storage, "snapshots/x", "web1").is_err());
    }
}
