//! A sorted file of the chunk ids in the index cache, each with its pack's ordinal, that answers
//! "is this chunk stored?" with at most one 1 KiB read, and "no" mostly from memory.
//!
//! Why not RocksDB alone: a lookup of a stored id at random in a 50M-entry cache walks the LSM
//! levels, binary-searches a table index, reads and checksums a 4 KiB data block and churns the
//! block cache: 63-150k lookups/s on one core, against 720-790k/s for one `pread` of a plain
//! sorted file (the `present_random_floor` bench). The file holds only ids and 4-byte pack
//! ordinals, so it is also a third of the size of the RocksDB data it stands in for.
//!
//! In memory: the first 8 bytes of each block's first id (the fence, 8 bytes per 28 ids) and a
//! blocked bloom filter (10 bits per id, one 64-byte line per lookup): 1.5 bytes per id, 77 MB
//! at 50M entries, read from the file at load. Ids are keyed BLAKE3 output, uniform and not
//! chosen by anyone without the repository key, so their own bytes serve as the hashes.
//!
//! The file is a client-side cache file, never repository bytes. It only answers "present" for
//! ids it was written with, and [`super::IndexCache`] keeps it a subset of its entries (see there).
//!
//! Layout (little endian): a 4 KiB header page, then the records in 1 KiB blocks (28 records
//! of 36 bytes, then 16 bytes of zeros; a block never straddles a page), then the fence
//! (8 bytes a block, big endian), then the bloom filter (64 bytes a line).
//! Header: magic (16) | generation (16) | record count (u64) | block count (u64) |
//! bloom lines (u64), the rest zeros.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

const MAGIC: &[u8; 16] = b"cairn-idfile-v1\0";
const HEADER: u64 = 4096;
const BLOCK: usize = 1024;
const RECORD: usize = 36;
/// Records per block.
pub const PER_BLOCK: usize = BLOCK / RECORD;
const LINE_WORDS: usize = 8;
/// Bloom filter bits per id: about 1% false positives with 6 probes in one 512-bit line.
const BITS_PER_ID: u64 = 10;
const PROBES: u32 = 6;

/// A generation names one written file; the cache records which one vouches for its entries.
pub type Generation = [u8; 16];

/// An open id file: the fence and bloom filter in memory, the records on disk.
#[derive(Debug)]
pub struct IdFile {
    file: File,
    count: u64,
    fence: Vec<u64>,
    bloom: Vec<u64>,
}

fn prefix(id: &[u8; 32]) -> u64 {
    id.first_chunk::<8>().map_or(0, |p| u64::from_be_bytes(*p))
}

/// The little-endian u64 at `at` in `bytes` (0 past the end).
fn word(bytes: &[u8], at: usize) -> u64 {
    bytes.get(at..).and_then(<[u8]>::first_chunk::<8>).map_or(0, |w| u64::from_le_bytes(*w))
}

/// A record's id and pack ordinal.
fn parse(record: &[u8]) -> Option<([u8; 32], u32)> {
    let (id, rest) = record.split_first_chunk::<32>()?;
    Some((*id, u32::from_le_bytes(*rest.first_chunk::<4>()?)))
}

/// The bloom line of `id` and the bit mask of each of its 8 words.
fn probes(id: &[u8; 32], lines: usize) -> (usize, [u64; LINE_WORDS]) {
    let line = ((u128::from(word(id, 8)) * lines as u128) >> 64) as usize;
    let mut h = word(id, 16);
    let mut masks = [0u64; LINE_WORDS];
    for _ in 0..PROBES {
        let bit = (h & 511) as usize;
        if let Some(m) = masks.get_mut(bit / 64) {
            *m |= 1 << (bit % 64);
        }
        h >>= 9;
    }
    (line, masks)
}

fn bloom_lines(count: u64) -> u64 {
    (count * BITS_PER_ID).div_ceil(512).max(1)
}

fn io_error(path: &Path, e: std::io::Error) -> String {
    format!("{}: {e}", path.display())
}

