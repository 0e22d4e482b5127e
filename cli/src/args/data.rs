//! Arguments of the commands that write and read snapshots: init, snapshot, snapshots, ls,
//! restore, dump, diff, find, mount, cat.

use std::path::PathBuf;

use clap::Args;

use super::{SnapshotFilterArgs, parse_size, parse_time};

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
    /// Label of the first password slot.
    #[arg(long, default_value = "password")]
    pub label: String,
    /// Chunk sizes MIN,AVG,MAX in bytes (default 524288,1048576,8388608).
    #[arg(long, value_name = "MIN,AVG,MAX")]
    pub chunk_sizes: Option<String>,
    /// Target pack size in MiB (1 to 128). Memory holds whole packs while they are built and
    /// stored: one locally, --storage-connections + 1 on S3.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=128))]
    pub pack_size: u32,
    /// zstd level, 0 to disable compression.
    #[arg(long, default_value_t = 3)]
    pub compression: i32,
}

#[derive(Debug, Args)]
pub struct SnapshotArgs {
    /// Files and directories to back up.
    #[arg(required_unless_present_any = ["stdin", "stdin_from_command", "files_from", "files_from_raw"])]
    pub paths: Vec<PathBuf>,
    /// Also back up the paths listed in this file, one per line (blank lines and `#` comments
    /// skipped; repeatable).
    #[arg(long = "files-from", value_name = "FILE", conflicts_with_all = ["stdin", "stdin_from_command"])]
    pub files_from: Vec<PathBuf>,
    /// Also back up the paths listed in this file, separated by NUL bytes (`find -print0`; any
    /// byte but NUL may be in a name; repeatable).
    #[arg(long = "files-from-raw", value_name = "FILE", conflicts_with_all = ["stdin", "stdin_from_command"])]
    pub files_from_raw: Vec<PathBuf>,
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
    /// Tag the snapshot (repeatable; `a,b` adds two tags).
    #[arg(long = "tag", value_name = "TAG[,TAG...]")]
    pub tags: Vec<String>,
    /// Host name to record (default: this machine's).
    #[arg(long)]
    pub host: Option<String>,
    /// Time to record instead of now, UTC: `2026-12-03 02:30:00` (or `2026-12-03T02:30:00Z`),
    /// e.g. when importing old backups.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub time: Option<i64>,
    /// Compare with this snapshot instead of the latest one of the same host and paths.
    #[arg(long, value_name = "SNAPSHOT", conflicts_with = "force")]
    pub parent: Option<String>,
    /// Read every file again, even those unchanged since the parent snapshot.
    #[arg(long)]
    pub force: bool,
    /// Read and chunk as a backup would, store nothing: shows what would be added.
    #[arg(long, short = 'n')]
    pub dry_run: bool,
    /// Run this shell command first; if it fails, no snapshot is made (e.g. a database dump).
    #[arg(long, value_name = "COMMAND")]
    pub run_before: Option<String>,
    /// Run this shell command afterwards, whatever the outcome, with CAIRN_EXIT_CODE and
    /// CAIRN_SNAPSHOT_ID set; its failure is reported as a warning.
    #[arg(long, value_name = "COMMAND")]
    pub run_after: Option<String>,
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
    #[command(flatten)]
    pub filter: SnapshotFilterArgs,
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
    #[command(flatten)]
    pub filter: SnapshotFilterArgs,
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
    #[command(flatten)]
    pub filter: SnapshotFilterArgs,
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
    #[command(flatten)]
    pub filter: SnapshotFilterArgs,
}

#[derive(Debug, Args)]
pub struct FindArgs {
    /// gitignore-style patterns: `*.conf` matches names anywhere, `/etc/**/ssh*` is anchored.
    #[arg(required = true)]
    pub patterns: Vec<String>,
    /// Search only these snapshots (repeatable; default: all that pass the filters).
    #[arg(long = "snapshot", short = 's', value_name = "SNAPSHOT")]
    pub snapshots: Vec<String>,
    #[command(flatten)]
    pub filter: SnapshotFilterArgs,
}

#[derive(Debug, Args)]
pub struct MountArgs {
    /// The snapshot to mount (id, unique prefix or `latest`) and the mount point; only the
    /// mount point with --all.
    #[arg(value_name = "[SNAPSHOT] MOUNTPOINT", num_args = 1..=2, required = true)]
    pub targets: Vec<PathBuf>,
    /// Mount every snapshot the filters pass: ids/ID, snapshots/TIME, hosts/HOST/TIME and
    /// tags/TAG/TIME, each with a `latest` link.
    #[arg(long)]
    pub all: bool,
    /// Let other users reach the mount (FUSE's allow_other; as a non-root user it needs
    /// user_allow_other in /etc/fuse.conf), under the owners and modes recorded. Without it
    /// only the user who mounted can enter, and reads every file.
    #[arg(long)]
    pub allow_other: bool,
    /// Memory for decrypted blobs kept for further reads (e.g. 64MiB, 1GiB; at least 24MiB).
    #[arg(long, value_name = "SIZE", value_parser = parse_size, default_value = "64MiB")]
    pub cache_size: u64,
    #[command(flatten)]
    pub filter: SnapshotFilterArgs,
}

#[derive(Debug, Args)]
pub struct CatArgs {
    /// What to print: config, snapshot, tree, keys.
    pub what: String,
    /// Id (or unique prefix / "latest" for snapshots).
    pub id: Option<String>,
}

#[derive(Debug, Args)]
pub struct SnapshotsArgs {
    #[command(flatten)]
    pub filter: SnapshotFilterArgs,
}
