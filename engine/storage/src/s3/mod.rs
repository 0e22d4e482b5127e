//! S3-compatible object storage (AWS S3, MinIO, Ceph, Garage, Backblaze B2, Wasabi), through
//! `object_store` over rustls.
//!
//! - Create-only writes send `If-None-Match: *`, so two clients can never clobber each other's
//!   packs, snapshots, locks or audit entries.
//! - Objects above [`S3Options::multipart_threshold`] go up as multipart uploads, their parts
//!   in parallel. S3 cannot make the final `CompleteMultipartUpload` conditional through
//!   `object_store`, so a create-only multipart upload checks for the name first; only packs
//!   are that large, and a pack's name is the hash of its bytes, so the remaining race can
//!   only ever write the same bytes.
//! - Throttling, 5xx and timeouts are retried by `object_store` with exponential backoff and
//!   jitter; authentication errors never are. A put whose transfer broke is reported as
//!   retryable, for the [`crate::Retrying`] decorator the CLI puts on this backend. A
//!   create-only put refused because the name exists succeeded if the object holds the very
//!   bytes sent: an earlier attempt (inside object_store's retries) landed (names are content
//!   hashes or random, so no other writer produces the same bytes under the same name by
//!   accident).
//!
//! The engine is synchronous; each call blocks on a small private tokio runtime.

mod credentials;
mod location;
mod put;

use put::PutFailure;

pub use credentials::{AwsSettings, Credentials};
pub use location::S3Location;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;
use object_store::{
    BackoffConfig, Certificate, ClientOptions, GetOptions, GetRange, ObjectStore, ObjectStoreExt, RetryConfig,
};

use super::{PutMode, Storage, validate_name};
use cairn_format::error::{Error, Result};

/// How to reach the store; everything the URL does not say.
#[derive(Debug, Clone)]
pub struct S3Options {
    /// Region; default `AWS_REGION`/`AWS_DEFAULT_REGION`/profile, else `us-east-1`.
    pub region: Option<String>,
    /// Endpoint for `s3://` URLs (virtual-hosted style), e.g. `https://s3.eu-central-003.backblazeb2.com`.
    pub endpoint: Option<String>,
    /// A PEM file of extra CA certificates to trust (a private CA).
    pub cacert: Option<PathBuf>,
    /// Allow `http://` endpoints. Never implied: plain http must be asked for.
    pub insecure_http: bool,
    /// Objects larger than this are uploaded in parts.
    pub multipart_threshold: usize,
    /// Part size of multipart uploads (S3 needs at least 5 MiB for all parts but the last).
    pub part_size: usize,
    /// Attempts for requests that fail transiently (object_store's retries).
    pub max_retries: usize,
    /// Upper bound of one retry delay.
    pub max_backoff: Duration,
    /// Timeout of one request.
    pub request_timeout: Duration,
}

impl Default for S3Options {
    fn default() -> Self {
        S3Options {
            region: None,
            endpoint: None,
            cacert: None,
            insecure_http: false,
            multipart_threshold: 64 << 20,
            part_size: 16 << 20,
            max_retries: 10,
            max_backoff: Duration::from_secs(15),
            request_timeout: Duration::from_secs(120),
        }
    }
}

/// A repository under a bucket prefix.
#[derive(Debug)]
pub struct S3Storage {
    store: AmazonS3,
    runtime: tokio::runtime::Runtime,
    location: S3Location,
    display: String,
    multipart_threshold: usize,
    part_size: usize,
}