impl IdFile {
    /// Opens the file at `path` written as `generation`. `Ok(None)` when it is missing, of
    /// another generation, or not whole (a crash, a truncation): the caller then cannot trust
    /// what it would say and starts over.
    pub fn open(path: &Path, generation: &Generation) -> Result<Option<IdFile>, String> {
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error(path, e)),
        };
        let mut header = [0u8; 64];
        if file.read_exact_at(&mut header, 0).is_err() {
            return Ok(None);
        }
        let (count, blocks, lines) = (word(&header, 32), word(&header, 40), word(&header, 48));
        let records_end = blocks.checked_mul(BLOCK as u64).and_then(|b| b.checked_add(HEADER));
        let fence_end = blocks.checked_mul(8).and_then(|f| records_end?.checked_add(f));
        let total = lines.checked_mul(64).and_then(|l| fence_end?.checked_add(l));
        let len = file.metadata().map_err(|e| io_error(path, e))?.len();
        let whole = header.get(..16) == Some(&MAGIC[..])
            && header.get(16..32) == Some(&generation[..])
            && count.div_ceil(PER_BLOCK as u64) == blocks
            && lines == bloom_lines(count)
            && total == Some(len);
        let (Some(records_end), true) = (records_end, whole) else {
            return Ok(None);
        };
        let mut reader = BufReader::with_capacity(1 << 20, &file);
        std::io::Seek::seek(&mut reader, std::io::SeekFrom::Start(records_end)).map_err(|e| io_error(path, e))?;
        let mut read_words = |n: u64, big_endian: bool| -> Result<Vec<u64>, String> {
            let mut out = Vec::with_capacity(usize::try_from(n).map_err(|e| e.to_string())?);
            let mut w = [0u8; 8];
            for _ in 0..n {
                reader.read_exact(&mut w).map_err(|e| io_error(path, e))?;
                out.push(if big_endian { u64::from_be_bytes(w) } else { u64::from_le_bytes(w) });
            }
            Ok(out)
        };
        let fence = read_words(blocks, true)?;
        let bloom = read_words(lines * LINE_WORDS as u64, false)?;
        drop(reader);
        Ok(Some(IdFile { file, count, fence, bloom }))
    }

    /// How many ids the file holds.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Whether the bloom filter lets `id` through (false: the file does not hold it).
    fn may_hold(&self, id: &[u8; 32]) -> bool {
        let (line, masks) = probes(id, self.bloom.len() / LINE_WORDS);
        let words = self.bloom.get(line * LINE_WORDS..(line + 1) * LINE_WORDS).unwrap_or(&[]);
        words.len() == LINE_WORDS && words.iter().zip(masks).all(|(w, m)| w & m == m)
    }

    /// The block whose first id is the last one at or before `key` (block 0 if none is):
    /// interpolation first (the ids are uniform), then a galloping search from there, since the
    /// guess is off by about the square root of the block count (some 100 blocks at 50M ids).
    fn block_for(&self, key: u64) -> usize {
        let fence = &self.fence;
        let n = fence.len();
        let at_or_before = |b: usize| fence.get(b).is_some_and(|f| *f <= key);
        let guess = (((u128::from(key) * n as u128) >> 64) as usize).min(n.saturating_sub(1));
        let mut step = 1;
        // Bracket [lo, hi): fence[lo] <= key (or lo == 0), fence[hi] > key (or hi == n).
        let (lo, hi) = if at_or_before(guess) {
            let mut lo = guess;
            while lo + step < n && at_or_before(lo + step) {
                lo += step;
                step *= 2;
            }
            (lo, (lo + step).min(n))
        } else {
            let mut hi = guess;
            while hi >= step && !at_or_before(hi - step) {
                hi -= step;
                step *= 2;
            }
            (hi.saturating_sub(step), hi)
        };
        let within = fence.get(lo..hi).unwrap_or_default().partition_point(|f| *f <= key);
        (lo + within).saturating_sub(1)
    }

    fn read_block(&self, b: usize, buf: &mut [u8; BLOCK]) -> std::io::Result<usize> {
        let first = (b * PER_BLOCK) as u64;
        let n = self.count.saturating_sub(first).min(PER_BLOCK as u64) as usize;
        if let Some(records) = buf.get_mut(..n * RECORD) {
            self.file.read_exact_at(records, HEADER + (b * BLOCK) as u64)?;
        }
        Ok(n)
    }

    /// The pack ordinal stored with `id`, if the file holds it.
    pub fn find(&self, id: &[u8; 32]) -> std::io::Result<Option<u32>> {
        if self.fence.is_empty() || !self.may_hold(id) {
            return Ok(None);
        }
        let key = prefix(id);
        let mut b = self.block_for(key);
        let mut buf = [0u8; BLOCK];
        loop {
            let n = self.read_block(b, &mut buf)?;
            let records = buf.get(..n * RECORD).unwrap_or_default().chunks_exact(RECORD);
            if let Some((_, ordinal)) = records.filter_map(parse).find(|(r, _)| r == id) {
                return Ok(Some(ordinal));
            }
            // Ids sharing their first 8 bytes may start this block and end the one before.
            if b == 0 || self.fence.get(b) != Some(&key) {
                return Ok(None);
            }
            b -= 1;
        }
    }

    /// Every record in id order.
    pub fn records(&self) -> Records<'_> {
        Records { file: self, block: 0, buf: [0u8; BLOCK], at: 0, held: 0 }
    }
}

