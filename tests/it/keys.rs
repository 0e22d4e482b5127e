//! Key management through the binary: slots (password, recovery, HSM on a real SoftHSM2 token),
//! rotation, re-encryption and retiring of epochs, and that no key material ever reaches an
//! output, an error message, the cache, the repository or a core file.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command as StdCommand;

use assert_cmd::Command;

use crate::support::*;

const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
const PIN: &str = "71530426";
const TOKEN: &str = "cairn-test-token";

struct KeyEnv {
    dir: tempfile::TempDir,
}

impl KeyEnv {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("pw"), "first password, long enough\n").unwrap();
        fs::write(dir.path().join("pw2"), "second password, also long\n").unwrap();
        fs::write(dir.path().join("pin"), format!("{PIN}\n")).unwrap();
        fs::write(dir.path().join("badpin"), "00000000\n").unwrap();
        let src = dir.path().join("src");
        fs::create_dir_all(src.join("sub")).unwrap();
        fs::write(src.join("a.txt"), b"alpha ".repeat(20_000)).unwrap();
        fs::write(src.join("sub/b.bin"), random_bytes(300_000, 7)).unwrap();
        KeyEnv { dir }
    }

    fn p(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `cairn` with repository and cache, no secret, a clean environment and the private
    /// SoftHSM2 configuration.
    fn bare(&self) -> Command {
        let mut c = Command::cargo_bin("cairn").unwrap();
        without_cairn_env(&mut c);
        c.arg("-r").arg(self.p("repo")).arg("--cache-dir").arg(self.p("cache"));
        c.env("SOFTHSM2_CONF", self.p("softhsm2.conf"));
        c
    }

    fn with_password(&self, file: &str) -> Command {
        let mut c = self.bare();
        c.arg("--password-file").arg(self.p(file));
        c
    }

    fn hsm_flags(&self, c: &mut Command, pin_file: &str, token: &str, key: &str) {
        c.args(["--hsm-module", MODULE, "--hsm-token", token, "--hsm-key", key, "--hsm-pin-file"])
            .arg(self.p(pin_file));
    }

    fn with_hsm(&self) -> Command {
        let mut c = self.bare();
        self.hsm_flags(&mut c, "pin", TOKEN, "cairn-key");
        c
    }

    fn init(&self) {
        self.with_password("pw")
            .args(["init", "--kdf-memory", "8192", "--kdf-iterations", "1", "--recovery-code-out"])
            .arg(self.p("recovery"))
            .assert()
            .success();
    }

    /// A SoftHSM2 token in this test's private directory.
    fn make_token(&self) {
        assert!(Path::new(MODULE).exists(), "{MODULE} is missing: install softhsm2 (scripts/test.sh installs it)");
        fs::create_dir_all(self.p("tokens")).unwrap();
        fs::write(
            self.p("softhsm2.conf"),
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                self.p("tokens").display()
            ),
        )
        .unwrap();
        let out = StdCommand::new("softhsm2-util")
            .env("SOFTHSM2_CONF", self.p("softhsm2.conf"))
            .args(["--init-token", "--free", "--label", TOKEN, "--pin", PIN, "--so-pin", "12345678"])
            .output()
            .expect("softhsm2-util runs");
        assert!(out.status.success(), "token init failed: {}", String::from_utf8_lossy(&out.stderr));
    }

    fn slots(&self, mut c: Command) -> Vec<serde_json::Value> {
        let out = c.args(["--json", "key", "list"]).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap().as_array().unwrap().clone()
    }

    fn snapshot_id(&self, mut c: Command) -> String {
        let out = c.args(["--json", "snapshot"]).arg(self.p("src")).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["snapshot_id"].as_str().unwrap().to_string()
    }
}

