//! A file's content read and stored: opened as the walker found it (replaced since?), its data
//! extents only when sparse, chunked and handed to the blob writer, then compared with its
//! stat once read (changed while read?).

use std::io::{self, Read};
use std::os::fd::BorrowedFd;
use std::path::Path;

use rustix::fs::FileType;

use crate::error::Result;
use crate::format::BlobKind;
use crate::hostfs::{self, ExtentReader, Stat, Xattrs};

use super::walker::{STOPPED, StoredContent, Walker};

impl Walker<'_, '_> {
    /// Reads and stores a file's content. `Ok(None)` when it could not be read (reported).
    pub(super) fn read_file(
        &mut self,
        dir: BorrowedFd<'_>,
        path: &Path,
        name: &[u8],
        st: &Stat,
    ) -> Result<Option<StoredContent>> {
        let file = match hostfs::open_file_at(dir, name) {
            Ok(f) => f,
            Err(e) => {
                self.source_error(path, e);
                return Ok(None);
            }
        };
        // The entry may have been replaced between listing and opening.
        match hostfs::fstat(&file) {
            Ok(now) if now.ino == st.ino && now.dev == st.dev && now.file_type() == FileType::RegularFile => {}
            Ok(_) => {
                self.source_error(path, "replaced while being backed up; not stored");
                return Ok(None);
            }
            Err(e) => {
                self.source_error(path, e);
                return Ok(None);
            }
        }
        let extents = if st.maybe_sparse() {
            match hostfs::data_extents(&file, st.size) {
                Ok(e) => e,
                Err(e) => {
                    self.source_error(path, e);
                    return Ok(None);
                }
            }
        } else {
            None
        };
        if extents.is_none() && st.size >= hostfs::SEQUENTIAL_FROM {
            hostfs::advise_sequential(&file, st.size);
        }
        let xattrs = self.xattrs_fd(&file, path);
        let flags = hostfs::inode_flags(&file);
        let (reader, holes): (Box<dyn Read + '_>, Vec<(u64, u64)>) = match extents {
            Some(ext) => {
                let holes = hostfs::holes_of(&ext, st.size);
                (Box::new(ExtentReader::new(&file, ext)), holes)
            }
            None => (Box::new(&file), Vec::new()),
        };
        self.store_content(path, st, reader, holes, xattrs, flags, || hostfs::fstat(&file))
    }

    /// Chunks and stores what `reader` yields of the file at `path` (lstat `st`, `holes`
    /// not read), then compares it with `after` (its fstat once read): a file that changed
    /// while being read is stored as read, and reported. `Ok(None)` when it could not be read.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn store_content(
        &mut self,
        path: &Path,
        st: &Stat,
        reader: Box<dyn Read + '_>,
        holes: Vec<(u64, u64)>,
        xattrs: Xattrs,
        flags: u32,
        after: impl FnOnce() -> io::Result<Stat>,
    ) -> Result<Option<StoredContent>> {
        let expected_data: Option<u64> =
            (!holes.is_empty()).then(|| st.size.saturating_sub(holes.iter().map(|h| h.1).sum::<u64>()));
        let mut stream = self.repo.chunker().stream_reusing(reader, st.size, std::mem::take(&mut self.read_buf));
        let mut chunks = Vec::new();
        let mut data = 0u64;
        loop {
            match stream.next_chunk() {
                Ok(Some(chunk)) => {
                    self.repo.check_interrupted(STOPPED)?;
                    data += chunk.len() as u64;
                    self.progress.bytes(chunk.len() as u64);
                    chunks.push(self.writer.add(BlobKind::Data, chunk)?);
                }
                Ok(None) => break,
                Err(e) => {
                    self.source_error(path, e);
                    return Ok(None);
                }
            }
        }
        self.read_buf = stream.into_buffer();
        self.summary.bytes_read += data;
        if expected_data.is_some_and(|want| want != data) {
            // Invariant: a sparse node's data and holes add up to its size. A sparse file that
            // shrank or grew while being read cannot be laid out again: report, do not store.
            self.source_error(path, "sparse file changed while being read; not stored");
            return Ok(None);
        }
        let size = if holes.is_empty() { data } else { st.size };
        // A file that changed while being read is stored as read, and reported.
        match after() {
            Ok(after) if after.size == size && after.mtime_ns == st.mtime_ns && after.ctime_ns == st.ctime_ns => {}
            Ok(after) => self.source_error(
                path,
                format!(
                    "changed while being read (size {} -> {}); the snapshot holds the {size} bytes read",
                    st.size, after.size
                ),
            ),
            Err(e) => self.source_error(path, e),
        }
        Ok(Some(StoredContent { chunks, holes, size, xattrs, flags }))
    }
}
