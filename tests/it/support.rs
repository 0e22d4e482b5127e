//! Shared helpers: repositories in temporary directories, source trees, tree comparison.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cairn_engine::backup::{BackupOptions, BackupOutcome, backup};
use cairn_engine::chunker::ChunkerParams;
use cairn_engine::crypto::{Argon2Params, SecretBytes};
use cairn_engine::keys::{OpenSecret, RecoveryCode};
use cairn_engine::restore::{RestoreOptions, RestoreOutcome, restore};
use cairn_engine::storage::{LocalStorage, Storage};
use cairn_engine::{InitOptions, NoProgress, Repository};
use tempfile::TempDir;

pub const PASSWORD: &str = "correct horse battery staple";

/// A repository in a temporary directory, with its own cache directory. With
/// `CAIRN_TEST_BACKEND=s3` the repository lives in a fresh bucket of the test S3 server
/// instead; its objects are still files under [`TestRepo::repo_path`] (s3s-fs keeps them so),
/// so tests that inspect or damage objects work on both. With `rest` it is reached through a
/// `cairn serve` in front of a directory, with `rest-s3` through one in front of a bucket.
pub struct TestRepo {
    pub dir: TempDir,
    pub storage: Arc<dyn Storage>,
    pub recovery: Option<RecoveryCode>,
    repo_dir: PathBuf,
}

/// Whether this test run puts repositories on the S3 server (`CAIRN_TEST_BACKEND=s3`).
pub fn on_s3() -> bool {
    std::env::var("CAIRN_TEST_BACKEND").is_ok_and(|b| b == "s3")
}

/// Whether this test run reaches repositories through `cairn serve` (`rest`, `rest-s3`).
pub fn through_server() -> bool {
    std::env::var("CAIRN_TEST_BACKEND").is_ok_and(|b| b == "rest" || b == "rest-s3")
}

/// The server every test of this process shares under `CAIRN_TEST_BACKEND=rest` or `rest-s3`,
/// with an identity `admin` that may do everything in every repository.
fn shared_server() -> &'static crate::serve::server::Served {
    static SERVER: std::sync::OnceLock<crate::serve::server::Served> = std::sync::OnceLock::new();
    SERVER.get_or_init(|| {
        let ids: &[(&str, &[&str])] = &[("admin", &["*=admin"])];
        crate::serve::server::Served::shared(std::env::var("CAIRN_TEST_BACKEND").is_ok_and(|b| b == "rest-s3"), ids)
    })
}

impl TestRepo {
    pub fn new() -> Self {
        Self::with_chunker(ChunkerParams::default())
    }

    pub fn with_chunker(chunker: ChunkerParams) -> Self {
        Self::with_options(
            chunker,
            InitOptions::new(SecretBytes::from(String::new()), Argon2Params::MIN).pack_target_size,
        )
    }

    /// A repository with these chunk bounds and this pack size (small packs spread a file
    /// over many).
    pub fn with_options(chunker: ChunkerParams, pack_target_size: u32) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (storage, repo_dir): (Arc<dyn Storage>, PathBuf) = if through_server() {
            static REPOS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
            let server = shared_server();
            let name = format!("t{}", REPOS.fetch_add(1, std::sync::atomic::Ordering::SeqCst));
            (server.storage(&name, "admin"), server.repo_dir(&name))
        } else if on_s3() {
            let server = crate::s3server::s3();
            let bucket = server.bucket();
            (server.storage(&bucket, false), server.bucket_dir(&bucket))
        } else {
            (Arc::new(LocalStorage::new(dir.path().join("repo"))), dir.path().join("repo"))
        };
        let mut opts = InitOptions::new(SecretBytes::from(PASSWORD.to_string()), Argon2Params::MIN);
        opts.chunker = chunker;
        opts.pack_target_size = pack_target_size;
        let out = Repository::init(storage.clone(), &opts).unwrap();
        TestRepo { dir, storage, recovery: out.recovery_code, repo_dir }
    }

    /// The directory holding the repository's objects (local, or the bucket's on s3s-fs).
    pub fn repo_path(&self) -> PathBuf {
        self.repo_dir.clone()
    }

    pub fn cache(&self) -> PathBuf {
        self.dir.path().join("cache")
    }

    pub fn open(&self) -> Repository {
        self.open_with(&OpenSecret::Password(SecretBytes::from(PASSWORD.to_string()))).unwrap()
    }

    /// Opens with `secret`. On S3 with 4 storage connections, as the CLI does: restore, check
    /// and parent-tree reads then run on the wider I/O pool.
    pub fn open_with(&self, secret: &OpenSecret) -> cairn_engine::Result<Repository> {
        let mut repo = Repository::open(self.storage.clone(), secret, self.cache())?;
        if on_s3() || through_server() {
            repo.set_storage_connections(4);
        }
        Ok(repo)
    }

    /// Rewrites the index without the entries of `ids` (one segment superseding all the
    /// others) and deletes the cache: the blobs stay in their packs, but the index no longer
    /// lists them, as after a lost or damaged index segment.
    pub fn drop_from_index(&self, ids: &std::collections::HashSet<cairn_engine::ChunkId>) {
        use cairn_engine::format::envelope::ObjectKind;
        use cairn_engine::format::index::IndexSegment;
        let repo = self.open();
        let mut merged = IndexSegment::default();
        for name in self.storage.list("index/").unwrap() {
            let seg = IndexSegment::decode(&repo.load_object(ObjectKind::IndexSegment, &name).unwrap(), &name).unwrap();
            merged.supersedes.push(cairn_engine::ObjectId::from_hex(name.strip_prefix("index/").unwrap()).unwrap());
            for mut pack in seg.packs {
                pack.blobs.retain(|b| !ids.contains(&b.id));
                merged.packs.push(pack);
            }
        }
        repo.save_index_segment(&merged).unwrap();
        drop(repo);
        fs::remove_dir_all(self.cache()).unwrap();
    }

    /// Total bytes of every object in the repository.
    pub fn size(&self) -> u64 {
        walk_files(&self.repo_path()).iter().map(|p| fs::metadata(p).unwrap().len()).sum()
    }
}

