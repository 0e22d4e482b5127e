//! File content at any offset: a file's data is its chunks concatenated, laid out around its
//! holes. The chunks' plaintext lengths come from the index, so a read at any offset fetches
//! only the blobs it covers; recently read blobs stay in a cache bounded in bytes (a program
//! reading a file in 128 KiB pieces decrypts each blob once, not once per piece).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use quick_cache::Weighter;
use quick_cache::sync::Cache;

use crate::error::{Error, Result};
use crate::format::extents::Extents;
use crate::format::tree::{Node, NodeKind};
use crate::id::ChunkId;
use crate::repo::Repository;

use super::{FsError, FsResult};

/// Bytes of decrypted blobs a mount keeps unless told otherwise.
pub const DEFAULT_CACHE_BYTES: u64 = 64 << 20;

/// The least the cache is given: two of the largest chunks (8 MiB) with room to spare, so a
/// program reading a large chunk in small pieces does not decrypt it once per piece.
pub const MIN_CACHE_BYTES: u64 = 24 << 20;

/// How long a blob that could not be read is not asked for again: the kernel retries reads
/// and reads ahead, and each attempt at a missing or damaged blob looks through every index
/// segment for another copy (a whole index download from a remote repository).
const RETRY_FAILED_AFTER: Duration = Duration::from_secs(60);

/// Where a file's bytes are.
#[derive(Debug)]
pub(super) struct FileLayout {
    object: String,
    extents: Extents,
    chunks: Vec<ChunkId>,
    /// Data position of each chunk's first byte, and the data length last (`chunks.len() + 1`).
    starts: Vec<u64>,
}

impl FileLayout {
    /// The layout of file `node`; an error when a chunk is not indexed or the chunks' lengths
    /// do not add up to the file's data (a damaged tree or index).
    pub fn new(repo: &Repository, node: &Node) -> Result<Self> {
        let object = format!("file {}", String::from_utf8_lossy(&node.name));
        let NodeKind::File { chunks, holes } = &node.kind else {
            return Err(Error::InvalidInput(format!("{object} is not a regular file")));
        };
        let extents = Extents::new(holes, node.size).ok_or_else(|| Error::corrupt(&object, "invalid hole list"))?;
        let mut starts = Vec::with_capacity(chunks.len() + 1);
        let mut pos = 0u64;
        for id in chunks {
            starts.push(pos);
            pos += u64::from(repo.locate(id)?.raw_length);
        }
        starts.push(pos);
        if pos != extents.data_len() {
            return Err(Error::corrupt(
                &object,
                format!("its chunks hold {pos} bytes, its size and holes call for {}", extents.data_len()),
            ));
        }
        Ok(FileLayout { object, extents, chunks: chunks.clone(), starts })
    }

    /// Up to `len` bytes from `offset` (fewer only at the end of the file).
    pub fn read(&self, repo: &Repository, blobs: &BlobCache, offset: u64, len: u64) -> FsResult<Vec<u8>> {
        let mut out = Vec::new();
        for (run, data) in self.extents.segments(offset, len) {
            match data {
                None => out.resize(out.len() + usize::try_from(run).unwrap_or(usize::MAX), 0),
                Some(pos) => self.read_data(repo, blobs, pos, run, &mut out)?,
            }
        }
        Ok(out)
    }

    /// Appends data bytes `pos .. pos + len` to `out`.
    fn read_data(
        &self,
        repo: &Repository,
        blobs: &BlobCache,
        mut pos: u64,
        len: u64,
        out: &mut Vec<u8>,
    ) -> FsResult<()> {
        let end = pos + len;
        // The chunk holding `pos`: the last one starting at or before it.
        let mut i = self.starts.partition_point(|&s| s <= pos).saturating_sub(1);
        while pos < end {
            let (Some(&id), Some(&start), Some(&next)) =
                (self.chunks.get(i), self.starts.get(i), self.starts.get(i + 1))
            else {
                return Err(Error::corrupt(&self.object, "a read past its last chunk").into());
            };
            let blob = blobs.get(repo, &id)?;
            if blob.len() as u64 != next - start {
                return Err(Error::corrupt(
                    &self.object,
                    format!("chunk {} holds {} bytes, the index says {}", id.short(), blob.len(), next - start),
                )
                .into());
            }
            let from = pos - start;
            let to = (end - start).min(next - start);
            out.extend_from_slice(blob.get(from as usize..to as usize).unwrap_or_default());
            pos = start + to;
            i += 1;
        }
        Ok(())
    }
}

#[derive(Debug, Clone)]
struct ByLength;

impl Weighter<ChunkId, Arc<Vec<u8>>> for ByLength {
    fn weight(&self, _id: &ChunkId, blob: &Arc<Vec<u8>>) -> u64 {
        // Never 0: an empty blob still takes an entry.
        blob.len().max(1) as u64
    }
}

/// Decrypted blobs, recently used first out of the bound; readers of one blob at the same time
/// share one fetch. Blobs that could not be read are remembered with their error for a while.
pub(super) struct BlobCache {
    cache: Cache<ChunkId, Arc<Vec<u8>>, ByLength>,
    failed: Mutex<HashMap<ChunkId, (Instant, Arc<Error>)>>,
}

impl std::fmt::Debug for BlobCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobCache").field("bytes", &self.cache.weight()).finish()
    }
}

impl BlobCache {
    /// A cache of at most `bytes` bytes of blobs.
    pub fn new(bytes: u64) -> Self {
        // quick_cache sizes its tables from an item estimate: blobs average about 1 MiB.
        let bytes = bytes.max(MIN_CACHE_BYTES);
        let items = usize::try_from(bytes >> 20).unwrap_or(usize::MAX).max(16);
        BlobCache { cache: Cache::with_weighter(items, bytes, ByLength), failed: Mutex::new(HashMap::new()) }
    }

    fn failed(&self) -> std::sync::MutexGuard<'_, HashMap<ChunkId, (Instant, Arc<Error>)>> {
        self.failed.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Blob `id`, from the cache or the repository (verified against its id). A blob that
    /// failed less than a minute ago fails again with the same error, without a fetch.
    pub fn get(&self, repo: &Repository, id: &ChunkId) -> FsResult<Arc<Vec<u8>>> {
        if let Some((at, error)) = self.failed().get(id)
            && at.elapsed() < RETRY_FAILED_AFTER
        {
            return Err(FsError::Repository(error.clone()));
        }
        let got = self.cache.get_or_insert_with(id, || repo.read_blob(id).map(Arc::new));
        match got {
            Ok(blob) => {
                self.failed().remove(id);
                Ok(blob)
            }
            Err(e) => {
                let e = Arc::new(e);
                let mut failed = self.failed();
                failed.retain(|_, (at, _)| at.elapsed() < RETRY_FAILED_AFTER);
                failed.insert(*id, (Instant::now(), e.clone()));
                Err(FsError::Repository(e))
            }
        }
    }
}
