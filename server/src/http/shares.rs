//! Shares of what the server has, per holder: each identity's share of the memory budget for
//! uploads (bodies are held in memory until stored, and one identity, a host taken over
//! dripping bodies slowly, could otherwise hold all of it and stall every other host's
//! backup), and each client address's share of the connections.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// What each holder holds (clones share it).
#[derive(Debug, Default, Clone)]
pub struct Shares {
    held: Arc<Mutex<HashMap<String, u64>>>,
}

/// What one holder holds until dropped.
#[derive(Debug)]
pub struct Share {
    shares: Shares,
    who: String,
    len: u64,
}

impl Shares {
    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<String, u64>> {
        self.held.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `len` more bytes for `who`, unless that takes it past `max` (one upload of any size
    /// is let through when it holds nothing).
    pub fn take(&self, who: &str, len: u64, max: u64) -> Option<Share> {
        let mut held = self.held();
        let now = held.entry(who.to_string()).or_default();
        if *now > 0 && now.saturating_add(len) > max {
            return None;
        }
        *now = now.saturating_add(len);
        Some(Share { shares: self.clone(), who: who.to_string(), len })
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        let mut held = self.shares.held();
        if let Some(n) = held.get_mut(&self.who) {
            *n = n.saturating_sub(self.len);
            if *n == 0 {
                held.remove(&self.who);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_identity_holds_at_most_its_share_and_gets_it_back() {
        let shares = Shares::default();
        let a = shares.take("a", 60, 100).unwrap();
        assert!(shares.take("a", 50, 100).is_none(), "past the share");
        let b = shares.take("b", 100, 100).unwrap();
        let c = shares.take("a", 40, 100).unwrap();
        drop((a, c));
        // Nothing held: one upload larger than the share passes alone.
        let big = shares.take("a", 500, 100).unwrap();
        assert!(shares.take("a", 1, 100).is_none());
        drop((big, b));
        assert!(shares.held().is_empty());
    }
}
