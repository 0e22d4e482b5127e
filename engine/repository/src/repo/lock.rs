//! Repository locks. A lock is a sealed object `locks/<id>`; shared locks (snapshot, restore,
//! check) coexist, an exclusive one (forget, prune, key changes) excludes every other. Taking a
//! lock: wait until no conflicting lock is live, write ours, look again, and back off (remove
//! ours, wait a random moment) if another appeared meanwhile, so two contenders never both
//! win. A thread rewrites the lock every few minutes; one not refreshed for `STALE_AFTER`, or
//! held by a process that no longer exists where pids mean the same (same machine identity:
//! machine id, boot and pid namespace, not the host name, which containers share), is stale
//! and ignored. A refresh that fails, or a lock found gone, is remembered: the repository
//! handle refuses to store index segments and snapshots while a lock it holds is lost
//! ([`Repository::check_locks`]).

use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::crypto::{context, derive, random_array, random_below};
use crate::error::{Error, Result};
use crate::format::envelope::{self, ObjectKind};
use crate::format::lock::LockDoc;
use crate::format::names::Dir;
use crate::format::now_ns;
use crate::format::sealer::Sealer;
use crate::id::ObjectId;
use crate::storage::{PutMode, Storage};

use super::Repository;

/// A lock not refreshed for this long belongs to a dead process.
pub const STALE_AFTER: Duration = Duration::from_secs(30 * 60);
/// How often a held lock is rewritten (at most; [`LockOptions::refresh_every`] may be shorter).
pub const REFRESH_EVERY: Duration = Duration::from_secs(5 * 60);

/// Who asks for a lock, and how long to wait for it.
#[derive(Debug, Clone)]
pub struct LockOptions {
    /// Exclusive (forget, prune, key changes) or shared.
    pub exclusive: bool,
    /// What the holder does, for messages.
    pub operation: String,
    /// This host's name, for messages (staleness uses the machine identity).
    pub hostname: String,
    /// This user's name.
    pub username: String,
    /// How long to wait for conflicting locks to go away before [`Error::Locked`].
    pub retry_for: Duration,
    /// How often to rewrite the lock: [`REFRESH_EVERY`], or less (tests).
    pub refresh_every: Duration,
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
    /// When the storage last saw it written (`None`: the backend cannot tell).
    pub modified: Option<std::time::SystemTime>,
}

impl LockInfo {
    /// How long ago the storage last saw it written.
    pub fn age(&self) -> Option<Duration> {
        self.modified.and_then(|m| std::time::SystemTime::now().duration_since(m).ok())
    }
}

/// What [`Repository::read_lock`] got.
#[derive(Debug)]
pub enum ReadLock {
    /// A shared lock, held until dropped.
    Held(LockGuard),
    /// The storage refuses writes (read-only media, no write permission), so no lock could be
    /// stored: a command that only reads may go on without one. The error says what refused.
    Unwritable(Error),
}

/// Whether a held lock is still ours: shared by the guard, its refresher and the repository.
#[derive(Debug)]
pub(crate) struct LockHealth {
    name: String,
    /// The first thing that went wrong, kept for good.
    lost: Mutex<Option<String>>,
    /// When the lock was last stored.
    stored: Mutex<Instant>,
}

impl LockHealth {
    fn lose(&self, why: String) {
        self.lost.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get_or_insert(why);
    }

    /// Whether the lock still holds: no refresh failed, it was stored recently enough that no
    /// other client can take it for stale, and it is still there.
    fn check(&self, storage: &dyn Storage) -> Result<()> {
        let lost = |why: String| Error::LockLost { name: self.name.clone(), why };
        if let Some(why) = self.lost.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone() {
            return Err(lost(why));
        }
        let age = self.stored.lock().unwrap_or_else(std::sync::PoisonError::into_inner).elapsed();
        if age > STALE_AFTER.saturating_sub(REFRESH_EVERY) {
            return Err(lost(format!(
                "it was last stored {} minutes ago, and other clients take it for stale after {}",
                age.as_secs() / 60,
                STALE_AFTER.as_secs() / 60
            )));
        }
        if storage.stat(&self.name)?.is_none() {
            let why = "it is gone (removed by `cairn unlock --remove-all`, or by a client that took it for stale)";
            self.lose(why.into());
            return Err(lost(why.into()));
        }
        Ok(())
    }
}

