//! The counting walk: beside a backup that a person watches, the sources are walked once more,
//! ahead of the backup, only to count their regular files and bytes (with the same exclusions),
//! so progress can show totals and an ETA, as restic's scanner does. It reads metadata only, it
//! stops when the backup ends, and a nightly job (no terminal) never runs it.

use std::ffi::OsStr;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::fs::FileType;

use super::exclude::{ExcludeOptions, Excluder};
use crate::hostfs;
use crate::progress::Progress;

/// Report at most this often (in files), so the display is not flooded.
const REPORT_EVERY: u64 = 512;

struct Scan<'a> {
    excluder: Excluder,
    source_devs: &'a [u64],
    progress: &'a dyn Progress,
    stop: &'a AtomicBool,
    files: u64,
    bytes: u64,
}

/// Counts what a backup of `sources` (absolute, normalised) stores, reporting through
/// `progress.totals` as it goes and once complete. Returns early when `stop` is set; returns
/// whether it reported complete totals.
pub(crate) fn count(
    sources: &[PathBuf],
    excludes: &ExcludeOptions,
    source_devs: &[u64],
    progress: &dyn Progress,
    stop: &AtomicBool,
) -> bool {
    let Ok(excluder) = Excluder::new(excludes) else { return false };
    let mut scan = Scan { excluder, source_devs, progress, stop, files: 0, bytes: 0 };
    // A source inside another is counted with it.
    let mut roots: Vec<&PathBuf> = sources.iter().collect();
    roots.sort();
    roots.dedup();
    let roots: Vec<&PathBuf> =
        roots.iter().filter(|p| !roots.iter().any(|q| q != *p && p.starts_with(q))).copied().collect();
    for root in roots {
        if scan.stopped() {
            return false;
        }
        match (root.parent(), root.file_name()) {
            (Some(parent), Some(name)) => {
                if let Ok(dir) = hostfs::open_dir(parent) {
                    scan.entry(dir.as_fd(), root, name.as_bytes());
                }
            }
            // `/` itself.
            _ => {
                if let Ok(dir) = hostfs::open_dir(root)
                    && let Ok(names) = hostfs::list_dir(dir.as_fd())
                {
                    scan.entries(dir.as_fd(), root, names);
                }
            }
        }
    }
    if scan.stopped() {
        return false;
    }
    progress.totals(scan.files, scan.bytes, true);
    true
}

impl Scan<'_> {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    fn entries(&mut self, dir: BorrowedFd<'_>, path: &Path, names: Vec<Vec<u8>>) {
        for name in names {
            if self.stopped() {
                return;
            }
            let child = path.join(OsStr::from_bytes(&name));
            self.entry(dir, &child, &name);
        }
    }

    fn entry(&mut self, dir: BorrowedFd<'_>, path: &Path, name: &[u8]) {
        let Ok(st) = hostfs::stat_at(dir, name) else { return };
        let ft = st.file_type();
        if self.excluder.excludes_path(path, ft == FileType::Directory) {
            return;
        }
        match ft {
            FileType::RegularFile if !self.excluder.excludes_size(st.size) => {
                self.files += 1;
                self.bytes += st.size;
                if self.files.is_multiple_of(REPORT_EVERY) {
                    self.progress.totals(self.files, self.bytes, false);
                }
            }
            FileType::Directory => {
                if self.excluder.one_file_system && !self.source_devs.contains(&st.dev) {
                    return;
                }
                let Ok(fd) = hostfs::open_dir_at(dir, name) else { return };
                let Ok(names) = hostfs::list_dir(fd.as_fd()) else { return };
                if self.excluder.has_marker(fd.as_fd(), &names) {
                    return;
                }
                self.entries(fd.as_fd(), path, names);
            }
            _ => {}
        }
    }
}
