//! File contents, pack by pack. For a batch of files, every chunk is located in the index and
//! grouped by pack; each pack is then read once, in as few ranged reads as its needed blobs
//! allow (neighbours less than `GAP` apart share a read). Each blob is opened and verified
//! against its keyed id once, however many files or places use it, and written with `pwrite`
//! at every place it belongs, around the files' holes.
//!
//! The packs go to the workers largest job first (bytes read plus bytes written), each worker
//! taking the next as it finishes one: a pack whose blobs are written to many files (copies of
//! one library, say) starts early instead of running alone at the end. A file is created (at
//! its full size, so pieces can land anywhere in it) by the first worker that writes to it,
//! so creating files, which costs the file system a good deal, overlaps with the writing
//! instead of preceding it in one thread. Files no blob is written to (empty ones) are created
//! at the end.
//!
//! Every file is written under a temporary name beside its final one ([`temp_name`]); the
//! caller renames it into place once it is complete. A blob that is missing or damaged fails
//! only the files that use it: their temporary files are removed, nothing wrong reaches a
//! final name, and the rest of the restore goes on. A failure to write the target (a full
//! disk, say) stops the restore.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use crate::error::{Error, Result};
use crate::format::tree::{Node, NodeKind};
use crate::hostfs;
use crate::id::{ChunkId, PackId};
use crate::index::BlobLocation;
use crate::repo::pack_name;

use super::recycle::Recycler;
use super::{Restorer, temp_name};
use crate::format::extents::Extents;

/// Blobs of one pack closer than this share one ranged read.
const GAP: u64 = 256 * 1024;
/// The largest ranged read.
const MAX_RANGE: u64 = 32 << 20;
/// Target files kept open while one pack is written out.
const OPEN_FILES: usize = 32;

/// A regular file to write.
#[derive(Debug, Clone)]
pub(super) struct FileJob {
    /// Path below the target.
    pub rel: Vec<u8>,
    /// Its node (a file).
    pub node: Node,
}

/// One place a blob's bytes go.
#[derive(Debug, Clone, Copy)]
struct Use {
    job: usize,
    data_pos: u64,
}

#[derive(Debug)]
struct BlobRef {
    id: ChunkId,
    loc: BlobLocation,
    uses: Vec<Use>,
}

/// Why a file could not be written.
#[derive(Debug, Clone)]
pub(super) struct Failure {
    pub message: String,
    /// A blob it needs is not in the index.
    pub not_indexed: bool,
}

/// Failures by job.
type Failures = Mutex<HashMap<usize, Failure>>;

/// Blob copies that could not be read or opened: blob -> the packs that failed it.
pub(super) type BadCopies = HashMap<ChunkId, Vec<PackId>>;

fn bad_copy(bad: &Mutex<BadCopies>, id: ChunkId, pack: PackId) {
    let mut bad = bad.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let packs = bad.entry(id).or_default();
    if !packs.contains(&pack) {
        packs.push(pack);
    }
}

/// What writing a batch did.
pub(super) struct Written {
    /// Content bytes written.
    pub bytes: u64,
    /// Files not written completely, by job index (the caller removes their temporary
    /// files and reports them).
    pub failures: HashMap<usize, Failure>,
    /// The blob copies that failed them (for trying other copies).
    pub bad_copies: BadCopies,
}

fn fail(failures: &Failures, job: usize, why: String) {
    let failure = Failure { message: why, not_indexed: false };
    failures.lock().unwrap_or_else(std::sync::PoisonError::into_inner).entry(job).or_insert(failure);
}

fn fail_with(failures: &Failures, job: usize, e: &Error) {
    let failure = Failure { message: e.to_string(), not_indexed: super::not_indexed(e) };
    failures.lock().unwrap_or_else(std::sync::PoisonError::into_inner).entry(job).or_insert(failure);
}

fn failed(failures: &Failures, job: usize) -> bool {
    failures.lock().unwrap_or_else(std::sync::PoisonError::into_inner).contains_key(&job)
}

/// Why a file could not be created, kept for the other workers that need it: the system's
/// error kind and message, without the path (which their error names again).
type CreateFailure = (std::io::ErrorKind, String);

/// The files of a batch, each created once, by whichever worker needs it first.
struct Targets<'j> {
    jobs: &'j [FileJob],
    /// Per job: created at full size (`Ok`), or why not.
    created: Vec<OnceLock<std::result::Result<(), CreateFailure>>>,
}

impl<'j> Targets<'j> {
    fn new(jobs: &'j [FileJob]) -> Self {
        Targets { jobs, created: jobs.iter().map(|_| OnceLock::new()).collect() }
    }

