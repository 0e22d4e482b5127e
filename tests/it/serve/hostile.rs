//! Hostile clients: names that try to escape, packs that lie about their hash, bodies over the
//! limit, clients that stall, many clients at once, a server killed mid-upload, and the
//! server log's tamper evidence.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use cairn_engine::Error;
use cairn_engine::format::names;
use cairn_engine::storage::PutMode;

use super::server::{Served, cairn};
use super::{name_in, pack, tree};
use crate::support::random_bytes;

/// A TLS connection to the server that speaks raw HTTP.
fn connect(server: &Served) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_file_iter(&server.certs.ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let conn = rustls::ClientConnection::new(Arc::new(config), "localhost".try_into().unwrap()).unwrap();
    let tcp = TcpStream::connect(server.addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    rustls::StreamOwned::new(conn, tcp)
}

/// Sends `head` (and `body`) and reads the answer's status and text (the connection closes).
pub(super) fn raw(server: &Served, head: &str, body: &[u8]) -> (u16, String) {
    try_raw(server, head, body).unwrap()
}

/// [`raw`], with the failure to send (a connection the server reset) as an error.
fn try_raw(server: &Served, head: &str, body: &[u8]) -> std::io::Result<(u16, String)> {
    let mut s = connect(server);
    s.write_all(head.as_bytes())?;
    s.write_all(body)?;
    s.flush()?;
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer).to_string();
    let status = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    Ok((status, text))
}

fn request(server: &Served, method: &str, path: &str, token: &str, extra: &str, body: &[u8]) -> (u16, String) {
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n",
        body.len()
    );
    raw(server, &head, body)
}

#[test]
fn names_that_escape_and_packs_that_lie_are_refused_and_nothing_lands() {
    let server = Served::local(&[("admin", &["main=admin"])], &[]);
    let admin = server.storage("main", "admin");
    admin.put("config", b"config", PutMode::CreateNew).unwrap();
    let token = server.tokens["admin"].clone();
    let before = tree(&server.repo_dir("main"));
    for path in [
        "/main/../main/config",
        "/main/data/../config",
        "/main/%2e%2e/config",
        "/main/keys/../../etc/passwd",
        "/main//config",
        "/main/CONFIG",
        "/main/server/lock-owners/x",
        "/../etc/passwd",
        "/Main/config",
    ] {
        for method in ["GET", "PUT", "DELETE"] {
            let (status, text) = request(&server, method, path, &token, "", b"x");
            assert!(status == 400 || status == 404, "{method} {path}: {text}");
        }
    }
    // A pack whose bytes do not hash to its name: refused (422), not stored.
    let (name, _) = pack(10_000, 1);
    let e = admin.put(&name, &random_bytes(10_000, 2), PutMode::CreateNew).unwrap_err();
    assert!(e.to_string().contains("422"), "{e}");
    assert_eq!(admin.stat(&name).unwrap(), None);
    assert_eq!(tree(&server.repo_dir("main")), before, "nothing changed");
    // Ranges that overflow or ask for more than any object holds.
    for range in ["bytes=0-18446744073709551615", "bytes=18446744073709551615-1", "bytes=5-", "bytes=-5"] {
        let (status, text) = request(&server, "GET", "/main/config", &token, &format!("Range: {range}\r\n"), b"");
        assert_eq!(status, 400, "{range}: {text}");
    }
}

