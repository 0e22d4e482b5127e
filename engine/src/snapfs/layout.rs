//! The made-up directories of a mount of many snapshots, as restic lays them out:
//!
//! ```text
//! ids/ID/                   a snapshot's files (ID: the short id, the full one if two share it)
//! snapshots/TIME -> ../ids/ID, snapshots/latest -> TIME
//! hosts/HOST/TIME -> ../../ids/ID, hosts/HOST/latest -> TIME
//! tags/TAG/TIME -> ../../ids/ID, tags/TAG/latest -> TIME
//! ```
//!
//! TIME is the snapshot's UTC time (`2026-12-03T19:43:24Z`, with `-2`, `-3`... for later ones
//! taken in the same second). Links rather than copies keep one inode per file however many
//! directories show its snapshot.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::{DirEntry, Inode, Kind, ROOT, Source, Table};
use crate::format::snapshot::Snapshot;
use crate::id::ObjectId;

/// Directories being filled: inode to its entries by name.
#[derive(Default)]
struct Builder {
    dirs: HashMap<u64, BTreeMap<Vec<u8>, (u64, Kind)>>,
}

impl Builder {
    fn add(&mut self, table: &mut Table, parent: u64, name: Vec<u8>, source: Source) -> u64 {
        let (kind, made_up_dir) = match source {
            Source::Link { .. } => (Kind::Symlink, false),
            Source::Virtual { .. } => (Kind::Dir, true),
            // A snapshot's root lists its tree when first asked.
            Source::SnapshotRoot { .. } | Source::Node { .. } => (Kind::Dir, false),
        };
        let ino = table.add(Inode::new(parent, source));
        self.dirs.entry(parent).or_default().insert(name, (ino, kind));
        if made_up_dir {
            self.dirs.entry(ino).or_default();
        }
        ino
    }

    /// The directory `name` in `parent`, made on first use.
    fn dir(&mut self, table: &mut Table, parent: u64, name: &[u8], time_ns: i64) -> u64 {
        if let Some(&(ino, _)) = self.dirs.get(&parent).and_then(|d| d.get(name)) {
            return ino;
        }
        self.add(table, parent, name.to_vec(), Source::Virtual { time_ns })
    }

    fn link(&mut self, table: &mut Table, parent: u64, name: &[u8], target: Vec<u8>, time_ns: i64) {
        self.add(table, parent, name.to_vec(), Source::Link { target, time_ns });
    }

    /// Sets every directory's entries.
    fn finish(self, table: &Table) {
        for (ino, entries) in self.dirs {
            let entries: Vec<DirEntry> =
                entries.into_iter().map(|(name, (ino, kind))| DirEntry { name, ino, kind }).collect();
            let index = usize::try_from(ino.saturating_sub(1)).unwrap_or(usize::MAX);
            if let Some(inode) = table.inodes.get(index) {
                let _ = inode.entries.set(Arc::from(entries));
            }
        }
    }
}

/// A host or tag as one directory name: `/` and NUL become `_`, and names that are empty, `.`
/// or `..` get a leading `_`.
fn dir_name(s: &str) -> Vec<u8> {
    let name: Vec<u8> = s.bytes().map(|b| if b == b'/' || b == 0 { b'_' } else { b }).collect();
    if name.is_empty() || name == b"." || name == b".." {
        return [b"_".as_slice(), &name].concat();
    }
    name
}

/// Fills `table` (empty) with the layout of `snapshots` (oldest first).
pub(super) fn build(table: &mut Table, snapshots: &[(ObjectId, Snapshot)]) {
    let newest = snapshots.iter().map(|(_, s)| s.time_ns).max().unwrap_or(0);
    let mut b = Builder::default();
    let root = table.add(Inode::new(ROOT, Source::Virtual { time_ns: newest }));
    b.dirs.entry(root).or_default();
    let ids = b.dir(table, root, b"ids", newest);
    let times = b.dir(table, root, b"snapshots", newest);
    let hosts = b.dir(table, root, b"hosts", newest);
    let tags = b.dir(table, root, b"tags", newest);

    let mut short_count: HashMap<String, usize> = HashMap::new();
    for (id, _) in snapshots {
        *short_count.entry(id.short()).or_default() += 1;
    }
    let mut time_count: HashMap<String, usize> = HashMap::new();
    // Per directory of links, the time name of the newest snapshot in it.
    let mut latest: BTreeMap<u64, (i64, Vec<u8>)> = BTreeMap::new();
    for (snap, (id, s)) in snapshots.iter().enumerate() {
        let short = id.short();
        let id_name = if short_count.get(&short) == Some(&1) { short } else { id.to_hex() };
        let stamp = crate::utc::zoned(s.time_ns).strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
        let seen = time_count.entry(stamp.clone()).or_default();
        *seen += 1;
        let time_name = if *seen == 1 { stamp } else { format!("{stamp}-{seen}") }.into_bytes();

        b.add(
            table,
            ids,
            id_name.clone().into_bytes(),
            Source::SnapshotRoot { snap, tree: s.tree, time_ns: s.time_ns },
        );
        let mut link_in = |b: &mut Builder, table: &mut Table, dir: u64, up: &str| {
            b.link(table, dir, &time_name, format!("{up}ids/{id_name}").into_bytes(), s.time_ns);
            let newest_here = latest.entry(dir).or_insert((i64::MIN, Vec::new()));
            if s.time_ns >= newest_here.0 {
                *newest_here = (s.time_ns, time_name.clone());
            }
        };
        link_in(&mut b, table, times, "../");
        let host = b.dir(table, hosts, &dir_name(&s.hostname), s.time_ns);
        link_in(&mut b, table, host, "../../");
        for tag in &s.tags {
            let tag = b.dir(table, tags, &dir_name(tag), s.time_ns);
            link_in(&mut b, table, tag, "../../");
        }
    }
    for (dir, (time_ns, name)) in latest {
        b.link(table, dir, b"latest", name, time_ns);
    }
    b.finish(table);
}

#[cfg(test)]
mod tests {
    use super::dir_name;

    #[test]
    fn hosts_and_tags_become_single_safe_names() {
        assert_eq!(dir_name("web1"), b"web1");
        assert_eq!(dir_name("a/b"), b"a_b");
        assert_eq!(dir_name(""), b"_");
        assert_eq!(dir_name("."), b"_.");
        assert_eq!(dir_name(".."), b"_..");
        assert_eq!(dir_name("x\0y"), b"x_y");
    }
}
