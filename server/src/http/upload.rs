//! Uploads: a PUT's checks before its body is read (length, quota, the audit log's shape, the
//! memory budget), its body read within the timeouts, a pack's bytes checked against its
//! name, and the write.

use std::sync::Arc;

use hyper::StatusCode;
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap};

use cairn_format::names;
use cairn_storage::{PutMode, Storage};

use super::State;
use super::body::{BodyError, read_exact};
use super::request::{Answer, blocking, internal, room_for, storage_failed};
use crate::identities::{Identity, Permission};
use crate::owners;
use crate::quota::Admission;

/// The most a non-pack object may hold (as readers bound them).
const MAX_SMALL_OBJECT: u64 = cairn_format::MAX_SMALL_OBJECT;

pub(super) async fn put(
    state: &Arc<State>,
    storage: Arc<dyn Storage>,
    identity: &Identity,
    (repository, name): (&str, &str),
    mode: PutMode,
    headers: &HeaderMap,
    body: Incoming,
) -> Answer {
    let Some(len) = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok()) else {
        return Answer::text(StatusCode::LENGTH_REQUIRED, "a PUT needs Content-Length\n").closing();
    };
    let pack = names::pack_id(name);
    let max = if pack.is_some() { state.limits.max_body } else { state.limits.max_body.min(MAX_SMALL_OBJECT) };
    if len > max {
        return Answer::text(StatusCode::PAYLOAD_TOO_LARGE, format!("{len} bytes; at most {max} are taken\n"))
            .closing();
    }
    // Locks and audit entries are small and every command needs them, restore and check
    // included: they are not held to the quota, and a lock's refresh changes nothing it counts.
    let bookkeeping = names::Dir::Locks.file_of(name).is_some() || names::Dir::Audit.file_of(name).is_some();
    if mode == PutMode::Overwrite && !bookkeeping {
        state.usage.changed(repository);
    }
    if mode == PutMode::CreateNew
        && !identity.may(repository, Permission::Delete)
        && let Some((seq, _)) = cairn_format::audit::parse_entry_name(name)
    {
        let s = storage.clone();
        match blocking(move || follows_the_log(s.as_ref(), seq)).await {
            Some(Ok(Ok(()))) => {}
            Some(Ok(Err(why))) => {
                return Answer::text(
                    StatusCode::CONFLICT,
                    format!("audit entry {seq} does not follow the log: {why}\n"),
                )
                .closing();
            }
            Some(Err(e)) => return storage_failed(state, &e),
            None => return internal(),
        }
    }
    let reserved = match bookkeeping {
        true => None,
        false => match reserve(state, &storage, identity, repository, len).await {
            Ok(r) => r,
            Err(refusal) => return refusal,
        },
    };
    // The body is held in memory until stored.
    let _room = match room_for(state, &state.uploads, identity, len, "uploads").await {
        Ok(r) => r,
        Err(busy) => return busy,
    };
    let bytes = match read_exact(body, len, state.limits.body_timeout, super::MIN_BODY_RATE).await {
        Ok(b) => b,
        Err(BodyError::Stalled) => {
            return Answer::text(StatusCode::REQUEST_TIMEOUT, "the body stalled, or came slower than 16 KiB/s\n")
                .closing();
        }
        Err(BodyError::Malformed(why)) => return Answer::text(StatusCode::BAD_REQUEST, format!("{why}\n")).closing(),
    };
    let mut answer = stored(state, storage, identity, name, mode, bytes, pack).await;
    if let Some(mut r) = reserved
        && answer.status == StatusCode::CREATED
    {
        r.landed = true;
    }
    answer.received = len;
    answer
}

/// How far below the log's top an identity that may not delete may add an audit entry: a
/// writer that listed the log just before others appended writes a level or two below the
/// new top.
const AUDIT_LEVELS_BELOW_TOP: u64 = 4;

/// The most entries one level of the audit log takes from identities that may not delete
/// (concurrent writers fork a level; more than this many at once is no backup schedule).
const AUDIT_ENTRIES_PER_LEVEL: usize = 16;

