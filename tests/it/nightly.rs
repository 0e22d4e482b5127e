//! README's nightly job, run as written: its env file and script are taken from README.md and
//! run in a private mount namespace whose root is a small tree (a tmpfs), with `/home` on a
//! second file system and the repository, `/usr` and `/proc` mounted in from the host, so
//! `snapshot --exclude-caches -x / /home` backs up a whole root exactly as on a server: both
//! named file systems in full, every other mount point stored empty, caches left out.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
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

#[test]
fn readme_nightly_job_backs_up_a_whole_root_and_home_in_another_file_system() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test mounts file systems in a private mount namespace: run the suite as root (as .ci/run does)"
    );
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path();
    let (src_root, src_home) = (w.join("src-root"), w.join("src-home"));
    write_root(&src_root);
    write_home(&src_home);
    let repo = w.join("repo");
    fs::create_dir_all(&repo).unwrap();
    let logs = w.join("logs");
    fs::create_dir_all(&logs).unwrap();
    fs::write(w.join("password"), "nightly job password\n").unwrap();
    fs::write(w.join("env"), readme_block("`/etc/cairn/env` (mode 0600):")).unwrap();
    fs::write(w.join("cairn-nightly"), readme_block("`/usr/local/sbin/cairn-nightly`:")).unwrap();
    fs::set_permissions(w.join("cairn-nightly"), fs::Permissions::from_mode(0o755)).unwrap();

    // The repository exists (init is not part of the nightly job): made with README's env.
    let cache = w.join("cache");
    let init = cairn_cmd(&repo, &cache, &w.join("password"))
        .args(["init", "--no-recovery-code", "--kdf-memory", "8192", "--kdf-iterations", "1"])
        .output()
        .unwrap();
    assert!(init.status.success(), "{}", String::from_utf8_lossy(&init.stderr));

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
cp "$W/env" "$R/etc/cairn/env"
chmod 600 "$R/etc/cairn/env" "$R/etc/cairn/password"
cp "$W/cairn-nightly" "$R/usr/local/sbin/cairn-nightly"
set +e
chroot "$R" /usr/bin/env -i HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  /bin/sh -c '. /etc/cairn/env; export CAIRN_REPOSITORY CAIRN_PASSWORD_FILE; /usr/local/sbin/cairn-nightly'
rc=$?
set -e
cp -a "$R/var/log/cairn/." "$W/logs/" || true
exit $rc
"#,
        w = w.display(),
        bin = bin.display(),
    );
    let out =
        Command::new("unshare").args(["--mount", "--propagation", "private", "sh", "-c", &script]).output().unwrap();
    let logs_text: Vec<String> = fs::read_dir(&logs)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            format!("{}: {}", e.file_name().to_string_lossy(), fs::read_to_string(e.path()).unwrap_or_default())
        })
        .collect();
    assert_eq!(
        out.status.code(),
        Some(0),
        "the nightly job failed\nstderr: {}\nlogs: {logs_text:#?}",
        String::from_utf8_lossy(&out.stderr)
    );
    let snapshot_log = fs::read_dir(&logs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(".json.snapshot"))
        .expect("the job writes its snapshot log");
    let doc: serde_json::Value = serde_json::from_str(&fs::read_to_string(snapshot_log).unwrap()).unwrap();
    assert_eq!(doc["exit_code"], 0, "{doc}");

    // What the snapshot holds, restored outside the namespace.
    let target = w.join("restored");
    let restore = cairn_cmd(&repo, &cache, &w.join("password"))
        .args(["restore", "latest", "--target"])
        .arg(&target)
        .output()
        .unwrap();
    assert!(restore.status.success(), "{}", String::from_utf8_lossy(&restore.stderr));
    // Both named file systems in full.
    // (The mount points' own modes and times are the tmpfs's, so the trees are compared below them.)
    assert_same_tree(&src_home.join("ann"), &target.join("home/ann"));
    for sub in ["etc/app", "root/docs", "var/lib/db"] {
        assert_same_tree(&src_root.join(sub), &target.join(sub));
    }
    // Other file systems below them are stored as empty mount points.
    for mount_point in ["usr", "proc", "dev", "srv/backup/repo"] {
        let p = target.join(mount_point);
        assert!(p.is_dir(), "{mount_point} is kept as a directory");
        assert_eq!(fs::read_dir(&p).unwrap().count(), 0, "{mount_point} is another file system: stored empty");
    }
    // The job's password and env files (on the root file system) are in the backup too.
    assert_eq!(fs::read(target.join("etc/cairn/password")).unwrap(), fs::read(w.join("password")).unwrap());
    // Caches are left out: the tagged directory, and cairn's own cache under /root/.cache.
    assert!(!target.join("var/cache/thumbs").exists(), "a CACHEDIR.TAG directory is left out");
    assert!(!target.join("root/.cache/cairn").exists(), "cairn's own cache is left out");
    assert!(target.join("var/log/cairn").is_dir());
}
