//! Local filesystem backend. Writes go to a temporary file in the target directory, are
//! fsynced, then linked (create-only) or renamed (overwrite) into place, and the directory is
//! fsynced: a crash leaves either the whole object or none, never half of one.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::{Leftover, OwnedParts, PutMode, Storage, validate_name};
use cairn_format::error::{Error, Result};

/// Bytes asked for per read-ahead hint to the kernel ([`Storage::read_ahead`]): the usual
/// read-ahead window, the most one `posix_fadvise(WILLNEED)` reads.
const READ_AHEAD_STEP: u64 = 128 << 10;

/// How the names of temporary files begin (objects' names never do).
const TMP_PREFIX: &str = ".tmp-";

/// Objects kept open for ranged reads, at most (see [`LocalStorage::keep_files_open`]).
const OPEN_FILES: usize = 16;

/// Objects open for ranged reads.
#[derive(Debug)]
struct OpenFiles {
    /// Name and handle, least recently used first.
    files: Vec<(String, Arc<File>)>,
    /// Bumped by every write and deletion this storage makes: a handle opened before one is
    /// not kept (it may be of the file just replaced or deleted).
    generation: u64,
    /// How many may stay open.
    capacity: usize,
}

/// A repository in a local directory.
#[derive(Debug, Clone)]
pub struct LocalStorage {
    root: PathBuf,
    /// Objects recently read by range, kept open. Ranges are read of packs, and a walk of
    /// trees or a restore reads many ranges of few packs: an `fstat` and a `pread` each instead
    /// of open, stat, seek, read and close. Objects are replaced by renaming a new file over
    /// them, never written in place: a handle whose file was deleted or renamed over (no link
    /// left, as `fstat` says before each read) is dropped and the name opened again, so a
    /// read sees what a fresh open of the name would. Clones share it.
    open_files: Arc<Mutex<OpenFiles>>,
}

impl LocalStorage {
    /// Uses `root` (which need not exist yet).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        let open = OpenFiles { files: Vec::new(), generation: 0, capacity: OPEN_FILES };
        LocalStorage { root: root.into(), open_files: Arc::new(Mutex::new(open)) }
    }

    /// Keeps at most `n` objects open for ranged reads (default 16; 0: none). A process
    /// serving many repositories at once keeps none: it would hold descriptors for each.
    pub fn keep_files_open(self, n: usize) -> Self {
        {
            let mut open = self.open_files();
            open.capacity = n;
            open.files.truncate(n);
        }
        self
    }

    fn open_files(&self) -> MutexGuard<'_, OpenFiles> {
        self.open_files.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `name` (a valid name) open for reading, with its current size, through
    /// [`Self::open_files`].
    fn open_for_range(&self, name: &str) -> std::io::Result<(Arc<File>, u64)> {
        use std::os::unix::fs::MetadataExt;
        let generation = {
            let mut open = self.open_files();
            if let Some(at) = open.files.iter().position(|(n, _)| n == name) {
                let entry = open.files.remove(at);
                let f = Arc::clone(&entry.1);
                open.files.push(entry);
                drop(open);
                let meta = f.metadata()?;
                if meta.nlink() > 0 {
                    return Ok((f, meta.len()));
                }
                // Deleted or replaced since it was opened: by the name from now on.
                self.open_files().files.retain(|(_, kept)| !Arc::ptr_eq(kept, &f));
                self.open_files().generation
            } else {
                open.generation
            }
        };
        let f = Arc::new(File::open(self.root.join(name))?);
        let size = f.metadata()?.len();
        let mut open = self.open_files();
        if open.capacity > 0 && open.generation == generation && !open.files.iter().any(|(n, _)| n == name) {
            if open.files.len() >= open.capacity {
                open.files.remove(0);
            }
            open.files.push((name.to_string(), Arc::clone(&f)));
        }
        Ok((f, size))
    }

    /// Forgets the open handle of `name`, which this process has just replaced or deleted,
    /// and any handle being opened meanwhile.
    fn forget_open(&self, name: &str) {
        let mut open = self.open_files();
        open.generation += 1;
        open.files.retain(|(n, _)| n != name);
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Every object under `prefix`, with its size when `sized` (0 otherwise); temporary files
    /// of unfinished writes left out.
    fn walk(&self, prefix: &str, sized: bool) -> Result<Vec<(String, u64)>> {
        let dir = self.root.join(prefix.trim_end_matches('/'));
        let mut out = Vec::new();
        let mut stack = vec![(dir, prefix.trim_end_matches('/').to_string())];
        while let Some((dir, name)) = stack.pop() {
            let entries = match fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::storage("list", prefix, e)),
            };
            for entry in entries {
                let entry = entry.map_err(|e| Error::storage("list", prefix, e))?;
                let file_name = entry.file_name();
                let Some(file_name) = file_name.to_str() else {
                    continue;
                };
                if file_name.starts_with(TMP_PREFIX) {
                    continue;
                }
                let child = if name.is_empty() { file_name.to_string() } else { format!("{name}/{file_name}") };
                let ft = entry.file_type().map_err(|e| Error::storage("list", prefix, e))?;
                if ft.is_dir() {
                    stack.push((entry.path(), child));
                } else if ft.is_file() {
                    let size = if sized {
                        match entry.metadata() {
                            Ok(m) => m.len(),
                            // Deleted while listed: not there.
                            Err(e) if e.kind() == ErrorKind::NotFound => continue,
                            Err(e) => return Err(Error::storage("list", prefix, e)),
                        }
                    } else {
                        0
                    };
                    out.push((child, size));
                }
            }
        }
        Ok(out)
    }

    fn path(&self, name: &str) -> Result<PathBuf> {
        validate_name(name)?;
        Ok(self.root.join(name))
    }
}

