//! A repository served by `cairn serve`: `rest:https://HOST[:PORT]/REPO`. One HTTP request per
//! storage operation (the protocol is in `cairn-server`'s `http` module), over rustls, with a
//! bearer token and/or a client certificate.
//!
//! Answers map onto the engine's errors as the other backends' do: 404 is a missing object,
//! 412 a create-only put whose name exists, 416 a range beyond the end (damage). A refusal
//! (401, 403) is final and says which permission is missing, as is 507 (over the quota, a full
//! disk to the engine); 408, 429 and other 5xx, and a broken
//! connection, are marked retryable for the [`crate::Retrying`] decorator the CLI puts on every
//! remote backend.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::StatusCode;
use zeroize::Zeroizing;

use super::{Access, PutMode, Storage, validate_name};

/// The most any answer may hold: more than the largest pack or listing a server sends.
const MAX_ANSWER: u64 = 4 << 30;

/// The most reserved for an answer before its bytes arrive: more than any pack or range a
/// restore asks for.
const MAX_PREALLOCATION: u64 = 256 << 20;

/// The most the text of a refusal or failure may hold.
const MAX_ERROR_TEXT: u64 = 64 << 10;
use cairn_format::error::{Error, Result};

/// How to reach the server; everything the URL does not say.
#[derive(Debug, Clone, Default)]
pub struct RestOptions {
    /// The bearer token of the identity to act as.
    pub token: Option<Zeroizing<String>>,
    /// A PEM file of CA certificates to trust besides the system's (a private CA).
    pub cacert: Option<PathBuf>,
    /// A client certificate (PEM) for mutual TLS, with its key.
    pub client_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    pub client_key: Option<PathBuf>,
    /// Allow `http://` URLs (a server on loopback without TLS).
    pub insecure_http: bool,
    /// Timeout of one request (default 120 s).
    pub request_timeout: Option<Duration>,
}

/// A repository on a `cairn serve` server.
#[derive(Debug)]
pub struct RestStorage {
    client: reqwest::Client,
    runtime: tokio::runtime::Runtime,
    /// `https://HOST:PORT/REPO/`.
    base: String,
    display: String,
    token: Option<Zeroizing<String>>,
    /// What the server says this identity may do here (asked once).
    permissions: OnceLock<Vec<String>>,
}

/// Whether `url` names a repository behind `cairn serve`.
pub fn is_rest(url: &str) -> bool {
    url.starts_with("rest:")
}

fn invalid(why: String) -> Error {
    Error::InvalidInput(why)
}

fn read_file(path: &PathBuf, what: &str) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| invalid(format!("cannot read {what} {}: {e}", path.display())))
}