/// Acceptance 1: init with a password, add an HSM slot, open with the HSM alone, a wrong PIN
/// (and a missing token, a missing key) exits 12, remove the password slot, rotate, restore.
#[test]
fn hsm_slot_opens_alone_survives_rotation_and_restores() {
    let e = KeyEnv::new();
    e.make_token();
    e.init();
    let mut add = e.with_password("pw");
    e.hsm_flags(&mut add, "pin", TOKEN, "cairn-key");
    add.args(["key", "add", "--hsm", "--label", "vault"]).assert().success();

    let slots = e.slots(e.with_hsm());
    let hsm: Vec<_> = slots.iter().filter(|s| s["kind"] == "hsm").collect();
    assert_eq!(hsm.len(), 1, "{slots:?}");
    assert_eq!(hsm[0]["in_use"], true, "key list through the HSM is opened by the HSM slot");
    assert_eq!(hsm[0]["hsm_token"], TOKEN);
    assert_eq!(hsm[0]["label"], "vault");

    // The HSM alone opens the repository: no password source anywhere.
    let before = e.snapshot_id(e.with_hsm());

    for (pin, token, key, says) in [
        ("badpin", TOKEN, "cairn-key", "PIN is wrong"),
        ("pin", "no-such-token", "cairn-key", "no token labelled"),
        ("pin", TOKEN, "no-such-key", "no AES key labelled"),
    ] {
        let mut c = e.bare();
        e.hsm_flags(&mut c, pin, token, key);
        let out = c.arg("snapshots").output().unwrap();
        assert_eq!(out.status.code(), Some(12), "{pin}/{token}/{key}: {}", stderr_of(&out));
        assert!(stderr_of(&out).contains(says), "{}", stderr_of(&out));
    }

    // Remove the password slot (through the HSM), rotate, then back up and restore.
    let pw_slot = slots.iter().find(|s| s["kind"] == "password").unwrap()["id"].as_str().unwrap().to_string();
    e.with_hsm().args(["key", "remove", &pw_slot]).assert().success();
    let out = e.with_password("pw").arg("snapshots").output().unwrap();
    assert_eq!(out.status.code(), Some(12), "the removed password must not open: {}", stderr_of(&out));
    e.with_hsm().args(["key", "rotate", "--reencrypt"]).assert().success();
    fs::write(e.p("src/after-rotation.txt"), b"written under the new epoch").unwrap();
    let after = e.snapshot_id(e.with_hsm());
    for (id, target) in [(&before, "out-before"), (&after, "out-after")] {
        e.with_hsm().args(["restore", id, "--target"]).arg(e.p(target)).assert().success();
    }
    let restored = |t: &str| e.p(t).join(e.p("src").strip_prefix("/").unwrap());
    assert_eq!(fs::read(restored("out-after").join("after-rotation.txt")).unwrap(), b"written under the new epoch");
    assert_eq!(fs::read(restored("out-before").join("sub/b.bin")).unwrap(), random_bytes(300_000, 7));
    assert!(!restored("out-before").join("after-rotation.txt").exists());
    // The recovery code still opens after rotation (its slot was re-sealed, not re-made).
    e.bare().arg("--recovery-code-file").arg(e.p("recovery")).arg("snapshots").assert().success();
    e.with_hsm().args(["check", "--read-data"]).assert().success();
    e.with_hsm().args(["audit", "verify"]).assert().success();
}

