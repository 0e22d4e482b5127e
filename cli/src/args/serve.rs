//! Arguments of `cairn serve` and its helpers.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::{parse_duration, parse_size};

/// `cairn serve`: without a subcommand, run the server.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ServeArgs {
    #[command(subcommand)]
    pub action: Option<ServeAction>,
    #[command(flatten)]
    pub run: ServeRunArgs,
}

#[derive(Debug, Subcommand)]
pub enum ServeAction {
    /// Add an identity with a new bearer token (printed once; only its hash is stored), or
    /// authenticated by a client certificate.
    AddIdentity(AddIdentityArgs),
    /// Give an identity permissions on a repository (replacing what it had there).
    Grant(GrantArgs),
    /// Set how many bytes a repository may hold (`*`: every repository without its own
    /// quota); `none` removes the quota. Identities that may not delete are refused beyond it.
    SetQuota(SetQuotaArgs),
    /// Verify the server log's chain: report every edited, deleted, reordered or cut line.
    VerifyLog(VerifyLogArgs),
}

#[derive(Debug, Args)]
pub struct ServeRunArgs {
    /// Where the repositories are: a directory holding one directory per repository, or an
    /// s3: URL under which each repository is a prefix (the global S3 options apply).
    #[arg(long, value_name = "LOCATION", required = false)]
    pub storage: Option<PathBuf>,
    /// The address to listen on.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8443")]
    pub listen: SocketAddr,
    /// The identities file (TOML), read again on SIGHUP.
    #[arg(long, value_name = "FILE")]
    pub identities: Option<PathBuf>,
    /// The server log: one chained JSON line per request that changes state or is refused.
    #[arg(long, value_name = "FILE")]
    pub log: Option<PathBuf>,
    /// The key of the log's MACs (made on first start; default: the log's path and .key).
    #[arg(long, value_name = "FILE")]
    pub log_key: Option<PathBuf>,
    /// The server's certificate chain (PEM), read again on SIGHUP.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The server's private key (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// CA certificates (PEM) whose client certificates authenticate identities (mutual TLS).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub client_ca: Option<PathBuf>,
    /// The largest request body (a pack): larger uploads are refused with 413.
    #[arg(long, value_name = "SIZE", value_parser = parse_size, default_value = "512MiB")]
    pub max_body: u64,
    /// Request and response bodies held in memory at once; transfers beyond it wait.
    #[arg(long, alias = "upload-memory", value_name = "SIZE", value_parser = parse_size, default_value = "1GiB")]
    pub body_memory: u64,
    /// Connections served at once; more wait to be accepted.
    #[arg(long, value_name = "N", default_value_t = 512)]
    pub max_connections: usize,
    /// Connections served at once from one client address (0: no limit); more are closed.
    /// Leave it at 0 behind a load balancer, whose address every client shares.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub max_connections_per_address: usize,
    /// Time a client has for the TLS handshake and a request's headers.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "10s")]
    pub header_timeout: std::time::Duration,
    /// Time a request body may go without sending a byte, and an answer without the client
    /// taking one.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "30s")]
    pub body_timeout: std::time::Duration,
    /// Requests per second per identity (0: no limit); bursts of two seconds' worth pass.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub rate_limit: u32,
}

#[derive(Debug, Args)]
pub struct AddIdentityArgs {
    /// Its name, as the server log records it.
    pub name: String,
    /// The identities file (created if missing).
    #[arg(long, value_name = "FILE")]
    pub identities: PathBuf,
    /// Permissions on a repository: REPO=PERM[,PERM...] with read, append, delete, keys,
    /// admin (repeatable).
    #[arg(long = "repository", value_name = "REPO=PERMS")]
    pub repositories: Vec<String>,
    /// Authenticate by this client certificate (PEM) instead of a token.
    #[arg(long, value_name = "FILE")]
    pub certificate: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct GrantArgs {
    /// The identity.
    pub name: String,
    /// REPO=PERM[,PERM...]; an empty list (REPO=) takes every permission on REPO away.
    pub grant: String,
    /// The identities file.
    #[arg(long, value_name = "FILE")]
    pub identities: PathBuf,
}

#[derive(Debug, Args)]
pub struct SetQuotaArgs {
    /// The repository, or `*`.
    pub repository: String,
    /// A size (bytes, or K, M, G, T: powers of 1024), or `none`.
    pub size: String,
    /// The identities file (the quotas live in it, read again on SIGHUP).
    #[arg(long, value_name = "FILE")]
    pub identities: PathBuf,
}

#[derive(Debug, Args)]
pub struct VerifyLogArgs {
    /// The server log.
    pub log: PathBuf,
    /// Its key (default: the log's path and .key).
    #[arg(long, value_name = "FILE")]
    pub log_key: Option<PathBuf>,
}
