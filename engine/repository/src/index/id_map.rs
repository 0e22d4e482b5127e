//! A map from blob ids to small values for working sets that grow with the repository (prune's
//! used blobs and their claims, the distinct blobs `stats` counts): a hash table in memory up to
//! a budget of entries, and a [`ScratchTable`] on disk once it outgrows that, so memory stays
//! bounded at 50M blobs while an ordinary repository never pays for RocksDB's memtable (a
//! skip-list insert and a lookup per blob were a third of prune's CPU).

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::path::PathBuf;

use super::ScratchTable;
use crate::error::{Error, Result};

/// Entries a map holds in memory by default: what fills 2^18 hash buckets at the table's 7/8
/// load, about 21 MB with 46-byte values (the scratch table it replaces costs 24 MB in write
/// buffer and block cache).
pub const IDS_IN_MEMORY: usize = (1 << 18) / 8 * 7;

/// A value of at most `V` bytes, stored inline.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Value<const V: usize> {
    len: u8,
    bytes: [u8; V],
}

impl<const V: usize> Value<V> {
    fn new(value: &[u8]) -> Option<Self> {
        let len = u8::try_from(value.len()).ok().filter(|_| value.len() <= V)?;
        let mut bytes = [0u8; V];
        bytes.get_mut(..value.len())?.copy_from_slice(value);
        Some(Value { len, bytes })
    }
}

impl<const V: usize> std::ops::Deref for Value<V> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.bytes.get(..usize::from(self.len)).unwrap_or_default()
    }
}

impl<const V: usize> std::fmt::Debug for Value<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", hex::encode(&**self))
    }
}

/// Ids (32 bytes) mapped to values of at most `V` bytes. After an error (the spill table could
/// not be written) the map may have lost entries: callers stop using it.
pub struct IdMap<const V: usize> {
    /// Keyed hashing (SipHash with a random key): the ids come from trees and index segments
    /// that a writer holding a key (an append-only identity) may fill with chosen values, and
    /// ids that collide in an unkeyed hash would make every insert and lookup walk the table.
    memory: HashMap<[u8; 32], Value<V>, RandomState>,
    budget: usize,
    /// Where the spill table goes, created when the budget is passed.
    spill_path: PathBuf,
    spill: Option<ScratchTable>,
}

impl<const V: usize> std::fmt::Debug for IdMap<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdMap")
            .field("in_memory", &self.memory.len())
            .field("spilled", &self.spill.is_some())
            .finish_non_exhaustive()
    }
}

impl<const V: usize> IdMap<V> {
    /// An empty map that holds up to `budget` entries in memory and moves them all into a
    /// scratch table at `spill_path` (a path that does not exist yet; removed when dropped)
    /// when one more comes. With the default budget the table never grows past 2^18 buckets.
    pub fn new(budget: usize, spill_path: PathBuf) -> Self {
        IdMap { memory: HashMap::default(), budget, spill_path, spill: None }
    }

    /// Whether the entries went to disk (for tests and reports).
    pub fn spilled(&self) -> bool {
        self.spill.is_some()
    }

    fn too_long(&self, value: &[u8]) -> Error {
        Error::Cache {
            path: self.spill_path.clone(),
            why: format!("a {}-byte value in a map of {V}-byte ones", value.len()),
        }
    }

    /// Sets `id` to `value` (at most `V` bytes).
    pub fn put(&mut self, id: &[u8; 32], value: &[u8]) -> Result<()> {
        if let Some(table) = self.spill.as_mut() {
            if value.len() > V {
                return Err(self.too_long(value));
            }
            return table.put(id, value);
        }
        let Some(v) = Value::new(value) else { return Err(self.too_long(value)) };
        // Spilled before a new id would pass the budget, not after: inserting first would
        // grow the table (a rehash into twice the buckets, the old ones still held) first.
        if self.memory.len() >= self.budget && !self.memory.contains_key(id) {
            self.spill_all()?;
            return self.put(id, value);
        }
        self.memory.insert(*id, v);
        Ok(())
    }

    fn spill_all(&mut self) -> Result<()> {
        let table = match self.spill.as_mut() {
            Some(table) => table,
            None => self.spill.insert(ScratchTable::create(&self.spill_path)?),
        };
        for (id, value) in self.memory.drain() {
            table.put(&id, &value)?;
        }
        self.memory.shrink_to_fit();
        table.flush()
    }

    /// The value of `id`.
    pub fn get(&mut self, id: &[u8; 32]) -> Result<Option<Value<V>>> {
        match self.spill.as_mut() {
            None => Ok(self.memory.get(id).copied()),
            Some(table) => match table.get(id)? {
                None => Ok(None),
                Some(value) => match Value::new(&value) {
                    Some(v) => Ok(Some(v)),
                    None => Err(self.too_long(&value)),
                },
            },
        }
    }

