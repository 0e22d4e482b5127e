
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
    let storage: std::sync::Arc<dyn cairn_engine::storage::Storage> = std::sync::Arc::new(ReadOnlyMedia(t.storage.clone()));
    let repo = cairn_engine::Repository::open(
        storage,
        &cairn_engine::keys::OpenSecret::Password(cairn_engine::crypto::SecretBytes::from(PASSWORD.to_string())),
        t.cache(),
    )
    .unwrap();
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
