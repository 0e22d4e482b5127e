//! The engine's `Progress` trait on a terminal: an indicatif spinner with bytes and rate on a
//! tty, nothing at all otherwise (cron, systemd, pipes).

use std::io::IsTerminal;
use std::path::Path;

use cairn_engine::Progress;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Terminal progress; silent when stderr is not a tty or output is quiet/JSON.
#[derive(Debug)]
pub struct TermProgress {
    bar: Option<ProgressBar>,
    quiet: bool,
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
        TermProgress { bar, quiet }
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
