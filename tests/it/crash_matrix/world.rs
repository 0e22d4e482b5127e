//! What every crash point shares: the secrets and slots, the source trees, and small helpers
//! to run the `cairn` binary and compare restored trees.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::support::*;

pub(super) const KDF: [&str; 4] = ["--kdf-memory", "8192", "--kdf-iterations", "1"];

/// The secrets a crash point opens the repository with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Slot {
    /// The password of `init`.
    Pw,
    /// The recovery code of `init`.
    Recovery,
    /// A second password slot.
    Pw2,
}

pub(super) const SLOTS: [Slot; 3] = [Slot::Pw, Slot::Recovery, Slot::Pw2];

/// Where the secrets and the sources live (shared by every crash point).
pub(super) struct World {
    pub(super) dir: tempfile::TempDir,
}

impl World {
    pub(super) fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("pw"), "the first password, long\n").unwrap();
        fs::write(dir.path().join("pw2"), "the second password, long\n").unwrap();
        fs::write(dir.path().join("pw3"), "a third password, added\n").unwrap();
        World { dir }
    }

    pub(super) fn p(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `cairn -r ROOT/repo --cache-dir ROOT/cache-SLOT` opened through `slot`, clean
    /// environment. Each slot is its own client, with its own cache (and pins): on one client
    /// that saw the newer keys of an unfinished rotation, a slot not moved yet is refused
    /// (exit 12, the rollback pin) until the rotation is finished, by design.
    pub(super) fn cairn(&self, root: &Path, slot: Slot) -> Command {
        let mut c = Command::new(assert_cmd::cargo::cargo_bin("cairn-killable"));
        for (k, _) in std::env::vars() {
            if k.starts_with("CAIRN_") {
                c.env_remove(k);
            }
        }
        c.arg("-r").arg(root.join("repo")).arg("--cache-dir").arg(root.join(format!("cache-{slot:?}")));
        match slot {
            Slot::Pw => c.arg("--password-file").arg(self.p("pw")),
            Slot::Pw2 => c.arg("--password-file").arg(self.p("pw2")),
            Slot::Recovery => c.arg("--recovery-code-file").arg(self.p("recovery")),
        };
        c
    }

    /// A source tree of a few files, `version` changing some of them.
    pub(super) fn source(&self, name: &str, version: u64) -> PathBuf {
        let src = self.p(name);
        fs::create_dir_all(src.join("sub")).unwrap();
        fs::write(src.join("text.txt"), text_bytes(120_000, 1 + version)).unwrap();
        fs::write(src.join("sub/random.bin"), random_bytes(250_000, 10 + version)).unwrap();
        fs::write(src.join("sub/same.bin"), random_bytes(90_000, 99)).unwrap();
        fs::write(src.join("small"), format!("small file, version {version}")).unwrap();
        src
    }
}

pub(super) fn run(mut c: Command, args: &[&str]) -> Output {
    c.args(args).output().unwrap()
}

pub(super) fn ok(out: &Output, what: &str) -> Result<(), String> {
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{what}: {} {}", out.status, String::from_utf8_lossy(&out.stderr).trim()))
    }
}

pub(super) fn must(out: Output, what: &str) -> Output {
    ok(&out, what).unwrap();
    out
}

pub(super) fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

pub(super) fn copy_dir(from: &Path, to: &Path) {
    let status = Command::new("cp").arg("-a").arg(from).arg(to).status().unwrap();
    assert!(status.success(), "cp -a {} {}", from.display(), to.display());
}

/// Whether `restored` holds exactly the files of `source`, byte for byte.
pub(super) fn same_content(source: &Path, restored: &Path) -> Result<(), String> {
    let rel = |root: &Path| -> BTreeSet<PathBuf> {
        walk_files(root).into_iter().map(|p| p.strip_prefix(root).unwrap().to_path_buf()).collect()
    };
    if !restored.exists() {
        return Err(format!("{} was not restored", source.display()));
    }
    let (a, b) = (rel(source), rel(restored));
    if a != b {
        return Err(format!("restored files {b:?}, expected {a:?}"));
    }
    for f in &a {
        if fs::read(source.join(f)).unwrap() != fs::read(restored.join(f)).unwrap() {
            return Err(format!("{} restored with other bytes", f.display()));
        }
    }
    Ok(())
}
