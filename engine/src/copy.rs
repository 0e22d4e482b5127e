//! `copy`: snapshots from one repository into another with its own keys. Each repository keys
//! its chunker and its chunk ids with its own secrets (that is what keeps chunk boundaries and
//! ids from revealing content across repositories), so the same content is cut and named
//! differently in each: file content is read from the source, cut again by the destination's
//! chunker and stored as a backup would store it (blobs the destination has are not stored
//! again), and trees are rebuilt bottom-up. A source tree copied once maps to the same
//! destination tree, so the unchanged parts of later snapshots cost one lookup.
//!
//! A snapshot counts as copied when the destination has one with the same time, host, user,
//! paths and tags: copying again skips it.

use std::collections::HashMap;
use std::io::{self, Read};

use crate::error::{Error, Result};
use crate::format::BlobKind;
use crate::format::snapshot::Snapshot;
use crate::format::tree::{NodeKind, Tree};
use crate::id::{ChunkId, ObjectId};
use crate::repo::{BlobWriter, Repository};

/// One snapshot copied (or found copied already).
#[derive(Debug, Clone)]
pub struct Copied {
    /// Its id in the source.
    pub source: ObjectId,
    /// Its id in the destination; `None` when it was there already.
    pub copied: Option<ObjectId>,
}

/// Whether two snapshots are the same backup (ids and trees differ between repositories).
fn same_backup(a: &Snapshot, b: &Snapshot) -> bool {
    let sorted = |v: &[Vec<u8>]| {
        let mut v = v.to_vec();
        v.sort();
        v
    };
    let sorted_tags = |v: &[String]| {
        let mut v = v.to_vec();
        v.sort();
        v
    };
    a.time_ns == b.time_ns
        && a.writer == b.writer
        && a.hostname == b.hostname
        && a.username == b.username
        && sorted(&a.paths) == sorted(&b.paths)
        && sorted_tags(&a.tags) == sorted_tags(&b.tags)
}

/// Copies `snapshots` of `from` into `to`, oldest first, skipping those `to` has already.
pub fn copy_snapshots(from: &Repository, to: &Repository, snapshots: &[(ObjectId, Snapshot)]) -> Result<Vec<Copied>> {
    // A write-only slot's snapshot stays one (SPEC §13): checked before any data is copied.
    if to.config().format_version < crate::format::WRITE_ONLY_FORMAT_VERSION
        && let Some((id, s)) = snapshots.iter().find(|(_, s)| s.writer != crate::format::snapshot::Writer::Full)
    {
        return Err(crate::Error::InvalidInput(format!(
            "snapshot {} of {} was written by a write-only slot, and the destination (format {}) cannot hold \
             write-only snapshots; leave it out, or add a write-only slot to the destination first",
            id.short(),
            s.hostname,
            to.config().format_version
        )));
    }
    let present: Vec<Snapshot> = to.readable_snapshots()?.0.into_iter().map(|(_, s)| s).collect();
    let writer = to.blob_writer()?;
    let mut copier = Copier { from, to, writer: &writer, trees: HashMap::new(), buf: Vec::new() };
    let mut pending = Vec::new();
    let mut out = Vec::new();
    for (id, snap) in snapshots {
        if present.iter().any(|p| same_backup(p, snap)) {
            out.push(Copied { source: *id, copied: None });
            continue;
        }
        to.check_interrupted("the copy stopped before writing its snapshots")?;
        let tree = copier.tree(snap.tree)?;
        pending.push((*id, Snapshot { tree, parent: None, ..snap.clone() }));
    }
    // Invariant: content and trees are stored and indexed before any snapshot names them.
    writer.finish()?;
    for (source, snap) in pending {
        let (id, _) = to.save_snapshot(&snap)?;
        out.push(Copied { source, copied: Some(id) });
    }
    Ok(out)
}

struct Copier<'a, 'r> {
    from: &'r Repository,
    to: &'r Repository,
    writer: &'a BlobWriter<'r>,
    /// Source tree -> destination tree.
    trees: HashMap<ChunkId, ChunkId>,
    /// The chunker's read buffer, kept from file to file.
    buf: Vec<u8>,
}

impl Copier<'_, '_> {
    fn tree(&mut self, id: ChunkId) -> Result<ChunkId> {
        if let Some(done) = self.trees.get(&id) {
            return Ok(*done);
        }
        let mut tree = self.from.load_tree(&id)?;
        for node in &mut tree.nodes {
            match &node.kind {
                NodeKind::Dir { subtree } => {
                    let subtree = self.tree(*subtree)?;
                    node.kind = NodeKind::Dir { subtree };
                }
                NodeKind::File { chunks, holes } => {
                    let data_len = node.size.saturating_sub(holes.iter().map(|h| h.1).sum());
                    let chunks = self.content(chunks, data_len)?;
                    node.kind = NodeKind::File { chunks, holes: holes.clone() };
                }
                _ => {}
            }
        }
        let new = self.writer.add(BlobKind::Tree, Tree { nodes: tree.nodes }.encode())?;
        self.trees.insert(id, new);
        Ok(new)
    }

    /// The destination's chunks for the content the source's `chunks` hold.
    fn content(&mut self, chunks: &[ChunkId], data_len: u64) -> Result<Vec<ChunkId>> {
        if chunks.is_empty() {
            return Ok(Vec::new());
        }
        self.to.check_interrupted("the copy stopped before writing its snapshots")?;
        let reader = BlobsReader { repo: self.from, chunks: chunks.iter(), blob: Vec::new(), pos: 0 };
        let mut stream = self.to.chunker().stream_reusing(reader, data_len, std::mem::take(&mut self.buf));
        let mut out = Vec::new();
        loop {
            match stream.next_chunk() {
                Ok(Some(chunk)) => out.push(self.writer.add(BlobKind::Data, chunk)?),
                Ok(None) => break,
                Err(e) => return Err(engine_error(e)),
            }
        }
        self.buf = stream.into_buffer();
        Ok(out)
    }
}

/// The plaintext of a list of blobs, one after the other.
struct BlobsReader<'a> {
    repo: &'a Repository,
    chunks: std::slice::Iter<'a, ChunkId>,
    blob: Vec<u8>,
    pos: usize,
}

impl Read for BlobsReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.blob.len() {
            let Some(id) = self.chunks.next() else { return Ok(0) };
            self.blob = self.repo.read_blob(id).map_err(io::Error::other)?;
            self.pos = 0;
        }
        let n = buf.len().min(self.blob.len() - self.pos);
        buf.get_mut(..n).unwrap_or_default().copy_from_slice(self.blob.get(self.pos..self.pos + n).unwrap_or_default());
        self.pos += n;
        Ok(n)
    }
}

/// The engine error an I/O error from [`BlobsReader`] carries.
fn engine_error(e: io::Error) -> Error {
    match e.into_inner().map(|inner| inner.downcast::<Error>()) {
        Some(Ok(engine)) => *engine,
        Some(Err(other)) => Error::InvalidInput(format!("reading the source: {other}")),
        None => Error::InvalidInput("reading the source failed".into()),
    }
}
