//! Cairn's storage layer: a small trait over names and opaque bytes, its backends (a local
//! disk, memory, S3) and the decorators any backend can wear (retries, throttling, fault
//! injection, kill points). Storage never sees keys, plaintext or the format (it uses only the format crate's
//! error type); it is untrusted for confidentiality and integrity.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic))]

mod fault;
mod kill;
mod local;
mod mem;
pub mod rest;
mod retry;
pub mod s3;
mod throttle;

pub use fault::FaultStorage;
pub use kill::{KillPlan, KillWhen, with_kill_points};
pub use local::LocalStorage;
pub use mem::MemStorage;
pub use rest::{RestOptions, RestStorage};
pub use retry::{RetryPolicy, Retrying};
pub use s3::{S3Location, S3Options, S3Storage};
pub use throttle::{RateLimit, Throttled};

use cairn_format::error::{Error, Result};

/// Whether a put may replace an existing object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutMode {
    /// Fail with `AlreadyExists` when the name exists (packs, snapshots, index segments).
    CreateNew,
    /// Replace atomically (key slots when re-wrapped).
    Overwrite,
}

/// Bytes handed to [`Storage::put_owned`]: an object's content as parts, in order.
pub trait OwnedParts: Send {
    /// The parts, concatenated in this order.
    fn parts(&self) -> Vec<&[u8]>;
}

/// What a command is about to do with a repository, for storages that grant some clients less
/// than everything (a `cairn serve` identity): see [`Storage::permits`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Read and list objects.
    Read,
    /// Create objects (a backup).
    Append,
    /// Delete packs, index segments and snapshots (forget, prune).
    Delete,
    /// Change key slots and keyrings.
    Keys,
    /// Everything (init, key rotation).
    Admin,
}

impl Access {
    /// The permission's name, as `cairn serve` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Access::Read => "read",
            Access::Append => "append",
            Access::Delete => "delete",
            Access::Keys => "keys",
            Access::Admin => "admin",
        }
    }
}

/// A place that stores named objects. Names are `/`-separated, lower-case ASCII.
/// Implementations must make `put` atomic: a reader sees the whole object or none of it.
pub trait Storage: Send + Sync + std::fmt::Debug {
    /// Where this is, for messages.
    fn location(&self) -> String;
    /// Stores `data` under `name`.
    fn put(&self, name: &str, data: &[u8], mode: PutMode) -> Result<()>;
    /// Stores the concatenation of `parts` under `name`, as `put` would. Backends that can
    /// write parts one after the other override it, so a pack is never copied into one buffer.
    fn put_parts(&self, name: &str, parts: &[&[u8]], mode: PutMode) -> Result<()> {
        self.put(name, &parts.concat(), mode)
    }
    /// Stores `data` as `put_parts` would, taking ownership so a backend can drop it as soon
    /// as the bytes are handed off. The local backend drops a pack's buffer once it is written
    /// and before the fsync, so a producer waiting for that buffer does not wait for the disk.
    fn put_owned(&self, name: &str, data: Box<dyn OwnedParts>, mode: PutMode) -> Result<()> {
        self.put_parts(name, &data.parts(), mode)
    }
    /// Whether `put_owned` holds the bytes until the object is stored (true unless the
    /// backend says otherwise). A writer sizes its buffers by it: when bytes are released
    /// once written, uploads in progress need no buffer of their own.
    fn holds_bytes_until_stored(&self) -> bool {
        true
    }
    /// The whole object; [`Error::Missing`] when absent.
    fn get(&self, name: &str) -> Result<Vec<u8>>;
    /// `len` bytes from `offset`; fails if the object is shorter.
    fn get_range(&self, name: &str, offset: u64, len: u64) -> Result<Vec<u8>>;
    /// A hint that many ranges of `name` will be read soon, in no order the backend could
    /// guess (the trees of a tree pack, whose blobs are stored shuffled). A local store has the
    /// kernel read the object, up to `max_len` bytes, into the page cache in the background, so
    /// the reads that follow do not each wait on a disk seek; other backends ignore it. The
    /// caller bounds it (the storage must not decide how much is read). Never fails: a hint
    /// that cannot be given changes nothing but speed.
    fn read_ahead(&self, _name: &str, _max_len: u64) {}

