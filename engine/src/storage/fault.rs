//! A storage decorator that fails on purpose, for crash-safety tests: after a budget of
//! mutating operations (put, delete), every further one fails, as if the process had died
//! there. Reads always pass, so what a crash leaves behind can be inspected.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use super::{PutMode, Storage};
use crate::error::{Error, Result};

/// Fails every mutating operation after the first `fail_after`.
#[derive(Debug)]
pub struct FaultStorage {
    inner: Arc<dyn Storage>,
    /// Mutating operations still allowed; negative: no limit.
    budget: AtomicI64,
    mutations: AtomicU64,
}

impl FaultStorage {
    /// Wraps `inner`; `fail_after: None` never fails.
    pub fn new(inner: Arc<dyn Storage>, fail_after: Option<u64>) -> Self {
        let budget = fail_after.map_or(-1, |n| i64::try_from(n).unwrap_or(i64::MAX));
        FaultStorage { inner, budget: AtomicI64::new(budget), mutations: AtomicU64::new(0) }
    }

    /// Mutating operations attempted so far.
    pub fn mutations(&self) -> u64 {
        self.mutations.load(Ordering::SeqCst)
    }

    fn allow(&self, op: &'static str, name: &str) -> Result<()> {
        self.mutations.fetch_add(1, Ordering::SeqCst);
        let left = self.budget.load(Ordering::SeqCst);
        if left < 0 {
            return Ok(());
        }
        if left == 0 {
            return Err(Error::storage(op, name, std::io::Error::other("injected fault: the process died here")));
        }
        self.budget.fetch_sub(1, Ordering::SeqCst);
        Ok(())
    }
}

impl Storage for FaultStorage {
    fn location(&self) -> String {
        self.inner.location()
    }

    fn put(&self, name: &str, data: &[u8], mode: PutMode) -> Result<()> {
        self.allow("write", name)?;
        self.inner.put(name, data, mode)
    }

    fn get(&self, name: &str) -> Result<Vec<u8>> {
        self.inner.get(name)
    }

    fn get_range(&self, name: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        self.inner.get_range(name, offset, len)
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>> {
        self.inner.list(prefix)
    }

    fn delete(&self, name: &str) -> Result<()> {
        self.allow("delete", name)?;
        self.inner.delete(name)
    }

    fn stat(&self, name: &str) -> Result<Option<u64>> {
        self.inner.stat(name)
    }
}
