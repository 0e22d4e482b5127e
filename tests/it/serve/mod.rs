//! `cairn serve` against real server processes on loopback (issue 22's acceptance): the
//! storage contract over TLS, the permission matrix, hostile clients and the server log.

pub mod server;

mod hostile;
mod permissions;
mod quota;
mod ransomware;
mod tree_cache;

use std::io::ErrorKind;

use cairn_engine::Error;
use cairn_engine::format::names;
use cairn_engine::storage::{PutMode, Storage};
use cairn_engine::{ObjectId, PackId};

use crate::support::random_bytes;
use server::Served;

/// A canonical object name of `dir` for a random id.
fn name_in(dir: names::Dir, seed: u64) -> String {
    let bytes: [u8; 32] = random_bytes(32, seed).try_into().unwrap();
    dir.object(&ObjectId(bytes))
}

/// A pack's bytes and its name (the hash of the bytes).
fn pack(len: usize, seed: u64) -> (String, Vec<u8>) {
    let bytes = random_bytes(len, seed);
    (names::pack(&PackId::of(&bytes)), bytes)
}

/// Every file under `dir`, relative, with its content hash (none when `dir` does not exist).
fn tree(dir: &std::path::Path) -> Vec<(String, String)> {
    if !dir.exists() {
        return Vec::new();
    }
    let mut out: Vec<(String, String)> = crate::support::walk_files(dir)
        .into_iter()
        .map(|p| {
            let rel = p.strip_prefix(dir).unwrap().display().to_string();
            (rel, blake3::hash(&std::fs::read(&p).unwrap()).to_hex().to_string())
        })
        .collect();
    out.sort();
    out
}

fn is_conflict(e: &Error) -> bool {
    matches!(e, Error::Storage { source, .. } if source.kind() == ErrorKind::AlreadyExists)
}

/// What the engine relies on from a backend, with the names a repository has (the server
/// takes no other).
fn conformance(s: &dyn Storage) {
    let snap = name_in(names::Dir::Snapshots, 1);
    s.put("config", b"the config", PutMode::CreateNew).unwrap();
    assert_eq!(s.get("config").unwrap(), b"the config");
    assert_eq!(s.stat("config").unwrap(), Some(10));
    assert!(s.modified("config").unwrap().is_some());
    s.put_parts(&snap, &[b"one ", b"", b"two"], PutMode::CreateNew).unwrap();
    assert_eq!(s.get(&snap).unwrap(), b"one two");
    let e = s.put("config", b"another", PutMode::CreateNew).unwrap_err();
    assert!(is_conflict(&e), "{e:?}");
    assert_eq!(s.get("config").unwrap(), b"the config");
    s.put("config", b"replaced", PutMode::Overwrite).unwrap();
    assert_eq!(s.get("config").unwrap(), b"replaced");
    let missing = name_in(names::Dir::Snapshots, 2);
    assert!(matches!(s.get(&missing), Err(Error::Missing(n)) if n == missing));
    assert_eq!(s.stat(&missing).unwrap(), None);
    assert!(matches!(s.get_range(&missing, 0, 1), Err(Error::Missing(_))));

    let (p, data) = pack(100_000, 7);
    s.put(&p, &data, PutMode::CreateNew).unwrap();
    assert_eq!(s.get_range(&p, 0, 10).unwrap(), &data[..10]);
    assert_eq!(s.get_range(&p, 4_321, 50_000).unwrap(), &data[4_321..54_321]);
    assert_eq!(s.get_range(&p, 99_999, 1).unwrap(), &data[99_999..]);
    assert_eq!(s.get_range(&p, 500, 0).unwrap(), b"");
    for (offset, len) in [(99_990, 11), (100_000, 1), (200_000, 5)] {
        let e = s.get_range(&p, offset, len).unwrap_err();
        assert!(matches!(e, Error::Corrupt { .. }), "{offset}+{len}: {e:?}");
    }
    let mut snaps = s.list("snapshots/").unwrap();
    snaps.sort();
    assert_eq!(snaps, std::slice::from_ref(&snap));
    assert_eq!(s.list("data/").unwrap(), std::slice::from_ref(&p));
    assert_eq!(s.list("index/").unwrap(), Vec::<String>::new());

    // Many objects at once, and deleting many.
    let many: Vec<String> = (0..300).map(|i| name_in(names::Dir::Index, 1000 + i)).collect();
    std::thread::scope(|scope| {
        for chunk in many.chunks(50) {
            scope.spawn(move || {
                for n in chunk {
                    s.put(n, n.as_bytes(), PutMode::CreateNew).unwrap();
                }
            });
        }
    });
    let mut listed = s.list("index/").unwrap();
    listed.sort();
    let mut expected = many.clone();
    expected.sort();
    assert_eq!(listed, expected);
    s.delete_many(&many[..250]).unwrap();
    assert_eq!(s.list("index/").unwrap().len(), 50);
    s.delete(&snap).unwrap();
    s.delete(&snap).unwrap();
    assert_eq!(s.stat(&snap).unwrap(), None);

    // A large pack in parts.
    let big: Vec<Vec<u8>> = (0..5).map(|i| random_bytes(4 << 20, 100 + i)).collect();
    let parts: Vec<&[u8]> = big.iter().map(Vec::as_slice).collect();
    let whole = big.concat();
    let large = names::pack(&PackId::of(&whole));
    s.put_parts(&large, &parts, PutMode::CreateNew).unwrap();
    assert_eq!(s.stat(&large).unwrap(), Some(whole.len() as u64));
    assert!(s.get(&large).unwrap() == whole, "large object differs");
    let across = (5 << 20) - 100;
    assert_eq!(s.get_range(&large, across, 300).unwrap(), &whole[across as usize..across as usize + 300]);

    for bad in ["../x", "a//b", "/abs", "UPPER", "a/./b", ""] {
        assert!(matches!(s.put(bad, b"x", PutMode::CreateNew), Err(Error::InvalidInput(_))), "{bad}");
        assert!(matches!(s.get(bad), Err(Error::InvalidInput(_))), "{bad}");
    }
}

