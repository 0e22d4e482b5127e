//! `cairn snapshot PATH...`

use std::time::Instant;

use std::io::Read;
use std::os::fd::AsFd;
use std::process::{Child, Command, Stdio};

use anyhow::Context;
use cairn_engine::backup::{
    BackupOptions, BackupOutcome, ExcludeOptions, ParentChoice, StreamSource, backup, backup_stream,
};
use cairn_engine::{Progress, Repository};

use crate::args::{GlobalArgs, SnapshotArgs};
use crate::progress::TermProgress;
use crate::{exit, output};

/// Exclusion rules from the flags, with `--exclude-file` lines read here.
fn excludes(a: &SnapshotArgs) -> anyhow::Result<ExcludeOptions> {
    let mut patterns = a.excludes.clone();
    for file in &a.exclude_files {
        let text = std::fs::read_to_string(file).with_context(|| format!("reading exclude file {}", file.display()))?;
        patterns.extend(text.lines().map(str::to_string));
    }
    Ok(ExcludeOptions {
        patterns,
        if_present: a.exclude_if_present.clone(),
        caches: a.exclude_caches,
        one_file_system: a.one_file_system,
        larger_than: a.exclude_larger_than,
    })
}

/// Waits for the command whose output was backed up; a failure aborts the snapshot.
fn check_command(child: &mut Child, command: &str) -> cairn_engine::Result<()> {
    let status = child.wait().map_err(|e| cairn_engine::Error::Source { path: command.into(), source: e })?;
    if status.success() {
        Ok(())
    } else {
        Err(cairn_engine::Error::Source {
            path: command.into(),
            source: std::io::Error::other(format!("the command failed ({status}); no snapshot was written")),
        })
    }
}

/// `--stdin` / `--stdin-from-command`: one stream, one file.
fn run_stream(
    repo: &Repository,
    a: &SnapshotArgs,
    opts: &BackupOptions,
    progress: &dyn Progress,
) -> anyhow::Result<BackupOutcome> {
    let name = a.stdin_filename.as_bytes().to_vec();
    match &a.stdin_from_command {
        Some(command) => {
            let mut child = Command::new("sh")
                .arg("-c")
                .arg(command)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .spawn()
                .with_context(|| format!("starting {command:?}"))?;
            let mut stdout = child.stdout.take().context("the command's output")?;
            let mut finish = || check_command(&mut child, command);
            let source = StreamSource { name, reader: &mut stdout as &mut dyn Read, finish: &mut finish };
            Ok(backup_stream(repo, opts, source, progress)?)
        }
        None => {
            let mut stdin = std::io::stdin().lock();
            let mut finish = || Ok(());
            let source = StreamSource { name, reader: &mut stdin as &mut dyn Read, finish: &mut finish };
            Ok(backup_stream(repo, opts, source, progress)?)
        }
    }
}

/// The paths named on the command line and in `--files-from` / `--files-from-raw` files.
fn source_paths(a: &SnapshotArgs) -> anyhow::Result<Vec<std::path::PathBuf>> {
    use std::os::unix::ffi::OsStrExt;
    let mut paths = a.paths.clone();
    let read = |f: &std::path::Path| std::fs::read(f).with_context(|| format!("cannot read {}", f.display()));
    for f in &a.files_from {
        let text = read(f)?;
        for line in text.split(|&b| b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.iter().all(u8::is_ascii_whitespace) || line.starts_with(b"#") {
                continue;
            }
            paths.push(std::ffi::OsStr::from_bytes(line).into());
        }
    }
    for f in &a.files_from_raw {
        let bytes = read(f)?;
        paths.extend(bytes.split(|&b| b == 0).filter(|p| !p.is_empty()).map(|p| std::ffi::OsStr::from_bytes(p).into()));
    }
    if paths.is_empty() && !(a.stdin || a.stdin_from_command.is_some()) {
        bail_usage!("no paths to back up: the --files-from files list none");
    }
    Ok(paths)
}

pub fn run(g: &GlobalArgs, a: &SnapshotArgs) -> anyhow::Result<i32> {
    let result = run_hooked(g, a);
    if let Some(command) = &a.run_after {
        let code = match &result {
            Ok(code) => *code,
            Err(e) => exit::code_for(e),
        };
        let status = Command::new("sh")
            .arg("-c")
            .arg(command)
            .env("CAIRN_EXIT_CODE", code.to_string())
            .env("CAIRN_SNAPSHOT_ID", LAST_SNAPSHOT.get().map(|id| id.to_hex()).unwrap_or_default())
            .stdout(hook_stdout(g.json))
            .status();
        match status {
            Ok(s) if s.success() => {}
            Ok(s) => eprintln!("cairn: warning: --run-after command {command:?} failed ({s})"),
            Err(e) => eprintln!("cairn: warning: cannot run --run-after command {command:?}: {e}"),
        }
    }
    result
}

/// Where a hook's output goes: with --json on stderr, so stdout stays one document.
fn hook_stdout(json: bool) -> Stdio {
    match std::io::stderr().as_fd().try_clone_to_owned() {
        Ok(fd) if json => Stdio::from(fd),
        _ => Stdio::inherit(),
    }
}

/// The snapshot this process wrote, for `--run-after`.
static LAST_SNAPSHOT: std::sync::OnceLock<cairn_engine::ObjectId> = std::sync::OnceLock::new();

