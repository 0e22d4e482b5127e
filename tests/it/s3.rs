//! Backups into S3: the CLI over TLS with a private CA, a server that fails requests, and a
//! ~500 MB backup, restore and check over TLS timed against a local repository.

use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use cairn_engine::check::{CheckOptions, Subset, check};
use cairn_engine::crypto::{Argon2Params, SecretBytes};
use cairn_engine::keys::OpenSecret;
use cairn_engine::storage::{LocalStorage, S3Options, Storage};
use cairn_engine::{InitOptions, NoProgress, Repository};

use crate::s3server::{Fault, FaultProxy, s3};
use crate::support::*;

fn init(storage: Arc<dyn Storage>, pack_target_size: u32) {
    let mut opts = InitOptions::new(SecretBytes::from(PASSWORD.to_string()), Argon2Params::MIN);
    opts.pack_target_size = pack_target_size;
    Repository::init(storage, &opts).unwrap();
}

fn open(storage: Arc<dyn Storage>, cache: &Path) -> Repository {
    Repository::open(storage, &OpenSecret::Password(SecretBytes::from(PASSWORD.to_string())), cache.to_path_buf())
        .unwrap()
}

fn check_clean(repo: &Repository) {
    let r = check(repo, &CheckOptions { read_data: Some(Subset::All) }, &NoProgress).unwrap();
    assert!(r.findings.is_empty(), "{:#?}", r.findings);
    assert!(r.packs_read > 0);
}

/// No errors; notices (packs no index names, left by an interrupted backup) are allowed.
fn check_no_errors(repo: &Repository) -> usize {
    let r = check(repo, &CheckOptions { read_data: Some(Subset::All) }, &NoProgress).unwrap();
    assert!(r.findings.iter().all(|f| f.severity == cairn_engine::check::Severity::Notice), "{:#?}", r.findings);
    r.findings.len()
}

fn mixed_tree(root: &Path, scale: usize, seed: u64) {
    fs::create_dir_all(root.join("small")).unwrap();
    for i in 0..(scale * 20) {
        fs::write(root.join(format!("small/f{i}")), text_bytes(1000 + i * 37 % 9000, seed + i as u64)).unwrap();
    }
    fs::write(root.join("random.bin"), random_bytes(scale * (1 << 20), seed)).unwrap();
    fs::write(root.join("text.txt"), text_bytes(scale * (1 << 20), seed + 1)).unwrap();
}

#[test]
fn cli_backup_restore_forget_prune_check_over_tls() {
    let server = s3();
    let bucket = server.bucket();
    let url = format!("{}/nightly", server.url(&bucket, true));
    let work = tempfile::tempdir().unwrap();
    let pw = work.path().join("pw");
    fs::write(&pw, PASSWORD).unwrap();
    let src = work.path().join("src");
    mixed_tree(&src, 8, 1);
    let cairn = |args: &[&str]| {
        let mut c = cairn_cmd(Path::new(&url), &work.path().join("cache"), &pw);
        c.envs(server.env()).arg("--cacert").arg(&server.ca_pem).args(args);
        c
    };
    cairn(&["init"]).assert().success();
    cairn(&["snapshot", src.to_str().unwrap()]).assert().success();
    fs::write(src.join("text.txt"), text_bytes(3 << 20, 99)).unwrap();
    fs::remove_file(src.join("small/f3")).unwrap();
    cairn(&["snapshot", "--storage-connections", "2", src.to_str().unwrap()]).assert().success();
    // --limit-upload: 6 MiB of new data at 4 MiB/s cannot take less than about 1.5 s.
    fs::write(src.join("new.bin"), random_bytes(6 << 20, 5)).unwrap();
    let start = Instant::now();
    cairn(&["snapshot", "--limit-upload", "4096", src.to_str().unwrap()]).assert().success();
    assert!(start.elapsed().as_secs_f64() > 1.3, "--limit-upload had no effect: {:?}", start.elapsed());
    let target = work.path().join("restored");
    cairn(&["restore", "latest", "--target", target.to_str().unwrap()]).assert().success();
    assert_same_tree(&src, &restored_path(&target, &src));
    cairn(&["forget", "--keep-last", "1"]).assert().success();
    cairn(&["prune"]).assert().success();
    cairn(&["check", "--read-data"]).assert().success();
    let out = cairn(&["--json", "snapshots"]).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v.as_array().map(Vec::len), Some(1), "{v}");
    let start = Instant::now();
    let target2 = work.path().join("limited");
    cairn(&["--limit-download", "8192", "restore", "latest", "--target", target2.to_str().unwrap()]).assert().success();
    assert!(start.elapsed().as_secs_f64() > 1.0, "--limit-download had no effect: {:?}", start.elapsed());
    fs::remove_dir_all(&target).unwrap();
    cairn(&["restore", "latest", "--target", target.to_str().unwrap()]).assert().success();
    assert_same_tree(&src, &restored_path(&target, &src));
    // Everything is under the prefix, and no file name or content shows in the bucket.
    let names: Vec<String> = walk_files(&server.bucket_dir(&bucket))
        .iter()
        .map(|p| p.strip_prefix(server.bucket_dir(&bucket)).unwrap().display().to_string())
        .collect();
    assert!(names.iter().all(|n| n.starts_with("nightly/")), "{names:?}");
    assert!(!names.iter().any(|n| n.contains("small") || n.contains("text")), "{names:?}");

    // Without the CA the server is not trusted; plain http needs the flag.
    let mut c = cairn_cmd(Path::new(&url), &work.path().join("cache"), &pw);
    let out = c.envs(server.env()).arg("snapshots").output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.to_lowercase().contains("certificate") || err.contains("UnknownIssuer"), "{err}");
    let plain = format!("{}/nightly", server.url(&bucket, false));
    let mut c = cairn_cmd(Path::new(&plain), &work.path().join("cache"), &pw);
    let out = c.envs(server.env()).arg("snapshots").output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--insecure-http"));
    let mut c = cairn_cmd(Path::new(&plain), &work.path().join("cache"), &pw);
    c.envs(server.env()).args(["--insecure-http", "snapshots"]).assert().success();
    // No credentials: a clear error, not a hang on instance metadata.
    let mut c = cairn_cmd(Path::new(&plain), &work.path().join("cache"), &pw);
    c.env_remove("AWS_ACCESS_KEY_ID").env_remove("AWS_SECRET_ACCESS_KEY").env_remove("AWS_PROFILE");
    let out = c.env("HOME", work.path()).args(["--insecure-http", "snapshots"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("no S3 credentials"), "{out:?}");
}

