//! Reading a request body of a announced size within a time limit: a client that stops
//! sending (or drips bytes) is cut off after the body timeout, one that sends more or less than it announced
//! is refused, and nothing beyond the announced size is ever buffered.

use std::time::Duration;

use http_body_util::BodyExt;
use hyper::body::Incoming;

/// Why a body could not be read.
#[derive(Debug, PartialEq, Eq)]
pub enum BodyError {
    /// No byte came for the body timeout, or the body came too slowly.
    Stalled,
    /// More or fewer bytes than announced, or the connection broke.
    Malformed(String),
}

/// Reads exactly `len` bytes of `body`, waiting at most `idle` for each part, and in all at
/// most `idle` plus the time `len` bytes take at `min_rate` bytes a second.
pub async fn read_exact(mut body: Incoming, len: u64, idle: Duration, min_rate: u64) -> Result<Vec<u8>, BodyError> {
    let deadline = tokio::time::Instant::now() + idle + Duration::from_secs(len / min_rate.max(1));
    let cap = usize::try_from(len).map_err(|_| BodyError::Malformed("body too large".into()))?;
    let mut bytes = Vec::with_capacity(cap);
    loop {
        let next = deadline.min(tokio::time::Instant::now() + idle);
        match tokio::time::timeout_at(next, body.frame()).await {
            Err(_) => return Err(BodyError::Stalled),
            Ok(None) => break,
            Ok(Some(Err(e))) => return Err(BodyError::Malformed(format!("the body broke off: {e}"))),
            Ok(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    if bytes.len() + data.len() > cap {
                        return Err(BodyError::Malformed(format!("more than the {len} bytes announced")));
                    }
                    bytes.extend_from_slice(&data);
                }
            }
        }
    }
    if bytes.len() != cap {
        return Err(BodyError::Malformed(format!("{} bytes of the {len} announced", bytes.len())));
    }
    Ok(bytes)
}
