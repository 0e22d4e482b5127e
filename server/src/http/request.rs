//! One request against a repository: who asks (token or client certificate), whether
//! [`crate::access::decide`] lets them, and the storage operation. Storage calls block, so they
//! run on tokio's blocking pool.

use std::sync::Arc;
use std::time::UNIX_EPOCH;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};

use cairn_format::error::Error as StorageError;
use cairn_format::names;
use cairn_storage::{PutMode, Storage};

use super::{Body, PERMIT_BYTES, Peer, State, upload};
use crate::access::{Decision, Operation, decide};
use crate::backends::is_repository_name;
use crate::identities::{Identity, Permission};
use crate::owners;

/// The repository and object a request addressed, for the log.
#[derive(Debug, Clone)]
pub struct Target {
    pub repository: String,
    pub object: String,
}

/// A response, with what the log and the metrics want to know about the request.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub body: Bytes,
    headers: Vec<(&'static str, String)>,
    /// Who asked, when the request authenticated.
    pub identity: Option<String>,
    /// What it addressed, when it named a repository.
    pub target: Option<Target>,
    /// Body bytes received.
    pub received: u64,
    /// Whether to close the connection after answering (a body left unread).
    close: bool,
    /// The body's share of the memory budget.
    room: Option<Room>,
}

impl Answer {
    /// A plain-text answer.
    pub fn text(status: StatusCode, text: impl Into<String>) -> Self {
        Answer {
            status,
            body: Bytes::from(text.into()),
            headers: Vec::new(),
            identity: None,
            target: None,
            received: 0,
            close: false,
            room: None,
        }
    }

    pub(super) fn bytes(status: StatusCode, body: Vec<u8>) -> Self {
        Answer { body: Bytes::from(body), ..Answer::text(status, "") }
    }

    pub(super) fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub(super) fn holding(mut self, room: Room) -> Self {
        self.room = Some(room);
        self
    }

    pub(super) fn closing(mut self) -> Self {
        self.close = true;
        self
    }

    /// The HTTP response.
    pub fn into_response(self) -> Response<Body> {
        let status = self.status;
        self.into_response_with(status)
    }

