//! Key-file slots through the binary: made by `key add --new-key-file`, opened with
//! `--key-file` or CAIRN_KEY_FILE, refused with a reason (open to other users, not a key file,
//! another repository's, a removed slot), and the secret never leaves its file.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use assert_cmd::Command;

use crate::support::*;

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("pw"), "a password, long enough\n").unwrap();
        let src = dir.path().join("src");
        fs::create_dir_all(src.join("sub")).unwrap();
        fs::write(src.join("a.txt"), b"alpha ".repeat(10_000)).unwrap();
        fs::write(src.join("sub/b.bin"), random_bytes(200_000, 3)).unwrap();
        Env { dir }
    }

    fn p(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn bare(&self, repo: &str) -> Command {
        let mut c = Command::cargo_bin("cairn").unwrap();
        without_cairn_env(&mut c);
        c.arg("-r").arg(self.p(repo)).arg("--cache-dir").arg(self.p("cache"));
        c
    }

    fn with_password(&self, repo: &str) -> Command {
        let mut c = self.bare(repo);
        c.arg("--password-file").arg(self.p("pw"));
        c
    }

    fn with_key_file(&self, repo: &str, file: &str) -> Command {
        let mut c = self.bare(repo);
        c.arg("--key-file").arg(self.p(file));
        c
    }

    fn init(&self, repo: &str) {
        self.with_password(repo)
            .args(["init", "--kdf-memory", "8192", "--kdf-iterations", "1", "--no-recovery-code"])
            .assert()
            .success();
    }

    fn add_key_file(&self, repo: &str, file: &str) -> std::process::Output {
        self.with_password(repo)
            .args(["key", "add", "--label", "nightly", "--new-key-file"])
            .arg(self.p(file))
            .output()
            .unwrap()
    }

    fn slot_kinds(&self, repo: &str) -> Vec<String> {
        let out = self.with_password(repo).args(["--json", "key", "list"]).output().unwrap();
        assert!(out.status.success(), "{}", stderr_of(&out));
        let slots: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
        slots.iter().map(|s| s["kind"].as_str().unwrap().to_string()).collect()
    }
}

fn refused(mut c: Command, args: &[&str], says: &str) {
    let out = c.args(args).output().unwrap();
    assert_eq!(out.status.code(), Some(12), "{}", stderr_of(&out));
    assert!(stderr_of(&out).contains(says), "{:?} should say {says:?}", stderr_of(&out));
}

#[test]
fn a_key_file_opens_the_repository_for_backup_and_restore() {
    let e = Env::new();
    e.init("repo");
    let out = e.add_key_file("repo", "nightly.key");
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(fs::metadata(e.p("nightly.key")).unwrap().permissions().mode() & 0o777, 0o600);
    let mut kinds = e.slot_kinds("repo");
    kinds.sort();
    assert_eq!(kinds, ["key_file", "password"]);
    e.with_key_file("repo", "nightly.key").arg("snapshot").arg(e.p("src")).assert().success();
    // From the environment too, as a systemd unit or a crontab sets it.
    let mut c = e.bare("repo");
    c.env("CAIRN_KEY_FILE", e.p("nightly.key")).arg("snapshot").arg(e.p("src")).assert().success();
    // A password typed on the command line wins over the environment's key file (an admin
    // running a command by hand on the backed-up host): a wrong one is refused.
    fs::write(e.p("wrong"), "not the password\n").unwrap();
    let mut c = e.bare("repo");
    c.env("CAIRN_KEY_FILE", e.p("nightly.key")).arg("--password-file").arg(e.p("wrong"));
    refused(c, &["snapshots"], "no key slot opens with this password");
    e.with_key_file("repo", "nightly.key")
        .arg("restore")
        .arg("latest")
        .arg("--target")
        .arg(e.p("out"))
        .assert()
        .success();
    assert_same_tree(&e.p("src"), &restored_path(&e.p("out"), &e.p("src")));
    // The slot in use is the key file's, and the audit log says so.
    let out = e.with_key_file("repo", "nightly.key").args(["--json", "key", "list"]).output().unwrap();
    let slots: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let used = slots.iter().find(|s| s["in_use"] == true).unwrap();
    assert_eq!((used["kind"].as_str(), used["label"].as_str()), (Some("key_file"), Some("nightly")));
    e.with_password("repo").args(["check", "--read-data"]).assert().success();
}