#[test]
fn the_rest_backend_over_tls_conforms_in_front_of_a_directory() {
    let server = Served::local(&[("admin", &["main=admin"])], &[]);
    conformance(&*server.storage("main", "admin"));
    assert!(server.repo_dir("main").join("config").is_file());
}

#[test]
fn the_rest_backend_over_tls_conforms_in_front_of_s3() {
    let server = Served::s3(&[("admin", &["main=admin"])], &[]);
    conformance(&*server.storage("main", "admin"));
    assert!(server.repo_dir("main").join("config").is_file());
}

#[test]
fn a_client_certificate_authenticates_an_identity_without_a_token() {
    let server = Served::local(&[("admin", &["main=admin"])], &[]);
    let out = server::cairn()
        .args(["serve", "add-identity", "host-cert", "--repository", "main=read", "--identities"])
        .arg(&server.identities)
        .arg("--certificate")
        .arg(&server.certs.client_cert)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut server = server;
    server.signal(nix::sys::signal::Signal::SIGHUP);
    server.storage("main", "admin").put("config", b"c", PutMode::CreateNew).unwrap();
    let opts = cairn_engine::storage::RestOptions {
        client_cert: Some(server.certs.client_cert.clone()),
        client_key: Some(server.certs.client_key.clone()),
        ..server.options(None)
    };
    // The identities file is read again on SIGHUP: wait for it.
    let by_cert = server.storage_with("main", &opts);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match by_cert.get("config") {
            Ok(bytes) => {
                assert_eq!(bytes, b"c");
                break;
            }
            Err(e) if std::time::Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            Err(e) => panic!("the certificate's identity was not taken up: {e}"),
        }
    }
    let e = by_cert.put(&name_in(names::Dir::Snapshots, 5), b"x", PutMode::CreateNew).unwrap_err();
    assert!(e.to_string().contains("`append`"), "{e}");
    // Without a certificate or token: 401.
    let anonymous = server.storage_with("main", &server.options(None));
    let e = anonymous.get("config").unwrap_err();
    assert!(matches!(&e, Error::Storage { source, .. } if source.kind() == ErrorKind::PermissionDenied), "{e:?}");
}

#[test]
fn two_instances_over_one_bucket_serve_two_clients_at_once_and_the_repository_checks_clean() {
    let ids: &[(&str, &[&str])] = &[("admin", &["main=admin"]), ("web1", &["main=append"]), ("web2", &["main=append"])];
    let a = Served::s3(ids, &[]);
    let b = a.another_instance();
    let work = tempfile::tempdir().unwrap();
    let pw = work.path().join("pw");
    std::fs::write(&pw, "two instances\n").unwrap();
    let run = |out: std::process::Output, what: &str| {
        assert!(out.status.success(), "{what}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let cache = |n: &str| work.path().join(format!("cache-{n}"));
    run(
        a.cairn_as("admin", "main", &cache("admin"), &pw)
            .args(["init", "--no-recovery-code", "--kdf-memory", "8192", "--kdf-iterations", "1"])
            .output()
            .unwrap(),
        "init",
    );
    let sources: Vec<std::path::PathBuf> = (0..2)
        .map(|i| {
            let dir = work.path().join(format!("src{i}"));
            std::fs::create_dir_all(&dir).unwrap();
            for f in 0..20 {
                std::fs::write(dir.join(format!("f{f}")), random_bytes(100_000, 100 * i + f)).unwrap();
            }
            dir
        })
        .collect();
    let children: Vec<_> = [(&a, "web1", &sources[0]), (&b, "web2", &sources[1])]
        .into_iter()
        .map(|(server, who, src)| {
            server.cairn_as(who, "main", &cache(who), &pw).arg("snapshot").arg(src).spawn().unwrap()
        })
        .collect();
    for child in children {
        run(child.wait_with_output().unwrap(), "a snapshot through one of the instances");
    }
    let check =
        a.cairn_as("admin", "main", &cache("admin"), &pw).args(["--json", "check", "--read-data"]).output().unwrap();
    run(check, "check --read-data");
    let listed = b.cairn_as("admin", "main", &cache("admin-b"), &pw).args(["--json", "snapshots"]).output().unwrap();
    let list: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 2, "{list}");
}
