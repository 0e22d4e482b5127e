//! Exit codes (documented in README.md) and the mapping from engine errors.

use cairn_engine::Error;

/// Success.
pub const OK: i32 = 0;
/// Any error not listed below.
pub const ERROR: i32 = 1;
/// A partial result: the snapshot was written but some sources could not be read, or a
/// restore restored everything but some files (listed).
pub const PARTIAL: i32 = 3;
/// The repository does not exist.
pub const NO_REPOSITORY: i32 = 10;
/// The repository is locked by another process.
pub const LOCKED: i32 = 11;
/// Wrong password or key, or keys that changed under the client (substituted or rolled back).
pub const WRONG_KEY: i32 = 12;

/// The exit code for an error chain: the first engine error in it decides.
pub fn code_for(err: &anyhow::Error) -> i32 {
    for cause in err.chain() {
        if let Some(e) = cause.downcast_ref::<Error>() {
            return match e {
                Error::NoRepository(_) => NO_REPOSITORY,
                Error::WrongKey(_) | Error::Hsm(_) | Error::KeysChanged(_) => WRONG_KEY,
                Error::Locked { .. } => LOCKED,
                Error::Interrupted(_) => crate::signals::EXIT_INTERRUPTED,
                _ => ERROR,
            };
        }
    }
    ERROR
}
