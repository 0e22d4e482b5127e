//! Tests of the directory read-ahead: the walk order, the budget, what is left to the walker.

use std::path::Path;
use std::time::{Duration, Instant};

use super::*;
use crate::backup::ExcludeOptions;

/// Exclusion rules of `patterns`, with CACHEDIR.TAG markers.
fn rules(patterns: &[&str]) -> Excluder {
    let opts = ExcludeOptions {
        patterns: patterns.iter().map(|p| p.to_string()).collect(),
        caches: true,
        ..ExcludeOptions::default()
    };
    Excluder::new(&opts).unwrap()
}

/// `fanout` directories per level below `root`, `depth` levels, two files in each.
fn make_tree(root: &Path, depth: usize, fanout: usize) -> usize {
    let mut dirs = 0;
    for i in 0..fanout {
        let d = root.join(format!("d{i}"));
        std::fs::create_dir(&d).unwrap();
        std::fs::write(d.join("f1"), b"one").unwrap();
        std::fs::write(d.join("f2"), b"two").unwrap();
        dirs += 1;
        if depth > 1 {
            dirs += make_tree(&d, depth - 1, fanout);
        }
    }
    dirs
}

/// The directory open as `fd` as the walker lists it itself.
fn listing(fd: &OwnedFd) -> Entries {
    let names = hostfs::list_dir(fd.as_fd()).unwrap();
    names
        .into_iter()
        .map(|n| {
            let st = hostfs::stat_at(fd.as_fd(), &n);
            (n, Some(st))
        })
        .collect()
}

fn open_root(path: &Path) -> (Arc<OwnedFd>, DirKey, Entries) {
    let fd = Arc::new(hostfs::open_dir(path).unwrap());
    let key = key_of(&hostfs::fstat(fd.as_fd()).unwrap());
    let entries = listing(&fd);
    (fd, key, entries)
}

/// Waits (on listings finishing, never on the clock alone) until `done` holds of the state.
fn wait_until(ahead: &DirAhead, what: &str, done: impl Fn(&State) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut state = lock(&ahead.shared.state);
    while !done(&state) {
        assert!(Instant::now() < deadline, "{what}: {} wanted, {} held", state.wanted.len(), state.held_dirs);
        state = ahead.shared.ready.wait_timeout(state, Duration::from_millis(50)).unwrap().0;
    }
}

fn ready(state: &State) -> usize {
    state.wanted.values().filter(|l| matches!(l, Loading::Ready(Some(_)))).count()
}

fn subdirs(entries: &Entries) -> Vec<(Vec<u8>, DirKey)> {
    entries
        .iter()
        .filter_map(|(n, st)| match st {
            Some(Ok(st)) if st.file_type() == FileType::Directory => Some((n.clone(), key_of(st))),
            _ => None,
        })
        .collect()
}

/// Walks as the walker does: takes each subdirectory's listing (which must be the readers'),
/// checks it against the directory listed here, goes below it, then is done with it.
fn walk(ahead: &DirAhead, fd: &OwnedFd, entries: &Entries) -> usize {
    let mut walked = 0;
    for (name, key) in subdirs(entries) {
        let listed = ahead.take(key).expect("listed ahead");
        let here = hostfs::open_dir_at(fd.as_fd(), &name).unwrap();
        let want = listing(&here);
        let names = |e: &Entries| e.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
        assert_eq!(names(&listed.entries), names(&want));
        for ((_, got), (_, want)) in listed.entries.iter().zip(&want) {
            let (got, want) = (got.as_ref().unwrap().as_ref().unwrap(), want.as_ref().unwrap().as_ref().unwrap());
            assert_eq!((got.ino, got.size, got.mode), (want.ino, want.size, want.mode));
        }
        assert_eq!(key_of(&hostfs::fstat(listed.fd.as_fd()).unwrap()), key);
        walked += 1 + walk(ahead, &listed.fd, &listed.entries);
        ahead.done(key);
    }
    walked
}

