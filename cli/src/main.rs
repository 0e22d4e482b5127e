//! The `cairn` binary: parse, run, map the outcome to a documented exit code.

mod args;
mod commands;
mod exit;
mod metrics;
mod output;
mod output_node;
mod progress;
mod secrets;

use clap::Parser;

/// Backup and restore keep one directory handle open per level of the tree being walked; raise
/// the soft limit on open files to the hard limit so deep trees do not run out of them.
fn raise_open_file_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        limit.current = limit.maximum;
        let _ = setrlimit(Resource::Nofile, limit);
    }
}

fn main() {
    raise_open_file_limit();
    let cli = args::Cli::parse();
    let json = cli.global.json;
    let metrics = cli.global.metrics_file.clone().zip(match &cli.command {
        args::Command::Snapshot(_) => Some("snapshot"),
        args::Command::Forget(_) => Some("forget"),
        args::Command::Prune(_) => Some("prune"),
        args::Command::Check(_) => Some("check"),
        _ => None,
    });
    let repository = cli.global.repo.as_ref().map(|p| p.display().to_string()).unwrap_or_default();
    let start = std::time::Instant::now();
    let code = match commands::run(cli) {
        Ok(code) => code,
        // A closed pipe (`cairn ls | head`) is not an error worth a message.
        Err(err)
            if err.chain().any(|c| {
                c.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
            }) =>
        {
            exit::OK
        }
        Err(err) => {
            let code = exit::code_for(&err);
            output::error(&err, json);
            code
        }
    };
    if let Some((path, operation)) = metrics
        && let Err(e) = metrics::write(&path, operation, &repository, start.elapsed().as_secs_f64(), code)
    {
        eprintln!("cairn: warning: cannot write metrics to {}: {e}", path.display());
    }
    std::process::exit(code);
}