#[test]
fn a_key_file_that_cannot_be_trusted_or_used_is_refused_with_the_reason() {
    let e = Env::new();
    e.init("repo");
    e.init("other");
    assert!(e.add_key_file("repo", "k").status.success());
    // Open to other users: refused before the repository is touched, as ssh refuses such a key.
    fs::set_permissions(e.p("k"), fs::Permissions::from_mode(0o644)).unwrap();
    refused(e.with_key_file("repo", "k"), &["snapshots"], "chmod 600");
    fs::set_permissions(e.p("k"), fs::Permissions::from_mode(0o600)).unwrap();
    // Owned by another user (who can read it and change its mode whatever the mode says).
    let other = e.p("k-nobody");
    fs::copy(e.p("k"), &other).unwrap();
    nix::unistd::chown(&other, Some(nix::unistd::Uid::from_raw(65534)), None).unwrap();
    refused(e.with_key_file("repo", "k-nobody"), &["snapshots"], "owned by user 65534");
    e.with_key_file("repo", "k").arg("snapshots").assert().success();
    // Not a key file at all, or one whose secret was edited.
    fs::write(e.p("garbage"), "hello\n").unwrap();
    fs::set_permissions(e.p("garbage"), fs::Permissions::from_mode(0o600)).unwrap();
    refused(e.with_key_file("repo", "garbage"), &["snapshots"], "not a cairn key file");
    let text = fs::read_to_string(e.p("k")).unwrap();
    let secret_line = text.lines().find(|l| l.starts_with("secret ")).unwrap();
    let flipped = format!("secret {}{}", if secret_line.as_bytes()[7] == b'0' { '1' } else { '0' }, &secret_line[8..]);
    fs::write(e.p("edited"), text.replace(secret_line, &flipped)).unwrap();
    fs::set_permissions(e.p("edited"), fs::Permissions::from_mode(0o600)).unwrap();
    refused(e.with_key_file("repo", "edited"), &["snapshots"], "does not open its slot");
    // Another repository's key file names that repository.
    refused(e.with_key_file("other", "k"), &["snapshots"], "was made for repository");
    // A path that exists already is never overwritten, and no slot is made.
    let before = e.slot_kinds("repo").len();
    let out = e.add_key_file("repo", "garbage");
    assert!(!out.status.success() && stderr_of(&out).contains("nothing was created"), "{}", stderr_of(&out));
    assert_eq!(fs::read_to_string(e.p("garbage")).unwrap(), "hello\n");
    assert_eq!(e.slot_kinds("repo").len(), before);
    // Once its slot is removed, the file opens nothing and says why.
    let out = e.with_password("repo").args(["--json", "key", "list"]).output().unwrap();
    let slots: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let id = slots.iter().find(|s| s["kind"] == "key_file").unwrap()["id"].as_str().unwrap().to_string();
    e.with_password("repo").args(["key", "remove", &id]).assert().success();
    refused(e.with_key_file("repo", "k"), &["snapshots"], "not in this repository");
}

#[test]
fn the_key_file_secret_stays_in_its_file() {
    let e = Env::new();
    e.init("repo");
    let add = e.add_key_file("repo", "k");
    let mut outputs = [add.stdout, add.stderr].concat();
    for args in [&["snapshot", e.p("src").to_str().unwrap()][..], &["--json", "key", "list"], &["audit", "log"]] {
        let out = e.with_key_file("repo", "k").args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", stderr_of(&out));
        outputs.extend(out.stdout);
        outputs.extend(out.stderr);
    }
    let text = fs::read_to_string(e.p("k")).unwrap();
    let secret_hex = text.lines().find_map(|l| l.strip_prefix("secret ")).unwrap().to_string();
    let secret = hex::decode(&secret_hex).unwrap();
    let mut haystacks = vec![("outputs".to_string(), outputs)];
    for f in walk_files(&e.p("cache")).into_iter().chain(walk_files(&e.p("repo"))) {
        haystacks.push((f.display().to_string(), fs::read(&f).unwrap()));
    }
    for (what, hay) in &haystacks {
        for needle in [secret_hex.as_bytes(), secret_hex.to_uppercase().as_bytes(), &secret] {
            assert!(!hay.windows(needle.len()).any(|w| w == needle), "the key file secret is in {what}");
        }
    }
}