/// A held lock; released (the object deleted) when dropped.
#[derive(Debug)]
pub struct LockGuard {
    storage: Arc<dyn Storage>,
    health: Arc<LockHealth>,
    stop: Arc<(Mutex<bool>, Condvar)>,
    refresher: Option<JoinHandle<()>>,
}

impl LockGuard {
    /// Its object name.
    pub fn name(&self) -> &str {
        &self.health.name
    }

    /// [`Error::LockLost`] when a refresh failed, the lock is too old or it is gone.
    pub fn check(&self) -> Result<()> {
        self.health.check(self.storage.as_ref())
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        let (flag, cv) = &*self.stop;
        *flag.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = true;
        cv.notify_all();
        if let Some(t) = self.refresher.take() {
            let _ = t.join();
        }
        let _ = self.storage.delete(&self.health.name);
    }
}

/// Whether a process `pid` exists on this host.
fn pid_alive(pid: u32) -> bool {
    let Some(pid) = i32::try_from(pid).ok().and_then(rustix::process::Pid::from_raw) else {
        return false;
    };
    !matches!(rustix::process::test_kill_process(pid), Err(rustix::io::Errno::SRCH))
}

/// Whether `doc` is stale at `now` for a client whose machine identity is `machine`. A lock
/// refreshed further in the future than [`STALE_AFTER`] is stale too: no honest clock runs
/// that far ahead, and such a lock would otherwise never age (a lock written to block the
/// repository for good).
pub fn is_stale(doc: &LockDoc, now: i64, machine: &[u8; 16]) -> bool {
    let age = Duration::from_nanos(u64::try_from(now.saturating_sub(doc.refreshed_ns)).unwrap_or(0));
    let ahead = Duration::from_nanos(u64::try_from(doc.refreshed_ns.saturating_sub(now)).unwrap_or(0));
    age > STALE_AFTER || ahead > STALE_AFTER || (doc.machine == *machine && !pid_alive(doc.pid))
}

/// File in the client cache holding a random machine id, where `/etc/machine-id` is missing.
const MACHINE_ID_FILE: &str = "machine-id";

/// The id of this machine: `etc_machine_id` (`/etc/machine-id`), or else a random one kept in
/// `cache` (created on first use). `None` when neither can be had.
fn machine_id(etc_machine_id: &Path, cache: &Path) -> Option<Vec<u8>> {
    let read = |p: &Path| std::fs::read_to_string(p).ok().map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
    if let Some(id) = read(etc_machine_id) {
        return Some(id.into_bytes());
    }
    let file = cache.join(MACHINE_ID_FILE);
    if let Some(id) = read(&file) {
        return Some(id.into_bytes());
    }
    let fresh = hex::encode(random_array::<16>().ok()?);
    std::fs::create_dir_all(cache).ok()?;
    let tmp = cache.join(format!("{MACHINE_ID_FILE}.{}.tmp", std::process::id()));
    std::fs::write(&tmp, &fresh).ok()?;
    // Another process may have made one meanwhile: the first link wins, and both read it.
    let _ = std::fs::hard_link(&tmp, &file);
    let _ = std::fs::remove_file(&tmp);
    read(&file).map(String::into_bytes)
}

/// This process's machine identity (SPEC §13a): BLAKE3-derive(LOCK_MACHINE, machine id || 0 ||
/// boot id || 0 || pid namespace), first 16 bytes. Processes that share it see the same pids.
/// Without any machine id it is random, so no other process judges this one's pid.
pub(crate) fn machine_identity(cache: &Path) -> Result<[u8; 16]> {
    let Some(id) = machine_id(Path::new("/etc/machine-id"), cache) else {
        return random_array();
    };
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    let pid_ns = std::fs::read_link("/proc/self/ns/pid").map(|p| p.to_string_lossy().into_owned()).unwrap_or_default();
    let mut material = id;
    for part in [boot.trim(), pid_ns.as_str()] {
        material.push(0);
        material.extend_from_slice(part.as_bytes());
    }
    let full = derive(context::LOCK_MACHINE, &material);
    Ok(full.expose().split_first_chunk::<16>().map_or([0u8; 16], |(head, _)| *head))
}