#[test]
fn readers_list_the_whole_tree_ahead_and_the_walk_takes_each_directory_as_listed() {
    let dir = tempfile::tempdir().unwrap();
    let all = make_tree(dir.path(), 3, 3);
    let (fd, key, entries) = open_root(dir.path());
    let ahead = DirAhead::start(None, rules(&[]), false);
    ahead.queue_below(key, &fd, dir.path(), &entries);
    // The walker asked for the root's subdirectories only; the readers go on below.
    wait_until(&ahead, "every directory listed ahead", |s| ready(s) == all);
    assert_eq!(lock(&ahead.shared.state).held_entries, all * 2 + (all - 3), "entries held, counted");
    assert_eq!(walk(&ahead, &fd, &entries), all);
    ahead.done(key);
    let state = lock(&ahead.shared.state);
    assert!(state.wanted.is_empty() && state.children.is_empty() && state.queue.is_empty());
    assert_eq!((state.held_dirs, state.held_entries), (0, 0), "the budget is whole again");
}

#[test]
fn the_budget_bounds_what_is_held_and_done_drops_everything_below() {
    let dir = tempfile::tempdir().unwrap();
    let all = make_tree(dir.path(), 3, 3);
    let (fd, key, entries) = open_root(dir.path());
    let ahead = DirAhead::with_limits(None, rules(&[]), Limits { dirs: 4, entries: 1 << 20 }, false);
    ahead.queue_below(key, &fd, dir.path(), &entries);
    wait_until(&ahead, "four directories listed", |s| ready(s) == 4);
    {
        let state = lock(&ahead.shared.state);
        assert_eq!(state.held_dirs, 4, "no more listed than the budget holds");
        assert!(state.wanted.len() > 4 && state.wanted.len() < all, "{} queued", state.wanted.len());
    }
    // The walk takes the first: room for one more, which the readers fill.
    let (first, first_key) = subdirs(&entries).swap_remove(0);
    let taken = ahead.take(first_key).expect("the first directory was listed first");
    wait_until(&ahead, "the room refilled", |s| ready(s) == 4);
    assert!(taken.entries.iter().any(|(n, _)| n == b"d0"), "{first:?} holds its own d0");
    // The walk of the root is done (what is left was excluded, say): all of it dropped.
    ahead.done(first_key);
    ahead.done(key);
    let state = lock(&ahead.shared.state);
    assert!(state.wanted.is_empty() && state.children.is_empty() && state.queue.is_empty());
    assert_eq!((state.held_dirs, state.held_entries), (0, 0));
}

/// With the budget full and every reader asleep, a listing taken (room for one) wakes one
/// reader, not every reader (each but one would find no room and sleep again).
#[test]
fn room_for_one_listing_wakes_one_reader() {
    let dir = tempfile::tempdir().unwrap();
    make_tree(dir.path(), 3, 4);
    let (fd, key, entries) = open_root(dir.path());
    let ahead = DirAhead::with_limits(None, rules(&[]), Limits { dirs: 16, entries: 1 << 20 }, false);
    ahead.queue_below(key, &fd, dir.path(), &entries);
    let full_and_idle = |s: &State| ready(s) == 16 && s.sleepers.all_idle(s.readers);
    wait_until(&ahead, "the budget full, every reader asleep", full_and_idle);
    let before = lock(&ahead.shared.state).sleepers.notified();
    let (_, first) = subdirs(&entries).swap_remove(0);
    let _walking = ahead.take(first).expect("listed ahead"); // held open, as the walker would
    wait_until(&ahead, "the room refilled", full_and_idle);
    assert_eq!(lock(&ahead.shared.state).sleepers.notified() - before, 1, "one reader woken");
}

