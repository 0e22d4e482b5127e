//! The tree walk: every tree once with its references, a tree that cannot be read or a
//! failing visitor stops it, and a panicking visitor does not hang its readers.

use std::collections::HashMap;

use cairn_repository::repo::testing::TestRepository;

use super::*;
use crate::repo::pack_name;
use crate::storage::{PutMode, Storage};

/// A source tree with `dirs` directories under `top`, some of them identical (one tree
/// stored for all), each with a few files; backed up; the snapshot's root tree.
fn back_up(t: &TestRepository, top: &std::path::Path, dirs: usize, salt: &str) -> ChunkId {
    for d in 0..dirs {
        // Every fourth directory is a copy of the first: the same tree.
        let same = d % 4 == 0;
        let dir = top.join(format!("d{}", d / 3)).join(format!("e{d}"));
        std::fs::create_dir_all(&dir).unwrap();
        for f in 0..3 {
            let body = if same { format!("same {f}") } else { format!("{salt} {d} {f}") };
            std::fs::write(dir.join(format!("f{f}")), body.repeat(50)).unwrap();
        }
    }
    let opts = crate::backup::BackupOptions {
        paths: vec![top.to_path_buf()],
        hostname: "host".into(),
        username: "user".into(),
        program: "unit tests".into(),
        ..crate::backup::BackupOptions::default()
    };
    let id = crate::backup::backup(&t.repo, &opts, &crate::NoProgress).unwrap().snapshot_id;
    t.repo.load_snapshot(&id).unwrap().tree
}

/// Every tree below `roots` with its references and length, read one at a time.
fn one_by_one(repo: &Repository, roots: &[ChunkId]) -> HashMap<ChunkId, (u32, TreeRefs)> {
    let mut out = HashMap::new();
    let mut stack = roots.to_vec();
    while let Some(id) = stack.pop() {
        if out.contains_key(&id) {
            continue;
        }
        let length = u32::try_from(repo.read_blob(&id).unwrap().len()).unwrap();
        let refs = repo.load_tree(&id).unwrap().refs();
        stack.extend(refs.subtrees.iter().copied());
        out.insert(id, (length, refs));
    }
    out
}

#[test]
fn every_tree_below_the_roots_is_visited_once_with_its_references() {
    let t = TestRepository::new(64 << 10);
    let src = tempfile::tempdir().unwrap();
    let first = back_up(&t, src.path(), 40, "one");
    std::fs::write(src.path().join("d2").join("e7").join("f1"), "changed").unwrap();
    let second = back_up(&t, src.path(), 40, "one");
    assert_ne!(first, second);
    let expected = one_by_one(&t.repo, &[first, second]);
    assert!(expected.len() > 40, "{} trees", expected.len());
    let mut got = HashMap::new();
    walk_trees(&t.repo, [first, second, first], |w| {
        assert!(got.insert(w.id, (w.length, w.refs)).is_none(), "tree {} visited twice", w.id);
        Ok(())
    })
    .unwrap();
    assert_eq!(got, expected);
    walk_trees(&t.repo, [], |_| panic!("no roots, no trees")).unwrap();
}

#[test]
fn a_tree_that_cannot_be_read_stops_the_walk_with_why() {
    let t = TestRepository::new(64 << 10);
    let src = tempfile::tempdir().unwrap();
    let root = back_up(&t, src.path(), 30, "two");
    let loc = t.repo.locate(&root).unwrap();
    let name = pack_name(&loc.pack);
    let good = t.storage.get(&name).unwrap();
    // Damaged: the root tree fails to open.
    let mut bad = good.clone();
    bad[(loc.offset + loc.length / 2) as usize] ^= 0x55;
    t.storage.put(&name, &bad, PutMode::Overwrite).unwrap();
    let err = walk_trees(&t.repo, [root], |_| Ok(())).unwrap_err();
    assert!(matches!(err, Error::Corrupt { .. }), "{err}");
    // Gone.
    t.storage.delete(&name).unwrap();
    let err = walk_trees(&t.repo, [root], |_| Ok(())).unwrap_err();
    assert!(matches!(err, Error::Missing(_)), "{err}");
    // Back: the walk goes through.
    t.storage.put(&name, &good, PutMode::Overwrite).unwrap();
    walk_trees(&t.repo, [root], |_| Ok(())).unwrap();
}

#[test]
fn an_error_of_the_visitor_stops_the_walk_at_once() {
    let t = TestRepository::new(64 << 10);
    let src = tempfile::tempdir().unwrap();
    let root = back_up(&t, src.path(), 60, "three");
    let mut visits = 0;
    let err = walk_trees(&t.repo, [root], |_| {
        visits += 1;
        if visits == 3 { Err(Error::InvalidInput("enough".into())) } else { Ok(()) }
    })
    .unwrap_err();
    assert!(matches!(&err, Error::InvalidInput(why) if why == "enough"), "{err}");
    assert_eq!(visits, 3);
}

#[test]
fn a_panic_of_the_visitor_reaches_the_caller_instead_of_hanging_the_readers() {
    let t = TestRepository::new(64 << 10);
    let src = tempfile::tempdir().unwrap();
    let root = back_up(&t, src.path(), 60, "four");
    let walked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        walk_trees(&t.repo, [root], |_| panic!("visitor fails")).unwrap();
    }));
    assert!(walked.is_err(), "the panic is the caller's");
    // The repository is still usable, and a walk after it goes through.
    walk_trees(&t.repo, [root], |_| Ok(())).unwrap();
}