/// Whether an audit entry at `seq` would follow the repository's log: the first entry of an
/// empty log, or one at most [`AUDIT_LEVELS_BELOW_TOP`] levels below its top or one above it,
/// on a level with an entry below it and fewer than [`AUDIT_ENTRIES_PER_LEVEL`] entries. A
/// host that may only add objects cannot plant an entry far above the log (a gap every later
/// `audit verify` reports, and every later entry pushed above it) or crowd one level; the
/// chain's MACs it could forge anyway, holding the key, so the server enforces the shape.
fn follows_the_log(storage: &dyn Storage, seq: u64) -> cairn_format::error::Result<Result<(), String>> {
    let entries = storage.list(names::Dir::Audit.prefix())?;
    let seqs: Vec<u64> =
        entries.iter().filter_map(|n| cairn_format::audit::parse_entry_name(n)).map(|(s, _)| s).collect();
    let Some(top) = seqs.iter().copied().max() else {
        return Ok(if seq == 0 { Ok(()) } else { Err("the log is empty: its first entry is 0".into()) });
    };
    if seq > top.saturating_add(1) || seq.saturating_add(AUDIT_LEVELS_BELOW_TOP) < top {
        return Ok(Err(format!("the log's top is entry {top}")));
    }
    if seq == 0 || !seqs.contains(&(seq - 1)) {
        return Ok(Err(format!("there is no entry {} before it", seq.saturating_sub(1))));
    }
    if seqs.iter().filter(|s| **s == seq).count() >= AUDIT_ENTRIES_PER_LEVEL {
        return Ok(Err(format!("level {seq} holds {AUDIT_ENTRIES_PER_LEVEL} entries already")));
    }
    Ok(Ok(()))
}

/// Bytes reserved under a repository's quota: counted as stored when the write landed, given
/// back when it did not.
struct Reserved<'a> {
    state: &'a State,
    repository: String,
    len: u64,
    landed: bool,
}

impl Drop for Reserved<'_> {
    fn drop(&mut self) {
        if self.landed {
            self.state.usage.landed(&self.repository, self.len);
        } else {
            self.state.usage.release(&self.repository, self.len);
        }
    }
}

/// Reserves `len` bytes under `repository`'s quota, when it has one and the identity may not
/// delete (see [`crate::quota`]); the answer is 507 when they do not fit.
async fn reserve<'a>(
    state: &'a Arc<State>,
    storage: &Arc<dyn Storage>,
    identity: &Identity,
    repository: &str,
    len: u64,
) -> Result<Option<Reserved<'a>>, Answer> {
    let Some(quota) = state.identities().quota(repository) else { return Ok(None) };
    if identity.may(repository, Permission::Delete) {
        return Ok(None);
    }
    let (shared, storage, repo) = (state.clone(), storage.clone(), repository.to_string());
    let Some(admitted) = blocking(move || shared.usage.admit(storage.as_ref(), &repo, quota, len)).await else {
        return Err(internal());
    };
    let repo = repository.to_string();
    match admitted {
        Ok(Admission::Reserved) => Ok(Some(Reserved { state, repository: repo, len, landed: false })),
        Ok(Admission::Over { held, quota }) => Err(Answer::text(
            StatusCode::INSUFFICIENT_STORAGE,
            format!(
                "repository {repository} is over its quota: it holds {held} of {quota} bytes, and {len} more do not \
                 fit; forget and prune (an identity that may delete), or raise the quota\n"
            ),
        )
        .header("x-cairn-quota", quota.to_string())
        .closing()),
        Err(e) => Err(storage_failed(state, &e)),
    }
}

async fn stored(
    state: &State,
    storage: Arc<dyn Storage>,
    identity: &Identity,
    name: &str,
    mode: PutMode,
    bytes: Vec<u8>,
    pack: Option<cairn_format::id::PackId>,
) -> Answer {
    // A pack is named by the BLAKE3 of its bytes: what does not match never lands.
    let bytes = match pack {
        Some(id) => match blocking(move || (cairn_format::id::PackId::of(&bytes) == id, bytes)).await {
            Some((true, bytes)) => bytes,
            Some((false, _)) => {
                return Answer::text(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "the pack's bytes do not hash to its name: refused (damaged in transit or a faulty client)\n",
                );
            }
            None => return internal(),
        },
        None => bytes,
    };
    let (object, who) = (name.to_string(), identity.name.clone());
    let is_lock = names::Dir::Locks.file_of(name).is_some();
    let done = blocking(move || {
        if is_lock && mode == PutMode::CreateNew {
            let claimed = owners::claim(&storage, &object, &who)?;
            let created = storage.put(&object, &bytes, mode);
            if created.is_err() && claimed == owners::Claim::New {
                owners::release(&storage, &object)?;
            }
            return created;
        }
        storage.put(&object, &bytes, mode)
    })
    .await;
    match done {
        Some(Ok(())) => Answer::text(StatusCode::CREATED, ""),
        Some(Err(e)) => storage_failed(state, &e),
        None => internal(),
    }
}
