//! Attacks on the audit log: the storage deletes the newest entries and the snapshots they
//! logged (a rollback), hoping the next command appends on top and hides it.

use super::adversary::{self, CliRepo};

/// The storage rolls `audit/` and `snapshots/` back to how they were after the first snapshot.
/// The next snapshot by a client that saw the newer entries is refused before it writes, and
/// `audit verify` reports the rollback.
#[test]
fn an_audit_log_rolled_back_is_refused_at_the_next_snapshot() {
    let r = CliRepo::new();
    let storage = r.storage();
    let prefixes = ["audit/", "snapshots/"];
    let after_first = adversary::capture(storage.as_ref(), &prefixes);
    for i in 0..2 {
        std::fs::write(r.p(&format!("src/new-{i}")), format!("new file {i}").repeat(100)).unwrap();
        r.cli("cache").arg("snapshot").arg(r.p("src")).assert().success();
    }
    adversary::replay(storage.as_ref(), &prefixes, &after_first);
    let before = r.objects();
    let (code, text) = r.run({
        let mut c = r.cli("cache");
        c.arg("snapshot").arg(r.p("src"));
        c
    });
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("rolled back"), "{text}");
    assert!(r.objects() == before, "a refused client wrote to the repository");
    // Forget and prune refuse the same way; verify reports it.
    for args in [vec!["forget", "--keep-last", "1", "--prune"], vec!["prune"]] {
        let (code, text) = r.run({
            let mut c = r.cli("cache");
            c.args(&args);
            c
        });
        assert_eq!(code, 1, "{args:?}: {text}");
        assert!(text.contains("rolled back"), "{args:?}: {text}");
    }
    assert!(r.objects() == before, "a refused client wrote to the repository");
    let (code, text) = r.run({
        let mut c = r.cli("cache");
        c.args(["audit", "verify"]);
        c
    });
    assert_ne!(code, 0, "{text}");
    assert!(text.contains("went backwards"), "{text}");
}

/// Deleting only the newest entry (the one this client wrote last) is refused too, and so is
/// an entry above it that no longer chains to it.
#[test]
fn the_newest_entry_deleted_is_refused() {
    let r = CliRepo::new();
    let storage = r.storage();
    let newest = storage.list("audit/").unwrap().into_iter().max().unwrap();
    storage.delete(&newest).unwrap();
    let (code, text) = r.run({
        let mut c = r.cli("cache");
        c.arg("snapshot").arg(r.p("src"));
        c
    });
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("no longer holds it"), "{text}");
}
