//! `--limit-upload` / `--limit-download`: a storage decorator that keeps the average transfer
//! rate under a limit, for any backend. Transfers are whole objects, so the limit holds on
//! average over objects, not within one: each transfer books its bytes on a shared clock and
//! the caller waits until the clock says the bytes may have gone.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{OwnedParts, PutMode, Storage};
use cairn_format::error::Result;

/// A rate in bytes per second, shared by every thread using the storage.
#[derive(Debug)]
pub struct RateLimit {
    bytes_per_second: u64,
    /// When the bytes booked so far will have gone at the limit.
    busy_until: Mutex<Option<Instant>>,
}

impl RateLimit {
    /// `bytes_per_second` must be positive.
    pub fn new(bytes_per_second: u64) -> Self {
        RateLimit { bytes_per_second: bytes_per_second.max(1), busy_until: Mutex::new(None) }
    }

    /// Books `bytes` and returns when they may be considered sent.
    fn book(&self, bytes: u64, now: Instant) -> Instant {
        let mut busy = self.busy_until.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // Idle time is not saved up as a burst: an empty clock starts now.
        let start = busy.filter(|b| *b > now).unwrap_or(now);
        let done = start + Duration::from_secs_f64(bytes as f64 / self.bytes_per_second as f64);
        *busy = Some(done);
        done
    }

    /// Books `bytes` and sleeps until they may have gone.
    pub fn pace(&self, bytes: u64) {
        let done = self.book(bytes, Instant::now());
        let now = Instant::now();
        if done > now {
            std::thread::sleep(done - now);
        }
    }
}

/// Wraps a backend with optional upload and download limits.
#[derive(Debug)]
pub struct Throttled {
    inner: Arc<dyn Storage>,
    upload: Option<RateLimit>,
    download: Option<RateLimit>,
}

impl Throttled {
    /// Limits in bytes per second; `None` is unlimited.
    pub fn new(inner: Arc<dyn Storage>, upload: Option<u64>, download: Option<u64>) -> Self {
        Throttled { inner, upload: upload.map(RateLimit::new), download: download.map(RateLimit::new) }
    }
}

impl Storage for Throttled {
    fn location(&self) -> String {
        self.inner.location()
    }

    fn put(&self, name: &str, data: &[u8], mode: PutMode) -> Result<()> {
        self.put_parts(name, &[data], mode)
    }

    fn put_parts(&self, name: &str, parts: &[&[u8]], mode: PutMode) -> Result<()> {
        let r = self.inner.put_parts(name, parts, mode);
        if let Some(limit) = &self.upload {
            limit.pace(parts.iter().map(|p| p.len() as u64).sum());
        }
        r
    }

    fn holds_bytes_until_stored(&self) -> bool {
        self.inner.holds_bytes_until_stored()
    }

    fn put_owned(&self, name: &str, data: Box<dyn OwnedParts>, mode: PutMode) -> Result<()> {
        let size = data.parts().iter().map(|p| p.len() as u64).sum();
        let r = self.inner.put_owned(name, data, mode);
        if let Some(limit) = &self.upload {
            limit.pace(size);
        }
        r
    }

    fn get(&self, name: &str) -> Result<Vec<u8>> {
        let r = self.inner.get(name);
        if let (Some(limit), Ok(data)) = (&self.download, &r) {
            limit.pace(data.len() as u64);
        }
        r
    }

    fn get_range(&self, name: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        let r = self.inner.get_range(name, offset, len);
        if let (Some(limit), Ok(data)) = (&self.download, &r) {
            limit.pace(data.len() as u64);
        }
        r
    }

    fn read_ahead(&self, name: &str, max_len: u64) {
        // Bytes read ahead would pass the download limit by.
        if self.download.is_none() {
            self.inner.read_ahead(name, max_len);
        }
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>> {
        self.inner.list(prefix)
    }

    fn list_sized(&self, prefix: &str) -> Result<Vec<(String, u64)>> {
        self.inner.list_sized(prefix)
    }

    fn delete(&self, name: &str) -> Result<()> {
        self.inner.delete(name)
    }

    fn delete_many(&self, names: &[String]) -> Result<()> {
        self.inner.delete_many(names)
    }

    fn stat(&self, name: &str) -> Result<Option<u64>> {
        self.inner.stat(name)
    }

    fn modified(&self, name: &str) -> Result<Option<std::time::SystemTime>> {
        self.inner.modified(name)
    }

    fn leftovers(&self) -> Result<Vec<super::Leftover>> {
        self.inner.leftovers()
    }

    fn permits(&self, access: super::Access) -> Result<()> {
        self.inner.permits(access)
    }

    fn remove_leftover(&self, name: &str) -> Result<()> {
        self.inner.remove_leftover(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemStorage;

    #[test]
    fn bookings_queue_behind_each_other_and_idle_time_is_not_saved() {
        let limit = RateLimit::new(1000);
        let t0 = Instant::now();
        assert_eq!(limit.book(500, t0), t0 + Duration::from_millis(500));
        // A second transfer at the same moment waits for the first one's share.
        assert_eq!(limit.book(1000, t0), t0 + Duration::from_millis(1500));
        // After a long pause the clock restarts at the present.
        let later = t0 + Duration::from_secs(10);
        assert_eq!(limit.book(100, later), later + Duration::from_millis(100));
    }

    /// How far ahead of `from` a limit's clock has booked transfers.
    fn booked(limit: &RateLimit, from: Instant) -> Duration {
        lock_busy(limit).map_or(Duration::ZERO, |busy| busy.saturating_duration_since(from))
    }

    fn lock_busy(limit: &RateLimit) -> Option<Instant> {
        *limit.busy_until.lock().unwrap()
    }

    /// Every transfer through the storage is booked on its direction's clock (so the caller
    /// waited for it): 200 kB each way at 400 kB/s books half a second past the start. Read
    /// from the clocks, not from elapsed time, so a slow machine cannot pass or fail it.
    #[test]
    fn throttled_storage_books_every_transfer_on_its_clock() {
        let s = Throttled::new(Arc::new(MemStorage::new()), Some(400_000), Some(400_000));
        let data = vec![7u8; 50_000];
        let start = Instant::now();
        for i in 0..4 {
            s.put(&format!("o/{i}"), &data, PutMode::CreateNew).unwrap();
        }
        let (up, down) = (s.upload.as_ref().unwrap(), s.download.as_ref().unwrap());
        assert!(booked(up, start) >= Duration::from_millis(500), "{:?}", booked(up, start));
        assert_eq!(lock_busy(down), None, "no download yet");
        let start = Instant::now();
        for i in 0..4 {
            assert_eq!(s.get(&format!("o/{i}")).unwrap(), data);
        }
        assert!(booked(down, start) >= Duration::from_millis(500), "{:?}", booked(down, start));
    }
}
