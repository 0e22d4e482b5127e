//! The server's errors: a configuration that cannot be used, a file that cannot be read or
//! written, and internal failures. Requests map them to HTTP statuses; `cairn serve` to exit
//! codes.

use std::path::{Path, PathBuf};

/// What went wrong.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration, an identity or a key file is unusable.
    #[error("{0}")]
    Config(String),
    /// A file of the server's could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A failure that is no one's input (no randomness, a serializer failing).
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        Error::Io { path: path.to_path_buf(), source }
    }
}

/// The server's result type.
pub type Result<T> = std::result::Result<T, Error>;
