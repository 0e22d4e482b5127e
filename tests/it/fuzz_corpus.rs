//! The fuzz corpus on stable: every input under `engine/fuzz/corpus/<target>/` and
//! `engine/fuzz/artifacts/<target>/` goes through the same body the fuzz target runs
//! (`cairn_format::fuzzing`, re-exported as `cairn_engine::fuzzing`), so an input that once crashed a decoder stays a test. The seed
//! corpus comes from a real repository (`write_seed_corpus`, run by hand with `--ignored`).

use std::fs;
use std::path::{Path, PathBuf};

use cairn_engine::audit::{Actor, AuditRecord};
use cairn_engine::crypto::Key32;
use cairn_engine::format::BlobKind;
use cairn_engine::format::envelope::{self, ObjectKind};
use cairn_engine::format::keyring::KeyringDoc;
use cairn_engine::format::pack::{self, PackBlob};
use cairn_engine::format::{blob, padding};
use cairn_engine::fuzzing::{self, ENVELOPE_NAME, FUZZ_KEY, TARGETS};
use cairn_engine::keys::{keyring_name, keyring_seal_key};
use cairn_engine::prune::{PruneOptions, prune};
use cairn_engine::repo::LockOptions;
use cairn_engine::{NoProgress, Repository};

use crate::support::*;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../engine/fuzz")
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else { return Vec::new() };
    let mut out: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).filter(|p| p.is_file()).collect();
    out.sort();
    out
}

#[test]
fn every_fuzz_target_has_a_body_and_a_corpus() {
    let manifest = fs::read_to_string(fuzz_dir().join("Cargo.toml")).unwrap();
    let bins: Vec<&str> = manifest
        .lines()
        .filter_map(|l| l.strip_prefix("name = \""))
        .filter_map(|l| l.strip_suffix('"'))
        .filter(|n| *n != "cairn-engine-fuzz")
        .collect();
    let names: Vec<&str> = TARGETS.iter().map(|(n, _)| *n).collect();
    assert_eq!(bins, names, "engine/fuzz/Cargo.toml's bins and cairn_engine::fuzzing::TARGETS differ");
    for name in names {
        assert!(fuzz_dir().join("fuzz_targets").join(format!("{name}.rs")).is_file(), "{name}: no fuzz target");
        assert!(!files(&fuzz_dir().join("corpus").join(name)).is_empty(), "{name}: no corpus");
    }
}

#[test]
fn the_fuzz_corpus_replays_without_a_finding() {
    let mut replayed = 0;
    for (name, body) in TARGETS {
        for dir in ["corpus", "artifacts"] {
            for input in files(&fuzz_dir().join(dir).join(name)) {
                let bytes = fs::read(&input).unwrap();
                let outcome = std::panic::catch_unwind(|| body(&bytes));
                assert!(
                    outcome.is_ok(),
                    "{name}: {} fails (replay: cargo +nightly fuzz run {name} <file>)",
                    input.display()
                );
                replayed += 1;
            }
        }
    }
    assert!(replayed >= TARGETS.len(), "only {replayed} inputs replayed");
}

/// Writes `bytes` as a seed of `target`, named by its hash as libFuzzer names inputs.
fn seed(out: &Path, target: &str, bytes: &[u8]) {
    let dir = out.join(target);
    fs::create_dir_all(&dir).unwrap();
    let name = hex::encode(&blake3::hash(bytes).as_bytes()[..10]);
    fs::write(dir.join(format!("seed-{name}")), bytes).unwrap();
}

/// The keyring plaintext of the repository `repo` opened, read with its K.
fn keyring_doc(t: &TestRepo, repo: &Repository) -> KeyringDoc {
    let k = Key32::from_bytes(repo.key_material_for_tests()[0]);
    let name = keyring_name(&k);
    let sealed = t.storage.get(&name).unwrap();
    let seal_key = keyring_seal_key(&k);
    let plain = envelope::open(&sealed, ObjectKind::Keyring, name.as_bytes(), &name, |_| Ok(&seal_key)).unwrap();
    KeyringDoc::decode(&plain, &name).unwrap()
}

