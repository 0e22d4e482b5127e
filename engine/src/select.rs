//! Which snapshots a command considers: restic's `--host`, `--tag` and `--path` filters, and
//! `latest` as the newest snapshot that passes them.
//!
//! Hosts are alternatives; each tag list is a set of tags that must all be present, and the
//! lists are alternatives (restic: `--tag a,b --tag c` means "a and b, or c"); every path given
//! must be one of the snapshot's source paths. An empty filter passes everything.

use std::path::{Component, Path};

use crate::format::snapshot::Snapshot;

/// A filter on snapshots.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SnapshotFilter {
    /// Any of these hosts (empty: any host).
    pub hosts: Vec<String>,
    /// Any of these tag lists, each needing all its tags (empty: any tags).
    pub tags: Vec<Vec<String>>,
    /// All of these source paths, absolute and normalised (empty: any paths).
    pub paths: Vec<Vec<u8>>,
}

impl SnapshotFilter {
    /// Whether the filter passes everything.
    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty() && self.tags.is_empty() && self.paths.is_empty()
    }

    /// Whether `s` passes.
    pub fn matches(&self, s: &Snapshot) -> bool {
        (self.hosts.is_empty() || self.hosts.contains(&s.hostname))
            && (self.tags.is_empty() || self.tags.iter().any(|list| list.iter().all(|t| s.tags.contains(t))))
            && self.paths.iter().all(|p| s.paths.contains(p))
    }

    /// Parses restic-style tag arguments: each argument a comma-separated list whose tags are
    /// all needed. Empty tags (`a,,b`, a trailing comma) are left out.
    pub fn tag_lists(args: &[String]) -> Vec<Vec<String>> {
        args.iter()
            .map(|a| a.split(',').map(str::trim).filter(|t| !t.is_empty()).map(String::from).collect::<Vec<_>>())
            .filter(|list| !list.is_empty())
            .collect()
    }
}

/// `path` as a snapshot records a source path: absolute (relative to the working directory),
/// without `.` and `..` (resolved lexically, symlinks untouched) and without a trailing `/`.
pub fn source_path(path: &Path) -> std::io::Result<std::path::PathBuf> {
    let abs = std::path::absolute(path)?;
    let mut out = std::path::PathBuf::from("/");
    for c in abs.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(host: &str, tags: &[&str], paths: &[&str]) -> Snapshot {
        Snapshot {
            hostname: host.into(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            paths: paths.iter().map(|p| p.as_bytes().to_vec()).collect(),
            time_ns: 0,
            username: String::new(),
            tree: crate::id::ChunkId([0; 32]),
            parent: None,
            program: String::new(),
            summary: Default::default(),
            writer: Default::default(),
        }
    }

    #[test]
    fn tags_are_lists_of_alternatives_each_all_needed() {
        let f = SnapshotFilter { tags: SnapshotFilter::tag_lists(&["a,b".into(), "c".into()]), ..Default::default() };
        assert_eq!(f.tags, vec![vec!["a".to_string(), "b".to_string()], vec!["c".to_string()]]);
        assert!(f.matches(&snap("h", &["a", "b", "x"], &[])));
        assert!(f.matches(&snap("h", &["c"], &[])));
        assert!(!f.matches(&snap("h", &["a"], &[])));
        assert!(!f.matches(&snap("h", &["b", "x"], &[])));
        assert_eq!(
            SnapshotFilter::tag_lists(&["a,,b,".into(), ",".into()]),
            vec![vec!["a".to_string(), "b".to_string()]]
        );
    }

    #[test]
    fn hosts_are_alternatives_and_paths_all_needed() {
        let f = SnapshotFilter {
            hosts: vec!["web1".into(), "web2".into()],
            paths: vec![b"/etc".to_vec(), b"/home".to_vec()],
            ..Default::default()
        };
        assert!(f.matches(&snap("web2", &[], &["/etc", "/home", "/srv"])));
        assert!(!f.matches(&snap("web2", &[], &["/etc"])));
        assert!(!f.matches(&snap("db1", &[], &["/etc", "/home"])));
        assert!(SnapshotFilter::default().matches(&snap("any", &["t"], &["/x"])));
        assert!(SnapshotFilter::default().is_empty() && !f.is_empty());
    }

    #[test]
    fn source_paths_are_absolute_and_lexically_normal() {
        assert_eq!(source_path(Path::new("/data/")).unwrap(), Path::new("/data"));
        assert_eq!(source_path(Path::new("/a/./b/../c")).unwrap(), Path::new("/a/c"));
        assert_eq!(source_path(Path::new("/")).unwrap(), Path::new("/"));
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(source_path(Path::new("rel")).unwrap(), cwd.join("rel"));
    }
}
