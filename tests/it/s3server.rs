//! A real S3-compatible server for the tests: s3s-fs on loopback (`tests/s3-server`, built by
//! `scripts/setup.sh`), started once per test process and gone when the process ends, over
//! plain http and over TLS with a certificate from a private CA made here with rcgen. For the
//! fault tests, a proxy that fails requests on purpose.
//!
//! s3s-fs keeps each object as a plain file under `ROOT/BUCKET/KEY`, so a repository on it
//! can be inspected and damaged through the file system like a local one.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use cairn_engine::storage::Storage;
use cairn_engine::storage::s3::{AwsSettings, Credentials, S3Location, S3Options, S3Storage};
use cairn_engine::storage::{RetryPolicy, Retrying};
use tempfile::TempDir;

pub const ACCESS_KEY: &str = "AKIDCAIRNTEST";
pub const SECRET_KEY: &str = "cairn-test-secret-key";

/// The server shared by every test of this process.
pub struct S3Server {
    _dir: TempDir,
    /// The directory holding one sub-directory per bucket.
    pub root: PathBuf,
    /// The plain http listener.
    pub http: SocketAddr,
    /// The TLS listener.
    pub tls: SocketAddr,
    /// The CA that signed the server's certificate (PEM), for `--cacert`.
    pub ca_pem: PathBuf,
    /// Holding its stdin open keeps the server running.
    _server: Child,
}

static SERVER: OnceLock<S3Server> = OnceLock::new();
static BUCKETS: AtomicU64 = AtomicU64::new(0);

/// The shared server, started on first use.
pub fn s3() -> &'static S3Server {
    SERVER.get_or_init(S3Server::start)
}

/// Where the server binary is: `$CAIRN_S3_SERVER`, or where `scripts/setup.sh` builds it.
fn server_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("CAIRN_S3_SERVER") {
        return PathBuf::from(p);
    }
    let mut candidates = Vec::new();
    if let Some(t) = std::env::var_os("CARGO_TARGET_DIR") {
        candidates.push(Path::new(&t).join("release/cairn-s3-server"));
    }
    if let Some(home) = std::env::var_os("HOME") {
        candidates.push(Path::new(&home).join(".cache/cairn-target/release/cairn-s3-server"));
    }
    candidates.into_iter().find(|p| p.is_file()).unwrap_or_else(|| {
        panic!(
            "the test S3 server is not built: run scripts/setup.sh (it builds tests/s3-server) or set CAIRN_S3_SERVER"
        )
    })
}

/// A CA and a server certificate for `localhost` and `127.0.0.1` signed by it, as PEM files.
fn make_certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, "cairn test CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &ca)
        .unwrap();
    let (ca_pem, cert_pem, key_pem) = (dir.join("ca.pem"), dir.join("server.pem"), dir.join("server.key"));
    std::fs::write(&ca_pem, ca.pem()).unwrap();
    std::fs::write(&cert_pem, format!("{}{}", leaf.pem(), ca.pem())).unwrap();
    std::fs::write(&key_pem, leaf_key.serialize_pem()).unwrap();
    (ca_pem, cert_pem, key_pem)
}

impl S3Server {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("data");
        std::fs::create_dir_all(&root).unwrap();
        let (ca_pem, cert_pem, key_pem) = make_certificates(dir.path());
        let mut server = Command::new(server_binary())
            .arg(&root)
            .args([ACCESS_KEY, SECRET_KEY])
            .arg(&cert_pem)
            .arg(&key_pem)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(dir.path().join("server.log")).unwrap())
            .spawn()
            .expect("cannot start the test S3 server");
        let (mut http, mut tls) = (None, None);
        for line in BufReader::new(server.stdout.take().unwrap()).lines() {
            let line = line.unwrap();
            let addr =
                |l: &str, scheme: &str| l.rsplit(&format!("{scheme}://")[..]).next().and_then(|a| a.parse().ok());
            match line.split_whitespace().next() {
                Some("http") => http = addr(&line, "http"),
                Some("https") => tls = addr(&line, "https"),
                Some("ready") => break,
                _ => {}
            }
        }
        let (Some(http), Some(tls)) = (http, tls) else { panic!("the test S3 server did not start") };
        S3Server { _dir: dir, root, http, tls, ca_pem, _server: server }
    }
    /// A new empty bucket (a directory, as s3s-fs keeps them).
    pub fn bucket(&self) -> String {
        let name = format!("t{}-{}", std::process::id(), BUCKETS.fetch_add(1, Ordering::SeqCst));
        std::fs::create_dir(self.root.join(&name)).unwrap();
        name
    }

    /// The directory holding the objects of `bucket`.
    pub fn bucket_dir(&self, bucket: &str) -> PathBuf {
        self.root.join(bucket)
    }

    /// The repository URL of `bucket` over TLS (`tls`) or plain http.
    pub fn url(&self, bucket: &str, tls: bool) -> String {
        if tls {
            format!("s3:https://localhost:{}/{bucket}", self.tls.port())
        } else {
            format!("s3:http://127.0.0.1:{}/{bucket}", self.http.port())
        }
    }

    /// Options for talking to this server.
    pub fn options(&self, tls: bool) -> S3Options {
        S3Options { insecure_http: !tls, cacert: tls.then(|| self.ca_pem.clone()), ..S3Options::default() }
    }

    /// A storage on `bucket`.
    pub fn storage(&self, bucket: &str, tls: bool) -> Arc<dyn Storage> {
        self.storage_with(&self.url(bucket, tls), &self.options(tls))
    }

    /// A storage for `url` with `opts`, with retries as the CLI has them.
    pub fn storage_with(&self, url: &str, opts: &S3Options) -> Arc<dyn Storage> {
        let s3 = Arc::new(S3Storage::open(S3Location::parse(url).unwrap(), opts, &credentials()).unwrap());
        Arc::new(Retrying::new(s3, RetryPolicy::default()))
    }

    /// The environment a `cairn` process needs to reach this server.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.to_string()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.to_string()),
            ("AWS_REGION", "us-east-1".to_string()),
        ]
    }
}