impl LocalStorage {
    /// Writes an object through a temporary file: `body` writes the bytes, then the file is
    /// synced and linked (create-only) or renamed (overwrite) into place, and the directory
    /// synced. On failure the temporary file is removed.
    fn write_object(
        &self,
        name: &str,
        mode: PutMode,
        body: impl FnOnce(&mut std::io::BufWriter<File>) -> std::io::Result<()>,
    ) -> Result<()> {
        let path = self.path(name)?;
        let dir = path.parent().unwrap_or(&self.root).to_path_buf();
        let err = |e| Error::storage("write", name, e);
        // Only the owner reads a repository it makes: directories 0700, files 0600 (the umask
        // can only narrow that). Directories that exist keep their modes.
        fs::DirBuilder::new().recursive(true).mode(0o700).create(&dir).map_err(err)?;
        let mut nonce = [0u8; 8];
        getrandom::fill(&mut nonce)
            .map_err(|e| Error::Internal(format!("operating system random source failed: {e}")))?;
        let tmp = dir.join(format!("{TMP_PREFIX}{}-{}", std::process::id(), hex::encode(nonce)));
        let write = || -> std::io::Result<()> {
            let f = OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
            let mut f = std::io::BufWriter::with_capacity(256 << 10, f);
            body(&mut f)?;
            let f = f.into_inner().map_err(std::io::IntoInnerError::into_error)?;
            f.sync_all()?;
            // Synced, so its pages are clean: let the kernel drop them now. A backup writes
            // the repository once and reads it rarely; keeping gigabytes of packs cached would
            // evict what the machine's own work (and the next files to back up) needs, and
            // costs reclaim later. Advice only: an error changes nothing.
            let _ = rustix::fs::fadvise(&f, 0, None, rustix::fs::Advice::DontNeed);
            match mode {
                PutMode::CreateNew => {
                    fs::hard_link(&tmp, &path)?;
                    fs::remove_file(&tmp)?;
                }
                PutMode::Overwrite => fs::rename(&tmp, &path)?,
            }
            fsync_dir(&dir)
        };
        let result = write();
        // Once the new bytes are in place: a read from now on opens them.
        self.forget_open(name);
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result.map_err(err)
    }
}

fn fsync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

impl Storage for LocalStorage {
    fn location(&self) -> String {
        self.root.display().to_string()
    }

    fn put(&self, name: &str, data: &[u8], mode: PutMode) -> Result<()> {
        self.put_parts(name, &[data], mode)
    }

    fn put_parts(&self, name: &str, parts: &[&[u8]], mode: PutMode) -> Result<()> {
        self.write_object(name, mode, |f| parts.iter().try_for_each(|p| f.write_all(p)))
    }

    fn holds_bytes_until_stored(&self) -> bool {
        false
    }

    fn put_owned(&self, name: &str, data: Box<dyn OwnedParts>, mode: PutMode) -> Result<()> {
        self.write_object(name, mode, |f| {
            data.parts().iter().try_for_each(|p| f.write_all(p))?;
            // Written to the page cache: the buffer is free before the fsync.
            drop(data);
            Ok(())
        })
    }

    fn get(&self, name: &str) -> Result<Vec<u8>> {
        let path = self.path(name)?;
        fs::read(&path).map_err(|e| match e.kind() {
            ErrorKind::NotFound => Error::Missing(name.to_string()),
            _ => Error::storage("read", name, e),
        })
    }

