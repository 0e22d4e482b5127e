//! `cairn` with kill points, for the crash-point matrix (tests/it/crash_matrix): every storage
//! the command opens is wrapped so that `CAIRN_TEST_KILL_AT=N[:before|:after]` kills the process
//! with SIGKILL at the n-th storage write, and `CAIRN_TEST_STORAGE_LOG=FILE` appends one line per
//! storage write to FILE. The shipped `cairn` has neither.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use cairn_engine::storage::{KillPlan, Storage, with_kill_points};

fn kill_points(backend: Arc<dyn Storage>) -> anyhow::Result<Arc<dyn Storage>> {
    let kill_at = match std::env::var("CAIRN_TEST_KILL_AT") {
        Ok(spec) => Some(
            KillPlan::parse_kill_at(&spec)
                .with_context(|| format!("CAIRN_TEST_KILL_AT={spec:?}: expected N, N:before or N:after"))?,
        ),
        Err(_) => None,
    };
    let log_to = std::env::var_os("CAIRN_TEST_STORAGE_LOG").map(PathBuf::from);
    Ok(with_kill_points(backend, KillPlan { kill_at, log_to }))
}

fn main() {
    cairn_cli::main_with(Some(kill_points))
}