/// `cairn` against the test server over plain http with no AWS variables at all, `HOME` in
/// `work` and instance metadata off: only what `env` adds can give credentials.
fn cairn_without_aws_env(url: &str, work: &Path, env: &[(&str, String)]) -> assert_cmd::Command {
    let mut c = cairn_cmd(Path::new(url), &work.join("cache"), &work.join("pw"));
    for (k, _) in std::env::vars() {
        if k.starts_with("AWS_") {
            c.env_remove(k);
        }
    }
    c.env("HOME", work).env("AWS_EC2_METADATA_DISABLED", "true").env("AWS_REGION", "us-east-1");
    c.envs(env.iter().map(|(k, v)| (*k, v.as_str()))).arg("--insecure-http");
    c
}

#[test]
fn credentials_come_from_profiles_and_credential_process_as_the_aws_cli_finds_them() {
    use crate::s3server::{ACCESS_KEY, SECRET_KEY};
    let server = s3();
    let bucket = server.bucket();
    let url = server.url(&bucket, false);
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    fs::write(w.join("pw"), PASSWORD).unwrap();
    let src = w.join("src");
    mixed_tree(&src, 2, 3);
    cairn_without_aws_env(&url, w, &server.env()).arg("init").assert().success();

    // Static keys in a named profile of the shared credentials file.
    fs::create_dir(w.join(".aws")).unwrap();
    fs::write(
        w.join(".aws/credentials"),
        format!("[default]\naws_access_key_id = AKIDWRONG\naws_secret_access_key = wrong\n\n[nightly]\naws_access_key_id = {ACCESS_KEY}\naws_secret_access_key = {SECRET_KEY}\n"),
    )
    .unwrap();
    let profile = |name: &str| vec![("AWS_PROFILE", name.to_string())];
    cairn_without_aws_env(&url, w, &profile("nightly")).arg("snapshots").assert().success();
    let wrong = cairn_without_aws_env(&url, w, &[]).arg("snapshots").output().unwrap();
    assert!(!wrong.status.success(), "the default profile's keys are wrong");

    // credential_process in the config file: run once per process however many requests.
    let script = w.join("creds.sh");
    let calls = w.join("calls");
    fs::write(
        &script,
        format!(
            "#!/bin/sh\necho call >> {}\nprintf '{{\"Version\": 1, \"AccessKeyId\": \"{ACCESS_KEY}\", \"SecretAccessKey\": \"{SECRET_KEY}\"}}'\n",
            calls.display()
        ),
    )
    .unwrap();
    fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    fs::write(
        w.join(".aws/config"),
        format!(
            "[profile proc]\ncredential_process = {}\n[profile broken]\ncredential_process = /bin/false\n",
            script.display()
        ),
    )
    .unwrap();
    cairn_without_aws_env(&url, w, &profile("proc")).arg("snapshot").arg(&src).assert().success();
    assert_eq!(fs::read_to_string(&calls).unwrap().lines().count(), 1, "one run of the process per cairn run");

    // A process that fails, and no credentials anywhere: clear errors, exit 1.
    let broken = cairn_without_aws_env(&url, w, &profile("broken")).arg("snapshots").output().unwrap();
    let err = String::from_utf8_lossy(&broken.stderr);
    assert_eq!(broken.status.code(), Some(1), "{err}");
    assert!(err.contains("no S3 credentials") && err.contains("credential_process"), "{err}");
    fs::remove_dir_all(w.join(".aws")).unwrap();
    let none = cairn_without_aws_env(&url, w, &[]).arg("snapshots").output().unwrap();
    let err = String::from_utf8_lossy(&none.stderr);
    assert!(err.contains("no S3 credentials") && err.contains("AWS_PROFILE"), "{err}");
}

