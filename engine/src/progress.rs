//! How operations report progress. The engine never prints: the CLI implements this trait
//! (indicatif on a tty, nothing otherwise).

use std::path::Path;

/// Progress events; every method has a no-op default.
pub trait Progress: Send + Sync {
    /// A phase begins; `total_bytes` when known.
    fn phase(&self, _name: &str, _total_bytes: Option<u64>) {}
    /// Work moved to `path`.
    fn path(&self, _path: &Path) {}
    /// `n` more bytes processed.
    fn bytes(&self, _n: u64) {}
    /// A problem that does not stop the operation.
    fn warn(&self, _message: &str) {}
    /// The operation is over.
    fn done(&self) {}
}

/// Reports nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl Progress for NoProgress {}