    fn get_bounded(&self, name: &str, max: u64) -> Result<Vec<u8>> {
        let path = self.path(name)?;
        let err = |e: std::io::Error| match e.kind() {
            ErrorKind::NotFound => Error::Missing(name.to_string()),
            _ => Error::storage("read", name, e),
        };
        let f = File::open(&path).map_err(err)?;
        let size = f.metadata().map_err(err)?.len();
        if size > max {
            return Err(super::too_large(name, size, max));
        }
        let mut buf = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        // The file may grow between the stat and the read: never read past `max`.
        f.take(max.saturating_add(1)).read_to_end(&mut buf).map_err(err)?;
        if buf.len() as u64 > max {
            return Err(super::too_large(name, buf.len() as u64, max));
        }
        Ok(buf)
    }

    fn get_range(&self, name: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        validate_name(name)?;
        let err = |e: std::io::Error| match e.kind() {
            ErrorKind::NotFound => Error::Missing(name.to_string()),
            _ => Error::storage("read", name, e),
        };
        let (f, size) = self.open_for_range(name).map_err(err)?;
        if offset.checked_add(len).is_none_or(|end| end > size) {
            return Err(Error::corrupt(name, format!("range {offset}+{len} beyond the object's {size} bytes")));
        }
        let mut buf = vec![0u8; usize::try_from(len).map_err(|_| Error::InvalidInput("range too large".into()))?];
        std::os::unix::fs::FileExt::read_exact_at(f.as_ref(), &mut buf, offset).map_err(err)?;
        Ok(buf)
    }

    fn read_ahead(&self, name: &str, max_len: u64) {
        let Ok(f) = self.path(name).and_then(|p| File::open(p).map_err(|e| Error::storage("read", name, e))) else {
            return;
        };
        let Ok(meta) = f.metadata() else { return };
        if !meta.is_file() {
            return;
        }
        // Linux reads at most the device's read-ahead window (often 128 KiB) per WILLNEED
        // call, whatever length is asked: one call per window. Each queues its reads and
        // returns.
        let len = meta.len().min(max_len);
        let mut offset = 0;
        while offset < len {
            let Some(step) = std::num::NonZeroU64::new(READ_AHEAD_STEP.min(len - offset)) else { break };
            if rustix::fs::fadvise(&f, offset, Some(step), rustix::fs::Advice::WillNeed).is_err() {
                return;
            }
            offset += step.get();
        }
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>> {
        Ok(self.walk(prefix, false)?.into_iter().map(|(name, _)| name).collect())
    }

    fn list_sized(&self, prefix: &str) -> Result<Vec<(String, u64)>> {
        self.walk(prefix, true)
    }

    fn delete(&self, name: &str) -> Result<()> {
        let path = self.path(name)?;
        let removed = fs::remove_file(&path);
        self.forget_open(name);
        match removed {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::storage("delete", name, e)),
        }
    }

