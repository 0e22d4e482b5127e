//! What the user typed: clap derives only, no logic.

use std::path::PathBuf;

use cairn_engine::forget::RetentionSpan;
use clap::{Args, Parser, Subcommand};

/// Cairn: encrypted, deduplicating backups.
#[derive(Debug, Parser)]
#[command(name = "cairn", version, about, long_about = None, args_override_self = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes (listed under their own heading in each command's help).
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Global options")]
pub struct GlobalArgs {
    /// Read defaults from a profile: NAME.toml in ~/.config/cairn or /etc/cairn (or a path).
    /// Flags given on the command line win over the profile's.
    #[arg(long, env = "CAIRN_PROFILE", global = true, value_name = "NAME")]
    pub profile: Option<String>,
    /// Repository location: a local directory, s3:https://HOST[:PORT]/BUCKET[/PREFIX]
    /// (path-style, self-hosted stores) or s3://BUCKET[/PREFIX] (AWS, virtual-hosted style).
    /// S3 credentials come from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN
    /// or AWS_PROFILE.
    #[arg(short = 'r', long = "repo", env = "CAIRN_REPOSITORY", global = true)]
    pub repo: Option<PathBuf>,
    /// S3 region (default: AWS_REGION, AWS_DEFAULT_REGION, the profile's, else us-east-1).
    #[arg(long, env = "CAIRN_S3_REGION", global = true, value_name = "REGION")]
    pub s3_region: Option<String>,
    /// S3 endpoint for s3:// URLs, e.g. https://s3.eu-central-003.backblazeb2.com.
    #[arg(long, env = "CAIRN_S3_ENDPOINT", global = true, value_name = "URL")]
    pub s3_endpoint: Option<String>,
    /// Also trust the CA certificates in this PEM file (a private CA of the S3 server).
    #[arg(long, env = "CAIRN_CACERT", global = true, value_name = "FILE")]
    pub cacert: Option<PathBuf>,
    /// Allow plain http to the S3 endpoint: no transport encryption or server authentication.
    /// Repository contents stay encrypted, but credentials signatures and sizes are exposed.
    #[arg(long, global = true)]
    pub insecure_http: bool,
    /// Packs uploaded at once while the next ones are built (default: 2 local, 4 S3). Each
    /// connection holds one pack (16 MiB by default) in memory.
    #[arg(long, env = "CAIRN_STORAGE_CONNECTIONS", global = true, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=64))]
    pub storage_connections: Option<u16>,
    /// Limit uploads to this many KiB/s (averaged over objects).
    #[arg(long, env = "CAIRN_LIMIT_UPLOAD", global = true, value_name = "KIB_PER_S", value_parser = clap::value_parser!(u64).range(1..))]
    pub limit_upload: Option<u64>,
    /// Limit downloads to this many KiB/s (averaged over objects).
    #[arg(long, env = "CAIRN_LIMIT_DOWNLOAD", global = true, value_name = "KIB_PER_S", value_parser = clap::value_parser!(u64).range(1..))]
    pub limit_download: Option<u64>,
    /// Read the password from this file (first line).
    #[arg(long, env = "CAIRN_PASSWORD_FILE", global = true)]
    pub password_file: Option<PathBuf>,
    /// Run this shell command and use the first line it prints as the password.
    #[arg(long, env = "CAIRN_PASSWORD_COMMAND", global = true)]
    pub password_command: Option<String>,
    /// Open the repository with the recovery code in this file instead of a password.
    #[arg(long, global = true)]
    pub recovery_code_file: Option<PathBuf>,
    /// PKCS#11 module of an HSM slot (e.g. /usr/lib/softhsm/libsofthsm2.so). With --hsm-token
    /// and --hsm-key and no password source, the repository opens through the HSM.
    #[arg(long, env = "CAIRN_HSM_MODULE", global = true, value_name = "PATH")]
    pub hsm_module: Option<PathBuf>,
    /// Label of the token holding the HSM key.
    #[arg(long, env = "CAIRN_HSM_TOKEN", global = true, value_name = "LABEL")]
    pub hsm_token: Option<String>,
    /// Label of the AES-256 key on the token.
    #[arg(long, env = "CAIRN_HSM_KEY", global = true, value_name = "LABEL")]
    pub hsm_key: Option<String>,
    /// Read the token's user PIN from this file (first line); or set CAIRN_HSM_PIN.
    #[arg(long, env = "CAIRN_HSM_PIN_FILE", global = true, value_name = "PATH")]
    pub hsm_pin_file: Option<PathBuf>,
    /// Directory for local caches (default: $XDG_CACHE_HOME/cairn or ~/.cache/cairn).
    #[arg(long, env = "CAIRN_CACHE_DIR", global = true)]
    pub cache_dir: Option<PathBuf>,
    /// Machine-readable output: one JSON document on stdout.
    #[arg(long, global = true)]
    pub json: bool,
    /// Print only errors.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Write Prometheus text-format metrics of snapshot, forget, prune and check to this file
    /// (for node_exporter's textfile collector).
    #[arg(long, global = true, value_name = "PATH")]
    pub metrics_file: Option<PathBuf>,
    /// Take no lock: commands that only read (restore, dump, check) work on a repository they
    /// cannot write. A prune running meanwhile may delete what they read. Without the flag they
    /// go on without a lock, with a warning, when the storage refuses to store one.
    #[arg(long, global = true)]
    pub no_lock: bool,
    /// Wait this long for a conflicting lock to go away (e.g. 30s, 10m, 2h; m is minutes) before
    /// exiting 11.
    #[arg(long, global = true, value_name = "DURATION", value_parser = parse_duration, default_value = "0s")]
    pub retry_lock: std::time::Duration,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a new repository.
    Init(InitArgs),
    /// Back up files and directories into a new snapshot.
    #[command(alias = "backup")]
    Snapshot(SnapshotArgs),
    /// List snapshots.
    Snapshots(SnapshotsArgs),
    /// List the files of a snapshot.
    Ls(LsArgs),
    /// Restore a snapshot.
    Restore(RestoreArgs),
    /// Write a file of a snapshot to standard output, or a directory as a tar archive.
    Dump(DumpArgs),
    /// Serve snapshots as a read-only file system (FUSE) until Ctrl-C or umount.
    Mount(MountArgs),
    /// Show what changed between two snapshots.
    Diff(DiffArgs),
    /// Find files and directories by pattern across snapshots.
    Find(FindArgs),
    /// Remove snapshots, by id or by a retention policy.
    Forget(ForgetArgs),
    /// Remove data no snapshot uses and repack partly used packs.
    Prune(PruneArgs),
    /// Verify the repository's structure, and with --read-data every byte of it.
    Check(CheckArgs),
    /// Repair a damaged repository.
    Repair(RepairArgs),
    /// Remove stale locks (left by processes that died).
    Unlock(UnlockArgs),
    /// Print a repository object (decrypted) for debugging.
    Cat(CatArgs),
    /// Manage key slots, rotate the repository key, retire old data-key epochs.
    Key(KeyArgs),
    /// Read and verify the tamper-evident audit log.
    Audit(AuditArgs),
    /// Copy snapshots from another repository (its own keys) into this one.
    Copy(CopyArgs),
    /// Write snapshots again without the paths that match --exclude (the old ones stay unless
    /// --forget).
    Rewrite(RewriteArgs),
    /// How big snapshots are: restore size, or deduplicated data in the repository.
    Stats(StatsArgs),
    /// List the ids of the repository's objects of one kind.
    List(ListArgs),
    /// Add, remove or set the tags of snapshots (each is rewritten under a new id).
    Tag(TagArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completion(CompletionArgs),
    /// Write man pages (cairn.1 and one per command) into a directory.
    Man(ManArgs),
}

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

/// restic's snapshot filters, for commands that pick snapshots (`latest` is the newest that
/// passes them; without --host, the newest of this machine's).
#[derive(Debug, Args, Clone, Default)]
#[command(next_help_heading = "Snapshot filters")]
pub struct SnapshotFilterArgs {
    /// Only snapshots of this host (repeatable: any of them). Without it, `latest` means the
    /// newest snapshot of this machine.
    #[arg(long = "host", value_name = "HOST")]
    pub hosts: Vec<String>,
    /// Only snapshots with all of these tags (repeatable: any of the lists).
    #[arg(long = "tag", value_name = "TAG[,TAG...]")]
    pub tags: Vec<String>,
    /// Only snapshots that include this source path (repeatable: all of them).
    #[arg(long = "path", value_name = "PATH")]
    pub paths: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct SnapshotsArgs {
    #[command(flatten)]
    pub filter: SnapshotFilterArgs,
}

#[derive(Debug, Args)]
pub struct KeyArgs {
    #[command(subcommand)]
    pub command: KeyCommand,
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// List key slots: id, kind, label, created, last used (from the audit log).
    List,
    /// Add a key slot: a password, a new recovery code, or a key on an HSM token.
    Add(KeyAddArgs),
    /// Remove a key slot (never the last one that opens the repository).
    Remove(KeyRemoveArgs),
    /// Change the password of the slot the repository is opened with.
    Passwd(NewPasswordArgs),
    /// Make a new repository key and data-key epoch; re-seal every slot to it.
    Rotate(KeyRotateArgs),
    /// Show the data-key epochs and what each still seals.
    Epochs,
    /// Drop a data-key epoch from the keyring once nothing is sealed under it.
    RetireEpoch(RetireEpochArgs),
}

#[derive(Debug, Args)]
#[group(id = "slot_kind", required = true, multiple = false)]
pub struct KeyAddArgs {
    /// A password slot (new password from --new-password-file, CAIRN_NEW_PASSWORD or a prompt).
    #[arg(long, group = "slot_kind")]
    pub password: bool,
    /// A recovery-code slot: prints a new code once.
    #[arg(long, group = "slot_kind")]
    pub recovery: bool,
    /// An HSM slot (--hsm-module, --hsm-token, --hsm-key, PIN); creates the key on the token
    /// (AES-256, sensitive, non-extractable) when it does not exist.
    #[arg(long, group = "slot_kind")]
    pub hsm: bool,
    /// A label to tell the slot apart in `key list` (stored encrypted).
    #[arg(long, default_value = "")]
    pub label: String,
    /// Write a new recovery code to this file (mode 0600) instead of printing it.
    #[arg(long)]
    pub recovery_code_out: Option<PathBuf>,
    #[command(flatten)]
    pub new_password: NewPasswordArgs,
}

#[derive(Debug, Args)]
pub struct NewPasswordArgs {
    /// Read the new password from this file (first line).
    #[arg(long, env = "CAIRN_NEW_PASSWORD_FILE", value_name = "PATH")]
    pub new_password_file: Option<PathBuf>,
    /// Argon2id memory in KiB for the new password (default: 65536).
    #[arg(long, value_name = "KIB")]
    pub kdf_memory: Option<u32>,
    /// Argon2id iterations (default: calibrated to about 0.5 s on this machine).
    #[arg(long, value_name = "N")]
    pub kdf_iterations: Option<u32>,
}

#[derive(Debug, Args)]
pub struct KeyRemoveArgs {
    /// Slot id or unique prefix.
    pub id: String,
    /// Allow removing the slot this command opened the repository with.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct KeyRotateArgs {
    /// Then re-encrypt everything sealed under older epochs and retire them.
    #[arg(long)]
    pub reencrypt: bool,
}

#[derive(Debug, Args)]
pub struct RetireEpochArgs {
    /// The epoch to drop.
    pub epoch: u32,
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    #[command(subcommand)]
    pub command: AuditCommand,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Print the audit log, oldest first.
    Log,
    /// Prove the chain is whole and agrees with the repository; exits 1 when it does not.
    Verify,
}

#[derive(Debug, Args)]
pub struct ForgetArgs {
    /// Snapshots to remove (ids or unique prefixes). Without ids, the --keep-* policy decides.
    pub snapshots: Vec<String>,
    /// Keep the N newest snapshots of each group.
    #[arg(long, value_name = "N")]
    pub keep_last: Option<u32>,
    /// Keep the newest snapshot of each of the N newest hours that have one.
    #[arg(long, value_name = "N")]
    pub keep_hourly: Option<u32>,
    /// Keep the newest snapshot of each of the N newest days (UTC) that have one.
    #[arg(long, value_name = "N")]
    pub keep_daily: Option<u32>,
    /// Keep the newest snapshot of each of the N newest ISO weeks that have one.
    #[arg(long, value_name = "N")]
    pub keep_weekly: Option<u32>,
    /// Keep the newest snapshot of each of the N newest months that have one.
    #[arg(long, value_name = "N")]
    pub keep_monthly: Option<u32>,
    /// Keep the newest snapshot of each of the N newest years that have one.
    #[arg(long, value_name = "N")]
    pub keep_yearly: Option<u32>,
    /// Keep every snapshot within SPAN of the group's newest: years, months, days, hours as
    /// restic writes them (`1y5m7d2h`; m is months), in the UTC calendar.
    #[arg(long, value_name = "SPAN")]
    pub keep_within: Option<RetentionSpan>,
    /// Keep the newest snapshot of each hour within SPAN of the group's newest.
    #[arg(long, value_name = "SPAN")]
    pub keep_within_hourly: Option<RetentionSpan>,
    /// Keep the newest snapshot of each day within SPAN of the group's newest.
    #[arg(long, value_name = "SPAN")]
    pub keep_within_daily: Option<RetentionSpan>,
    /// Keep the newest snapshot of each week within SPAN of the group's newest.
    #[arg(long, value_name = "SPAN")]
    pub keep_within_weekly: Option<RetentionSpan>,
    /// Keep the newest snapshot of each month within SPAN of the group's newest.
    #[arg(long, value_name = "SPAN")]
    pub keep_within_monthly: Option<RetentionSpan>,
    /// Keep the newest snapshot of each year within SPAN of the group's newest.
    #[arg(long, value_name = "SPAN")]
    pub keep_within_yearly: Option<RetentionSpan>,
    /// Keep snapshots with all of these tags (repeatable: any of the lists).
    #[arg(long = "keep-tag", value_name = "TAG[,TAG...]")]
    pub keep_tags: Vec<String>,
    /// Days, weeks, months and years (and --keep-within spans) on this machine's local
    /// calendar (TZ, /etc/localtime) instead of UTC.
    #[arg(long)]
    pub local_time: bool,
    /// Group snapshots by these (comma-separated: host, paths, tags; empty for one group).
    #[arg(long, value_delimiter = ',', default_value = "host,paths")]
    pub group_by: Vec<String>,
    #[command(flatten)]
    pub filter: SnapshotFilterArgs,
    /// Show what would be removed, remove nothing.
    #[arg(long, short = 'n')]
    pub dry_run: bool,
    /// Run prune afterwards.
    #[arg(long)]
    pub prune: bool,
    #[command(flatten)]
    pub prune_opts: PruneOpts,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Show the plan (packs to delete and repack, bytes freed), change nothing.
    #[arg(long, short = 'n')]
    pub dry_run: bool,
    #[command(flatten)]
    pub opts: PruneOpts,
}

/// Options shared by `prune` and `forget --prune`.
#[derive(Debug, Args, Clone)]
pub struct PruneOpts {
    /// Repack packs whose unused share exceeds this percentage.
    #[arg(long, value_name = "PERCENT", default_value_t = 5.0)]
    pub max_unused: f64,
    /// Repack at most this much (bytes, or with K, M, G, T).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub max_repack_size: Option<u64>,
    /// Re-encrypt every pack and object sealed under this data-key epoch (after `key rotate`),
    /// so `key retire-epoch` can drop it.
    #[arg(long, value_name = "EPOCH")]
    pub reencrypt_epoch: Option<u32>,
    /// Delete unreferenced packs at once instead of marking them for a later prune. Unsafe
    /// when the storage may hide objects or another backup may be writing: only for a
    /// repository nothing else uses.
    #[arg(long)]
    pub instant_delete: bool,
    /// How long a pack stays marked before a later prune that still finds it unreferenced
    /// deletes it (e.g. 24h, 7days).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "24h")]
    pub grace_period: std::time::Duration,
    /// Record in the audit log that these snapshots (ids or unique prefixes, comma-separated or
    /// repeated), which the log says exist but the repository no longer shows, are gone for
    /// good; prune refuses to run while such snapshots are unaccounted for.
    #[arg(long, value_name = "ID", value_delimiter = ',')]
    pub accept_missing: Vec<String>,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Also read every pack (or a subset) and verify every blob.
    #[arg(long)]
    pub read_data: bool,
    /// Read only a part of the packs: N/T (the N-th of T slices, deterministic) or P% (random).
    #[arg(long, value_name = "N/T|P%")]
    pub read_data_subset: Option<String>,
}

#[derive(Debug, Args)]
pub struct RepairArgs {
    #[command(subcommand)]
    pub what: RepairWhat,
}

#[derive(Debug, Subcommand)]
pub enum RepairWhat {
    /// Rebuild the index from the headers of the packs (after a lost or damaged index segment).
    Index,
    /// Rewrite snapshots that use missing data: each damaged file or directory becomes an empty
    /// NAME.cairn-damaged file, everything intact stays restorable. Run `repair index` first.
    Snapshots,
}

#[derive(Debug, Args)]
pub struct UnlockArgs {
    /// Remove every lock, live ones too (only when you know no other cairn runs).
    #[arg(long)]
    pub remove_all: bool,
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
pub struct CatArgs {
    /// What to print: config, snapshot, tree, keys.
    pub what: String,
    /// Id (or unique prefix / "latest" for snapshots).
    pub id: Option<String>,
}

/// Parses a size: bytes, or a number with a unit (K, M, G, T, with or without `B` or `iB`;
/// powers of 1024 either way, as restic).
pub fn parse_size(s: &str) -> Result<u64, String> {
    parse_size::Config::new()
        .with_binary()
        .parse_size(s.trim())
        .map_err(|e| format!("not a size: {s:?} ({e}); use bytes or K, M, G, T"))
}

/// Parses a UTC time (`YYYY-MM-DD HH:MM:SS`, `YYYY-MM-DDTHH:MM:SS[Z]` or `YYYY-MM-DD`) into ns
/// since the epoch.
pub fn parse_time(s: &str) -> Result<i64, String> {
    let t = s.trim();
    let civil = t.strip_suffix('Z').unwrap_or(t);
    let parsed = civil
        .parse::<jiff::civil::DateTime>()
        .or_else(|_| civil.parse::<jiff::civil::Date>().map(|d| d.to_datetime(jiff::civil::Time::midnight())))
        .map_err(|e| format!("not a time: {s:?} ({e}); use YYYY-MM-DD HH:MM:SS (UTC)"))?;
    let ts =
        parsed.to_zoned_datetime(jiff::tz::TimeZone::UTC).map_err(|e| format!("not a time: {s:?} ({e})"))?.timestamp();
    i64::try_from(ts.as_nanosecond()).map_err(|_| format!("{s:?} is outside the years 1678 to 2262"))
}

/// Parses a duration: a number with units (`30s`, `10m`, `2h`, `1h30m`, `7days`; m is
/// minutes, as in restic's --retry-lock); a bare number is seconds.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let t = s.trim();
    if let Ok(secs) = t.parse::<u64>() {
        return Ok(std::time::Duration::from_secs(secs));
    }
    humantime::parse_duration(t).map_err(|e| format!("not a duration: {s:?} ({e}); e.g. 30s, 10m, 2h, 7d"))
}

#[cfg(test)]
mod tests {
    use super::{parse_duration, parse_size};
    use std::time::Duration;

    #[test]
    fn sizes_parse_with_binary_suffixes() {
        assert_eq!(parse_size("123"), Ok(123));
        assert_eq!(parse_size("10K"), Ok(10 << 10));
        assert_eq!(parse_size("1.5M"), Ok(3 << 19));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_size("2GB"), Ok(2 << 30));
        assert_eq!(parse_size("1t"), Ok(1 << 40));
        assert!(parse_size("12Q").is_err());
        assert!(parse_size("-1").is_err());
        assert!(parse_size("M").is_err());
    }

    #[test]
    fn times_parse_as_utc() {
        use super::parse_time;
        assert_eq!(parse_time("2009-02-13 23:31:30"), Ok(1_234_567_890_000_000_000));
        assert_eq!(parse_time("2009-02-13T23:31:30Z"), Ok(1_234_567_890_000_000_000));
        assert_eq!(parse_time("1970-01-02"), Ok(86_400_000_000_000));
        assert!(parse_time("yesterday").is_err());
        assert!(parse_time("3000-01-01").is_err());
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("2d"), Ok(Duration::from_secs(172_800)));
        assert_eq!(parse_duration("7days"), Ok(Duration::from_secs(604_800)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("").is_err());
    }
}
