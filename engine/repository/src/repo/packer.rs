//! Pack assembly. Sealed blobs collect per kind (data and tree blobs never share a pack); a
//! pack is closed near its target size, just below a size class boundary; its blobs are
//! shuffled so their order says nothing about file order; a sealed header (padded so the
//! pack's size is a size class, and bound to the blobs by their hash) and a locator are
//! appended; and the pack is stored under the BLAKE3 of its bytes. Storing happens on the
//! [`Uploader`]'s threads; a pack counts as finished (and may be indexed) only once it is
//! stored.

use std::sync::{Arc, Mutex, MutexGuard};

use crate::crypto::shuffle;
use crate::error::{Error, Result};
use crate::format::BlobKind;
use crate::format::index::IndexedPack;
use crate::format::pack::{self, ClosedPack, PackBlob};
use crate::format::padding;
use crate::format::sealer::Sealer;
use crate::id::ChunkId;
use crate::storage::{OwnedParts, PutMode, Storage};

use super::pack_buffers::{PackBuf, PackBuffers};
use super::pack_name;
use super::tree_packs::TreePackCache;
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
    buf: Option<PackBuf>,
    /// What the blobs' header entries take, but for their offsets ([`entry_len`]).
    entries_len: usize,
}

/// A closed pack's bytes: its blobs (ranges of the buffer, in pack order), header, locator.
#[derive(Debug)]
struct PackBytes {
    buf: PackBuf,
    ranges: Vec<std::ops::Range<usize>>,
    header: Vec<u8>,
    locator: Vec<u8>,
}

impl OwnedParts for PackBytes {
    fn parts(&self) -> Vec<&[u8]> {
        let mut parts: Vec<&[u8]> = self.ranges.iter().map(|r| self.buf.get(r.clone()).unwrap_or_default()).collect();
        parts.push(&self.header);
        parts.push(&self.locator);
        parts
    }
}

/// Collects sealed blobs into packs and stores them.
#[derive(Debug)]
pub(crate) struct Packer {
    storage: Arc<dyn Storage>,
    /// Seals each pack's header and locator, as the blobs were sealed.
    sealer: Arc<Sealer>,
    target: usize,
    open: Mutex<[OpenPack; 2]>,
    finished: Arc<Mutex<Vec<IndexedPack>>>,
    uploader: Uploader,
    /// Buffers for data packs: the one being filled, and those being uploaded (remote).
    buffers: Arc<PackBuffers>,
    /// Where tree packs are kept as they are stored, when the client keeps them.
    tree_packs: Option<Arc<TreePackCache>>,
}

/// Blobs from which a pack closes at its next size class boundary whatever its size, and the
/// most a pack holds. Without them, small blobs (small files that compress well, 120 bytes
/// sealed) put 184,000 blobs in one 22 MB pack, and what grows with a pack's blobs grew with
/// it: its header, its index segment (applied whole, in one batch) and its id list in the
/// client's cache, which lookups of its blobs read whole (5.9 MB).
pub(crate) const SOFT_MAX_BLOBS: usize = 16_384;
/// See [`SOFT_MAX_BLOBS`].
pub(crate) const MAX_BLOBS: usize = 2 * SOFT_MAX_BLOBS;

/// Bytes of `n` as a varint (postcard's LEB128).
fn varint_len(n: u64) -> usize {
    (64 - (n | 1).leading_zeros() as usize).div_ceil(7)
}

/// A header entry's bytes (SPEC §10) but for its offset: its kind, its id, and its length and
/// plaintext length as varints.
fn entry_len(len: usize, raw_length: u32) -> usize {
    1 + 32 + varint_len(len as u64) + varint_len(u64::from(raw_length))
}