/// A reader lists only the inode the walk found under the name; anything else is left to
/// the walker, which lists (and reports) it itself.
#[test]
fn replaced_missing_and_foreign_directories_are_left_to_the_walker() {
    let dir = tempfile::tempdir().unwrap();
    for d in ["kept", "replaced", "removed"] {
        std::fs::create_dir(dir.path().join(d)).unwrap();
    }
    let (fd, key, entries) = open_root(dir.path());
    let keys: HashMap<Vec<u8>, DirKey> = subdirs(&entries).into_iter().collect();
    std::fs::rename(dir.path().join("replaced"), dir.path().join("old")).unwrap();
    std::fs::create_dir(dir.path().join("replaced")).unwrap();
    std::fs::remove_dir(dir.path().join("removed")).unwrap();
    let ahead = DirAhead::start(None, rules(&[]), false);
    ahead.queue_below(key, &fd, dir.path(), &entries);
    wait_until(&ahead, "all three tried", |s| s.wanted.values().all(|l| matches!(l, Loading::Ready(_))));
    assert!(ahead.take(keys[b"kept".as_slice()]).is_some());
    assert!(ahead.take(keys[b"replaced".as_slice()]).is_none(), "another inode under the name");
    assert!(ahead.take(keys[b"removed".as_slice()]).is_none());
    ahead.done(key);
    assert_eq!(lock(&ahead.shared.state).held_dirs, 0);

    // With --one-file-system, directories on other devices are not even queued.
    let other_device = DirAhead::start(Some(vec![u64::MAX]), rules(&[]), false);
    other_device.queue_below(key, &fd, dir.path(), &entries);
    assert!(lock(&other_device.shared.state).wanted.is_empty());
}

/// Directories queued and not listed hold no descriptor of their parent: once the walker
/// closes a directory, what is left of it queued is names only (and a reader that
/// pops one lists nothing).
#[test]
fn queued_directories_do_not_hold_their_parent_open() {
    let dir = tempfile::tempdir().unwrap();
    make_tree(dir.path(), 1, 5);
    let (fd, key, entries) = open_root(dir.path());
    let ahead = DirAhead::with_limits(None, rules(&[]), Limits { dirs: 0, entries: 0 }, false);
    ahead.queue_below(key, &fd, dir.path(), &entries);
    assert_eq!(lock(&ahead.shared.state).queue.len(), 5);
    assert_eq!(Arc::strong_count(&fd), 1, "only the walker holds the directory open");
    let (_, job) = lock(&ahead.shared.state).queue.pop_first().unwrap();
    drop(fd);
    assert!(list(&ahead.shared, b"", &job).is_none(), "its parent closed: nothing to list");
}

/// What the walk would not enter is not listed: excluded directories are not queued, and a
/// directory holding a marker is left to the walker (which skips it) with nothing below it
/// queued.
#[test]
fn excluded_and_marked_directories_are_not_listed_ahead() {
    let dir = tempfile::tempdir().unwrap();
    make_tree(dir.path(), 2, 3);
    std::fs::write(dir.path().join("d1/CACHEDIR.TAG"), "Signature: 8a477f597d28d172789f06886806bc55").unwrap();
    let (fd, key, entries) = open_root(dir.path());
    let keys: HashMap<Vec<u8>, DirKey> = subdirs(&entries).into_iter().collect();
    let excluded = format!("{}/d2", dir.path().display());
    let ahead = DirAhead::start(None, rules(&[&excluded]), false);
    ahead.queue_below(key, &fd, dir.path(), &entries);
    wait_until(&ahead, "all tried", |s| s.wanted.values().all(|l| matches!(l, Loading::Ready(_))));
    let state = lock(&ahead.shared.state);
    assert!(!state.wanted.contains_key(&keys[b"d2".as_slice()]), "an excluded directory is not queued");
    assert!(matches!(state.wanted.get(&keys[b"d1".as_slice()]), Some(Loading::Ready(None))), "marked");
    assert!(matches!(state.wanted.get(&keys[b"d0".as_slice()]), Some(Loading::Ready(Some(_)))));
    // d0 and its three subdirectories: nothing of d1's or d2's.
    assert_eq!(state.wanted.len(), 1 + 1 + 3, "{:?}", state.wanted.keys());
}

