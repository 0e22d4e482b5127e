//! Repository quotas through real `cairn serve` processes: an append-only host is refused
//! beyond the quota with exit 14 and a message that says so, an identity that may delete is
//! not (it is what frees room), and a raised quota lets the host back up again.

use std::path::Path;

use super::server::{Served, cairn};
use crate::support::random_bytes;

fn set_quota(server: &Served, repo: &str, size: &str) {
    let out =
        cairn().args(["serve", "set-quota", repo, size, "--identities"]).arg(&server.identities).output().unwrap();
    assert!(out.status.success(), "set-quota: {}", String::from_utf8_lossy(&out.stderr));
}

fn repository_bytes(server: &Served, repo: &str) -> u64 {
    crate::support::walk_files(&server.repo_dir(repo)).iter().map(|p| std::fs::metadata(p).unwrap().len()).sum()
}

/// Runs `cairn ARGS` as `who` on repository main; fails the test unless it exits 0 when `ok`.
fn run(server: &Served, work: &Path, who: &str, args: &[&str]) -> std::process::Output {
    let cache = work.join(format!("cache-{who}"));
    server.cairn_as(who, "main", &cache, &work.join("pw")).args(args).output().unwrap()
}

fn ok(out: std::process::Output) {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn an_append_host_is_refused_beyond_the_quota_and_an_admin_is_not() {
    let mut server = Served::local(&[("admin", &["main=admin"]), ("web1", &["main=append"])], &[]);
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path();
    std::fs::write(work.join("pw"), "quota test password\n").unwrap();
    ok(run(&server, work, "admin", &["init"]));
    let (small, big) = (work.join("small"), work.join("big"));
    std::fs::create_dir_all(&small).unwrap();
    std::fs::create_dir_all(&big).unwrap();
    std::fs::write(small.join("a"), random_bytes(64 << 10, 1)).unwrap();
    std::fs::write(big.join("b"), random_bytes(4 << 20, 2)).unwrap();

    // Room for the small backup and its metadata, not for the big one.
    set_quota(&server, "main", &(repository_bytes(&server, "main") + (1 << 20)).to_string());
    assert!(std::fs::read_to_string(&server.identities).unwrap().contains("[quotas]"));
    server.restart();
    ok(run(&server, work, "web1", &["snapshot", small.to_str().unwrap()]));
    let refused = run(&server, work, "web1", &["snapshot", big.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(14), "{stderr}");
    assert!(stderr.contains("over its quota"), "{stderr}");
    let held = repository_bytes(&server, "main");
    assert!(held < (4 << 20), "the refused backup stored {held} bytes");

    // An admin is not held to it: it is what forgets and prunes the repository back under.
    ok(run(&server, work, "admin", &["snapshot", big.to_str().unwrap()]));
    assert!(repository_bytes(&server, "main") > (4 << 20));

    // Without the quota the host backs up again, and every byte comes back.
    set_quota(&server, "main", "none");
    assert!(!std::fs::read_to_string(&server.identities).unwrap().contains("[quotas]"));
    server.restart();
    ok(run(&server, work, "web1", &["snapshot", big.to_str().unwrap()]));
    let target = work.join("restored");
    ok(run(&server, work, "admin", &["restore", "latest", "--target", target.to_str().unwrap()]));
    let restored = crate::support::walk_files(&target);
    assert_eq!(restored.len(), 1, "{restored:?}");
    assert_eq!(std::fs::read(&restored[0]).unwrap(), std::fs::read(big.join("b")).unwrap());
}
