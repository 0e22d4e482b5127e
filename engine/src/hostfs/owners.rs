//! User and group names for ids (recorded at backup) and ids for names (used at restore, so a
//! restore on another machine maps owners by name, as tar and borg do). Lookups go through the
//! system's NSS (getpwuid_r and friends) and are cached: a tree has few distinct owners.

use std::collections::HashMap;
use std::sync::Mutex;

use nix::unistd::{Gid, Group, Uid, User};

/// Cached id <-> name lookups; cheap to share between threads.
#[derive(Debug, Default)]
pub struct OwnerNames {
    users: Mutex<HashMap<u32, Option<String>>>,
    groups: Mutex<HashMap<u32, Option<String>>>,
    uids: Mutex<HashMap<String, Option<u32>>>,
    gids: Mutex<HashMap<String, Option<u32>>>,
}

fn cached<K: std::hash::Hash + Eq + Clone, V: Clone>(
    map: &Mutex<HashMap<K, V>>,
    key: &K,
    lookup: impl FnOnce() -> V,
) -> V {
    let mut m = map.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    m.entry(key.clone()).or_insert_with(lookup).clone()
}

impl OwnerNames {
    /// The name of user `uid`, if the system knows one.
    pub fn user_name(&self, uid: u32) -> Option<String> {
        cached(&self.users, &uid, || User::from_uid(Uid::from_raw(uid)).ok().flatten().map(|u| u.name))
    }

    /// The name of group `gid`, if the system knows one.
    pub fn group_name(&self, gid: u32) -> Option<String> {
        cached(&self.groups, &gid, || Group::from_gid(Gid::from_raw(gid)).ok().flatten().map(|g| g.name))
    }

    /// The uid of user `name` on this system.
    pub fn uid_of(&self, name: &str) -> Option<u32> {
        cached(&self.uids, &name.to_string(), || User::from_name(name).ok().flatten().map(|u| u.uid.as_raw()))
    }

    /// The gid of group `name` on this system.
    pub fn gid_of(&self, name: &str) -> Option<u32> {
        cached(&self.gids, &name.to_string(), || Group::from_name(name).ok().flatten().map(|g| g.gid.as_raw()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_maps_both_ways() {
        let o = OwnerNames::default();
        assert_eq!(o.user_name(0).as_deref(), Some("root"));
        assert_eq!(o.uid_of("root"), Some(0));
        assert_eq!(o.gid_of("root"), Some(0));
        assert_eq!(o.uid_of("no-such-user-cairn-test"), None);
    }
}
