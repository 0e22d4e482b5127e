//! The `cairn` command line as a library: parse, run, map the outcome to a documented exit
//! code. Its binaries are `cairn` (src/main.rs) and, in the test suite only, `cairn-killable`,
//! which wraps the storage in kill points for the crash-point matrix: the `cairn` binary the
//! tests run is the one shipped, with no test hook in it.

#[macro_use]
mod exit;
mod args;
mod aws;
mod commands;
#[doc(hidden)]
pub use commands::StorageHook;
mod metrics;
mod output;
mod output_node;
mod profile;
mod progress;
mod secrets;
mod signals;
mod table;

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

/// Stack of the thread a command runs on. Restore, check, rewrite and the other walks of a
/// snapshot recurse once per directory level, and a backup stores trees as deep as its source
/// (one open directory per level: as deep as the open-file limit, tens of thousands of levels):
/// on the main thread's 8 MiB, a restore of a 6,000-level tree overflowed. The same size as
/// the backup walker's; only the pages touched are ever committed.
const COMMAND_STACK: usize = 256 << 20;

/// Runs the command on a thread with [`COMMAND_STACK`]; a panic there goes on unwinding here.
fn run_on_a_deep_stack(cli: args::Cli) -> anyhow::Result<i32> {
    let command = std::thread::Builder::new()
        .name("cairn".into())
        .stack_size(COMMAND_STACK)
        .spawn(move || commands::run(cli))
        .map_err(|e| anyhow::anyhow!("cannot start the command's thread: {e}"))?;
    command.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// Key material lives in this process's memory: make sure it never lands in a core file. No
/// core dumps at all (hard limit 0), and not dumpable (which also keeps other processes of the
/// same user from attaching a debugger or reading /proc/PID/mem).
fn forbid_core_dumps() {
    use rustix::process::{DumpableBehavior, Resource, Rlimit, set_dumpable_behavior, setrlimit};
    let _ = setrlimit(Resource::Core, Rlimit { current: Some(0), maximum: Some(0) });
    let _ = set_dumpable_behavior(DumpableBehavior::NotDumpable);
}

/// A command line clap refused: help and version go out as asked (exit 0); anything else is a
/// usage error, exit 2, with a JSON document on stdout when `--json` was among the arguments.
fn usage_error(e: clap::Error) -> ! {
    use clap::error::ErrorKind;
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion)
        || e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand && !json_asked()
    {
        e.exit();
    }
    if json_asked() {
        println!("{}", serde_json::json!({ "error": first_line(&e), "exit_code": exit::USAGE }));
    }
    let _ = e.print();
    std::process::exit(exit::USAGE);
}

/// Whether `--json` is among the arguments (before clap could say so).
fn json_asked() -> bool {
    std::env::args_os().skip(1).take_while(|a| a != "--").any(|a| a == "--json")
}

/// clap's message without its `error: ` prefix and usage lines.
fn first_line(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let line = text.lines().next().unwrap_or_default();
    line.strip_prefix("error: ").unwrap_or(line).to_string()
}

/// The version `--version` prints; a build carrying test-only engine features says so.
fn version() -> &'static str {
    static VERSION: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    VERSION.get_or_init(|| {
        let features = cairn_engine::format::test_only_features();
        match features.is_empty() {
            true => env!("CARGO_PKG_VERSION").to_string(),
            false => format!("{} (test build: {})", env!("CARGO_PKG_VERSION"), features.join(", ")),
        }
    })
}

/// Runs the `cairn` command line on this process's arguments and exits with its code.
pub fn main() -> ! {
    main_with(None)
}

/// [`main`], with every storage the command opens passed through `hook` first (the test suite's
/// kill points). The shipped binary passes none.
pub fn main_with(hook: Option<StorageHook>) -> ! {
    if let Some(hook) = hook {
        commands::set_storage_hook(hook);
    }
    forbid_core_dumps();
    raise_open_file_limit();
    let argv = match profile::expand(std::env::args_os().collect()) {
        Ok(argv) => argv,
        Err(e) => {
            output::error(&e, json_asked());
            std::process::exit(exit::USAGE);
        }
    };
    let cli = match args::Cli::try_parse_from(argv) {
        Ok(cli) => cli,
        Err(e) => usage_error(e),
    };
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
    let code = match run_on_a_deep_stack(cli) {
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
