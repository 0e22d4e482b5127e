//! One thin file per subcommand: arguments -> engine options -> call -> render.

mod cat;
mod check;
mod diff;
mod dump;
mod find;
mod forget;
mod init;
mod ls;
mod prune;
mod repair;
mod restore;
mod snapshot;
mod snapshots;
mod unlock;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use cairn_engine::Repository;
use cairn_engine::repo::{LockGuard, LockOptions};
use cairn_engine::storage::{LocalStorage, Storage};

use crate::args::{Cli, Command, GlobalArgs};

/// Runs the command and returns the exit code.
pub fn run(cli: Cli) -> anyhow::Result<i32> {
    let g = &cli.global;
    match &cli.command {
        Command::Init(a) => init::run(g, a),
        Command::Snapshot(a) => snapshot::run(g, a),
        Command::Snapshots => snapshots::run(g),
        Command::Ls(a) => ls::run(g, a),
        Command::Restore(a) => restore::run(g, a),
        Command::Dump(a) => dump::run(g, a),
        Command::Diff(a) => diff::run(g, a),
        Command::Find(a) => find::run(g, a),
        Command::Forget(a) => forget::run(g, a),
        Command::Prune(a) => prune::run(g, a),
        Command::Check(a) => check::run(g, a),
        Command::Repair(a) => repair::run(g, a),
        Command::Unlock(a) => unlock::run(g, a),
        Command::Cat(a) => cat::run(g, a),
    }
}

/// The storage backend named by -r/--repo.
pub fn storage(g: &GlobalArgs) -> anyhow::Result<Arc<dyn Storage>> {
    let repo = g.repo.as_ref().context("no repository given: use -r/--repo or CAIRN_REPOSITORY")?;
    Ok(Arc::new(LocalStorage::new(repo.clone())))
}

fn cache_root(g: &GlobalArgs) -> PathBuf {
    if let Some(dir) = &g.cache_dir {
        return dir.clone();
    }
    if let Some(xdg) = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(xdg).join("cairn");
    }
    match std::env::var_os("HOME") {
        Some(home) => PathBuf::from(home).join(".cache").join("cairn"),
        None => std::env::temp_dir().join("cairn-cache"),
    }
}

/// Opens the repository with the configured secret.
pub fn open(g: &GlobalArgs) -> anyhow::Result<Repository> {
    let storage = storage(g)?;
    let location = storage.location();
    if !std::path::Path::new(&location).exists() {
        return Err(cairn_engine::Error::NoRepository(location).into());
    }
    let secret = crate::secrets::open_secret(g)?;
    Ok(Repository::open(storage, &secret, cache_root(g))?)
}

/// This machine's host name.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into())
}

/// The user running cairn.
pub fn username() -> String {
    std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_default()
}

/// Takes a repository lock for `operation`, waiting up to `--retry-lock`.
pub fn lock(g: &GlobalArgs, repo: &Repository, exclusive: bool, operation: &str) -> anyhow::Result<LockGuard> {
    let opts = LockOptions {
        exclusive,
        operation: operation.to_string(),
        hostname: hostname(),
        username: username(),
        retry_for: g.retry_lock,
    };
    Ok(repo.lock(&opts)?)
}

/// Parses `SNAPSHOT[:PATH]`.
pub fn split_snapshot_path(spec: &str) -> (&str, &str) {
    match spec.split_once(':') {
        Some((s, p)) => (s, p),
        None => (spec, ""),
    }
}
