//! Resources an object can demand: what a client reads, allocates and computes is bounded by
//! what it trusts (its build, the sealed config), never by sizes or costs the storage states.

use std::fs;

use cairn_engine::crypto::SecretBytes;
use cairn_engine::format::slot::{SlotDoc, SlotKind};
use cairn_engine::keys::OpenSecret;
use cairn_engine::storage::PutMode;
use cairn_engine::{Error, Repository};

use super::adversary::CliRepo;

fn password() -> OpenSecret {
    OpenSecret::Password(SecretBytes::from("hostile storage test password".to_string()))
}

/// A password slot planted with Argon2 at 4 GiB and 64 passes (sorted before the real one) is
/// skipped as damaged: the password opens the repository through its own slot, and `check`
/// names the planted one.
#[test]
fn a_slot_demanding_a_huge_kdf_is_skipped() {
    let r = CliRepo::new();
    let storage = r.storage();
    let name = storage
        .list("keys/")
        .unwrap()
        .into_iter()
        .find(|n| matches!(SlotDoc::decode(&storage.get(n).unwrap(), n).unwrap().kind, SlotKind::Password { .. }));
    let name = name.unwrap();
    let mut doc: serde_json::Value = serde_json::from_slice(&storage.get(&name).unwrap()).unwrap();
    doc["argon2id"] = serde_json::json!({ "m_kib": 4 * 1024 * 1024, "t": 64, "p": 1 });
    doc["id"] = serde_json::to_value([0u8; 32]).unwrap();
    let planted = format!("keys/{}", "0".repeat(64));
    storage.put(&planted, &serde_json::to_vec(&doc).unwrap(), PutMode::CreateNew).unwrap();
    r.cli("cache").arg("snapshots").assert().success();
    let (code, text) = r.run({
        let mut c = r.cli("cache");
        c.arg("check");
        c
    });
    assert_eq!(code, 1, "{text}");
    assert!(text.contains(&"0".repeat(64)) && text.contains("Argon2id parameters out of range"), "{text}");
}

/// A snapshot object the storage makes a gigabyte large (sparse: it costs the test nothing)
/// is refused before it is read.
#[test]
fn an_oversized_object_is_not_read() {
    let r = CliRepo::new();
    let name = format!("snapshots/{}", "5".repeat(64));
    let f = fs::File::create(r.repo().join(&name)).unwrap();
    f.set_len(1 << 30).unwrap();
    let repo = Repository::open(r.storage(), &password(), r.p("engine-cache")).unwrap();
    match repo.load_snapshot(&cairn_engine::ObjectId([0x55; 32])) {
        Err(Error::Corrupt { why, .. }) => assert!(why.contains("not read"), "{why}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// A pack far larger than the config allows, whose trailer claims a header of gigabytes, is
/// reported by `repair index` without being read.
#[test]
fn a_huge_pack_is_not_read_by_repair() {
    let r = CliRepo::new();
    let size: u64 = 3 << 30;
    let id = "ab".repeat(32);
    let path = r.repo().join("data").join("ab").join(&id);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    let f = fs::File::create(&path).unwrap();
    f.set_len(size).unwrap();
    use std::os::unix::fs::FileExt;
    f.write_all_at(&u32::try_from(size - 4).unwrap().to_le_bytes(), size - 4).unwrap();
    let (code, text) = r.run({
        let mut c = r.cli("cache");
        c.args(["repair", "index"]);
        c
    });
    assert!(text.contains(&id) && text.contains("not read"), "exit {code}: {text}");
    r.cli("cache").args(["restore", "latest", "--target"]).arg(r.p("restored")).assert().success();
}