#[test]
fn bodies_over_the_limit_are_refused_before_they_are_read() {
    let server = Served::local(&[("admin", &["main=admin"])], &["--max-body", "1MiB"]);
    let admin = server.storage("main", "admin");
    let (name, bytes) = pack(2 << 20, 3);
    let e = admin.put(&name, &bytes, PutMode::CreateNew).unwrap_err().to_string();
    // The server answers 413 and closes as soon as it has the headers: a client still sending
    // the body may see that answer, or only the connection closed under it (a loaded machine
    // decides which). Either way nothing is stored.
    let closed = e.contains("Broken pipe") || e.contains("Connection reset") || e.contains("connection closed");
    assert!(e.contains("413") || closed, "{e}");
    assert_eq!(admin.stat(&name).unwrap(), None, "refused, not stored");
    // A huge announced length is answered at once, without waiting for the body.
    // Had it waited for the body, the read would time out with no answer at all.
    let (status, _) = raw(
        &server,
        &format!(
            "PUT /main/{name} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {}\r\nContent-Length: 1000000000000\r\n\r\n",
            server.tokens["admin"]
        ),
        b"",
    );
    assert_eq!(status, 413);
    // A snapshot is not a pack: over 64 MiB it is refused whatever --max-body says.
    let (status, _) = request(&server, "PUT", "/main/config", &server.tokens["admin"], "", &[0; 100]);
    assert_eq!(status, 201);
}

#[test]
fn a_slow_client_is_dropped_after_the_timeout_while_others_are_served() {
    let server = Served::local(
        &[("admin", &["main=admin"])],
        &["--header-timeout", "1s", "--body-timeout", "1s", "--max-body", "64MiB", "--body-memory", "64MiB"],
    );
    let admin = server.storage("main", "admin");
    // An answer never taken: a 48 MiB pack asked for and not read, holding most of the
    // memory budget until the server gives up on it.
    let (big, bytes) = pack(48 << 20, 77);
    admin.put(&big, &bytes, PutMode::CreateNew).unwrap();
    let mut not_reading = connect(&server);
    let ask = format!(
        "GET /main/{big} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {}\r\n\r\n",
        server.tokens["admin"]
    );
    not_reading.write_all(ask.as_bytes()).unwrap();
    not_reading.flush().unwrap();
    // A connection left idle after its answer.
    let mut idle = connect(&server);
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    idle.flush().unwrap();
    // Headers that never end.
    let mut slow_headers = connect(&server);
    slow_headers.write_all(b"GET /main/config HTTP/1.1\r\nHost: loc").unwrap();
    slow_headers.flush().unwrap();
    // A body that stalls.
    let mut slow_body = connect(&server);
    let snap = name_in(names::Dir::Snapshots, 9);
    slow_body
        .write_all(
            format!(
                "PUT /main/{snap} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {}\r\nContent-Length: 1000\r\n\r\n0123456789",
                server.tokens["admin"]
            )
            .as_bytes(),
        )
        .unwrap();
    slow_body.flush().unwrap();
    // Others are served meanwhile.
    admin.put("config", b"c", PutMode::CreateNew).unwrap();
    assert_eq!(admin.get("config").unwrap(), b"c");
    // The reads give up after 20 s (the socket's timeout): ending before that, the server cut
    // the connection off, after its 1 s timeouts.
    let mut rest = Vec::new();
    let ended = slow_headers.read_to_end(&mut rest);
    assert!(
        !matches!(&ended, Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)),
        "the stalled headers were not cut off: {ended:?}"
    );
    let mut answer = Vec::new();
    let _ = slow_body.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert_eq!(admin.stat(&snap).unwrap(), None, "a stalled upload stores nothing");
    // The pack comes whole to a client that reads, once the one that did not is cut off (the
    // budget has room for one answer of its size).
    assert!(admin.get(&big).unwrap() == bytes);
    let mut taken = Vec::new();
    let ended = not_reading.read_to_end(&mut taken);
    assert!(
        !matches!(&ended, Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)),
        "the client that did not read was not cut off: {ended:?}"
    );
    assert!(taken.len() < bytes.len(), "the whole answer was sent ({} bytes)", taken.len());
    let mut answer = Vec::new();
    let ended = idle.read_to_end(&mut answer);
    assert!(
        !matches!(&ended, Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)),
        "the idle connection was not closed: {ended:?}"
    );
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"));
}

