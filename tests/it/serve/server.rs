//! `cairn serve` processes for the tests: the shipped binary, on loopback, over TLS with a
//! private CA made here (which also signs client certificates for mutual TLS), in front of a
//! local directory or a bucket of the test S3 server.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use cairn_engine::storage::{RestOptions, RestStorage, RetryPolicy, Retrying, Storage};
use tempfile::TempDir;

/// A CA, a server certificate for localhost and 127.0.0.1, and a client certificate.
pub struct Certificates {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

impl Certificates {
    pub fn make(dir: &Path) -> Self {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(DnType::CommonName, "cairn serve test CA");
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let leaf = |names: Vec<String>| {
            let key = KeyPair::generate().unwrap();
            let cert = CertificateParams::new(names).unwrap().signed_by(&key, &ca).unwrap();
            (cert.pem(), key.serialize_pem())
        };
        let (server_pem, server_key_pem) = leaf(vec!["localhost".into(), "127.0.0.1".into()]);
        let (client_pem, client_key_pem) = leaf(vec!["backup-host".into()]);
        let c = Certificates {
            ca: dir.join("ca.pem"),
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server.key"),
            client_cert: dir.join("client.pem"),
            client_key: dir.join("client.key"),
        };
        std::fs::write(&c.ca, ca.pem()).unwrap();
        std::fs::write(&c.server_cert, format!("{server_pem}{}", ca.pem())).unwrap();
        std::fs::write(&c.server_key, server_key_pem).unwrap();
        std::fs::write(&c.client_cert, client_pem).unwrap();
        std::fs::write(&c.client_key, client_key_pem).unwrap();
        c
    }
}

/// What the server stores repositories in.
#[derive(Clone)]
pub enum Behind {
    /// A directory per repository under this root.
    Local(PathBuf),
    /// A prefix per repository in this bucket of the test S3 server.
    S3 { bucket: String },
}

/// A running `cairn serve`.
pub struct Served {
    pub dir: TempDir,
    pub behind: Behind,
    pub addr: SocketAddr,
    pub certs: Certificates,
    pub identities: PathBuf,
    pub log: PathBuf,
    /// Tokens by identity name.
    pub tokens: BTreeMap<String, String>,
    child: Option<Child>,
    extra: Vec<String>,
    /// Shared by every test of the process (stopped when the process ends).
    shared: bool,
}

/// The `cairn` binary with no CAIRN_* variables inherited.
pub fn cairn() -> Command {
    let mut c = Command::new(assert_cmd::cargo::cargo_bin("cairn"));
    for (k, _) in std::env::vars() {
        if k.starts_with("CAIRN_") || k.starts_with("AWS_") {
            c.env_remove(k);
        }
    }
    c
}

impl Served {
    /// A server in front of a new directory, with these identities (name, grants such as
    /// `main=append`) and extra `cairn serve` flags.
    pub fn local(identities: &[(&str, &[&str])], extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("repos");
        std::fs::create_dir_all(&root).unwrap();
        Self::start(dir, Behind::Local(root), identities, extra)
    }

    /// A server in front of a new bucket of the test S3 server.
    pub fn s3(identities: &[(&str, &[&str])], extra: &[&str]) -> Self {
        let bucket = crate::s3server::s3().bucket();
        Self::start(tempfile::tempdir().unwrap(), Behind::S3 { bucket }, identities, extra)
    }

    /// Another server over the same storage, identities and certificates (a second instance
    /// behind a load balancer), with its own log.
    pub fn another_instance(&self) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut other = Served {
            behind: self.behind.clone(),
            addr: self.addr,
            certs: Certificates::make(dir.path()),
            identities: self.identities.clone(),
            log: dir.path().join("server.log"),
            tokens: self.tokens.clone(),
            child: None,
            extra: self.extra.clone(),
            shared: false,
            dir,
        };
        // The clients trust one CA: share it.
        for (from, to) in [
            (&self.certs.ca, &other.certs.ca),
            (&self.certs.server_cert, &other.certs.server_cert),
            (&self.certs.server_key, &other.certs.server_key),
        ] {
            std::fs::copy(from, to).unwrap();
        }
        other.spawn();
        other
    }

    /// A server for every test of this process (see [`Served::spawn`]).
    pub fn shared(s3: bool, identities: &[(&str, &[&str])]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let behind = if s3 {
            Behind::S3 { bucket: crate::s3server::s3().bucket() }
        } else {
            let root = dir.path().join("repos");
            std::fs::create_dir_all(&root).unwrap();
            Behind::Local(root)
        };
        Self::start_with(dir, behind, identities, &[], true)
    }

    fn start(dir: TempDir, behind: Behind, identities: &[(&str, &[&str])], extra: &[&str]) -> Self {
        Self::start_with(dir, behind, identities, extra, false)
    }

    fn start_with(dir: TempDir, behind: Behind, identities: &[(&str, &[&str])], extra: &[&str], shared: bool) -> Self {
        let certs = Certificates::make(dir.path());
        let ids = dir.path().join("identities.toml");
        let mut tokens = BTreeMap::new();
        for (name, grants) in identities {
            let mut c = cairn();
            c.args(["serve", "add-identity", name, "--identities"]).arg(&ids);
            for g in *grants {
                c.args(["--repository", g]);
            }
            let out = c.output().unwrap();
            assert!(out.status.success(), "add-identity: {}", String::from_utf8_lossy(&out.stderr));
            tokens.insert(name.to_string(), String::from_utf8(out.stdout).unwrap().trim().to_string());
        }
        let mut served = Served {
            log: dir.path().join("server.log"),
            identities: ids,
            dir,
            behind,
            addr: "127.0.0.1:0".parse().unwrap(),
            certs,
            tokens,
            child: None,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            shared,
        };
        served.spawn();
        served
    }

