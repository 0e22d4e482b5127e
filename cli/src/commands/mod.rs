//! One thin file per subcommand: arguments -> engine options -> call -> render.

mod audit;
mod cat;
mod check;
mod copy;
mod diff;
mod docs;
mod dump;
mod find;
mod forget;
mod init;
mod key;
mod list;
mod ls;
mod mount;
mod prune;
mod repair;
mod restore;
mod rewrite;
mod serve;
mod snapshot;
mod snapshots;
mod stats;
mod tag;
mod unlock;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use std::os::unix::ffi::OsStringExt;

use cairn_engine::Repository;
use cairn_engine::audit::{Actor, AuditRecord};
pub use cairn_engine::audited::Operation;
use cairn_engine::audited::{AuditFailure, Ending};
use cairn_engine::repo::{LockGuard, LockOptions, ReadLock};
use cairn_engine::select::SnapshotFilter;
use cairn_engine::storage::{
    LocalStorage, RestOptions, RestStorage, RetryPolicy, Retrying, S3Location, S3Options, S3Storage, Storage, Throttled,
};

use crate::args::{Cli, Command, GlobalArgs, SnapshotFilterArgs};

/// Runs the command and returns the exit code.
pub fn run(cli: Cli) -> anyhow::Result<i32> {
    let g = &cli.global;
    match &cli.command {
        Command::Init(a) => init::run(g, a),
        Command::Snapshot(a) => snapshot::run(g, a),
        Command::Snapshots(a) => snapshots::run(g, a),
        Command::Ls(a) => ls::run(g, a),
        Command::Restore(a) => restore::run(g, a),
        Command::Dump(a) => dump::run(g, a),
        Command::Mount(a) => mount::run(g, a),
        Command::Diff(a) => diff::run(g, a),
        Command::Find(a) => find::run(g, a),
        Command::Forget(a) => forget::run(g, a),
        Command::Prune(a) => prune::run(g, a),
        Command::Check(a) => check::run(g, a),
        Command::Repair(a) => repair::run(g, a),
        Command::Unlock(a) => unlock::run(g, a),
        Command::Cat(a) => cat::run(g, a),
        Command::Key(a) => key::run(g, a),
        Command::Audit(a) => audit::run(g, a),
        Command::Copy(a) => copy::run(g, a),
        Command::Rewrite(a) => rewrite::run(g, a),
        Command::Stats(a) => stats::run(g, a),
        Command::List(a) => list::run(g, a),
        Command::Tag(a) => tag::run(g, a),
        Command::Serve(a) => serve::run(g, a),
        Command::Completion(a) => docs::completion(a),
        Command::Man(a) => docs::man(a),
    }
}

/// The storage backend named by -r/--repo, with the rate limits asked for.
pub fn storage(g: &GlobalArgs) -> anyhow::Result<Arc<dyn Storage>> {
    let repo = g.repo.as_ref().context("no repository given: use -r/--repo or CAIRN_REPOSITORY")?;
    if let Some(url) = repo.to_str().filter(|r| cairn_engine::storage::rest::is_rest(r)) {
        let rest: Arc<dyn Storage> = Arc::new(RestStorage::open(url, &rest_options(g)?)?);
        return wrapped(g, Arc::new(Retrying::new(rest, RetryPolicy::default())));
    }
    let backend: Arc<dyn Storage> = match repo.to_str().filter(|r| S3Location::is_s3(r)) {
        Some(url) => {
            let location = S3Location::parse(url)?;
            let aws = crate::aws::settings_from_environment()?;
            Arc::new(Retrying::new(Arc::new(S3Storage::open(location, &s3_options(g), &aws)?), RetryPolicy::default()))
        }
        None => Arc::new(LocalStorage::new(repo.clone())),
    };
    wrapped(g, backend)
}

/// How to reach S3: what the global flags say.
pub fn s3_options(g: &GlobalArgs) -> S3Options {
    S3Options {
        region: g.s3_region.clone(),
        endpoint: g.s3_endpoint.clone(),
        cacert: g.cacert.clone(),
        insecure_http: g.insecure_http,
        ..S3Options::default()
    }
}

/// How to reach a `cairn serve` server: the token from --server-token-file or
/// CAIRN_SERVER_TOKEN, the client certificate, the CA.
fn rest_options(g: &GlobalArgs) -> anyhow::Result<RestOptions> {
    let token = match (&g.server_token_file, std::env::var("CAIRN_SERVER_TOKEN")) {
        (Some(file), _) => {
            let text = zeroize::Zeroizing::new(
                std::fs::read_to_string(file)
                    .with_context(|| format!("cannot read --server-token-file {}", file.display()))?,
            );
            Some(zeroize::Zeroizing::new(text.lines().next().unwrap_or_default().trim().to_string()))
        }
        (None, Ok(token)) => Some(zeroize::Zeroizing::new(token.trim().to_string())),
        (None, Err(_)) => None,
    };
    Ok(RestOptions {
        token,
        cacert: g.cacert.clone(),
        client_cert: g.tls_client_cert.clone(),
        client_key: g.tls_client_key.clone(),
        insecure_http: g.insecure_http,
        request_timeout: None,
    })
}

