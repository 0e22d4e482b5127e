//! `snapshot --stdin`: one stream (a database dump, say) stored as one file at the snapshot's
//! root. The producer is checked before the snapshot is written, so a dump that failed halfway
//! never becomes a snapshot that looks complete.

use std::io::Read;
use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::format::BlobKind;
use crate::format::now_ns;
use crate::format::snapshot::{Snapshot, SnapshotSummary};
use crate::format::tree::{Node, NodeKind, Tree};
use crate::hostfs::OwnerNames;
use crate::progress::Progress;
use crate::repo::Repository;

use super::{BackupOptions, BackupOutcome};

/// A stream to store as one file.
pub struct StreamSource<'s> {
    /// The file's name in the snapshot (one path component).
    pub name: Vec<u8>,
    /// The bytes.
    pub reader: &'s mut dyn Read,
    /// Called once the stream has ended, before anything refers to it: an error (the command
    /// producing the stream failed, say) aborts the backup without writing a snapshot.
    pub finish: &'s mut dyn FnMut() -> Result<()>,
}

impl std::fmt::Debug for StreamSource<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamSource").field("name", &String::from_utf8_lossy(&self.name)).finish_non_exhaustive()
    }
}

/// Stores `source` as `/<name>` in a new snapshot labelled by `opts` (its paths are ignored).
pub fn backup_stream(
    repo: &Repository,
    opts: &BackupOptions,
    source: StreamSource<'_>,
    progress: &dyn Progress,
) -> Result<BackupOutcome> {
    if !Node::valid_name(&source.name) {
        return Err(Error::InvalidInput(format!(
            "--stdin-filename must be one file name, not {:?}",
            String::from_utf8_lossy(&source.name)
        )));
    }
    let started_ns = now_ns();
    let display = PathBuf::from(String::from_utf8_lossy(&source.name).into_owned());
    progress.phase("snapshot", None);
    progress.path(&display);
    let writer = if opts.dry_run { repo.dry_run_blob_writer()? } else { repo.blob_writer()? };
    let mut stream = repo.chunker().stream(source.reader);
    let mut chunks = Vec::new();
    let mut size = 0u64;
    while let Some(chunk) = stream.next_chunk().map_err(|e| Error::Source { path: display.clone(), source: e })? {
        size += chunk.len() as u64;
        progress.bytes(chunk.len() as u64);
        chunks.push(writer.add(BlobKind::Data, chunk)?);
    }
    drop(stream);
    (source.finish)()?;
    let now = now_ns();
    let uid = rustix::process::geteuid().as_raw();
    let gid = rustix::process::getegid().as_raw();
    let owners = OwnerNames::default();
    let node = Node {
        uid,
        gid,
        user: owners.user_name(uid),
        group: owners.group_name(gid),
        size,
        mtime_ns: now,
        atime_ns: now,
        ctime_ns: now,
        ..Node::new(source.name.clone(), NodeKind::File { chunks, holes: Vec::new() }, 0o100_600)
    };
    let mut tree = Tree { nodes: vec![node] };
    let root = writer.add(BlobKind::Tree, tree.encode())?;
    let stats = writer.finish()?;
    let mut path = b"/".to_vec();
    path.extend_from_slice(&source.name);
    let mut snapshot = Snapshot {
        time_ns: opts.time_ns.unwrap_or(started_ns),
        hostname: opts.hostname.clone(),
        username: opts.username.clone(),
        paths: vec![path],
        tags: opts.tags.clone(),
        tree: root,
        parent: None,
        program: opts.program.clone(),
        summary: SnapshotSummary {
            files_new: 1,
            bytes_read: size,
            bytes_total: size,
            blobs_added: stats.blobs,
            bytes_added_raw: stats.raw_bytes,
            bytes_added_stored: stats.stored_bytes,
            started_ns,
            finished_ns: now_ns(),
            ..SnapshotSummary::default()
        },
        writer: repo.writer(),
    };
    let (snapshot_id, stored) =
        if opts.dry_run { (crate::id::ObjectId([0; 32]), 0) } else { repo.save_snapshot(&snapshot)? };
    snapshot.summary.bytes_added_stored += stored;
    progress.done();
    Ok(BackupOutcome { snapshot_id, snapshot, errors: Vec::new(), unused_excludes: Vec::new() })
}
