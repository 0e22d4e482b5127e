//! The engine's one public error type. Variants follow what the caller should do next
//! (try another key, run `check`, create the repository, fix the source path...), so the CLI
//! can map them to documented exit codes without parsing messages.

use std::path::PathBuf;

/// Result alias used throughout the engine.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the engine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No key slot opened with the secret given (wrong password, wrong recovery code).
    #[error("wrong password or key: {0}")]
    WrongKey(String),

    /// The PKCS#11 module, token, PIN or key of an HSM slot was not usable (missing token,
    /// wrong PIN, missing key, module not loadable). Reported like a wrong key.
    #[error("HSM: {0}")]
    Hsm(String),

    /// An object exists but its bytes are not what they must be (authentication failed,
    /// truncated, undecodable, wrong id). Run `cairn check` for the full picture.
    #[error("repository object {object} is damaged: {why}")]
    Corrupt { object: String, why: String },

    /// An object the repository needs is not there.
    #[error("repository object {0} is missing")]
    Missing(String),

    /// A blob is not in the index: never stored, or listed only by an index segment that is
    /// missing or damaged (`cairn repair index` rebuilds the index from the packs).
    #[error("blob {0} is not in the index (a missing or damaged index segment? `cairn check` tells)")]
    NotIndexed(crate::id::ChunkId),

    /// A path asked for is not in the snapshot.
    #[error("{0} is not in the snapshot")]
    NotInSnapshot(String),

    /// There is no repository at the location given.
    #[error("no repository at {0}")]
    NoRepository(String),

    /// A repository already exists where `init` was asked to create one.
    #[error("a repository already exists at {0}")]
    AlreadyExists(String),

    /// The repository was written by a newer format version this build cannot read.
    #[error("unsupported format version {found} in {object} (this build reads version {supported})")]
    UnsupportedVersion { object: String, found: u32, supported: u32 },

    /// The storage backend failed.
    #[error("storage {op} of {object} failed: {source}")]
    Storage {
        op: &'static str,
        object: String,
        retryable: bool,
        #[source]
        source: std::io::Error,
    },

    /// Reading a source file or directory failed.
    #[error("cannot read {}: {source}", path.display())]
    Source {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// Writing a restored file failed.
    #[error("cannot restore {}: {source}", path.display())]
    Target {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The local index cache failed; deleting the cache directory is always safe.
    #[error("index cache at {}: {why}", path.display())]
    Cache { path: PathBuf, why: String },

    /// The caller passed something the engine cannot work with.
    #[error("invalid input: {0}")]
    InvalidInput(String),

    /// A failure inside the engine, not caused by the input or the repository: a thread that
    /// could not start (resources exhausted) or that panicked (a bug; please report it).
    #[error("internal error: {0}")]
    Internal(String),

    /// Another process holds a lock that conflicts with the one asked for (exit code 11).
    #[error(
        "the repository is locked: {holder}, since {} UTC. Wait for it (a lock whose process died turns stale 30 \
         minutes after it was last refreshed, and is then ignored and removed by `cairn unlock`), or, if no cairn \
         process uses the repository any more, remove it now with `cairn unlock --remove-all`",
        crate::utc::format(*since_ns)
    )]
    Locked {
        /// Who holds it and how.
        holder: String,
        /// When it was taken.
        since_ns: i64,
    },

    /// The repository's keys are not the ones its key slot was made for, or not the ones this
    /// client saw before (a substituted keyring, or key epochs rolled back): the storage may be
    /// trying to make the client write under keys it knows. Nothing was written (exit code 12).
    #[error("the keys of the repository changed: {0}")]
    KeysChanged(String),

    /// The repository went backwards from what this client saw before (its audit log lost
    /// entries this client saw): objects were deleted or replaced with older ones. Refused
    /// before writing anything on top of it.
    #[error("the repository was rolled back: {0}")]
    RolledBack(String),

    /// No snapshot matches, or several do.
    #[error("{0}")]
    SnapshotNotFound(String),

    /// Snapshots the audit log says exist are not in the listing of the repository: the
    /// storage hides them, its listing lags, or they were deleted behind the tool's back.
    /// Prune refuses to run, since their data would look unused.
    #[error("{}", missing_snapshots_message(ids))]
    SnapshotsMissing {
        /// The missing snapshots, sorted.
        ids: Vec<crate::id::ObjectId>,
    },

    /// The operation was asked to stop (Ctrl-C, SIGTERM) and did, at a point where what it
    /// stored is consistent: packs written so far are indexed (a rerun reuses them), nothing
    /// half-done is left under a final name, locks are released by the caller's guards.
    #[error("interrupted: {0}")]
    Interrupted(String),

    /// Snapshots that cannot be read (damaged objects). Prune refuses to change anything while
    /// they exist: it cannot know which data they use, so any pack that looks unused may be theirs.
    #[error("{}", unreadable_snapshots_message(snapshots))]
    SnapshotsUnreadable {
        /// Each unreadable snapshot and why.
        snapshots: Vec<(crate::id::ObjectId, String)>,
    },

    /// A lock this process holds was not kept: a refresh failed, or the lock is gone or too
    /// old for other clients to respect. The operation stopped before writing what needs it.
    #[error(
        "the repository lock {name} was lost: {why}; nothing that depends on it was written, run the command again"
    )]
    LockLost {
        /// The lock object.
        name: String,
        /// What happened.
        why: String,
    },

    /// Packs a backup wrote, or holding chunks it reused, were gone from the storage when it
    /// was about to write its snapshot; it wrote none.
    #[error(
        "{} pack(s) holding data of this snapshot are gone from the repository ({}): no snapshot was written. A \
         prune deleted them while this backup ran (it took the backup's lock for stale: clocks apart?, or ran with \
         --instant-delete), or they were lost. Run `cairn repair index` so no client reuses their chunks, then \
         snapshot again: the data is stored anew",
        packs.len(),
        packs.iter().take(3).cloned().collect::<Vec<_>>().join(", ") + if packs.len() > 3 { ", ..." } else { "" }
    )]
    PacksGone {
        /// The packs, by object name.
        packs: Vec<String>,
    },
}

