//! A scratch table on disk for working sets that grow with the repository (prune's set of used
//! blobs, check's index entries once they outgrow memory): RocksDB without a write-ahead log, in the client's cache directory, removed when
//! dropped. Memory stays at its write buffer and block cache, whatever the number of blobs.

use std::path::{Path, PathBuf};

use rocksdb::{BlockBasedOptions, DB, IteratorMode, Options, WriteBatch, WriteOptions};

use crate::error::{Error, Result};

/// Entries collected before a batch is written.
const BATCH: usize = 16_384;

/// A table on disk, keys in byte order.
pub struct ScratchTable {
    db: Option<DB>,
    path: PathBuf,
    batch: WriteBatch,
    pending: usize,
}

impl std::fmt::Debug for ScratchTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScratchTable").field("path", &self.path).finish_non_exhaustive()
    }
}

impl Drop for ScratchTable {
    fn drop(&mut self) {
        drop(self.db.take());
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

fn write_options() -> WriteOptions {
    let mut wo = WriteOptions::default();
    // Scratch data: nothing to recover after a crash.
    wo.disable_wal(true);
    wo
}

impl ScratchTable {
    /// Creates an empty table in the new directory `path`.
    pub fn create(path: &Path) -> Result<Self> {
        let err = |e: String| Error::Cache { path: path.to_path_buf(), why: e };
        let _ = std::fs::remove_dir_all(path);
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.set_write_buffer_size(16 << 20);
        opts.set_max_open_files(64);
        let mut table = BlockBasedOptions::default();
        table.set_bloom_filter(10.0, false);
        table.set_block_cache(&rocksdb::Cache::new_lru_cache(8 << 20));
        opts.set_block_based_table_factory(&table);
        let db = DB::open(&opts, path).map_err(|e| err(e.to_string()))?;
        Ok(ScratchTable { db: Some(db), path: path.to_path_buf(), batch: WriteBatch::default(), pending: 0 })
    }

    fn db(&self) -> Result<&DB> {
        self.db.as_ref().ok_or_else(|| Error::Cache { path: self.path.clone(), why: "closed".into() })
    }

    fn err(&self, e: rocksdb::Error) -> Error {
        Error::Cache { path: self.path.clone(), why: e.to_string() }
    }

    /// Sets `key` to `value` (batched; visible to [`ScratchTable::get`] at once).
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        self.batch.put(key, value);
        self.pending += 1;
        if self.pending >= BATCH {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes the pending batch.
    pub fn flush(&mut self) -> Result<()> {
        if self.pending > 0 {
            let batch = std::mem::take(&mut self.batch);
            self.db()?.write_opt(batch, &write_options()).map_err(|e| self.err(e))?;
            self.pending = 0;
        }
        Ok(())
    }

    /// The value of `key`.
    pub fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.flush()?;
        self.db()?.get(key).map_err(|e| self.err(e))
    }

    /// Calls `f(key, value)` for every entry, in key order; stops at the first error.
    pub fn for_each(&mut self, mut f: impl FnMut(&[u8], &[u8]) -> Result<()>) -> Result<()> {
        self.flush()?;
        for item in self.db()?.iterator(IteratorMode::Start) {
            let (k, v) = item.map_err(|e| self.err(e))?;
            f(&k, &v)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn puts_are_visible_and_the_directory_goes_away() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("scratch");
        let mut t = ScratchTable::create(&path).unwrap();
        for i in 0..40_000u32 {
            let mut k = [0u8; 32];
            k[..4].copy_from_slice(&i.to_be_bytes());
            t.put(&k, if i % 2 == 0 { b"" } else { b"x" }).unwrap();
        }
        let mut k = [0u8; 32];
        k[..4].copy_from_slice(&7u32.to_be_bytes());
        assert_eq!(t.get(&k).unwrap(), Some(b"x".to_vec()));
        t.put(&k, b"y").unwrap();
        assert_eq!(t.get(&k).unwrap(), Some(b"y".to_vec()), "read your writes");
        let mut empty = 0;
        t.for_each(|_, v| {
            empty += usize::from(v.is_empty());
            Ok(())
        })
        .unwrap();
        assert_eq!(empty, 20_000);
        drop(t);
        assert!(!path.exists());
    }
}