#[test]
fn a_snapshot_completes_through_a_server_that_fails_a_quarter_of_requests() {
    let server = s3();
    let bucket = server.bucket();
    let proxy = FaultProxy::start(
        server.http,
        Arc::new(|n, _method, _path| match n % 8 {
            1 => Fault::SlowDown,
            3 => Fault::DropAnswer,
            5 => Fault::Reset,
            7 if n % 16 == 7 => Fault::InternalError,
            _ => Fault::None,
        }),
    );
    let opts = S3Options { insecure_http: true, ..S3Options::default() };
    let storage = server.storage_with(&proxy.url(&bucket), &opts);
    init(storage.clone(), 256 << 10);
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    mixed_tree(&src, 6, 2);
    let repo = open(storage.clone(), &work.path().join("cache"));
    let out = snapshot(&repo, &[&src]);
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    let target = work.path().join("restored");
    restore_all(&repo, &out, &target).unwrap();
    assert_same_tree(&src, &restored_path(&target, &src));
    check_clean(&repo);
    let faults = proxy.faults.load(std::sync::atomic::Ordering::SeqCst);
    let requests = proxy.requests.load(std::sync::atomic::Ordering::SeqCst);
    assert!(faults >= 20 && faults * 5 >= requests, "only {faults} faults in {requests} requests");
    // And the repository reads the same without the proxy.
    let direct = open(server.storage(&bucket, false), &work.path().join("cache2"));
    assert_eq!(direct.snapshots().unwrap().len(), 1);
    check_clean(&direct);
}

#[test]
fn when_uploads_keep_failing_the_snapshot_fails_and_nothing_half_written_is_referenced() {
    let server = s3();
    let bucket = server.bucket();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    mixed_tree(&src, 4, 3);
    init(server.storage(&bucket, false), 256 << 10);
    let first = snapshot(&open(server.storage(&bucket, false), &work.path().join("cache")), &[&src]);

    // New data in eight files of 1.5 MiB: whatever cut points the repository's (random)
    // chunker key picks, each file's first chunk is at least the 512 KiB minimum, larger than
    // the pack target, so each file closes a pack of its own: at least nine PUTs with the tree
    // pack. (One 6 MiB file was once cut into two chunks; with the tree pack the snapshot
    // needed only three PUTs, none failed, and the snapshot succeeded.)
    for i in 0..8 {
        fs::write(src.join(format!("new-{i}.bin")), random_bytes(3 << 19, 77 + i)).unwrap();
    }
    let uploads = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = uploads.clone();
    // After three new packs, every pack upload fails for good.
    let proxy = FaultProxy::start(
        server.http,
        Arc::new(move |_, method, path| {
            if method == "PUT"
                && path.contains("/data/")
                && counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst) >= 3
            {
                Fault::InternalError
            } else {
                Fault::None
            }
        }),
    );
    let opts = S3Options {
        insecure_http: true,
        max_retries: 2,
        max_backoff: std::time::Duration::from_millis(50),
        ..S3Options::default()
    };
    let repo = open(server.storage_with(&proxy.url(&bucket), &opts), &work.path().join("cache"));
    let bopts = cairn_engine::backup::BackupOptions {
        paths: vec![src.clone()],
        hostname: "h".into(),
        username: "u".into(),
        ..Default::default()
    };
    let e = cairn_engine::backup::backup(&repo, &bopts, &NoProgress).unwrap_err();
    assert!(e.to_string().contains("500") || e.to_string().contains("Internal"), "{e}");
    assert!(uploads.load(std::sync::atomic::Ordering::SeqCst) > 3, "the failing uploads were tried");
    drop(repo);

    // Healthy again: only the first snapshot exists, and it and the index are whole.
    let healthy = open(server.storage(&bucket, false), &work.path().join("cache-fresh"));
    let snaps = healthy.snapshots().unwrap();
    assert_eq!(snaps.len(), 1);
    assert_eq!(snaps[0].0, first.snapshot_id);
    let orphans = check_no_errors(&healthy);
    assert!(orphans >= 1, "the packs stored before the failure are left unreferenced");
    // And the next snapshot (with the same cache as the failed one) stores everything.
    let repo = open(server.storage(&bucket, false), &work.path().join("cache"));
    let out = snapshot(&repo, &[&src]);
    let target = work.path().join("restored");
    restore_all(&repo, &out, &target).unwrap();
    assert_same_tree(&src, &restored_path(&target, &src));
    check_no_errors(&repo);
}