/// A listing the directory no longer matches (an entry added since, or the directory
/// removed) is not current: the walker lists it again.
#[test]
fn a_listing_is_current_only_while_its_directory_is_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    make_tree(dir.path(), 1, 2);
    let (fd, key, entries) = open_root(dir.path());
    let keys: HashMap<Vec<u8>, DirKey> = subdirs(&entries).into_iter().collect();
    let ahead = DirAhead::start(None, rules(&[]), false);
    ahead.queue_below(key, &fd, dir.path(), &entries);
    wait_until(&ahead, "both listed", |s| ready(s) == 2);
    let d0 = ahead.take(keys[b"d0".as_slice()]).unwrap();
    assert!(d0.still_current(fd.as_fd(), b"d0"));
    // An entry added since: its mtime moved on.
    let before = hostfs::fstat(d0.fd.as_fd()).unwrap();
    let mut added = 0;
    while hostfs::fstat(d0.fd.as_fd()).unwrap().mtime_ns == before.mtime_ns {
        std::fs::write(dir.path().join(format!("d0/new{added}")), b"x").unwrap();
        added += 1;
    }
    assert!(!d0.still_current(fd.as_fd(), b"d0"), "an entry was added since it was listed");
    let d1 = ahead.take(keys[b"d1".as_slice()]).unwrap();
    std::fs::remove_dir_all(dir.path().join("d1")).unwrap();
    assert!(!d1.still_current(fd.as_fd(), b"d1"), "removed since it was listed");
}

/// On a first snapshot a listing primes its directory's first files: their bytes count
/// against the budget while the listing waits, and come back once the walker takes it or the
/// listing is dropped. A directory whose first file is cached primes nothing more.
#[test]
fn listings_prime_files_on_a_first_snapshot_within_the_budget() {
    let dir = tempfile::tempdir().unwrap();
    for d in ["a", "b"] {
        std::fs::create_dir(dir.path().join(d)).unwrap();
        std::fs::write(dir.path().join(d).join("empty"), b"").unwrap();
        std::fs::create_dir(dir.path().join(d).join("sub")).unwrap();
        for i in 0..PRIMED_FILES + 10 {
            std::fs::write(dir.path().join(d).join(format!("f{i:03}")), vec![7u8; 1000 + i]).unwrap();
        }
    }
    let (fd, key, entries) = open_root(dir.path());
    let keys: HashMap<Vec<u8>, DirKey> = subdirs(&entries).into_iter().collect();
    let both_listed =
        |s: &State| [b"a", b"b"].iter().all(|n| matches!(s.wanted.get(&keys[n.as_slice()]), Some(Loading::Ready(_))));
    let ahead = DirAhead::with_limits(None, rules(&[]), Limits { dirs: 16, entries: 1 << 20 }, true);
    ahead.queue_below(key, &fd, dir.path(), &entries);
    wait_until(&ahead, "both listed", both_listed);
    // The first file that counts is f000 (the empty file and the directory do not); written
    // just now, it is likely cached, and then nothing after it is primed. Either way no more
    // than PRIMED_FILES files are.
    let (first, most) = (1000, (0..PRIMED_FILES as u64).map(|i| 1000 + i).sum::<u64>());
    let held = |ahead: &DirAhead| ahead.shared.primed.load(Ordering::Relaxed);
    let a = ahead.take(keys[b"a".as_slice()]).unwrap();
    assert!(a.primed.is_none(), "given back when taken");
    let b_primed = held(&ahead);
    assert!((first..=most).contains(&b_primed), "{b_primed} bytes primed for b");
    drop(a);
    ahead.done(key);
    assert_eq!(held(&ahead), 0, "given back when dropped");
    // Without a first snapshot nothing is primed.
    let ahead = DirAhead::start(None, rules(&[]), false);
    ahead.queue_below(key, &fd, dir.path(), &entries);
    wait_until(&ahead, "both listed", both_listed);
    assert!(
        matches!(&lock(&ahead.shared.state).wanted[&keys[b"b".as_slice()]], Loading::Ready(Some(l)) if l.primed.is_none())
    );
    assert_eq!(held(&ahead), 0);
    // A file the patterns exclude is not primed: a's first file to prime is then f001.
    let excluded = format!("{}/a/f000", dir.path().display());
    let ahead = DirAhead::with_limits(None, rules(&[&excluded]), Limits { dirs: 16, entries: 1 << 20 }, true);
    ahead.queue_below(key, &fd, dir.path(), &entries);
    wait_until(&ahead, "both listed", both_listed);
    let state = lock(&ahead.shared.state);
    let Some(Loading::Ready(Some(a))) = state.wanted.get(&keys[b"a".as_slice()]) else { panic!("a listed") };
    let a_bytes = a.primed.as_ref().unwrap().bytes;
    let from_f001 = (1..=PRIMED_FILES as u64).map(|i| 1000 + i).sum::<u64>();
    assert!(a_bytes == 1001 || a_bytes == from_f001, "{a_bytes} bytes primed for a");
}