/// A removed slot's secret opens nothing after a rotation, even with its slot document and the
/// old keyring put back: the old K reads no snapshot, old or new.
#[test]
fn rotation_locks_out_removed_slots_and_the_old_key() {
    let e = KeyEnv::new();
    e.init();
    let old_snapshot = e.snapshot_id(e.with_password("pw"));
    fs::write(e.p("pw2"), "second password, also long\n").unwrap();
    e.with_password("pw")
        .args(["key", "add", "--password", "--kdf-memory", "8192", "--kdf-iterations", "1", "--new-password-file"])
        .arg(e.p("pw2"))
        .assert()
        .success();
    let slots = e.slots(e.with_password("pw"));
    let old_slot = slots.iter().find(|s| s["in_use"] == true).unwrap()["id"].as_str().unwrap().to_string();
    // An attacker keeps copies of the slot and the keyring it opens.
    let saved_slot = fs::read(e.p("repo/keys").join(&old_slot)).unwrap();
    let keyrings = |e: &KeyEnv| -> Vec<PathBuf> {
        fs::read_dir(e.p("repo/keyring")).unwrap().map(|d| d.unwrap().path()).collect()
    };
    let saved_keyrings: Vec<(PathBuf, Vec<u8>)> =
        keyrings(&e).into_iter().map(|p| (p.clone(), fs::read(p).unwrap())).collect();
    assert_eq!(saved_keyrings.len(), 1);

    // Removing the slot in use needs --force; the last slot can never go.
    let out = e.with_password("pw").args(["key", "remove", &old_slot]).output().unwrap();
    assert!(!out.status.success() && stderr_of(&out).contains("--force"), "{}", stderr_of(&out));
    e.with_password("pw2").args(["key", "remove", &old_slot]).assert().success();
    e.with_password("pw2").args(["key", "rotate"]).assert().success();
    let new_snapshot = e.snapshot_id(e.with_password("pw2"));
    assert_eq!(keyrings(&e).len(), 1, "rotation leaves one keyring");
    assert!(!saved_keyrings.iter().any(|(p, _)| p.exists()), "the old keyring is deleted");

    // The removed slot, put back alone: its keyring is gone.
    fs::write(e.p("repo/keys").join(&old_slot), &saved_slot).unwrap();
    let out = e.with_password("pw").arg("snapshots").output().unwrap();
    assert_eq!(out.status.code(), Some(12), "{}", stderr_of(&out));
    assert!(stderr_of(&out).contains("key rotation"), "{}", stderr_of(&out));

    // With the old keyring put back too, the old K reads old data but not new data (on the
    // removed holder's own machine: a client that saw the rotation refuses the old keys).
    for (p, bytes) in &saved_keyrings {
        fs::write(p, bytes).unwrap();
    }
    let out = e.with_password("pw").arg("snapshots").output().unwrap();
    assert_eq!(out.status.code(), Some(12), "{}", stderr_of(&out));
    assert!(stderr_of(&out).contains("rolled back to before a key rotation"), "{}", stderr_of(&out));
    let removed_holder = || {
        let mut c = Command::cargo_bin("cairn").unwrap();
        without_cairn_env(&mut c);
        c.arg("-r").arg(e.p("repo")).arg("--cache-dir").arg(e.p("removed-holder-cache"));
        c.arg("--password-file").arg(e.p("pw"));
        c
    };
    // The rotation re-sealed the config, snapshots, index and audit log under the new epoch:
    // the old K opens nothing at all, old snapshots included.
    for snapshot in [&old_snapshot, &new_snapshot] {
        let out = removed_holder().args(["ls", snapshot]).output().unwrap();
        assert!(!out.status.success(), "the old key opened the repository");
        assert!(stderr_of(&out).contains("epoch 1"), "{}", stderr_of(&out));
    }
    // The current password reads both.
    e.with_password("pw2").args(["ls", &new_snapshot]).assert().success();
    e.with_password("pw2").args(["ls", &old_snapshot]).assert().success();
}

