//! Exit codes (documented in README.md) and the mapping from engine errors.

use cairn_engine::Error;

/// Success.
pub const OK: i32 = 0;
/// Any error not listed below.
pub const ERROR: i32 = 1;
/// The command line is wrong (clap's own code for usage errors; Cairn's checks use it too).
pub const USAGE: i32 = 2;
/// A partial result: the snapshot was written but some sources could not be read, or a
/// restore restored everything but some files (listed).
pub const PARTIAL: i32 = 3;
/// The repository does not exist.
pub const NO_REPOSITORY: i32 = 10;
/// The repository is locked by another process.
pub const LOCKED: i32 = 11;
/// Wrong password or key, or keys that changed under the client (substituted or rolled back).
pub const WRONG_KEY: i32 = 12;

/// The storage refused: a `cairn serve` identity lacks the permission the command needs (or
/// the token or certificate is not the server's), or the file system denied access.
pub const DENIED: i32 = 13;

/// The storage is full: no space left on its disk, or the repository is over its quota on a
/// `cairn serve`. Nothing half-written is visible; forget and prune, or make room.
pub const FULL: i32 = 14;

/// A mistake in the command line found by Cairn's own checks (clap finds the others): exit
/// code 2 either way, so a script tells "I typed it wrong" from "the backup failed".
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Returns a [`UsageError`] from the enclosing function, formatted as `format!`.
macro_rules! bail_usage {
    ($($arg:tt)*) => {
        return Err($crate::exit::UsageError(format!($($arg)*)).into())
    };
}

/// The exit code for an error chain: a usage error, else the first engine error in it decides.
pub fn code_for(err: &anyhow::Error) -> i32 {
    if err.chain().any(|c| c.is::<UsageError>()) {
        return USAGE;
    }
    for cause in err.chain() {
        if let Some(e) = cause.downcast_ref::<Error>() {
            return match e {
                Error::NoRepository(_) => NO_REPOSITORY,
                Error::WrongKey(_) | Error::Hsm(_) | Error::KeysChanged(_) => WRONG_KEY,
                Error::Locked { .. } => LOCKED,
                Error::Interrupted(_) => crate::signals::EXIT_INTERRUPTED,
                Error::Storage { source, .. } if source.kind() == std::io::ErrorKind::PermissionDenied => DENIED,
                Error::Storage { source, .. } if source.kind() == std::io::ErrorKind::StorageFull => FULL,
                _ => ERROR,
            };
        }
    }
    ERROR
}
