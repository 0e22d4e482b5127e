//! The permission matrix: each kind of identity against each operation through the `cairn`
//! binary and raw requests. Every refused operation leaves the repository byte for byte as it
//! was, and says which permission is missing.

use cairn_engine::format::names;
use cairn_engine::storage::{PutMode, RestOptions};

use super::server::Served;
use super::{name_in, tree};

const IDENTITIES: &[(&str, &[&str])] = &[
    ("admin", &["main=admin"]),
    ("read", &["main=read"]),
    ("append", &["main=append"]),
    ("append-read", &["main=append,read"]),
    ("delete", &["main=read,delete"]),
    ("keys", &["main=read,keys"]),
    ("other-repo", &["other=admin"]),
];

struct Matrix {
    server: Served,
    work: tempfile::TempDir,
}

impl Matrix {
    fn cairn(&self, who: &str) -> std::process::Command {
        let cache = self.work.path().join(format!("cache-{who}"));
        let pw = self.work.path().join("pw");
        match who {
            "no-token" | "wrong-token" => {
                let mut c = super::server::cairn();
                c.arg("-r").arg(self.server.url("main")).arg("--cacert").arg(&self.server.certs.ca);
                c.arg("--cache-dir").arg(cache).arg("--password-file").arg(pw);
                if who == "wrong-token" {
                    c.env(
                        "CAIRN_SERVER_TOKEN",
                        "cairn_0000000000000000000000000000000000000000000000000000000000000000",
                    );
                }
                c
            }
            _ => self.server.cairn_as(who, "main", &cache, &pw),
        }
    }

    fn source(&self) -> std::path::PathBuf {
        self.work.path().join("src")
    }

    /// Runs `args` as `who`: Ok on exit 0, else the exit code and stderr.
    fn run(&self, who: &str, args: &[&str]) -> Result<(), (Option<i32>, String)> {
        let out = self.cairn(who).args(args).output().unwrap();
        if out.status.success() {
            Ok(())
        } else {
            Err((out.status.code(), String::from_utf8_lossy(&out.stderr).to_string()))
        }
    }
}

