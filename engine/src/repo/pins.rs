//! What this client has seen of a repository, pinned in its cache directory (`pins.json`): the
//! repository identity (a hash of K_id, see [`crate::keys::RepoIdentity`]) and the newest
//! data-key epoch. A repository whose identity differs, or whose newest epoch is older than one
//! this client saw, is refused before anything is written: the storage substituted its keys or
//! served back the keyring and slots from before a rotation.
//!
//! Pins are trust on first use: a client with an empty cache (a new machine, a deleted cache)
//! pins what it sees. The slot's own binding to the identity still holds without them.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::keys::RepoIdentity;

const PINS_FILE: &str = "pins.json";

#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
struct Pins {
    /// Hex of the repository identity.
    identity: String,
    /// The newest data-key epoch seen.
    epoch: u32,
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

/// Checks `identity` and the newest `epoch` against what this client pinned in `dir`, and pins
/// them (the epoch only ever moves forwards). Errors: [`Error::KeysChanged`] on a different
/// identity or an older epoch; [`Error::Cache`] when the pins cannot be read or written.
pub fn check_and_pin(dir: &Path, identity: &RepoIdentity, epoch: u32) -> Result<()> {
    let seen = read(dir)?;
    if let Some(seen) = &seen {
        if seen.identity != identity.to_hex() {
            return Err(Error::KeysChanged(
                "this client knew the repository with other keys (its identity differs from the one pinned in the cache): \
                 the storage may have replaced its keyring and key slots. Nothing was written. If the repository was \
                 really re-created at this location, delete the client cache directory of it"
                    .into(),
            ));
        }
        if epoch < seen.epoch {
            return Err(Error::KeysChanged(format!(
                "the newest key epoch is {epoch}, but this client saw epoch {} before: the keyring or key slots were \
                 rolled back to before a key rotation (or a rotation was interrupted; finish it with `cairn key rotate` \
                 from a slot that opens the newest keys). Nothing was written",
                seen.epoch
            )));
        }
        if epoch == seen.epoch {
            return Ok(());
        }
    }
    write(dir, &Pins { identity: identity.to_hex(), epoch })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_refuse_another_identity_and_an_older_epoch() {
        let dir = tempfile::tempdir().unwrap();
        let a = RepoIdentity([1; 32]);
        check_and_pin(dir.path(), &a, 2).unwrap();
        check_and_pin(dir.path(), &a, 2).unwrap();
        check_and_pin(dir.path(), &a, 3).unwrap();
        assert!(matches!(check_and_pin(dir.path(), &a, 2), Err(Error::KeysChanged(_))));
        assert!(matches!(check_and_pin(dir.path(), &RepoIdentity([2; 32]), 3), Err(Error::KeysChanged(_))));
        check_and_pin(dir.path(), &a, 3).unwrap();
        std::fs::write(dir.path().join(PINS_FILE), b"{").unwrap();
        assert!(matches!(check_and_pin(dir.path(), &a, 3), Err(Error::Cache { .. })));
    }
}
