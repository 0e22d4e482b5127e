//! `dump`: a file's content as a byte stream (holes come out as zeros), or a directory as a tar
//! archive (GNU long names, PAX records for nanosecond mtimes and xattrs, hardlinks as link
//! entries). Blobs are fetched one at a time, so memory stays at about one chunk.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::format::extents::Extents;
use crate::format::tree::{Node, NodeKind};
use crate::id::ChunkId;
use crate::repo::Repository;
use crate::trees::walk;

/// Reads the content of a file node: its chunks laid out around its holes.
pub struct ContentReader<'r> {
    repo: &'r Repository,
    chunks: std::vec::IntoIter<ChunkId>,
    layout: Extents,
    size: u64,
    object: String,
    /// Logical position in the file.
    pos: u64,
    /// Position in the data (the chunks concatenated).
    data_pos: u64,
    blob: Vec<u8>,
    /// (file offset, start in `blob`, length) still to emit from the current blob.
    pieces: std::collections::VecDeque<(u64, usize, usize)>,
}

impl std::fmt::Debug for ContentReader<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContentReader").field("object", &self.object).field("pos", &self.pos).finish_non_exhaustive()
    }
}

fn corrupt(object: &str, why: &str) -> io::Error {
    io::Error::other(Error::corrupt(object, why))
}

impl<'r> ContentReader<'r> {
    /// A reader of `node`'s content; [`Error::InvalidInput`] when it is not a file.
    pub fn new(repo: &'r Repository, node: &Node) -> Result<Self> {
        let NodeKind::File { chunks, holes } = &node.kind else {
            return Err(Error::InvalidInput(format!("{} is not a file", String::from_utf8_lossy(&node.name))));
        };
        let object = format!("file {}", String::from_utf8_lossy(&node.name));
        let layout = Extents::new(holes, node.size).ok_or_else(|| Error::corrupt(&object, "invalid hole list"))?;
        Ok(ContentReader {
            repo,
            chunks: chunks.clone().into_iter(),
            layout,
            size: node.size,
            object,
            pos: 0,
            data_pos: 0,
            blob: Vec::new(),
            pieces: Default::default(),
        })
    }

    /// Loads the next blob; `false` at the end of the chunks.
    fn next_blob(&mut self) -> io::Result<bool> {
        let Some(id) = self.chunks.next() else {
            if self.data_pos != self.layout.data_len() {
                return Err(corrupt(&self.object, "content is shorter than recorded"));
            }
            return Ok(false);
        };
        self.blob = self.repo.read_blob(&id).map_err(io::Error::other)?;
        let mut start = 0usize;
        for (off, len) in self.layout.pieces(self.data_pos, self.blob.len() as u64) {
            self.pieces.push_back((off, start, len as usize));
            start += len as usize;
        }
        if start != self.blob.len() {
            return Err(corrupt(&self.object, "content is longer than recorded"));
        }
        self.data_pos += self.blob.len() as u64;
        Ok(true)
    }
}

impl Read for ContentReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if buf.is_empty() || self.pos >= self.size {
                return Ok(0);
            }
            let Some(&(off, start, len)) = self.pieces.front() else {
                if !self.next_blob()? {
                    // Only a trailing hole is left.
                    let n = buf.len().min((self.size - self.pos) as usize);
                    buf.get_mut(..n).unwrap_or_default().fill(0);
                    self.pos += n as u64;
                    return Ok(n);
                }
                continue;
            };
            if self.pos < off {
                let n = buf.len().min((off - self.pos) as usize);
                buf.get_mut(..n).unwrap_or_default().fill(0);
                self.pos += n as u64;
                return Ok(n);
            }
            let n = buf.len().min(len);
            let src = self.blob.get(start..start + n).unwrap_or_default();
            buf.get_mut(..n).unwrap_or_default().copy_from_slice(src);
            self.pos += n as u64;
            if n == len {
                self.pieces.pop_front();
            } else if let Some(front) = self.pieces.front_mut() {
                *front = (off + n as u64, start + n, len - n);
            }
            return Ok(n);
        }
    }
}

/// An I/O error back to the engine error it carries, or a write error on the output.
fn unwrap_io(e: io::Error) -> Error {
    if e.get_ref().is_some_and(|inner| inner.is::<Error>()) {
        match e.into_inner().map(|inner| inner.downcast::<Error>()) {
            Some(Ok(engine)) => *engine,
            _ => Error::InvalidInput("unexpected I/O error".into()),
        }
    } else {
        Error::Target { path: PathBuf::from("-"), source: e }
    }
}

/// Writes the content of the file `node` to `out`; returns its size.
pub fn write_content(repo: &Repository, node: &Node, out: &mut dyn Write) -> Result<u64> {
    let mut reader = ContentReader::new(repo, node)?;
    io::copy(&mut reader, out).map_err(unwrap_io)
}

/// What went into an archive.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ArchiveStats {
    /// Entries written.
    pub entries: u64,
    /// Content bytes written.
    pub bytes: u64,
}

/// Linux `dev_t` to (major, minor).
fn dev_split(rdev: u64) -> (u32, u32) {
    let major = ((rdev >> 8) & 0xfff) | ((rdev >> 32) & !0xfff);
    let minor = (rdev & 0xff) | ((rdev >> 12) & !0xff);
    (major as u32, minor as u32)
}