    /// The HTTP response, with another status (the log could not be written).
    pub fn into_response_with(self, status: StatusCode) -> Response<Body> {
        let body =
            if status == self.status { self.body } else { Bytes::from_static(b"the server log cannot be written\n") };
        let mut response = Response::new(Body { rest: body, _room: self.room });
        *response.status_mut() = status;
        let headers = response.headers_mut();
        for (name, value) in self.headers {
            if let Ok(v) = HeaderValue::from_str(&value) {
                headers.insert(name, v);
            }
        }
        if self.close {
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

/// Room for a body in the memory budget, and the holder's share of it, until dropped.
#[derive(Debug)]
pub struct Room {
    _permit: tokio::sync::OwnedSemaphorePermit,
    _share: Option<super::shares::Share>,
}

/// Room for `bytes` of `identity`'s uploads or answers (`what`): within its share of the
/// budget (a quarter, or one body of any size that fits), so one host moving bodies slowly
/// cannot hold all of it, then in the budget.
pub(super) async fn room_for(
    state: &State,
    shares: &super::shares::Shares,
    identity: &Identity,
    bytes: u64,
    what: &str,
) -> Result<Room, Answer> {
    let Some(share) = shares.take(&identity.name, bytes, state.limits.body_memory / 4) else {
        return Err(Answer::text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("this identity has its share of {what} in flight; try again\n"),
        )
        .header("retry-after", "1")
        .closing());
    };
    let room = room(state, bytes).await?;
    Ok(Room { _share: Some(share), ..room })
}

/// Waits for `bytes` of room under the memory budget for bodies; not forever: a server whose
/// budget is held (by slow clients) says so with 503, and clients retry.
async fn room(state: &State, bytes: u64) -> Result<Room, Answer> {
    let permits = u32::try_from(bytes.div_ceil(PERMIT_BYTES).max(1)).unwrap_or(u32::MAX);
    if u64::from(permits) > state.memory_permits {
        // It would never fit, and waiting for it would hold up everyone queued behind it.
        return Err(Answer::text(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("{bytes} bytes are more than the server holds in memory at once\n"),
        )
        .closing());
    }
    match tokio::time::timeout(state.limits.body_timeout, state.memory.clone().acquire_many_owned(permits)).await {
        Ok(Ok(permit)) => Ok(Room { _permit: permit, _share: None }),
        Ok(Err(_)) => Err(internal()),
        Err(_) => Err(Answer::text(StatusCode::SERVICE_UNAVAILABLE, "too many transfers in flight; try again\n")
            .header("retry-after", "1")
            .closing()),
    }
}

/// Runs `f` on the blocking pool.
pub(super) async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    tokio::task::spawn_blocking(f).await.ok()
}

pub(super) fn internal() -> Answer {
    Answer::text(StatusCode::INTERNAL_SERVER_ERROR, "internal error\n")
}

/// The answer for a storage failure.
pub(super) fn storage_failed(state: &State, e: &StorageError) -> Answer {
    match e {
        StorageError::Missing(name) => Answer::text(StatusCode::NOT_FOUND, format!("{name} does not exist\n")),
        StorageError::Storage { source, .. } if source.kind() == std::io::ErrorKind::AlreadyExists => {
            Answer::text(StatusCode::PRECONDITION_FAILED, "the object exists\n")
        }
        StorageError::InvalidInput(why) => Answer::text(StatusCode::BAD_REQUEST, format!("{why}\n")),
        _ => {
            state.metrics.storage_error();
            eprintln!("cairn serve: storage: {e}");
            Answer::text(StatusCode::SERVICE_UNAVAILABLE, "the storage behind the server failed\n")
        }
    }
}

/// Who is asking: a bearer token names an identity (a wrong one is refused, whatever the
/// certificate); else a client certificate the CA signed.
fn authenticate(state: &State, peer: &Peer, headers: &HeaderMap) -> Result<Identity, &'static str> {
    let identities = state.identities();
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let token = value.to_str().ok().and_then(|v| v.strip_prefix("Bearer ")).map(str::trim);
        return token.and_then(|t| identities.by_token(t)).cloned().ok_or("the token is not one of this server's\n");
    }
    peer.certificate_sha256
        .as_deref()
        .and_then(|c| identities.by_certificate(c))
        .cloned()
        .ok_or("no token and no known client certificate\n")
}

fn permission_name(p: Permission) -> &'static str {
    match p {
        Permission::Read => "read",
        Permission::Append => "append",
        Permission::Delete => "delete",
        Permission::Keys => "keys",
        Permission::Admin => "admin",
    }
}

fn refused(identity: &Identity, repository: &str, missing: Permission) -> Answer {
    let p = permission_name(missing);
    Answer::text(
        StatusCode::FORBIDDEN,
        format!("identity {} lacks the `{p}` permission on repository {repository}\n", identity.name),
    )
    .header("x-cairn-missing-permission", p)
}

/// Parses `bytes=A-B` (one range, both ends given).
fn parse_range(value: &HeaderValue) -> Option<(u64, u64)> {
    let (a, b) = value.to_str().ok()?.strip_prefix("bytes=")?.split_once('-')?;
    let (a, b): (u64, u64) = (a.parse().ok()?, b.parse().ok()?);
    // At most what a body may hold; never an overflow.
    let len = b.checked_sub(a)?.checked_add(1)?;
    (len <= cairn_format::MAX_SMALL_OBJECT.max(1 << 32)).then_some((a, len))
}

/// Answers a request addressed to `/REPO/...`.
pub async fn answer(state: &Arc<State>, peer: &Peer, req: Request<Incoming>) -> Answer {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    let Some((repository, name)) = path.strip_prefix('/').and_then(|p| p.split_once('/')) else {
        return Answer::text(StatusCode::NOT_FOUND, "not a repository path: /REPO/NAME\n");
    };
    let mut answer = answer_for(state, peer, &parts, body, repository, name).await;
    answer.target = Some(Target { repository: repository.to_string(), object: name.to_string() });
    answer
}

