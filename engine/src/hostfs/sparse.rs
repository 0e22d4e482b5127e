//! Sparse files: their data extents come from `SEEK_DATA`/`SEEK_HOLE`, so a backup reads only
//! the data (a 10 GiB file with 1 MiB of data costs 1 MiB of reading) and records the holes.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;

use rustix::fs::SeekFrom;
use rustix::io::Errno;

/// The data extents `(offset, length)` of `file` within its first `size` bytes, in order; `None`
/// when the file system cannot tell (then the file is read as dense).
pub fn data_extents(file: &File, size: u64) -> io::Result<Option<Vec<(u64, u64)>>> {
    let mut extents = Vec::new();
    let mut pos = 0u64;
    while pos < size {
        let start = match rustix::fs::seek(file, SeekFrom::Data(pos)) {
            Ok(s) => s,
            // No data at or after `pos`: the rest is a hole.
            Err(Errno::NXIO) => break,
            Err(Errno::INVAL | Errno::OPNOTSUPP) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        if start >= size {
            break;
        }
        let end = match rustix::fs::seek(file, SeekFrom::Hole(start)) {
            Ok(e) => e.min(size),
            Err(Errno::INVAL | Errno::OPNOTSUPP) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        if end <= start {
            return Ok(None);
        }
        extents.push((start, end - start));
        pos = end;
    }
    rustix::fs::seek(file, SeekFrom::Start(0))?;
    Ok(Some(extents))
}

/// The holes `(offset, length)` of a file of `size` bytes whose data is `extents`.
pub fn holes_of(extents: &[(u64, u64)], size: u64) -> Vec<(u64, u64)> {
    let mut holes = Vec::new();
    let mut pos = 0u64;
    for &(off, len) in extents {
        if off > pos {
            holes.push((pos, off - pos));
        }
        pos = off.saturating_add(len);
    }
    if size > pos {
        holes.push((pos, size - pos));
    }
    holes
}

/// Reads the data extents of a file one after the other, skipping its holes.
#[derive(Debug)]
pub struct ExtentReader<'f> {
    file: &'f File,
    extents: std::vec::IntoIter<(u64, u64)>,
    current: Option<(u64, u64)>,
}

impl<'f> ExtentReader<'f> {
    /// Reads `extents` of `file` in order.
    pub fn new(file: &'f File, extents: Vec<(u64, u64)>) -> Self {
        ExtentReader { file, extents: extents.into_iter(), current: None }
    }
}

impl Read for ExtentReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let (off, left) = match self.current {
                Some((off, left)) if left > 0 => (off, left),
                _ => match self.extents.next() {
                    Some(e) => {
                        self.current = Some(e);
                        continue;
                    }
                    None => return Ok(0),
                },
            };
            let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            let n = self.file.read_at(buf.get_mut(..want).unwrap_or_default(), off)?;
            if n == 0 {
                // The file shrank below what SEEK_DATA reported: end of what can be read.
                self.current = None;
                self.extents = Vec::new().into_iter();
                return Ok(0);
            }
            self.current = Some((off + n as u64, left - n as u64));
            return Ok(n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Seek, Write};

    #[test]
    fn holes_are_the_complement_of_extents() {
        assert_eq!(holes_of(&[], 10), vec![(0, 10)]);
        assert_eq!(holes_of(&[(0, 10)], 10), vec![]);
        assert_eq!(holes_of(&[(4, 2), (8, 1)], 12), vec![(0, 4), (6, 2), (9, 3)]);
    }

    #[test]
    fn a_sparse_file_reads_only_its_data() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = File::create(dir.path().join("s")).unwrap();
        f.seek(io::SeekFrom::Start(1 << 30)).unwrap();
        f.write_all(&[7u8; 5000]).unwrap();
        f.set_len((1 << 30) + (1 << 28)).unwrap();
        let f = File::open(dir.path().join("s")).unwrap();
        let size = f.metadata().unwrap().len();
        let Some(extents) = data_extents(&f, size).unwrap() else { return };
        let data: u64 = extents.iter().map(|e| e.1).sum();
        assert!(data < (1 << 20), "{extents:?}");
        let mut read = Vec::new();
        ExtentReader::new(&f, extents.clone()).read_to_end(&mut read).unwrap();
        assert_eq!(read.len() as u64, data);
        assert!(read.windows(5000).any(|w| w.iter().all(|&b| b == 7)));
        let holes = holes_of(&extents, size);
        assert_eq!(holes.iter().map(|h| h.1).sum::<u64>() + data, size);
    }
}