    fn stat(&self, name: &str) -> Result<Option<u64>> {
        let path = self.path(name)?;
        match fs::metadata(&path) {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::storage("stat", name, e)),
        }
    }

    fn modified(&self, name: &str) -> Result<Option<std::time::SystemTime>> {
        let path = self.path(name)?;
        match fs::metadata(&path).and_then(|m| m.modified()) {
            Ok(t) => Ok(Some(t)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::storage("stat", name, e)),
        }
    }

    fn leftovers(&self) -> Result<Vec<Leftover>> {
        let mut out = Vec::new();
        let mut stack = vec![(self.root.clone(), String::new())];
        while let Some((dir, name)) = stack.pop() {
            let entries = match fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::storage("list", name, e)),
            };
            for entry in entries {
                let entry = entry.map_err(|e| Error::storage("list", &name, e))?;
                let Some(file_name) = entry.file_name().to_str().map(str::to_string) else { continue };
                let child = if name.is_empty() { file_name.clone() } else { format!("{name}/{file_name}") };
                let ft = entry.file_type().map_err(|e| Error::storage("list", &child, e))?;
                if ft.is_dir() {
                    stack.push((entry.path(), child));
                } else if ft.is_file() && file_name.starts_with(TMP_PREFIX) {
                    // A writer at work renames its temporary file into place: gone by now, it
                    // was no leftover.
                    let meta = match entry.metadata() {
                        Ok(meta) => meta,
                        Err(e) if e.kind() == ErrorKind::NotFound => continue,
                        Err(e) => return Err(Error::storage("stat", &child, e)),
                    };
                    out.push(Leftover { name: child, size: meta.len(), modified: meta.modified().ok() });
                }
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn remove_leftover(&self, name: &str) -> Result<()> {
        // Invariant: only a temporary file goes this way, never an object.
        if !name.rsplit('/').next().is_some_and(|f| f.starts_with(TMP_PREFIX)) {
            return Err(Error::InvalidInput(format!("{name} is not a temporary file")));
        }
        let path = self.path(name)?;
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::storage("delete", name, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ranged reads of packs go through handles kept open: they still see what this storage
    /// writes over or deletes, hold more packs than it keeps open, and refuse ranges past the
    /// end.
    #[test]
    fn ranged_reads_of_packs_see_this_storages_own_rewrites_and_deletions() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalStorage::new(dir.path().join("repo"));
        let names: Vec<String> = (0..OPEN_FILES + 3).map(|i| format!("data/ab/p{i}")).collect();
        for (i, name) in names.iter().enumerate() {
            s.put(name, &[i as u8; 100], PutMode::CreateNew).unwrap();
        }
        for _ in 0..2 {
            for (i, name) in names.iter().enumerate() {
                assert_eq!(s.get_range(name, 10, 5).unwrap(), vec![i as u8; 5], "{name}");
            }
        }
        assert!(s.open_files().files.len() <= OPEN_FILES);
        let last = names.last().unwrap();
        s.put(last, &[0xee; 40], PutMode::Overwrite).unwrap();
        assert_eq!(s.get_range(last, 30, 10).unwrap(), vec![0xee; 10], "the new bytes, not the old handle's");
        assert!(matches!(s.get_range(last, 30, 11), Err(Error::Corrupt { .. })), "past the new end");
        s.delete(last).unwrap();
        assert!(matches!(s.get_range(last, 0, 1), Err(Error::Missing(_))));
        assert!(matches!(s.get_range("../outside", 0, 1), Err(Error::InvalidInput(_))));
    }

    /// What another process does to a pack kept open shows at the next read: deleted, it is
    /// missing; renamed over, the new bytes are read; truncated, a range past its end is
    /// refused as such.
    #[test]
    fn ranged_reads_of_packs_see_what_other_processes_did_to_them() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalStorage::new(dir.path().join("repo"));
        let path = dir.path().join("repo/data/cd/p");
        s.put("data/cd/p", &[1; 100], PutMode::CreateNew).unwrap();
        assert_eq!(s.get_range("data/cd/p", 90, 10).unwrap(), vec![1; 10]);
        let other = dir.path().join("repo/data/cd/other");
        fs::write(&other, [2u8; 100]).unwrap();
        fs::rename(&other, &path).unwrap();
        assert_eq!(s.get_range("data/cd/p", 90, 10).unwrap(), vec![2; 10], "renamed over");
        File::options().write(true).open(&path).unwrap().set_len(50).unwrap();
        assert!(matches!(s.get_range("data/cd/p", 45, 10), Err(Error::Corrupt { .. })), "truncated");
        assert_eq!(s.get_range("data/cd/p", 40, 10).unwrap(), vec![2; 10]);
        fs::remove_file(&path).unwrap();
        assert!(matches!(s.get_range("data/cd/p", 0, 1), Err(Error::Missing(_))), "deleted");
        assert!(s.open_files().files.is_empty());
        // Kept open by none.
        let none = LocalStorage::new(dir.path().join("repo")).keep_files_open(0);
        none.put("data/cd/q", &[3; 10], PutMode::CreateNew).unwrap();
        assert_eq!(none.get_range("data/cd/q", 0, 10).unwrap(), vec![3; 10]);
        assert!(none.open_files().files.is_empty());
    }

    /// A read-ahead hint for an object, for none, for a name outside the repository or for a
    /// directory does nothing but hint: no panic, no error, the object as it was.
    #[test]
    fn read_ahead_is_a_hint_whatever_the_name_names() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalStorage::new(dir.path().join("repo"));
        let bytes: Vec<u8> = (0..700_000u32).map(|i| (i % 251) as u8).collect();
        s.put("data/ab/x", &bytes, PutMode::CreateNew).unwrap();
        fs::write(dir.path().join("outside"), b"not the repository's").unwrap();
        fs::create_dir_all(dir.path().join("repo/data/cd/dir")).unwrap();
        for (name, max) in [
            ("data/ab/x", 1 << 20),
            ("data/ab/x", 1000),
            ("data/ab/x", 0),
            ("data/ab/gone", 1 << 20),
            ("../outside", 1 << 20),
            ("data/cd/dir", 1 << 20),
        ] {
            s.read_ahead(name, max);
        }
        assert_eq!(s.get("data/ab/x").unwrap(), bytes);
        assert_eq!(s.get_range("data/ab/x", 300_000, 5).unwrap(), bytes[300_000..300_005]);
    }
}
