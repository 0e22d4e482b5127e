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

/// Objects planted in `audit/` under absurd sequence numbers (10^11, 2^64-1), copies of a real
/// entry that do not authenticate there, do not stop the next snapshot (they are not part of the
/// log: the new entry follows the newest authentic one), and `audit verify` and `check` name
/// them in a few lines.
#[test]
fn planted_entries_with_absurd_sequence_numbers_are_reported_not_followed() {
    let r = CliRepo::new();
    let storage = r.storage();
    let first = storage.list("audit/").unwrap().into_iter().min().unwrap();
    let mac = first.rsplit('-').next().unwrap().to_string();
    let bytes = storage.get(&first).unwrap();
    for seq in ["100000000000", "18446744073709551615"] {
        let name = format!("audit/{seq}-{mac}");
        storage.put(&name, &bytes, cairn_engine::storage::PutMode::CreateNew).unwrap();
    }
    let (code, text) = r.run({
        let mut c = r.cli("cache");
        c.arg("snapshot").arg(r.p("src"));
        c
    });
    assert_eq!(code, 0, "{text}");
    for args in [vec!["audit", "verify"], vec!["check"]] {
        let (code, text) = r.run({
            let mut c = r.cli("cache");
            c.args(&args);
            c
        });
        assert_ne!(code, 0, "{args:?}: {text}");
        assert!(text.contains("100000000000-"), "{args:?}: {text}");
        assert!(text.len() < 16 * 1024, "{args:?}: {} bytes of output", text.len());
    }
    let (_, text) = r.run({
        let mut c = r.cli("cache");
        c.args(["audit", "verify"]);
        c
    });
    assert!(text.contains("18446744073709551615-"), "{text}");
    // The snapshot's entry followed the authentic log: apart from the planted objects, the
    // chain is whole.
    assert!(!text.contains("no entr"), "{text}");
}

/// An authentic entry forged far above the log (only a key holder can: a malicious or revoked
/// one, or a bug) is reported as one gap, in one line, and bounded work: no listing of every
/// missing level. A client that saw the log before refuses to write on top of it.
#[test]
fn a_forged_entry_far_above_the_log_is_one_gap_not_millions() {
    use cairn_engine::audit::AuditRecord;
    let r = CliRepo::new();
    let repo = cairn_engine::Repository::open(
        r.storage(),
        &cairn_engine::keys::OpenSecret::Password(cairn_engine::crypto::SecretBytes::from(
            "hostile storage test password".to_string(),
        )),
        r.p("forger-cache"),
    )
    .unwrap();
    let name = repo.forge_audit_entry(10_000_000, Vec::new(), &AuditRecord::new("snapshot")).unwrap();
    repo.forge_audit_entry(100_000_000_000, vec![[7u8; 32]], &AuditRecord::new("snapshot")).unwrap();
    drop(repo);
    let (code, text) = r.run({
        let mut c = r.cli("cache");
        c.args(["audit", "verify"]);
        c
    });
    assert_ne!(code, 0, "{text}");
    assert!(text.len() < 16 * 1024, "{} bytes of output", text.len());
    assert!(text.contains("far beyond"), "{text}");
    assert!(text.contains("levels"), "{text}");
    let (code, text) = r.run({
        let mut c = r.cli("cache");
        c.arg("snapshot").arg(r.p("src"));
        c
    });
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("rolled back"), "{text}");
    assert!(r.storage().stat(&name).unwrap().is_some());
}
