//! The HTTP protocol of `cairn serve` (HTTP/1.1 over TLS), one request per storage operation:
//!
//! | request | storage operation | answers |
//! |---|---|---|
//! | `GET /REPO/NAME` (`Range: bytes=A-B` for a part) | get, get_range | 200, 206, 404, 416 |
//! | `HEAD /REPO/NAME` | stat (`Content-Length`), modified (`X-Cairn-Modified`, Unix ns) | 200, 404 |
//! | `GET /REPO/DIR/` | list: the names under `DIR/`, one per line | 200 |
//! | `PUT /REPO/NAME` with `If-None-Match: *` | put, create-only | 201, 412 (exists) |
//! | `PUT /REPO/NAME` without it | put, overwriting | 201 |
//! | `DELETE /REPO/NAME` | delete (a missing object is no error) | 204 |
//! | `GET /REPO/?permissions` | the caller's permissions on REPO, one per line | 200 |
//! | `GET /healthz`, `GET /metrics` | liveness, Prometheus metrics | 200 |
//!
//! Every request but the last two carries `Authorization: Bearer TOKEN` or comes over a
//! connection with a client certificate; 401 without, 403 (with `X-Cairn-Missing-Permission`)
//! when the identity lacks what [`crate::access::decide`] asks, 400 for a name outside SPEC §3,
//! 411 for a PUT without `Content-Length`, 413 for a body over the limit, 422 for a pack whose
//! bytes do not hash to its name, 429 over the identity's rate, 408 for a body that stalls,
//! 503 when the storage behind fails (clients retry it).

mod body;
mod request;
pub(crate) mod shares;
mod upload;

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};

use crate::backends::Backends;
use crate::identities::Identities;
use crate::log::{Record, ServerLog};
use crate::metrics::Metrics;
use crate::quota::Usage;
use crate::rate::RateLimits;

pub use request::Answer;

/// Limits on what a request may ask of the server.
#[derive(Debug, Clone)]
pub struct Limits {
    /// The largest body a PUT may have (a pack of the largest size a writer makes).
    pub max_body: u64,
    /// Request and response bodies held in memory at once, in bytes: uploads and downloads
    /// beyond it wait their turn. One identity's uploads hold at most a quarter of it (or one
    /// body of any size).
    pub body_memory: u64,
    /// How long a body may go without a byte sent, and an answer without a byte taken; a body
    /// must also come at [`MIN_BODY_RATE`] on average once this much time has passed.
    pub body_timeout: Duration,
    /// Requests per second per identity (0: no limit).
    pub rate_per_second: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_body: 512 << 20, body_memory: 1 << 30, body_timeout: Duration::from_secs(30), rate_per_second: 0 }
    }
}

/// What every request handler shares.
#[derive(Debug)]
pub struct State {
    /// The repositories.
    pub backends: Backends,
    /// Who is who: replaced when the identities file is read again (SIGHUP).
    pub identities: RwLock<Arc<Identities>>,
    /// The server log.
    pub log: ServerLog,
    /// Counters for `/metrics`.
    pub metrics: Metrics,
    /// The limits.
    pub limits: Limits,
    /// Upload bytes in flight per identity.
    uploads: shares::Shares,
    /// Answer bytes in flight per identity.
    downloads: shares::Shares,
    /// Permits the memory budget has in all.
    memory_permits: u64,
    /// Log lines of unauthenticated refusals, per client address.
    unauthenticated: RateLimits,
    /// Log lines of refusals, per identity.
    refusals: RateLimits,
    /// What each repository with a quota holds.
    pub usage: Usage,
    rates: RateLimits,
    memory: Arc<tokio::sync::Semaphore>,
}

/// The longest object name the log records (SPEC §3 names are far shorter).
const MAX_LOGGED_NAME: usize = 200;

/// The slowest a request body may come on average (bytes a second), after the body timeout's
/// grace: a client dripping a body cannot hold its memory for long.
pub const MIN_BODY_RATE: u64 = 16 << 10;

/// Lines a second the log takes of one address's unauthenticated refusals (bursts of twice
/// that pass).
const UNAUTHENTICATED_LINES_PER_SECOND: u32 = 5;

/// Lines a second the log takes of one identity's refusals: a host taken over cannot fill the
/// log's disk (which would stop every change) with requests it knows will be refused.
const REFUSAL_LINES_PER_SECOND: u32 = 20;

/// What a client address is counted as: itself (IPv4), or its /64 (IPv6, where one client
/// holds a whole /64).
pub(crate) fn address_key(ip: std::net::IpAddr) -> String {
    match ip {
        std::net::IpAddr::V4(v4) => v4.to_string(),
        std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let [a, b, c, d, ..] = v6.segments();
                format!("{a:x}:{b:x}:{c:x}:{d:x}::/64")
            }
        },
    }
}

