//! Retries of a storage's transient failures, as a decorator any backend can wear: the CLI puts
//! it on every remote backend. A backend marks what is worth another attempt
//! (`Error::Storage { retryable: true, .. }`: the connection broke, the answer was lost) and
//! leaves the rest (a refusal, a missing object, damage) to fail at once.
//!
//! A retried operation may take effect twice. For a read that is harmless; for a create-only
//! put it is made harmless here: when an attempt's answer was lost, the object may have
//! landed, so a later attempt refused because the name exists succeeded if the object holds
//! the very bytes sent (names are content hashes or random, so no other writer produces the
//! same bytes under the same name). An overwriting put or a delete retried while another client
//! changes the same name can undo that change (a lock refresh retried just after another
//! client removed the lock brings it back); the lock protocol tolerates that, since a refresh
//! stores the holder's own current lock.

use std::sync::Arc;
use std::time::Duration;

use super::{Leftover, PutMode, Storage};
use cairn_format::error::Result;

/// How often and how patiently to try again.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (at least 1).
    pub attempts: u32,
    /// The wait before the second attempt; each later wait doubles, up to `max_delay`. Each
    /// wait is jittered to between one and two times its value.
    pub first_delay: Duration,
    /// The longest wait between two attempts.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// Four attempts, waiting 0.2-0.4 s, 0.4-0.8 s and 0.8-1.6 s between them: a dropped
    /// connection or a restarting server is ridden out; a store that stays down fails the
    /// command within seconds.
    fn default() -> Self {
        RetryPolicy { attempts: 4, first_delay: Duration::from_millis(200), max_delay: Duration::from_secs(5) }
    }
}

/// `inner`, with its retryable failures tried again under a [`RetryPolicy`].
#[derive(Debug)]
pub struct Retrying {
    inner: Arc<dyn Storage>,
    policy: RetryPolicy,
}

impl Retrying {
    pub fn new(inner: Arc<dyn Storage>, policy: RetryPolicy) -> Self {
        Retrying { inner, policy }
    }

    /// Runs `attempt` (given its number, from 1) until it succeeds, fails for good, or the
    /// attempts are spent. Waits are jittered so clients that failed together do not retry
    /// together.
    fn run<T>(&self, mut attempt: impl FnMut(u32) -> Result<T>) -> Result<T> {
        let mut delay = self.policy.first_delay;
        let mut n = 1;
        loop {
            match attempt(n) {
                Err(e) if e.is_retryable() && n < self.policy.attempts.max(1) => {
                    std::thread::sleep(jittered(delay));
                    delay = (delay * 2).min(self.policy.max_delay);
                    n += 1;
                }
                done => return done,
            }
        }
    }

    /// Whether `name` holds exactly the concatenation of `parts`. The read is bounded by what
    /// was sent: a storage that answers with more is not read further.
    fn holds(&self, name: &str, parts: &[&[u8]]) -> bool {
        let size: usize = parts.iter().map(|p| p.len()).sum();
        self.inner.get_bounded(name, size as u64).is_ok_and(|stored| crate::is_concatenation(&stored, parts))
    }
}

/// Between one and two times `delay`, at random.
fn jittered(delay: Duration) -> Duration {
    let mut byte = [0u8; 1];
    let factor = match getrandom::fill(&mut byte) {
        Ok(()) => 1.0 + f64::from(byte[0]) / 255.0,
        Err(_) => 1.5,
    };
    delay.mul_f64(factor)
}

impl Storage for Retrying {
    fn location(&self) -> String {
        self.inner.location()
    }

    fn put(&self, name: &str, data: &[u8], mode: PutMode) -> Result<()> {
        self.put_parts(name, &[data], mode)
    }

    fn put_parts(&self, name: &str, parts: &[&[u8]], mode: PutMode) -> Result<()> {
        let mut answer_lost = false;
        self.run(|_| match self.inner.put_parts(name, parts, mode) {
            Err(e) if answer_lost && mode == PutMode::CreateNew && e.is_already_exists() => {
                if self.holds(name, parts) {
                    Ok(())
                } else {
                    Err(e)
                }
            }
            Err(e) => {
                answer_lost |= e.is_retryable();
                Err(e)
            }
            Ok(()) => Ok(()),
        })
    }

    // put_owned: the trait's default, through put_parts; the bytes are kept until stored,
    // since another attempt may need them.

    fn get(&self, name: &str) -> Result<Vec<u8>> {
        self.run(|_| self.inner.get(name))
    }

    fn get_range(&self, name: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        self.run(|_| self.inner.get_range(name, offset, len))
    }

    fn read_ahead(&self, name: &str, max_len: u64) {
        self.inner.read_ahead(name, max_len);
    }

    fn get_bounded(&self, name: &str, max: u64) -> Result<Vec<u8>> {
        self.run(|_| self.inner.get_bounded(name, max))
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>> {
        self.run(|_| self.inner.list(prefix))
    }

    fn list_sized(&self, prefix: &str) -> Result<Vec<(String, u64)>> {
        self.run(|_| self.inner.list_sized(prefix))
    }

    fn delete(&self, name: &str) -> Result<()> {
        self.run(|_| self.inner.delete(name))
    }

    fn delete_many(&self, names: &[String]) -> Result<()> {
        self.run(|_| self.inner.delete_many(names))
    }

    fn stat(&self, name: &str) -> Result<Option<u64>> {
        self.run(|_| self.inner.stat(name))
    }

    fn modified(&self, name: &str) -> Result<Option<std::time::SystemTime>> {
        self.run(|_| self.inner.modified(name))
    }

    fn leftovers(&self) -> Result<Vec<Leftover>> {
        self.run(|_| self.inner.leftovers())
    }

    fn permits(&self, access: super::Access) -> Result<()> {
        self.run(|_| self.inner.permits(access))
    }

    fn remove_leftover(&self, name: &str) -> Result<()> {
        self.run(|_| self.inner.remove_leftover(name))
    }
}

#[cfg(test)]
mod tests {
    use std::io::ErrorKind;
    use std::sync::Mutex;