#[test]
fn two_hundred_clients_at_once_lose_nothing_in_bounded_memory() {
    let server = Served::local(&[("admin", &["main=admin"])], &[]);
    let names: Vec<String> = (0..200).map(|i| name_in(names::Dir::Snapshots, 5000 + i)).collect();
    std::thread::scope(|scope| {
        for (i, name) in names.iter().enumerate() {
            let server = &server;
            scope.spawn(move || {
                // A client (and connection) each.
                let s = server.storage("main", "admin");
                let body = random_bytes(64 << 10, 9000 + i as u64);
                s.put(name, &body, PutMode::CreateNew).unwrap();
                assert!(s.get(name).unwrap() == body);
            });
        }
    });
    let mut listed = server.storage("main", "admin").list("snapshots/").unwrap();
    listed.sort();
    let mut expected = names.clone();
    expected.sort();
    assert_eq!(listed, expected);
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.pid())).unwrap();
    let peak_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap();
    assert!(peak_kib < 256 * 1024, "server peak RSS {peak_kib} KiB");
}

#[test]
fn a_server_killed_during_an_upload_leaves_no_partial_object() {
    let mut server = Served::local(&[("admin", &["main=admin"])], &[]);
    let (name, bytes) = pack(8 << 20, 11);
    let mut upload = connect(&server);
    upload
        .write_all(
            format!(
                "PUT /main/{name} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {}\r\nIf-None-Match: *\r\nContent-Length: {}\r\n\r\n",
                server.tokens["admin"],
                bytes.len()
            )
            .as_bytes(),
        )
        .unwrap();
    upload.write_all(&bytes[..bytes.len() / 2]).unwrap();
    upload.flush().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    server.signal(nix::sys::signal::Signal::SIGKILL);
    drop(upload);
    server.restart();
    let admin = server.storage("main", "admin");
    assert_eq!(admin.stat(&name).unwrap(), None);
    assert_eq!(admin.list("data/").unwrap(), Vec::<String>::new());
    let files = tree(&server.repo_dir("main"));
    assert!(files.iter().all(|(f, _)| !f.contains("data/")), "{files:?}");
    // The whole upload, after the restart, lands.
    admin.put(&name, &bytes, PutMode::CreateNew).unwrap();
    assert!(admin.get(&name).unwrap() == bytes);
}

#[test]
fn the_server_log_reports_edited_deleted_and_reordered_lines_and_holds_no_token() {
    let mut server = Served::local(&[("admin", &["main=admin"]), ("reader", &["main=read"])], &[]);
    let admin = server.storage("main", "admin");
    admin.put("config", b"c", PutMode::CreateNew).unwrap();
    for i in 0..4 {
        admin.put(&name_in(names::Dir::Snapshots, 70 + i), b"s", PutMode::CreateNew).unwrap();
    }
    let reader = server.storage("main", "reader");
    assert!(matches!(reader.delete("config"), Err(Error::Storage { .. })));
    // A flood of requests with a wrong token: a few recorded, the rest counted.
    let wrong = "cairn_0000000000000000000000000000000000000000000000000000000000000000";
    for _ in 0..60 {
        assert_eq!(request(&server, "DELETE", "/main/config", wrong, "", b"").0, 401);
    }
    let (_, metrics) = raw(&server, "GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n", b"");
    let skipped: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("cairn_server_log_lines_skipped_total "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("{metrics}"));
    server.signal(nix::sys::signal::Signal::SIGTERM);
    let unauthenticated = std::fs::read_to_string(&server.log).unwrap().matches("\"status\":401").count() as u64;
    assert!((10..40).contains(&unauthenticated), "{unauthenticated} refusals recorded of 60");
    assert_eq!(unauthenticated + skipped, 60);
    let text = std::fs::read_to_string(&server.log).unwrap();
    for token in server.tokens.values() {
        assert!(!text.contains(token.as_str()), "a token is in the log");
    }
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() >= 6, "{text}");
    assert!(lines.iter().any(|l| l.contains("\"identity\":\"reader\"") && l.contains("\"status\":403")), "{text}");
    let verify = |content: &str| {
        std::fs::write(&server.log, content).unwrap();
        let out = cairn().args(["serve", "verify-log"]).arg(&server.log).output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stdout).to_string())
    };
    let whole = format!("{}\n", lines.join("\n"));
    assert_eq!(verify(&whole).0, Some(0));
    let edited = whole.replacen("\"status\":403", "\"status\":204", 1);
    let (code, out) = verify(&edited);
    assert_eq!(code, Some(1));
    assert!(out.contains("edited"), "{out}");
    let mut deleted = lines.clone();
    deleted.remove(2);
    let (code, out) = verify(&format!("{}\n", deleted.join("\n")));
    assert_eq!(code, Some(1));
    assert!(out.contains("line 3"), "{out}");
    let mut reordered = lines.clone();
    reordered.swap(1, 2);
    let (code, out) = verify(&format!("{}\n", reordered.join("\n")));
    assert_eq!(code, Some(1));
    assert!(out.contains("does not follow"), "{out}");
}

