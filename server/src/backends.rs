//! Where each served repository lives: one storage per repository name, opened on first use
//! by a function the caller supplies (a directory per repository under a root, or a prefix
//! per repository in a bucket). The server keeps nothing else about a repository, so several
//! instances over one bucket serve the same repositories.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use cairn_storage::Storage;

/// Opens the storage of one repository, by name.
pub type OpenRepository = dyn Fn(&str) -> cairn_format::error::Result<Arc<dyn Storage>> + Send + Sync;

/// The repositories served.
pub struct Backends {
    open: Box<OpenRepository>,
    opened: Mutex<HashMap<String, Arc<dyn Storage>>>,
}

impl std::fmt::Debug for Backends {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backends").finish_non_exhaustive()
    }
}

impl Backends {
    /// Repositories opened by `open`.
    pub fn new(open: Box<OpenRepository>) -> Self {
        Backends { open, opened: Mutex::new(HashMap::new()) }
    }

    /// The storage of repository `name` (a name [`is_repository_name`] accepts).
    pub fn get(&self, name: &str) -> cairn_format::error::Result<Arc<dyn Storage>> {
        let mut opened = self.opened.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(s) = opened.get(name) {
            return Ok(s.clone());
        }
        let storage = (self.open)(name)?;
        opened.insert(name.to_string(), storage.clone());
        Ok(storage)
    }
}

/// Whether `name` may name a repository: 1 to 64 lower-case letters, digits, `-`, `_` and
/// `.`, starting with a letter or digit (so never `.` or `..`, and one path component).
pub fn is_repository_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.bytes().next().is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_names_are_one_safe_path_component() {
        for good in ["main", "web-1", "a", "host_2.example"] {
            assert!(is_repository_name(good), "{good}");
        }
        for bad in ["", ".", "..", ".hidden", "-x", "Main", "a/b", "a b", "%2e%2e", &"x".repeat(65)] {
            assert!(!is_repository_name(bad), "{bad}");
        }
    }

    #[test]
    fn each_repository_is_opened_once() {
        let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let seen = count.clone();
        let backends = Backends::new(Box::new(move |_| {
            seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(Arc::new(cairn_storage::MemStorage::new()) as Arc<dyn Storage>)
        }));
        let a = backends.get("a").unwrap();
        a.put("config", b"x", cairn_storage::PutMode::CreateNew).unwrap();
        assert_eq!(backends.get("a").unwrap().get("config").unwrap(), b"x");
        backends.get("b").unwrap();
        assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 2);
    }
}