#[test]
fn each_identity_does_what_its_permissions_allow_and_a_refusal_changes_nothing() {
    let work = tempfile::tempdir().unwrap();
    std::fs::write(work.path().join("pw"), "matrix password\n").unwrap();
    std::fs::create_dir_all(work.path().join("src/sub")).unwrap();
    std::fs::write(work.path().join("src/sub/file"), crate::support::random_bytes(200_000, 1)).unwrap();
    let m = Matrix { server: Served::local(IDENTITIES, &[]), work };
    let src = m.source();
    let src = src.to_str().unwrap();
    let restore_to = |who: &str| m.work.path().join(format!("restore-{who}")).display().to_string();

    // init: admin only.
    for who in ["read", "append", "delete", "keys", "other-repo", "no-token", "wrong-token"] {
        let (code, err) =
            m.run(who, &["init", "--no-recovery-code", "--kdf-memory", "8192", "--kdf-iterations", "1"]).unwrap_err();
        assert_eq!(code, Some(13), "{who} init: {err}");
        assert_eq!(tree(&m.server.repo_dir("main")), Vec::new(), "{who}: a refused init created something");
    }
    m.run("admin", &["init", "--no-recovery-code", "--kdf-memory", "8192", "--kdf-iterations", "1"]).unwrap();
    m.run("admin", &["snapshot", src]).unwrap();

    // (operation, who may, who may not)
    type Op<'a> = (&'a str, Vec<String>);
    let ops: Vec<(Op, &[&str], &[&str])> = vec![
        (
            ("snapshot", vec!["snapshot".into(), src.into()]),
            &["append", "append-read", "delete", "admin"],
            &["read", "keys"],
        ),
        (
            ("restore", vec!["restore".into(), "latest".into(), "--target".into()]),
            &["read", "append", "append-read", "delete", "keys", "admin"],
            &[],
        ),
        (("ls", vec!["ls".into(), "latest".into()]), &["read", "append", "delete", "admin"], &[]),
        (("check", vec!["check".into()]), &["read", "append-read", "delete", "admin"], &[]),
        (
            ("forget", vec!["forget".into(), "--keep-last".into(), "1".into()]),
            &["delete", "admin"],
            &["read", "append", "append-read", "keys"],
        ),
        (("prune", vec!["prune".into()]), &["delete", "admin"], &["read", "append", "append-read", "keys"]),
        (
            (
                "key add",
                vec![
                    "key".into(),
                    "add".into(),
                    "--password".into(),
                    "--label".into(),
                    "x".into(),
                    "--new-password-file".into(),
                    m.work.path().join("pw").display().to_string(),
                    "--kdf-memory".into(),
                    "8192".into(),
                    "--kdf-iterations".into(),
                    "1".into(),
                ],
            ),
            &["keys", "admin"],
            &["read", "append", "delete"],
        ),
    ];
    let strangers = ["other-repo", "no-token", "wrong-token"];
    for ((op, args), allowed, refused) in &ops {
        for who in refused.iter().chain(&strangers) {
            let mut args: Vec<String> = args.clone();
            if *op == "restore" {
                args.push(restore_to(who));
            }
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let before = tree(&m.server.repo_dir("main"));
            let (code, err) = m.run(who, &args).expect_err(&format!("{who} may not {op}"));
            assert_eq!(code, Some(13), "{who} {op}: {err}");
            assert!(
                err.contains("permission") || err.contains("token") || err.contains("401"),
                "{who} {op}: the message names the refusal: {err}"
            );
            assert_eq!(
                tree(&m.server.repo_dir("main")),
                before,
                "{who} {op}: a refused operation changed the repository"
            );
        }
        for who in *allowed {
            let mut args: Vec<String> = args.clone();
            if *op == "restore" {
                args.push(restore_to(who));
            }
            if *op == "key add" {
                args[4] = format!("label-{who}");
            }
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            if let Err((code, err)) = m.run(who, &args) {
                panic!("{who} may {op}, but it exited {code:?}: {err}");
            }
        }
    }

    // Key removal and rotation. The slot removed has a password of its own: with the
    // repository's, a command could open the repository with it and refuse to remove it.
    std::fs::write(m.work.path().join("pw-removed"), "another password\n").unwrap();
    let added = m
        .cairn("keys")
        .args(["--json", "key", "add", "--password", "--label", "to-remove", "--new-password-file"])
        .arg(m.work.path().join("pw-removed"))
        .args(["--kdf-memory", "8192", "--kdf-iterations", "1"])
        .output()
        .unwrap();
    assert!(added.status.success(), "{}", String::from_utf8_lossy(&added.stderr));
    let slot: serde_json::Value = serde_json::from_slice(&added.stdout).unwrap();
    let slot = slot["slot"].as_str().unwrap().to_string();
    for (args, allowed, refused) in [
        (vec!["key", "remove", slot.as_str()], "keys", &["read", "append", "delete"][..]),
        (vec!["key", "rotate"], "admin", &["read", "append", "delete", "keys"][..]),
    ] {
        for who in refused.iter().chain(&strangers) {
            let before = tree(&m.server.repo_dir("main"));
            let (code, err) = m.run(who, &args).expect_err(&format!("{who} may not {args:?}"));
            assert_eq!(code, Some(13), "{who} {args:?}: {err}");
            assert_eq!(tree(&m.server.repo_dir("main")), before, "{who} {args:?} changed the repository");
        }
        if let Err((code, err)) = m.run(allowed, &args) {
            panic!("{allowed} may {args:?}, but it exited {code:?}: {err}");
        }
    }

    // Raw requests: an overwrite of what exists, a delete, another's lock.
    let snapshots = m.server.storage("main", "admin").list("snapshots/").unwrap();
    let existing = snapshots.first().unwrap().clone();
    let lock = name_in(names::Dir::Locks, 77);
    m.server.storage("main", "append").put(&lock, b"append's lock", PutMode::CreateNew).unwrap();
    for who in ["read", "append", "append-read", "delete", "keys"] {
        let s = m.server.storage("main", who);
        let before = tree(&m.server.repo_dir("main"));
        assert!(s.put(&existing, b"garbage", PutMode::Overwrite).is_err(), "{who} overwrote a snapshot");
        assert!(s.put("config", b"garbage", PutMode::Overwrite).is_err(), "{who} overwrote the config");
        if who != "delete" {
            assert!(s.delete(&existing).is_err(), "{who} deleted a snapshot");
        }
        if who != "delete" && who != "append" {
            assert!(s.delete(&lock).is_err(), "{who} removed another's lock");
        }
        assert_eq!(tree(&m.server.repo_dir("main")), before, "{who}: refused raw requests changed something");
    }
    // The lock's creator may refresh and remove it; `delete` may remove anyone's.
    let append = m.server.storage("main", "append");
    append.put(&lock, b"refreshed", PutMode::Overwrite).unwrap();
    append.delete(&lock).unwrap();
    m.server.storage("main", "admin").put(&lock, b"admin's", PutMode::CreateNew).unwrap();
    assert!(append.delete(&lock).is_err(), "append removed the admin's lock");
    m.server.storage("main", "delete").delete(&lock).unwrap();
    // A token of another repository's identity reads nothing here.
    let other = m.server.storage_with("main", &RestOptions { ..m.server.options(Some("other-repo")) });
    assert!(other.get("config").is_err());
}