    /// Calls `f(id, value)` for every entry in no particular order (no sort of the entries
    /// held in memory); stops at the first error.
    pub fn for_each_unordered(&mut self, mut f: impl FnMut(&[u8; 32], &[u8]) -> Result<()>) -> Result<()> {
        if self.spill.is_none() {
            return self.memory.iter().try_for_each(|(id, value)| f(id, value));
        }
        self.for_each(f)
    }

    /// Calls `f(id, value)` for every entry in id order; stops at the first error.
    pub fn for_each(&mut self, mut f: impl FnMut(&[u8; 32], &[u8]) -> Result<()>) -> Result<()> {
        match self.spill.as_mut() {
            None => {
                let mut entries: Vec<(&[u8; 32], &Value<V>)> = self.memory.iter().collect();
                entries.sort_unstable_by_key(|(id, _)| *id);
                entries.into_iter().try_for_each(|(id, value)| f(id, value))
            }
            Some(table) => {
                let path = self.spill_path.clone();
                table.for_each(|key, value| {
                    let id = <&[u8; 32]>::try_from(key)
                        .map_err(|_| Error::Cache { path: path.clone(), why: format!("a {}-byte id", key.len()) })?;
                    f(id, value)
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u32) -> [u8; 32] {
        *blake3::hash(&n.to_le_bytes()).as_bytes()
    }

    fn contents(map: &mut IdMap<4>) -> Vec<([u8; 32], Vec<u8>)> {
        let mut out = Vec::new();
        map.for_each(|id, v| {
            out.push((*id, v.to_vec()));
            Ok(())
        })
        .unwrap();
        out
    }

    #[test]
    fn in_memory_and_spilled_maps_read_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let mut expected = std::collections::BTreeMap::new();
        let mut maps: Vec<IdMap<4>> =
            [0, 100, 1_000_000].iter().map(|b| IdMap::new(*b, dir.path().join(format!("spill-{b}")))).collect();
        for n in 0..500u32 {
            // Every id twice, the second value replacing the first; some values empty.
            for round in 0..2u32 {
                let value = if n % 3 == 0 { Vec::new() } else { (n * 10 + round).to_be_bytes().to_vec() };
                for m in &mut maps {
                    m.put(&id(n), &value).unwrap();
                }
                expected.insert(id(n), value);
            }
        }
        let expected: Vec<_> = expected.into_iter().collect();
        for (m, spilled) in maps.iter_mut().zip([true, true, false]) {
            assert_eq!(m.spilled(), spilled);
            assert_eq!(contents(m), expected, "in id order, each id once, the last value");
            let mut unordered = Vec::new();
            m.for_each_unordered(|id, v| {
                unordered.push((*id, v.to_vec()));
                Ok(())
            })
            .unwrap();
            unordered.sort();
            assert_eq!(unordered, expected, "the same entries in any order");
            assert_eq!(m.get(&id(7)).unwrap().as_deref(), Some(&(71u32).to_be_bytes()[..]));
            assert_eq!(m.get(&id(9)).unwrap().as_deref(), Some(&[][..]));
            assert!(m.get(&id(500)).unwrap().is_none());
        }
        let path = dir.path().join("spill-100");
        assert!(path.exists());
        drop(maps);
        assert!(!path.exists(), "the spill table is removed");
    }

    #[test]
    fn a_map_at_its_budget_spills_before_it_grows() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = IdMap::<0>::new(IDS_IN_MEMORY, dir.path().join("s"));
        for n in 0..IDS_IN_MEMORY as u32 {
            m.put(&id(n), b"").unwrap();
        }
        let capacity = m.memory.capacity();
        assert!(capacity < 1 << 18, "{capacity}: 2^18 buckets at most");
        m.put(&id(0), b"").unwrap();
        assert!(!m.spilled(), "an id already held is replaced in memory");
        m.put(&id(u32::MAX), b"").unwrap();
        assert!(m.spilled());
        assert!(m.get(&id(7)).unwrap().is_some() && m.get(&id(u32::MAX)).unwrap().is_some());
    }

    #[test]
    fn values_longer_than_the_width_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        for budget in [0, 10] {
            let mut m = IdMap::<4>::new(budget, dir.path().join(format!("s{budget}")));
            m.put(&id(1), b"1234").unwrap();
            assert!(m.put(&id(2), b"12345").is_err());
        }
    }

    #[test]
    fn an_error_from_the_callback_stops_the_walk() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = IdMap::<0>::new(10, dir.path().join("s"));
        for n in 0..5 {
            m.put(&id(n), b"").unwrap();
        }
        let mut calls = 0;
        let r = m.for_each(|_, _| {
            calls += 1;
            Err(Error::Cache { path: PathBuf::new(), why: "stop".into() })
        });
        assert!(r.is_err());
        assert_eq!(calls, 1);
    }
}
