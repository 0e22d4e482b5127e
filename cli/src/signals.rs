//! Ctrl-C and SIGTERM: the first asks the running operation to stop at its next safe point
//! (a backup indexes what it stored, a restore finishes the file batch it is writing, a prune
//! stops before it deletes), after which locks are released and the process exits 130. A
//! second signal exits at once, as a user pressing Ctrl-C twice expects.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

/// Exit code of a process stopped by a signal (128 + SIGINT), as shells report it.
pub const EXIT_INTERRUPTED: i32 = 130;

/// The stop request that SIGINT and SIGTERM set, with the handlers installed on first use (a
/// command installs them once its repository is open, so Ctrl-C at a password prompt still
/// ends the process at once).
pub fn stop_flag() -> Arc<AtomicBool> {
    static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();
    FLAG.get_or_init(|| {
        let flag = Arc::new(AtomicBool::new(false));
        for signal in [SIGINT, SIGTERM] {
            // Registered first, so it sees the flag as the earlier signal left it: the second
            // signal exits without waiting for a safe point.
            let installed = signal_hook::flag::register_conditional_shutdown(signal, EXIT_INTERRUPTED, flag.clone())
                .and_then(|_| signal_hook::flag::register(signal, flag.clone()));
            if let Err(e) = installed {
                eprintln!("cairn: warning: cannot handle signal {signal}: {e}; it will end the process at once");
            }
        }
        flag
    })
    .clone()
}

/// Makes SIGHUP (the terminal closed) a stop request like SIGINT, for a command that would
/// otherwise leave something behind when its terminal goes: a mount. Not when SIGHUP is
/// ignored (started under `nohup` to outlive the terminal): a handler would undo that.
pub fn stop_also_on_hangup(flag: &Arc<AtomicBool>) {
    if hangup_ignored() {
        return;
    }
    // Only a stop request, never "exit at once" on a second one: a closing terminal often
    // sends two (the shell forwards one, the kernel sends another when the shell exits).
    if let Err(e) = signal_hook::flag::register(SIGHUP, flag.clone()) {
        eprintln!("cairn: warning: cannot handle SIGHUP: {e}");
    }
}

/// Whether this process ignores SIGHUP, from the `SigIgn` mask of `/proc/self/status`.
fn hangup_ignored() -> bool {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else { return false };
    status
        .lines()
        .find_map(|l| l.strip_prefix("SigIgn:"))
        .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
        .is_some_and(|mask| mask & (1 << (SIGHUP - 1)) != 0)
}
