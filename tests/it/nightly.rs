//! README's nightly job, run as written: its env file and script are taken from README.md and
//! run in a private mount namespace whose root is a small tree (a tmpfs), with `/home` on a
//! second file system and the repository, `/usr` and `/proc` mounted in from the host, so
//! `snapshot --exclude-caches -x / /home` backs up a whole root exactly as on a server: both
//! named file systems in full, every other mount point stored empty, caches left out.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::*;

/// The body of the fenced block that follows the line `marker` in README.md.
fn readme_block(marker: &str) -> String {
    let readme = fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let after = &readme[readme.find(marker).unwrap_or_else(|| panic!("README.md has no {marker:?}"))..];
    let fence = after.find("```").expect("a fenced block after the marker");
    let body = &after[fence..];
    let start = body.find('\n').unwrap() + 1;
    let end = body[start..].find("```").unwrap();
    body[start..start + end].to_string()
}

/// The source tree's root file system: what `/` holds besides the mounts.
fn write_root(root: &Path) {
    fs::create_dir_all(root.join("etc/app")).unwrap();
    fs::write(root.join("etc/app/app.conf"), "listen = 8080\n").unwrap();
    fs::create_dir_all(root.join("root/docs")).unwrap();
    fs::write(root.join("root/docs/plan.txt"), text_bytes(300_000, 1)).unwrap();
    fs::write(root.join("root/docs/blob.bin"), random_bytes(2 << 20, 2)).unwrap();
    fs::create_dir_all(root.join("var/lib/db")).unwrap();
    fs::write(root.join("var/lib/db/data"), random_bytes(700_000, 3)).unwrap();
    std::os::unix::fs::symlink("../lib/db/data", root.join("var/lib/db/link")).unwrap();
    // A cache: left out by --exclude-caches.
    fs::create_dir_all(root.join("var/cache/thumbs")).unwrap();
    fs::write(root.join("var/cache/thumbs/CACHEDIR.TAG"), "Signature: 8a477f597d28d172789f06886806bc55\n").unwrap();
    fs::write(root.join("var/cache/thumbs/t1"), random_bytes(10_000, 4)).unwrap();
}

fn write_home(home: &Path) {
    fs::create_dir_all(home.join("ann/photos")).unwrap();
    fs::write(home.join("ann/notes.md"), text_bytes(50_000, 5)).unwrap();
    fs::write(home.join("ann/photos/p1.raw"), random_bytes(3 << 20, 6)).unwrap();
    fs::write(home.join("ann/empty"), b"").unwrap();
}

/// A machine to run the nightly job on: source trees, an initialised repository, the password.
struct Machine {
    dir: tempfile::TempDir,
    src_root: PathBuf,
    src_home: PathBuf,
}

impl Machine {
    fn new() -> Self {
        assert!(
            nix::unistd::geteuid().is_root(),
            "this test mounts file systems in a private mount namespace: run the suite as root (as .ci/run does)"
        );
        let dir = tempfile::tempdir().unwrap();
        let w = dir.path();
        let (src_root, src_home) = (w.join("src-root"), w.join("src-home"));
        write_root(&src_root);
        write_home(&src_home);
        fs::create_dir_all(w.join("repo")).unwrap();
        fs::create_dir_all(w.join("logs")).unwrap();
        fs::write(w.join("password"), "nightly job password\n").unwrap();
        // The repository exists (init is not part of the nightly job).
        let init = cairn_cmd(&w.join("repo"), &w.join("cache"), &w.join("password"))
            .args(["init", "--no-recovery-code", "--kdf-memory", "8192", "--kdf-iterations", "1"])
            .output()
            .unwrap();
        assert!(init.status.success(), "{}", String::from_utf8_lossy(&init.stderr));
        // The job opens with a key file, made once with the password as README says.
        let add = cairn_cmd(&w.join("repo"), &w.join("cache"), &w.join("password"))
            .args(["key", "add", "--label", "nightly", "--new-key-file"])
            .arg(w.join("nightly.key"))
            .output()
            .unwrap();
        assert!(add.status.success(), "{}", String::from_utf8_lossy(&add.stderr));
        Machine { dir, src_root, src_home }
    }

