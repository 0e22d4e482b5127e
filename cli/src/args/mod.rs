//! What the user typed: clap derives only, no logic.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

mod data;
mod extra;
mod keys;
mod maintenance;
mod serve;

pub use data::*;
pub use extra::*;
pub use keys::*;
pub use maintenance::*;
pub use serve::*;

/// Cairn: encrypted, deduplicating backups.
#[derive(Debug, Parser)]
#[command(name = "cairn", version = crate::version(), about, long_about = None, args_override_self = true)]
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
    /// (path-style, self-hosted stores), s3://BUCKET[/PREFIX] (AWS, virtual-hosted style) or
    /// rest:https://HOST[:PORT]/REPO (a `cairn serve` server).
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
    /// Bearer token for a rest: repository, from this file (first line); or set
    /// CAIRN_SERVER_TOKEN.
    #[arg(long, env = "CAIRN_SERVER_TOKEN_FILE", global = true, value_name = "FILE")]
    pub server_token_file: Option<PathBuf>,
    /// Client certificate (PEM) for a rest: repository that authenticates by mutual TLS.
    #[arg(long, env = "CAIRN_TLS_CLIENT_CERT", global = true, value_name = "FILE")]
    pub tls_client_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, env = "CAIRN_TLS_CLIENT_KEY", global = true, value_name = "FILE")]
    pub tls_client_key: Option<PathBuf>,
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
    /// Open the repository with this key file (from `cairn key add --new-key-file`): no
    /// password, no slow key derivation; for unattended jobs. It must be this user's, with no
    /// group or other permissions (e.g. mode 0600).
    #[arg(long, env = "CAIRN_KEY_FILE", global = true, value_name = "PATH")]
    pub key_file: Option<PathBuf>,
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
    /// Serve repositories over HTTPS to identities with per-repository permissions.
    Serve(ServeArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completion(CompletionArgs),
    /// Write man pages (cairn.1 and one per command) into a directory.
    Man(ManArgs),
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