async fn answer_for(
    state: &Arc<State>,
    peer: &Peer,
    parts: &hyper::http::request::Parts,
    body: Incoming,
    repository: &str,
    name: &str,
) -> Answer {
    let identity = match authenticate(state, peer, &parts.headers) {
        Ok(i) => i,
        Err(why) => {
            return Answer::text(StatusCode::UNAUTHORIZED, why).header("www-authenticate", "Bearer").closing();
        }
    };
    let mut answer = authenticated(state, &identity, parts, body, repository, name).await;
    answer.identity = Some(identity.name.clone());
    answer
}

async fn authenticated(
    state: &Arc<State>,
    identity: &Identity,
    parts: &hyper::http::request::Parts,
    body: Incoming,
    repository: &str,
    name: &str,
) -> Answer {
    if !is_repository_name(repository) {
        return Answer::text(StatusCode::BAD_REQUEST, "not a repository name\n");
    }
    if !state.rates.admit(&identity.name) {
        return Answer::text(StatusCode::TOO_MANY_REQUESTS, "too many requests; slow down\n")
            .header("retry-after", "1")
            .closing();
    }
    if name.is_empty() && parts.uri.query() == Some("permissions") && parts.method == Method::GET {
        let held: Vec<&str> =
            [Permission::Read, Permission::Append, Permission::Delete, Permission::Keys, Permission::Admin]
                .into_iter()
                .filter(|p| identity.may(repository, *p))
                .map(permission_name)
                .collect();
        let mut text = held.join("\n");
        text.push('\n');
        return Answer::text(StatusCode::OK, text);
    }
    if parts.uri.query().is_some() {
        return Answer::text(StatusCode::BAD_REQUEST, "unknown query\n");
    }
    let listing = name.is_empty() || name.ends_with('/');
    let op = match (&parts.method, listing) {
        (&Method::GET, true) => Operation::List,
        (&Method::GET | &Method::HEAD, false) => Operation::Read,
        (&Method::PUT, false) if parts.headers.get(header::IF_NONE_MATCH).is_some_and(|v| v == "*") => {
            Operation::Create
        }
        (&Method::PUT, false) => Operation::Overwrite,
        (&Method::DELETE, false) => Operation::Delete,
        _ => return Answer::text(StatusCode::METHOD_NOT_ALLOWED, "no such operation\n").closing(),
    };
    let decision = decide(identity, repository, op, name);
    if let Decision::BadName = decision {
        return Answer::text(StatusCode::BAD_REQUEST, "not an object name of a repository (SPEC §3)\n").closing();
    }
    if let Decision::Refuse(missing) = decision {
        return refused(identity, repository, missing).closing();
    }
    if matches!(op, Operation::Create | Operation::Overwrite | Operation::Delete) && state.log.failing() {
        // Nothing changes that the log cannot record; this refusal's own line, once it can be
        // written, lets changes through again.
        return Answer::text(
            StatusCode::SERVICE_UNAVAILABLE,
            "the server log cannot be written; no change is made until it can\n",
        )
        .header("retry-after", "5")
        .closing();
    }
    let storage = {
        let (shared, repo) = (state.clone(), repository.to_string());
        match blocking(move || shared.backends.get(&repo)).await {
            Some(Ok(s)) => s,
            Some(Err(e)) => return storage_failed(state, &e),
            None => return internal(),
        }
    };
    if decision == Decision::AllowOwnLock {
        let (s, lock, who) = (storage.clone(), name.to_string(), identity.name.clone());
        match blocking(move || owners::owns(&s, &lock, &who)).await {
            Some(Ok(true)) => {}
            Some(Ok(false)) => {
                return Answer::text(
                    StatusCode::FORBIDDEN,
                    format!(
                        "identity {} may change only the locks it created, and {name} is not one of them\n",
                        identity.name
                    ),
                )
                .header("x-cairn-missing-permission", "delete")
                .closing();
            }
            Some(Err(e)) => return storage_failed(state, &e),
            None => return internal(),
        }
    }
    match op {
        Operation::List => list(state, storage, name).await,
        Operation::Read if parts.method == Method::HEAD => head(state, storage, name).await,
        Operation::Read => read(state, storage, identity, name, parts.headers.get(header::RANGE)).await,
        Operation::Create | Operation::Overwrite => {
            let mode = if op == Operation::Create { PutMode::CreateNew } else { PutMode::Overwrite };
            upload::put(state, storage, identity, (repository, name), mode, &parts.headers, body).await
        }
        Operation::Delete => {
            state.usage.changed(repository);
            delete(state, storage, name).await
        }
    }
}