/// An iterator over an [`IdFile`]'s records, one block read at a time.
#[derive(Debug)]
pub struct Records<'a> {
    file: &'a IdFile,
    block: usize,
    buf: [u8; BLOCK],
    at: usize,
    held: usize,
}

impl Iterator for Records<'_> {
    type Item = std::io::Result<([u8; 32], u32)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.at == self.held {
            if self.block >= self.file.fence.len() {
                return None;
            }
            match self.file.read_block(self.block, &mut self.buf) {
                Ok(n) => (self.at, self.held) = (0, n),
                Err(e) => return Some(Err(e)),
            }
            self.block += 1;
        }
        let record = self.buf.get(self.at * RECORD..(self.at + 1) * RECORD).and_then(parse);
        self.at += 1;
        record.map(Ok)
    }
}

/// Two streams of records, each in id order, as one in id order (an id in both comes twice;
/// [`IdFileWriter::push`] skips the repeat). An error is passed on as soon as it is next.
pub fn merged<E>(
    a: impl Iterator<Item = Result<([u8; 32], u32), E>>,
    b: impl Iterator<Item = Result<([u8; 32], u32), E>>,
) -> impl Iterator<Item = Result<([u8; 32], u32), E>> {
    let (mut a, mut b) = (a.peekable(), b.peekable());
    std::iter::from_fn(move || match (a.peek(), b.peek()) {
        (Some(Ok(x)), Some(Ok(y))) if x.0 > y.0 => b.next(),
        (Some(_), Some(Err(_))) => b.next(),
        (Some(_), _) => a.next(),
        (None, _) => b.next(),
    })
}

/// Writes the records of an id file in id order; [`IdFileWriter::finish`] adds the fence, the
/// bloom filter and the header and makes the file durable.
pub struct IdFileWriter {
    out: BufWriter<File>,
    generation: Generation,
    count: u64,
    fence: Vec<u64>,
    last: Option<[u8; 32]>,
}

impl std::fmt::Debug for IdFileWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdFileWriter").field("count", &self.count).finish_non_exhaustive()
    }
}

