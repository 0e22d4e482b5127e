//! Arguments of copy, rewrite, stats, list, tag, and the completion and man page generators.

use std::path::PathBuf;

use clap::Args;

use super::SnapshotFilterArgs;

#[derive(Debug, Args)]
#[group(id = "from_secret", required = true, multiple = false)]
pub struct CopyArgs {
    /// Snapshots of the source to copy (ids, prefixes, `latest`); default: every one the
    /// filters pass. Those the destination has already are skipped.
    pub snapshots: Vec<String>,
    /// The repository to copy from (a directory or an s3: URL, as -r).
    #[arg(long, value_name = "REPO")]
    pub from_repo: PathBuf,
    /// Read the source's password from this file (first line).
    #[arg(long, value_name = "FILE", group = "from_secret")]
    pub from_password_file: Option<PathBuf>,
    /// Run this shell command for the source's password (first line printed).
    #[arg(long, value_name = "COMMAND", group = "from_secret")]
    pub from_password_command: Option<String>,
    /// Open the source with the recovery code in this file.
    #[arg(long, value_name = "FILE", group = "from_secret")]
    pub from_recovery_code_file: Option<PathBuf>,
    /// Open the source with this key file.
    #[arg(long, value_name = "FILE", group = "from_secret")]
    pub from_key_file: Option<PathBuf>,
    #[command(flatten)]
    pub filter: SnapshotFilterArgs,
}

#[derive(Debug, Args)]
pub struct RewriteArgs {
    /// Snapshots to rewrite (ids, prefixes, `latest`); without any, every one the filters pass
    /// (at least one filter is then needed).
    pub snapshots: Vec<String>,
    /// Leave out paths matching this pattern, as `snapshot --exclude` (repeatable).
    #[arg(long = "exclude", short = 'e', value_name = "PATTERN")]
    pub excludes: Vec<String>,
    /// Read exclude patterns from this file, one per line (repeatable).
    #[arg(long = "exclude-file", value_name = "FILE")]
    pub exclude_files: Vec<PathBuf>,
    /// Remove the original snapshots once their rewrites are written.
    #[arg(long)]
    pub forget: bool,
    /// Show what would be left out, write nothing.
    #[arg(long, short = 'n')]
    pub dry_run: bool,
    #[command(flatten)]
    pub filter: SnapshotFilterArgs,
}

#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Snapshots to count (ids, prefixes, `latest`); default: every one the filters pass.
    pub snapshots: Vec<String>,
    /// What to count.
    #[arg(long, value_enum, default_value_t = StatsModeArg::RestoreSize)]
    pub mode: StatsModeArg,
    #[command(flatten)]
    pub filter: SnapshotFilterArgs,
}

/// `stats --mode` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StatsModeArg {
    /// Files and bytes a restore of each snapshot writes.
    RestoreSize,
    /// Distinct blobs (file content and trees) the snapshots use: plaintext and stored bytes.
    Raw,
    /// Distinct file content the snapshots use.
    Blobs,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// What to list.
    #[arg(value_enum)]
    pub kind: ListKind,
}

/// `cairn list` kinds: object kinds in the repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ListKind {
    /// Packs (data/).
    Packs,
    /// Index segments (index/).
    Index,
    /// Snapshots (snapshots/).
    Snapshots,
    /// Key slots (keys/).
    Keys,
    /// Locks (locks/).
    Locks,
}

#[derive(Debug, Args)]
#[group(id = "tag_change", required = true, multiple = true)]
pub struct TagArgs {
    /// Snapshots to change (ids, prefixes or `latest`); without any, every snapshot that passes
    /// the filters (at least one filter is then needed).
    pub snapshots: Vec<String>,
    /// Add these tags (repeatable; `a,b` is two).
    #[arg(long, value_name = "TAG[,TAG...]", group = "tag_change")]
    pub add: Vec<String>,
    /// Remove these tags (repeatable).
    #[arg(long, value_name = "TAG[,TAG...]", group = "tag_change")]
    pub remove: Vec<String>,
    /// Replace the tags with these (repeatable; `--set ''` removes every tag).
    #[arg(long, value_name = "TAG[,TAG...]", group = "tag_change", conflicts_with_all = ["add", "remove"])]
    pub set: Vec<String>,
    #[command(flatten)]
    pub filter: SnapshotFilterArgs,
}

#[derive(Debug, Args)]
pub struct CompletionArgs {
    /// The shell: `cairn completion bash > /etc/bash_completion.d/cairn`.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Where to write the pages (e.g. /usr/local/share/man/man1).
    #[arg(long, value_name = "DIR")]
    pub out_dir: PathBuf,
}