/// A random lock id whose last bit says whether the lock is exclusive (SPEC §13a): clients
/// that cannot open locks (write-only slots) still see an exclusive one. The storage cannot
/// move a lock's document under another name (the name is sealed with it); it could hide the
/// lock altogether, which it always could.
fn lock_id(exclusive: bool) -> Result<ObjectId> {
    let mut id = ObjectId::random()?;
    if let Some(last) = id.0.last_mut() {
        *last = (*last & !1) | u8::from(exclusive);
    }
    Ok(id)
}

/// Whether a lock's name marks it exclusive (its id's last bit, [`lock_id`]).
fn name_marks_exclusive(name: &str) -> bool {
    Dir::Locks.id_of(name).is_some_and(|id| id.0.last().is_some_and(|b| b & 1 == 1))
}

fn seal(sealer: &Sealer, name: &str, doc: &LockDoc) -> Result<Vec<u8>> {
    sealer.seal(ObjectKind::Lock, name.as_bytes(), &doc.encode())
}

impl Repository {
    /// This process's machine identity as recorded in its locks: a lock with the same identity
    /// and a pid that does not exist is stale.
    pub fn machine_identity(&self) -> Result<[u8; 16]> {
        machine_identity(self.cache_dir().parent().unwrap_or(self.cache_dir()))
    }

    /// Every lock object, read and judged stale or live. A lock that cannot be read (damaged,
    /// or sealed under a key epoch that was retired) cannot say who holds it; its holder, while
    /// alive, rewrites it every few minutes, so one the storage has not seen written for
    /// [`STALE_AFTER`] is stale. The storage could lie about that time, but it could as well
    /// delete the lock: it gains nothing it did not have.
    pub fn locks(&self) -> Result<Vec<LockInfo>> {
        let now = now_ns();
        let machine = self.machine_identity()?;
        let mut out = Vec::new();
        for name in self.storage().list(Dir::Locks.prefix())? {
            let doc = self
                .load_object(ObjectKind::Lock, &name)
                .and_then(|plain| LockDoc::decode(&plain, &name))
                .map_err(|e| e.to_string());
            let modified = self.storage().modified(&name)?;
            let mut info = LockInfo { name, doc, stale: false, modified };
            info.stale = match &info.doc {
                Ok(d) => is_stale(d, now, &machine),
                // Unreadable: stale once old enough by the storage's clock, or at once when it was
                // sealed under an epoch retired since (its holder was killed during a
                // `key rotate --reencrypt`; nobody can read it any more).
                Err(_) => {
                    info.age().is_some_and(|age| age > STALE_AFTER) || self.sealed_under_retired_epoch(&info.name)
                }
            };
            out.push(info);
        }
        Ok(out)
    }

    /// Whether the lock `name` is sealed under an epoch older than the current one that the
    /// keyring no longer holds: a retired epoch. Such a lock is stale. An epoch is retired
    /// under an exclusive lock, so every other lock sealed under it was stale then (a stale
    /// lock stays lost to its holder: [`Repository::check_locks`]); the retiring command's
    /// own lock (`key rotate --reencrypt` takes it before the rotation) is left behind only
    /// by a crash. Without this, a command killed after retiring the epoch its lock is sealed
    /// under would leave a lock nobody can read, which blocks every exclusive command until
    /// `cairn unlock --remove-all`. The epoch is read from the clear envelope header: a
    /// storage that forges it can make a lock look stale, which it can do anyway by deleting
    /// the lock.
    fn sealed_under_retired_epoch(&self, name: &str) -> bool {
        let Ok(sealed) = self.storage().get_bounded(name, crate::format::MAX_SMALL_OBJECT) else {
            return false;
        };
        let Ok(epoch) = envelope::epoch_of(&sealed, name) else {
            return false;
        };
        let Ok(ring) = self.keyring() else { return false };
        epoch < ring.current().0 && !ring.epochs().contains(&epoch)
    }