fn header_for(node: &Node) -> io::Result<tar::Header> {
    let mut h = tar::Header::new_gnu();
    h.set_mode(node.mode & 0o7777);
    h.set_uid(u64::from(node.uid));
    h.set_gid(u64::from(node.gid));
    h.set_mtime(u64::try_from(node.mtime_ns.div_euclid(1_000_000_000)).unwrap_or(0));
    if let Some(u) = &node.user {
        h.set_username(u)?;
    }
    if let Some(g) = &node.group {
        h.set_groupname(g)?;
    }
    h.set_size(0);
    Ok(h)
}

/// Writes the node at `name` (and, for a directory, everything below it) as a tar archive.
pub fn write_tar(repo: &Repository, name: &[u8], node: &Node, out: &mut dyn Write) -> Result<ArchiveStats> {
    let mut builder = tar::Builder::new(out);
    let mut stats = ArchiveStats::default();
    let mut links: HashMap<u64, Vec<u8>> = HashMap::new();
    let mut add = |path: &[u8], node: &Node, builder: &mut tar::Builder<&mut dyn Write>| -> Result<()> {
        append_entry(repo, builder, path, node, &mut links, &mut stats)
    };
    add(name, node, &mut builder)?;
    if let NodeKind::Dir { subtree } = node.kind {
        walk(repo, subtree, name, &mut |p, n| add(p, n, &mut builder))?;
    }
    builder.into_inner().map_err(unwrap_io)?.flush().map_err(unwrap_io)?;
    Ok(stats)
}

fn append_entry(
    repo: &Repository,
    builder: &mut tar::Builder<&mut dyn Write>,
    path: &[u8],
    node: &Node,
    links: &mut HashMap<u64, Vec<u8>>,
    stats: &mut ArchiveStats,
) -> Result<()> {
    let p = Path::new(OsStr::from_bytes(path));
    let mut h = header_for(node).map_err(unwrap_io)?;
    // PAX records carry what the GNU header cannot: nanoseconds and extended attributes.
    let mut pax: Vec<(String, Vec<u8>)> = Vec::new();
    let nanos = node.mtime_ns.rem_euclid(1_000_000_000);
    if nanos != 0 {
        pax.push(("mtime".into(), format!("{}.{nanos:09}", node.mtime_ns.div_euclid(1_000_000_000)).into_bytes()));
    }
    for (k, v) in &node.xattrs {
        pax.push((format!("SCHILY.xattr.{}", String::from_utf8_lossy(k)), v.clone()));
    }
    if !pax.is_empty() {
        builder.append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), v.as_slice()))).map_err(unwrap_io)?;
    }
    if let Some(group) = node.hardlink_group.filter(|_| !node.is_dir()) {
        if let Some(first) = links.get(&group) {
            h.set_entry_type(tar::EntryType::Link);
            builder.append_link(&mut h, p, Path::new(OsStr::from_bytes(first))).map_err(unwrap_io)?;
            stats.entries += 1;
            return Ok(());
        }
        links.insert(group, path.to_vec());
    }
    match &node.kind {
        NodeKind::Dir { .. } => {
            h.set_entry_type(tar::EntryType::Directory);
            builder.append_data(&mut h, p, io::empty()).map_err(unwrap_io)?;
        }
        NodeKind::File { .. } => {
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(node.size);
            let reader = ContentReader::new(repo, node)?;
            builder.append_data(&mut h, p, reader).map_err(unwrap_io)?;
            stats.bytes += node.size;
        }
        NodeKind::Symlink { target } => {
            h.set_entry_type(tar::EntryType::Symlink);
            builder.append_link(&mut h, p, Path::new(OsStr::from_bytes(target))).map_err(unwrap_io)?;
        }
        NodeKind::Fifo | NodeKind::CharDevice { .. } | NodeKind::BlockDevice { .. } => {
            let (ty, rdev) = match node.kind {
                NodeKind::CharDevice { rdev } => (tar::EntryType::Char, rdev),
                NodeKind::BlockDevice { rdev } => (tar::EntryType::Block, rdev),
                _ => (tar::EntryType::Fifo, 0),
            };
            h.set_entry_type(ty);
            let (major, minor) = dev_split(rdev);
            h.set_device_major(major).map_err(unwrap_io)?;
            h.set_device_minor(minor).map_err(unwrap_io)?;
            builder.append_data(&mut h, p, io::empty()).map_err(unwrap_io)?;
        }
        NodeKind::Socket => return Ok(()),
    }
    stats.entries += 1;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::dev_split;

    #[test]
    fn device_numbers_split_like_glibc() {
        assert_eq!(dev_split(0x0103), (1, 3));
        assert_eq!(dev_split(0x07c8), (7, 200));
        // Numbers past 12 bits of major and 8 bits of minor use the high bits.
        let (major, minor) = (5000u64, 70_000u64);
        let rdev = ((major & 0xfff) << 8) | ((major & !0xfff) << 32) | (minor & 0xff) | ((minor & !0xff) << 12);
        assert_eq!(dev_split(rdev), (5000, 70_000));
    }
}