fn run_hooked(g: &GlobalArgs, a: &SnapshotArgs) -> anyhow::Result<i32> {
    let excludes = excludes(a)?;
    let repo = super::open_for_backup(g)?;
    if a.dry_run {
        // Changes nothing, so it is not logged, and a shared lock will do.
        let _lock = super::read_lock(g, &repo, "snapshot --dry-run")?;
        return snapshot(g, a, &repo, excludes, &mut cairn_engine::audit::AuditRecord::new("snapshot"));
    }
    super::audited(&repo, super::Operation::Snapshot, |rec| {
        let _lock = super::lock(g, &repo, false, "snapshot")?;
        snapshot(g, a, &repo, excludes, rec)
    })
}

/// The backup itself, and its report.
fn snapshot(
    g: &GlobalArgs,
    a: &SnapshotArgs,
    repo: &Repository,
    excludes: ExcludeOptions,
    rec: &mut cairn_engine::audit::AuditRecord,
) -> anyhow::Result<i32> {
    {
        let parent = match (&a.parent, a.force) {
            // A write-only key reads no snapshot: it names its parent by id alone.
            (Some(spec), _) if repo.is_write_only() => ParentChoice::Snapshot(repo.resolve_snapshot_id(spec)?),
            (Some(spec), _) => ParentChoice::Snapshot(super::find_snapshot(repo, spec, &Default::default())?.0),
            (None, true) => ParentChoice::None,
            (None, false) => ParentChoice::Auto,
        };
        if let Some(command) = &a.run_before {
            // Its output is the user's: on stderr with --json, so stdout stays one document.
            let status = Command::new("sh")
                .arg("-c")
                .arg(command)
                .stdout(hook_stdout(g.json))
                .status()
                .with_context(|| format!("cannot run --run-before command {command:?}"))?;
            if !status.success() {
                anyhow::bail!("--run-before command {command:?} failed ({status}); no snapshot was made");
            }
        }
        let opts = BackupOptions {
            paths: source_paths(a)?,
            tags: super::tag_words(&a.tags),
            hostname: a.host.clone().unwrap_or_else(super::hostname),
            username: super::username(),
            time_ns: a.time,
            program: format!("cairn {}", env!("CARGO_PKG_VERSION")),
            parent,
            excludes,
            dry_run: a.dry_run,
        };
        let start = Instant::now();
        let progress = TermProgress::new(g.quiet || g.json);
        let out = if a.stdin || a.stdin_from_command.is_some() {
            run_stream(repo, a, &opts, &progress)?
        } else {
            backup(repo, &opts, &progress)?
        };
        let secs = start.elapsed().as_secs_f64();
        // On stderr, with --json too: a pattern that excluded nothing is usually a typo.
        for p in &out.unused_excludes {
            eprintln!(
                "cairn: warning: --exclude {p:?} matched nothing (patterns match absolute paths: `/home/*/.cache`, or a \
                 bare name anywhere: `*.tmp`)"
            );
        }
        if !a.dry_run {
            rec.snapshots_created.push(out.snapshot_id);
            let _ = LAST_SNAPSHOT.set(out.snapshot_id);
        }
        rec.detail = format!("{} source error(s)", out.errors.len());
        let s = &out.snapshot.summary;
        let code = if out.errors.is_empty() { exit::OK } else { exit::PARTIAL };
        for (name, help, value) in [
            ("files_new", "Files new since the parent snapshot.", s.files_new),
            ("files_changed", "Files changed since the parent snapshot.", s.files_changed),
            ("files_unchanged", "Files unchanged since the parent snapshot.", s.files_unchanged),
            ("bytes_read", "Bytes of file content read.", s.bytes_read),
            ("bytes_total", "Bytes of file content in the snapshot.", s.bytes_total),
            ("bytes_added", "Bytes added to the repository.", s.bytes_added_stored),
            ("errors", "Sources that could not be read.", out.errors.len() as u64),
        ] {
            crate::metrics::record(name, help, value as f64);
        }
        if g.json {
            output::json(&serde_json::json!({
                "snapshot_id": (!a.dry_run).then(|| out.snapshot_id.to_hex()),
                "dry_run": a.dry_run,
                "parent": out.snapshot.parent.map(|p| p.to_hex()),
                "files_new": s.files_new, "files_changed": s.files_changed, "files_unchanged": s.files_unchanged,
                "dirs": s.dirs, "others": s.others,
                "bytes_read": s.bytes_read, "bytes_total": s.bytes_total,
                "blobs_added": s.blobs_added, "bytes_added_raw": s.bytes_added_raw, "bytes_added_stored": s.bytes_added_stored,
                "duration_seconds": secs,
                "errors": out.errors.iter().map(|e| serde_json::json!({"path": e.path.display().to_string(), "error": e.message})).collect::<Vec<_>>(),
                "excludes_unmatched": out.unused_excludes,
                "exit_code": code,
            }))?;
        } else if !g.quiet && a.dry_run {
            println!(
                "dry run, nothing stored: files {} new, {} changed, {} unchanged; {} read, {} would be added to the \
                 repository ({} blobs) in {:.1}s",
                s.files_new,
                s.files_changed,
                s.files_unchanged,
                output::bytes(s.bytes_read),
                output::bytes(s.bytes_added_raw),
                s.blobs_added,
                secs
            );
        } else if !g.quiet {
            println!(
                "snapshot {} saved: files {} new, {} changed, {} unchanged; {} read, {} added to the repository ({} stored) in {:.1}s",
                &out.snapshot_id.to_hex()[..12],
                s.files_new,
                s.files_changed,
                s.files_unchanged,
                output::bytes(s.bytes_read),
                output::bytes(s.bytes_added_raw),
                output::bytes(s.bytes_added_stored),
                secs
            );
            if !out.errors.is_empty() {
                eprintln!("{} source(s) could not be read:", out.errors.len());
                for e in &out.errors {
                    eprintln!("  {}: {}", e.path.display(), e.message);
                }
            }
        }
        Ok(code)
    }
}