impl S3Storage {
    /// Connects lazily: nothing is sent until the first request. A put whose transfer broke
    /// is tried once and fails as retryable: wrap the storage in [`crate::Retrying`] (as the
    /// CLI does) to ride out dropped connections.
    pub fn open(location: S3Location, opts: &S3Options, aws: &AwsSettings) -> Result<Self> {
        if location.is_plain_http() && !opts.insecure_http {
            return Err(Error::InvalidInput(format!(
                "refusing plain http to {}: pass --insecure-http to allow unencrypted, unauthenticated transport",
                location.endpoint.as_deref().unwrap_or_default()
            )));
        }
        if aws.credentials.is_none() && aws.provider.is_none() {
            return Err(Error::InvalidInput(
                "no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE with a profile in \
                 ~/.aws/credentials or ~/.aws/config"
                    .into(),
            ));
        }
        install_crypto_provider();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("cairn-s3")
            .enable_all()
            .build()
            .map_err(|e| Error::Internal(format!("cannot start the S3 client runtime: {e}")))?;
        let mut client = ClientOptions::new()
            .with_allow_http(opts.insecure_http)
            .with_timeout(opts.request_timeout)
            .with_connect_timeout(Duration::from_secs(15));
        if let Some(path) = &opts.cacert {
            let pem = std::fs::read(path)
                .map_err(|e| Error::InvalidInput(format!("cannot read --cacert {}: {e}", path.display())))?;
            let certs = Certificate::from_pem_bundle(&pem)
                .map_err(|e| Error::InvalidInput(format!("--cacert {}: {e}", path.display())))?;
            if certs.is_empty() {
                return Err(Error::InvalidInput(format!("--cacert {}: no PEM certificate in it", path.display())));
            }
            for c in certs {
                client = client.with_root_certificate(c);
            }
        }
        let region = opts.region.clone().or_else(|| aws.region.clone()).unwrap_or_else(|| "us-east-1".into());
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(&location.bucket)
            .with_region(region)
            .with_allow_http(opts.insecure_http)
            .with_client_options(client)
            .with_retry(RetryConfig {
                backoff: BackoffConfig {
                    // object_store draws from init..next*base: init must not exceed max.
                    init_backoff: opts.max_backoff.min(Duration::from_millis(100)),
                    max_backoff: opts.max_backoff.max(Duration::from_millis(1)),
                    base: 2.0,
                },
                max_retries: opts.max_retries,
                retry_timeout: Duration::from_secs(5 * 60),
            });
        builder = match (&aws.credentials, &aws.provider) {
            (Some(creds), _) => {
                builder = builder
                    .with_access_key_id(&creds.access_key_id)
                    .with_secret_access_key(creds.secret_access_key.as_str());
                match &creds.session_token {
                    Some(token) => builder.with_token(token.as_str()),
                    None => builder,
                }
            }
            (None, Some(provider)) => {
                let sdk = runtime.block_on(credentials::SdkCredentials::new(provider.clone()))?;
                builder.with_credentials(Arc::new(sdk))
            }
            (None, None) => builder,
        };
        builder = match (&location.endpoint, &opts.endpoint) {
            (Some(endpoint), _) => builder.with_endpoint(endpoint).with_virtual_hosted_style_request(false),
            (None, Some(endpoint)) => {
                if endpoint.starts_with("http://") && !opts.insecure_http {
                    return Err(Error::InvalidInput(format!(
                        "refusing plain http to {endpoint}: pass --insecure-http to allow it"
                    )));
                }
                builder.with_endpoint(endpoint).with_virtual_hosted_style_request(true)
            }
            (None, None) => builder.with_virtual_hosted_style_request(true),
        };
        let store = builder.build().map_err(|e| Error::InvalidInput(format!("S3 configuration: {e}")))?;
        let base = match &location.endpoint {
            Some(e) => format!("s3:{e}/{}", location.bucket),
            None => format!("s3://{}", location.bucket),
        };
        let display = if location.prefix.is_empty() { base } else { format!("{base}/{}", location.prefix) };
        Ok(S3Storage {
            store,
            runtime,
            location,
            display,
            multipart_threshold: opts.multipart_threshold.max(5 << 20),
            part_size: opts.part_size.max(5 << 20),
        })
    }

    fn no_bucket(&self, op: &'static str, name: &str) -> Error {
        Error::storage(
            op,
            name,
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("bucket {:?} does not exist (create it first)", self.location.bucket),
            ),
        )
    }

    fn key(&self, name: &str) -> Result<ObjectPath> {
        validate_name(name)?;
        Ok(if self.location.prefix.is_empty() {
            ObjectPath::from(name)
        } else {
            ObjectPath::from(format!("{}/{name}", self.location.prefix))
        })
    }

    fn block_on<F: Future>(&self, f: F) -> F::Output {
        self.runtime.block_on(f)
    }
}

/// rustls needs one process-wide crypto provider; ring, as the rest of the build uses.
pub(crate) fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Fails only when another provider is installed already, which is as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// Whether retrying could help: not for answers the store gave on purpose.
fn is_definite(e: &object_store::Error) -> bool {
    matches!(
        e,
        object_store::Error::NotFound { .. }
            | object_store::Error::AlreadyExists { .. }
            | object_store::Error::Precondition { .. }
            | object_store::Error::PermissionDenied { .. }
            | object_store::Error::Unauthenticated { .. }
            | object_store::Error::InvalidPath { .. }
            | object_store::Error::NotSupported { .. }
            | object_store::Error::NotImplemented { .. }
    )
}

