//! The deletion marks in the repository (SPEC §13c): the marks in force are those of the marks
//! objects no other present one supersedes. Anything doubtful (an object that does not open, a
//! generation older than one this client saw before) makes every mark distrusted: the packs are
//! then marked afresh, which only delays their deletion, never hastens it.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::format::marks::{MarkedPack, PruneMarks};
use crate::format::names::Dir;
use crate::format::now_ns;
use crate::id::{ObjectId, PackId};
use crate::repo::Repository;

/// The marks read at the start of a prune.
#[derive(Debug, Default)]
pub(super) struct Marks {
    /// Every marks object present (all replaced by the next one written).
    pub objects: Vec<ObjectId>,
    /// The marked packs in force, by id (empty when distrusted).
    pub packs: BTreeMap<PackId, MarkedPack>,
    /// The highest generation present or remembered by this client.
    pub generation: u64,
    /// Why the marks present were not used, when they were not.
    pub distrusted: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Seen {
    generation: u64,
}

const SEEN_FILE: &str = "marks-seen.json";

fn seen(dir: &Path) -> u64 {
    std::fs::read(dir.join(SEEN_FILE))
        .ok()
        .and_then(|b| serde_json::from_slice::<Seen>(&b).ok())
        .map_or(0, |s| s.generation)
}

/// Remembers the newest generation this client saw, never moving backwards. Best effort: a
/// client that forgot it trusts what the repository shows (as with the audit head).
pub(super) fn remember(dir: &Path, generation: u64) {
    if seen(dir) >= generation {
        return;
    }
    if std::fs::create_dir_all(dir).is_ok()
        && let Ok(bytes) = serde_json::to_vec(&Seen { generation })
    {
        let tmp = dir.join(format!("{SEEN_FILE}.tmp"));
        if std::fs::write(&tmp, bytes).is_ok() {
            let _ = std::fs::rename(&tmp, dir.join(SEEN_FILE));
        }
    }
}

/// Reads the marks objects. Storage errors are returned; an object that does not open or
/// decode distrusts every mark.
pub(super) fn read(repo: &Repository) -> Result<Marks> {
    let mut out = Marks::default();
    let mut docs = Vec::new();
    for id in repo.marks_ids()? {
        out.objects.push(id);
        match repo.load_marks(&id) {
            Ok(doc) => docs.push((id, doc)),
            Err(e @ crate::error::Error::Storage { .. }) => return Err(e),
            Err(e) => out.distrusted = Some(format!("{} cannot be read ({e})", Dir::Marks.object(&id))),
        }
    }
    let remembered = seen(repo.cache_dir());
    let superseded: Vec<ObjectId> = docs.iter().flat_map(|(_, d)| d.supersedes.iter().copied()).collect();
    let heads: Vec<&PruneMarks> = docs.iter().filter(|(id, _)| !superseded.contains(id)).map(|(_, d)| d).collect();
    let newest = heads.iter().map(|d| d.generation).max().unwrap_or(0);
    out.generation = docs.iter().map(|(_, d)| d.generation).max().unwrap_or(0).max(remembered);
    if newest < remembered && out.distrusted.is_none() {
        out.distrusted = Some(format!(
            "the newest deletion marks are generation {newest}, but this client saw generation {remembered} (the storage hides or replays them)"
        ));
    }
    if out.distrusted.is_some() {
        return Ok(out);
    }
    for doc in heads {
        for m in &doc.packs {
            // Two heads (there should be one): the later mark wins, which only delays.
            let e = out.packs.entry(m.pack).or_insert(*m);
            e.marked_ns = e.marked_ns.max(m.marked_ns);
        }
    }
    Ok(out)
}

/// Stores a marks object of generation `generation` holding `packs` and superseding
/// `supersedes`; returns its id.
pub(super) fn write(
    repo: &Repository,
    generation: u64,
    supersedes: &[ObjectId],
    packs: &BTreeMap<PackId, MarkedPack>,
) -> Result<ObjectId> {
    let doc = PruneMarks {
        generation,
        created_ns: now_ns(),
        supersedes: supersedes.to_vec(),
        packs: packs.values().copied().collect(),
    };
    repo.save_marks(&doc)
}

/// Deletes the marks objects `ids`.
pub(super) fn delete(repo: &Repository, ids: &[ObjectId]) -> Result<()> {
    repo.delete_marks(ids)
}
