//! Issue 3, acceptance 3: unreadable sources give exit code 3 with every path listed and the
//! snapshot still written; a file that grows while it is read is reported.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::sync::atomic::{AtomicBool, Ordering};

use assert_cmd::Command;

use crate::support::*;

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// `cairn` as an unprivileged user: root reads everything, so as root the command runs as
/// `nobody` (through setpriv) for permission bits to mean anything. The binary is copied into
/// `dir` first: the build directory may sit below a home directory `nobody` cannot enter.
fn cairn_unprivileged(dir: &std::path::Path) -> Command {
    let bin = assert_cmd::cargo::cargo_bin("cairn");
    let mut c = if is_root() {
        let copy = dir.join("cairn");
        if !copy.exists() {
            fs::copy(&bin, &copy).unwrap();
            fs::set_permissions(&copy, fs::Permissions::from_mode(0o755)).unwrap();
        }
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"]).arg(copy);
        c
    } else {
        Command::new(bin)
    };
    without_cairn_env(&mut c);
    c
}

#[test]
fn unreadable_sources_exit_3_and_the_rest_is_saved() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path();
    fs::set_permissions(w, fs::Permissions::from_mode(0o777)).unwrap();
    fs::write(w.join("pw"), "a password for nobody\n").unwrap();
    fs::set_permissions(w.join("pw"), fs::Permissions::from_mode(0o644)).unwrap();
    let src = w.join("src");
    fs::create_dir_all(src.join("locked-dir")).unwrap();
    fs::write(src.join("readable"), b"this one is fine").unwrap();
    fs::write(src.join("secret"), b"nobody may read this").unwrap();
    fs::write(src.join("locked-dir/inside"), b"unreachable").unwrap();
    for p in [&src, &w.join("src/readable").to_path_buf()] {
        fs::set_permissions(p, fs::Permissions::from_mode(0o755)).unwrap();
    }
    fs::set_permissions(src.join("readable"), fs::Permissions::from_mode(0o644)).unwrap();
    fs::set_permissions(src.join("secret"), fs::Permissions::from_mode(0o000)).unwrap();
    fs::set_permissions(src.join("locked-dir"), fs::Permissions::from_mode(0o000)).unwrap();

    let common = |c: &mut Command| {
        c.arg("-r")
            .arg(w.join("repo"))
            .arg("--cache-dir")
            .arg(w.join("cache"))
            .arg("--password-file")
            .arg(w.join("pw"));
    };
    let mut init = cairn_unprivileged(w);
    common(&mut init);
    init.args(["init", "--no-recovery-code", "--kdf-memory", "8192", "--kdf-iterations", "1"]).assert().success();

    let mut snap = cairn_unprivileged(w);
    common(&mut snap);
    let out = snap.args(["--json", "snapshot"]).arg(&src).output().unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let errors: Vec<String> =
        doc["errors"].as_array().unwrap().iter().map(|e| e["path"].as_str().unwrap().to_string()).collect();
    assert!(errors.iter().any(|p| p.ends_with("/secret")), "{errors:?}");
    assert!(errors.iter().any(|p| p.ends_with("/locked-dir")), "{errors:?}");
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert_eq!(doc["exit_code"], 3);

    // The snapshot was written, with the readable file in it.
    let mut ls = cairn_unprivileged(w);
    common(&mut ls);
    let out = ls.args(["ls", "latest"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("/src/readable"), "{text}");
    assert!(!text.contains("/src/secret"), "{text}");
    fs::set_permissions(src.join("locked-dir"), fs::Permissions::from_mode(0o755)).unwrap();
}

/// Appends to a file when the backup reports its first bytes read: the file then grows while it
/// is being read, deterministically.
struct GrowOnFirstRead {
    path: std::path::PathBuf,
    grown: AtomicBool,
}

impl cairn_engine::Progress for GrowOnFirstRead {
    fn bytes(&self, _n: u64) {
        if !self.grown.swap(true, Ordering::SeqCst) {
            use std::io::Write;
            let mut f = fs::OpenOptions::new().append(true).open(&self.path).unwrap();
            f.write_all(&[b'x'; 1 << 20]).unwrap();
        }
    }
}

#[test]
fn a_file_growing_while_it_is_read_is_reported() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    fs::create_dir_all(&src).unwrap();
    let growing = src.join("growing.log");
    fs::write(&growing, random_bytes(32 << 20, 5)).unwrap();
    let t = TestRepo::new();
    let repo = t.open();
    let progress = GrowOnFirstRead { path: growing.clone(), grown: AtomicBool::new(false) };
    let opts = cairn_engine::backup::BackupOptions {
        paths: vec![src.clone()],
        hostname: "test-host".into(),
        ..Default::default()
    };
    let out = cairn_engine::backup::backup(&repo, &opts, &progress).unwrap();
    assert!(progress.grown.load(Ordering::SeqCst));
    assert_eq!(out.errors.len(), 1, "{:?}", out.errors);
    assert!(out.errors[0].path.ends_with("growing.log"));
    assert!(out.errors[0].message.contains("changed while being read"), "{}", out.errors[0].message);
    // What was read is stored: the 33 MiB seen, not the 32 MiB stat said at first.
    assert_eq!(out.snapshot.summary.bytes_read, (32 << 20) + (1 << 20));
}