/// The test credentials.
pub fn credentials() -> AwsSettings {
    AwsSettings {
        credentials: Some(Credentials {
            access_key_id: ACCESS_KEY.into(),
            secret_access_key: ACCESS_KEY_SECRET.clone(),
            session_token: None,
        }),
        provider: None,
        region: Some("us-east-1".into()),
        source: "tests".into(),
    }
}

static ACCESS_KEY_SECRET: std::sync::LazyLock<zeroize::Zeroizing<String>> =
    std::sync::LazyLock::new(|| zeroize::Zeroizing::new(SECRET_KEY.to_string()));

/// What the fault proxy does to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Forward it.
    None,
    /// Answer 503 Slow Down without forwarding (throttling).
    SlowDown,
    /// Answer 500 Internal Error without forwarding.
    InternalError,
    /// Forward it, let the server act on it, then drop the connection before the answer:
    /// the client cannot know whether it happened.
    DropAnswer,
    /// Close the connection before reading the request.
    Reset,
}

/// An HTTP proxy on loopback in front of the server that fails requests as `plan` decides
/// (given the request's sequence number, method and path). One request per connection.
pub struct FaultProxy {
    pub addr: SocketAddr,
    /// Requests seen.
    pub requests: Arc<AtomicU64>,
    pub faults: Arc<AtomicU64>,
}

type Plan = dyn Fn(u64, &str, &str) -> Fault + Send + Sync;

impl FaultProxy {
    pub fn start(upstream: SocketAddr, plan: Arc<Plan>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(AtomicU64::new(0));
        let faults = Arc::new(AtomicU64::new(0));
        let (req, flt) = (requests.clone(), faults.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let (plan, req, flt) = (plan.clone(), req.clone(), flt.clone());
                std::thread::spawn(move || {
                    let _ = proxy_one(conn, upstream, &*plan, &req, &flt);
                });
            }
        });
        FaultProxy { addr, requests, faults }
    }

    pub fn url(&self, bucket: &str) -> String {
        format!("s3:http://127.0.0.1:{}/{bucket}", self.addr.port())
    }
}

fn proxy_one(
    client: TcpStream,
    upstream: SocketAddr,
    plan: &Plan,
    requests: &AtomicU64,
    faults: &AtomicU64,
) -> std::io::Result<()> {
    client.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(client.try_clone()?);
    let mut client = client;
    let mut head = Vec::new();
    let mut content_length = 0usize;
    let mut request_line = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        if request_line.is_empty() {
            request_line = line.clone();
        }
        if line == "\r\n" {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            content_length = v.trim().parse().unwrap_or(0);
        }
        // One request per connection: the proxy decides per request.
        if lower.starts_with("connection:") {
            continue;
        }
        head.extend_from_slice(line.as_bytes());
    }
    head.extend_from_slice(b"connection: close\r\n\r\n");
    let mut body = vec![0u8; content_length];
    reader.read_exact(&mut body)?;
    let mut parts = request_line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let n = requests.fetch_add(1, Ordering::SeqCst);
    let fault = plan(n, method, path);
    if fault != Fault::None {
        faults.fetch_add(1, Ordering::SeqCst);
    }
    let status = match fault {
        Fault::Reset => return Ok(()),
        Fault::SlowDown => Some(("503 Slow Down", "SlowDown")),
        Fault::InternalError => Some(("500 Internal Server Error", "InternalError")),
        Fault::None | Fault::DropAnswer => None,
    };
    if let Some((status, code)) = status {
        let xml = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code><Message>injected</Message></Error>"
        );
        write!(
            client,
            "HTTP/1.1 {status}\r\ncontent-type: application/xml\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{xml}",
            xml.len()
        )?;
        return client.flush();
    }
    let mut up = TcpStream::connect(upstream)?;
    up.set_nodelay(true)?;
    up.write_all(&head)?;
    up.write_all(&body)?;
    let mut answer = Vec::new();
    up.read_to_end(&mut answer)?;
    if fault == Fault::DropAnswer {
        return Ok(());
    }
    client.write_all(&answer)?;
    client.flush()
}
