//! One conformance suite for every storage backend: in-memory, local, and S3 (a real s3s-fs
//! server on loopback, over plain http and over TLS with a private CA).

use std::io::ErrorKind;
use std::sync::Arc;

use cairn_engine::Error;
use cairn_engine::storage::{LocalStorage, MemStorage, PutMode, S3Options, Storage};

use crate::s3server::s3;
use crate::support::random_bytes;

fn is_conflict(e: &Error) -> bool {
    matches!(e, Error::Storage { source, .. } if source.kind() == ErrorKind::AlreadyExists)
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// Everything the engine relies on from a backend.
fn conformance(s: &dyn Storage) {
    let label = s.location();
    // put / get / stat, and put_parts as one object.
    s.put("config", b"the config", PutMode::CreateNew).unwrap();
    assert_eq!(s.get("config").unwrap(), b"the config", "{label}");
    assert_eq!(s.stat("config").unwrap(), Some(10), "{label}");
    s.put_parts("snapshots/aa", &[b"one ", b"", b"two"], PutMode::CreateNew).unwrap();
    assert_eq!(s.get("snapshots/aa").unwrap(), b"one two", "{label}");
    s.put("empty", b"", PutMode::CreateNew).unwrap();
    assert_eq!(s.get("empty").unwrap(), b"", "{label}");

    // Create-only writes never replace; overwrites do.
    let e = s.put("config", b"another", PutMode::CreateNew).unwrap_err();
    assert!(is_conflict(&e), "{label}: {e:?}");
    assert_eq!(s.get("config").unwrap(), b"the config", "{label}: a refused put changed the object");
    s.put("config", b"replaced", PutMode::Overwrite).unwrap();
    assert_eq!(s.get("config").unwrap(), b"replaced", "{label}");
    s.put("keys/new", b"fresh", PutMode::Overwrite).unwrap();
    assert_eq!(s.get("keys/new").unwrap(), b"fresh", "{label}");

    // Missing objects.
    assert!(matches!(s.get("snapshots/none"), Err(Error::Missing(n)) if n == "snapshots/none"), "{label}");
    assert_eq!(s.stat("snapshots/none").unwrap(), None, "{label}");
    assert!(matches!(s.get_range("snapshots/none", 0, 1), Err(Error::Missing(_))), "{label}");

    // Ranged reads, and ranges beyond the end.
    let data = random_bytes(100_000, 7);
    s.put("data/ab/abcdef", &data, PutMode::CreateNew).unwrap();
    assert_eq!(s.get_range("data/ab/abcdef", 0, 10).unwrap(), &data[..10], "{label}");
    assert_eq!(s.get_range("data/ab/abcdef", 4_321, 50_000).unwrap(), &data[4_321..54_321], "{label}");
    assert_eq!(s.get_range("data/ab/abcdef", 99_999, 1).unwrap(), &data[99_999..], "{label}");
    assert_eq!(s.get_range("data/ab/abcdef", 500, 0).unwrap(), b"", "{label}");
    for (offset, len) in [(99_990, 11), (100_000, 1), (200_000, 5)] {
        let e = s.get_range("data/ab/abcdef", offset, len).unwrap_err();
        assert!(matches!(e, Error::Corrupt { .. }), "{label}: {offset}+{len}: {e:?}");
    }

    // Listing is by directory: `snapshots/` does not match `snapshots-old/`.
    s.put("snapshots-old/x", b"x", PutMode::CreateNew).unwrap();
    s.put("snapshots/bb", b"b", PutMode::CreateNew).unwrap();
    assert_eq!(sorted(s.list("snapshots/").unwrap()), ["snapshots/aa", "snapshots/bb"], "{label}");
    assert_eq!(sorted(s.list("data/").unwrap()), ["data/ab/abcdef"], "{label}");
    assert_eq!(s.list("index/").unwrap(), Vec::<String>::new(), "{label}");
    let all = sorted(s.list("").unwrap());
    assert_eq!(
        all,
        ["config", "data/ab/abcdef", "empty", "keys/new", "snapshots-old/x", "snapshots/aa", "snapshots/bb"],
        "{label}"
    );

    // More than one page of listing (S3 pages hold 1000 keys).
    let names: Vec<String> = (0..1100).map(|i| format!("many/{i:05x}")).collect();
    std::thread::scope(|scope| {
        for chunk in names.chunks(150) {
            scope.spawn(move || {
                for n in chunk {
                    s.put(n, n.as_bytes(), PutMode::CreateNew).unwrap();
                }
            });
        }
    });
    assert_eq!(sorted(s.list("many/").unwrap()), names, "{label}");

    // Deleting, twice.
    s.delete("snapshots/aa").unwrap();
    s.delete("snapshots/aa").unwrap();
    assert_eq!(s.list("snapshots/").unwrap(), ["snapshots/bb"], "{label}");
    assert_eq!(s.stat("snapshots/aa").unwrap(), None, "{label}");

    // Deleting many at once (a missing name among them is no error).
    let doomed: Vec<String> = names[..1050].iter().cloned().chain(["many/missing".to_string()]).collect();
    s.delete_many(&doomed).unwrap();
    assert_eq!(sorted(s.list("many/").unwrap()), names[1050..], "{label}");
    assert_eq!(s.get("many/00000").unwrap_err().to_string(), "repository object many/00000 is missing", "{label}");

    // A large object written in parts (a multipart upload on S3 with the options used here).
    let big: Vec<Vec<u8>> = (0..5).map(|i| random_bytes(4 << 20, 100 + i)).collect();
    let parts: Vec<&[u8]> = big.iter().map(Vec::as_slice).collect();
    s.put_parts("data/cd/large", &parts, PutMode::CreateNew).unwrap();
    let whole = big.concat();
    assert_eq!(s.stat("data/cd/large").unwrap(), Some(whole.len() as u64), "{label}");
    assert!(s.get("data/cd/large").unwrap() == whole, "{label}: large object differs");
    let across = (5 << 20) - 100;
    assert_eq!(s.get_range("data/cd/large", across, 300).unwrap(), &whole[across as usize..across as usize + 300]);
    let e = s.put_parts("data/cd/large", &parts[..2], PutMode::CreateNew).unwrap_err();
    assert!(is_conflict(&e), "{label}: {e:?}");
    assert_eq!(s.stat("data/cd/large").unwrap(), Some(whole.len() as u64), "{label}");

    // Names that could escape the repository are refused before any request.
    for bad in ["../x", "a//b", "/abs", "UPPER", "a/./b", ""] {
        assert!(matches!(s.put(bad, b"x", PutMode::CreateNew), Err(Error::InvalidInput(_))), "{label}: {bad}");
        assert!(matches!(s.get(bad), Err(Error::InvalidInput(_))), "{label}: {bad}");
    }
}

#[test]
fn memory_backend_conforms() {
    conformance(&MemStorage::new());
}

#[test]
fn local_backend_conforms() {
    let dir = tempfile::tempdir().unwrap();
    conformance(&LocalStorage::new(dir.path().join("repo")));
}

/// Multipart from 8 MiB in 5 MiB parts, so the 20 MiB object above goes up in parts.
fn multipart_options(tls: bool) -> S3Options {
    S3Options { multipart_threshold: 8 << 20, part_size: 5 << 20, ..s3().options(tls) }
}

#[test]
fn s3_backend_over_http_conforms() {
    let server = s3();
    let bucket = server.bucket();
    let storage: Arc<dyn Storage> =
        server.storage_with(&format!("{}/repo/a", server.url(&bucket, false)), &multipart_options(false));
    conformance(&*storage);
    // The prefix holds everything; nothing lands beside it.
    assert!(server.bucket_dir(&bucket).join("repo/a/config").is_file());
    assert_eq!(std::fs::read_dir(server.bucket_dir(&bucket)).unwrap().count(), 1);
}

#[test]
fn s3_backend_over_tls_conforms() {
    let server = s3();
    let bucket = server.bucket();
    conformance(&*server.storage_with(&server.url(&bucket, true), &multipart_options(true)));
}

#[test]
fn s3_refuses_an_unknown_ca_a_missing_bucket_and_wrong_credentials() {
    use cairn_engine::storage::s3::{AwsSettings, Credentials, S3Location, S3Storage};
    let server = s3();
    let bucket = server.bucket();
    // TLS without the private CA: the certificate is not trusted.
    let untrusted = S3Options { cacert: None, ..server.options(true) };
    let s = server.storage_with(&server.url(&bucket, true), &untrusted);
    let e = s.put("config", b"x", PutMode::CreateNew).unwrap_err().to_string();
    assert!(e.to_lowercase().contains("certificate") || e.contains("UnknownIssuer"), "{e}");
    // A bucket that is not there.
    let s = server.storage(&format!("{bucket}-missing"), false);
    let e = s.list("snapshots/").unwrap_err().to_string();
    assert!(e.contains("does not exist"), "{e}");
    // Wrong secret: refused, and not retried for minutes.
    let wrong = AwsSettings {
        credentials: Some(Credentials {
            access_key_id: crate::s3server::ACCESS_KEY.into(),
            secret_access_key: zeroize::Zeroizing::new("wrong".into()),
            session_token: None,
        }),
        ..AwsSettings::default()
    };
    let s = S3Storage::open(S3Location::parse(&server.url(&bucket, false)).unwrap(), &server.options(false), &wrong)
        .unwrap();
    let start = std::time::Instant::now();
    let e = s.put("config", b"x", PutMode::CreateNew).unwrap_err();
    assert!(matches!(&e, Error::Storage { source, .. } if source.kind() == ErrorKind::PermissionDenied), "{e:?}");
    assert!(
        start.elapsed() < std::time::Duration::from_secs(5),
        "auth errors must not be retried: {:?}",
        start.elapsed()
    );
}