/// Readers start the directory the walk enters first, whatever order the listings that queued
/// them finished in: depth first, then by name.
#[test]
fn queued_directories_come_out_in_the_order_the_walk_enters_them() {
    let dir = tempfile::tempdir().unwrap();
    make_tree(dir.path(), 2, 3);
    let (fd, key, entries) = open_root(dir.path());
    // No room: nothing is listed, the queue is only filled (as the walker and readers do).
    let ahead = DirAhead::with_limits(None, rules(&[]), Limits { dirs: 0, entries: 0 }, false);
    ahead.queue_below(key, &fd, dir.path(), &entries);
    for sub in ["d2", "d0"] {
        let path = dir.path().join(sub);
        let (sub_fd, sub_key, sub_entries) = open_root(&path);
        ahead.queue_below(sub_key, &sub_fd, &path, &sub_entries);
    }
    let mut state = lock(&ahead.shared.state);
    let order: Vec<String> = std::iter::from_fn(|| state.queue.pop_first())
        .map(|(order, _)| path_of(&order).strip_prefix(dir.path()).unwrap().display().to_string())
        .collect();
    assert_eq!(order, ["d0", "d0/d0", "d0/d1", "d0/d2", "d1", "d2", "d2/d0", "d2/d1", "d2/d2"]);
}

/// The paths of a directory's subtrees, depth first, each directory's entries sorted by bytes:
/// the order the walk enters them.
fn preorder(
    prefix: &Path,
    tree: &std::collections::BTreeMap<Vec<u8>, Vec<Vec<u8>>>,
    at: &[u8],
    out: &mut Vec<PathBuf>,
) {
    let mut names = tree.get(at).cloned().unwrap_or_default();
    names.sort();
    names.dedup();
    for name in names {
        let path = prefix.join(OsStr::from_bytes(&name));
        out.push(path.clone());
        let mut below = at.to_vec();
        below.push(b'/');
        below.extend(&name);
        preorder(&path, tree, &below, out);
    }
}

proptest::proptest! {
    /// Sorting by `walk_order` is the walk's order for any names, including bytes that sort
    /// below `/` (space, `!`, `-`, `.`) and names that are prefixes of others.
    #[test]
    fn walk_order_sorts_paths_as_the_walk_enters_them(
        names in proptest::collection::vec(
            (0usize..6, proptest::collection::vec(proptest::sample::select(vec![b' ', b'!', b'-', b'.', b'0', b'a', b'b', 0xff]), 1..4)),
            1..40,
        )
    ) {
        // Each name goes below one of the directories made so far.
        let mut tree: std::collections::BTreeMap<Vec<u8>, Vec<Vec<u8>>> = std::collections::BTreeMap::new();
        let mut dirs: Vec<Vec<u8>> = vec![Vec::new()];
        for (parent, name) in names {
            let parent = dirs[parent % dirs.len()].clone();
            let mut path = parent.clone();
            path.push(b'/');
            path.extend(&name);
            if !tree.get(&parent).is_some_and(|n| n.contains(&name)) {
                tree.entry(parent).or_default().push(name);
                dirs.push(path);
            }
        }
        let root = Path::new("/src/root");
        let mut want = Vec::new();
        preorder(root, &tree, b"", &mut want);
        let mut got = want.clone();
        for path in &want {
            proptest::prop_assert_eq!(&path_of(&walk_order(path)), path, "the path comes back from its order");
        }
        got.sort_by_key(|p| walk_order(p));
        proptest::prop_assert_eq!(got, want);
    }
}
