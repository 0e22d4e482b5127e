//! gitignore-style path patterns over absolute paths (raw bytes, not UTF-8): `*.tmp` matches a
//! name anywhere, `/home/*/.cache` is anchored at the root, a trailing `/` matches directories
//! only, `!pattern` re-includes, `#` starts a comment. Used for backup exclusions and for
//! restore's include/exclude filters.

use std::path::Path;

use ignore::gitignore::{Gitignore, GitignoreBuilder};

use crate::error::{Error, Result};

/// A compiled set of patterns.
#[derive(Debug, Clone)]
pub struct PathPatterns {
    set: Gitignore,
}

impl PathPatterns {
    /// Compiles `patterns` (blank lines and `#` comments skipped); `None` when there are none.
    /// A malformed pattern is [`Error::InvalidInput`] naming it.
    pub fn new(patterns: &[String]) -> Result<Option<Self>> {
        let mut b = GitignoreBuilder::new("/");
        // An unclosed `[` is almost always a typo: say so instead of matching it literally.
        b.allow_unclosed_class(false);
        let mut any = false;
        for p in patterns {
            let line = p.trim_end_matches(['\r', '\n']);
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            b.add_line(None, line).map_err(|e| Error::InvalidInput(format!("pattern {p:?}: {e}")))?;
            any = true;
        }
        if !any {
            return Ok(None);
        }
        let set = b.build().map_err(|e| Error::InvalidInput(format!("patterns: {e}")))?;
        Ok(Some(PathPatterns { set }))
    }

    /// Whether the absolute `path` matches (and is not re-included by a later `!pattern`).
    pub fn matches(&self, path: &Path, is_dir: bool) -> bool {
        self.set.matched(path, is_dir).is_ignore()
    }

    /// The pattern (as given) that excludes the absolute `path`, if one does.
    pub fn excluding_pattern(&self, path: &Path, is_dir: bool) -> Option<&str> {
        match self.set.matched(path, is_dir) {
            ignore::Match::Ignore(glob) => Some(glob.original()),
            _ => None,
        }
    }

    /// [`PathPatterns::matches`] for a snapshot path: raw bytes relative to the snapshot root.
    pub fn matches_snapshot_path(&self, rel: &[u8], is_dir: bool) -> bool {
        use std::os::unix::ffi::OsStrExt;
        let mut abs = Vec::with_capacity(rel.len() + 1);
        abs.push(b'/');
        abs.extend_from_slice(rel);
        self.matches(Path::new(std::ffi::OsStr::from_bytes(&abs)), is_dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(patterns: &[&str]) -> PathPatterns {
        PathPatterns::new(&patterns.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap().unwrap()
    }

    #[test]
    fn gitignore_semantics_on_absolute_paths() {
        let e = p(&["*.tmp", "/home/*/.cache", "build/", "!keep.tmp", "# a comment", ""]);
        assert!(e.matches(Path::new("/a/b/x.tmp"), false));
        assert!(!e.matches(Path::new("/a/b/keep.tmp"), false));
        assert!(e.matches(Path::new("/home/ann/.cache"), true));
        assert!(!e.matches(Path::new("/srv/home/ann/.cache"), true), "anchored at /");
        assert!(e.matches(Path::new("/src/build"), true));
        assert!(!e.matches(Path::new("/src/build"), false), "a trailing / matches directories only");
        assert!(!e.matches(Path::new("/src/main.rs"), false));
        assert!(e.matches_snapshot_path(b"home/ann/.cache", true));
    }

    #[test]
    fn non_utf8_paths_match_by_bytes() {
        assert!(p(&["*.tmp"]).matches_snapshot_path(b"x/\xff\xfe.tmp", false));
    }

    #[test]
    fn no_patterns_and_bad_patterns() {
        assert!(PathPatterns::new(&["# only a comment".into(), "  ".into()]).unwrap().is_none());
        assert!(matches!(PathPatterns::new(&["a[b".into()]), Err(Error::InvalidInput(_))));
    }
}