impl RestStorage {
    /// Connects lazily to `url` (`rest:https://HOST[:PORT]/REPO`).
    pub fn open(url: &str, opts: &RestOptions) -> Result<Self> {
        let rest = url.strip_prefix("rest:").ok_or_else(|| invalid(format!("{url}: not a rest: URL")))?;
        let (scheme, after) =
            rest.split_once("://").ok_or_else(|| invalid(format!("{url}: expected rest:https://HOST[:PORT]/REPO")))?;
        let (host, repository) = after
            .split_once('/')
            .filter(|(h, r)| !h.is_empty() && !r.is_empty() && !r.contains('/'))
            .ok_or_else(|| invalid(format!("{url}: expected rest:https://HOST[:PORT]/REPO (one repository name)")))?;
        match scheme {
            "https" => {}
            "http" if opts.insecure_http => {}
            "http" => {
                return Err(invalid(format!(
                    "refusing plain http to {host}: pass --insecure-http to allow unencrypted, unauthenticated transport"
                )));
            }
            _ => return Err(invalid(format!("{url}: the scheme must be https"))),
        }
        crate::s3::install_crypto_provider();
        let mut builder = reqwest::Client::builder()
            .timeout(opts.request_timeout.unwrap_or(Duration::from_secs(120)))
            .connect_timeout(Duration::from_secs(15))
            .pool_idle_timeout(Duration::from_secs(30))
            // A redirect would turn a PUT into a GET whose 200 looks like success.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("cairn/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = &opts.cacert {
            let certs = reqwest::Certificate::from_pem_bundle(&read_file(path, "--cacert")?)
                .map_err(|e| invalid(format!("--cacert {}: {e}", path.display())))?;
            if certs.is_empty() {
                return Err(invalid(format!("--cacert {}: no PEM certificate in it", path.display())));
            }
            builder = builder.tls_certs_merge(certs);
        }
        match (&opts.client_cert, &opts.client_key) {
            (Some(cert), Some(key)) => {
                let mut pem = read_file(cert, "--tls-client-cert")?;
                pem.push(b'\n');
                pem.extend_from_slice(&Zeroizing::new(read_file(key, "--tls-client-key")?));
                let identity = reqwest::Identity::from_pem(&pem)
                    .map_err(|e| invalid(format!("--tls-client-cert/--tls-client-key: {e}")))?;
                builder = builder.identity(identity);
            }
            (None, None) => {}
            _ => return Err(invalid("--tls-client-cert and --tls-client-key go together".into())),
        }
        let client = builder.build().map_err(|e| invalid(format!("the HTTPS client: {}", chain(&e))))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("cairn-rest")
            .enable_all()
            .build()
            .map_err(|e| Error::Internal(format!("cannot start the HTTP client runtime: {e}")))?;
        Ok(RestStorage {
            client,
            runtime,
            base: format!("{scheme}://{host}/{repository}/"),
            display: url.to_string(),
            token: opts.token.clone(),
            permissions: OnceLock::new(),
        })
    }

    fn request(&self, method: reqwest::Method, name: &str) -> reqwest::RequestBuilder {
        let builder = self.client.request(method, format!("{}{name}", self.base));
        match &self.token {
            Some(t) => builder.bearer_auth(t.as_str()),
            None => builder,
        }
    }

    /// Sends a request and reads the whole answer, of at most [`MAX_ANSWER`] bytes; transport
    /// failures are retryable.
    fn send(&self, op: &'static str, name: &str, req: reqwest::RequestBuilder) -> Result<Answer> {
        self.send_capped(op, name, req, MAX_ANSWER)
    }

    /// [`RestStorage::send`] for an answer of at most `max` bytes (an error text may have
    /// [`MAX_ERROR_TEXT`]): a server that sends more is refused before it fills the memory.
    fn send_capped(&self, op: &'static str, name: &str, req: reqwest::RequestBuilder, max: u64) -> Result<Answer> {
        self.runtime.block_on(async {
            let resp = req.send().await.map_err(|e| transport(op, name, &e))?;
            read_answer(resp, max, op, name).await
        })
    }

    /// The error for an answer that is not success, by its status.
    fn failed(&self, op: &'static str, name: &str, a: &Answer) -> Error {
        use std::io::ErrorKind;
        let text = String::from_utf8_lossy(&a.body).trim().chars().take(300).collect::<String>();
        let (kind, retryable) = match a.status {
            StatusCode::NOT_FOUND => return Error::Missing(name.to_string()),
            StatusCode::RANGE_NOT_SATISFIABLE => return Error::corrupt(name, text),
            StatusCode::BAD_REQUEST => return Error::InvalidInput(format!("{name}: the server refused it: {text}")),
            StatusCode::PRECONDITION_FAILED => (ErrorKind::AlreadyExists, false),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => (ErrorKind::PermissionDenied, false),
            // Over the repository's quota: final, as a full disk is.
            StatusCode::INSUFFICIENT_STORAGE => (ErrorKind::StorageFull, false),
            StatusCode::PAYLOAD_TOO_LARGE
            | StatusCode::UNPROCESSABLE_ENTITY
            | StatusCode::LENGTH_REQUIRED
            | StatusCode::CONFLICT => (ErrorKind::InvalidData, false),
            s if s == StatusCode::REQUEST_TIMEOUT || s == StatusCode::TOO_MANY_REQUESTS || s.is_server_error() => {
                (ErrorKind::Other, true)
            }
            _ => (ErrorKind::Other, false),
        };
        // A HEAD answer has no body: the header says what a body would.
        let text = match (a.status, a.headers.get("x-cairn-missing-permission").and_then(|v| v.to_str().ok())) {
            (StatusCode::FORBIDDEN, Some(p)) if text.is_empty() => format!("the identity lacks the `{p}` permission"),
            (StatusCode::UNAUTHORIZED, _) if text.is_empty() => {
                "the server knows no such token or client certificate".to_string()
            }
            _ => text,
        };
        let why = format!("{} answered {}: {text}", self.display, a.status);
        Error::Storage { op, object: name.to_string(), retryable, source: std::io::Error::new(kind, why) }
    }

    fn head(&self, name: &str) -> Result<Option<Answer>> {
        validate_name(name)?;
        let a = self.send("stat", name, self.request(reqwest::Method::HEAD, name))?;
        match a.status {
            StatusCode::OK => Ok(Some(a)),
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(self.failed("stat", name, &a)),
        }
    }

    /// The permissions the server grants this identity on the repository.
    fn permissions(&self) -> Result<&[String]> {
        if let Some(p) = self.permissions.get() {
            return Ok(p);
        }
        let a = self.send("ask", "permissions", self.request(reqwest::Method::GET, "?permissions"))?;
        if a.status != StatusCode::OK {
            return Err(self.failed("ask", "permissions", &a));
        }
        let held = String::from_utf8_lossy(&a.body).lines().map(str::to_string).collect();
        Ok(self.permissions.get_or_init(|| held))
    }
}