    use super::*;
    use crate::MemStorage;
    use cairn_format::error::Error;

    /// What the flaky storage does to the next calls, in order; then it behaves.
    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Next {
        /// Fails before doing anything, retryably.
        Drop,
        /// Does the work, then fails retryably: the answer was lost.
        LoseAnswer,
        /// Fails for good.
        Refuse,
    }

    #[derive(Debug)]
    struct Flaky {
        inner: MemStorage,
        script: Mutex<Vec<Next>>,
        calls: Mutex<u32>,
    }

    impl Flaky {
        fn new(script: &[Next]) -> Arc<Self> {
            Arc::new(Flaky { inner: MemStorage::new(), script: Mutex::new(script.to_vec()), calls: Mutex::new(0) })
        }

        fn calls(&self) -> u32 {
            *self.calls.lock().unwrap()
        }

        fn step<T>(&self, name: &str, work: impl FnOnce() -> Result<T>) -> Result<T> {
            *self.calls.lock().unwrap() += 1;
            let next = {
                let mut script = self.script.lock().unwrap();
                if script.is_empty() { None } else { Some(script.remove(0)) }
            };
            let broken = || Error::storage("write", name, std::io::Error::new(ErrorKind::ConnectionReset, "reset"));
            match next {
                None => work(),
                Some(Next::Drop) => Err(broken()),
                Some(Next::LoseAnswer) => work().and_then(|_| Err(broken())),
                Some(Next::Refuse) => {
                    Err(Error::storage("write", name, std::io::Error::new(ErrorKind::PermissionDenied, "no")))
                }
            }
        }
    }

    impl Storage for Flaky {
        fn location(&self) -> String {
            "flaky".into()
        }
        fn put(&self, name: &str, data: &[u8], mode: PutMode) -> Result<()> {
            self.step(name, || self.inner.put(name, data, mode))
        }
        fn get(&self, name: &str) -> Result<Vec<u8>> {
            self.step(name, || self.inner.get(name))
        }
        fn get_range(&self, name: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
            self.inner.get_range(name, offset, len)
        }
        fn list(&self, prefix: &str) -> Result<Vec<String>> {
            self.inner.list(prefix)
        }
        fn delete(&self, name: &str) -> Result<()> {
            self.inner.delete(name)
        }
        fn stat(&self, name: &str) -> Result<Option<u64>> {
            self.inner.stat(name)
        }
    }

    fn retrying(flaky: &Arc<Flaky>) -> Retrying {
        let policy = RetryPolicy { attempts: 4, first_delay: Duration::ZERO, max_delay: Duration::ZERO };
        Retrying::new(flaky.clone(), policy)
    }

    #[test]
    fn broken_transfers_are_tried_again_and_refusals_are_not() {
        let flaky = Flaky::new(&[Next::Drop, Next::Drop]);
        retrying(&flaky).put("data/aa", b"pack", PutMode::CreateNew).unwrap();
        assert_eq!(flaky.calls(), 3);
        assert_eq!(flaky.inner.get("data/aa").unwrap(), b"pack");

        let flaky = Flaky::new(&[Next::Refuse]);
        let e = retrying(&flaky).put("data/aa", b"pack", PutMode::CreateNew).unwrap_err();
        assert!(e.is_write_refused(), "{e}");
        assert_eq!(flaky.calls(), 1, "a refusal is final");

        let flaky = Flaky::new(&[Next::Drop; 4]);
        let e = retrying(&flaky).get("snapshots/x").unwrap_err();
        assert!(e.is_retryable(), "{e}");
        assert_eq!(flaky.calls(), 4, "four attempts, then the failure");
    }

    #[test]
    fn a_create_only_put_whose_answer_was_lost_succeeds_when_its_bytes_landed() {
        let flaky = Flaky::new(&[Next::LoseAnswer]);
        retrying(&flaky).put("index/ab", b"segment", PutMode::CreateNew).unwrap();
        // Two puts (the second finds the name taken) and the read that finds these bytes there.
        assert_eq!(flaky.calls(), 3);
        assert_eq!(flaky.inner.get("index/ab").unwrap(), b"segment");
    }

    #[test]
    fn a_name_taken_by_other_bytes_stays_a_conflict() {
        // Taken before the first attempt: no answer was lost, so the conflict is final at once.
        let flaky = Flaky::new(&[]);
        flaky.inner.put("locks/l", b"theirs", PutMode::CreateNew).unwrap();
        let e = retrying(&flaky).put("locks/l", b"mine", PutMode::CreateNew).unwrap_err();
        assert!(e.is_already_exists(), "{e}");
        assert_eq!(flaky.calls(), 1);
        // Taken by other bytes while an attempt's answer was lost: still a conflict.
        let flaky = Flaky::new(&[Next::Drop]);
        flaky.inner.put("locks/l", b"theirs", PutMode::CreateNew).unwrap();
        let e = retrying(&flaky).put("locks/l", b"mine", PutMode::CreateNew).unwrap_err();
        assert!(e.is_already_exists(), "{e}");
        assert_eq!(flaky.inner.get("locks/l").unwrap(), b"theirs", "nothing overwritten");
    }
}
