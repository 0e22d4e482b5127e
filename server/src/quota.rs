//! Quotas: how many bytes a repository may hold. The server keeps no state of its own, so
//! what a repository holds is counted from the storage's listing (names with sizes, one
//! listing per repository) and kept in memory with what this instance has stored since.
//! A count is taken again when it is older than [`RECOUNT_AFTER`], after anything was deleted
//! (forget and prune free space), and before a write is refused (another instance's prune may
//! have freed room), but never more than once per [`RECOUNT_AT_MOST_EVERY`].
//!
//! Several instances over one bucket each add only what they stored themselves, so together
//! they may overshoot a quota by what the others stored since this one's last count: a quota
//! bounds what a host can fill, give or take minutes of uploads, it is not a byte-exact
//! ledger.
//!
//! Only writes of identities that may not delete are refused: those that may (prune, an
//! admin) are what brings a repository back under its quota, and prune writes repacked packs
//! before it deletes the old ones.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use cairn_storage::Storage;

/// How old a count may grow before it is taken again.
pub const RECOUNT_AFTER: Duration = Duration::from_secs(300);

/// How often a write that would go over may cause a count.
pub const RECOUNT_AT_MOST_EVERY: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy)]
struct Count {
    /// Bytes the last listing showed.
    listed: u64,
    /// When that listing was taken.
    at: Instant,
    /// Bytes this instance stored since (landed writes).
    added: u64,
    /// Bytes of writes admitted and not finished yet.
    in_flight: u64,
    /// Whether something was deleted since (the count is high).
    stale: bool,
}

impl Count {
    /// Nothing counted yet.
    fn empty(at: Instant) -> Self {
        Count { listed: 0, at, added: 0, in_flight: 0, stale: true }
    }
}

/// What a write may do under its repository's quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// It fits; `len` bytes are reserved until [`Usage::release`] gives them back.
    Reserved,
    /// It does not: the repository holds `held` of its `quota` bytes.
    Over { held: u64, quota: u64 },
}

/// The counted usage of every repository with a quota.
#[derive(Debug, Default)]
pub struct Usage {
    counts: Mutex<HashMap<String, Count>>,
}

impl Usage {
    fn counts(&self) -> std::sync::MutexGuard<'_, HashMap<String, Count>> {
        self.counts.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Reserves `len` bytes of `repository`'s `quota` for a write, counting what the storage
    /// holds first when the count is missing, old, or would refuse it. Blocks (a listing).
    pub fn admit(
        &self,
        storage: &dyn Storage,
        repository: &str,
        quota: u64,
        len: u64,
    ) -> cairn_format::error::Result<Admission> {
        self.admit_at(storage, repository, quota, len, Instant::now())
    }

    fn admit_at(
        &self,
        storage: &dyn Storage,
        repository: &str,
        quota: u64,
        len: u64,
        now: Instant,
    ) -> cairn_format::error::Result<Admission> {
        // Never more often than RECOUNT_AT_MOST_EVERY, whatever asks for it: a client cannot
        // make the server list the repository on every request.
        let needs_count = match self.counts().get(repository) {
            None => true,
            Some(c) => {
                let age = now.duration_since(c.at);
                age >= RECOUNT_AFTER
                    || (age >= RECOUNT_AT_MOST_EVERY
                        && (c.stale || c.listed.saturating_add(c.added).saturating_add(len) > quota))
            }
        };
        if needs_count {
            let before = self.counts().get(repository).map_or(0, |c| c.added);
            let listed = storage.list_sized("")?.iter().map(|(_, size)| size).sum();
            let mut counts = self.counts();
            let count = counts.entry(repository.to_string()).or_insert(Count::empty(now));
            // Writes that landed while the listing ran may or may not be in it: they stay
            // counted (too high errs on the side of the quota); earlier ones are in it.
            *count = Count { listed, at: now, added: count.added.saturating_sub(before), stale: false, ..*count };
        }
        let mut counts = self.counts();
        let count = counts.entry(repository.to_string()).or_insert(Count::empty(now));
        let held = count.listed.saturating_add(count.added).saturating_add(count.in_flight);
        if held.saturating_add(len) > quota {
            return Ok(Admission::Over { held, quota });
        }
        count.in_flight = count.in_flight.saturating_add(len);
        Ok(Admission::Reserved)
    }

    /// A write [`Usage::admit`] reserved `len` bytes for landed.
    pub fn landed(&self, repository: &str, len: u64) {
        if let Some(c) = self.counts().get_mut(repository) {
            c.in_flight = c.in_flight.saturating_sub(len);
            c.added = c.added.saturating_add(len);
        }
    }

    /// A write [`Usage::admit`] reserved `len` bytes for did not land.
    pub fn release(&self, repository: &str, len: u64) {
        if let Some(c) = self.counts().get_mut(repository) {
            c.in_flight = c.in_flight.saturating_sub(len);
        }
    }

    /// Something in `repository` was deleted or overwritten: count again before the next
    /// write.
    pub fn changed(&self, repository: &str) {
        if let Some(c) = self.counts().get_mut(repository) {
            c.stale = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_storage::{MemStorage, PutMode};

    #[test]
    fn writes_fit_until_the_quota_and_a_deletion_frees_room() {
        let storage = MemStorage::new();
        storage.put("data/aa/x", &[0; 600], PutMode::CreateNew).unwrap();
        let usage = Usage::default();
        let t0 = Instant::now();
        assert_eq!(usage.admit_at(&storage, "r", 1000, 300, t0).unwrap(), Admission::Reserved);
        storage.put("data/aa/y", &[0; 300], PutMode::CreateNew).unwrap();
        usage.landed("r", 300);
        // 900 held: 101 more do not fit, 100 do.
        assert_eq!(usage.admit_at(&storage, "r", 1000, 101, t0).unwrap(), Admission::Over { held: 900, quota: 1000 });
        assert_eq!(usage.admit_at(&storage, "r", 1000, 100, t0).unwrap(), Admission::Reserved);
        // That write failed: its bytes are free again.
        usage.release("r", 100);
        storage.delete("data/aa/x").unwrap();
        usage.changed("r");
        // A deletion is counted at the next count, which comes no sooner than the interval.
        assert!(matches!(usage.admit_at(&storage, "r", 1000, 700, t0).unwrap(), Admission::Over { .. }));
        let later = t0 + RECOUNT_AT_MOST_EVERY;
        assert_eq!(usage.admit_at(&storage, "r", 1000, 700, later).unwrap(), Admission::Reserved);
        assert_eq!(usage.admit_at(&storage, "r", 1000, 1, later).unwrap(), Admission::Over { held: 1000, quota: 1000 });
    }

    #[test]
    fn repositories_are_counted_apart() {
        let storage = MemStorage::new();
        storage.put("data/aa/x", &[0; 900], PutMode::CreateNew).unwrap();
        let empty = MemStorage::new();
        let usage = Usage::default();
        assert!(matches!(usage.admit(&storage, "full", 1000, 200).unwrap(), Admission::Over { .. }));
        assert_eq!(usage.admit(&empty, "empty", 1000, 200).unwrap(), Admission::Reserved);
    }
}
