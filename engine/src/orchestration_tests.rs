//! The operations on an in-memory repository, without the CLI: check passes a whole repository
//! and attributes a damaged pack to its snapshot and paths, and prune after forget deletes only
//! what no snapshot uses.

use cairn_repository::repo::testing::TestRepository;

use cairn_format::test_util::pseudo_random as noise;

use crate::storage::{PutMode, Storage};

/// A source tree of `files` incompressible files of `size` bytes, backed up; its snapshot id.
fn back_up(t: &TestRepository, dir: &std::path::Path, files: u64, size: usize, seed: u64) -> crate::id::ObjectId {
    std::fs::create_dir_all(dir).unwrap();
    for i in 0..files {
        std::fs::write(dir.join(format!("f{i}")), noise(size, seed + i)).unwrap();
    }
    let opts = crate::backup::BackupOptions {
        paths: vec![dir.to_path_buf()],
        hostname: "host".into(),
        username: "user".into(),
        program: "unit tests".into(),
        ..crate::backup::BackupOptions::default()
    };
    crate::backup::backup(&t.repo, &opts, &crate::NoProgress).unwrap().snapshot_id
}

fn check_all(t: &TestRepository) -> crate::check::CheckReport {
    let opts = crate::check::CheckOptions { read_data: Some(crate::check::Subset::All) };
    crate::check::check(&t.repo, &opts, &crate::NoProgress).unwrap()
}

#[test]
fn check_passes_a_whole_repository_and_attributes_a_damaged_pack_to_its_snapshot() {
    let t = TestRepository::new(64 << 10);
    let src = tempfile::tempdir().unwrap();
    let snap = back_up(&t, &src.path().join("src"), 4, 100_000, 1);
    let clean = check_all(&t);
    assert!(!clean.has_errors(), "{:?}", clean.findings);
    assert!(clean.packs >= 4 && clean.packs_read == clean.packs, "{} packs, {} read", clean.packs, clean.packs_read);

    // The largest pack holds file data: damage its middle.
    let (_, name) =
        t.repo.list_packs().unwrap().into_iter().max_by_key(|(_, n)| t.storage.stat(n).unwrap().unwrap_or(0)).unwrap();
    let mut bytes = t.storage.get(&name).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x10;
    t.storage.put(&name, &bytes, PutMode::Overwrite).unwrap();
    let damaged = check_all(&t);
    assert!(damaged.has_errors(), "a damaged pack must be an error");
    assert!(
        damaged.findings.iter().any(|f| f.snapshots.contains(&snap) && !f.paths.is_empty()),
        "the damage is attributed to the snapshot and its paths: {:?}",
        damaged.findings
    );

    // Gone altogether: the structural check (no data read) reports it.
    t.storage.delete(&name).unwrap();
    let structural = crate::check::check(&t.repo, &Default::default(), &crate::NoProgress).unwrap();
    assert_eq!(structural.packs_read, 0);
    assert!(
        structural.findings.iter().any(|f| f.object == name && f.problem.contains("missing")),
        "{:?}",
        structural.findings
    );
}

#[test]
fn prune_after_forget_deletes_what_no_snapshot_uses_and_leaves_the_rest_whole() {
    let t = TestRepository::new(64 << 10);
    let src = tempfile::tempdir().unwrap();
    let old = back_up(&t, &src.path().join("old"), 4, 100_000, 10);
    back_up(&t, &src.path().join("new"), 4, 100_000, 20);
    let packs_before = t.repo.list_packs().unwrap().len();
    let actor = crate::audit::Actor { host: "host".into(), user: "user".into() };
    crate::forget::remove(&t.repo, &[old], &actor).unwrap();
    let opts = crate::prune::PruneOptions { instant_delete: true, ..Default::default() };
    let dry = crate::prune::prune(&t.repo, opts, true, &crate::NoProgress).unwrap();
    assert!(!dry.plan.delete.is_empty(), "the old snapshot's packs are planned for deletion");
    assert_eq!(t.repo.list_packs().unwrap().len(), packs_before, "a dry run deletes nothing");
    let done = crate::prune::prune(&t.repo, opts, false, &crate::NoProgress).unwrap();
    assert_eq!(done.plan.delete, dry.plan.delete, "the run does what the dry run planned");
    let packs_after = t.repo.list_packs().unwrap().len();
    assert!(packs_after < packs_before, "{packs_before} packs before, {packs_after} after");
    let report = check_all(&t);
    assert!(!report.has_errors(), "what remains is whole: {:?}", report.findings);
    assert_eq!(t.repo.snapshot_ids().unwrap().len(), 1);
}
