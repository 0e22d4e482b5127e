//! Ctrl-C and SIGTERM: the first asks the running operation to stop at its next safe point
//! (a backup indexes what it stored, a restore finishes the file batch it is writing, a prune
//! stops before it deletes), after which locks are released and the process exits 130. A
//! second signal exits at once, as a user pressing Ctrl-C twice expects.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};

use signal_hook::consts::{SIGINT, SIGTERM};

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
