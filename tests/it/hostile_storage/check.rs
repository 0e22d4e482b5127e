//! Check against a storage that answers two listings of the index differently: it shows a
//! segment to the index sync and hides it from check's own reading, after deleting the packs
//! only that segment lists. Check must not take the client's cache for the repository's
//! index: the lost data is reported against its snapshot.

use std::collections::HashSet;

use cairn_engine::NoProgress;
use cairn_engine::check::{CheckOptions, Subset, check};
use cairn_engine::format::names::Dir;

use super::adversary::{Hiding, open_on};
use crate::support::*;

#[test]
fn a_segment_shown_to_the_sync_and_hidden_from_check_does_not_hide_lost_data() {
    let work = tempfile::tempdir().unwrap();
    let t = TestRepo::new();
    let hiding = Hiding::new(t.storage.clone());
    let repo = open_on(hiding.clone(), &t.cache());
    let (src_a, src_b) = (work.path().join("a"), work.path().join("b"));
    for (dir, seed) in [(&src_a, 1), (&src_b, 2)] {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("data"), random_bytes(400_000, seed)).unwrap();
    }
    snapshot(&repo, &[&src_a]);
    let before: HashSet<_> = repo.segment_ids().unwrap().into_iter().collect();
    let b = snapshot(&repo, &[&src_b]);
    let b_segments: Vec<_> = repo.segment_ids().unwrap().into_iter().filter(|id| !before.contains(id)).collect();
    assert!(!b_segments.is_empty());
    let a_packs: HashSet<_> =
        before.iter().flat_map(|id| repo.load_segment(id).unwrap().packs).map(|p| p.pack).collect();
    // The attack: B's own packs deleted, B's segments listed to the sync (the first listing of
    // the index) and to no listing after it.
    let mut deleted = 0;
    for id in &b_segments {
        for pack in repo.load_segment(id).unwrap().packs.iter().filter(|p| !a_packs.contains(&p.pack)) {
            t.storage.delete(&cairn_engine::repo::pack_name(&pack.pack)).unwrap();
            deleted += 1;
        }
        hiding.list_only_the_next(&Dir::Index.object(id), 1);
    }
    assert!(deleted > 0);

    let report = check(&repo, &CheckOptions { read_data: Some(Subset::All) }, &NoProgress).unwrap();
    assert!(report.has_errors(), "lost data must be reported: {:#?}", report.findings);
    assert!(
        report.findings.iter().any(|f| f.snapshots.contains(&b.snapshot_id) && f.problem.contains("not in the index")),
        "B's data is named lost, against B: {:#?}",
        report.findings
    );
}