/// `backend` with the test hook and the rate limits asked for.
fn wrapped(g: &GlobalArgs, backend: Arc<dyn Storage>) -> anyhow::Result<Arc<dyn Storage>> {
    let backend = hooked(backend)?;
    let kib = |v: Option<u64>| v.map(|k| k.saturating_mul(1024));
    Ok(match (g.limit_upload, g.limit_download) {
        (None, None) => backend,
        (up, down) => Arc::new(Throttled::new(backend, kib(up), kib(down))),
    })
}

/// What a binary built on this library may wrap every storage in before a command uses it.
pub type StorageHook = fn(Arc<dyn Storage>) -> anyhow::Result<Arc<dyn Storage>>;

/// The hook [`crate::main_with`] was given; none in the shipped binary.
static STORAGE_HOOK: std::sync::OnceLock<StorageHook> = std::sync::OnceLock::new();

pub(crate) fn set_storage_hook(hook: StorageHook) {
    let _ = STORAGE_HOOK.set(hook);
}

/// `backend` through the storage hook, if the binary set one.
fn hooked(backend: Arc<dyn Storage>) -> anyhow::Result<Arc<dyn Storage>> {
    match STORAGE_HOOK.get() {
        Some(hook) => hook(backend),
        None => Ok(backend),
    }
}