/// After `prune --reencrypt-epoch` and `key retire-epoch`, nothing is sealed under the old
/// epoch, the keyring no longer holds it, and every snapshot restores byte for byte.
#[test]
fn reencrypt_and_retire_an_epoch() {
    let e = KeyEnv::new();
    e.init();
    let first = e.snapshot_id(e.with_password("pw"));
    e.with_password("pw").args(["key", "rotate"]).assert().success();
    let out = e.with_password("pw").args(["key", "retire-epoch", "0"]).output().unwrap();
    assert!(!out.status.success() && stderr_of(&out).contains("--reencrypt-epoch 0"), "{}", stderr_of(&out));
    let out = e.with_password("pw").args(["key", "retire-epoch", "1"]).output().unwrap();
    assert!(!out.status.success() && stderr_of(&out).contains("current epoch"), "{}", stderr_of(&out));
    e.with_password("pw").args(["prune", "--reencrypt-epoch", "0"]).assert().success();
    e.with_password("pw").args(["key", "retire-epoch", "0"]).assert().success();
    let out = e.with_password("pw").args(["--json", "key", "epochs"]).output().unwrap();
    let epochs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let numbers: Vec<u64> = epochs.as_array().unwrap().iter().map(|x| x["epoch"].as_u64().unwrap()).collect();
    assert_eq!(numbers, vec![1], "{epochs}");
    // Every envelope in the repository now names epoch 1 (byte 1..5 of sealed objects).
    for f in walk_files(&e.p("repo")) {
        let rel = f.strip_prefix(e.p("repo")).unwrap().to_string_lossy().into_owned();
        if rel.starts_with("keys/") || rel.starts_with("keyring/") || rel.starts_with("data/") {
            continue;
        }
        let bytes = fs::read(&f).unwrap();
        assert_eq!(&bytes[1..5], &1u32.to_le_bytes(), "{rel} is still sealed under another epoch");
    }
    e.with_password("pw").args(["restore", &first, "--target"]).arg(e.p("out")).assert().success();
    let restored = e.p("out").join(e.p("src").strip_prefix("/").unwrap());
    assert_eq!(fs::read(restored.join("sub/b.bin")).unwrap(), random_bytes(300_000, 7));
    e.with_password("pw").args(["check", "--read-data"]).assert().success();
    e.with_password("pw").args(["audit", "verify"]).assert().success();
}

#[test]
fn passwd_replaces_the_password_and_recovery_slots_can_be_added() {
    let e = KeyEnv::new();
    e.init();
    e.with_password("pw")
        .args(["key", "passwd", "--kdf-memory", "8192", "--kdf-iterations", "1", "--new-password-file"])
        .arg(e.p("pw2"))
        .assert()
        .success();
    assert_eq!(e.with_password("pw").arg("snapshots").output().unwrap().status.code(), Some(12));
    e.with_password("pw2").arg("snapshots").assert().success();
    e.with_password("pw2")
        .args(["key", "add", "--recovery", "--recovery-code-out"])
        .arg(e.p("recovery2"))
        .assert()
        .success();
    e.bare().arg("--recovery-code-file").arg(e.p("recovery2")).arg("snapshots").assert().success();
    let slots = e.slots(e.with_password("pw2"));
    assert_eq!(slots.iter().filter(|s| s["kind"] == "recovery").count(), 2, "{slots:?}");
    assert!(slots.iter().any(|s| s["kind"] == "password" && s["last_used"].is_string()));
    // Removing down to one slot works, the last one is refused.
    for s in slots.iter().filter(|s| s["kind"] == "recovery") {
        e.with_password("pw2").args(["key", "remove", s["id"].as_str().unwrap()]).assert().success();
    }
    let last = e.slots(e.with_password("pw2"));
    assert_eq!(last.len(), 1);
    let out =
        e.with_password("pw2").args(["key", "remove", "--force", last[0]["id"].as_str().unwrap()]).output().unwrap();
    assert!(!out.status.success() && stderr_of(&out).contains("last one"), "{}", stderr_of(&out));
}

