//! `cairn serve`: repositories served over HTTPS to clients that authenticate as identities,
//! each with permissions per repository (read, append, delete, keys, admin), and a server log
//! in which an edit, a deletion or a reordering of lines is evident. The server sees what the
//! storage sees, names and sealed bytes, and holds no state beyond its configuration and its
//! log, so several instances can serve one bucket.
//!
//! `identities`: who is who and may do what (tokens shown once, only their hashes stored).
//! `access`: which permission a request needs. `log`: the chained server log and its verifier.
//! `backends`: the storage of each repository. `owners`: who created each lock. `http`: the
//! protocol. `quota`: what each repository may hold. `serve`: the listener, TLS, limits and
//! shutdown; `stall`: connections that give up on clients that stop reading. `tls`,
//! `metrics`, `rate`.

// Request bytes are the input of an adversary: no panics on them.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic))]

pub mod access;
pub mod backends;
pub mod error;
pub mod http;
pub mod identities;
pub mod log;
pub mod metrics;
mod owners;
pub mod quota;
pub mod rate;
pub mod serve;
pub mod stall;
pub mod tls;

pub use backends::Backends;
pub use error::{Error, Result};
pub use serve::{ServeOptions, run};
