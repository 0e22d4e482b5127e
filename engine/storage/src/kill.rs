//! Kill points for crash tests of the real binary: a storage decorator that counts mutating
//! operations (put, delete) and, at the n-th, sends SIGKILL to its own process, before the
//! operation or right after it. Nothing is cleaned up, no destructor runs: the repository (and
//! the client's cache) are left exactly as a power cut or an OOM kill would leave them there.
//! Only the test suite's `cairn-killable` binary wraps a storage in it; the shipped `cairn`
//! never does.

use std::path::PathBuf;
use std::sync::Arc;

use super::Storage;

/// Whether the process dies before the n-th operation reaches the storage or right after it
/// returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KillWhen {
    Before,
    After,
}

/// Where to die, and where to log the operations made.
#[derive(Debug, Clone, Default)]
pub struct KillPlan {
    /// Die at the n-th mutating operation (counted from 1).
    pub kill_at: Option<(u64, KillWhen)>,
    /// Append one line per mutating operation, `N OP NAME`, to this file (written before the
    /// operation, so the line of the operation the process died at is there too).
    pub log_to: Option<PathBuf>,
}

impl KillPlan {
    /// Parses `N` or `N:before` (die before the n-th operation) or `N:after`.
    pub fn parse_kill_at(spec: &str) -> Option<(u64, KillWhen)> {
        let (n, when) = spec.split_once(':').unwrap_or((spec, "before"));
        let when = match when {
            "before" => KillWhen::Before,
            "after" => KillWhen::After,
            _ => return None,
        };
        n.trim().parse::<u64>().ok().filter(|n| *n > 0).map(|n| (n, when))
    }
}

/// `inner` with the kill points of `plan` (`inner` itself when the plan has none).
pub fn with_kill_points(inner: Arc<dyn Storage>, plan: KillPlan) -> Arc<dyn Storage> {
    if plan.kill_at.is_none() && plan.log_to.is_none() {
        return inner;
    }
    Arc::new(imp::KillSwitch::new(inner, plan))
}

mod imp {
    use std::io::Write;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::super::{OwnedParts, PutMode, Storage};
    use super::{KillPlan, KillWhen};
    use cairn_format::error::{Error, Result};

    #[derive(Debug)]
    pub(super) struct KillSwitch {
        inner: Arc<dyn Storage>,
        plan: KillPlan,
        count: AtomicU64,
    }

    impl KillSwitch {
        pub(super) fn new(inner: Arc<dyn Storage>, plan: KillPlan) -> Self {
            KillSwitch { inner, plan, count: AtomicU64::new(0) }
        }

        /// Counts one mutating operation, logs it, and runs it between the kill points.
        fn mutate<T>(&self, op: &str, name: &str, run: impl FnOnce() -> Result<T>) -> Result<T> {
            let n = self.count.fetch_add(1, Ordering::SeqCst) + 1;
            if let Some(path) = &self.plan.log_to {
                // One write(2) per line with O_APPEND: lines of concurrent uploads never mix.
                let line = format!("{n} {op} {name}\n");
                let logged = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .and_then(|mut f| f.write_all(line.as_bytes()));
                // A test harness asked for the log: going on without it would make the matrix
                // miss crash points silently.
                logged.map_err(|e| Error::storage("log", name, e))?;
            }
            let kill = self.plan.kill_at.filter(|(at, _)| *at == n).map(|(_, when)| when);
            if kill == Some(KillWhen::Before) {
                die();
            }
            let result = run();
            if kill == Some(KillWhen::After) {
                die();
            }
            result
        }
    }

    /// SIGKILL to this process: no unwinding, no destructors, no buffered output flushed.
    fn die() -> ! {
        let _ = rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
        // SIGKILL cannot be caught; a kernel that did not deliver it at once still must not let
        // the operation run.
        std::process::abort()
    }

    impl Storage for KillSwitch {
        fn location(&self) -> String {
            self.inner.location()
        }

        fn put(&self, name: &str, data: &[u8], mode: PutMode) -> Result<()> {
            self.mutate("put", name, || self.inner.put(name, data, mode))
        }

        fn put_parts(&self, name: &str, parts: &[&[u8]], mode: PutMode) -> Result<()> {
            self.mutate("put", name, || self.inner.put_parts(name, parts, mode))
        }

        fn put_owned(&self, name: &str, data: Box<dyn OwnedParts>, mode: PutMode) -> Result<()> {
            self.mutate("put", name, || self.inner.put_owned(name, data, mode))
        }

        fn holds_bytes_until_stored(&self) -> bool {
            self.inner.holds_bytes_until_stored()
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

        fn get_bounded(&self, name: &str, max: u64) -> Result<Vec<u8>> {
            self.inner.get_bounded(name, max)
        }

        fn list(&self, prefix: &str) -> Result<Vec<String>> {
            self.inner.list(prefix)
        }

        fn delete(&self, name: &str) -> Result<()> {
            self.mutate("delete", name, || self.inner.delete(name))
        }

        /// Each name counts as one operation, as on the local backend, where a batch is not
        /// atomic either: a crash may fall between any two.
        fn delete_many(&self, names: &[String]) -> Result<()> {
            names.iter().try_for_each(|n| self.delete(n))
        }

        fn stat(&self, name: &str) -> Result<Option<u64>> {
            self.inner.stat(name)
        }
    }
}