#[test]
fn an_append_host_adds_audit_entries_only_near_the_top_of_the_log() {
    use cairn_engine::format::audit::entry_name;
    let server = Served::local(&[("admin", &["main=admin"]), ("append", &["main=append"])], &[]);
    let (admin, append) = (server.storage("main", "admin"), server.storage("main", "append"));
    let before =
        |e: Error| matches!(e, Error::Storage { source, .. } if source.to_string().contains("does not follow the log"));
    // Nothing may start a log but the first entry.
    assert!(before(append.put(&entry_name(1, &[1; 32]), b"e", PutMode::CreateNew).unwrap_err()));
    admin.put(&entry_name(0, &[0; 32]), b"init", PutMode::CreateNew).unwrap();
    // A second beginning, and an entry far above the log, are refused; the next level is not,
    // nor a concurrent writer's entry beside it.
    assert!(before(append.put(&entry_name(0, &[2; 32]), b"e", PutMode::CreateNew).unwrap_err()));
    assert!(before(append.put(&entry_name(999_999_999, &[3; 32]), b"e", PutMode::CreateNew).unwrap_err()));
    append.put(&entry_name(1, &[4; 32]), b"e", PutMode::CreateNew).unwrap();
    append.put(&entry_name(1, &[5; 32]), b"e", PutMode::CreateNew).unwrap();
    append.put(&entry_name(2, &[6; 32]), b"e", PutMode::CreateNew).unwrap();
    let mut listed = admin.list("audit/").unwrap();
    listed.sort();
    let expected =
        vec![entry_name(0, &[0; 32]), entry_name(1, &[4; 32]), entry_name(1, &[5; 32]), entry_name(2, &[6; 32])];
    assert_eq!(listed, expected);
    // Up to level 7: a writer a few levels behind the top still lands, one far behind does not.
    for seq in 3..=7u8 {
        append.put(&entry_name(u64::from(seq), &[seq; 32]), b"e", PutMode::CreateNew).unwrap();
    }
    append.put(&entry_name(3, &[33; 32]), b"e", PutMode::CreateNew).unwrap();
    assert!(before(append.put(&entry_name(2, &[32; 32]), b"e", PutMode::CreateNew).unwrap_err()));
    // One level takes sixteen entries, not a seventeenth.
    for i in 0..16u8 {
        append.put(&entry_name(8, &[100 + i; 32]), b"e", PutMode::CreateNew).unwrap();
    }
    assert!(before(append.put(&entry_name(8, &[200; 32]), b"e", PutMode::CreateNew).unwrap_err()));
}

