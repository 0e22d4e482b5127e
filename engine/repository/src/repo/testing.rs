//! A cheap repository for the engine's own unit tests (as restic's
//! `internal/repository/testing.go`): in memory, the cheapest key derivation, small packs, and
//! its cache in a temporary directory that lives as long as it does.

// Test scaffolding (feature `testing`): a failure here is the test failing.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use super::{InitOptions, Repository};
use crate::crypto::{Argon2Params, SecretBytes};
use crate::keys::OpenSecret;
use crate::storage::{MemStorage, Storage};

pub const PASSWORD: &str = "unit test password";

/// A repository and what it needs to be opened again.
#[derive(Debug)]
pub struct TestRepository {
    pub repo: Repository,
    pub storage: Arc<MemStorage>,
    /// The first client's cache directory, removed when the repository is dropped.
    _cache: tempfile::TempDir,
}

impl TestRepository {
    /// A fresh cache directory for another client of this repository, removed with it.
    pub fn another_cache(&self) -> std::path::PathBuf {
        tempfile::tempdir_in(self._cache.path()).unwrap().keep()
    }

    /// A new repository in memory with packs of about `pack_target_size` bytes.
    pub fn new(pack_target_size: u32) -> Self {
        let storage = Arc::new(MemStorage::new());
        let mut opts = InitOptions::new(SecretBytes::from(PASSWORD.to_string()), Argon2Params::MIN);
        opts.recovery_code = false;
        opts.pack_target_size = pack_target_size;
        Repository::init(storage.clone(), &opts).unwrap();
        let cache = tempfile::tempdir().unwrap();
        let repo = Self::open_at(&storage, cache.path());
        TestRepository { repo, storage, _cache: cache }
    }

    /// Another client of the same repository, with a cache of its own under `cache`.
    pub fn open_at(storage: &Arc<MemStorage>, cache: &std::path::Path) -> Repository {
        let storage: Arc<dyn Storage> = storage.clone();
        let secret = OpenSecret::Password(SecretBytes::from(PASSWORD.to_string()));
        Repository::open(storage, &secret, cache.to_path_buf()).unwrap()
    }
}
