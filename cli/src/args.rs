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
    /// Write a file of a snapshot to standard output, or a directory as a tar archive.
    Dump(DumpArgs),
    /// Show what changed between two snapshots.
    Diff(DiffArgs),
    /// Find files and directories by pattern across snapshots.
    Find(FindArgs),
    /// Print a repository object (decrypted) for debugging.
    Cat(CatArgs),
}

#[derive(Debug, Args)]
pub struct DumpArgs {
    /// Snapshot id, unique id prefix, or "latest".
    pub snapshot: String,
    /// Path inside the snapshot.
    pub path: PathBuf,
    /// Write a directory (or a file) as an archive of this format.
    #[arg(long, value_enum)]
    pub archive: Option<ArchiveArg>,
    /// Write to this file instead of standard output.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// `--archive` formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ArchiveArg {
    /// POSIX tar with GNU long names and PAX records (xattrs, nanosecond mtimes).
    Tar,
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The older snapshot.
    pub first: String,
    /// The newer snapshot.
    pub second: String,
    /// Leave out entries whose only change is metadata (mode, owner, times, xattrs).
    #[arg(long)]
    pub content_only: bool,
}

#[derive(Debug, Args)]
pub struct FindArgs {
    /// gitignore-style patterns: `*.conf` matches names anywhere, `/etc/**/ssh*` is anchored.
    #[arg(required = true)]
    pub patterns: Vec<String>,
    /// Search only these snapshots (repeatable; default: all).
    #[arg(long = "snapshot", short = 's', value_name = "SNAPSHOT")]
    pub snapshots: Vec<String>,
    /// Search only snapshots of this host.
    #[arg(long)]
    pub host: Option<String>,
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
    #[arg(required_unless_present_any = ["stdin", "stdin_from_command"])]
    pub paths: Vec<PathBuf>,
    /// Leave out paths matching this gitignore-style pattern (repeatable; `!` re-includes,
    /// a leading `/` anchors at the file system root, a trailing `/` matches directories).
    #[arg(long = "exclude", short = 'e', value_name = "PATTERN")]
    pub excludes: Vec<String>,
    /// Read exclude patterns from this file, one per line, `#` comments (repeatable).
    #[arg(long = "exclude-file", value_name = "FILE")]
    pub exclude_files: Vec<PathBuf>,
    /// Leave out directories that contain a file of this name; NAME:HEADER also requires the
    /// file to start with HEADER (repeatable).
    #[arg(long = "exclude-if-present", value_name = "NAME[:HEADER]")]
    pub exclude_if_present: Vec<String>,
    /// Leave out directories marked as caches by a CACHEDIR.TAG file.
    #[arg(long)]
    pub exclude_caches: bool,
    /// Stay on the file system of each source path (mount points are stored empty).
    #[arg(long, short = 'x')]
    pub one_file_system: bool,
    /// Leave out files larger than SIZE (bytes, or with a K, M, G or T suffix).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub exclude_larger_than: Option<u64>,
    /// Back up standard input as one file instead of paths.
    #[arg(long, conflicts_with_all = ["paths", "stdin_from_command"])]
    pub stdin: bool,
    /// Run this shell command and back up what it prints as one file; the snapshot fails
    /// (and is not written) if the command exits non-zero.
    #[arg(long, value_name = "COMMAND", conflicts_with = "paths")]
    pub stdin_from_command: Option<String>,
    /// The file name given to standard input in the snapshot.
    #[arg(long, value_name = "NAME", default_value = "stdin")]
    pub stdin_filename: String,
    /// Tag the snapshot (repeatable).
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    /// Host name to record (default: this machine's).
    #[arg(long)]
    pub host: Option<String>,
    /// Compare with this snapshot instead of the latest one of the same host and paths.
    #[arg(long, value_name = "SNAPSHOT", conflicts_with = "force")]
    pub parent: Option<String>,
    /// Read every file again, even those unchanged since the parent snapshot.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct LsArgs {
    /// Snapshot id, unique id prefix, or "latest".
    pub snapshot: String,
    /// Path inside the snapshot to list.
    pub path: Option<PathBuf>,
    /// Show type, mode, owner, size and mtime.
    #[arg(long, short = 'l')]
    pub long: bool,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// Snapshot id, unique id prefix, or "latest"; SNAPSHOT:PATH restores a part.
    pub snapshot: String,
    /// Directory to restore into.
    #[arg(long, short = 't')]
    pub target: PathBuf,
    /// Give files the recorded uid/gid, not the ids the recorded user/group names have here.
    #[arg(long)]
    pub numeric_owner: bool,
    /// Restore inode flags such as immutable and append-only (chattr; usually needs root).
    #[arg(long)]
    pub restore_flags: bool,
    /// Restore only paths matching this gitignore-style pattern, and what is below them
    /// (repeatable; matched against the path in the snapshot, e.g. /home/ann/docs).
    #[arg(long = "include", value_name = "PATTERN")]
    pub includes: Vec<String>,
    /// Leave out paths matching this pattern (repeatable).
    #[arg(long = "exclude", short = 'e', value_name = "PATTERN")]
    pub excludes: Vec<String>,
    /// What to do with files that already exist in the target.
    #[arg(long, value_enum, default_value_t = OverwriteArg::IfChanged)]
    pub overwrite: OverwriteArg,
    /// Remove files and directories in the restored directories that the snapshot does not have.
    #[arg(long)]
    pub delete: bool,
    /// Read every written file back and check it against the snapshot.
    #[arg(long)]
    pub verify: bool,
}

/// `--overwrite` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OverwriteArg {
    /// Always replace existing files.
    Always,
    /// Replace files whose size, mtime or content differ (resumes an interrupted restore).
    IfChanged,
    /// Replace files only when the snapshot's copy is newer.
    IfNewer,
    /// Never replace existing files.
    Never,
}

#[derive(Debug, Args)]
pub struct CatArgs {
    /// What to print: config, snapshot, tree, keys.
    pub what: String,
    /// Id (or unique prefix / "latest" for snapshots).
    pub id: Option<String>,
}

/// Parses a size: bytes, or a number with a K, M, G or T suffix (powers of 1024; a trailing
/// `B` or `iB` is accepted).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let t = t.strip_suffix("iB").or_else(|| t.strip_suffix('B')).unwrap_or(t);
    let (num, mult) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let mult: u64 = match c.to_ascii_uppercase() {
                'K' => 1 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                'T' => 1 << 40,
                _ => return Err(format!("unknown size suffix in {s:?} (use K, M, G or T)")),
            };
            (&t[..i], mult)
        }
        _ => (t, 1),
    };
    let value: f64 = num.trim().parse().map_err(|_| format!("not a size: {s:?}"))?;
    if !value.is_finite() || value < 0.0 {
        return Err(format!("not a size: {s:?}"));
    }
    Ok((value * mult as f64) as u64)
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes_parse_with_binary_suffixes() {
        assert_eq!(parse_size("123"), Ok(123));
        assert_eq!(parse_size("10K"), Ok(10 << 10));
        assert_eq!(parse_size("1.5M"), Ok(3 << 19));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_size("1t"), Ok(1 << 40));
        assert!(parse_size("12Q").is_err());
        assert!(parse_size("-1").is_err());
        assert!(parse_size("M").is_err());
    }
}
