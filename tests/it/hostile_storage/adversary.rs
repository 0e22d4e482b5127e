//! Tools of a hostile storage: a wrapper that hides objects from listings and reads, and
//! captures of a repository's objects that can be served back later (a rollback).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use cairn_engine::storage::{PutMode, Storage};

/// A storage that can hide objects: hidden names vanish from `list`, `get` and `stat` (as if
/// deleted) but stay stored, so the attack can be undone to show what the client destroyed.
#[derive(Debug)]
pub struct Hiding {
    inner: Arc<dyn Storage>,
    hidden: Mutex<BTreeSet<String>>,
}

impl Hiding {
    pub fn new(inner: Arc<dyn Storage>) -> Arc<Self> {
        Arc::new(Hiding { inner, hidden: Mutex::new(BTreeSet::new()) })
    }

    pub fn hide(&self, name: &str) {
        self.hidden.lock().unwrap().insert(name.to_string());
    }

    pub fn reveal_all(&self) {
        self.hidden.lock().unwrap().clear();
    }

    fn is_hidden(&self, name: &str) -> bool {
        self.hidden.lock().unwrap().contains(name)
    }

    fn missing(name: &str) -> cairn_engine::Error {
        cairn_engine::Error::Missing(name.to_string())
    }
}

impl Storage for Hiding {
    fn location(&self) -> String {
        self.inner.location()
    }
    fn put(&self, name: &str, data: &[u8], mode: PutMode) -> cairn_engine::Result<()> {
        self.inner.put(name, data, mode)
    }
    fn get(&self, name: &str) -> cairn_engine::Result<Vec<u8>> {
        if self.is_hidden(name) {
            return Err(Self::missing(name));
        }
        self.inner.get(name)
    }
    fn get_range(&self, name: &str, offset: u64, len: u64) -> cairn_engine::Result<Vec<u8>> {
        if self.is_hidden(name) {
            return Err(Self::missing(name));
        }
        self.inner.get_range(name, offset, len)
    }
    fn list(&self, prefix: &str) -> cairn_engine::Result<Vec<String>> {
        Ok(self.inner.list(prefix)?.into_iter().filter(|n| !self.is_hidden(n)).collect())
    }
    fn delete(&self, name: &str) -> cairn_engine::Result<()> {
        self.inner.delete(name)
    }
    fn stat(&self, name: &str) -> cairn_engine::Result<Option<u64>> {
        if self.is_hidden(name) {
            return Ok(None);
        }
        self.inner.stat(name)
    }
}

/// Every object under `prefixes` with its bytes, as the storage may keep them (a versioned
/// bucket, a backup of the NAS) to serve them back later.
pub type Capture = BTreeMap<String, Vec<u8>>;

pub fn capture(storage: &dyn Storage, prefixes: &[&str]) -> Capture {
    let mut out = Capture::new();
    for prefix in prefixes {
        for name in storage.list(prefix).unwrap() {
            let bytes = storage.get(&name).unwrap();
            out.insert(name, bytes);
        }
    }
    out
}

/// Serves a capture back: every object under the capture's prefixes that the capture does not
/// hold is deleted, and every captured object is written back as it was.
pub fn replay(storage: &dyn Storage, prefixes: &[&str], captured: &Capture) {
    for prefix in prefixes {
        for name in storage.list(prefix).unwrap() {
            if !captured.contains_key(&name) {
                storage.delete(&name).unwrap();
            }
        }
    }
    for (name, bytes) in captured {
        storage.put(name, bytes, PutMode::Overwrite).unwrap();
    }
}
