//! Damage and odd conditions every command must survive, through the binary: a damaged
//! snapshot object, a read-only repository, unreadable and stale locks, leftovers of killed
//! writers, and the small traps of the command line (issue 19).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;

use crate::support::*;

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("pw"), "a password of the tests\n").unwrap();
        Env { dir }
    }

    fn p(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn cairn(&self) -> assert_cmd::Command {
        cairn_cmd(&self.p("repo"), &self.p("cache"), &self.p("pw"))
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cairn().args(args).output().unwrap()
    }

    fn init(&self) {
        let out = self.run(&["init", "--kdf-memory", "8192", "--kdf-iterations", "1", "--no-recovery-code"]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    }

    /// A snapshot of `src`; returns its id.
    fn snapshot(&self) -> String {
        let out = self.cairn().args(["--json", "snapshot"]).arg(self.p("src")).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        json(&out.stdout)["snapshot_id"].as_str().unwrap().to_string()
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn json(out: &[u8]) -> serde_json::Value {
    serde_json::from_slice(out).unwrap_or_else(|e| panic!("not one JSON document ({e}): {}", text(out)))
}

/// `out` ended with `code`; the message shows what it printed otherwise.
#[track_caller]
fn assert_code(out: &Output, code: i32, what: &str) {
    assert_eq!(out.status.code(), Some(code), "{what}: stdout {} stderr {}", text(&out.stdout), text(&out.stderr));
}

#[derive(Debug, Clone, Copy)]
enum Damage {
    BitFlip,
    Truncated,
    /// Another valid snapshot's bytes under this one's name.
    Swapped,
    Empty,
}

/// Three snapshots: the oldest holds a file the others lack (so its data matters to prune),
/// then it is damaged. Every command must go on around it; it can be removed by name or by
/// `repair snapshots`; prune refuses while deleting could hit its data.
fn damaged_snapshot_is_survived(damage: Damage, remove_with_repair: bool) {
    let env = Env::new();
    env.init();
    fs::create_dir_all(env.p("src")).unwrap();
    fs::write(env.p("src/only-in-the-oldest"), random_bytes(200_000, 1)).unwrap();
    let oldest = env.snapshot();
    fs::remove_file(env.p("src/only-in-the-oldest")).unwrap();
    fs::write(env.p("src/kept"), random_bytes(150_000, 2)).unwrap();
    env.snapshot();
    let newest = env.snapshot();
    let file = env.p("repo").join("snapshots").join(&oldest);
    let bytes = fs::read(&file).unwrap();
    match damage {
        Damage::BitFlip => {
            let mut b = bytes.clone();
            b[bytes.len() / 2] ^= 0x10;
            fs::write(&file, b).unwrap();
        }
        Damage::Truncated => fs::write(&file, &bytes[..bytes.len() / 2]).unwrap(),
        Damage::Swapped => fs::copy(env.p("repo").join("snapshots").join(&newest), &file).map(|_| ()).unwrap(),
        Damage::Empty => fs::write(&file, b"").unwrap(),
    }
    let short = &oldest[..12];

    let out = env.run(&["--json", "snapshots"]);
    assert_code(&out, 0, "snapshots");
    assert_eq!(json(&out.stdout).as_array().unwrap().len(), 2, "the readable ones are listed");
    assert!(text(&out.stderr).contains(short), "the damaged one is named: {}", text(&out.stderr));
    assert_code(&env.run(&["snapshots"]), 0, "snapshots, text");
    env.snapshot();
    assert_code(
        &env.cairn().arg("restore").arg("latest").arg("--target").arg(env.p("t")).output().unwrap(),
        0,
        "restore",
    );
    assert_eq!(fs::read(restored_path(&env.p("t"), &env.p("src/kept"))).unwrap(), random_bytes(150_000, 2));
    assert_code(&env.run(&["ls", "latest"]), 0, "ls latest");
    assert_code(&env.run(&["find", "kept"]), 0, "find");
    assert_code(&env.run(&["forget", "--keep-last", "1"]), 0, "forget --keep-last");
    assert!(env.p("repo").join("snapshots").join(&oldest).exists(), "a policy leaves a snapshot it cannot judge alone");

    let out = env.run(&["prune"]);
    assert_code(&out, 1, "prune while a damaged snapshot may own data");
    let err = text(&out.stderr);
    assert!(err.contains("cairn forget") && err.contains(&oldest) && err.contains("repair snapshots"), "{err}");
    let out = env.run(&["prune", "--dry-run"]);
    assert_code(&out, 0, "prune --dry-run");
    assert!(text(&out.stderr).contains("would refuse"), "{}", text(&out.stderr));

    if remove_with_repair {
        let out = env.run(&["repair", "snapshots"]);
        assert_code(&out, 0, "repair snapshots");
        assert!(text(&out.stdout).contains(short), "{}", text(&out.stdout));
    } else {
        assert_code(&env.run(&["forget", short]), 0, "forget ID");
    }
    assert!(!env.p("repo").join("snapshots").join(&oldest).exists());
    let out = env.run(&["snapshots"]);
    assert_code(&out, 0, "snapshots after");
    assert!(!text(&out.stderr).contains("warning"), "{}", text(&out.stderr));
    assert_code(&env.run(&["prune", "--instant-delete"]), 0, "prune after the removal");
    assert_code(&env.run(&["check", "--read-data"]), 0, "check after");
    assert_code(&env.run(&["audit", "verify"]), 0, "audit verify after");
}

#[test]
fn a_flipped_snapshot_is_listed_around_and_forgotten_by_id() {
    damaged_snapshot_is_survived(Damage::BitFlip, false);
}

#[test]
fn a_truncated_snapshot_is_removed_by_repair_snapshots() {
    damaged_snapshot_is_survived(Damage::Truncated, true);
}

#[test]
fn a_snapshot_swapped_for_another_is_forgotten_by_id() {
    damaged_snapshot_is_survived(Damage::Swapped, false);
}

#[test]
fn an_empty_snapshot_file_is_removed_by_repair_snapshots() {
    damaged_snapshot_is_survived(Damage::Empty, true);
}

#[test]
fn prune_goes_on_when_a_damaged_snapshot_cannot_matter() {
    // Every snapshot holds the same data: nothing looks unused, so nothing the damaged one
    // may use is at stake.
    let env = Env::new();
    env.init();
    fs::create_dir_all(env.p("src")).unwrap();
    fs::write(env.p("src/f"), random_bytes(100_000, 3)).unwrap();
    let first = env.snapshot();
    env.snapshot();
    fs::write(env.p("repo").join("snapshots").join(&first), b"junk").unwrap();
    let out = env.run(&["prune"]);
    assert_code(&out, 0, "prune with nothing to delete");
    assert!(text(&out.stderr).contains(&first[..12]), "{}", text(&out.stderr));
}

/// Makes every file and directory below `root` unwritable: by mode for a normal user, with
/// the immutable flag as root (whom modes do not stop). `false` when neither works here.
fn make_read_only(root: &Path, on: bool) -> bool {
    let is_root = std::os::unix::fs::MetadataExt::uid(&fs::metadata("/proc/self").unwrap()) == 0;
    if is_root {
        let flag = if on { "+i" } else { "-i" };
        std::process::Command::new("chattr").arg("-R").arg(flag).arg(root).status().is_ok_and(|s| s.success())
    } else {
        let mode = if on { "a-w" } else { "u+w" };
        std::process::Command::new("chmod").arg("-R").arg(mode).arg(root).status().is_ok_and(|s| s.success())
    }
}

#[test]
fn read_only_commands_work_on_a_repository_that_cannot_be_written() {
    let env = Env::new();
    env.init();
    fs::create_dir_all(env.p("src")).unwrap();
    fs::write(env.p("src/f"), random_bytes(100_000, 4)).unwrap();
    let first = env.snapshot();
    fs::write(env.p("src/g"), b"second").unwrap();
    let second = env.snapshot();
    if !make_read_only(&env.p("repo"), true) {
        // Neither the mode bits nor the immutable flag (tmpfs as root) can be set here.
        eprintln!("skipped: cannot make the repository read-only on this file system");
        return;
    }
    // Writing really is refused.
    let probe = fs::write(env.p("repo").join("probe"), b"x");
    let refused = probe.is_err();
    let cases: Vec<(Vec<String>, bool)> = vec![
        (vec!["snapshots".into()], false),
        (vec!["ls".into(), "latest".into()], false),
        (vec!["restore".into(), "latest".into(), "--target".into(), env.p("t").display().to_string()], true),
        (
            vec![
                "--no-lock".into(),
                "restore".into(),
                first.clone(),
                "--target".into(),
                env.p("t2").display().to_string(),
            ],
            false,
        ),
        (vec!["dump".into(), "latest".into(), env.p("src/g").display().to_string()], false),
        (vec!["diff".into(), first.clone(), second.clone()], false),
        (vec!["find".into(), "g".into()], false),
        (vec!["check".into(), "--read-data".into()], true),
        (vec!["cat".into(), "config".into()], false),
        (vec!["key".into(), "list".into()], false),
        (vec!["audit".into(), "verify".into()], false),
    ];
    let mut failures = Vec::new();
    for (args, warns) in &cases {
        let out = env.cairn().args(args).output().unwrap();
        if out.status.code() != Some(0) {
            failures.push(format!("{args:?}: exit {:?}: {}", out.status.code(), text(&out.stderr)));
        } else if *warns && !text(&out.stderr).contains("no lock taken") {
            failures.push(format!("{args:?}: no warning about the lock: {}", text(&out.stderr)));
        }
    }
    let out = env.cairn().args(["dump", "latest"]).arg(env.p("src/g")).output().unwrap();
    make_read_only(&env.p("repo"), false);
    assert!(refused, "the repository could still be written");
    assert!(failures.is_empty(), "{failures:#?}");
    assert_eq!(out.stdout, b"second");
    assert_eq!(fs::read(restored_path(&env.p("t"), &env.p("src/g"))).unwrap(), b"second");
}

#[test]
fn an_unreadable_lock_names_the_command_that_removes_it_and_turns_stale_by_age() {
    let env = Env::new();
    env.init();
    fs::create_dir_all(env.p("repo/locks")).unwrap();
    let lock = env.p("repo/locks").join("0".repeat(64));
    fs::write(&lock, b"not a lock").unwrap();
    let out = env.run(&["forget", "--keep-last", "1"]);
    assert_code(&out, 11, "forget behind an unreadable lock");
    let err = text(&out.stderr);
    assert!(err.contains("cairn unlock --remove-all") && err.contains("unreadable lock"), "{err}");
    // Fresh: plain unlock cannot know its holder is gone.
    let out = env.run(&["unlock"]);
    assert_code(&out, 0, "unlock");
    assert!(lock.exists());
    // Not written for longer than the stale limit: its holder is gone.
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(31 * 60);
    fs::File::options().write(true).open(&lock).unwrap().set_modified(old).unwrap();
    assert_code(&env.run(&["forget", "--keep-last", "1"]), 0, "forget past a stale unreadable lock");
    let out = env.run(&["unlock"]);
    assert_code(&out, 0, "unlock");
    assert!(text(&out.stdout).contains("1 lock(s) removed"), "{}", text(&out.stdout));
    assert!(!lock.exists());
}

#[test]
fn a_stale_lock_stays_readable_across_key_rotate_reencrypt() {
    let env = Env::new();
    env.init();
    fs::create_dir_all(env.p("src")).unwrap();
    fs::write(env.p("src/f"), random_bytes(100_000, 5)).unwrap();
    env.snapshot();
    // A snapshot killed while it holds its lock: a stale lock (its process is gone).
    let fifo = env.p("ready");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("cairn"))
        .env_clear()
        .arg("-r")
        .arg(env.p("repo"))
        .arg("--cache-dir")
        .arg(env.p("cache"))
        .arg("--password-file")
        .arg(env.p("pw"))
        .arg("snapshot")
        .arg("--stdin-from-command")
        .arg(format!("echo ready > '{}'; exec sleep 5", fifo.display()))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Blocks until the command runs, which is after the lock was taken.
    assert_eq!(fs::read_to_string(&fifo).unwrap(), "ready\n");
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(fs::read_dir(env.p("repo/locks")).unwrap().count(), 1, "the killed snapshot left its lock");

    let out = env.run(&["key", "rotate", "--reencrypt"]);
    assert_code(&out, 0, "key rotate --reencrypt past a stale lock");
    assert_code(&env.run(&["forget", "--keep-last", "1"]), 0, "forget after the retirement");
    assert_code(&env.run(&["prune"]), 0, "prune after the retirement");
    let out = env.run(&["key", "rotate", "--reencrypt"]);
    assert_code(&out, 0, "a second rotation");
    let out = env.run(&["unlock"]);
    assert_code(&out, 0, "unlock");
    assert!(text(&out.stdout).contains("1 lock(s) removed"), "{}", text(&out.stdout));
}

#[test]
fn init_refuses_an_existing_recovery_code_file_before_creating_anything() {
    let env = Env::new();
    fs::write(env.p("code"), "keep me").unwrap();
    let out = env
        .cairn()
        .args(["init", "--kdf-memory", "8192", "--kdf-iterations", "1", "--recovery-code-out"])
        .arg(env.p("code"))
        .output()
        .unwrap();
    assert_code(&out, 1, "init with an existing code file");
    assert_eq!(fs::read_to_string(env.p("code")).unwrap(), "keep me");
    assert!(!env.p("repo/config").exists(), "no repository was created");
    assert!(walk_files_if_any(&env.p("repo")).is_empty(), "nothing was created");
    // The same repository can be made once the path is free.
    let out = env
        .cairn()
        .args(["init", "--kdf-memory", "8192", "--kdf-iterations", "1", "--recovery-code-out"])
        .arg(env.p("code2"))
        .output()
        .unwrap();
    assert_code(&out, 0, "init");
    let code = fs::read_to_string(env.p("code2")).unwrap();
    let out = cairn_cmd(&env.p("repo"), &env.p("cache2"), &env.p("pw"))
        .env_remove("CAIRN_PASSWORD_FILE")
        .args(["--recovery-code-file"])
        .arg(env.p("code2"))
        .arg("snapshots")
        .output()
        .unwrap();
    assert_code(&out, 0, &format!("the written code ({}) opens it", code.trim().len()));
    // key add --recovery keeps its code the same way.
    let out = env.run(&["key", "add", "--recovery", "--recovery-code-out", &env.p("code").display().to_string()]);
    assert_code(&out, 1, "key add --recovery with an existing code file");
    let out = env.run(&["--json", "key", "list"]);
    assert_eq!(json(&out.stdout).as_array().unwrap().len(), 2, "no slot was added: {}", text(&out.stdout));
}

fn walk_files_if_any(root: &Path) -> Vec<PathBuf> {
    if root.exists() { walk_files(root) } else { Vec::new() }
}

#[test]
fn an_empty_snapshot_name_matches_nothing() {
    let env = Env::new();
    env.init();
    fs::create_dir_all(env.p("src")).unwrap();
    fs::write(env.p("src/f"), b"x").unwrap();
    env.snapshot();
    let out = env.cairn().args(["restore", "", "--target"]).arg(env.p("t")).output().unwrap();
    assert_code(&out, 1, "restore \"\"");
    assert!(!env.p("t").exists());
    assert_code(&env.run(&["ls", ""]), 1, "ls \"\"");
    assert_code(&env.run(&["forget", ""]), 1, "forget \"\"");
    assert_code(&env.run(&["--json", "snapshots"]), 0, "still there");
}

#[test]
fn cairn_password_loses_its_line_end_as_a_password_file_does() {
    let env = Env::new();
    env.init();
    let out = without_cairn_env(&mut assert_cmd::Command::cargo_bin("cairn").unwrap())
        .arg("-r")
        .arg(env.p("repo"))
        .arg("--cache-dir")
        .arg(env.p("cache"))
        .env("CAIRN_PASSWORD", "a password of the tests\n")
        .arg("snapshots")
        .output()
        .unwrap();
    assert_code(&out, 0, "CAIRN_PASSWORD with a newline");
}

#[test]
fn a_repository_path_that_is_a_file_exits_10() {
    let env = Env::new();
    fs::write(env.p("repo"), b"a file").unwrap();
    let out = env.run(&["snapshots"]);
    assert_code(&out, 10, "a file as repository");
    assert!(text(&out.stderr).contains("not a directory"), "{}", text(&out.stderr));
}

/// The slot of `kind` in `repo` (its path).
fn slot_of(repo: &Path, kind: &str) -> PathBuf {
    walk_files(&repo.join("keys"))
        .into_iter()
        .find(|p| json(&fs::read(p).unwrap())["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} slot"))
}

#[test]
fn a_damaged_or_foreign_password_slot_is_not_called_a_wrong_password_alone() {
    // Damaged: the sealed secret's bytes changed; the AEAD cannot tell that from a wrong
    // password, so the message says both.
    let env = Env::new();
    let out = env
        .cairn()
        .args(["init", "--kdf-memory", "8192", "--kdf-iterations", "1", "--recovery-code-out"])
        .arg(env.p("code"))
        .output()
        .unwrap();
    assert_code(&out, 0, "init");
    let slot = slot_of(&env.p("repo"), "password");
    let doc = fs::read(&slot).unwrap();
    let mut damaged = json(&doc);
    let hex = damaged["wrapped_secret"].as_str().unwrap().to_string();
    let (first, rest) = hex.split_at(1);
    let flipped = format!("{}{rest}", if first == "0" { "1" } else { "0" });
    damaged["wrapped_secret"] = serde_json::Value::String(flipped);
    fs::write(&slot, serde_json::to_vec_pretty(&damaged).unwrap()).unwrap();
    let out = env.run(&["snapshots"]);
    assert_code(&out, 12, "a damaged slot");
    assert!(text(&out.stderr).contains("damaged password slot"), "{}", text(&out.stderr));
    fs::write(&slot, doc).unwrap();

    // Foreign: the password slot of another repository (same password) copied in, this
    // repository's own password slot gone.
    let other = Env::new();
    other.init();
    fs::remove_file(&slot).unwrap();
    let foreign = slot_of(&other.p("repo"), "password");
    fs::copy(&foreign, env.p("repo/keys").join(foreign.file_name().unwrap())).unwrap();
    let out = env.run(&["snapshots"]);
    assert_code(&out, 12, "a foreign slot");
    assert!(text(&out.stderr).contains("belongs to another repository"), "{}", text(&out.stderr));
}

#[test]
fn temporary_files_of_killed_writers_are_reported_by_check_and_removed_by_prune() {
    let env = Env::new();
    env.init();
    fs::create_dir_all(env.p("src")).unwrap();
    fs::write(env.p("src/f"), random_bytes(100_000, 6)).unwrap();
    env.snapshot();
    fs::create_dir_all(env.p("repo/data/ab")).unwrap();
    let old = env.p("repo/data/ab/.tmp-4242-0011223344556677");
    let fresh = env.p("repo/snapshots/.tmp-4243-8899aabbccddeeff");
    fs::write(&old, vec![7u8; 6 << 20]).unwrap();
    fs::write(&fresh, b"being written").unwrap();
    let two_hours_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(2 * 3600);
    fs::File::options().write(true).open(&old).unwrap().set_modified(two_hours_ago).unwrap();
    let out = env.run(&["check"]);
    assert_code(&out, 0, "check: a notice, not damage");
    assert!(
        text(&out.stderr).contains(".tmp-4242") && text(&out.stderr).contains(".tmp-4243"),
        "{}",
        text(&out.stderr)
    );
    let out = env.run(&["prune"]);
    assert_code(&out, 0, "prune");
    assert!(!old.exists(), "an hour-old leftover is removed");
    assert!(fresh.exists(), "a fresh one may belong to a writer still at work");
}

#[test]
fn init_refuses_packs_whose_memory_would_not_be_bounded() {
    let env = Env::new();
    let out = env.run(&["init", "--kdf-memory", "8192", "--kdf-iterations", "1", "--pack-size", "1024"]);
    assert_code(&out, 2, "--pack-size 1024");
    assert!(!env.p("repo").exists());
    let out =
        env.run(&["init", "--kdf-memory", "8192", "--kdf-iterations", "1", "--no-recovery-code", "--pack-size", "128"]);
    assert_code(&out, 0, "--pack-size 128");
}

/// A storage whose every write is refused as a read-only file system refuses it: what the CLI
/// test above does with modes or the immutable flag, here without either.
#[derive(Debug)]
struct ReadOnlyMedia(std::sync::Arc<dyn cairn_engine::storage::Storage>);

impl cairn_engine::storage::Storage for ReadOnlyMedia {
    fn location(&self) -> String {
        self.0.location()
    }
    fn put(&self, name: &str, _: &[u8], _: cairn_engine::storage::PutMode) -> cairn_engine::Result<()> {
        Err(cairn_engine::Error::storage("write", name, std::io::Error::from_raw_os_error(30)))
    }
    fn get(&self, name: &str) -> cairn_engine::Result<Vec<u8>> {
        self.0.get(name)
    }
    fn get_range(&self, name: &str, offset: u64, len: u64) -> cairn_engine::Result<Vec<u8>> {
        self.0.get_range(name, offset, len)
    }
    fn list(&self, prefix: &str) -> cairn_engine::Result<Vec<String>> {
        self.0.list(prefix)
    }
    fn delete(&self, name: &str) -> cairn_engine::Result<()> {
        Err(cairn_engine::Error::storage("delete", name, std::io::Error::from_raw_os_error(30)))
    }
    fn stat(&self, name: &str) -> cairn_engine::Result<Option<u64>> {
        self.0.stat(name)
    }
}

#[test]
fn a_read_lock_on_read_only_media_is_no_lock_and_reading_goes_on() {
    use cairn_engine::repo::{LockOptions, REFRESH_EVERY, ReadLock};
    let t = TestRepo::new();
    let src = t.dir.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("f"), random_bytes(50_000, 7)).unwrap();
    let out = snapshot(&t.open(), &[&src]);
    let storage: std::sync::Arc<dyn cairn_engine::storage::Storage> =
        std::sync::Arc::new(ReadOnlyMedia(t.storage.clone()));
    let secret =
        cairn_engine::keys::OpenSecret::Password(cairn_engine::crypto::SecretBytes::from(PASSWORD.to_string()));
    let repo = cairn_engine::Repository::open(storage, &secret, t.cache()).unwrap();
    let opts = LockOptions {
        exclusive: false,
        operation: "restore".into(),
        hostname: "h".into(),
        username: "u".into(),
        retry_for: std::time::Duration::ZERO,
        refresh_every: REFRESH_EVERY,
    };
    let refused = repo.lock(&opts).unwrap_err();
    assert!(refused.is_write_refused(), "{refused}");
    match repo.read_lock(&opts).unwrap() {
        ReadLock::Unwritable(e) => assert!(e.to_string().contains("locks/"), "{e}"),
        ReadLock::Held(_) => panic!("a lock was stored on read-only media"),
    }
    // An exclusive lock is never given up this way.
    let exclusive = LockOptions { exclusive: true, ..opts };
    assert!(repo.lock(&exclusive).is_err());
    let target = t.dir.path().join("target");
    restore_all(&repo, &out, &target).unwrap();
    assert_eq!(fs::read(restored_path(&target, &src.join("f"))).unwrap(), random_bytes(50_000, 7));
}

#[test]
fn a_handle_opened_before_a_rotation_writes_nothing_under_the_retired_epochs() {
    use cairn_engine::prune::{PruneOptions, prune};
    use cairn_engine::repo::{LockOptions, REFRESH_EVERY};
    let t = TestRepo::new();
    let src = t.dir.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("f"), random_bytes(50_000, 8)).unwrap();
    snapshot(&t.open(), &[&src]);
    // A command opens the repository (a backup, a dump), then another rotates and retires.
    let early = t.open();
    let (rotated, out) = t.open().rotate_key().unwrap();
    let old_epoch = out.epoch - 1;
    prune(
        &rotated,
        PruneOptions { reencrypt_epoch: Some(old_epoch), ..PruneOptions::default() },
        false,
        &cairn_engine::NoProgress,
    )
    .unwrap();
    rotated.retire_epoch(old_epoch).unwrap();
    let opts = LockOptions {
        exclusive: false,
        operation: "snapshot".into(),
        hostname: "h".into(),
        username: "u".into(),
        retry_for: std::time::Duration::ZERO,
        refresh_every: REFRESH_EVERY,
    };
    let err = early.lock(&opts).unwrap_err();
    assert!(err.to_string().contains("rotated"), "{err}");
    let err = early.audit(&cairn_engine::audit::Actor::default(), &cairn_engine::audit::AuditRecord::new("dump"));
    assert!(err.is_err(), "an audit entry under a retired epoch was written");
    let fresh = t.open();
    let usage = fresh.epoch_usage(false).unwrap();
    let held: Vec<u32> = fresh.key_epochs().unwrap().into_iter().map(|e| e.0).collect();
    assert_eq!(usage.keys().copied().collect::<Vec<_>>(), held, "`key epochs` lists only what the keyring holds");
}