/// This machine's host name, as the CLI records it: snapshots made with it are what the CLI's
/// `latest` picks (the newest of this machine's).
pub fn this_host() -> String {
    nix::unistd::gethostname().unwrap().into_string().unwrap()
}

pub fn snapshot(repo: &Repository, paths: &[&Path]) -> BackupOutcome {
    let opts = BackupOptions {
        paths: paths.iter().map(|p| p.to_path_buf()).collect(),
        hostname: this_host(),
        username: "tester".into(),
        program: "cairn-tests".into(),
        ..BackupOptions::default()
    };
    backup(repo, &opts, &NoProgress).unwrap()
}

/// The tree blob of directory `dir` in a snapshot. Tests compare these rather than root trees:
/// the root also holds the metadata of the directories leading to the source (/tmp's mtime
/// and atime among them), which other tests running at the same time change.
pub fn subtree(repo: &Repository, out: &BackupOutcome, dir: &Path) -> cairn_engine::ChunkId {
    match cairn_engine::trees::resolve(repo, out.snapshot.tree, dir.as_os_str().as_bytes()).unwrap() {
        cairn_engine::trees::Resolved::Node(_, node) => match node.kind {
            cairn_engine::format::tree::NodeKind::Dir { subtree } => subtree,
            other => panic!("{} is a {other:?}", dir.display()),
        },
        cairn_engine::trees::Resolved::Root(_) => panic!("resolved to the root"),
    }
}

pub fn restore_all(repo: &Repository, out: &BackupOutcome, target: &Path) -> cairn_engine::Result<RestoreOutcome> {
    let opts = RestoreOptions { target: target.to_path_buf(), ..RestoreOptions::default() };
    restore(repo, out.snapshot.tree, &opts, &NoProgress)
}

/// Where a restored source path lands: the snapshot mirrors absolute paths.
pub fn restored_path(target: &Path, source: &Path) -> PathBuf {
    target.join(source.strip_prefix("/").unwrap())
}

/// Every regular file below `root` (not following symlinks).
pub fn walk_files(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let m = fs::symlink_metadata(&p).unwrap();
        if m.is_dir() {
            for e in fs::read_dir(&p).unwrap() {
                stack.push(e.unwrap().path());
            }
        } else if m.is_file() {
            out.push(p);
        }
    }
    out
}

/// Deterministic pseudo-random bytes (xorshift), incompressible.
pub fn random_bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(n + 8);
    while out.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(n);
    out
}

/// Compressible text-like bytes.
pub fn text_bytes(n: usize, seed: u64) -> Vec<u8> {
    let words = ["backup ", "restore ", "chunk ", "pack ", "index ", "snapshot ", "tree ", "blob ", "key\n"];
    let r = random_bytes(n / 4 + 16, seed);
    let mut out = Vec::with_capacity(n + 16);
    let mut i = 0;
    while out.len() < n {
        out.extend_from_slice(words[r[i % r.len()] as usize % words.len()].as_bytes());
        i += 1;
    }
    out.truncate(n);
    out
}

