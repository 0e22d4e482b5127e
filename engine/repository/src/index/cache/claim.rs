//! Which process uses the shared cache: an advisory lock on `index.lock`, and the clean-up of
//! a private cache used instead.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Who may open the shared cache, decided by `dir/index.lock` (an advisory `flock`).
///
/// RocksDB's own LOCK is taken only after opening rotates and trims the info log files, so
/// two processes opening one cache at once raced over deleting the same `LOG.old.*` file, and
/// the loser failed with "No such file or directory" instead of falling back to a private
/// cache (seen as a failed prune beside two snapshots). Only the holder of this lock opens
/// the shared cache; others go straight to a private one.
#[derive(Debug)]
pub(super) enum Claim {
    /// This process holds the lock while the file stays open (the kernel releases it if the
    /// process dies).
    Held(std::fs::File),
    /// Another process holds it.
    Taken,
    /// The file system refuses `flock` (some network and FUSE file systems): the cache opens
    /// as it did before the lock, and RocksDB's own LOCK decides.
    Unsupported,
}

impl Claim {
    /// The lock file to keep open while the shared cache is in use.
    pub(super) fn into_lock(self) -> Option<std::fs::File> {
        match self {
            Claim::Held(file) => Some(file),
            Claim::Taken | Claim::Unsupported => None,
        }
    }
}

pub(super) fn claim_shared(dir: &Path) -> Result<Claim> {
    let path = dir.join("index.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::Cache { path, why: e.to_string() })?;
    Ok(match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Claim::Held(file),
        Err(rustix::io::Errno::WOULDBLOCK) => Claim::Taken,
        Err(_) => Claim::Unsupported,
    })
}

/// Removes a private cache directory when dropped.
#[derive(Debug)]
pub(super) struct PrivateDirCleanup(pub(super) Option<PathBuf>);

impl Drop for PrivateDirCleanup {
    fn drop(&mut self) {
        if let Some(p) = &self.0 {
            let _ = std::fs::remove_dir_all(p);
        }
    }
}