#[test]
fn an_unchanged_snapshot_reads_parent_trees_ahead_and_reuses_everything() {
    let server = s3();
    let bucket = server.bucket();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    for a in 0..12 {
        for b in 0..12 {
            let d = src.join(format!("a{a}/b{b}"));
            fs::create_dir_all(&d).unwrap();
            fs::write(d.join("f"), format!("{a}/{b}")).unwrap();
        }
    }
    init(server.storage(&bucket, true), 1 << 20);
    let mut repo = open(server.storage(&bucket, true), &work.path().join("cache"));
    repo.set_storage_connections(6);
    assert!(repo.has_io_pool());
    let first = snapshot(&repo, &[&src]);
    fs::write(src.join("a3/b4/f"), "changed").unwrap();
    // Directories gone since the parent: what was read ahead for them is dropped.
    fs::remove_dir_all(src.join("a11")).unwrap();
    let second = snapshot(&repo, &[&src]);
    let s = &second.snapshot.summary;
    assert_eq!((s.files_new, s.files_changed, s.files_unchanged), (0, 1, 131));
    assert_eq!(s.bytes_read, 7);
    let again = snapshot(&repo, &[&src]);
    assert_eq!(subtree(&repo, &again, &src), subtree(&repo, &second, &src));
    assert_ne!(subtree(&repo, &first, &src), subtree(&repo, &second, &src));
    let target = work.path().join("restored");
    restore_all(&repo, &again, &target).unwrap();
    assert_same_tree(&src, &restored_path(&target, &src));
}

/// The acceptance run: ~500 MB backed up, restored and checked over TLS, and the same through
/// a local repository in the same run for comparison (printed; run with --nocapture).
#[test]
fn half_a_gigabyte_over_tls_and_locally() {
    let server = s3();
    let bucket = server.bucket();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    mixed_tree(&src, 240, 4);
    let total: u64 = walk_files(&src).iter().map(|p| fs::metadata(p).unwrap().len()).sum();
    assert!(total > 480 << 20, "{total}");

    let mut figures = Vec::new();
    for (label, storage) in [
        ("local", Arc::new(LocalStorage::new(work.path().join("local"))) as Arc<dyn Storage>),
        ("s3+tls", server.storage(&bucket, true)),
    ] {
        init(storage.clone(), 16 << 20);
        let mut repo = open(storage, &work.path().join(format!("cache-{label}")));
        repo.set_storage_connections(4);
        let t = Instant::now();
        let out = snapshot(&repo, &[&src]);
        let backup_s = t.elapsed().as_secs_f64();
        assert!(out.errors.is_empty());
        let target = work.path().join(format!("restored-{label}"));
        let t = Instant::now();
        restore_all(&repo, &out, &target).unwrap();
        let restore_s = t.elapsed().as_secs_f64();
        assert_same_tree(&src, &restored_path(&target, &src));
        let t = Instant::now();
        check_clean(&repo);
        let check_s = t.elapsed().as_secs_f64();
        fs::remove_dir_all(&target).unwrap();
        figures.push((label, backup_s, restore_s, check_s));
    }
    let mib = total as f64 / (1 << 20) as f64;
    for (label, b, r, c) in &figures {
        println!(
            "{label}: {mib:.0} MiB; snapshot {:.0} MiB/s, restore {:.0} MiB/s, check --read-data {c:.2} s",
            mib / b,
            mib / r
        );
    }
    let (l, s) = (&figures[0], &figures[1]);
    println!("s3+tls / local: snapshot {:.2}x the time, restore {:.2}x, check {:.2}x", s.1 / l.1, s.2 / l.2, s.3 / l.3);
}
