//! The ransomware scenario (SPEC §15.4, §15.5): a host backs up through `cairn serve` over TLS
//! with an `append` identity and a write-only key file. It is taken over: the attacker holds
//! its token and key file, and tries to read, delete, overwrite and forget, through the `cairn`
//! binary and with raw requests. Everything fails and the repository stays byte for byte as it
//! was; an administrator then restores every snapshot.

use std::fs;

use cairn_engine::format::names::Dir;
use cairn_engine::storage::PutMode;

use super::server::Served;
use super::tree;
use crate::support::*;

#[test]
fn a_host_taken_over_with_its_write_only_key_and_append_token_reads_and_destroys_nothing() {
    let work = tempfile::tempdir().unwrap();
    let w = |name: &str| work.path().join(name);
    fs::write(w("pw"), "the admin's password\n").unwrap();
    let server = Served::local(&[("admin", &["main=admin"]), ("web1", &["main=append"])], &[]);
    let admin = || server.cairn_as("admin", "main", &w("admin-cache"), &w("pw"));
    let web1 = || {
        let mut c = server.cairn_with_token("web1", "main", &w("web1-cache"));
        c.arg("--key-file").arg(w("web1.key"));
        c
    };
    let ok = |mut c: std::process::Command, args: &[&str]| -> serde_json::Value {
        let out = c.args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", stderr_of(&out));
        serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
    };
    ok(admin(), &["init", "--no-recovery-code", "--kdf-memory", "8192", "--kdf-iterations", "1"]);
    let key = w("web1.key");
    ok(admin(), &["key", "add", "--write-only", "--label", "web1", "--new-key-file", key.to_str().unwrap()]);

    // web1's nightly backups: the first, then one after a change.
    let src = w("srv");
    fs::create_dir_all(src.join("www")).unwrap();
    fs::write(src.join("www/index.html"), text_bytes(50_000, 1)).unwrap();
    fs::write(src.join("db.bin"), random_bytes(1_500_000, 2)).unwrap();
    let states = [w("state-0"), w("state-1")];
    let mut ids = Vec::new();
    for (i, state) in states.iter().enumerate() {
        if i == 1 {
            fs::write(src.join("www/index.html"), text_bytes(50_000, 3)).unwrap();
        }
        for f in walk_files(&src) {
            let to = state.join(f.strip_prefix(&src).unwrap());
            fs::create_dir_all(to.parent().unwrap()).unwrap();
            fs::copy(&f, &to).unwrap();
        }
        let out = ok(web1(), &["--json", "snapshot", src.to_str().unwrap()]);
        ids.push(out["snapshot_id"].as_str().unwrap().to_string());
    }

    // Taken over. Through the binary, with the host's token and key file.
    let repo_dir = server.repo_dir("main");
    let before = tree(&repo_dir);
    let stolen = w("stolen");
    let first = ids[0].as_str();
    let attempts: &[&[&str]] = &[
        &["restore", first, "--target", stolen.to_str().unwrap()],
        &["dump", first, "/"],
        &["ls", first],
        &["snapshots"],
        &["cat", "snapshot", first],
        &["forget", "--keep-last", "1", "--prune"],
        &["forget", first],
        &["prune"],
        &["key", "rotate"],
        &["key", "remove", "--force", first],
        &["unlock", "--remove-all"],
    ];
    for args in attempts {
        let out = web1().args(*args).output().unwrap();
        assert_eq!(out.status.code(), Some(12), "{args:?}: {}", stderr_of(&out));
        assert!(stderr_of(&out).contains("write-only"), "{args:?}: {}", stderr_of(&out));
        assert_eq!(tree(&repo_dir), before, "{args:?} changed the repository");
    }
    assert!(!stolen.exists());

    // Raw requests with the token: no delete, no overwrite, of any object, of any kind.
    let raw = server.storage("main", "web1");
    let mut names = vec!["config".to_string()];
    for dir in Dir::ALL {
        names.extend(raw.list(dir.prefix()).unwrap());
    }
    assert!(names.iter().any(|n| n.starts_with("snapshots/")) && names.iter().any(|n| n.starts_with("data/")));
    for name in &names {
        assert!(raw.delete(name).is_err(), "web1 deleted {name}");
        assert!(raw.put(name, b"encrypted by ransomware", PutMode::Overwrite).is_err(), "web1 overwrote {name}");
    }
    // It may read the bytes (append includes reading), which hold nothing it can open:
    // `repo/write_only_tests.rs` tries every key the slot yields on every envelope.
    assert!(raw.get(&names[1]).is_ok());
    assert_eq!(tree(&repo_dir), before, "refused raw requests changed something");

    // The administrator restores every snapshot, byte for byte.
    for (id, state) in ids.iter().zip(&states) {
        let target = w(&format!("restored-{id}"));
        ok(admin(), &["restore", id, "--target", target.to_str().unwrap()]);
        let restored = restored_path(&target, &src);
        for f in walk_files(state) {
            let rel = f.strip_prefix(state).unwrap();
            assert!(fs::read(&f).unwrap() == fs::read(restored.join(rel)).unwrap(), "{id}: {}", rel.display());
        }
        assert_eq!(walk_files(&restored).len(), walk_files(state).len());
    }
    ok(admin(), &["check", "--read-data"]);
    ok(admin(), &["audit", "verify"]);
}
