//! Content-defined chunking: FastCDC v2020 (`fastcdc::v2020::cut_gear`) with a full 256-entry
//! gear table expanded from the repository's K_cdc, so boundaries differ between repositories
//! and cannot be predicted without the key. [`StreamChunker`] works over any `Read` with a
//! buffer of about twice the maximum chunk size, whatever the input's length.

use std::io::Read;

use fastcdc::v2020::{Normalization, cut_gear, select_masks};
use serde::{Deserialize, Serialize};

use crate::crypto::{Key32, context};
use crate::error::{Error, Result};

/// Chunk size bounds, chosen at `init` and stored in the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkerParams {
    /// Minimum chunk size in bytes (except a stream's last chunk).
    pub min_size: u32,
    /// Target average chunk size in bytes.
    pub avg_size: u32,
    /// Maximum chunk size in bytes.
    pub max_size: u32,
}

impl Default for ChunkerParams {
    fn default() -> Self {
        ChunkerParams { min_size: 512 * 1024, avg_size: 1024 * 1024, max_size: 8 * 1024 * 1024 }
    }
}

impl ChunkerParams {
    /// Checks what fastcdc only debug-asserts: even sizes, min <= avg <= max, avg a power of
    /// two within fastcdc's mask table (256 B ..= 4 MiB), max <= 16 MiB.
    pub fn validate(&self) -> Result<()> {
        let ChunkerParams { min_size, avg_size, max_size } = *self;
        let ok = min_size >= 64
            && min_size % 2 == 0
            && avg_size % 2 == 0
            && max_size % 2 == 0
            && min_size <= avg_size
            && avg_size <= max_size
            && avg_size.is_power_of_two()
            && (256..=4 * 1024 * 1024).contains(&avg_size)
            && max_size <= 16 * 1024 * 1024;
        if ok {
            Ok(())
        } else {
            Err(Error::InvalidInput(format!(
                "chunker sizes min={min_size} avg={avg_size} max={max_size}: need even sizes, \
                 64 <= min <= avg <= max <= 16 MiB, avg a power of two between 256 B and 4 MiB"
            )))
        }
    }
}

/// A keyed chunker: gear tables plus masks. Cheap to share between threads.
#[derive(Clone)]
pub struct Chunker {
    params: ChunkerParams,
    gear: Box<[u64; 256]>,
    gear_ls: Box<[u64; 256]>,
    mask_s: u64,
    mask_l: u64,
}

impl std::fmt::Debug for Chunker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The gear table is key material: never print it.
        f.debug_struct("Chunker").field("params", &self.params).finish_non_exhaustive()
    }
}

impl Drop for Chunker {
    fn drop(&mut self) {
        // The gear table reveals K_cdc's chunk boundaries: it goes with the keys.
        zeroize::Zeroize::zeroize(&mut *self.gear);
        zeroize::Zeroize::zeroize(&mut *self.gear_ls);
    }
}

impl Chunker {
    /// Builds the gear table from K_cdc: BLAKE3 XOF in derive-key mode, 2048 bytes read as
    /// 256 little-endian u64 (format-spec SPEC.md#chunking).
    pub fn new(cdc_key: &Key32, params: ChunkerParams) -> Result<Self> {
        params.validate()?;
        let mut hasher = blake3::Hasher::new_derive_key(context::GEAR_TABLE);
        hasher.update(cdc_key.expose());
        let mut xof = hasher.finalize_xof();
        let mut gear = Box::new([0u64; 256]);
        let mut gear_ls = Box::new([0u64; 256]);
        for (g, gl) in gear.iter_mut().zip(gear_ls.iter_mut()) {
            let mut b = [0u8; 8];
            xof.fill(&mut b);
            *g = u64::from_le_bytes(b);
            *gl = *g << 1;
        }
        let (mask_s, mask_l) = select_masks(params.avg_size as usize, Normalization::Level1);
        Ok(Chunker { params, gear, gear_ls, mask_s, mask_l })
    }

    /// The size bounds.
    pub fn params(&self) -> ChunkerParams {
        self.params
    }

    /// Length of the next chunk at the start of `data`. `data` must hold at least `max_size`
    /// bytes unless it is the end of the stream.
    pub fn next_cut(&self, data: &[u8]) -> usize {
        let (_, len) = cut_gear(
            data,
            self.params.min_size as usize,
            self.params.avg_size as usize,
            self.params.max_size as usize,
            self.mask_s,
            self.mask_l,
            self.mask_s << 1,
            self.mask_l << 1,
            &self.gear[..],
            &self.gear_ls[..],
        );
        // Invariant: fastcdc returns 0 < len <= data.len() for non-empty data; guard anyway so a
        // library change cannot make us loop forever.
        if len == 0 || len > data.len() { data.len() } else { len }
    }

