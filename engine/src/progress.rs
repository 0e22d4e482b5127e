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
    /// Whether a backup should count its sources first, in a second walk beside the backup,
    /// to report [`Progress::totals`]: worth it when a person watches, not in a nightly job.
    fn wants_totals(&self) -> bool {
        false
    }
    /// The counting walk so far: `files` regular files holding `bytes` bytes; the figures
    /// grow until `complete`.
    fn totals(&self, _files: u64, _bytes: u64, _complete: bool) {}
    /// A regular file is done; `bytes_not_read` of its size were not read (unchanged since
    /// the parent snapshot, another link to a file read already, holes), so that
    /// [`Progress::bytes`] plus these add up to the totals.
    fn file_done(&self, _bytes_not_read: u64) {}
    /// Packs handed to the uploads and not stored yet.
    fn uploads_pending(&self, _packs: usize) {}
    /// A problem that does not stop the operation.
    fn warn(&self, _message: &str) {}
    /// The operation is over.
    fn done(&self) {}
}

/// Reports nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl Progress for NoProgress {}