    /// Reads a whole object of at most `max` bytes: a larger one is refused (as damaged)
    /// before it is read into memory. Objects come from an untrusted storage, and what
    /// decides how much a client allocates must not be theirs to choose. Backends that can
    /// stop reading at `max` do (local files); the default checks the size first, then the
    /// bytes returned.
    fn get_bounded(&self, name: &str, max: u64) -> Result<Vec<u8>> {
        if let Some(size) = self.stat(name)?
            && size > max
        {
            return Err(too_large(name, size, max));
        }
        let bytes = self.get(name)?;
        if bytes.len() as u64 > max {
            return Err(too_large(name, bytes.len() as u64, max));
        }
        Ok(bytes)
    }
    /// Every name starting with `prefix` (a directory such as `snapshots/`), in any order.
    fn list(&self, prefix: &str) -> Result<Vec<String>>;
    /// Every name starting with `prefix` with its size: what a quota counts. Backends whose
    /// listing carries sizes (object stores, directories) override it; the default stats
    /// each object (one that goes while listed is left out).
    fn list_sized(&self, prefix: &str) -> Result<Vec<(String, u64)>> {
        let mut out = Vec::new();
        for name in self.list(prefix)? {
            if let Some(size) = self.stat(&name)? {
                out.push((name, size));
            }
        }
        Ok(out)
    }
    /// Removes an object; removing a missing one is not an error.
    fn delete(&self, name: &str) -> Result<()>;
    /// Removes several objects, in no particular order, as `delete` would each. Object stores
    /// override it to remove up to a thousand per request (prune deletes packs by the thousand).
    fn delete_many(&self, names: &[String]) -> Result<()> {
        names.iter().try_for_each(|n| self.delete(n))
    }
    /// The object's size, `None` when absent.
    fn stat(&self, name: &str) -> Result<Option<u64>>;
    /// When the object was last written, by the storage's clock; `None` when absent or when
    /// the backend cannot tell. Only for judging what the client cannot read (a lock sealed
    /// under a retired key): a storage could lie about it, as it could delete the object.
    fn modified(&self, name: &str) -> Result<Option<std::time::SystemTime>> {
        let _ = name;
        Ok(None)
    }
    /// Temporary files that writes left behind (a process killed while writing), which no
    /// listing shows: local directories have them, object stores do not (an unfinished
    /// upload is never visible). Names are relative to the repository.
    fn leftovers(&self) -> Result<Vec<Leftover>> {
        Ok(Vec::new())
    }
    /// Whether the client may do `access` here, asked before a command starts so that one the
    /// storage would refuse half-way fails before it changes anything. Only storages that
    /// grant less than everything answer no (a `cairn serve` identity); the rest say yes.
    fn permits(&self, access: Access) -> Result<()> {
        let _ = access;
        Ok(())
    }
    /// Removes a leftover [`Storage::leftovers`] named; never anything else.
    fn remove_leftover(&self, name: &str) -> Result<()> {
        Err(Error::InvalidInput(format!("{name} is not a leftover of this storage")))
    }
}

/// A temporary file left by an interrupted write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leftover {
    /// Its name, relative to the repository (`data/ab/.tmp-...`).
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
    /// When it was last written (`None`: unknown).
    pub modified: Option<std::time::SystemTime>,
}

/// Whether `bytes` are exactly the concatenation of `parts` (a put whose answer was lost: did
/// these very bytes land?), compared without joining the parts.
pub(crate) fn is_concatenation(bytes: &[u8], parts: &[&[u8]]) -> bool {
    let mut at = 0;
    let same = parts.iter().all(|p| {
        let same = bytes.get(at..at + p.len()) == Some(*p);
        at += p.len();
        same
    });
    same && at == bytes.len()
}

/// The error for an object larger than its kind may be.
pub fn too_large(name: &str, size: u64, max: u64) -> Error {
    Error::corrupt(name, format!("{size} bytes, more than the {max} such an object may have; not read"))
}

/// Rejects names that could escape the repository or collide across backends.
pub fn validate_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.split('/').all(|c| {
            !c.is_empty()
                && c != "."
                && c != ".."
                && c.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_' || b == b'.')
        });
    if ok { Ok(()) } else { Err(Error::InvalidInput(format!("invalid object name {name:?}"))) }
}
