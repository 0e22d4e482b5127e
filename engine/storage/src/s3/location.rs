//! Repository URLs for S3-compatible stores.
//!
//! - `s3:https://HOST[:PORT]/BUCKET[/PREFIX]`: path-style requests to that endpoint, the form
//!   self-hosted stores (MinIO, Ceph, Garage, s3s) understand without DNS tricks.
//! - `s3://BUCKET[/PREFIX]`: virtual-hosted style (`BUCKET.ENDPOINT`), AWS's default; the
//!   endpoint and region come from `--s3-endpoint` / `--s3-region`.

use cairn_format::error::{Error, Result};

/// Where a repository lives in an S3-compatible store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    /// `scheme://host[:port]` of a path-style URL; `None` for `s3://` URLs.
    pub endpoint: Option<String>,
    /// The bucket.
    pub bucket: String,
    /// Key prefix inside the bucket, without leading or trailing `/`; may be empty.
    pub prefix: String,
}

impl S3Location {
    /// Whether `spec` names an S3 repository (as opposed to a local path).
    pub fn is_s3(spec: &str) -> bool {
        spec.starts_with("s3:")
    }

    /// Parses either URL form; anything else is [`Error::InvalidInput`] with the expected forms.
    pub fn parse(spec: &str) -> Result<Self> {
        let bad = |why: &str| {
            Error::InvalidInput(format!(
                "bad S3 repository URL {spec:?}: {why} (expected s3:https://HOST[:PORT]/BUCKET[/PREFIX] or s3://BUCKET[/PREFIX])"
            ))
        };
        if let Some(rest) = spec.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            return Ok(S3Location {
                endpoint: None,
                bucket: bucket_name(bucket).map_err(|w| bad(&w))?,
                prefix: key_prefix(prefix).map_err(|w| bad(&w))?,
            });
        }
        let Some(url) = spec.strip_prefix("s3:") else { return Err(bad("not an s3: URL")) };
        let (scheme, rest) = if let Some(r) = url.strip_prefix("https://") {
            ("https", r)
        } else if let Some(r) = url.strip_prefix("http://") {
            ("http", r)
        } else {
            return Err(bad("the endpoint must start with https:// (or http:// with --insecure-http)"));
        };
        let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
        if host.is_empty() || host.contains(['@', '?', '#']) {
            return Err(bad("missing or invalid host"));
        }
        let path = path.trim_matches('/');
        let (bucket, prefix) = path.split_once('/').unwrap_or((path, ""));
        if bucket.is_empty() {
            return Err(bad("missing bucket"));
        }
        Ok(S3Location {
            endpoint: Some(format!("{scheme}://{host}")),
            bucket: bucket_name(bucket).map_err(|w| bad(&w))?,
            prefix: key_prefix(prefix).map_err(|w| bad(&w))?,
        })
    }

    /// Whether requests would go over plain http.
    pub fn is_plain_http(&self) -> bool {
        self.endpoint.as_deref().is_some_and(|e| e.starts_with("http://"))
    }
}

/// S3 bucket naming rules (3-63 characters of lower-case letters, digits, dots and hyphens,
/// starting and ending with a letter or digit).
fn bucket_name(b: &str) -> std::result::Result<String, String> {
    let ok_chars = b.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'.' || c == b'-');
    let ok_ends = b.bytes().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && b.bytes().last().is_some_and(|c| c.is_ascii_alphanumeric());
    if (3..=63).contains(&b.len()) && ok_chars && ok_ends {
        Ok(b.to_string())
    } else {
        Err(format!("invalid bucket name {b:?}"))
    }
}

/// A prefix of `/`-separated non-empty components, none `.` or `..`.
fn key_prefix(p: &str) -> std::result::Result<String, String> {
    let p = p.trim_matches('/');
    if p.is_empty() {
        return Ok(String::new());
    }
    if p.split('/').any(|c| c.is_empty() || c == "." || c == ".." || c.chars().any(char::is_control)) {
        return Err(format!("invalid prefix {p:?}"));
    }
    Ok(p.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_style_urls() {
        let l = S3Location::parse("s3:https://minio.example:9000/backups/host-a/daily").unwrap();
        assert_eq!(l.endpoint.as_deref(), Some("https://minio.example:9000"));
        assert_eq!(l.bucket, "backups");
        assert_eq!(l.prefix, "host-a/daily");
        assert!(!l.is_plain_http());
        let l = S3Location::parse("s3:http://127.0.0.1:8014/bkt/").unwrap();
        assert_eq!((l.endpoint.as_deref(), l.prefix.as_str()), (Some("http://127.0.0.1:8014"), ""));
        assert!(l.is_plain_http());
    }

    #[test]
    fn virtual_hosted_urls() {
        let l = S3Location::parse("s3://my-bucket").unwrap();
        assert_eq!((l.endpoint, l.bucket.as_str(), l.prefix.as_str()), (None, "my-bucket", ""));
        let l = S3Location::parse("s3://my-bucket/a/b/").unwrap();
        assert_eq!(l.prefix, "a/b");
    }

    #[test]
    fn bad_urls_are_rejected_with_the_expected_forms() {
        for bad in [
            "s3:",
            "s3://",
            "s3://ab",
            "s3://Upper",
            "s3://-bucket",
            "s3:ftp://host/bucket",
            "s3:https:///bucket",
            "s3:https://host",
            "s3:https://host/",
            "s3:https://user@host/bucket",
            "s3://bucket/a//b",
            "s3://bucket/a/../b",
            "/local/path",
        ] {
            let e = S3Location::parse(bad).unwrap_err().to_string();
            assert!(e.contains("s3:https://HOST"), "{bad}: {e}");
        }
        assert!(S3Location::is_s3("s3://b"));
        assert!(!S3Location::is_s3("/srv/repo"));
    }
}