/// Maps a store error onto the engine's: missing objects are [`Error::Missing`], conflicts
/// carry `ErrorKind::AlreadyExists` as the local backend's do, refusals `PermissionDenied`.
fn map_err(op: &'static str, name: &str, e: object_store::Error) -> Error {
    use std::io::{Error as IoError, ErrorKind};
    let kind = match &e {
        object_store::Error::NotFound { .. } => return Error::Missing(name.to_string()),
        object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. } => {
            ErrorKind::AlreadyExists
        }
        object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. } => {
            ErrorKind::PermissionDenied
        }
        _ => ErrorKind::Other,
    };
    Error::storage(op, name, IoError::new(kind, error_chain(&e)))
}

/// The error and the sources its message does not already include, on one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string().trim_end_matches([':', ' ']).to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        let text = inner.to_string();
        let text = text.trim_end_matches([':', ' ']);
        if !text.is_empty() && !s.contains(text) {
            s.push_str(": ");
            s.push_str(text);
        }
        source = inner.source();
    }
    s
}

impl Storage for S3Storage {
    fn location(&self) -> String {
        self.display.clone()
    }

    fn put(&self, name: &str, data: &[u8], mode: PutMode) -> Result<()> {
        self.put_parts(name, &[data], mode)
    }

    fn put_parts(&self, name: &str, parts: &[&[u8]], mode: PutMode) -> Result<()> {
        let key = self.key(name)?;
        let size = parts.iter().map(|p| p.len()).sum();
        // Status errors were retried by object_store already; a broken transfer, which it
        // does not retry for create-only puts, is left to the Retrying decorator.
        self.block_on(self.put_attempt(name, &key, parts, size, mode)).map_err(|e| match e {
            PutFailure::Final(e) => e,
            PutFailure::Retry(e) => Error::Storage {
                op: "write",
                object: name.to_string(),
                retryable: true,
                source: std::io::Error::new(std::io::ErrorKind::ConnectionReset, error_chain(&e)),
            },
        })
    }

    fn get(&self, name: &str) -> Result<Vec<u8>> {
        let key = self.key(name)?;
        self.block_on(async {
            let got = self.store.get_opts(&key, GetOptions::default()).await?;
            got.bytes().await
        })
        .map(|b| b.to_vec())
        .map_err(|e| map_err("read", name, e))
    }

    fn get_range(&self, name: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        let key = self.key(name)?;
        let end = offset.checked_add(len).ok_or_else(|| Error::InvalidInput("range too large".into()))?;
        if len == 0 {
            return match self.stat(name)? {
                Some(size) if size >= offset => Ok(Vec::new()),
                Some(size) => Err(Error::corrupt(name, format!("range {offset}+0 beyond the object's {size} bytes"))),
                None => Err(Error::Missing(name.to_string())),
            };
        }
        let got = self.block_on(async {
            let opts = GetOptions { range: Some(GetRange::Bounded(offset..end)), ..GetOptions::default() };
            let got = self.store.get_opts(&key, opts).await?;
            let size = got.meta.size;
            got.bytes().await.map(|b| (b, size))
        });
        match got {
            Ok((bytes, _)) if bytes.len() as u64 == len => Ok(bytes.to_vec()),
            Ok((bytes, size)) => Err(Error::corrupt(
                name,
                format!("range {offset}+{len} beyond the object's {size} bytes (got {})", bytes.len()),
            )),
            // A range starting past the end is refused by the store (416) or by object_store.
            Err(e) if !matches!(e, object_store::Error::NotFound { .. }) && !is_transport(&e) => {
                match self.stat(name)? {
                    Some(size) if end > size => {
                        Err(Error::corrupt(name, format!("range {offset}+{len} beyond the object's {size} bytes")))
                    }
                    _ => Err(map_err("read", name, e)),
                }
            }
            Err(e) => Err(map_err("read", name, e)),
        }
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>> {
        Ok(self.list_sized(prefix)?.into_iter().map(|(name, _)| name).collect())
    }

    fn list_sized(&self, prefix: &str) -> Result<Vec<(String, u64)>> {
        let dir = prefix.trim_matches('/');
        let full = match (self.location.prefix.is_empty(), dir.is_empty()) {
            (true, true) => None,
            (true, false) => Some(ObjectPath::from(dir)),
            (false, true) => Some(ObjectPath::from(self.location.prefix.as_str())),
            (false, false) => Some(ObjectPath::from(format!("{}/{dir}", self.location.prefix))),
        };
        let strip = if self.location.prefix.is_empty() { String::new() } else { format!("{}/", self.location.prefix) };
        self.block_on(async {
            let mut stream = self.store.list(full.as_ref());
            let mut names = Vec::new();
            while let Some(meta) = stream.next().await {
                let meta = match meta {
                    Ok(m) => m,
                    Err(e)
                        if matches!(e, object_store::Error::NotFound { .. })
                            || error_chain(&e).contains("NoSuchBucket") =>
                    {
                        return Err(self.no_bucket("list", prefix));
                    }
                    Err(e) => return Err(map_err("list", prefix, e)),
                };
                let key = meta.location.to_string();
                if let Some(name) = key.strip_prefix(&strip) {
                    names.push((name.to_string(), meta.size));
                }
            }
            Ok(names)
        })
    }

    fn delete(&self, name: &str) -> Result<()> {
        let key = self.key(name)?;
        match self.block_on(self.store.delete(&key)) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(map_err("delete", name, e)),
        }
    }