    fn w(&self) -> &Path {
        self.dir.path()
    }

    /// Runs `job` (a shell command line) as root in the machine's root, after `setup` (shell,
    /// outside the chroot, `$R` the root) put its files in place; returns the job's exit status
    /// and stderr, and leaves the job's logs in `logs/`.
    fn run(&self, setup: &str, job: &str) -> (Option<i32>, String) {
        let bin = assert_cmd::cargo::cargo_bin("cairn");
        let script = format!(
            r#"set -eu
W={w}
R=$W/mnt-root
mkdir -p "$R"
mount -t tmpfs cairn-test-root "$R"
cp -a "$W/src-root/." "$R/"
mkdir -p "$R/home" "$R/usr" "$R/proc" "$R/dev" "$R/tmp" "$R/srv/backup/repo" "$R/etc/cairn"
mount -t tmpfs cairn-test-home "$R/home"
cp -a "$W/src-home/." "$R/home/"
for d in bin sbin lib lib32 lib64; do
  if [ -L "/$d" ]; then ln -s "$(readlink "/$d")" "$R/$d"; elif [ -d "/$d" ]; then mkdir "$R/$d"; mount --rbind "/$d" "$R/$d"; fi
done
mount --rbind /usr "$R/usr"
mount -t tmpfs cairn-test-usr-local "$R/usr/local"
mkdir -p "$R/usr/local/bin" "$R/usr/local/sbin"
touch "$R/usr/local/bin/cairn"
mount --bind {bin} "$R/usr/local/bin/cairn"
mount -t proc proc "$R/proc"
mount --rbind /dev "$R/dev"
mount --bind "$W/repo" "$R/srv/backup/repo"
cp "$W/password" "$R/etc/cairn/password"
chmod 600 "$R/etc/cairn/password"
cp -p "$W/nightly.key" "$R/etc/cairn/nightly.key"
{setup}
set +e
chroot "$R" /usr/bin/env -i HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  /bin/sh -c '{job}'
rc=$?
set -e
cp -a "$R/var/log/cairn/." "$W/logs/" || true
exit $rc
"#,
            w = self.w().display(),
            bin = bin.display(),
        );
        let out = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c", &script])
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    }