#[test]
fn one_identity_cannot_hold_the_whole_upload_budget() {
    // 8 MiB of budget: an identity's share is 2 MiB.
    let server =
        Served::local(&[("host-a", &["main=append"]), ("host-b", &["main=append"])], &["--body-memory", "8MiB"]);
    let (name, bytes) = pack(2 << 20, 31);
    // host-a starts an upload and drips it: with `Expect: 100-continue`, the server's go-ahead
    // says the body is being read, its share taken.
    let mut dripping = connect(&server);
    let head = format!(
        "PUT /main/{name} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {}\r\nContent-Length: {}\r\nIf-None-Match: *\r\nExpect: 100-continue\r\n\r\n",
        server.tokens["host-a"],
        bytes.len()
    );
    dripping.write_all(head.as_bytes()).unwrap();
    dripping.flush().unwrap();
    let mut go = [0u8; 25];
    dripping.read_exact(&mut go).unwrap();
    assert!(go.starts_with(b"HTTP/1.1 100 Continue"), "{}", String::from_utf8_lossy(&go));
    dripping.write_all(&bytes[..10]).unwrap();
    dripping.flush().unwrap();
    // Another upload of host-a's waits for its share; host-b's goes through. Asked with
    // `Expect: 100-continue` and no body sent: the server refuses before it reads one, and
    // closes, which would break a body being written.
    let (other, other_bytes) = pack(1 << 20, 32);
    let head = format!(
        "PUT /main/{other} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {}\r\nContent-Length: {}\r\nIf-None-Match: *\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n",
        server.tokens["host-a"],
        other_bytes.len()
    );
    let (status, text) = raw(&server, &head, &[]);
    assert_eq!(status, 503, "{text}");
    assert!(text.contains("share"), "{text}");
    server.storage("main", "host-b").put(&other, &other_bytes, PutMode::CreateNew).unwrap();
    // Once host-a's upload ends, its share is back.
    dripping.write_all(&bytes[10..]).unwrap();
    dripping.flush().unwrap();
    let mut answer = [0u8; 12];
    dripping.read_exact(&mut answer).unwrap();
    assert_eq!(&answer, b"HTTP/1.1 201");
    let (third, third_bytes) = pack(1 << 20, 33);
    server.storage("main", "host-a").put(&third, &third_bytes, PutMode::CreateNew).unwrap();
}

#[test]
fn one_address_holds_at_most_its_share_of_connections() {
    let server = Served::local(&[("admin", &["main=admin"])], &["--max-connections-per-address", "2"]);
    // Two connections held open (TLS done, no request yet) take 127.0.0.1's share.
    let held: Vec<_> = (0..2)
        .map(|_| {
            let mut c = connect(&server);
            c.conn.complete_io(&mut c.sock).unwrap();
            c
        })
        .collect();
    // A third is closed unserved: its handshake fails.
    let mut third = connect(&server);
    assert!(third.conn.complete_io(&mut third.sock).is_err(), "a third connection was served");
    drop(held);
    // Once they close, the address is served again (the close may take a moment to be seen:
    // the client retries).
    let admin = server.storage("main", "admin");
    admin.put("config", b"c", PutMode::CreateNew).unwrap();
    assert_eq!(admin.get("config").unwrap(), b"c");
    // The client's pooled connection would hold one of the two places.
    drop(admin);
    // The metrics connection too may come before the server saw the held ones close: it is
    // refused (reset) until then, so it is tried again until a deadline (a count would be
    // used up in a second while a loaded machine keeps the server from running).
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let metrics = std::iter::from_fn(|| (std::time::Instant::now() < deadline).then_some(()))
        .find_map(|()| {
            try_raw(&server, "GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n", b"")
                .ok()
                .filter(|(status, _)| *status == 200)
                .map(|(_, text)| text)
        })
        .expect("the address is served again once its connections closed");
    let refused: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("cairn_server_connections_refused_total "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("{metrics}"));
    assert!(refused >= 1, "{metrics}");
}