/// Seeds from the objects of a real repository: plaintexts of every sealed object, slots as
/// stored, packs re-closed under the null cipher the `pack` body opens with, blob plaintexts,
/// and a few objects sealed under the fuzz key. Run by hand:
/// `cargo test -p cairn-tests --test it fuzz_corpus::write_seed_corpus -- --ignored`;
/// then minimise with `cargo fuzz cmin` (see scripts/fuzz.sh).
#[test]
#[ignore = "writes engine/fuzz/corpus; run by hand"]
fn write_seed_corpus() {
    let out = fuzz_dir().join("corpus");
    let t = TestRepo::new();
    let src = tempfile::tempdir().unwrap();
    let root = src.path().join("home");
    fs::create_dir_all(root.join("docs/deeper")).unwrap();
    fs::write(root.join("docs/notes.txt"), text_bytes(3000, 1)).unwrap();
    fs::write(root.join("docs/deeper/noise.bin"), random_bytes(5000, 2)).unwrap();
    fs::write(root.join("empty"), b"").unwrap();
    std::os::unix::fs::symlink("docs/notes.txt", root.join("link")).unwrap();
    fs::write(root.join(non_utf8_name(0xff)), b"raw name").unwrap();
    let repo = t.open();
    let actor = Actor { host: "fuzz-host".into(), user: "fuzzer".into() };
    let first = snapshot(&repo, &[&root]);
    repo.audit(&actor, &AuditRecord::new("snapshot")).unwrap();
    fs::write(root.join("docs/notes.txt"), text_bytes(4000, 3)).unwrap();
    snapshot(&repo, &[&root]);
    cairn_engine::forget::remove(&repo, &[first.snapshot_id], &actor).unwrap();
    prune(&repo, PruneOptions { max_unused: 0.0, ..PruneOptions::default() }, false, &NoProgress).unwrap();
    let lock = LockOptions {
        exclusive: true,
        operation: "prune".into(),
        hostname: "fuzz-host".into(),
        username: "fuzzer".into(),
        retry_for: std::time::Duration::ZERO,
        refresh_every: cairn_engine::repo::REFRESH_EVERY,
    };
    let guard = repo.lock(&lock).unwrap();
    let storage = t.storage.clone();
    let list = |prefix: &str| storage.list(prefix).unwrap();
    for name in list("locks/") {
        seed(&out, "lock", &repo.load_object(ObjectKind::Lock, &name).unwrap());
    }
    drop(guard);

    // Sealed objects: their plaintexts.
    seed(&out, "config", &repo.load_object(ObjectKind::Config, "config").unwrap());
    for (prefix, kind, target) in [
        ("snapshots/", ObjectKind::Snapshot, "snapshot"),
        ("index/", ObjectKind::IndexSegment, "index"),
        ("marks/", ObjectKind::PruneMarks, "marks"),
        ("audit/", ObjectKind::Audit, "audit"),
    ] {
        let names = list(prefix);
        assert!(!names.is_empty(), "the repository holds no {prefix}");
        for name in names {
            let plain = repo.load_object(kind, &name).unwrap();
            seed(&out, target, &plain);
            if target == "snapshot" {
                // A snapshot sealed under the fuzz key, which opens, and one as stored.
                let key = Key32::from_bytes(FUZZ_KEY);
                seed(&out, "envelope", &envelope::seal(&key, 0, ObjectKind::Snapshot, ENVELOPE_NAME, &plain).unwrap());
                seed(&out, "envelope", &storage.get(&name).unwrap());
            }
            if target == "audit" {
                seed(&out, "audit", name.as_bytes());
            }
        }
    }

    // Slots as stored, and the recovery code as shown and as typed carelessly.
    for name in list("keys/") {
        seed(&out, "slot", &storage.get(&name).unwrap());
    }
    let code = t.recovery.as_ref().unwrap().display();
    seed(&out, "recovery_code", code.as_bytes());
    seed(&out, "recovery_code", code.to_lowercase().replace('-', " ").as_bytes());
    let (_, key_file) = t.open().add_key_file_slot("fuzz").unwrap();
    seed(&out, "key_file", key_file.encode().as_bytes());
    seed(&out, "key_file", key_file.encode().replace('\n', "\r\n  ").as_bytes());

    // Packs: opened with the data key, re-closed under the null cipher; their blobs' plaintexts
    // (and the trees among them).
    let doc = keyring_doc(&t, &repo);
    seed(&out, "keyring", &doc.encode());
    let data_key = Key32::from_bytes(doc.epochs[0].key);
    for name in list("data/") {
        let bytes = storage.get(&name).unwrap();
        let opened =
            pack::open(&bytes, &name, |kind, ad, sealed| envelope::open(sealed, kind, ad, &name, |_| Ok(&data_key)))
                .unwrap();
        let mut blobs = Vec::new();
        for b in &opened.header.blobs {
            let sealed = &bytes[b.offset as usize..(b.offset + b.length) as usize];
            let plain =
                envelope::open(sealed, b.kind.object_kind(), b.id.as_bytes(), &name, |_| Ok(&data_key)).unwrap();
            if b.kind == BlobKind::Tree {
                seed(&out, "tree", &blob::decode(&plain, b.raw_length as usize, &name).unwrap());
            }
            if plain.len() < 8192 {
                seed(&out, "blob_codec", &plain);
            }
            blobs.push(PackBlob { kind: b.kind, id: b.id, raw_length: b.raw_length, sealed });
        }
        let closed = pack::close(&blobs, fuzzing::null_seal).unwrap();
        let area = &bytes[..opened.header_offset as usize];
        seed(&out, "pack", &[area, &closed.header, &closed.locator].concat());
    }

    // A rotated repository's keyring: two epochs and the keyring it replaces.
    drop(repo);
    let (rotated, _) = t.open().rotate_key().unwrap();
    seed(&out, "keyring", &keyring_doc(&t, &rotated).encode());
    seed(&out, "config", &rotated.load_object(ObjectKind::Config, "config").unwrap());
    // A bare padded payload and a bare codec body for the blob codec.
    seed(&out, "blob_codec", &padding::frame(b"\0raw content", 40).unwrap());
    seed(&out, "blob_codec", &cairn_engine::compress::encode(&text_bytes(2000, 4), 3));

    for (name, body) in TARGETS {
        let inputs = files(&out.join(name));
        assert!(!inputs.is_empty(), "no seed for {name}");
        for input in inputs {
            body(&fs::read(input).unwrap());
        }
    }
}