/// A whole answer.
struct Answer {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn header_u128(&self, name: &str) -> Option<u128> {
        self.headers.get(name)?.to_str().ok()?.parse().ok()
    }
}

/// The error and its sources on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        let text = inner.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        source = inner.source();
    }
    s
}

/// A request that got no answer: the connection failed or broke, or timed out.
fn transport(op: &'static str, name: &str, e: &reqwest::Error) -> Error {
    // A certificate the client does not trust will not be trusted on the next attempt.
    let text = chain(e);
    let retryable = !text.to_lowercase().contains("certificate");
    Error::Storage {
        op,
        object: name.to_string(),
        retryable,
        source: std::io::Error::new(std::io::ErrorKind::ConnectionAborted, text),
    }
}

/// Reads an answer of at most `max` bytes (an error text may have [`MAX_ERROR_TEXT`]): a
/// server that sends more is refused before it fills the memory.
async fn read_answer(mut resp: reqwest::Response, max: u64, op: &'static str, name: &str) -> Result<Answer> {
    let status = resp.status();
    let max = if status.is_success() { max } else { MAX_ERROR_TEXT };
    let too_much = || Error::corrupt(name, format!("the server's answer is larger than the {max} bytes asked for"));
    if resp.content_length().is_some_and(|n| n > max) {
        return Err(too_much());
    }
    let headers = resp.headers().clone();
    // What was announced, within what was asked for: one allocation and no copies as a pack
    // arrives. Capped, so a lying announcement reserves no more than a pack's worth.
    let mut body = Vec::with_capacity(resp.content_length().map_or(0, |n| n.min(max).min(MAX_PREALLOCATION) as usize));
    while let Some(chunk) = resp.chunk().await.map_err(|e| transport(op, name, &e))? {
        if (body.len() + chunk.len()) as u64 > max {
            return Err(too_much());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Answer { status, headers, body })
}

impl Storage for RestStorage {
    fn location(&self) -> String {
        self.display.clone()
    }

    fn put(&self, name: &str, data: &[u8], mode: PutMode) -> Result<()> {
        self.put_parts(name, &[data], mode)
    }

    fn put_parts(&self, name: &str, parts: &[&[u8]], mode: PutMode) -> Result<()> {
        validate_name(name)?;
        let mut req = self.request(reqwest::Method::PUT, name).body(parts.concat());
        if mode == PutMode::CreateNew {
            req = req.header(reqwest::header::IF_NONE_MATCH, "*");
        }
        let a = self.send("write", name, req)?;
        if a.status == StatusCode::CREATED { Ok(()) } else { Err(self.failed("write", name, &a)) }
    }

    fn get(&self, name: &str) -> Result<Vec<u8>> {
        validate_name(name)?;
        let a = self.send("read", name, self.request(reqwest::Method::GET, name))?;
        if a.status == StatusCode::OK { Ok(a.body) } else { Err(self.failed("read", name, &a)) }
    }

    fn get_bounded(&self, name: &str, max: u64) -> Result<Vec<u8>> {
        validate_name(name)?;
        let a = self.send_capped("read", name, self.request(reqwest::Method::GET, name), max)?;
        if a.status == StatusCode::OK { Ok(a.body) } else { Err(self.failed("read", name, &a)) }
    }

    fn get_range(&self, name: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        validate_name(name)?;
        if len == 0 {
            return match self.stat(name)? {
                Some(size) if size >= offset => Ok(Vec::new()),
                Some(size) => Err(Error::corrupt(name, format!("range {offset}+0 beyond the object's {size} bytes"))),
                None => Err(Error::Missing(name.to_string())),
            };
        }
        let last = offset.checked_add(len - 1).ok_or_else(|| invalid("range too large".into()))?;
        let req =
            self.request(reqwest::Method::GET, name).header(reqwest::header::RANGE, format!("bytes={offset}-{last}"));
        let a = self.send_capped("read", name, req, len)?;
        match a.status {
            StatusCode::PARTIAL_CONTENT if a.body.len() as u64 == len => Ok(a.body),
            StatusCode::PARTIAL_CONTENT => {
                Err(Error::corrupt(name, format!("range {offset}+{len}: the server sent {} bytes", a.body.len())))
            }
            _ => Err(self.failed("read", name, &a)),
        }
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let dir = if prefix.is_empty() || prefix.ends_with('/') { prefix.to_string() } else { format!("{prefix}/") };
        let a = self.send("list", prefix, self.request(reqwest::Method::GET, &dir))?;
        if a.status != StatusCode::OK {
            return Err(self.failed("list", prefix, &a));
        }
        let text = String::from_utf8(a.body).map_err(|_| Error::corrupt(prefix, "the listing is not text"))?;
        Ok(text.lines().filter(|l| !l.is_empty()).map(str::to_string).collect())
    }

    fn delete(&self, name: &str) -> Result<()> {
        validate_name(name)?;
        let a = self.send("delete", name, self.request(reqwest::Method::DELETE, name))?;
        if a.status == StatusCode::NO_CONTENT || a.status == StatusCode::NOT_FOUND {
            Ok(())
        } else {
            Err(self.failed("delete", name, &a))
        }
    }

    fn delete_many(&self, names: &[String]) -> Result<()> {
        // Several at a time over the connection pool.
        self.runtime.block_on(async {
            use futures_util::StreamExt;
            let mut results = futures_util::stream::iter(names.iter().map(|name| async move {
                validate_name(name)?;
                let resp = self
                    .request(reqwest::Method::DELETE, name)
                    .send()
                    .await
                    .map_err(|e| transport("delete", name, &e))?;
                let a = read_answer(resp, 0, "delete", name).await?;
                if a.status == StatusCode::NO_CONTENT || a.status == StatusCode::NOT_FOUND {
                    Ok(())
                } else {
                    Err(self.failed("delete", name, &a))
                }
            }))
            .buffer_unordered(8);
            while let Some(r) = results.next().await {
                r?;
            }
            Ok(())
        })
    }

    fn stat(&self, name: &str) -> Result<Option<u64>> {
        match self.head(name)? {
            Some(a) => a
                .header_u128("x-cairn-size")
                .and_then(|s| u64::try_from(s).ok())
                .map(Some)
                .ok_or_else(|| Error::corrupt(name, "the server gave no size")),
            None => Ok(None),
        }
    }

    fn modified(&self, name: &str) -> Result<Option<SystemTime>> {
        Ok(self.head(name)?.and_then(|a| {
            let ns = a.header_u128("x-cairn-modified")?;
            Some(UNIX_EPOCH + Duration::from_nanos(u64::try_from(ns).ok()?))
        }))
    }

    fn permits(&self, access: Access) -> Result<()> {
        let held = self.permissions()?;
        let name = access.name();
        // The server lets `append` read (a backup reads its parent snapshot and the index),
        // and `delete` append (prune writes what it repacks).
        let enough = |p: &str| {
            p == name
                || p == "admin"
                || (access == Access::Read && p == "append")
                || (matches!(access, Access::Read | Access::Append) && p == "delete")
        };
        if held.iter().any(|p| enough(p)) {
            return Ok(());
        }
        Err(Error::Storage {
            op: "use",
            object: "the repository".into(),
            retryable: false,
            source: std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                format!(
                    "the server's identity for {} lacks the `{name}` permission (it holds: {})",
                    self.display,
                    if held.is_empty() { "none".to_string() } else { held.join(", ") }
                ),
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use super::*;

    /// A server on loopback that answers every request with `answer`, as many times as asked.
    fn lying_server(answer: Vec<u8>) -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                let mut request = [0u8; 4096];
                let _ = conn.read(&mut request);
                let _ = conn.write_all(&answer);
            }
        });
        format!("rest:http://{addr}/main")
    }

    fn open(url: &str) -> RestStorage {
        RestStorage::open(url, &RestOptions { insecure_http: true, ..RestOptions::default() }).unwrap()
    }

    #[test]
    fn an_answer_larger_than_asked_for_is_refused_before_it_is_read() {
        let name = "data/00/0000000000000000000000000000000000000000000000000000000000000000";
        // Announced too large: refused on the header.
        let mut announced = b"HTTP/1.1 206 Partial Content\r\nContent-Length: 1000000000\r\n\r\n".to_vec();
        announced.extend_from_slice(&[0; 1000]);
        let err = open(&lying_server(announced)).get_range(name, 0, 10).unwrap_err();
        assert!(matches!(&err, Error::Corrupt { why, .. } if why.contains("larger than the 10 bytes")), "{err:?}");
        // Not announced: cut off once past the range.
        let mut streamed = b"HTTP/1.1 206 Partial Content\r\nConnection: close\r\n\r\n".to_vec();
        streamed.extend_from_slice(&[0; 100_000]);
        let err = open(&lying_server(streamed)).get_range(name, 0, 10).unwrap_err();
        assert!(matches!(&err, Error::Corrupt { why, .. } if why.contains("larger than the 10 bytes")), "{err:?}");
        // A refusal's text is bounded too.
        let mut refusal = b"HTTP/1.1 403 Forbidden\r\nConnection: close\r\n\r\n".to_vec();
        refusal.extend_from_slice(&vec![b'x'; 1 << 20]);
        let err = open(&lying_server(refusal)).get(name).unwrap_err();
        assert!(matches!(&err, Error::Corrupt { .. }), "{err:?}");
    }
}