/// Acceptance 3: key material never appears in outputs (text and --json), error messages, the
/// client cache or the repository, and cairn cannot dump core.
#[test]
fn key_material_never_leaks() {
    let e = KeyEnv::new();
    e.make_token();
    e.init();
    let mut outputs: Vec<u8> = Vec::new();
    let mut run = |mut c: Command, args: &[&str]| {
        let out = c.args(args).output().unwrap();
        outputs.extend_from_slice(&out.stdout);
        outputs.extend_from_slice(&out.stderr);
    };
    let mut add = e.with_password("pw");
    e.hsm_flags(&mut add, "pin", TOKEN, "leak-key");
    run(add, &["key", "add", "--hsm"]);
    run(
        e.with_password("pw"),
        &[
            "key",
            "add",
            "--password",
            "--kdf-memory",
            "8192",
            "--kdf-iterations",
            "1",
            "--new-password-file",
            e.p("pw2").to_str().unwrap(),
        ],
    );
    for json in [false, true] {
        let flag: &[&str] = if json { &["--json"] } else { &[] };
        for args in [
            &["snapshot", e.p("src").to_str().unwrap()][..],
            &["snapshots"],
            &["ls", "latest"],
            &["key", "list"],
            &["key", "epochs"],
            &["audit", "log"],
            &["audit", "verify"],
            &["check", "--read-data"],
            &["cat", "config"],
        ] {
            run(e.with_password("pw"), &[flag, args].concat());
        }
        run(e.with_password("badpin"), &[flag, &["snapshots"][..]].concat());
        let mut bad = e.bare();
        e.hsm_flags(&mut bad, "badpin", TOKEN, "leak-key");
        run(bad, &[flag, &["snapshots"][..]].concat());
        run(e.with_hsm_key("leak-key"), &[flag, &["key", "rotate"][..]].concat());
    }
    // The keys of the repository as it is now, and of every epoch it went through.
    let storage: std::sync::Arc<dyn cairn_engine::storage::Storage> =
        std::sync::Arc::new(cairn_engine::storage::LocalStorage::new(e.p("repo")));
    let repo = cairn_engine::Repository::open(
        storage,
        &cairn_engine::keys::OpenSecret::Password(cairn_engine::crypto::SecretBytes::from(
            "first password, long enough".to_string(),
        )),
        e.p("cache-probe"),
    )
    .unwrap();
    let keys = repo.key_material_for_tests();
    assert!(keys.len() >= 6, "K, K_id, K_cdc, K_audit and two data-key epochs");
    let mut haystacks = vec![("command outputs".to_string(), outputs)];
    for f in walk_files(&e.p("cache")).into_iter().chain(walk_files(&e.p("repo"))) {
        haystacks.push((f.display().to_string(), fs::read(&f).unwrap()));
    }
    let secrets: Vec<(String, Vec<u8>)> = keys
        .iter()
        .flat_map(|k| {
            [
                ("key bytes".to_string(), k.to_vec()),
                ("key hex".to_string(), hex::encode(k).into_bytes()),
                ("key HEX".to_string(), hex::encode_upper(k).into_bytes()),
            ]
        })
        .chain([
            ("password".to_string(), b"first password, long enough".to_vec()),
            ("new password".to_string(), b"second password, also long".to_vec()),
            ("HSM PIN".to_string(), PIN.as_bytes().to_vec()),
        ])
        .collect();
    for (what, needle) in &secrets {
        for (place, hay) in &haystacks {
            assert!(!hay.windows(needle.len()).any(|w| w == needle.as_slice()), "{what} found in {place}");
        }
    }

    // No core dumps: a running cairn (waiting on stdin) has a core size limit of 0.
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("cairn"))
        .args(["-r"])
        .arg(e.p("repo"))
        .arg("--cache-dir")
        .arg(e.p("cache"))
        .arg("--password-file")
        .arg(e.p("pw"))
        .args(["snapshot", "--stdin", "--stdin-filename", "held-open"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // The limit is set first thing in main; poll until the process got there (or give up).
    let core_limit = || {
        let limits = fs::read_to_string(format!("/proc/{}/limits", child.id())).unwrap();
        let line = limits.lines().find(|l| l.starts_with("Max core file size")).unwrap().to_string();
        line.split_whitespace().skip(4).take(2).map(str::to_string).collect::<Vec<_>>()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut seen = core_limit();
    while seen != ["0", "0"] && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
        seen = core_limit();
    }
    drop(child.stdin.take());
    child.wait().unwrap();
    assert_eq!(seen, ["0", "0"], "soft and hard core size limits of a running cairn");
}

/// A write-only slot on an HSM key: it backs up through the token alone, reads nothing (exit
/// 12), and the password restores what it wrote.
#[test]
fn a_write_only_hsm_slot_backs_up_through_the_token_and_reads_nothing() {
    let e = KeyEnv::new();
    e.make_token();
    e.init();
    let mut add = e.with_password("pw");
    e.hsm_flags(&mut add, "pin", TOKEN, "web1-key");
    add.args(["key", "add", "--write-only", "--hsm", "--label", "web1"]).assert().success();
    let slots = e.slots(e.with_password("pw"));
    assert!(slots.iter().any(|s| s["kind"] == "hsm" && s["write_only"] == true && s["label"] == "web1"), "{slots:?}");
    let id = e.snapshot_id(e.with_hsm_key("web1-key"));
    let out = e.with_hsm_key("web1-key").args(["ls", &id]).output().unwrap();
    assert_eq!(out.status.code(), Some(12), "{}", stderr_of(&out));
    assert!(stderr_of(&out).contains("write-only"), "{}", stderr_of(&out));
    let target = e.p("restored");
    e.with_password("pw").args(["restore", &id, "--target"]).arg(&target).assert().success();
    let restored = restored_path(&target, &e.p("src"));
    assert!(fs::read(restored.join("sub/b.bin")).unwrap() == fs::read(e.p("src/sub/b.bin")).unwrap());
}

impl KeyEnv {
    fn with_hsm_key(&self, key: &str) -> Command {
        let mut c = self.bare();
        self.hsm_flags(&mut c, "pin", TOKEN, key);
        c
    }
}

/// Rotation crash safety: interrupted after every single write, every slot still opens and
/// reads what it could before, and what it writes; a rerun from a slot left behind is refused
/// while another slot already opens the newer keys (it could not carry the new epoch over);
/// the rerun from the slot that started the rotation finishes it, with one keyring left, and
/// then every slot reads everything written through every slot.
#[test]
fn rotation_interrupted_at_every_write_keeps_every_slot_working() {
    use std::sync::Arc;

    use cairn_engine::Repository;
    use cairn_engine::crypto::{Argon2Params, SecretBytes};
    use cairn_engine::keys::OpenSecret;
    use cairn_engine::storage::{FaultStorage, LocalStorage, Storage};

    let t = TestRepo::new();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("data"), random_bytes(200_000, 3)).unwrap();
    let repo = t.open();
    let before = snapshot(&repo, &[&src]);
    repo.add_password_slot(&SecretBytes::from("other password".to_string()), Argon2Params::MIN, "other").unwrap();
    drop(repo);
    let secrets = [
        OpenSecret::Password(SecretBytes::from(PASSWORD.to_string())),
        OpenSecret::Recovery(t.recovery.clone().unwrap()),
        OpenSecret::Password(SecretBytes::from("other password".to_string())),
    ];
    let open = |dir: &Path, storage: Arc<dyn Storage>, secret: &OpenSecret, cache: &str| {
        Repository::open(storage, secret, dir.join(cache)).unwrap_or_else(|e| panic!("{cache}: {e}"))
    };
    let reads = |r: &Repository, out: &cairn_engine::backup::BackupOutcome, what: &str| {
        let target = work.path().join(format!("out-{what}"));
        restore_all(r, out, &target).unwrap_or_else(|e| panic!("{what}: {e}"));
        let restored = target.join(src.strip_prefix("/").unwrap()).join("data");
        assert_eq!(fs::read(restored).unwrap(), random_bytes(200_000, 3), "{what}");
        fs::remove_dir_all(&target).unwrap();
    };
    let mut n = 0u64;
    loop {
        let copy = work.path().join(format!("crash-{n}"));
        assert!(StdCommand::new("cp").arg("-a").arg(t.repo_path()).arg(&copy).status().unwrap().success());
        let local: Arc<dyn Storage> = Arc::new(LocalStorage::new(&copy));
        let faulty: Arc<dyn Storage> = Arc::new(FaultStorage::new(local.clone(), Some(n)));
        let result = open(work.path(), faulty, &secrets[0], &format!("cache-{n}")).rotate_key().map(|_| ());
        // Whatever happened: every slot opens, reads what was there before and what it writes.
        let written: Vec<_> = secrets
            .iter()
            .enumerate()
            .map(|(w, secret)| {
                let r = open(work.path(), local.clone(), secret, &format!("cache-{n}-w{w}"));
                let out = snapshot(&r, &[&src]);
                reads(&r, &before, &format!("crash {n}, slot {w}, before"));
                reads(&r, &out, &format!("crash {n}, slot {w}, own"));
                out
            })
            .collect();
        let finished = match result {
            Ok(()) => {
                assert!(n >= 4, "rotation finished after only {n} writes");
                true
            }
            Err(cairn_engine::Error::Storage { .. }) => false,
            Err(e) => panic!("crash point {n}: unexpected {e}"),
        };
        if !finished {
            // A rerun from the recovery slot finishes the job when it was moved (or nothing
            // was), and is refused, changing nothing, while only the starter's slot moved.
            let keyrings = local.list("keyring/").unwrap();
            match open(work.path(), local.clone(), &secrets[1], &format!("cache-{n}-rerun1")).rotate_key() {
                Ok(_) => {}
                Err(cairn_engine::Error::InvalidInput(why)) => {
                    assert!(why.contains("did not finish"), "crash {n}: {why}");
                    assert_eq!(
                        local.list("keyring/").unwrap(),
                        keyrings,
                        "crash {n}: the refused rerun changed keyrings"
                    );
                    open(work.path(), local.clone(), &secrets[0], &format!("cache-{n}-rerun0")).rotate_key().unwrap();
                }
                Err(e) => panic!("crash point {n}: rerun: {e}"),
            }
        }
        assert_eq!(local.list("keyring/").unwrap().len(), 1, "crash {n}: one keyring after the rerun");
        for (i, secret) in secrets.iter().enumerate() {
            let r = open(work.path(), local.clone(), secret, &format!("cache-{n}-final-{i}"));
            reads(&r, &before, &format!("crash {n}, final slot {i}, before"));
            for (w, out) in written.iter().enumerate() {
                reads(&r, out, &format!("crash {n}, final slot {i}, written by {w}"));
            }
        }
        fs::remove_dir_all(&copy).unwrap();
        if finished {
            break;
        }
        n += 1;
        assert!(n < 50, "rotation never finished");
    }
}

/// A damaged or foreign document in keys/ does not lock out the other slots; `check` names it,
/// and when nothing opens the error says which slots could not be read.
#[test]
fn a_damaged_slot_does_not_lock_out_the_others() {
    let e = KeyEnv::new();
    e.init();
    fs::write(e.p("repo/keys").join("f".repeat(64)), b"{ not a slot").unwrap();
    e.with_password("pw").arg("snapshots").assert().success();
    let out = e.with_password("pw").arg("check").output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    assert!(stderr_of(&out).contains(&"f".repeat(64)), "{}", stderr_of(&out));
    let out = e.with_password("pw2").arg("snapshots").output().unwrap();
    assert_eq!(out.status.code(), Some(12));
    assert!(stderr_of(&out).contains("could not be read"), "{}", stderr_of(&out));
    // Rotation refuses before it changes anything.
    let before: Vec<_> = walk_files(&e.p("repo/keyring"));
    assert!(!e.with_password("pw").args(["key", "rotate"]).output().unwrap().status.success());
    assert_eq!(walk_files(&e.p("repo/keyring")), before, "no keyring written or removed");
}
