//! Fixed-width records sorted and deduplicated in bounded memory: held in memory up to a
//! budget, spilled beyond it into a [`ScratchTable`] (which keeps its keys sorted), and read
//! back in byte order. `check` groups the index's entries by pack and by blob with it, so its
//! memory does not grow with the number of blobs.

use std::path::PathBuf;

use super::ScratchTable;
use crate::error::{Error, Result};

/// Records of `N` bytes, read back sorted, each distinct record once.
pub struct SortedRecords<const N: usize> {
    memory: Vec<[u8; N]>,
    /// Records held in memory before they are spilled.
    budget: usize,
    /// Where the spill table goes, created on the first spill.
    spill_path: PathBuf,
    spill: Option<ScratchTable>,
}

impl<const N: usize> std::fmt::Debug for SortedRecords<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SortedRecords")
            .field("in_memory", &self.memory.len())
            .field("spilled", &self.spill.is_some())
            .finish_non_exhaustive()
    }
}

impl<const N: usize> SortedRecords<N> {
    /// An empty set that holds up to `budget` records in memory and spills the rest into a
    /// scratch table at `spill_path` (a path that does not exist yet; removed when dropped).
    pub fn new(budget: usize, spill_path: PathBuf) -> Self {
        SortedRecords { memory: Vec::new(), budget: budget.max(1), spill_path, spill: None }
    }

    /// Adds a record.
    pub fn push(&mut self, record: [u8; N]) -> Result<()> {
        self.memory.push(record);
        if self.memory.len() >= self.budget {
            self.spill()?;
        }
        Ok(())
    }

    /// Whether records went to disk (for tests and reports).
    pub fn spilled(&self) -> bool {
        self.spill.is_some()
    }

    fn spill(&mut self) -> Result<()> {
        if self.spill.is_none() {
            self.spill = Some(ScratchTable::create(&self.spill_path)?);
        }
        let Some(table) = self.spill.as_mut() else { return Ok(()) };
        for record in self.memory.drain(..) {
            table.put(&record, b"")?;
        }
        table.flush()
    }

    /// Calls `f` with every distinct record in byte order; stops at the first error.
    pub fn for_each(mut self, mut f: impl FnMut(&[u8; N]) -> Result<()>) -> Result<()> {
        if self.spill.is_none() {
            self.memory.sort_unstable();
            self.memory.dedup();
            return self.memory.iter().try_for_each(f);
        }
        self.spill()?;
        let path = self.spill_path.clone();
        let Some(table) = self.spill.as_mut() else { return Ok(()) };
        table.for_each(|key, _| {
            let record = <&[u8; N]>::try_from(key)
                .map_err(|_| Error::Cache { path: path.clone(), why: format!("a {}-byte record", key.len()) })?;
            f(record)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect<const N: usize>(records: SortedRecords<N>) -> Vec<[u8; N]> {
        let mut out = Vec::new();
        records
            .for_each(|r| {
                out.push(*r);
                Ok(())
            })
            .unwrap();
        out
    }

    #[test]
    fn records_come_back_sorted_and_distinct_in_memory_and_spilled() {
        let dir = tempfile::tempdir().unwrap();
        let input: Vec<[u8; 3]> = (0..500u32).map(|i| [(i * 37 % 11) as u8, (i % 7) as u8, (i % 3) as u8]).collect();
        let mut expected = input.clone();
        expected.sort_unstable();
        expected.dedup();
        for budget in [1, 10, 10_000] {
            let path = dir.path().join(format!("spill-{budget}"));
            let mut records = SortedRecords::<3>::new(budget, path.clone());
            for r in &input {
                records.push(*r).unwrap();
            }
            assert_eq!(records.spilled(), budget < input.len(), "budget {budget}");
            assert_eq!(collect(records), expected, "budget {budget}");
            assert!(!path.exists(), "the spill table is removed");
        }
    }

    #[test]
    fn an_error_from_the_callback_stops_the_walk() {
        let dir = tempfile::tempdir().unwrap();
        let mut records = SortedRecords::<1>::new(2, dir.path().join("spill"));
        for b in 0..5u8 {
            records.push([b]).unwrap();
        }
        let mut seen = 0;
        let e = records
            .for_each(|r| {
                seen += 1;
                if r[0] == 2 { Err(Error::Missing("stop".into())) } else { Ok(()) }
            })
            .unwrap_err();
        assert!(matches!(e, Error::Missing(_)));
        assert_eq!(seen, 3);
    }
}