async fn list(state: &State, storage: Arc<dyn Storage>, dir: &str) -> Answer {
    let prefix = dir.to_string();
    match blocking(move || storage.list(&prefix)).await {
        Some(Ok(mut names)) => {
            names.sort_unstable();
            let mut text = names.join("\n");
            if !text.is_empty() {
                text.push('\n');
            }
            drop(names);
            match room(state, text.len() as u64).await {
                Ok(r) => Answer::text(StatusCode::OK, text).holding(r),
                Err(busy) => busy,
            }
        }
        Some(Err(e)) => storage_failed(state, &e),
        None => internal(),
    }
}

async fn head(state: &State, storage: Arc<dyn Storage>, name: &str) -> Answer {
    let object = name.to_string();
    let found = blocking(move || -> cairn_format::error::Result<_> {
        let Some(size) = storage.stat(&object)? else { return Ok(None) };
        Ok(Some((size, storage.modified(&object)?)))
    })
    .await;
    match found {
        Some(Ok(Some((size, modified)))) => {
            let answer = Answer::text(StatusCode::OK, "").header("x-cairn-size", size.to_string());
            match modified.and_then(|m| m.duration_since(UNIX_EPOCH).ok()) {
                Some(at) => answer.header("x-cairn-modified", at.as_nanos().to_string()),
                None => answer,
            }
        }
        Some(Ok(None)) => Answer::text(StatusCode::NOT_FOUND, ""),
        Some(Err(e)) => storage_failed(state, &e),
        None => internal(),
    }
}

async fn read(
    state: &State,
    storage: Arc<dyn Storage>,
    identity: &Identity,
    name: &str,
    range: Option<&HeaderValue>,
) -> Answer {
    let object = name.to_string();
    let range = match range.map(parse_range) {
        None => None,
        Some(Some(r)) => Some(r),
        Some(None) => return Answer::text(StatusCode::BAD_REQUEST, "Range must be bytes=FIRST-LAST\n"),
    };
    // The answer is held in memory until sent: room for it first (a whole object's size
    // asked of the storage; a missing one needs none).
    let size = match range {
        Some((_, len)) => len,
        None => {
            let s = storage.clone();
            match blocking(move || s.stat(&object)).await {
                Some(Ok(Some(size))) => size,
                Some(Ok(None)) => return Answer::text(StatusCode::NOT_FOUND, format!("{name} does not exist\n")),
                Some(Err(e)) => return storage_failed(state, &e),
                None => return internal(),
            }
        }
    };
    let room = match room_for(state, &state.downloads, identity, size, "answers").await {
        Ok(r) => r,
        Err(busy) => return busy,
    };
    let object = name.to_string();
    match range {
        None => match blocking(move || storage.get(&object)).await {
            Some(Ok(bytes)) => Answer::bytes(StatusCode::OK, bytes).holding(room),
            Some(Err(e)) => storage_failed(state, &e),
            None => internal(),
        },
        Some((offset, len)) => match blocking(move || storage.get_range(&object, offset, len)).await {
            Some(Ok(bytes)) => Answer::bytes(StatusCode::PARTIAL_CONTENT, bytes)
                .header("content-range", format!("bytes {offset}-{}/*", offset.saturating_add(len - 1)))
                .holding(room),
            Some(Err(StorageError::Corrupt { why, .. })) => {
                Answer::text(StatusCode::RANGE_NOT_SATISFIABLE, format!("{why}\n"))
            }
            Some(Err(e)) => storage_failed(state, &e),
            None => internal(),
        },
    }
}

async fn delete(state: &State, storage: Arc<dyn Storage>, name: &str) -> Answer {
    let object = name.to_string();
    let done = blocking(move || {
        storage.delete(&object)?;
        if names::Dir::Locks.file_of(&object).is_some() {
            owners::release(&storage, &object)?;
        }
        Ok::<_, StorageError>(())
    })
    .await;
    match done {
        Some(Ok(())) => Answer::text(StatusCode::NO_CONTENT, ""),
        Some(Err(e)) => storage_failed(state, &e),
        None => internal(),
    }
}
