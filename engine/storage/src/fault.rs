//! A storage decorator that fails on purpose, for crash-safety tests: after a budget of
//! mutating operations (put, delete), every further one fails, as if the process had died
//! there. Reads always pass, so what a crash leaves behind can be inspected.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use super::{PutMode, Storage};
use cairn_format::error::{Error, Result};

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

    /// Takes one unit of the budget in a single atomic step: a check followed by a separate
    /// decrement would let two writers take the last unit, leaving -1, which means no limit.
    fn allow(&self, op: &'static str, name: &str) -> Result<()> {
        self.mutations.fetch_add(1, Ordering::SeqCst);
        let taken = self.budget.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| match left {
            0 => None,
            unlimited if unlimited < 0 => Some(unlimited),
            left => Some(left - 1),
        });
        match taken {
            Ok(_) => Ok(()),
            Err(_) => Err(Error::storage(op, name, std::io::Error::other("injected fault: the process died here"))),
        }
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

    fn read_ahead(&self, name: &str, max_len: u64) {
        self.inner.read_ahead(name, max_len);
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Barrier};

    use super::FaultStorage;
    use crate::{MemStorage, PutMode, Storage};

    /// Writers released at once against the last unit of a budget, many times over: exactly
    /// one passes each time. (A check followed by a separate decrement lets two writers take
    /// the last unit, and the budget then reads as "no limit" for good.)
    #[test]
    fn concurrent_writers_never_overdraw_the_budget() {
        const WRITERS: usize = 4;
        for trial in 0..2_000 {
            let fault = FaultStorage::new(Arc::new(MemStorage::new()), Some(1));
            let passed = AtomicU64::new(0);
            let start = Barrier::new(WRITERS);
            std::thread::scope(|s| {
                for t in 0..WRITERS {
                    let (fault, passed, start) = (&fault, &passed, &start);
                    s.spawn(move || {
                        start.wait();
                        for i in 0..4 {
                            if fault.put(&format!("locks/{t}-{i}"), b"x", PutMode::Overwrite).is_ok() {
                                passed.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                    });
                }
            });
            assert_eq!(passed.load(Ordering::SeqCst), 1, "trial {trial}: more writes passed than the budget");
            assert_eq!(fault.mutations(), 4 * WRITERS as u64);
            assert!(fault.delete("locks/0-0").is_err(), "trial {trial}: still failing after the budget is spent");
        }
    }
}