    /// Splits an in-memory buffer into chunk lengths.
    pub fn cut_all(&self, data: &[u8]) -> Vec<usize> {
        let mut out = Vec::new();
        let mut rest = data;
        while !rest.is_empty() {
            let n = self.next_cut(rest);
            out.push(n);
            rest = rest.get(n..).unwrap_or_default();
        }
        out
    }

    /// A streaming chunker over `reader`.
    pub fn stream<R: Read>(&self, reader: R) -> StreamChunker<'_, R> {
        StreamChunker { chunker: self, reader, buf: Vec::new(), start: 0, eof: false }
    }

    /// A streaming chunker over a reader of about `size_hint` bytes (a file's size): the buffer
    /// is sized for it up front, so a small file is read with one `read` and one at EOF.
    pub fn stream_sized<R: Read>(&self, reader: R, size_hint: u64) -> StreamChunker<'_, R> {
        self.stream_reusing(reader, size_hint, Vec::new())
    }

    /// Like [`Chunker::stream_sized`], reading into `buf` (emptied first; get it back with
    /// [`StreamChunker::into_buffer`]). A backup reuses one buffer for every file instead of
    /// allocating and freeing up to `2 * max_size` per file, which left the allocator holding
    /// memory it could not give back.
    pub fn stream_reusing<R: Read>(&self, reader: R, size_hint: u64, mut buf: Vec<u8>) -> StreamChunker<'_, R> {
        let cap = usize::try_from(size_hint.saturating_add(1)).unwrap_or(usize::MAX).min(self.window_len());
        buf.clear();
        // Exact: `reserve` would double a smaller buffer past the window.
        buf.reserve_exact(cap);
        StreamChunker { chunker: self, reader, buf, start: 0, eof: false }
    }

    /// Bytes the streaming chunker keeps buffered at most: the maximum chunk size plus room
    /// to read ahead in large pieces.
    fn window_len(&self) -> usize {
        let max = self.params.max_size as usize;
        max + (max / 4).max(256 * 1024)
    }
}

/// Yields owned chunks from a reader; memory stays near `2 * max_size`.
#[derive(Debug)]
pub struct StreamChunker<'a, R> {
    chunker: &'a Chunker,
    reader: R,
    buf: Vec<u8>,
    start: usize,
    eof: bool,
}

