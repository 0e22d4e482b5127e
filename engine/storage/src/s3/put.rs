//! Puts to S3: one attempt (single or multipart), and what to make of an attempt whose answer
//! was lost. A create-only put refused because the name exists succeeded if the object holds
//! the very bytes sent (an earlier attempt landed); a transfer that broke is reported as worth
//! another attempt, after looking whether it landed.

use bytes::Bytes;
use futures_util::StreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{GetOptions, ObjectStore, ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayload};

use super::{S3Storage, is_definite, is_transport, map_err};
use crate::PutMode;
use cairn_format::error::Error;

impl S3Storage {
    /// One attempt at storing the object.
    pub(super) async fn put_once(
        &self,
        key: &ObjectPath,
        parts: &[&[u8]],
        size: usize,
        mode: PutMode,
    ) -> object_store::Result<()> {
        if size <= self.multipart_threshold {
            let payload: PutPayload = parts.iter().map(|p| Bytes::copy_from_slice(p)).collect();
            let mode = match mode {
                PutMode::CreateNew => object_store::PutMode::Create,
                PutMode::Overwrite => object_store::PutMode::Overwrite,
            };
            return self.store.put_opts(key, payload, PutOptions { mode, ..PutOptions::default() }).await.map(drop);
        }
        if mode == PutMode::CreateNew {
            match self.store.head(key).await {
                Ok(_) => {
                    return Err(object_store::Error::AlreadyExists {
                        path: key.to_string(),
                        source: "the object exists (checked before a multipart upload)".into(),
                    });
                }
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        let mut upload = self.store.put_multipart_opts(key, PutMultipartOptions::default()).await?;
        let mut pending = Vec::new();
        for part in part_payloads(parts, self.part_size) {
            pending.push(upload.put_part(part));
        }
        let uploaded = futures_util::stream::iter(pending).buffer_unordered(4).collect::<Vec<_>>().await;
        let result = match uploaded.into_iter().find(Result::is_err) {
            Some(Err(e)) => Err(e),
            _ => upload.complete().await.map(drop),
        };
        if result.is_err() {
            // Best effort: an upload left behind costs storage until the bucket's lifecycle
            // rule (or `AbortIncompleteMultipartUpload`) removes it; it is never visible.
            let _ = upload.abort().await;
        }
        result
    }

    /// Whether `key` holds exactly `parts`.
    async fn holds(&self, key: &ObjectPath, parts: &[&[u8]], size: usize) -> bool {
        let Ok(got) = self.store.get_opts(key, GetOptions::default()).await else { return false };
        if usize::try_from(got.meta.size).ok() != Some(size) {
            return false;
        }
        let Ok(bytes) = got.bytes().await else { return false };
        crate::is_concatenation(&bytes, parts)
    }
}

/// Splits the concatenation of `parts` into payloads of `part_size` bytes (the last shorter).
pub(super) fn part_payloads(parts: &[&[u8]], part_size: usize) -> Vec<PutPayload> {
    let mut out = Vec::new();
    let mut current: Vec<Bytes> = Vec::new();
    let mut filled = 0;
    for part in parts {
        let mut rest: &[u8] = part;
        while !rest.is_empty() {
            let (head, tail) = rest.split_at(rest.len().min(part_size - filled));
            current.push(Bytes::copy_from_slice(head));
            filled += head.len();
            rest = tail;
            if filled == part_size {
                out.push(std::mem::take(&mut current).into_iter().collect());
                filled = 0;
            }
        }
    }
    if filled > 0 {
        out.push(current.into_iter().collect());
    }
    out
}

/// How one attempt at a put ended, when it did not succeed.
pub(super) enum PutFailure {
    /// Nothing more to try: the answer is known.
    Final(Error),
    /// The transfer broke and the object is not there: worth another attempt.
    Retry(object_store::Error),
}

impl S3Storage {
    /// One attempt at storing `parts` under `key`.
    pub(super) async fn put_attempt(
        &self,
        name: &str,
        key: &ObjectPath,
        parts: &[&[u8]],
        size: usize,
        mode: PutMode,
    ) -> std::result::Result<(), PutFailure> {
        let err = match self.put_once(key, parts, size, mode).await {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        match err {
            // A 404 on a write: the bucket is not there.
            object_store::Error::NotFound { .. } => Err(PutFailure::Final(self.no_bucket("write", name))),
            // A create-only put refused: an earlier attempt whose answer was lost (here or
            // inside object_store's retries) may have landed. It did if the object holds these
            // very bytes, and then the put succeeded.
            e @ object_store::Error::AlreadyExists { .. } => {
                if self.holds(key, parts, size).await {
                    Ok(())
                } else {
                    Err(PutFailure::Final(map_err("write", name, e)))
                }
            }
            e if is_definite(&e) => Err(PutFailure::Final(map_err("write", name, e))),
            // Unknown outcome: the connection broke mid-request, or object_store gave up
            // retrying. Some servers answer a refused create-only put early and reset the
            // connection while the body is still being sent: look first.
            e => {
                if mode == PutMode::CreateNew && self.store.head(key).await.is_ok() {
                    return if self.holds(key, parts, size).await {
                        Ok(())
                    } else {
                        let exists = object_store::Error::AlreadyExists { path: key.to_string(), source: Box::new(e) };
                        Err(PutFailure::Final(map_err("write", name, exists)))
                    };
                }
                if is_transport(&e) {
                    Err(PutFailure::Retry(e))
                } else {
                    Err(PutFailure::Final(map_err("write", name, e)))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_split_at_part_size_across_input_boundaries() {
        let a = vec![1u8; 7];
        let b = vec![2u8; 5];
        let c = vec![3u8; 3];
        let payloads = part_payloads(&[&a, &b, &c], 4);
        let sizes: Vec<usize> = payloads.iter().map(PutPayload::content_length).collect();
        assert_eq!(sizes, vec![4, 4, 4, 3]);
        let joined: Vec<u8> =
            payloads.iter().flat_map(|p| p.iter().flat_map(|b| b.to_vec()).collect::<Vec<u8>>()).collect();
        assert_eq!(joined, [a, b, c].concat());
    }
}
