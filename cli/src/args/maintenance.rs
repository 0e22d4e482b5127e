//! Arguments of the commands that keep a repository in shape: forget, prune, check, repair,
//! unlock.

use cairn_engine::forget::RetentionSpan;
use clap::{Args, Subcommand};

use super::{SnapshotFilterArgs, parse_duration, parse_size};

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
    /// Unused data the repository may keep, as a percentage of what it stores: partly used
    /// packs are repacked, most wasteful first, until the rest is within it (0: repack every
    /// partly used pack).
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
