//! The engine's `Progress` trait on a terminal: an indicatif bar on a tty, nothing at all
//! otherwise (cron, systemd, pipes). A snapshot shows files and bytes done of the totals its
//! counting walk found (growing, marked `+`, until that walk ends), the ETA, and the packs
//! waiting to be uploaded.

use std::io::IsTerminal;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use cairn_engine::Progress;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Terminal progress; silent when stderr is not a tty or output is quiet/JSON.
#[derive(Debug)]
pub struct TermProgress {
    bar: Option<ProgressBar>,
    quiet: bool,
    files_done: AtomicU64,
    files_total: AtomicU64,
    totals_complete: AtomicBool,
    uploads: AtomicUsize,
    /// The bar style with totals is set once, when the first totals come.
    counting: AtomicBool,
}

impl TermProgress {
    pub fn new(quiet: bool) -> Self {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template("{spinner} {elapsed_precise} {bytes} ({bytes_per_sec}) {wide_msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.enable_steady_tick(std::time::Duration::from_millis(200));
            bar
        });
        TermProgress {
            bar,
            quiet,
            files_done: AtomicU64::new(0),
            files_total: AtomicU64::new(0),
            totals_complete: AtomicBool::new(false),
            uploads: AtomicUsize::new(0),
            counting: AtomicBool::new(false),
        }
    }

    /// "files 120/4,031+ · 2 packs uploading": the counts beside the bar.
    fn refresh_prefix(&self, bar: &ProgressBar) {
        let total = self.files_total.load(Ordering::Relaxed);
        let more = if self.totals_complete.load(Ordering::Relaxed) { "" } else { "+" };
        let uploads = self.uploads.load(Ordering::Relaxed);
        let queue = if uploads > 0 { format!(", {uploads} pack(s) uploading") } else { String::new() };
        bar.set_prefix(format!("files {}/{total}{more}{queue}", self.files_done.load(Ordering::Relaxed)));
    }
}

impl Progress for TermProgress {
    fn phase(&self, _name: &str, total: Option<u64>) {
        if let (Some(bar), Some(t)) = (&self.bar, total) {
            bar.set_length(t);
            bar.set_position(0);
            bar.set_style(
                ProgressStyle::with_template("{bar:30} {bytes}/{total_bytes} ({bytes_per_sec}, {eta}) {wide_msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
        }
    }

    fn path(&self, path: &Path) {
        if let Some(bar) = &self.bar {
            bar.set_message(path.display().to_string());
        }
    }

    fn bytes(&self, n: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(n);
        }
    }

    fn wants_totals(&self) -> bool {
        self.bar.is_some()
    }

    fn totals(&self, files: u64, bytes: u64, complete: bool) {
        let Some(bar) = &self.bar else { return };
        self.files_total.store(files, Ordering::Relaxed);
        self.totals_complete.store(complete, Ordering::Relaxed);
        bar.set_length(bytes);
        if !self.counting.swap(true, Ordering::Relaxed) {
            bar.set_style(
                ProgressStyle::with_template(
                    "{bar:25} {bytes}/{total_bytes} ({bytes_per_sec}, ETA {eta}) {prefix} {wide_msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
        }
        self.refresh_prefix(bar);
    }

    fn file_done(&self, bytes_not_read: u64) {
        let Some(bar) = &self.bar else { return };
        self.files_done.fetch_add(1, Ordering::Relaxed);
        bar.inc(bytes_not_read);
        self.refresh_prefix(bar);
    }

    fn uploads_pending(&self, packs: usize) {
        self.uploads.store(packs, Ordering::Relaxed);
    }

    fn warn(&self, message: &str) {
        if self.quiet {
            return;
        }
        match &self.bar {
            Some(bar) => bar.println(format!("warning: {message}")),
            None => eprintln!("warning: {message}"),
        }
    }

    fn done(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