/// Copies up to `limit` regular files (< 1 MiB) and symlinks from `from` into `to`,
/// keeping relative paths, modes and mtimes. Returns how many were copied.
pub fn copy_real_files(from: &Path, to: &Path, limit: usize) -> usize {
    let mut copied = 0;
    let mut stack = vec![from.to_path_buf()];
    let mut dirs = Vec::new();
    while let Some(p) = stack.pop() {
        if copied >= limit {
            break;
        }
        let Ok(m) = fs::symlink_metadata(&p) else { continue };
        let rel = p.strip_prefix(from).unwrap();
        let dest = to.join(rel);
        if m.is_dir() {
            if fs::create_dir_all(&dest).is_err() {
                continue;
            }
            dirs.push((dest, m.clone()));
            let Ok(rd) = fs::read_dir(&p) else { continue };
            let mut children: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
            children.sort();
            stack.extend(children.into_iter().rev());
        } else if m.is_file() && m.len() < (1 << 20) {
            if fs::copy(&p, &dest).is_ok() {
                let _ = filetime_set(&dest, &m);
                copied += 1;
            }
        } else if m.file_type().is_symlink()
            && let Ok(t) = fs::read_link(&p)
            && std::os::unix::fs::symlink(t, &dest).is_ok()
        {
            copied += 1;
        }
    }
    for (d, m) in dirs.iter().rev() {
        let _ = filetime_set(d, m);
    }
    copied
}

fn filetime_set(p: &Path, m: &fs::Metadata) -> std::io::Result<()> {
    let f = fs::File::options().write(false).read(true).open(p)?;
    let t = fs::FileTimes::new().set_modified(m.modified()?);
    f.set_times(t)
}

/// Asserts `restored` equals `source`: every entry, its kind, bytes, mode, mtime (ns),
/// uid/gid and symlink target; directories included.
pub fn assert_same_tree(source: &Path, restored: &Path) {
    let mut compared = 0usize;
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let a = source.join(&rel);
        let b = restored.join(&rel);
        let ma = fs::symlink_metadata(&a).unwrap_or_else(|e| panic!("{}: {e}", a.display()));
        let mb = fs::symlink_metadata(&b).unwrap_or_else(|e| panic!("restored {} missing: {e}", b.display()));
        assert_eq!(ma.file_type(), mb.file_type(), "type of {}", rel.display());
        assert_eq!(ma.permissions().mode(), mb.permissions().mode(), "mode of {}", rel.display());
        assert_eq!((ma.uid(), ma.gid()), (mb.uid(), mb.gid()), "owner of {}", rel.display());
        if ma.is_dir() {
            let mut names: Vec<_> = fs::read_dir(&a).unwrap().map(|e| e.unwrap().file_name()).collect();
            let mut names_b: Vec<_> = fs::read_dir(&b).unwrap().map(|e| e.unwrap().file_name()).collect();
            names.sort();
            names_b.sort();
            assert_eq!(names, names_b, "entries of {}", rel.display());
            stack.extend(names.into_iter().map(|n| rel.join(n)));
        } else if ma.is_file() {
            assert_eq!(ma.len(), mb.len(), "size of {}", rel.display());
            assert!(fs::read(&a).unwrap() == fs::read(&b).unwrap(), "content of {}", rel.display());
        } else if ma.file_type().is_symlink() {
            assert_eq!(fs::read_link(&a).unwrap(), fs::read_link(&b).unwrap(), "target of {}", rel.display());
        }
        assert_eq!((ma.mtime(), ma.mtime_nsec()), (mb.mtime(), mb.mtime_nsec()), "mtime of {}", rel.display());
        compared += 1;
    }
    assert!(compared > 0);
}

/// A name that is not valid UTF-8.
pub fn non_utf8_name(tag: u8) -> &'static OsStr {
    let bytes: &'static [u8] =
        Box::leak(vec![b'n', b'o', b'n', b'-', b'u', b't', b'f', 0xff, 0xfe, tag, b'x'].into_boxed_slice());
    OsStr::from_bytes(bytes)
}

/// Removes every inherited `CAIRN_*` variable, so the developer's own settings never leak in.
pub fn without_cairn_env(c: &mut assert_cmd::Command) -> &mut assert_cmd::Command {
    for (k, _) in std::env::vars() {
        if k.starts_with("CAIRN_") {
            c.env_remove(k);
        }
    }
    c
}

/// The `cairn` binary with `-r REPO --cache-dir CACHE --password-file PASSWORD` and a clean
/// environment.
pub fn cairn_cmd(repo: &Path, cache: &Path, password_file: &Path) -> assert_cmd::Command {
    let mut c = assert_cmd::Command::cargo_bin("cairn").unwrap();
    without_cairn_env(&mut c);
    c.arg("-r").arg(repo).arg("--cache-dir").arg(cache).arg("--password-file").arg(password_file);
    c
}

/// A command's stderr as text, for assertions on its messages.
pub fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}