impl IdFileWriter {
    /// Creates (or truncates) `path`.
    pub fn create(path: &Path, generation: Generation) -> std::io::Result<IdFileWriter> {
        // Read too: the bloom filter is built by reading the records back.
        let file = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).open(path)?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        out.write_all(&[0u8; HEADER as usize])?;
        Ok(IdFileWriter { out, generation, count: 0, fence: Vec::new(), last: None })
    }

    /// Appends `id`. Ids must come in increasing order; a repeat of the last id is skipped.
    pub fn push(&mut self, id: &[u8; 32], ordinal: u32) -> std::io::Result<()> {
        match &self.last {
            Some(last) if last == id => return Ok(()),
            Some(last) if last > id => {
                return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "ids out of order"));
            }
            _ => {}
        }
        let slot = (self.count % PER_BLOCK as u64) as usize;
        if slot == 0 {
            if self.count > 0 {
                self.out.write_all(&[0u8; BLOCK - PER_BLOCK * RECORD])?;
            }
            self.fence.push(prefix(id));
        }
        self.out.write_all(id)?;
        self.out.write_all(&ordinal.to_le_bytes())?;
        self.count += 1;
        self.last = Some(*id);
        Ok(())
    }

    /// Pads the last block, writes the fence and the bloom filter (built by reading the records
    /// back), then the header, and syncs the file.
    pub fn finish(mut self) -> std::io::Result<()> {
        let held = (self.count % PER_BLOCK as u64) as usize;
        if held > 0 {
            self.out.write_all(&vec![0u8; BLOCK - held * RECORD])?;
        } else if self.count > 0 {
            self.out.write_all(&[0u8; BLOCK - PER_BLOCK * RECORD])?;
        }
        for f in &self.fence {
            self.out.write_all(&f.to_be_bytes())?;
        }
        let file = self.out.into_inner().map_err(std::io::IntoInnerError::into_error)?;
        let lines = bloom_lines(self.count);
        let mut bloom = vec![0u64; lines as usize * LINE_WORDS];
        let mut reader = BufReader::with_capacity(1 << 20, &file);
        std::io::Seek::seek(&mut reader, std::io::SeekFrom::Start(HEADER))?;
        let mut block = [0u8; BLOCK];
        let mut left = self.count;
        while left > 0 {
            reader.read_exact(&mut block)?;
            let n = left.min(PER_BLOCK as u64) as usize;
            for (id, _) in block.get(..n * RECORD).unwrap_or_default().chunks_exact(RECORD).filter_map(parse) {
                let (line, masks) = probes(&id, lines as usize);
                for (w, m) in bloom.iter_mut().skip(line * LINE_WORDS).zip(masks) {
                    *w |= m;
                }
            }
            left -= n as u64;
        }
        drop(reader);
        let mut tail = BufWriter::with_capacity(1 << 20, &file);
        std::io::Seek::seek(&mut tail, std::io::SeekFrom::End(0))?;
        for w in &bloom {
            tail.write_all(&w.to_le_bytes())?;
        }
        tail.flush()?;
        drop(tail);
        let mut header = Vec::with_capacity(64);
        header.extend_from_slice(MAGIC);
        header.extend_from_slice(&self.generation);
        header.extend_from_slice(&self.count.to_le_bytes());
        header.extend_from_slice(&(self.fence.len() as u64).to_le_bytes());
        header.extend_from_slice(&lines.to_le_bytes());
        header.resize(64, 0);
        file.write_all_at(&header, 0)?;
        file.sync_all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn id(n: u64) -> [u8; 32] {
        *blake3::hash(&n.to_le_bytes()).as_bytes()
    }

    fn write(path: &Path, generation: Generation, ids: &[[u8; 32]]) {
        let mut sorted: Vec<([u8; 32], u32)> = ids.iter().map(|i| (*i, i[31].into())).collect();
        sorted.sort();
        let mut w = IdFileWriter::create(path, generation).unwrap();
        for (i, o) in &sorted {
            w.push(i, *o).unwrap();
        }
        w.finish().unwrap();
    }

    #[test]
    fn every_written_id_is_found_with_its_ordinal_and_others_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ids");
        for count in [0u64, 1, 27, 28, 29, 56, 5000] {
            let ids: Vec<[u8; 32]> = (0..count).map(id).collect();
            write(&path, [count as u8; 16], &ids);
            let f = IdFile::open(&path, &[count as u8; 16]).unwrap().expect("whole file");
            assert_eq!(f.count(), count);
            for i in &ids {
                assert_eq!(f.find(i).unwrap(), Some(i[31].into()), "{count} ids");
            }
            assert!((count..count + 5000).all(|n| f.find(&id(n)).unwrap().is_none()), "{count} ids");
            let back: Vec<[u8; 32]> = f.records().map(|r| r.unwrap().0).collect();
            let mut sorted = ids.clone();
            sorted.sort();
            assert_eq!(back, sorted, "records come back in id order");
        }
    }

    #[test]
    fn the_bloom_filter_turns_away_most_absent_ids() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ids");
        write(&path, [1; 16], &(0..20_000).map(id).collect::<Vec<_>>());
        let f = IdFile::open(&path, &[1; 16]).unwrap().unwrap();
        let passed = (100_000..200_000).filter(|n| f.may_hold(&id(*n))).count();
        assert!(passed < 2_500, "{passed} of 100,000 absent ids passed the filter");
    }

    #[test]
    fn ids_sharing_their_first_bytes_across_a_block_boundary_are_found() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ids");
        let mut ids: Vec<[u8; 32]> = (0..100).map(id).collect();
        for (n, i) in ids.iter_mut().enumerate().skip(20).take(20) {
            i[..8].copy_from_slice(&[0x55; 8]);
            i[8] = n as u8;
        }
        write(&path, [1; 16], &ids);
        let f = IdFile::open(&path, &[1; 16]).unwrap().unwrap();
        assert!(ids.iter().all(|i| f.find(i).unwrap().is_some()));
    }

    #[test]
    fn a_file_of_another_generation_or_not_whole_is_not_used() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ids");
        assert!(IdFile::open(&path, &[1; 16]).unwrap().is_none(), "missing");
        write(&path, [1; 16], &(0..1000).map(id).collect::<Vec<_>>());
        assert!(IdFile::open(&path, &[2; 16]).unwrap().is_none(), "another generation");
        let len = std::fs::metadata(&path).unwrap().len();
        let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(len - 1).unwrap();
        assert!(IdFile::open(&path, &[1; 16]).unwrap().is_none(), "truncated");
        f.set_len(10).unwrap();
        assert!(IdFile::open(&path, &[1; 16]).unwrap().is_none(), "cut inside the header");
    }

    #[test]
    fn the_writer_refuses_ids_out_of_order_and_skips_repeats() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ids");
        let mut w = IdFileWriter::create(&path, [1; 16]).unwrap();
        w.push(&[5; 32], 1).unwrap();
        w.push(&[5; 32], 1).unwrap();
        assert!(w.push(&[4; 32], 1).is_err());
        w.finish().unwrap();
        assert_eq!(IdFile::open(&path, &[1; 16]).unwrap().unwrap().count(), 1);
    }

    #[test]
    fn merged_streams_come_out_in_id_order_and_errors_pass_through() {
        let rec = |b: u8| Ok::<_, &str>(([b; 32], u32::from(b)));
        let out: Vec<_> = merged([rec(1), rec(4), rec(6)].into_iter(), [rec(2), rec(4), rec(9)].into_iter()).collect();
        assert_eq!(out, vec![rec(1), rec(2), rec(4), rec(4), rec(6), rec(9)]);
        let out: Vec<_> = merged([rec(1), Err("bad"), rec(6)].into_iter(), [rec(2)].into_iter()).collect();
        assert_eq!(out.get(1), Some(&Err("bad")));
        assert_eq!(merged(std::iter::empty(), [rec(3)].into_iter()).count(), 1);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// The galloping search finds the same block as a plain binary search, for any fence
        /// (uniform or not) and any key.
        #[test]
        fn block_for_agrees_with_a_binary_search(mut fence in proptest::collection::vec(any::<u64>(), 1..3000), keys in proptest::collection::vec(any::<u64>(), 1..50), skew in 0u32..40) {
            for f in &mut fence {
                *f >>= skew;
            }
            fence.sort_unstable();
            let file = IdFile { file: tempfile::tempfile().unwrap(), count: 0, fence: fence.clone(), bloom: Vec::new() };
            for key in keys.into_iter().chain(fence.iter().copied()).chain([0, u64::MAX]) {
                let want = fence.partition_point(|f| *f <= key).saturating_sub(1);
                prop_assert_eq!(file.block_for(key), want, "key {}", key);
            }
        }

        /// Any header and tail bytes: opening never panics, and a file it accepts answers
        /// lookups without panicking.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..12_000), header in any::<[u8; 24]>()) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("ids");
            let mut all = MAGIC.to_vec();
            all.extend_from_slice(&[1; 16]);
            all.extend_from_slice(&header);
            all.extend_from_slice(&bytes);
            std::fs::write(&path, &all).unwrap();
            if let Some(f) = IdFile::open(&path, &[1; 16]).unwrap() {
                let _ = f.find(&id(1));
                let _ = f.records().count();
            }
        }
    }
}
