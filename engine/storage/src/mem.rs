//! In-memory backend for tests and benches.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use super::{PutMode, Storage, validate_name};
use cairn_format::error::{Error, Result};

/// Objects in a shared map; clones see the same objects.
#[derive(Debug, Clone, Default)]
pub struct MemStorage {
    objects: Arc<Mutex<BTreeMap<String, Vec<u8>>>>,
}

impl MemStorage {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Vec<u8>>> {
        self.objects.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Replaces an object's bytes behind the repository's back (corruption tests).
    pub fn tamper(&self, name: &str, f: impl FnOnce(&mut Vec<u8>)) {
        if let Some(v) = self.lock().get_mut(name) {
            f(v);
        }
    }
}

impl Storage for MemStorage {
    fn location(&self) -> String {
        "memory".into()
    }

    fn put(&self, name: &str, data: &[u8], mode: PutMode) -> Result<()> {
        validate_name(name)?;
        let mut m = self.lock();
        if mode == PutMode::CreateNew && m.contains_key(name) {
            return Err(Error::storage("write", name, std::io::Error::from(std::io::ErrorKind::AlreadyExists)));
        }
        m.insert(name.to_string(), data.to_vec());
        Ok(())
    }

    fn get(&self, name: &str) -> Result<Vec<u8>> {
        validate_name(name)?;
        self.lock().get(name).cloned().ok_or_else(|| Error::Missing(name.to_string()))
    }

    fn get_range(&self, name: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        validate_name(name)?;
        let m = self.lock();
        let v = m.get(name).ok_or_else(|| Error::Missing(name.to_string()))?;
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        let end = start.saturating_add(usize::try_from(len).unwrap_or(usize::MAX));
        v.get(start..end)
            .map(<[u8]>::to_vec)
            .ok_or_else(|| Error::corrupt(name, format!("range {offset}+{len} beyond the object's {} bytes", v.len())))
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>> {
        // A directory, as on the other backends: `snapshots` does not match `snapshots-old/x`.
        let dir = prefix.trim_end_matches('/');
        let dir = if dir.is_empty() { String::new() } else { format!("{dir}/") };
        Ok(self.lock().keys().filter(|k| k.starts_with(&dir)).cloned().collect())
    }

    fn delete(&self, name: &str) -> Result<()> {
        validate_name(name)?;
        self.lock().remove(name);
        Ok(())
    }

    fn stat(&self, name: &str) -> Result<Option<u64>> {
        validate_name(name)?;
        Ok(self.lock().get(name).map(|v| v.len() as u64))
    }
}
