//! One thin file per subcommand: arguments -> engine options -> call -> render.

mod cat;
mod diff;
mod dump;
mod find;
mod init;
mod ls;
mod restore;
mod snapshot;
mod snapshots;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use cairn_engine::Repository;
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

/// Parses `SNAPSHOT[:PATH]`.
pub fn split_snapshot_path(spec: &str) -> (&str, &str) {
    match spec.split_once(':') {
        Some((s, p)) => (s, p),
        None => (spec, ""),
    }
}