    fn spawn(&mut self) {
        let mut args: Vec<std::ffi::OsString> = Vec::new();
        let mut envs: Vec<(&str, String)> = Vec::new();
        let storage = match &self.behind {
            Behind::Local(root) => root.display().to_string(),
            Behind::S3 { bucket } => {
                envs.extend(crate::s3server::s3().env());
                envs.push(("AWS_EC2_METADATA_DISABLED", "true".into()));
                args.push("--insecure-http".into());
                crate::s3server::s3().url(bucket, false)
            }
        };
        for a in ["serve", "--listen", "127.0.0.1:0", "--storage", &storage] {
            args.push(a.into());
        }
        for (flag, path) in [
            ("--identities", &self.identities),
            ("--log", &self.log),
            ("--tls-cert", &self.certs.server_cert),
            ("--tls-key", &self.certs.server_key),
            ("--client-ca", &self.certs.ca),
        ] {
            args.push(flag.into());
            args.push(path.into());
        }
        args.extend(self.extra.iter().map(Into::into));
        // A server shared by a whole test process has no owner to drop it: a shell runs it
        // and stops it when the test process's end closes the shell's stdin.
        let mut c = if self.shared {
            let mut c = Command::new("sh");
            c.arg("-c").arg("\"$0\" \"$@\" <&- & pid=$!; read _; kill $pid; wait $pid");
            c.arg(assert_cmd::cargo::cargo_bin("cairn")).args(&args).stdin(Stdio::piped());
            c
        } else {
            let mut c = cairn();
            c.args(&args);
            c
        };
        for (k, _) in std::env::vars() {
            if k.starts_with("CAIRN_") || k.starts_with("AWS_") {
                c.env_remove(k);
            }
        }
        c.envs(envs).stdout(Stdio::piped()).stderr(std::fs::File::create(self.dir.path().join("stderr")).unwrap());
        let mut child = c.spawn().expect("cannot start cairn serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let Some(addr) = line.trim().strip_prefix("cairn serve: listening on https://") else {
            let _ = child.kill();
            panic!(
                "cairn serve did not start: {line:?}; stderr: {}",
                std::fs::read_to_string(self.dir.path().join("stderr")).unwrap_or_default()
            );
        };
        self.addr = addr.parse().unwrap();
        if self.shared {
            // Held open for the life of the process; never written to.
            std::mem::forget(child.stdin.take());
        }
        self.child = Some(child);
    }

    /// The pid of the server process.
    pub fn pid(&self) -> i32 {
        self.child.as_ref().unwrap().id() as i32
    }

    /// Sends `signal` and, for SIGTERM and SIGKILL, waits for the process to end.
    pub fn signal(&mut self, signal: nix::sys::signal::Signal) -> Option<std::process::ExitStatus> {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), signal).unwrap();
        if matches!(signal, nix::sys::signal::Signal::SIGTERM | nix::sys::signal::Signal::SIGKILL) {
            return self.child.take().map(|mut c| c.wait().unwrap());
        }
        None
    }

    /// Starts the server again (after it was stopped), on a new port.
    pub fn restart(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.spawn();
    }

    /// `rest:https://localhost:PORT/REPO`.
    pub fn url(&self, repo: &str) -> String {
        format!("rest:https://localhost:{}/{repo}", self.addr.port())
    }

    /// The directory holding repository `repo`'s objects.
    pub fn repo_dir(&self, repo: &str) -> PathBuf {
        match &self.behind {
            Behind::Local(root) => root.join(repo),
            Behind::S3 { bucket } => crate::s3server::s3().bucket_dir(bucket).join(repo),
        }
    }

    /// Client options acting as identity `name` (`None`: no token).
    pub fn options(&self, name: Option<&str>) -> RestOptions {
        RestOptions {
            token: name.map(|n| zeroize::Zeroizing::new(self.tokens[n].clone())),
            cacert: Some(self.certs.ca.clone()),
            ..RestOptions::default()
        }
    }

    /// A storage on repository `repo` as identity `name`, with retries as the CLI has them.
    pub fn storage(&self, repo: &str, name: &str) -> Arc<dyn Storage> {
        self.storage_with(repo, &self.options(Some(name)))
    }

    /// A storage on repository `repo` with `opts`.
    pub fn storage_with(&self, repo: &str, opts: &RestOptions) -> Arc<dyn Storage> {
        let rest = Arc::new(RestStorage::open(&self.url(repo), opts).unwrap());
        Arc::new(Retrying::new(rest, RetryPolicy::default()))
    }

    /// `cairn` aimed at `repo` as identity `name` (token in a file), with a password file.
    pub fn cairn_as(&self, name: &str, repo: &str, cache: &Path, password_file: &Path) -> Command {
        let mut c = self.cairn_with_token(name, repo, cache);
        c.arg("--password-file").arg(password_file);
        c
    }

    /// `cairn` against `repo` with identity `name`'s token and `cache`, and no repository
    /// secret (the caller adds one).
    pub fn cairn_with_token(&self, name: &str, repo: &str, cache: &Path) -> Command {
        let token_file = self.dir.path().join(format!("token-{name}"));
        std::fs::write(&token_file, format!("{}\n", self.tokens[name])).unwrap();
        let mut c = cairn();
        c.arg("-r")
            .arg(self.url(repo))
            .arg("--cacert")
            .arg(&self.certs.ca)
            .arg("--server-token-file")
            .arg(token_file)
            .arg("--cache-dir")
            .arg(cache);
        c
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