/// The header payload's bytes for `blobs` blobs whose entries take `entries_len` bytes but
/// for their offsets, in a blob area of `area` bytes. The offsets depend on the shuffled
/// order, so they count as expected: an offset drawn evenly from the area takes one byte, and
/// one more for each of 2^7, 2^14, 2^21 and 2^28 it reaches. Blobs of similar sizes (what
/// makes a pack of thousands) land within a few hundred bytes of it, far inside the window
/// in which a pack closes ([`Packer::closes`]); the 48 bytes per entry assumed before made
/// packs of 16,384 small blobs 150 KB larger than they were, several size-class steps.
fn header_len(blobs: usize, entries_len: usize, area: usize) -> usize {
    let area = area.max(1) as f64;
    let per_offset: f64 =
        1.0 + [1u64 << 7, 1 << 14, 1 << 21, 1 << 28].iter().map(|t| (1.0 - *t as f64 / area).max(0.0)).sum::<f64>();
    1 + varint_len(blobs as u64) + entries_len + (blobs as f64 * per_offset).ceil() as usize
}

/// The unpadded size of a pack with `area` bytes of `blobs` blobs whose header entries take
/// `entries_len` bytes but for their offsets ([`header_len`]), and its padded size (SPEC §10).
fn pack_sizes(overhead: usize, area: usize, blobs: usize, entries_len: usize) -> (u64, u64) {
    let header = header_len(blobs, entries_len, area);
    let unpadded = (area + overhead + padding::LENGTH_LEN + header + overhead + pack::LOCATOR_PLAINTEXT_LEN) as u64;
    (unpadded, pack::padded_size_with(overhead, area as u64, header).max(unpadded))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Packer {
    /// Packs are stored over `connections` upload threads (0: in the calling thread).
    pub(crate) fn new(
        storage: Arc<dyn Storage>,
        sealer: Arc<Sealer>,
        target: usize,
        connections: usize,
    ) -> Result<Self> {
        // Buffers for the pack being filled and for each upload in progress. A backend that
        // releases the bytes once written to the page cache (before the fsync) gets one: the
        // producers wait for a pack's write (a few milliseconds), not for its fsync. That
        // measured 84-87 MiB peak RSS instead of 102-104 with two, within 1-4% of the time.
        let buffers = if storage.holds_bytes_until_stored() { connections + 1 } else { 1 };
        Ok(Packer {
            storage,
            sealer,
            target,
            open: Mutex::default(),
            finished: Arc::default(),
            uploader: Uploader::new(connections)?,
            // Room for a pack at its target plus a blob or two: a blob that does not fit
            // closes the pack early rather than doubling the buffer.
            buffers: PackBuffers::new(buffers, target + target / 4),
            tree_packs: None,
        })
    }

    /// Keeps a copy of every tree pack stored in `cache` (see [`TreePackCache`]).
    pub(crate) fn keeping_tree_packs(self, cache: Option<Arc<TreePackCache>>) -> Self {
        Packer { tree_packs: cache, ..self }
    }

    /// Packs handed to the uploads and not stored yet.
    pub(crate) fn uploads_pending(&self) -> usize {
        self.uploader.pending()
    }

    /// Adds a sealed blob; hands the pack to the uploader when it is full (blocking while
    /// every upload connection is busy). Data packs fill pooled buffers, so a producer also
    /// waits while every buffer is being uploaded: that bounds the memory of data packs to
    /// `connections + 1` buffers. Tree packs (small, and filled while directories finish) use
    /// buffers of their own that grow as needed.
    pub(crate) fn add(&self, kind: BlobKind, id: ChunkId, raw_length: u32, sealed: Vec<u8>) -> Result<()> {
        loop {
            let mut open = lock(&self.open);
            let [data, tree] = &mut *open;
            let slot = match kind {
                BlobKind::Data => data,
                BlobKind::Tree => tree,
            };
            let room = slot.buf.as_ref().map_or(0, |b| b.capacity() - b.len());
            let len = slot.buf.as_ref().map_or(0, |b| b.len());
            // Closed before the target when the blob does not fit: growing a pooled buffer
            // would double it. Past the target, closed before a blob that would move the pack
            // into the next size class: the room left in this one is padding either way.
            let outgrows = sealed.len() > room && kind == BlobKind::Data;
            let blobs = slot.blobs.len();
            let entry = entry_len(sealed.len(), raw_length);
            let grows_class = self.moves_class(len, blobs, slot.entries_len, sealed.len(), entry);
            if blobs > 0 && (outgrows || blobs >= MAX_BLOBS || grows_class) {
                let closed = std::mem::take(slot);
                drop(open);
                self.write(closed)?;
                continue;
            }
            let buf = match (&mut slot.buf, kind) {
                (Some(buf), _) => buf,
                (none, BlobKind::Tree) => none.insert(PackBuf::default()),
                // Waits, holding the lock, while every buffer is being uploaded: other
                // producers would wait for the same buffer anyway.
                (none, BlobKind::Data) => none.insert(self.buffers.take()),
            };
            slot.blobs.push(PendingBlob { kind, id, raw_length, start: buf.len(), len: sealed.len() });
            slot.entries_len += entry;
            buf.extend_from_slice(&sealed);
            let full = self.closes(buf.len(), slot.blobs.len(), slot.entries_len).then(|| std::mem::take(slot));
            drop(open);
            return match full {
                Some(pack) => self.write(pack),
                None => Ok(()),
            };
        }
    }

    /// Whether a pack past its target, with `area` bytes of `blobs` blobs (header entries of
    /// `entries_len` bytes but for offsets), would move into a larger size class with one more
    /// blob of `more` bytes (an entry of `entry` bytes).
    fn moves_class(&self, area: usize, blobs: usize, entries_len: usize, more: usize, entry: usize) -> bool {
        let o = self.sealer.overhead();
        area >= self.target
            && pack_sizes(o, area + more, blobs + 1, entries_len + entry).1 > pack_sizes(o, area, blobs, entries_len).1
    }

    /// Whether a pack with `area` bytes of `blobs` blobs is closed now: from 7/8 of the target
    /// (or [`SOFT_MAX_BLOBS`] blobs), once it ends within 1/16 of its class's step below the
    /// class boundary (a pack is padded to the boundary, so that keeps padding under 0.2 % of a
    /// pack; closing at the target wasted 1.5 % on average). Past the target a pack takes only
    /// blobs that keep its class ([`Packer::moves_class`]), so it never grows by more than a
    /// step; and no blob past [`MAX_BLOBS`].
    fn closes(&self, area: usize, blobs: usize, entries_len: usize) -> bool {
        let (unpadded, padded) = pack_sizes(self.sealer.overhead(), area, blobs, entries_len);
        (area >= self.target - self.target / 8 || blobs >= SOFT_MAX_BLOBS)
            && padded - unpadded <= padding::max_padding(unpadded) / 16
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
        // Shuffled with the OS CSPRNG: blob order must not reveal file order.
        shuffle(&mut pack.blobs)?;
        // The pack is written as parts (blobs in their shuffled order, header, locator),
        // slices of the pack's buffer: no second copy of it. Closing hashes the blobs once,
        // for the header's binding and the pack id both.
        let buf = pack.buf.unwrap_or_default();
        let ranges: Vec<std::ops::Range<usize>> = pack.blobs.iter().map(|b| b.start..b.start + b.len).collect();
        let parts: Vec<PackBlob<'_>> = pack
            .blobs
            .iter()
            .zip(&ranges)
            .map(|(b, r)| PackBlob {
                kind: b.kind,
                id: b.id,
                raw_length: b.raw_length,
                sealed: buf.get(r.clone()).unwrap_or_default(),
            })
            .collect();
        let closed =
            pack::close_with(self.sealer.overhead(), &parts, |kind, name, plain| self.sealer.seal(kind, name, plain))?;
        drop(parts);
        let ClosedPack { blobs: entries, header, locator, id, size } = closed;
        let bytes = PackBytes { buf, ranges, header, locator };
        let storage = Arc::clone(&self.storage);
        let finished = Arc::clone(&self.finished);
        let keep = self.tree_packs.clone().filter(|_| entries.first().is_some_and(|e| e.kind == BlobKind::Tree));
        self.uploader.submit(Box::new(move || {
            if let Some(cache) = keep {
                cache.keep(&id, &bytes.parts());
            }
            let name = pack_name(&id);
            // The storage drops the bytes (the buffer goes back to the pool) as soon as it
            // can: locally, before the fsync.
            match storage.put_owned(&name, Box::new(bytes), PutMode::CreateNew) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Key32;
    use crate::format::envelope;
    use crate::id::PackId;
    use crate::storage::{LocalStorage, MemStorage};
    use std::collections::HashMap;

    fn test_sealer() -> Arc<Sealer> {
        Arc::new(Sealer::Key { epoch: 1, key: Key32::from_bytes([7; 32]) })
    }

    /// Four producers, one upload connection, blobs of up to 40 KiB into 64 KiB packs: every
    /// blob lands in exactly one stored pack (no deadlock over the two pooled buffers), data
    /// and tree blobs never share a pack, and a pack that would outgrow its buffer is closed
    /// before the blob instead.
    #[test]
    fn concurrent_producers_fill_bounded_packs() {
        let target = 64 * 1024;
        let dir = tempfile::tempdir().unwrap();
        // Memory storage holds a pack's bytes until stored (connections + 1 buffers); local
        // storage frees them once written (one buffer, however many connections).
        let storages: [Arc<dyn Storage>; 2] = [Arc::new(MemStorage::new()), Arc::new(LocalStorage::new(dir.path()))];
        for (storage, connections) in storages.iter().flat_map(|s| [0, 1, 3].map(|c| (s.clone(), c))) {
            let packer = Packer::new(storage.clone(), test_sealer(), target, connections).unwrap();
            let sent: HashMap<ChunkId, (BlobKind, usize)> = std::thread::scope(|s| {
                let workers: Vec<_> = (0..4u8)
                    .map(|t| {
                        let packer = &packer;
                        s.spawn(move || {
                            let mut sent = HashMap::new();
                            for i in 0..120u32 {
                                let kind = if i % 10 == 0 { BlobKind::Tree } else { BlobKind::Data };
                                let len = 100 + (i as usize * 7919 + t as usize * 104_729) % 40_000;
                                let mut id = [t; 32];
                                id[..4].copy_from_slice(&i.to_le_bytes());
                                let id = ChunkId(id);
                                packer.add(kind, id, len as u32, vec![t; len]).unwrap();
                                sent.insert(id, (kind, len));
                            }
                            sent
                        })
                    })
                    .collect();
                workers.into_iter().flat_map(|w| w.join().unwrap()).collect()
            });
            packer.flush().unwrap();
            let packs = packer.take_finished();
            let mut seen = HashMap::new();
            for p in &packs {
                let stored = storage.get(&pack_name(&p.pack)).unwrap();
                assert_eq!(stored.len() as u64, p.size);
                assert_eq!(PackId::of(&stored), p.pack, "stored under the hash of its bytes");
                let kinds: Vec<BlobKind> = p.blobs.iter().map(|b| b.kind).collect();
                assert!(kinds.windows(2).all(|w| w[0] == w[1]), "data and tree blobs share a pack");
                let body: u64 = p.blobs.iter().map(|b| u64::from(b.length)).sum();
                if kinds[0] == BlobKind::Data && p.blobs.len() > 1 {
                    assert!(body <= (target + target / 4) as u64, "a pack outgrew its buffer: {body}");
                }
                for b in &p.blobs {
                    assert!(seen.insert(b.id, (b.kind, b.length as usize)).is_none(), "a blob stored twice");
                }
            }
            assert_eq!(seen, sent, "{connections} connections: every blob stored once");
        }
    }

    /// Packs close just below a size class boundary near their target, so padding is a small
    /// share of them, and every pack's size is its class.
    #[test]
    fn packs_close_near_a_class_boundary() {
        let target = 1 << 20;
        let storage: Arc<dyn Storage> = Arc::new(MemStorage::new());
        let packer = Packer::new(storage.clone(), test_sealer(), target, 0).unwrap();
        let mut x = 12_345u64;
        for i in 0..3000u32 {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            let len = 100 + (x >> 33) as usize % 30_000;
            let mut id = [0; 32];
            id[..4].copy_from_slice(&i.to_le_bytes());
            packer.add(BlobKind::Data, ChunkId(id), 1, vec![1; len]).unwrap();
        }
        packer.flush().unwrap();
        let packs = packer.take_finished();
        assert!(packs.len() > 30, "{} packs", packs.len());
        let (mut total, mut padding) = (0, 0);
        for p in &packs {
            assert_eq!(p.size, padding::padme(p.size));
            let area: u64 = p.blobs.iter().map(|b| u64::from(b.length)).sum();
            let header = pack::PackHeader { blobs: p.blobs.clone() }.encode().len();
            let unpadded = area + (envelope::OVERHEAD + padding::LENGTH_LEN + header + pack::LOCATOR_LEN) as u64;
            assert!(
                area as usize <= target + target / 4 && area as usize >= target - target / 8
                    || p == packs.last().unwrap()
            );
            total += p.size;
            padding += p.size - unpadded;
        }
        assert!(padding * 100 < total, "{padding} bytes of padding in {total}");
    }

    /// Tiny blobs close a pack by count: from [`SOFT_MAX_BLOBS`] at a class boundary (so
    /// little of it is padding, whatever the blobs' sizes), and never past [`MAX_BLOBS`],
    /// however far below its target. The header's size as estimated is within a few hundred
    /// bytes of the real one.
    #[test]
    fn packs_of_tiny_blobs_close_by_count() {
        for (min, spread) in [(20, 100), (60, 100), (100, 50), (300, 7)] {
            let storage: Arc<dyn Storage> = Arc::new(MemStorage::new());
            let packer = Packer::new(storage.clone(), test_sealer(), 16 << 20, 0).unwrap();
            let n = 3 * SOFT_MAX_BLOBS as u32 + 1000;
            let mut x = 99u64;
            for i in 0..n {
                x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                let mut id = [0; 32];
                id[..4].copy_from_slice(&i.to_le_bytes());
                let len = min + (x >> 33) as usize % spread;
                packer.add(BlobKind::Data, ChunkId(id), (x >> 40) as u32 % 5000, vec![1; len]).unwrap();
            }
            packer.flush().unwrap();
            let packs = packer.take_finished();
            let (last, full) = packs.split_last().unwrap();
            assert!(full.len() >= 2, "{min}+{spread}: {} packs", packs.len());
            for p in full {
                assert!((SOFT_MAX_BLOBS..=MAX_BLOBS).contains(&p.blobs.len()), "{} blobs", p.blobs.len());
                let area: u64 = p.blobs.iter().map(|b| u64::from(b.length)).sum();
                let header = pack::PackHeader { blobs: p.blobs.clone() }.encode().len();
                let entries: usize = p.blobs.iter().map(|b| entry_len(b.length as usize, b.raw_length)).sum();
                let estimate = header_len(p.blobs.len(), entries, area as usize);
                assert!(estimate.abs_diff(header) < 512, "header of {header} bytes estimated at {estimate}");
                let unpadded = area + (envelope::OVERHEAD + padding::LENGTH_LEN + header + pack::LOCATOR_LEN) as u64;
                let padding = p.size - unpadded;
                assert!(
                    padding <= padding::max_padding(unpadded) / 16 + 512,
                    "{min}+{spread}: {padding} bytes of padding in a pack of {}",
                    p.size
                );
            }
            assert!(last.blobs.len() <= MAX_BLOBS);
            let stored: usize = packs.iter().map(|p| p.blobs.len()).sum();
            assert_eq!(stored, n as usize, "every blob stored once");
        }
    }
}