/// Whether -r/--repo names a repository over the network (S3 or a `cairn serve` server).
fn is_s3(g: &GlobalArgs) -> bool {
    g.repo
        .as_ref()
        .and_then(|r| r.to_str())
        .is_some_and(|r| S3Location::is_s3(r) || cairn_engine::storage::rest::is_rest(r))
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

/// Opens the repository with the configured secret. A write-only key is refused here (exit
/// 12, before anything is written): only [`open_for_backup`] takes one.
pub fn open(g: &GlobalArgs) -> anyhow::Result<Repository> {
    open_as(g, false)
}

/// Opens the repository to add a snapshot: a write-only key opens it too.
pub fn open_for_backup(g: &GlobalArgs) -> anyhow::Result<Repository> {
    open_as(g, true)
}

fn open_as(g: &GlobalArgs, for_backup: bool) -> anyhow::Result<Repository> {
    let storage = storage(g)?;
    let location = storage.location();
    if !is_s3(g) {
        let path = std::path::Path::new(&location);
        if !path.exists() {
            let hint = "check -r/--repo or CAIRN_REPOSITORY; `cairn init` creates a repository".to_string();
            return Err(crate::output::Hinted { error: cairn_engine::Error::NoRepository(location), hint }.into());
        }
        if !path.is_dir() {
            return Err(cairn_engine::Error::NoRepository(format!("{location} (not a directory)")).into());
        }
    }
    let secret = crate::secrets::open_secret(g)?;
    let mut repo = if for_backup {
        Repository::open_for_backup(storage, &secret, cache_root(g))?
    } else {
        Repository::open(storage, &secret, cache_root(g))?
    };
    repo.set_actor(actor());
    repo.set_stop_flag(crate::signals::stop_flag());
    let default_connections = if is_s3(g) { 4 } else { cairn_engine::repo::DEFAULT_STORAGE_CONNECTIONS };
    repo.set_storage_connections(g.storage_connections.map_or(default_connections, usize::from));
    // Over the network a tree is a round trip per directory: whole tree packs are kept.
    repo.set_tree_pack_cache(is_s3(g));
    Ok(repo)
}

/// This machine's host name, from the kernel (gethostname), not from the environment.
pub fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// The user running cairn: the name of the real uid in the user database (not `$USER`, which
/// may be unset under cron or stale under su), else `uid N`.
pub fn username() -> String {
    let uid = nix::unistd::getuid();
    match nix::unistd::User::from_uid(uid) {
        Ok(Some(user)) => user.name,
        _ => format!("uid {uid}"),
    }
}

/// Who runs this command, for the audit log.
pub fn actor() -> Actor {
    Actor { host: hostname(), user: username() }
}

/// Runs `f` under the engine's audit policy ([`cairn_engine::audited`]): the entry's outcome
/// comes from the exit code, a command refused because the repository is locked is not logged,
/// and a reading command whose entry could not be written warns.
pub fn audited(
    repo: &Repository,
    operation: Operation,
    f: impl FnOnce(&mut AuditRecord) -> anyhow::Result<i32>,
) -> anyhow::Result<i32> {
    let ending = |result: &anyhow::Result<i32>| match result {
        Err(e) if crate::exit::code_for(e) == crate::exit::LOCKED => Ending::Refused,
        Err(e) => Ending::Failed(format!("{e:#}")),
        Ok(code) if *code == crate::exit::PARTIAL => Ending::Partial,
        Ok(code) if *code != crate::exit::OK => Ending::Status(*code),
        Ok(_) => Ending::Done,
    };
    match cairn_engine::audited::run(repo, &actor(), operation, f, ending) {
        Ok(done) => {
            if let Some(e) = done.entry_missing {
                crate::output::warn(format_args!("cairn: warning: could not append to the audit log: {e}"));
            }
            done.result
        }
        Err(AuditFailure::NotStarted(e)) => Err(e.into()),
        Err(AuditFailure::EntryLost { operation, source }) => Err(anyhow::Error::new(source)
            .context(format!("{operation} finished, but its audit entry could not be written"))),
    }
}

/// Takes a repository lock for `operation`, waiting up to `--retry-lock`.
pub fn lock(g: &GlobalArgs, repo: &Repository, exclusive: bool, operation: &str) -> anyhow::Result<LockGuard> {
    let opts = LockOptions {
        exclusive,
        operation: operation.to_string(),
        hostname: hostname(),
        username: username(),
        retry_for: g.retry_lock,
        refresh_every: cairn_engine::repo::REFRESH_EVERY,
    };
    Ok(repo.lock(&opts)?)
}

/// Warns about snapshots that could not be read (on stderr, also with --json) and says how to
/// remove them.
pub fn warn_unreadable(unreadable: &[(cairn_engine::ObjectId, cairn_engine::Error)]) {
    for (id, e) in unreadable {
        eprintln!("cairn: warning: snapshot {} cannot be read and is skipped: {e}", id.short());
    }
    if !unreadable.is_empty() {
        let ids: Vec<String> = unreadable.iter().map(|(id, _)| id.short()).collect();
        eprintln!(
            "cairn: warning: {} snapshot(s) could not be read: damaged (`cairn check` shows the damage; `cairn forget \
             {}` or `cairn repair snapshots` removes it), or sealed under newer keys while a key rotation is \
             unfinished (finish it with `cairn key rotate` opened through a slot that opens the newest keys)",
            ids.len(),
            ids.join(" ")
        );
    }
}

/// Every snapshot that can be read, oldest first; the others are named in a warning.
pub fn readable_snapshots(
    repo: &Repository,
) -> anyhow::Result<Vec<(cairn_engine::ObjectId, cairn_engine::format::snapshot::Snapshot)>> {
    let (readable, unreadable) = repo.readable_snapshots()?;
    warn_unreadable(&unreadable);
    Ok(readable)
}

/// The engine's filter for what the user typed.
pub fn snapshot_filter(a: &SnapshotFilterArgs) -> anyhow::Result<SnapshotFilter> {
    let paths = a
        .paths
        .iter()
        .map(|p| {
            cairn_engine::select::source_path(p)
                .map(|p| p.into_os_string().into_vec())
                .with_context(|| format!("--path {}", p.display()))
        })
        .collect::<anyhow::Result<_>>()?;
    Ok(SnapshotFilter { hosts: a.hosts.clone(), tags: SnapshotFilter::tag_lists(&a.tags), paths })
}

/// Tags as typed: each argument a comma-separated list, blanks dropped (`--tag a,b` is two).
pub fn tag_words(args: &[String]) -> Vec<String> {
    args.iter().flat_map(|t| t.split(',')).map(str::trim).filter(|t| !t.is_empty()).map(String::from).collect()
}

/// Every readable snapshot that passes the filters, oldest first.
pub fn filtered_snapshots(
    repo: &Repository,
    filter: &SnapshotFilterArgs,
) -> anyhow::Result<Vec<(cairn_engine::ObjectId, cairn_engine::format::snapshot::Snapshot)>> {
    let f = snapshot_filter(filter)?;
    Ok(readable_snapshots(repo)?.into_iter().filter(|(_, s)| f.matches(s)).collect())
}

/// The snapshots named by `specs` (ids, prefixes, `latest`), or, when there are none, every
/// readable snapshot that passes the filters; oldest first either way as given.
pub fn chosen_snapshots(
    repo: &Repository,
    specs: &[String],
    filter: &SnapshotFilterArgs,
) -> anyhow::Result<Vec<(cairn_engine::ObjectId, cairn_engine::format::snapshot::Snapshot)>> {
    if specs.is_empty() {
        return filtered_snapshots(repo, filter);
    }
    specs.iter().map(|s| find_snapshot(repo, s, filter)).collect()
}

/// Resolves `latest`, an id or an id prefix and loads the snapshot. `latest` is the newest
/// snapshot that can be read and passes the filters, of this machine unless `--host` is given;
/// damaged ones are named in a warning, since one of them may be newer. An id names one
/// snapshot and the filters do not apply to it.
pub fn find_snapshot(
    repo: &Repository,
    spec: &str,
    filter: &SnapshotFilterArgs,
) -> anyhow::Result<(cairn_engine::ObjectId, cairn_engine::format::snapshot::Snapshot)> {
    if spec != "latest" {
        return Ok(repo.find_snapshot(spec)?);
    }
    let mut f = snapshot_filter(filter)?;
    let this_host = f.hosts.is_empty();
    if this_host {
        f.hosts.push(hostname());
    }
    let all = readable_snapshots(repo)?;
    if let Some(found) = all.iter().rev().find(|(_, s)| f.matches(s)) {
        warn_other_writers(found, &all);
        return Ok(found.clone());
    }
    let mut why = if all.is_empty() {
        "the repository has no snapshots that can be read".to_string()
    } else if f.tags.is_empty() && f.paths.is_empty() {
        format!("no snapshot of host {} to take as `latest`", f.hosts.join(" or "))
    } else {
        "no snapshot passes the filters (--host, --tag, --path) to take as `latest`".to_string()
    };
    if this_host && !all.is_empty() {
        let mut hosts: Vec<&str> = all.iter().map(|(_, s)| s.hostname.as_str()).collect();
        hosts.sort_unstable();
        hosts.dedup();
        why.push_str(&format!(
            " (`latest` is this machine's unless --host says otherwise; the repository has snapshots of {})",
            hosts.join(", ")
        ));
    }
    Err(cairn_engine::Error::SnapshotNotFound(why).into())
}

/// Warns when `latest` of a host was written by another writer than other snapshots of that
/// host: a stolen write-only key can name any host and date its snapshot now (SPEC §15.5).
fn warn_other_writers(
    (id, found): &(cairn_engine::ObjectId, cairn_engine::format::snapshot::Snapshot),
    all: &[(cairn_engine::ObjectId, cairn_engine::format::snapshot::Snapshot)],
) {
    let mut others: Vec<String> = all
        .iter()
        .filter(|(_, s)| s.hostname == found.hostname && s.writer != found.writer)
        .map(|(_, s)| crate::output::writer(s.writer))
        .collect();
    others.sort();
    others.dedup();
    if !others.is_empty() {
        eprintln!(
            "warning: `latest` of host {} is {}, written by {}; other snapshots of that host were written by {}",
            found.hostname,
            id.short(),
            crate::output::writer(found.writer),
            others.join(", ")
        );
    }
}

/// A path not found in `snap` gets a hint: paths inside a snapshot are absolute, and these are
/// the snapshot's source paths.
pub fn hint_snapshot_paths<T>(
    result: cairn_engine::Result<T>,
    snap: &cairn_engine::format::snapshot::Snapshot,
) -> anyhow::Result<T> {
    result.map_err(|error| match error {
        cairn_engine::Error::NotInSnapshot(_) => {
            let paths: Vec<String> = snap.paths.iter().map(|p| String::from_utf8_lossy(p).into_owned()).collect();
            let hint = format!(
                "paths inside a snapshot are absolute, as they were backed up; this snapshot holds {}",
                paths.join(", ")
            );
            crate::output::Hinted { error, hint }.into()
        }
        other => other.into(),
    })
}

/// A shared lock for a command that only reads: none with `--no-lock`, and none (with a
/// warning) when the storage refuses to store it (read-only media).
pub fn read_lock(g: &GlobalArgs, repo: &Repository, operation: &str) -> anyhow::Result<Option<LockGuard>> {
    if g.no_lock {
        return Ok(None);
    }
    let opts = LockOptions {
        exclusive: false,
        operation: operation.to_string(),
        hostname: hostname(),
        username: username(),
        retry_for: g.retry_lock,
        refresh_every: cairn_engine::repo::REFRESH_EVERY,
    };
    match repo.read_lock(&opts)? {
        ReadLock::Held(guard) => Ok(Some(guard)),
        ReadLock::Unwritable(e) => {
            crate::output::warn(format_args!(
                "cairn: warning: no lock taken, the repository cannot be written ({e}); going on without one"
            ));
            Ok(None)
        }
    }
}

/// Parses `SNAPSHOT[:PATH]`.
pub fn split_snapshot_path(spec: &str) -> (&str, &str) {
    match spec.split_once(':') {
        Some((s, p)) => (s, p),
        None => (spec, ""),
    }
}
