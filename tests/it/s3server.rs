//! A real S3-compatible server for the tests: `s3s-fs` on loopback, started once per test
//! process and stopped when the process ends, with a TLS front (a certificate from a private CA
//! made here with rcgen) and, for the fault tests, a proxy that fails requests on purpose.
//!
//! `s3s-fs` keeps each object as a plain file under `ROOT/BUCKET/KEY`, so a repository on it
//! can be inspected and damaged through the file system like a local one.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use cairn_engine::storage::Storage;
use cairn_engine::storage::s3::{AwsSettings, Credentials, S3Location, S3Options, S3Storage};
use tempfile::TempDir;

pub const ACCESS_KEY: &str = "AKIDCAIRNTEST";
pub const SECRET_KEY: &str = "cairn-test-secret-key";

/// The server shared by every test of this process.
pub struct S3Server {
    _dir: TempDir,
    /// The directory holding one sub-directory per bucket.
    pub root: PathBuf,
    /// s3s-fs itself, plain http.
    pub http: SocketAddr,
    /// The TLS front.
    pub tls: SocketAddr,
    /// The CA that signed the TLS front's certificate (PEM), for `--cacert`.
    pub ca_pem: PathBuf,
    _server: Child,
    _runtime: tokio::runtime::Runtime,
}

static SERVER: OnceLock<S3Server> = OnceLock::new();
static BUCKETS: AtomicU64 = AtomicU64::new(0);

/// The shared server, started on first use.
pub fn s3() -> &'static S3Server {
    SERVER.get_or_init(S3Server::start)
}

/// Where the `s3s-fs` binary is: `$CAIRN_S3S_FS`, `PATH`, or where `scripts/setup.sh` puts it.
fn s3s_fs_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("CAIRN_S3S_FS") {
        return PathBuf::from(p);
    }
    let mut candidates: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join("s3s-fs")).collect())
        .unwrap_or_default();
    if let Some(home) = std::env::var_os("HOME") {
        candidates.push(Path::new(&home).join(".cache/cairn-tools/bin/s3s-fs"));
    }
    candidates.into_iter().find(|p| p.is_file()).unwrap_or_else(|| {
        panic!("s3s-fs not found: run scripts/setup.sh (it installs s3s-fs 0.14.1) or set CAIRN_S3S_FS")
    })
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn wait_for(addr: SocketAddr, child: &mut Child) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return true;
        }
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

impl S3Server {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("data");
        std::fs::create_dir_all(&root).unwrap();
        let bin = s3s_fs_binary();
        let (server, http) = (0..5)
            .find_map(|_| {
                let port = free_port();
                // The shell holds the server; when this process ends its stdin closes, `read`
                // returns and the server is killed: no server outlives the tests.
                let mut child = Command::new("sh")
                    .arg("-c")
                    .arg(r#"bin=$1; shift; "$bin" "$@" </dev/null & pid=$!; read -r _; kill $pid 2>/dev/null; wait"#)
                    .arg("sh")
                    .arg(&bin)
                    .args(["--host", "127.0.0.1", "--port", &port.to_string()])
                    .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
                    .arg(&root)
                    .stdin(Stdio::piped())
                    .stdout(Stdio::null())
                    .stderr(std::fs::File::create(dir.path().join("s3s-fs.log")).unwrap())
                    .spawn()
                    .unwrap();
                let addr: SocketAddr = ([127, 0, 0, 1], port).into();
                if wait_for(addr, &mut child) {
                    Some((child, addr))
                } else {
                    let _ = child.kill();
                    None
                }
            })
            .expect("s3s-fs did not start");
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let ca_pem = dir.path().join("ca.pem");
        let tls = runtime.block_on(tls_front(http, &ca_pem));
        S3Server { _dir: dir, root, http, tls, ca_pem, _server: server, _runtime: runtime }
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

    /// A storage for `url` with `opts`.
    pub fn storage_with(&self, url: &str, opts: &S3Options) -> Arc<dyn Storage> {
        Arc::new(S3Storage::open(S3Location::parse(url).unwrap(), opts, &credentials()).unwrap())
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
        region: Some("us-east-1".into()),
        source: "tests".into(),
    }
}

static ACCESS_KEY_SECRET: std::sync::LazyLock<zeroize::Zeroizing<String>> =
    std::sync::LazyLock::new(|| zeroize::Zeroizing::new(SECRET_KEY.to_string()));

/// Starts a TLS listener on loopback that forwards every connection to `upstream`; writes the
/// CA certificate to `ca_pem`. The server certificate names `localhost` and `127.0.0.1`.
async fn tls_front(upstream: SocketAddr, ca_pem: &Path) -> SocketAddr {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, "cairn test CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    std::fs::write(ca_pem, ca.pem()).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &ca)
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone(), ca.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { continue };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                let Ok(mut up) = tokio::net::TcpStream::connect(upstream).await else { return };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut up).await;
            });
        }
    });
    addr
}

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
