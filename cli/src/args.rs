//! What the user typed: clap derives only, no logic.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Cairn: encrypted, deduplicating backups.
#[derive(Debug, Parser)]
#[command(name = "cairn", version, about, long_about = None)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Repository location (a local directory).
    #[arg(short = 'r', long = "repo", env = "CAIRN_REPOSITORY", global = true)]
    pub repo: Option<PathBuf>,
    /// Read the password from this file (first line).
    #[arg(long, env = "CAIRN_PASSWORD_FILE", global = true)]
    pub password_file: Option<PathBuf>,
    /// Run this shell command and use the first line it prints as the password.
    #[arg(long, env = "CAIRN_PASSWORD_COMMAND", global = true)]
    pub password_command: Option<String>,
    /// Open the repository with the recovery code in this file instead of a password.
    #[arg(long, global = true)]
    pub recovery_code_file: Option<PathBuf>,
    /// Directory for local caches (default: $XDG_CACHE_HOME/cairn or ~/.cache/cairn).
    #[arg(long, env = "CAIRN_CACHE_DIR", global = true)]
    pub cache_dir: Option<PathBuf>,
    /// Machine-readable output: one JSON document on stdout.
    #[arg(long, global = true)]
    pub json: bool,
    /// Print only errors.
    #[arg(short, long, global = true)]
    pub quiet: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a new repository.
    Init(InitArgs),
    /// Back up files and directories into a new snapshot.
    #[command(alias = "backup")]
    Snapshot(SnapshotArgs),
    /// List snapshots.
    Snapshots,
    /// List the files of a snapshot.
    Ls(LsArgs),
    /// Restore a snapshot.
    Restore(RestoreArgs),
    /// Print a repository object (decrypted) for debugging.
    Cat(CatArgs),
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Do not create a recovery code (you will depend on your password alone).
    #[arg(long)]
    pub no_recovery_code: bool,
    /// Write the recovery code to this file (mode 0600) instead of printing it.
    #[arg(long)]
    pub recovery_code_out: Option<PathBuf>,
    /// Argon2id memory in KiB for the password slot (default: 65536).
    #[arg(long, value_name = "KIB")]
    pub kdf_memory: Option<u32>,
    /// Argon2id iterations (default: calibrated to about 0.5 s on this machine).
    #[arg(long, value_name = "N")]
    pub kdf_iterations: Option<u32>,
    /// Chunk sizes MIN,AVG,MAX in bytes (default 524288,1048576,8388608).
    #[arg(long, value_name = "MIN,AVG,MAX")]
    pub chunk_sizes: Option<String>,
    /// Target pack size in MiB.
    #[arg(long, default_value_t = 16)]
    pub pack_size: u32,
    /// zstd level, 0 to disable compression.
    #[arg(long, default_value_t = 3)]
    pub compression: i32,
}

#[derive(Debug, Args)]
pub struct SnapshotArgs {
    /// Files and directories to back up.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Tag the snapshot (repeatable).
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    /// Host name to record (default: this machine's).
    #[arg(long)]
    pub host: Option<String>,
}

#[derive(Debug, Args)]
pub struct LsArgs {
    /// Snapshot id, unique id prefix, or "latest".
    pub snapshot: String,
    /// Path inside the snapshot to list.
    pub path: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// Snapshot id, unique id prefix, or "latest"; SNAPSHOT:PATH restores a part.
    pub snapshot: String,
    /// Directory to restore into.
    #[arg(long, short = 't')]
    pub target: PathBuf,
}

#[derive(Debug, Args)]
pub struct CatArgs {
    /// What to print: config, snapshot, tree, keys.
    pub what: String,
    /// Id (or unique prefix / "latest" for snapshots).
    pub id: Option<String>,
}