/// Memory permits are counted in KiB, so a u32 of them covers 4 TiB.
const PERMIT_BYTES: u64 = 1024;

impl State {
    /// A server's state.
    pub fn new(backends: Backends, identities: Identities, log: ServerLog, limits: Limits) -> Self {
        let permits = limits.body_memory.max(limits.max_body).div_ceil(PERMIT_BYTES).min(u64::from(u32::MAX >> 3));
        State {
            backends,
            identities: RwLock::new(Arc::new(identities)),
            log,
            metrics: Metrics::default(),
            usage: Usage::default(),
            uploads: shares::Shares::default(),
            downloads: shares::Shares::default(),
            memory_permits: permits,
            unauthenticated: RateLimits::new(UNAUTHENTICATED_LINES_PER_SECOND),
            refusals: RateLimits::new(REFUSAL_LINES_PER_SECOND),
            rates: RateLimits::new(limits.rate_per_second),
            memory: Arc::new(tokio::sync::Semaphore::new(usize::try_from(permits).unwrap_or(usize::MAX >> 4))),
            limits,
        }
    }

    /// The identities now in force.
    pub fn identities(&self) -> Arc<Identities> {
        self.identities.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }
}

/// A response body: bytes, handed to hyper a part at a time so that they stay counted in the
/// memory budget until the client has taken all but the last (hyper asks for the next part
/// only once its buffer has room).
#[derive(Debug)]
pub struct Body {
    rest: Bytes,
    _room: Option<request::Room>,
}

/// The part of a body hyper is handed at a time.
const BODY_PART: usize = 256 << 10;

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        if self.rest.is_empty() {
            return std::task::Poll::Ready(None);
        }
        let n = self.rest.len().min(BODY_PART);
        std::task::Poll::Ready(Some(Ok(hyper::body::Frame::data(self.rest.split_to(n)))))
    }

    fn is_end_stream(&self) -> bool {
        self.rest.is_empty()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        hyper::body::SizeHint::with_exact(self.rest.len() as u64)
    }
}

/// What the connection says about the client.
#[derive(Debug, Clone)]
pub struct Peer {
    /// Its address.
    pub remote: SocketAddr,
    /// SHA-256 of its client certificate, when it presented one the CA signed.
    pub certificate_sha256: Option<String>,
}

/// Answers one request and records it (metrics; the server log for every request that
/// changes state and every refusal).
pub async fn handle(state: Arc<State>, peer: Arc<Peer>, req: Request<Incoming>) -> Response<Body> {
    let started = Instant::now();
    let method = req.method().as_str().to_string();
    let answer = match req.uri().path() {
        "/healthz" => Answer::text(StatusCode::OK, "ok\n"),
        "/metrics" => Answer::text(StatusCode::OK, state.metrics.render()),
        _ => request::answer(&state, &peer, req).await,
    };
    let elapsed = started.elapsed();
    let status = answer.status.as_u16();
    state.metrics.request(&method, status, answer.received, answer.body.len() as u64, elapsed);
    let refused = matches!(status, 400..=499) && status != 404 && status != 416;
    let Some(target) = &answer.target else { return answer.into_response() };
    if (method == "GET" || method == "HEAD") && !refused {
        return answer.into_response();
    }
    // Refusals of clients that did not authenticate are whatever anyone on the network sends:
    // a few a second per address are recorded, the rest only counted.
    let admitted = match &answer.identity {
        None => state.unauthenticated.admit(&address_key(peer.remote.ip())),
        Some(who) if !answer.status.is_success() => state.refusals.admit(who),
        Some(_) => true,
    };
    if !admitted {
        state.metrics.log_line_skipped();
        return answer.into_response();
    }
    let record = Record {
        time: Record::time_of(SystemTime::now()),
        identity: answer.identity.clone(),
        remote: peer.remote.to_string(),
        repository: target.repository.clone(),
        method: method.clone(),
        // What a client sent, cut short: a refused request can carry a path of any length.
        object: target.object.chars().take(MAX_LOGGED_NAME).collect(),
        size: answer.received,
        status,
        latency_us: Record::latency_of(elapsed),
    };
    // A change is answered once its line is on the disk; a refusal once written.
    let changed = answer.status.is_success();
    let shared = state.clone();
    let logged = tokio::task::spawn_blocking(move || {
        if changed { shared.log.append_durably(record) } else { shared.log.append(record).map(|_| ()) }
    })
    .await;
    match logged {
        Ok(Ok(())) => answer.into_response(),
        Ok(Err(e)) => {
            eprintln!("cairn serve: cannot write the server log: {e}");
            answer.into_response_with(StatusCode::INTERNAL_SERVER_ERROR)
        }
        Err(_) => answer.into_response_with(StatusCode::INTERNAL_SERVER_ERROR),
    }
}
