//! Tools of a hostile storage: a wrapper that hides objects from listings and reads (or lists
//! them to some listings only), captures of a repository's objects that can be served back
//! later (a rollback), and the test repository opened through such a wrapper.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use cairn_engine::Repository;
use cairn_engine::crypto::SecretBytes;
use cairn_engine::keys::OpenSecret;
use cairn_engine::storage::{PutMode, Storage};

use crate::support::PASSWORD;

/// The test repository opened through `storage` (a wrapper of the test's own), with its cache
/// in `cache`.
pub fn open_on(storage: Arc<dyn Storage>, cache: &std::path::Path) -> Repository {
    Repository::open(storage, &OpenSecret::Password(SecretBytes::from(PASSWORD.to_string())), cache.to_path_buf())
        .unwrap()
}

/// A storage that can hide objects: hidden names vanish from `list`, `get` and `stat` (as if
/// deleted) but stay stored, so the attack can be undone to show what the client destroyed.
/// It can also answer listings differently: a name shown to the next few listings only.
#[derive(Debug)]
pub struct Hiding {
    inner: Arc<dyn Storage>,
    hidden: Mutex<BTreeSet<String>>,
    /// Names listed only while their count lasts (each listing showing one uses one up).
    fading: Mutex<BTreeMap<String, usize>>,
}

impl Hiding {
    pub fn new(inner: Arc<dyn Storage>) -> Arc<Self> {
        Arc::new(Hiding { inner, hidden: Mutex::new(BTreeSet::new()), fading: Mutex::new(BTreeMap::new()) })
    }

    /// Shows `name` in the next `shown` listings that include it, and in none after them; it
    /// stays readable: two listings, two views.
    pub fn list_only_the_next(&self, name: &str, shown: usize) {
        self.fading.lock().unwrap().insert(name.to_string(), shown);
    }

    pub fn hide(&self, name: &str) {
        self.hidden.lock().unwrap().insert(name.to_string());
    }

    pub fn reveal_all(&self) {
        self.hidden.lock().unwrap().clear();
    }

    fn is_hidden(&self, name: &str) -> bool {
        self.hidden.lock().unwrap().contains(name)
    }

    fn missing(name: &str) -> cairn_engine::Error {
        cairn_engine::Error::Missing(name.to_string())
    }
}

impl Storage for Hiding {
    fn location(&self) -> String {
        self.inner.location()
    }
    fn put(&self, name: &str, data: &[u8], mode: PutMode) -> cairn_engine::Result<()> {
        self.inner.put(name, data, mode)
    }
    fn get(&self, name: &str) -> cairn_engine::Result<Vec<u8>> {
        if self.is_hidden(name) {
            return Err(Self::missing(name));
        }
        self.inner.get(name)
    }
    fn get_range(&self, name: &str, offset: u64, len: u64) -> cairn_engine::Result<Vec<u8>> {
        if self.is_hidden(name) {
            return Err(Self::missing(name));
        }
        self.inner.get_range(name, offset, len)
    }
    fn list(&self, prefix: &str) -> cairn_engine::Result<Vec<String>> {
        let mut fading = self.fading.lock().unwrap();
        let shown = |n: &String| match fading.get_mut(n) {
            Some(0) => false,
            Some(left) => {
                *left -= 1;
                true
            }
            None => true,
        };
        Ok(self.inner.list(prefix)?.into_iter().filter(|n| !self.is_hidden(n)).filter(shown).collect())
    }
    fn delete(&self, name: &str) -> cairn_engine::Result<()> {
        self.inner.delete(name)
    }
    fn stat(&self, name: &str) -> cairn_engine::Result<Option<u64>> {
        if self.is_hidden(name) {
            return Ok(None);
        }
        self.inner.stat(name)
    }
}

/// Every object under `prefixes` with its bytes, as the storage may keep them (a versioned
/// bucket, a backup of the NAS) to serve them back later.
pub type Capture = BTreeMap<String, Vec<u8>>;

pub fn capture(storage: &dyn Storage, prefixes: &[&str]) -> Capture {
    let mut out = Capture::new();
    for prefix in prefixes {
        for name in storage.list(prefix).unwrap() {
            let bytes = storage.get(&name).unwrap();
            out.insert(name, bytes);
        }
    }
    out
}

/// Serves a capture back: every object under the capture's prefixes that the capture does not
/// hold is deleted, and every captured object is written back as it was.
pub fn replay(storage: &dyn Storage, prefixes: &[&str], captured: &Capture) {
    for prefix in prefixes {
        for name in storage.list(prefix).unwrap() {
            if !captured.contains_key(&name) {
                storage.delete(&name).unwrap();
            }
        }
    }
    for (name, bytes) in captured {
        storage.put(name, bytes, PutMode::Overwrite).unwrap();
    }
}

