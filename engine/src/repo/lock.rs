//! Repository locks. A lock is a sealed object `locks/<id>`; shared locks (snapshot, restore,
//! check) coexist, an exclusive one (forget, prune, key changes) excludes every other. Taking a
//! lock: wait until no conflicting lock is live, write ours, look again, and back off (remove
//! ours, wait a random moment) if another appeared meanwhile, so two contenders never both
//! win. A thread rewrites the lock every few minutes; one not refreshed for `STALE_AFTER`, or
//! held on this host by a process that no longer exists, is stale and ignored.

use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::crypto::{Key32, random_below};
use crate::error::{Error, Result};
use crate::format::envelope::{self, ObjectKind};
use crate::format::lock::LockDoc;
use crate::format::now_ns;
use crate::id::ObjectId;
use crate::storage::{PutMode, Storage};

use super::Repository;

/// A lock not refreshed for this long belongs to a dead process.
pub const STALE_AFTER: Duration = Duration::from_secs(30 * 60);
/// How often a held lock is rewritten.
const REFRESH_EVERY: Duration = Duration::from_secs(5 * 60);

/// Who asks for a lock, and how long to wait for it.
#[derive(Debug, Clone)]
pub struct LockOptions {
    /// Exclusive (forget, prune, key changes) or shared.
    pub exclusive: bool,
    /// What the holder does, for messages.
    pub operation: String,
    /// This host's name.
    pub hostname: String,
    /// This user's name.
    pub username: String,
    /// How long to wait for conflicting locks to go away before [`Error::Locked`].
    pub retry_for: Duration,
}

/// A lock object as found in the repository.
#[derive(Debug, Clone)]
pub struct LockInfo {
    /// Its object name.
    pub name: String,
    /// Its content, or why it cannot be read.
    pub doc: std::result::Result<LockDoc, String>,
    /// Whether it is stale.
    pub stale: bool,
}

/// A held lock; released (the object deleted) when dropped.
#[derive(Debug)]
pub struct LockGuard {
    storage: Arc<dyn Storage>,
    name: String,
    stop: Arc<(Mutex<bool>, Condvar)>,
    refresher: Option<JoinHandle<()>>,
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        let (flag, cv) = &*self.stop;
        *flag.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = true;
        cv.notify_all();
        if let Some(t) = self.refresher.take() {
            let _ = t.join();
        }
        let _ = self.storage.delete(&self.name);
    }
}

/// Whether a process `pid` exists on this host.
fn pid_alive(pid: u32) -> bool {
    let Some(pid) = i32::try_from(pid).ok().and_then(rustix::process::Pid::from_raw) else {
        return false;
    };
    !matches!(rustix::process::test_kill_process(pid), Err(rustix::io::Errno::SRCH))
}

/// Whether `doc` is stale at `now` for a client on `hostname`.
pub fn is_stale(doc: &LockDoc, now: i64, hostname: &str) -> bool {
    let age = Duration::from_nanos(u64::try_from(now.saturating_sub(doc.refreshed_ns)).unwrap_or(0));
    age > STALE_AFTER || (doc.hostname == hostname && !pid_alive(doc.pid))
}

fn seal(key: &Key32, epoch: u32, name: &str, doc: &LockDoc) -> Result<Vec<u8>> {
    envelope::seal(key, epoch, ObjectKind::Lock, name.as_bytes(), &doc.encode())
}

impl Repository {
    /// Every lock object, read and judged stale or live.
    pub fn locks(&self, hostname: &str) -> Result<Vec<LockInfo>> {
        let now = now_ns();
        let mut out = Vec::new();
        for name in self.storage().list("locks/")? {
            let doc = self
                .load_object(ObjectKind::Lock, &name)
                .and_then(|plain| LockDoc::decode(&plain, &name))
                .map_err(|e| e.to_string());
            let stale = doc.as_ref().is_ok_and(|d| is_stale(d, now, hostname));
            out.push(LockInfo { name, doc, stale });
        }
        Ok(out)
    }

    /// The first live lock that conflicts with `opts`, other than `own`.
    fn conflict(&self, opts: &LockOptions, own: Option<&str>) -> Result<Option<(String, i64)>> {
        for l in self.locks(&opts.hostname)? {
            if Some(l.name.as_str()) == own || l.stale {
                continue;
            }
            match &l.doc {
                Ok(d) if opts.exclusive || d.exclusive => return Ok(Some((d.holder(), d.created_ns))),
                Ok(_) => {}
                // A lock nobody can read may hide anything: an exclusive lock waits for it.
                Err(e) if opts.exclusive => return Ok(Some((format!("unreadable lock {} ({e})", l.name), 0))),
                Err(_) => {}
            }
        }
        Ok(None)
    }

