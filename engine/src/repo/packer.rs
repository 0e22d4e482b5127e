//! Pack assembly. Sealed blobs collect per kind (data and tree blobs never share a pack); a
//! pack is closed once it reaches the target size, its blobs are shuffled so their order says
//! nothing about file order, a sealed header and its length are appended, and the pack is
//! stored under the BLAKE3 of its bytes. Storing happens on the [`Uploader`]'s threads; a
//! pack counts as finished (and may be indexed) only once it is stored.

use std::sync::{Arc, Mutex, MutexGuard};

use crate::crypto::{Key32, random_below};
use crate::error::{Error, Result};
use crate::format::BlobKind;
use crate::format::envelope::{self, ObjectKind};
use crate::format::index::IndexedPack;
use crate::format::pack::{BlobEntry, PackHeader};
use crate::id::{ChunkId, PackId};
use crate::storage::{PutMode, Storage};

use super::pack_name;
use super::uploader::Uploader;

/// A blob in an open pack: its sealed bytes are `buf[start..start + len]`.
#[derive(Debug)]
struct PendingBlob {
    kind: BlobKind,
    id: ChunkId,
    raw_length: u32,
    start: usize,
    len: usize,
}

/// The sealed blobs of a pack being filled, in arrival order, in one buffer: one allocation
/// per pack instead of one per blob held until the upload ends, which kept the allocator's
/// arenas fragmented and the process's memory high.
#[derive(Debug, Default)]
struct OpenPack {
    blobs: Vec<PendingBlob>,
    buf: Vec<u8>,
}

/// A closed pack's bytes: its blobs (ranges of the buffer, in pack order), header, trailer.
#[derive(Debug)]
struct PackBytes {
    buf: Vec<u8>,
    ranges: Vec<std::ops::Range<usize>>,
    header: Vec<u8>,
    trailer: [u8; 4],
}

impl PackBytes {
    fn parts(&self) -> Vec<&[u8]> {
        let mut parts: Vec<&[u8]> = self.ranges.iter().map(|r| self.buf.get(r.clone()).unwrap_or_default()).collect();
        parts.push(&self.header);
        parts.push(&self.trailer);
        parts
    }
}

/// Collects sealed blobs into packs and stores them.
#[derive(Debug)]
pub(crate) struct Packer {
    storage: Arc<dyn Storage>,
    epoch: u32,
    header_key: Key32,
    target: usize,
    open: Mutex<[OpenPack; 2]>,
    finished: Arc<Mutex<Vec<IndexedPack>>>,
    uploader: Uploader,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Packer {
    /// Packs are stored over `connections` upload threads (0: in the calling thread).
    pub(crate) fn new(
        storage: Arc<dyn Storage>,
        epoch: u32,
        header_key: Key32,
        target: usize,
        connections: usize,
    ) -> Result<Self> {
        Ok(Packer {
            storage,
            epoch,
            header_key,
            target,
            open: Mutex::default(),
            finished: Arc::default(),
            uploader: Uploader::new(connections)?,
        })
    }

    /// Adds a sealed blob; hands the pack to the uploader when it is full (blocking while
    /// every upload connection is busy).
    pub(crate) fn add(&self, kind: BlobKind, id: ChunkId, raw_length: u32, sealed: Vec<u8>) -> Result<()> {
        let full = {
            let mut open = lock(&self.open);
            let [data, tree] = &mut *open;
            let slot = match kind {
                BlobKind::Data => data,
                BlobKind::Tree => tree,
            };
            if slot.buf.capacity() == 0 {
                slot.buf.reserve(self.target + self.target / 8);
            }
            slot.blobs.push(PendingBlob { kind, id, raw_length, start: slot.buf.len(), len: sealed.len() });
            slot.buf.extend_from_slice(&sealed);
            if slot.buf.len() >= self.target { Some(std::mem::take(slot)) } else { None }
        };
        match full {
            Some(pack) => self.write(pack),
            None => Ok(()),
        }
    }

    /// Stores the packs still open and waits for every upload.
    pub(crate) fn flush(&self) -> Result<()> {
        let packs: Vec<OpenPack> = lock(&self.open).iter_mut().map(std::mem::take).collect();
        for p in packs {
            if !p.blobs.is_empty() {
                self.write(p)?;
            }
        }
        self.uploader.wait()
    }

    /// Packs stored since the last call.
    pub(crate) fn take_finished(&self) -> Vec<IndexedPack> {
        std::mem::take(&mut *lock(&self.finished))
    }

    /// Number of packs stored but not yet taken.
    pub(crate) fn finished_len(&self) -> usize {
        lock(&self.finished).len()
    }

    /// Blobs in the packs stored but not yet taken.
    pub(crate) fn finished_blobs(&self) -> usize {
        lock(&self.finished).iter().map(|p| p.blobs.len()).sum()
    }

    fn write(&self, mut pack: OpenPack) -> Result<()> {
        // Fisher-Yates with the OS CSPRNG: blob order must not reveal file order.
        for i in (1..pack.blobs.len()).rev() {
            let j = random_below(i as u64 + 1)? as usize;
            pack.blobs.swap(i, j);
        }
        // The pack is written as parts (blobs in their shuffled order, header, trailer),
        // slices of the pack's buffer: no second copy of it.
        let mut entries = Vec::with_capacity(pack.blobs.len());
        let mut ranges = Vec::with_capacity(pack.blobs.len());
        let mut offset = 0u64;
        for b in &pack.blobs {
            let at = u32::try_from(offset).map_err(|_| Error::InvalidInput("pack larger than 4 GiB".into()))?;
            let length = u32::try_from(b.len).map_err(|_| Error::InvalidInput("blob larger than 4 GiB".into()))?;
            offset += u64::from(length);
            entries.push(BlobEntry { kind: b.kind, id: b.id, offset: at, length, raw_length: b.raw_length });
            ranges.push(b.start..b.start + b.len);
        }
        let header = envelope::seal(
            &self.header_key,
            self.epoch,
            ObjectKind::PackHeader,
            b"",
            &PackHeader { blobs: entries.clone() }.encode(),
        )?;
        let trailer = u32::try_from(header.len()).unwrap_or(u32::MAX).to_le_bytes();
        let size = offset + header.len() as u64 + trailer.len() as u64;
        let bytes = PackBytes { buf: pack.buf, ranges, header, trailer };
        let id = PackId::of_parts(&bytes.parts());
        let storage = Arc::clone(&self.storage);
        let finished = Arc::clone(&self.finished);
        self.uploader.submit(Box::new(move || {
            let name = pack_name(&id);
            match storage.put_parts(&name, &bytes.parts(), PutMode::CreateNew) {
                Ok(()) => {}
                // Same bytes, same name: another writer stored this very pack already.
                Err(Error::Storage { source, .. }) if source.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
            lock(&finished).push(IndexedPack { pack: id, size, blobs: entries });
            Ok(())
        }))
    }
}