fn missing_snapshots_message(ids: &[crate::id::ObjectId]) -> String {
    let hex: Vec<String> = ids.iter().map(|id| id.to_hex()).collect();
    format!(
        "{} snapshot(s) the audit log says exist are not in the repository: {}. Prune deletes nothing \
         while it cannot see every snapshot. If the storage hides them or its listing lags, try again later; \
         if they are gone for good, record that with `cairn prune --accept-missing {}`",
        ids.len(),
        hex.iter().map(|h| h.get(..12).unwrap_or(h)).collect::<Vec<_>>().join(", "),
        hex.join(",")
    )
}

fn unreadable_snapshots_message(snapshots: &[(crate::id::ObjectId, String)]) -> String {
    let ids: Vec<String> = snapshots.iter().map(|(id, _)| id.to_hex()).collect();
    let why: Vec<String> = snapshots.iter().map(|(_, e)| e.clone()).collect();
    format!(
        "{} snapshot(s) cannot be read ({}). Prune deletes nothing while it cannot know what data they use. \
         If the damage is a passing storage problem, try again later; otherwise remove them with `cairn forget {}` \
         (or `cairn repair snapshots`, which removes every snapshot that cannot be read), then prune again",
        snapshots.len(),
        why.join("; "),
        ids.join(" ")
    )
}

impl Error {
    /// A damaged-object error; `object` should be the repository name of the object.
    pub fn corrupt(object: impl Into<String>, why: impl Into<String>) -> Self {
        Error::Corrupt { object: object.into(), why: why.into() }
    }

    /// Whether this is the storage refusing a write: read-only media (EROFS), or no permission
    /// to write (a read-only mount, a directory without write permission, an S3 key that may
    /// only read).
    pub fn is_write_refused(&self) -> bool {
        matches!(self, Error::Storage { op, source, .. }
        if matches!(*op, "write" | "delete")
            && matches!(
                source.kind(),
                std::io::ErrorKind::ReadOnlyFilesystem | std::io::ErrorKind::PermissionDenied
            ))
    }

    /// Whether the storage failed in a way another attempt may not (a connection that broke,
    /// an answer that was lost): what `storage::Retrying` tries again.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Storage { retryable: true, .. })
    }

    /// Whether this is a create-only put refused because the name exists.
    pub fn is_already_exists(&self) -> bool {
        matches!(self, Error::Storage { source, .. } if source.kind() == std::io::ErrorKind::AlreadyExists)
    }

    /// A storage error for `op` on `object`.
    pub fn storage(op: &'static str, object: impl Into<String>, source: std::io::Error) -> Self {
        let retryable = matches!(
            source.kind(),
            std::io::ErrorKind::Interrupted
                | std::io::ErrorKind::TimedOut
                | std::io::ErrorKind::WouldBlock
                | std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::ConnectionAborted
        );
        Error::Storage { op, object: object.into(), retryable, source }
    }
}