    /// Takes a lock, waiting up to `opts.retry_for` for conflicting ones. [`Error::Locked`]
    /// names the holder when the wait runs out.
    pub fn lock(&self, opts: &LockOptions) -> Result<LockGuard> {
        let deadline = Instant::now() + opts.retry_for;
        let mut pause = Duration::from_millis(200);
        loop {
            let mut holder = self.conflict(opts, None)?;
            if holder.is_none() {
                let guard = self.write_lock(opts)?;
                holder = self.conflict(opts, Some(&guard.name))?;
                if holder.is_none() {
                    return Ok(guard);
                }
                drop(guard);
            }
            let (who, since_ns) = holder.unwrap_or_default();
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::Locked { holder: who, since_ns });
            }
            // A random share of the pause, so two contenders do not keep colliding.
            let jitter = Duration::from_millis(random_below(pause.as_millis() as u64 + 1)?);
            std::thread::sleep((pause / 2 + jitter).min(deadline - now));
            pause = (pause * 2).min(Duration::from_secs(10));
        }
    }

    fn write_lock(&self, opts: &LockOptions) -> Result<LockGuard> {
        let name = format!("locks/{}", ObjectId::random()?);
        let now = now_ns();
        let mut doc = LockDoc {
            exclusive: opts.exclusive,
            operation: opts.operation.clone(),
            hostname: opts.hostname.clone(),
            username: opts.username.clone(),
            pid: std::process::id(),
            created_ns: now,
            refreshed_ns: now,
        };
        let (epoch, key) = self.keyring().current();
        let key = key.clone();
        self.storage().put(&name, &seal(&key, epoch, &name, &doc)?, PutMode::CreateNew)?;
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let refresher = {
            let (storage, name, stop) = (Arc::clone(self.storage()), name.clone(), Arc::clone(&stop));
            std::thread::Builder::new()
                .name("cairn-lock".into())
                .spawn(move || {
                    let (flag, cv) = &*stop;
                    let mut stopped = flag.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    loop {
                        // Invariant: look at the flag before every wait; the release may have
                        // happened before this thread first ran, and its wake-up is then lost.
                        if *stopped {
                            return;
                        }
                        let (s, timeout) =
                            cv.wait_timeout(stopped, REFRESH_EVERY).unwrap_or_else(std::sync::PoisonError::into_inner);
                        stopped = s;
                        if *stopped {
                            return;
                        }
                        if timeout.timed_out() {
                            doc.refreshed_ns = now_ns();
                            if let Ok(sealed) = seal(&key, epoch, &name, &doc) {
                                let _ = storage.put(&name, &sealed, PutMode::Overwrite);
                            }
                        }
                    }
                })
                .map_err(|e| Error::InvalidInput(format!("cannot start the lock refresher: {e}")))?
        };
        Ok(LockGuard { storage: Arc::clone(self.storage()), name, stop, refresher: Some(refresher) })
    }

    /// Removes stale locks (all of them with `all`); returns how many.
    pub fn unlock(&self, hostname: &str, all: bool) -> Result<usize> {
        let mut removed = 0;
        for l in self.locks(hostname)? {
            if all || l.stale {
                self.storage().delete(&l.name)?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(host: &str, pid: u32, refreshed_ns: i64) -> LockDoc {
        LockDoc {
            exclusive: true,
            operation: "prune".into(),
            hostname: host.into(),
            username: "u".into(),
            pid,
            created_ns: refreshed_ns,
            refreshed_ns,
        }
    }

    #[test]
    fn staleness_by_age_and_by_dead_pid_on_this_host() {
        let now = 10_000 * 1_000_000_000;
        let me = std::process::id();
        assert!(!is_stale(&doc("h", me, now), now, "h"));
        assert!(is_stale(&doc("h", me, now - 31 * 60 * 1_000_000_000), now, "h"), "too old");
        // pid 0 is never a live process; on another host the pid means nothing here.
        assert!(is_stale(&doc("h", 0, now), now, "h"));
        assert!(!is_stale(&doc("other", 0, now), now, "h"));
    }
}