    fn delete_many(&self, names: &[String]) -> Result<()> {
        let keys = names.iter().map(|n| self.key(n)).collect::<Result<Vec<_>>>()?;
        self.block_on(async {
            // object_store batches these into DeleteObjects requests of up to 1,000 keys.
            let mut results = self.store.delete_stream(futures_util::stream::iter(keys.into_iter().map(Ok)).boxed());
            while let Some(r) = results.next().await {
                match r {
                    Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => {
                        let name = match &e {
                            object_store::Error::Generic { .. } => "objects".to_string(),
                            _ => names.first().cloned().unwrap_or_default(),
                        };
                        return Err(map_err("delete", &name, e));
                    }
                }
            }
            Ok(())
        })
    }

    fn stat(&self, name: &str) -> Result<Option<u64>> {
        let key = self.key(name)?;
        match self.block_on(self.store.head(&key)) {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(map_err("stat", name, e)),
        }
    }

    fn modified(&self, name: &str) -> Result<Option<std::time::SystemTime>> {
        let key = self.key(name)?;
        match self.block_on(self.store.head(&key)) {
            Ok(meta) => {
                let ms = meta.last_modified.timestamp_millis();
                let at = u64::try_from(ms)
                    .map_or(std::time::UNIX_EPOCH, |ms| std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms));
                Ok(Some(at))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(map_err("stat", name, e)),
        }
    }
}

/// Transport-level failures (connection refused or lost, timeout, body cut short), as
/// opposed to answers from the store: object_store's `HttpError` somewhere in the chain.
fn is_transport(e: &object_store::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if err.is::<object_store::client::HttpError>() {
            return true;
        }
        source = err.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transport_failures_are_told_from_answers_by_the_http_error_in_the_chain() {
        use object_store::client::{HttpError, HttpErrorKind};
        let http = HttpError::new_boxed(HttpErrorKind::Interrupted, Box::new(std::io::Error::other("reset")));
        let wrapped: Box<dyn std::error::Error + Send + Sync> =
            Box::new(object_store::Error::Generic { store: "S3", source: Box::new(http) });
        assert!(is_transport(&object_store::Error::Generic { store: "S3", source: wrapped }));
        let answer = object_store::Error::Generic { store: "S3", source: "500 Internal Server Error".into() };
        assert!(!is_transport(&answer));
        assert!(!is_transport(&object_store::Error::NotFound { path: "x".into(), source: "404".into() }));
    }

    #[test]
    fn plain_http_needs_the_flag_and_credentials_are_required() {
        let loc = S3Location::parse("s3:http://127.0.0.1:1/bucket").unwrap();
        let aws = AwsSettings {
            credentials: Some(Credentials {
                access_key_id: "a".into(),
                secret_access_key: zeroize::Zeroizing::new("b".into()),
                session_token: None,
            }),
            ..AwsSettings::default()
        };
        let e = S3Storage::open(loc.clone(), &S3Options::default(), &aws).unwrap_err().to_string();
        assert!(e.contains("--insecure-http"), "{e}");
        let opts = S3Options { insecure_http: true, ..S3Options::default() };
        assert!(S3Storage::open(loc.clone(), &opts, &aws).is_ok());
        let e = S3Storage::open(loc, &opts, &AwsSettings::default()).unwrap_err().to_string();
        assert!(e.contains("AWS_ACCESS_KEY_ID"), "{e}");
    }
}
