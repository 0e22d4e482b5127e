//! What this client has seen of a repository, pinned in its cache directory (`pins.json`): the
//! repository identity (a hash of K_id, see [`crate::keys::RepoIdentity`]), the newest
//! data-key epoch with its key's fingerprint, and the keyring's revision. Refused before
//! anything is written: another identity (keys substituted), an older epoch or revision (the
//! keyring and slots served back from before a rotation, a slot removal or a password
//! change), and a pinned epoch whose key differs (a keyring forged by a revoked holder who
//! kept K_id but never had that epoch's key, or an epoch number reused by a rotation run from
//! a stale view).
//!
//! Pins are trust on first use: a client with an empty cache (a new machine, a deleted cache)
//! pins what it sees. The slot's own binding to the identity still holds without them.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::keys::Keyring;

const PINS_FILE: &str = "pins.json";

#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
struct Pins {
    /// Hex of the repository identity.
    identity: String,
    /// The newest data-key epoch seen.
    epoch: u32,
    /// Hex fingerprint of that epoch's key.
    fingerprint: String,
    /// The highest keyring revision seen.
    revision: u64,
}

fn cache_error(dir: &Path, why: String) -> Error {
    Error::Cache { path: dir.join(PINS_FILE), why }
}

fn read(dir: &Path) -> Result<Option<Pins>> {
    let path = dir.join(PINS_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| cache_error(dir, format!("unreadable ({e}); delete it to trust the repository as it is now"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(cache_error(dir, e.to_string())),
    }
}

fn write(dir: &Path, pins: &Pins) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| cache_error(dir, e.to_string()))?;
    let bytes = serde_json::to_vec(pins).map_err(|e| cache_error(dir, e.to_string()))?;
    let tmp = dir.join(format!("{PINS_FILE}.tmp-{}", std::process::id()));
    std::fs::write(&tmp, bytes).map_err(|e| cache_error(dir, e.to_string()))?;
    std::fs::rename(&tmp, dir.join(PINS_FILE)).map_err(|e| cache_error(dir, e.to_string()))
}

/// Checks `ring` against what this client pinned in `dir`, and pins what it holds now (epoch
/// and revision only ever move forwards). Errors: [`Error::KeysChanged`] when the identity
/// differs, the newest epoch or the revision is older, or the pinned epoch's key is not the
/// one this client saw; [`Error::Cache`] when the pins cannot be read or written.
pub fn check_and_pin(dir: &Path, ring: &Keyring) -> Result<()> {
    let identity = ring.identity().to_hex();
    let (epoch, _) = ring.current();
    let fingerprint = ring.epoch_fingerprint(epoch).map(hex::encode).unwrap_or_default();
    let now = Pins { identity, epoch, fingerprint, revision: ring.revision() };
    let Some(seen) = read(dir)? else { return write(dir, &now) };
    let changed = |why: String| Err(Error::KeysChanged(format!("{why}. Nothing was written")));
    if seen.identity != now.identity {
        return changed(
            "this client knew the repository with other keys (its identity differs from the one pinned in the cache): \
             the storage may have replaced its keyring and key slots. If the repository was really re-created at this \
             location, delete the client cache directory of it"
                .into(),
        );
    }
    if now.epoch < seen.epoch {
        return changed(format!(
            "the newest key epoch is {}, but this client saw epoch {} before: the keyring or key slots were rolled back \
             to before a key rotation (or a rotation was interrupted; finish it with `cairn key rotate` from a slot that \
             opens the newest keys)",
            now.epoch, seen.epoch
        ));
    }
    if ring.epoch_fingerprint(seen.epoch).map(hex::encode) != Some(seen.fingerprint.clone()) {
        return changed(format!(
            "the keyring's key for epoch {} is not the one this client saw: the keyring was forged (by someone who kept \
             the repository's naming keys) or an epoch was made twice",
            seen.epoch
        ));
    }
    if now.revision < seen.revision {
        return changed(format!(
            "the keyring is revision {}, older than revision {} this client saw: an older copy was served back, which \
             would undo a key slot removal or a password change",
            now.revision, seen.revision
        ));
    }
    if now == seen { Ok(()) } else { write(dir, &now) }
}

/// The pins of a write-only slot's kit (its own cache directory): the repository identity,
/// and the epoch, reader key and keyring revision it seals to. A kit the storage serves from
/// before a rotation (an older slot document, still MACed under the slot's unchanged MAC key)
/// names a lower epoch or revision and is refused; one naming the same epoch with another
/// reader key is forged.
pub fn check_and_pin_kit(dir: &Path, kit: &crate::keys::WriteKit) -> Result<()> {
    let reader = hex::encode(kit.reader_public());
    let now =
        Pins { identity: kit.identity().to_hex(), epoch: kit.epoch(), fingerprint: reader, revision: kit.revision() };
    let Some(seen) = read(dir)? else { return write(dir, &now) };
    let changed = |why: String| Err(Error::KeysChanged(format!("{why}. Nothing was written")));
    if seen.identity != now.identity {
        return changed(
            "this write-only slot's kit names another repository identity than the one pinned in the cache: the \
             storage may have replaced the repository's keys. If the repository was really re-created at this \
             location, delete this client's cache directory of it"
                .into(),
        );
    }
    if now.epoch < seen.epoch || now.revision < seen.revision {
        return changed(format!(
            "this write-only slot's kit is for key epoch {} (keyring revision {}), older than epoch {} (revision {}) this \
             client used before: the storage served an older copy of the slot, which seals to keys a rotation retired",
            now.epoch, now.revision, seen.epoch, seen.revision
        ));
    }
    if now.epoch == seen.epoch && now.fingerprint != seen.fingerprint {
        return changed(format!(
            "this write-only slot's kit names another reader key for epoch {} than the one this client used: it was \
             forged",
            now.epoch
        ));
    }
    if now == seen { Ok(()) } else { write(dir, &now) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::ObjectId;

    #[test]
    fn pins_refuse_another_identity_an_older_epoch_or_revision_and_a_changed_key() {
        let dir = tempfile::tempdir().unwrap();
        let ring = Keyring::generate(ObjectId([1; 32])).unwrap();
        check_and_pin(dir.path(), &ring).unwrap();
        check_and_pin(dir.path(), &ring).unwrap();
        let newer = ring.with_new_epoch().unwrap().next_revision();
        check_and_pin(dir.path(), &newer).unwrap();
        assert!(matches!(check_and_pin(dir.path(), &ring), Err(Error::KeysChanged(_))), "older epoch");
        let newest = newer.next_revision();
        check_and_pin(dir.path(), &newest).unwrap();
        assert!(matches!(check_and_pin(dir.path(), &newer), Err(Error::KeysChanged(_))), "older revision");
        // The same epoch number with another key (a forged keyring, or an epoch made twice).
        let twin = ring.with_new_epoch().unwrap().next_revision().next_revision().next_revision();
        assert!(matches!(check_and_pin(dir.path(), &twin), Err(Error::KeysChanged(_))), "changed key");
        let other = Keyring::generate(ObjectId([1; 32])).unwrap();
        assert!(matches!(check_and_pin(dir.path(), &other), Err(Error::KeysChanged(_))), "other identity");
        // A retired epoch is still recognised by its fingerprint.
        let later = newest.with_new_epoch().unwrap().without_epoch(1).unwrap().next_revision();
        check_and_pin(dir.path(), &later).unwrap();
        std::fs::write(dir.path().join(PINS_FILE), b"{").unwrap();
        assert!(matches!(check_and_pin(dir.path(), &later), Err(Error::Cache { .. })));
    }
}