impl<R: Read> StreamChunker<'_, R> {
    /// The next chunk, `Ok(None)` at the end of the stream.
    ///
    /// The buffer is refilled only when what it holds has no cut point: FastCDC scans forward
    /// and takes the first boundary, so a cut before the end of the buffered bytes is where a
    /// longer buffer would cut too. A cut at the end is final only at the maximum size or at
    /// the end of the stream. So a refill moves a short tail, not up to `max_size` bytes.
    pub fn next_chunk(&mut self) -> std::io::Result<Option<Vec<u8>>> {
        let max = self.chunker.params.max_size as usize;
        loop {
            let window = self.buf.get(self.start..).unwrap_or_default();
            if !window.is_empty() {
                let n = self.chunker.next_cut(window);
                if n < window.len() || n >= max || self.eof {
                    let chunk = window.get(..n).unwrap_or_default().to_vec();
                    self.start += n;
                    return Ok(Some(chunk));
                }
            } else if self.eof {
                return Ok(None);
            }
            self.refill()?;
        }
    }

    /// The read buffer, for the next stream.
    pub fn into_buffer(self) -> Vec<u8> {
        self.buf
    }

    /// Moves the unread tail to the front and reads until the window is full or EOF (then
    /// `eof` is set, so every call makes progress). `read_to_end` grows the buffer as data
    /// arrives and never zero-fills what it does not read: a 2 KiB file costs a 2 KiB read, not
    /// a zeroed megabyte (which dominated backups of many small files).
    fn refill(&mut self) -> std::io::Result<()> {
        self.buf.drain(..self.start);
        self.start = 0;
        let target = self.chunker.window_len();
        let grow = target.saturating_sub(self.buf.len()).max(1) as u64;
        let read = (&mut self.reader).take(grow).read_to_end(&mut self.buf)?;
        if (read as u64) < grow {
            self.eof = true;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn small() -> ChunkerParams {
        ChunkerParams { min_size: 256, avg_size: 1024, max_size: 4096 }
    }

    use crate::test_util::pseudo_random;

    fn stream_all(c: &Chunker, data: &[u8]) -> Vec<Vec<u8>> {
        let mut s = c.stream(data);
        let mut out = Vec::new();
        while let Some(ch) = s.next_chunk().unwrap() {
            out.push(ch);
        }
        out
    }

    #[test]
    fn invalid_params_are_rejected() {
        for p in [
            ChunkerParams { min_size: 255, avg_size: 1024, max_size: 4096 },
            ChunkerParams { min_size: 2048, avg_size: 1024, max_size: 4096 },
            ChunkerParams { min_size: 256, avg_size: 1000, max_size: 4096 },
            ChunkerParams { min_size: 256, avg_size: 1024, max_size: 32 << 20 },
            ChunkerParams { min_size: 256, avg_size: 8 << 20, max_size: 16 << 20 },
        ] {
            assert!(p.validate().is_err(), "{p:?} accepted");
        }
        assert!(ChunkerParams::default().validate().is_ok());
    }

    #[test]
    fn different_keys_cut_differently() {
        let data = pseudo_random(200_000, 7);
        let a = Chunker::new(&Key32::from_bytes([1; 32]), small()).unwrap();
        let b = Chunker::new(&Key32::from_bytes([2; 32]), small()).unwrap();
        assert_ne!(a.cut_all(&data), b.cut_all(&data));
    }

    #[test]
    fn boundaries_resynchronise_after_an_inserted_prefix() {
        let c = Chunker::new(&Key32::from_bytes([3; 32]), small()).unwrap();
        let data = pseudo_random(100_000, 11);
        let mut shifted = vec![0x55u8];
        shifted.extend_from_slice(&data);
        let a: std::collections::HashSet<Vec<u8>> = stream_all(&c, &data).into_iter().collect();
        let b = stream_all(&c, &shifted);
        let shared = b.iter().filter(|ch| a.contains(*ch)).count();
        assert!(shared + 3 >= b.len(), "only {shared} of {} chunks shared", b.len());
    }

    /// A reader that returns at most `step` bytes per call, as pipes and network files do.
    struct Trickle<'a> {
        data: &'a [u8],
        step: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.step.min(buf.len()).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    #[test]
    fn a_window_near_the_maximum_cuts_like_the_whole_buffer() {
        // Window 1.25 MiB for a 1 MiB maximum: refills happen with cut-free tails of every
        // length, and the zero run forces cuts at the maximum.
        let params = ChunkerParams { min_size: 64 << 10, avg_size: 128 << 10, max_size: 1 << 20 };
        let c = Chunker::new(&Key32::from_bytes([9; 32]), params).unwrap();
        let mut data = pseudo_random(5 << 20, 3);
        data.extend(std::iter::repeat_n(0u8, (3 << 20) + 12345));
        data.extend(pseudo_random(2 << 20, 4));
        let want = c.cut_all(&data);
        assert!(want.iter().filter(|&&n| n == 1 << 20).count() >= 3, "no cuts at the maximum");
        let mut buf = vec![0xAA; 3 << 20];
        for step in [1 << 20, 300_001, 65_536, 4_097] {
            let mut s = c.stream_reusing(Trickle { data: &data, step }, data.len() as u64, buf);
            let mut got = Vec::new();
            let mut joined = Vec::new();
            while let Some(ch) = s.next_chunk().unwrap() {
                got.push(ch.len());
                joined.extend_from_slice(&ch);
            }
            assert_eq!(got, want, "step {step}");
            assert!(joined == data, "step {step}: the chunks do not add up to the input");
            buf = s.into_buffer();
            assert!(buf.capacity() <= 4 << 20, "the window grew past its bound: {}", buf.capacity());
        }
    }

    proptest! {
        #[test]
        fn sized_and_trickled_streams_cut_like_the_whole_buffer(len in 0usize..300_000, seed in any::<u64>(),
                                                               hint in 0u64..400_000, step in 1usize..70_000) {
            // Large windows relative to the 4 KiB max chunk: the 256 KiB floor of the window
            // makes refills happen mid-stream for the longer inputs.
            let c = Chunker::new(&Key32::from_bytes([5; 32]), small()).unwrap();
            let data = pseudo_random(len, seed);
            let want: Vec<usize> = c.cut_all(&data);
            let mut s = c.stream_sized(Trickle { data: &data, step }, hint);
            let mut got = Vec::new();
            while let Some(ch) = s.next_chunk().unwrap() {
                got.push(ch.len());
            }
            prop_assert_eq!(got, want);
        }

        #[test]
        fn chunks_concatenate_to_input_and_respect_bounds(len in 0usize..40_000, seed in any::<u64>(), key in any::<[u8; 32]>()) {
            let c = Chunker::new(&Key32::from_bytes(key), small()).unwrap();
            let data = pseudo_random(len, seed);
            let chunks = stream_all(&c, &data);
            let joined: Vec<u8> = chunks.concat();
            prop_assert_eq!(&joined, &data);
            for (i, ch) in chunks.iter().enumerate() {
                prop_assert!(ch.len() <= 4096);
                if i + 1 < chunks.len() {
                    prop_assert!(ch.len() >= 256);
                }
            }
            // The streaming chunker cuts exactly where the in-memory one does.
            let lens: Vec<usize> = chunks.iter().map(Vec::len).collect();
            prop_assert_eq!(lens, c.cut_all(&data));
        }
    }
}