    /// Job `i`'s file, open for writing: created (or truncated) at its full size if this is
    /// the first use, else opened.
    fn open(&self, r: &Restorer<'_>, i: usize) -> Result<File> {
        let (Some(job), Some(slot)) = (self.jobs.get(i), self.created.get(i)) else {
            return Err(Error::InvalidInput(format!("no file job {i}")));
        };
        let mut fresh = None;
        let state = slot.get_or_init(|| match create(r, job) {
            Ok(file) => {
                fresh = Some(file);
                Ok(())
            }
            Err(Error::Target { source, .. }) => Err((source.kind(), source.to_string())),
            Err(other) => Err((std::io::ErrorKind::Other, other.to_string())),
        });
        match (fresh, state) {
            (Some(file), _) => Ok(file),
            (None, Ok(())) => {
                let (dir, name) = r.parent(&job.rel)?;
                hostfs::open_write_at(dir.as_fd(), &temp_name(name)).map_err(r.err(&job.rel))
            }
            (None, Err((kind, why))) => {
                Err(Error::Target { path: r.display(&job.rel), source: std::io::Error::new(*kind, why.clone()) })
            }
        }
    }

    /// Removes the temporary files this batch created: after a failure that stops the
    /// restore, none is left half written, and every final name keeps what was there.
    fn remove_created(&self, r: &Restorer<'_>) {
        for (job, slot) in self.jobs.iter().zip(&self.created) {
            if let Some(Ok(())) = slot.get()
                && let Ok((dir, name)) = r.parent(&job.rel)
            {
                let _ = hostfs::remove_at(dir.as_fd(), &temp_name(name));
            }
        }
    }

    /// Creates the files no worker created (no blob written to them) unless they failed.
    fn create_rest(&self, r: &Restorer<'_>, failures: &Failures) -> Result<()> {
        for (i, slot) in self.created.iter().enumerate() {
            if slot.get().is_none() && !failed(failures, i) {
                self.open(r, i)?;
            }
        }
        Ok(())
    }
}

/// Creates (or truncates) `job`'s temporary file at its full size: holes stay unwritten.
fn create(r: &Restorer<'_>, job: &FileJob) -> Result<File> {
    let (dir, name) = r.parent(&job.rel)?;
    let file = hostfs::create_file_at(dir.as_fd(), &temp_name(name)).map_err(r.err(&job.rel))?;
    file.set_len(job.node.size).map_err(r.err(&job.rel))?;
    Ok(file)
}

/// The blobs to read from one pack, by offset, and the bytes restoring them reads and writes.
struct PackWork {
    pack: PackId,
    blobs: BTreeMap<u32, BlobRef>,
    cost: u64,
}

/// Writes the contents of `jobs`, each blob from the copy `copies` names or else from the one
/// the index cache names. Every file of the batch not among the failures exists (under its
/// temporary name) at its full size when this returns. On an error that stops the restore (a
/// full disk, say) the files it created are removed first.
pub(super) fn write_files(
    r: &Restorer<'_>,
    jobs: &[FileJob],
    copies: &HashMap<ChunkId, BlobLocation>,
) -> Result<Written> {
    let failures: Failures = Mutex::default();
    let bad: Mutex<BadCopies> = Mutex::default();
    let mut layouts: Vec<Option<Extents>> = Vec::with_capacity(jobs.len());
    for (i, job) in jobs.iter().enumerate() {
        let NodeKind::File { holes, .. } = &job.node.kind else {
            layouts.push(None);
            continue;
        };
        let layout = Extents::new(holes, job.node.size);
        if layout.is_none() {
            fail(&failures, i, "the snapshot's hole list is invalid".into());
        }
        layouts.push(layout);
    }
    let mut packs: HashMap<PackId, BTreeMap<u32, BlobRef>> = HashMap::new();
    for (i, job) in jobs.iter().enumerate() {
        let (NodeKind::File { chunks, .. }, Some(Some(layout))) = (&job.node.kind, layouts.get(i)) else {
            continue;
        };
        let mut data_pos = 0u64;
        for id in chunks {
            match copies.get(id).map_or_else(|| r.repo.locate(id), |loc| Ok(*loc)) {
                Ok(loc) => {
                    let blob = packs.entry(loc.pack).or_default().entry(loc.offset).or_insert_with(|| BlobRef {
                        id: *id,
                        loc,
                        uses: Vec::new(),
                    });
                    blob.uses.push(Use { job: i, data_pos });
                    data_pos += u64::from(loc.raw_length);
                }
                Err(e) => {
                    fail_with(&failures, i, &e);
                    break;
                }
            }
        }
        if data_pos != layout.data_len() && !failed(&failures, i) {
            fail(
                &failures,
                i,
                format!("its chunks hold {data_pos} bytes but the snapshot records {} of data", layout.data_len()),
            );
        }
    }
    let mut work: Vec<PackWork> = packs
        .into_iter()
        .map(|(pack, blobs)| {
            let cost = blobs
                .values()
                .map(|b| u64::from(b.loc.length) + u64::from(b.loc.raw_length) * b.uses.len() as u64)
                .sum();
            PackWork { pack, blobs, cost }
        })
        .collect();
    // Largest first; ties by pack id, so runs are repeatable.
    work.sort_by(|a, b| b.cost.cmp(&a.cost).then(a.pack.cmp(&b.pack)));
    let targets = Targets::new(jobs);
    let written = AtomicU64::new(0);
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let outcomes = r.repo.with_io_pool(|| {
        rayon::broadcast(|_| -> Result<()> {
            let mut recycler = Recycler::default();
            while !stop.load(Ordering::Relaxed) {
                let Some(w) = work.get(next.fetch_add(1, Ordering::Relaxed)) else { break };
                // A stop request ends the batch like an error: the files it created are removed,
                // so every file left under its final name is complete.
                let step = r
                    .repo
                    .check_interrupted("the restore stopped; the files it had not finished were removed")
                    .and_then(|()| write_pack(r, &targets, &layouts, w, (&failures, &bad), &written, &mut recycler));
                if let Err(e) = step {
                    stop.store(true, Ordering::Relaxed);
                    return Err(e);
                }
            }
            recycler.finish();
            Ok(())
        })
    });
    if let Err(e) = outcomes.into_iter().collect::<Result<()>>().and_then(|()| targets.create_rest(r, &failures)) {
        targets.remove_created(r);
        return Err(e);
    }
    Ok(Written {
        bytes: written.into_inner(),
        failures: failures.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner),
        bad_copies: bad.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner),
    })
}