/// A storage that keeps a copy of every object written through it, in order: what a
/// versioned bucket, or a storage watching its writes, holds.
#[derive(Debug)]
pub struct Recording {
    inner: Arc<dyn Storage>,
    puts: Mutex<Vec<(String, Vec<u8>)>>,
}

impl Recording {
    pub fn new(inner: Arc<dyn Storage>) -> Arc<Self> {
        Arc::new(Recording { inner, puts: Mutex::new(Vec::new()) })
    }

    /// Every write under `prefix`: (name, bytes).
    pub fn written(&self, prefix: &str) -> Vec<(String, Vec<u8>)> {
        self.puts.lock().unwrap().iter().filter(|(n, _)| n.starts_with(prefix)).cloned().collect()
    }
}

impl Storage for Recording {
    fn location(&self) -> String {
        self.inner.location()
    }
    fn put(&self, name: &str, data: &[u8], mode: PutMode) -> cairn_engine::Result<()> {
        self.puts.lock().unwrap().push((name.to_string(), data.to_vec()));
        self.inner.put(name, data, mode)
    }
    fn get(&self, name: &str) -> cairn_engine::Result<Vec<u8>> {
        self.inner.get(name)
    }
    fn get_range(&self, name: &str, offset: u64, len: u64) -> cairn_engine::Result<Vec<u8>> {
        self.inner.get_range(name, offset, len)
    }
    fn list(&self, prefix: &str) -> cairn_engine::Result<Vec<String>> {
        self.inner.list(prefix)
    }
    fn delete(&self, name: &str) -> cairn_engine::Result<()> {
        self.inner.delete(name)
    }
    fn stat(&self, name: &str) -> cairn_engine::Result<Option<u64>> {
        self.inner.stat(name)
    }
}

/// A repository made and used through the `cairn` binary, in a local directory the tests
/// attack as its storage would. `cache` names one client's cache directory: clients with
/// different caches are different machines.
pub struct CliRepo {
    pub dir: tempfile::TempDir,
}

impl CliRepo {
    /// `init` with a password and a recovery code (written to `code`), then one snapshot of
    /// `src` by the client with cache `cache`.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let r = CliRepo { dir };
        std::fs::write(r.p("pw"), "hostile storage test password\n").unwrap();
        std::fs::create_dir_all(r.p("src")).unwrap();
        std::fs::write(r.p("src/a.txt"), b"alpha ".repeat(20_000)).unwrap();
        std::fs::write(r.p("src/b.bin"), crate::support::random_bytes(300_000, 7)).unwrap();
        r.cli("cache")
            .args(["init", "--kdf-memory", "8192", "--kdf-iterations", "1", "--recovery-code-out"])
            .arg(r.p("code"))
            .assert()
            .success();
        r.cli("cache").arg("snapshot").arg(r.p("src")).assert().success();
        r
    }

    pub fn p(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }

    pub fn repo(&self) -> std::path::PathBuf {
        self.p("repo")
    }

    /// `cairn` opened with the password by the client whose cache is `cache`.
    pub fn cli(&self, cache: &str) -> assert_cmd::Command {
        crate::support::cairn_cmd(&self.repo(), &self.p(cache), &self.p("pw"))
    }

    /// `cairn` opened with the recovery code.
    pub fn cli_recovery(&self, cache: &str) -> assert_cmd::Command {
        let mut c = self.cli(cache);
        c.arg("--recovery-code-file").arg(self.p("code"));
        c
    }

    /// The repository directory as the storage sees it.
    pub fn storage(&self) -> Arc<dyn Storage> {
        Arc::new(cairn_engine::storage::LocalStorage::new(self.repo()))
    }

    /// Every object and its bytes: to show that a refused command wrote nothing.
    pub fn objects(&self) -> Capture {
        let storage = self.storage();
        let mut all =
            capture(storage.as_ref(), &["keys/", "keyring/", "data/", "index/", "snapshots/", "locks/", "audit/"]);
        all.insert("config".into(), storage.get("config").unwrap());
        all
    }

    /// Runs `args` and returns (exit code, stdout + stderr).
    pub fn run(&self, mut cmd: assert_cmd::Command) -> (i32, String) {
        let out = cmd.output().unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        (out.status.code().unwrap_or(-1), text)
    }
}