    /// The first live lock that conflicts with `opts`, other than `own`.
    fn conflict(&self, opts: &LockOptions, own: Option<&str>) -> Result<Option<(String, i64)>> {
        for l in self.locks()? {
            if Some(l.name.as_str()) == own || l.stale {
                continue;
            }
            match &l.doc {
                Ok(d) if opts.exclusive || d.exclusive => return Ok(Some((d.holder(), d.created_ns))),
                Ok(_) => {}
                // A lock nobody can read may hide anything: an exclusive lock waits for it, and
                // so does a shared one when its name says it is exclusive (all a write-only
                // client, which reads no lock, can know).
                Err(e) if opts.exclusive || name_marks_exclusive(&l.name) => {
                    let since_ns = l
                        .modified
                        .and_then(|m| m.duration_since(std::time::UNIX_EPOCH).ok())
                        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
                    let when = match l.age() {
                        Some(age) => format!(
                            "last written {} minute(s) ago, stale {} minutes after that",
                            age.as_secs() / 60,
                            STALE_AFTER.as_secs() / 60
                        ),
                        None => "the storage does not say when it was written, so it never turns stale".into(),
                    };
                    return Ok(Some((format!("an unreadable lock {} ({e}; {when})", l.name), since_ns)));
                }
                Err(_) => {}
            }
        }
        Ok(None)
    }