/// Reads the needed blobs of one pack and writes them everywhere they belong.
fn write_pack(
    r: &Restorer<'_>,
    targets: &Targets<'_>,
    layouts: &[Option<Extents>],
    work: &PackWork,
    (failures, bad): (&Failures, &Mutex<BadCopies>),
    written: &AtomicU64,
    recycler: &mut Recycler,
) -> Result<()> {
    let name = pack_name(&work.pack);
    let mut files: HashMap<usize, Arc<File>> = HashMap::new();
    let mut range: Vec<&BlobRef> = Vec::new();
    let flush = |range: &mut Vec<&BlobRef>,
                 files: &mut HashMap<usize, Arc<File>>,
                 recycler: &mut Recycler|
     -> Result<()> {
        let (Some(first), Some(last)) = (range.first(), range.last()) else { return Ok(()) };
        let start = u64::from(first.loc.offset);
        let end = u64::from(last.loc.offset) + u64::from(last.loc.length);
        let bytes = match r.repo.read_pack_range(&work.pack, start, end - start) {
            Ok(b) => b,
            Err(e) => {
                for b in range.iter() {
                    bad_copy(bad, b.id, work.pack);
                    for u in &b.uses {
                        fail(failures, u.job, e.to_string());
                    }
                }
                range.clear();
                return Ok(());
            }
        };
        for b in range.drain(..) {
            if b.uses.iter().all(|u| failed(failures, u.job)) {
                continue;
            }
            let from = (u64::from(b.loc.offset) - start) as usize;
            let sealed = bytes.get(from..from + b.loc.length as usize).unwrap_or_default();
            let plain = match r.repo.open_blob(&b.id, &b.loc, &name, sealed) {
                Ok(p) => p,
                Err(e) => {
                    bad_copy(bad, b.id, work.pack);
                    for u in &b.uses {
                        fail(failures, u.job, e.to_string());
                    }
                    continue;
                }
            };
            for u in &b.uses {
                let (Some(job), Some(Some(layout))) = (targets.jobs.get(u.job), layouts.get(u.job)) else { continue };
                if failed(failures, u.job) {
                    continue;
                }
                // A pack of small files touches thousands of them: keep only a few open.
                if files.len() >= OPEN_FILES && !files.contains_key(&u.job) {
                    files.clear();
                }
                let file = match files.entry(u.job) {
                    std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
                    std::collections::hash_map::Entry::Vacant(v) => v.insert(Arc::new(targets.open(r, u.job)?)),
                };
                let mut rest: &[u8] = &plain;
                for (off, len) in layout.pieces(u.data_pos, plain.len() as u64) {
                    let (head, tail) = rest.split_at((len as usize).min(rest.len()));
                    file.write_all_at(head, off).map_err(r.err(&job.rel))?;
                    recycler.written(file, job.node.size, off, head.len() as u64);
                    rest = tail;
                }
                if !rest.is_empty() {
                    fail(failures, u.job, "content is longer than the snapshot records".into());
                    continue;
                }
                written.fetch_add(plain.len() as u64, Ordering::Relaxed);
                r.progress.bytes(plain.len() as u64);
            }
        }
        Ok(())
    };
    for b in work.blobs.values() {
        if let Some(last) = range.last() {
            let last_end = u64::from(last.loc.offset) + u64::from(last.loc.length);
            let first_start = range.first().map_or(0, |f| u64::from(f.loc.offset));
            let gap = u64::from(b.loc.offset).saturating_sub(last_end);
            let len = u64::from(b.loc.offset) + u64::from(b.loc.length) - first_start;
            if gap > GAP || len > MAX_RANGE {
                flush(&mut range, &mut files, recycler)?;
            }
        }
        range.push(b);
    }
    flush(&mut range, &mut files, recycler)?;
    Ok(())
}
