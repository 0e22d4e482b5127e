//! The listener: accepts connections up to a cap, completes TLS within the header timeout,
//! serves HTTP/1.1 on each, and on SIGTERM or SIGINT stops accepting and lets the requests in
//! flight finish (each stored object is written atomically by the backend, so a server killed
//! outright leaves no partial object either). SIGHUP reads the certificate, key, client CA and
//! identities again.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};

use crate::backends::Backends;
use crate::error::{Error, Result};
use crate::http::{Limits, Peer, State, handle};
use crate::identities::Identities;
use crate::log::{LogKey, ServerLog};
use crate::stall::Stalling;
use crate::tls::{TlsFiles, fingerprint};

/// How to serve.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The address to listen on (port 0: any free port; the one chosen is reported).
    pub listen: SocketAddr,
    /// TLS material; `None` serves plain http, which only a loopback address may.
    pub tls: Option<TlsFiles>,
    /// The identities file.
    pub identities: PathBuf,
    /// The server log.
    pub log: PathBuf,
    /// The key of the server log's MACs (made on first start).
    pub log_key: PathBuf,
    /// Limits on requests.
    pub limits: Limits,
    /// Connections served at once; more wait to be accepted.
    pub max_connections: usize,
    /// Connections served at once from one client address (0: no limit); more are closed
    /// at once. Not for a server behind a load balancer, whose address all share.
    pub max_connections_per_address: usize,
    /// How long a client may take to send a request's headers (and the TLS handshake).
    pub header_timeout: Duration,
    /// How long requests in flight may take to finish after SIGTERM.
    pub shutdown_grace: Duration,
}

