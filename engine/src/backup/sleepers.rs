//! Reader threads asleep on a condition variable, woken only as many as there is work for.
//!
//! The walk's read-ahead pipelines (directories, parent trees, small files) each have readers
//! that sleep when there is nothing to do. A notification is a system call, and a woken reader
//! that finds nothing costs two more, so work is handed with a notification only to a reader
//! asleep and not woken already. The count of those woken is kept under the same lock as the
//! work: it only grows when a sleeper is notified and shrinks when one returns from its wait
//! (a spurious return makes it shrink early, which costs a needless notification later, never
//! a missed one). A reader awake takes whatever work is queued before it sleeps again.

use std::sync::{Condvar, MutexGuard, PoisonError};

/// Readers asleep, and how many of them were notified and have not run yet.
#[derive(Debug, Default)]
pub(super) struct Sleepers {
    asleep: usize,
    woken: usize,
    /// Notifications sent, in all (what the tests count).
    notified: u64,
}

impl Sleepers {
    /// Sleeps on `cv`, counted in the `Sleepers` that `of` finds in the locked state.
    pub(super) fn wait<'a, T>(
        mut guard: MutexGuard<'a, T>,
        cv: &Condvar,
        of: impl Fn(&mut T) -> &mut Sleepers,
    ) -> MutexGuard<'a, T> {
        of(&mut guard).asleep += 1;
        let mut guard = cv.wait(guard).unwrap_or_else(PoisonError::into_inner);
        let sleepers = of(&mut guard);
        sleepers.asleep -= 1;
        sleepers.woken = sleepers.woken.saturating_sub(1);
        guard
    }

    /// Notifies up to `n` readers asleep on `cv` and not notified yet (the caller holds the lock
    /// the sleepers wait with).
    pub(super) fn wake(&mut self, cv: &Condvar, n: usize) {
        for _ in 0..n.min(self.asleep.saturating_sub(self.woken)) {
            self.woken += 1;
            self.notified += 1;
            cv.notify_one();
        }
    }

    /// Notifications sent so far.
    #[cfg(test)]
    pub(super) fn notified(&self) -> u64 {
        self.notified
    }

    /// Whether all `readers` are asleep and none is about to wake: nobody is at work.
    pub(super) fn all_idle(&self, readers: usize) -> bool {
        self.asleep == readers && self.woken == 0
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Default)]
    struct State {
        jobs: usize,
        done: usize,
        sleepers: Sleepers,
    }

    /// Jobs handed one at a time to readers that sleep between them all get done, and no more
    /// notifications go out than readers are asleep.
    #[test]
    fn every_job_is_taken_and_sleepers_are_notified_once() {
        let shared = Arc::new((Mutex::new(State::default()), Condvar::new()));
        let readers: Vec<_> = (0..3)
            .map(|_| {
                let shared = Arc::clone(&shared);
                std::thread::spawn(move || {
                    let (m, cv) = &*shared;
                    let mut state = m.lock().unwrap();
                    loop {
                        if state.jobs > 0 {
                            state.jobs -= 1;
                            state.done += 1;
                            continue;
                        }
                        if state.done == 1000 {
                            cv.notify_all();
                            return;
                        }
                        state = Sleepers::wait(state, cv, |s| &mut s.sleepers);
                    }
                })
            })
            .collect();
        let (m, cv) = &*shared;
        for _ in 0..1000 {
            let mut state = m.lock().unwrap();
            state.jobs += 1;
            state.sleepers.wake(cv, 1);
            assert!(state.sleepers.woken <= state.sleepers.asleep);
        }
        for r in readers {
            r.join().unwrap();
        }
        let state = m.lock().unwrap();
        assert_eq!((state.jobs, state.done), (0, 1000));
        assert!(state.sleepers.all_idle(0));
    }
}
