//! What a backup leaves out: gitignore-style patterns matched against absolute paths (so both
//! `*.tmp` and `/home/*/.cache` work, `!pattern` re-includes, a trailing `/` matches only
//! directories), directories holding a marker file (`--exclude-if-present`, and
//! `--exclude-caches` for CACHEDIR.TAG), other file systems, and files above a size.

use std::collections::HashSet;
use std::io::Read;
use std::os::fd::BorrowedFd;
use std::path::Path;

use crate::error::{Error, Result};
use crate::hostfs;
use crate::pattern::PathPatterns;

/// The signature a CACHEDIR.TAG file starts with (https://bford.info/cachedir/).
const CACHEDIR_SIGNATURE: &[u8] = b"Signature: 8a477f597d28d172789f06886806bc55";

/// Exclusion rules, as the user gave them.
#[derive(Debug, Clone, Default)]
pub struct ExcludeOptions {
    /// gitignore-style patterns (`--exclude`, and the lines of `--exclude-file`).
    pub patterns: Vec<String>,
    /// Exclude a directory that contains a file of this name. `NAME:HEADER` requires the file
    /// to start with HEADER.
    pub if_present: Vec<String>,
    /// Exclude directories holding a valid CACHEDIR.TAG.
    pub caches: bool,
    /// Do not descend into directories on another file system than their source path; the
    /// mount point itself is stored, empty.
    pub one_file_system: bool,
    /// Leave out regular files larger than this many bytes.
    pub larger_than: Option<u64>,
}

/// A marker file name and the header it must start with.
#[derive(Debug, Clone)]
struct Marker {
    name: Vec<u8>,
    header: Option<Vec<u8>>,
}

/// The compiled rules.
#[derive(Debug)]
pub(crate) struct Excluder {
    patterns: Option<PathPatterns>,
    /// The excluding patterns (not `!` ones) as given, to tell which matched nothing.
    excluding: Vec<String>,
    /// Those that excluded something in this walk.
    used: HashSet<String>,
    markers: Vec<Marker>,
    pub one_file_system: bool,
    larger_than: Option<u64>,
}

impl Excluder {
    /// Compiles `opts`; a malformed pattern is [`Error::InvalidInput`] naming it.
    pub fn new(opts: &ExcludeOptions) -> Result<Self> {
        let patterns = PathPatterns::new(&opts.patterns).map_err(|e| match e {
            Error::InvalidInput(m) => Error::InvalidInput(format!("exclude {m}")),
            other => other,
        })?;
        let mut markers: Vec<Marker> = opts
            .if_present
            .iter()
            .map(|spec| match spec.split_once(':') {
                Some((name, header)) => {
                    Marker { name: name.as_bytes().to_vec(), header: Some(header.as_bytes().to_vec()) }
                }
                None => Marker { name: spec.as_bytes().to_vec(), header: None },
            })
            .collect();
        if opts.caches {
            markers.push(Marker { name: b"CACHEDIR.TAG".to_vec(), header: Some(CACHEDIR_SIGNATURE.to_vec()) });
        }
        if let Some(bad) = markers.iter().find(|m| !crate::format::tree::Node::valid_name(&m.name)) {
            return Err(Error::InvalidInput(format!(
                "--exclude-if-present needs a file name, not {:?}",
                String::from_utf8_lossy(&bad.name)
            )));
        }
        let excluding = opts
            .patterns
            .iter()
            .map(|p| p.trim_end_matches(['\r', '\n']))
            // As the gitignore parser keeps them: trailing blanks dropped unless escaped.
            .map(|p| if p.ends_with("\\ ") { p.to_string() } else { p.trim_end().to_string() })
            .filter(|p| !p.trim().is_empty() && !p.starts_with('#') && !p.starts_with('!'))
            .collect();
        Ok(Excluder {
            patterns,
            excluding,
            used: HashSet::new(),
            markers,
            one_file_system: opts.one_file_system,
            larger_than: opts.larger_than,
        })
    }

    /// Whether the patterns exclude the absolute `path`.
    pub fn excludes_path(&mut self, path: &Path, is_dir: bool) -> bool {
        let Some(pattern) = self.patterns.as_ref().and_then(|p| p.excluding_pattern(path, is_dir)) else {
            return false;
        };
        if !self.used.contains(pattern) {
            self.used.insert(pattern.to_string());
        }
        true
    }

    /// Whether the patterns exclude the directory at the absolute `path`, without recording
    /// the pattern as used (for the walk's read-ahead, which may look at what the walk never
    /// reaches).
    pub fn excludes_dir_quietly(&self, path: &Path) -> bool {
        self.patterns.as_ref().is_some_and(|p| p.excluding_pattern(path, true).is_some())
    }

    /// Whether the patterns exclude the file at the absolute `path`, without recording the
    /// pattern as used (for the directory readers, which prime files the walk may not reach).
    pub fn excludes_file_quietly(&self, path: &Path) -> bool {
        self.patterns.as_ref().is_some_and(|p| p.excluding_pattern(path, false).is_some())
    }

    /// The excluding patterns that left nothing out so far: usually a typo, or a relative path
    /// where an absolute one (or a bare name) was meant.
    pub fn unused_patterns(&self) -> Vec<String> {
        let mut unused: Vec<String> = self.excluding.iter().filter(|p| !self.used.contains(*p)).cloned().collect();
        unused.dedup();
        unused
    }

    /// Whether a regular file of `size` bytes is left out.
    pub fn excludes_size(&self, size: u64) -> bool {
        self.larger_than.is_some_and(|max| size > max)
    }

    /// Whether the directory open as `dir`, holding `names`, has a marker that excludes it.
    pub fn has_marker(&self, dir: BorrowedFd<'_>, names: &[Vec<u8>]) -> bool {
        self.markers.iter().any(|m| {
            if names.binary_search(&m.name).is_err() {
                return false;
            }
            let Some(header) = &m.header else { return true };
            let Ok(file) = hostfs::open_file_at(dir, &m.name) else { return false };
            let mut start = vec![0u8; header.len()];
            file.take(header.len() as u64).read_exact(&mut start).is_ok() && start == *header
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_patterns_and_marker_names_are_rejected() {
        let bad = ExcludeOptions { patterns: vec!["a[b".into()], ..Default::default() };
        assert!(matches!(Excluder::new(&bad), Err(Error::InvalidInput(_))));
        let bad = ExcludeOptions { if_present: vec!["a/b".into()], ..Default::default() };
        assert!(matches!(Excluder::new(&bad), Err(Error::InvalidInput(_))));
    }

    #[test]
    fn cachedir_tag_needs_its_signature() {
        let dir = tempfile::tempdir().unwrap();
        let e = Excluder::new(&ExcludeOptions { caches: true, ..Default::default() }).unwrap();
        let fd = hostfs::open_dir(dir.path()).unwrap();
        use std::os::fd::AsFd;
        let names = vec![b"CACHEDIR.TAG".to_vec()];
        std::fs::write(dir.path().join("CACHEDIR.TAG"), b"not a signature").unwrap();
        assert!(!e.has_marker(fd.as_fd(), &names));
        std::fs::write(dir.path().join("CACHEDIR.TAG"), [CACHEDIR_SIGNATURE, b"\n# comment"].concat()).unwrap();
        assert!(e.has_marker(fd.as_fd(), &names));
        assert!(!e.has_marker(fd.as_fd(), &[]));
    }
}