    /// The logs the job wrote, for failure messages.
    fn logs(&self) -> Vec<String> {
        fs::read_dir(self.w().join("logs"))
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                format!("{}: {}", e.file_name().to_string_lossy(), fs::read_to_string(e.path()).unwrap_or_default())
            })
            .collect()
    }

    /// Checks the job's snapshot log, then restores the latest snapshot outside the namespace
    /// and checks what it holds; returns the restored tree.
    fn check_backup(&self) -> PathBuf {
        let w = self.w();
        let snapshot_log = fs::read_dir(w.join("logs"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.to_string_lossy().ends_with(".json.snapshot"))
            .expect("the job writes its snapshot log");
        let doc: serde_json::Value = serde_json::from_str(&fs::read_to_string(snapshot_log).unwrap()).unwrap();
        assert_eq!(doc["exit_code"], 0, "{doc}");
        let target = w.join("restored");
        let restore = cairn_cmd(&w.join("repo"), &w.join("cache"), &w.join("password"))
            .args(["restore", "latest", "--target"])
            .arg(&target)
            .output()
            .unwrap();
        assert!(restore.status.success(), "{}", String::from_utf8_lossy(&restore.stderr));
        // Both named file systems in full. (The mount points' own modes and times are the
        // tmpfs's, so the trees are compared below them.)
        assert_same_tree(&self.src_home.join("ann"), &target.join("home/ann"));
        for sub in ["etc/app", "root/docs", "var/lib/db"] {
            assert_same_tree(&self.src_root.join(sub), &target.join(sub));
        }
        // Other file systems below them are stored as empty mount points.
        for mount_point in ["usr", "proc", "dev", "srv/backup/repo"] {
            let p = target.join(mount_point);
            assert!(p.is_dir(), "{mount_point} is kept as a directory");
            assert_eq!(fs::read_dir(&p).unwrap().count(), 0, "{mount_point} is another file system: stored empty");
        }
        // The job's key file (on the root file system) is in the backup too.
        assert_eq!(fs::read(target.join("etc/cairn/nightly.key")).unwrap(), fs::read(w.join("nightly.key")).unwrap());
        // And the job opened with it: the audit log names the key-file slot for the snapshot.
        let slots = cairn_cmd(&w.join("repo"), &w.join("cache"), &w.join("password"))
            .args(["--json", "key", "list"])
            .output()
            .unwrap();
        let slots: Vec<serde_json::Value> = serde_json::from_slice(&slots.stdout).unwrap();
        let key_file = slots.iter().find(|s| s["kind"] == "key_file").expect("a key-file slot");
        assert!(key_file["last_used"].is_string(), "the job opened the repository with its key file: {slots:?}");
        // Caches are left out: the tagged directory, and cairn's own cache under /root/.cache.
        assert!(!target.join("var/cache/thumbs").exists(), "a CACHEDIR.TAG directory is left out");
        assert!(!target.join("root/.cache/cairn").exists(), "cairn's own cache is left out");
        assert!(target.join("var/log/cairn").is_dir());
        target
    }
}

#[test]
fn readme_nightly_job_backs_up_a_whole_root_and_home_in_another_file_system() {
    let m = Machine::new();
    fs::write(m.w().join("env"), readme_block("`/etc/cairn/env` (mode 0600):")).unwrap();
    fs::write(m.w().join("cairn-nightly"), readme_block("`/usr/local/sbin/cairn-nightly`:")).unwrap();
    let setup = r#"cp "$W/env" "$R/etc/cairn/env"; chmod 600 "$R/etc/cairn/env"
cp "$W/cairn-nightly" "$R/usr/local/sbin/cairn-nightly"; chmod 755 "$R/usr/local/sbin/cairn-nightly""#;
    let job = ". /etc/cairn/env; export CAIRN_REPOSITORY CAIRN_KEY_FILE; /usr/local/sbin/cairn-nightly";
    let (code, stderr) = m.run(setup, job);
    assert_eq!(code, Some(0), "the nightly job failed\nstderr: {stderr}\nlogs: {:#?}", m.logs());
    m.check_backup();
}

#[test]
fn readme_nightly_job_from_a_profile_does_the_same() {
    let m = Machine::new();
    fs::write(m.w().join("nightly.toml"), readme_block("with a profile: `/etc/cairn/nightly.toml`")).unwrap();
    fs::write(m.w().join("cairn-nightly-profile"), readme_block("and `/usr/local/sbin/cairn-nightly-profile`:"))
        .unwrap();
    let setup = r#"cp "$W/nightly.toml" "$R/etc/cairn/nightly.toml"
cp "$W/cairn-nightly-profile" "$R/usr/local/sbin/cairn-nightly-profile"; chmod 755 "$R/usr/local/sbin/cairn-nightly-profile""#;
    // No environment at all: the profile says everything.
    let (code, stderr) = m.run(setup, "/usr/local/sbin/cairn-nightly-profile");
    assert_eq!(code, Some(0), "the nightly job failed\nstderr: {stderr}\nlogs: {:#?}", m.logs());
    let target = m.check_backup();
    // The profile's tag, and the file its run-before command made before the backup.
    let out = cairn_cmd(&m.w().join("repo"), &m.w().join("cache"), &m.w().join("password"))
        .args(["--json", "snapshots", "--tag", "nightly"])
        .output()
        .unwrap();
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert!(target.join("var/backups/etc-listing.txt").is_file(), "run-before ran before the backup");
}
