//! Page-cache pages of restored large files, handed back as the restore goes. A restore writes the
//! whole snapshot once; left to the kernel, every written byte stays cached until memory runs
//! short, so a large restore evicts the machine's whole page cache, and each new page it
//! writes has to be reclaimed from something else first. Here every piece written has its
//! writeback started at once (`POSIX_FADV_DONTNEED` on dirty pages starts it and keeps them),
//! and once `WINDOW` bytes more (or `HELD` pieces) have been written by the same worker, its
//! pages (clean by then, mostly) are dropped: the restore recycles its own few megabytes of
//! pages instead.

use std::collections::VecDeque;
use std::fs::File;
use std::num::NonZeroU64;
use std::sync::Arc;

/// Bytes a worker writes before the oldest pieces' pages are dropped.
const WINDOW: u64 = 64 << 20;
/// Files smaller than this are left to the kernel: starting writeback file by file costs
/// more than their few pages (it made a restore of 100,000 files of 1.5 KiB twice as slow).
const MIN_FILE: u64 = 1 << 20;
/// Pieces held at most: each keeps its file open (small files are a piece each, and the
/// process's open-file limit is shared with every other worker and the index cache).
const HELD: usize = 32;

/// One worker's written pieces whose pages are still cached.
#[derive(Debug, Default)]
pub(super) struct Recycler {
    pieces: VecDeque<(Arc<File>, u64, u64)>,
    bytes: u64,
}

impl Recycler {
    /// `len` bytes were just written at `off` in `file`, a file of `file_size` bytes.
    pub(super) fn written(&mut self, file: &Arc<File>, file_size: u64, off: u64, len: u64) {
        if file_size < MIN_FILE {
            return;
        }
        drop_pages(file, off, len);
        self.pieces.push_back((Arc::clone(file), off, len));
        self.bytes += len;
        while self.bytes > WINDOW || self.pieces.len() > HELD {
            let Some((f, o, l)) = self.pieces.pop_front() else { break };
            drop_pages(&f, o, l);
            self.bytes -= l;
        }
    }

    /// Drops the pages of every piece still held (those still being written back stay).
    pub(super) fn finish(&mut self) {
        for (f, o, l) in self.pieces.drain(..) {
            drop_pages(&f, o, l);
        }
        self.bytes = 0;
    }
}

/// Advice only: the content is on its way to disk either way, so an error changes nothing.
fn drop_pages(file: &File, off: u64, len: u64) {
    if let Some(len) = NonZeroU64::new(len) {
        let _ = rustix::fs::fadvise(file, off, Some(len), rustix::fs::Advice::DontNeed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileExt;

    /// However many files are written, a worker keeps at most `HELD` pieces (and so open
    /// files) and `WINDOW` bytes, and the content is untouched by the advice.
    #[test]
    fn holds_a_bounded_number_of_pieces_and_leaves_content_alone() {
        let dir = tempfile::tempdir().unwrap();
        let open = |name: &str| {
            let path = dir.path().join(name);
            Arc::new(File::options().create(true).truncate(true).read(true).write(true).open(path).unwrap())
        };
        let mut r = Recycler::default();
        // Many small files: bounded by pieces (open files).
        for i in 0..200u64 {
            let file = open(&format!("f{i}"));
            let data = vec![i as u8; 64 << 10];
            file.write_all_at(&data, 0).unwrap();
            r.written(&file, 100 << 20, 0, data.len() as u64);
            assert!(r.pieces.len() <= HELD, "{} pieces held", r.pieces.len());
        }
        // One large file: bounded by bytes.
        let big = open("big");
        for i in 0..40u64 {
            let data = vec![i as u8; 3 << 20];
            big.write_all_at(&data, i * (3 << 20)).unwrap();
            r.written(&big, 120 << 20, i * (3 << 20), data.len() as u64);
            assert!(r.bytes <= WINDOW, "{} bytes held", r.bytes);
        }
        r.finish();
        assert!(r.pieces.is_empty() && r.bytes == 0);
        for i in [0u64, 57, 199] {
            let got = std::fs::read(dir.path().join(format!("f{i}"))).unwrap();
            assert!(got.len() == 64 << 10 && got.iter().all(|&b| b == i as u8), "file {i} changed");
        }
        let got = std::fs::read(dir.path().join("big")).unwrap();
        assert!(got.chunks(3 << 20).enumerate().all(|(i, c)| c.iter().all(|&b| b == i as u8)), "big file changed");
    }
}