impl ServeOptions {
    /// Options with the defaults for everything but what must be given.
    pub fn new(listen: SocketAddr, tls: Option<TlsFiles>, identities: PathBuf, log: PathBuf) -> Self {
        let log_key = default_log_key(&log);
        ServeOptions {
            listen,
            tls,
            identities,
            log,
            log_key,
            limits: Limits::default(),
            max_connections: 512,
            max_connections_per_address: 0,
            header_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

/// Where the log's key is unless told: beside the log, `LOG.key` (`serve.log.key`).
pub fn default_log_key(log: &std::path::Path) -> PathBuf {
    let mut name = log.as_os_str().to_owned();
    name.push(".key");
    PathBuf::from(name)
}

/// Serves until SIGTERM or SIGINT. `ready` is told the address listened on once connections
/// are accepted.
pub fn run(opts: ServeOptions, backends: Backends, ready: impl FnOnce(SocketAddr, bool)) -> Result<()> {
    if opts.tls.is_none() && !opts.listen.ip().is_loopback() {
        return Err(Error::Config(format!(
            "plain http is served on loopback addresses only, not {}: give --tls-cert and --tls-key",
            opts.listen
        )));
    }
    let tls = opts.tls.as_ref().map(TlsFiles::load).transpose()?;
    let identities = Identities::load(&opts.identities)?;
    let key = if opts.log_key.exists() { LogKey::load(&opts.log_key)? } else { LogKey::create(&opts.log_key)? };
    let log = ServerLog::open(&opts.log, key)?;
    let state = Arc::new(State::new(backends, identities, log, opts.limits.clone()));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .thread_name("cairn-serve")
        .enable_all()
        .build()
        .map_err(|e| Error::Internal(format!("cannot start the server runtime: {e}")))?;
    let served = runtime.block_on(serve(opts.clone(), state.clone(), tls, ready));
    state.log.sync()?;
    served
}

async fn serve(
    opts: ServeOptions,
    state: Arc<State>,
    tls: Option<Arc<rustls::ServerConfig>>,
    ready: impl FnOnce(SocketAddr, bool),
) -> Result<()> {
    let io = |e: std::io::Error| Error::Config(format!("{}: {e}", opts.listen));
    let listener = TcpListener::bind(opts.listen).await.map_err(io)?;
    let mut terminate = signal(SignalKind::terminate()).map_err(io)?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(io)?;
    let mut hangup = signal(SignalKind::hangup()).map_err(io)?;
    let tls = RwLock::new(tls.map(tokio_rustls::TlsAcceptor::from));
    let slots = Arc::new(tokio::sync::Semaphore::new(opts.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let per_address = crate::http::shares::Shares::default();
    ready(listener.local_addr().map_err(io)?, opts.tls.is_some());
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.map_err(|e| Error::Internal(e.to_string()))?,
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
        };
        let (tcp, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait, do not spin.
                    eprintln!("cairn serve: accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = hangup.recv() => {
                reload(&opts, &state, &tls);
                continue;
            }
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
        };
        let address_share = match opts.max_connections_per_address {
            0 => None,
            max => match per_address.take(&crate::http::address_key(remote.ip()), 1, max as u64) {
                Some(share) => Some(share),
                None => {
                    state.metrics.connection_refused();
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let tcp = Stalling::new(tcp, opts.limits.body_timeout);
        let acceptor = tls.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        let (state, watcher, header_timeout) = (state.clone(), graceful.watcher(), opts.header_timeout);
        tokio::spawn(async move {
            let _slot = slot;
            let _address_share = address_share;
            state.metrics.connection(true);
            match acceptor {
                Some(acceptor) => {
                    if let Ok(Ok(stream)) = tokio::time::timeout(header_timeout, acceptor.accept(tcp)).await {
                        let certificate_sha256 =
                            stream.get_ref().1.peer_certificates().and_then(|c| c.first()).map(fingerprint);
                        let peer = Arc::new(Peer { remote, certificate_sha256 });
                        connection(stream, state.clone(), peer, header_timeout, watcher).await;
                    }
                }
                None => {
                    let peer = Arc::new(Peer { remote, certificate_sha256: None });
                    connection(tcp, state.clone(), peer, header_timeout, watcher).await;
                }
            }
            state.metrics.connection(false);
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(opts.shutdown_grace) => {
            eprintln!("cairn serve: requests still running after {:?}; stopping anyway", opts.shutdown_grace);
        }
    }
    Ok(())
}

/// Serves HTTP/1.1 on one connection until the client closes it or the server shuts down.
async fn connection<S>(
    stream: S,
    state: Arc<State>,
    peer: Arc<Peer>,
    header_timeout: Duration,
    watcher: hyper_util::server::graceful::Watcher,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req| {
        let (state, peer) = (state.clone(), peer.clone());
        // A change runs in its own task: a client that hangs up mid-request makes hyper drop
        // this future, and a write already handed to the storage must still be answered in the
        // log. A read is dropped with its client: nothing is left to record, and work for
        // clients gone must not pile up.
        async move {
            if matches!(*req.method(), hyper::Method::GET | hyper::Method::HEAD) {
                return Ok::<_, Infallible>(handle(state, peer, req).await);
            }
            let answered = tokio::spawn(handle(state, peer, req)).await;
            Ok::<_, Infallible>(answered.unwrap_or_else(|_| {
                crate::http::Answer::text(hyper::StatusCode::INTERNAL_SERVER_ERROR, "internal error\n").into_response()
            }))
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(header_timeout).keep_alive(true);
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    // Errors are the client's doing (a reset, a timeout): nothing to report.
    let _ = watcher.watch(conn).await;
}

/// Reads the TLS files and the identities again; a file that does not load leaves the old
/// configuration serving.
fn reload(opts: &ServeOptions, state: &State, tls: &RwLock<Option<tokio_rustls::TlsAcceptor>>) {
    if let Some(files) = &opts.tls {
        match files.load() {
            Ok(config) => {
                *tls.write().unwrap_or_else(std::sync::PoisonError::into_inner) =
                    Some(tokio_rustls::TlsAcceptor::from(config));
                eprintln!("cairn serve: TLS certificate and key read again");
            }
            Err(e) => eprintln!("cairn serve: keeping the TLS configuration: {e}"),
        }
    }
    match Identities::load(&opts.identities) {
        Ok(ids) => {
            *state.identities.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(ids);
            eprintln!("cairn serve: identities read again");
        }
        Err(e) => eprintln!("cairn serve: keeping the identities: {e}"),
    }
}