    /// Takes a lock, waiting up to `opts.retry_for` for conflicting ones. [`Error::Locked`]
    /// names the holder when the wait runs out. While the guard lives, this handle stores
    /// index segments and snapshots only if the lock holds.
    pub fn lock(&self, opts: &LockOptions) -> Result<LockGuard> {
        let deadline = Instant::now() + opts.retry_for;
        let mut pause = Duration::from_millis(200);
        loop {
            let mut holder = self.conflict(opts, None)?;
            if holder.is_none() {
                let guard = self.write_lock(opts)?;
                holder = self.conflict(opts, Some(guard.name()))?;
                if holder.is_none() {
                    // A rotation that ran between this handle's open and now may have retired
                    // the epoch it would write under.
                    self.check_key_not_rotated()?;
                    let mut held = self.held_locks.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    held.retain(|h| h.strong_count() > 0);
                    held.push(Arc::downgrade(&guard.health));
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

    /// A shared lock for a command that only reads (restore, dump, check): like
    /// [`Repository::lock`], except that a storage refusing the write is not an error but
    /// [`ReadLock::Unwritable`]. Without a lock such a command still reads correctly; what it
    /// loses is the guarantee that a prune running meanwhile (which cannot see it) deletes
    /// nothing it is reading, and nobody prunes a repository nobody can write.
    pub fn read_lock(&self, opts: &LockOptions) -> Result<ReadLock> {
        let opts = LockOptions { exclusive: false, ..opts.clone() };
        match self.lock(&opts) {
            Ok(guard) => Ok(ReadLock::Held(guard)),
            Err(e) if e.is_write_refused() => Ok(ReadLock::Unwritable(e)),
            Err(e) => Err(e),
        }
    }

    /// [`Error::LockLost`] when a lock this handle holds failed to refresh, is too old or is
    /// gone. Called before storing an index segment or a snapshot, and by prune before it
    /// changes anything: work whose lock was lost may overlap a prune that cannot see it.
    pub fn check_locks(&self) -> Result<()> {
        let held: Vec<Arc<LockHealth>> = {
            let mut held = self.held_locks.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            held.retain(|h| h.strong_count() > 0);
            held.iter().filter_map(Weak::upgrade).collect()
        };
        held.iter().try_for_each(|h| h.check(self.storage().as_ref()))
    }

    fn write_lock(&self, opts: &LockOptions) -> Result<LockGuard> {
        let name = Dir::Locks.object(&lock_id(opts.exclusive)?);
        let now = now_ns();
        let mut doc = LockDoc {
            exclusive: opts.exclusive,
            operation: opts.operation.clone(),
            hostname: opts.hostname.clone(),
            username: opts.username.clone(),
            pid: std::process::id(),
            created_ns: now,
            refreshed_ns: now,
            machine: self.machine_identity()?,
        };
        let sealer = self.sealer()?;
        self.storage().put(&name, &seal(&sealer, &name, &doc)?, PutMode::CreateNew)?;
        let health =
            Arc::new(LockHealth { name: name.clone(), lost: Mutex::new(None), stored: Mutex::new(Instant::now()) });
        let every = opts.refresh_every.min(REFRESH_EVERY);
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let refresher = {
            let (storage, health, stop) = (Arc::clone(self.storage()), Arc::clone(&health), Arc::clone(&stop));
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
                            cv.wait_timeout(stopped, every).unwrap_or_else(std::sync::PoisonError::into_inner);
                        stopped = s;
                        if *stopped {
                            return;
                        }
                        if !timeout.timed_out() {
                            continue;
                        }
                        // A lock someone removed is not written back: its holder lost it.
                        match storage.stat(&health.name) {
                            Ok(Some(_)) => {}
                            Ok(None) => {
                                health.lose("it is gone (removed by `cairn unlock --remove-all`, or by a client that took it for stale)".into());
                                return;
                            }
                            Err(e) => {
                                health.lose(format!("a refresh failed ({e})"));
                                continue;
                            }
                        }
                        doc.refreshed_ns = now_ns();
                        match seal(&sealer, &health.name, &doc)
                            .and_then(|sealed| storage.put(&health.name, &sealed, PutMode::Overwrite))
                        {
                            Ok(()) => *health.stored.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Instant::now(),
                            Err(e) => health.lose(format!("a refresh failed ({e})")),
                        }
                    }
                })
                .map_err(|e| Error::InvalidInput(format!("cannot start the lock refresher: {e}")))?
        };
        Ok(LockGuard { storage: Arc::clone(self.storage()), health, stop, refresher: Some(refresher) })
    }

    /// Removes stale locks, unreadable ones included once stale (all locks with `all`);
    /// returns how many.
    pub fn unlock(&self, all: bool) -> Result<usize> {
        let mut removed = 0;
        for l in self.locks()? {
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

    fn doc(machine: [u8; 16], pid: u32, refreshed_ns: i64) -> LockDoc {
        LockDoc {
            exclusive: true,
            operation: "prune".into(),
            hostname: "h".into(),
            username: "u".into(),
            pid,
            created_ns: refreshed_ns,
            refreshed_ns,
            machine,
        }
    }

    #[test]
    fn staleness_by_age_and_by_dead_pid_on_this_machine_not_this_host_name() {
        let now = 10_000 * 1_000_000_000;
        let me = std::process::id();
        let here = [1u8; 16];
        assert!(!is_stale(&doc(here, me, now), now, &here));
        assert!(is_stale(&doc(here, me, now - 31 * 60 * 1_000_000_000), now, &here), "too old");
        assert!(!is_stale(&doc([2u8; 16], 0, now + 5 * 60 * 1_000_000_000), now, &here), "a clock a little ahead");
        assert!(is_stale(&doc([2u8; 16], 0, now + 31 * 60 * 1_000_000_000), now, &here), "refreshed in the far future");
        assert!(is_stale(&doc([2u8; 16], 0, i64::MAX), now, &here), "never to age");
        // pid 0 is never a live process; elsewhere (another machine, or a container with the
        // same host name but its own pids) the pid means nothing here.
        assert!(is_stale(&doc(here, 0, now), now, &here));
        assert!(!is_stale(&doc([2u8; 16], 0, now), now, &here));
    }

    #[test]
    fn the_machine_identity_is_stable_and_a_missing_machine_id_falls_back_to_one_in_the_cache() {
        let cache = tempfile::tempdir().unwrap();
        assert_eq!(machine_identity(cache.path()).unwrap(), machine_identity(cache.path()).unwrap());
        let none = cache.path().join("no-machine-id");
        let fallback = machine_id(&none, cache.path()).unwrap();
        assert_eq!(fallback.len(), 32, "16 random bytes in hex");
        assert_eq!(machine_id(&none, cache.path()).unwrap(), fallback, "kept in the cache");
        let other = tempfile::tempdir().unwrap();
        assert_ne!(machine_id(&none, other.path()).unwrap(), fallback, "another cache, another id");
        std::fs::write(&none, "0123456789abcdef0123456789abcdef\n").unwrap();
        assert_eq!(machine_id(&none, cache.path()).unwrap(), b"0123456789abcdef0123456789abcdef");
    }
}
