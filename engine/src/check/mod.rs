//! `check`: verify the repository. Structure first: key slots, every index segment, every
//! indexed pack present with its size, every entry inside its pack, every snapshot and tree
//! readable, every blob a tree names in the index. With `read_data`, every selected pack is
//! downloaded: its id must be the hash of its bytes, its header must match the index, and
//! every blob must open and hash to its id (packs are read in parallel, each once). A blob
//! stored in several packs (backups that ran at once) has each copy read; a damaged copy is
//! named, and the blob counts as lost only when no copy is intact, since restore falls back
//! from one copy to another.
//!
//! Findings name the object, what is wrong, and which snapshots and paths it affects: a first
//! pass marks the trees that lead to damage, a second walks each snapshot into those trees
//! only, so the cost stays with the damage, not with the number of snapshots. Memory does not grow
//! with the number of blobs: the index's entries are sorted on the client's disk
//! ([`index_view`]) and read back once, pack by pack ([`read_data`]).

mod index_view;
mod read_data;

use std::collections::HashMap;

use self::index_view::IndexView;
use crate::error::Result;
use crate::format::names::Dir;
use crate::format::slot::SlotDoc;
use crate::format::tree::NodeKind;
use crate::id::{ChunkId, ObjectId, PackId};
use crate::progress::Progress;
use crate::repo::{Repository, pack_name, snapshot_name};

/// Paths listed per finding at most (the count is always exact).
const MAX_PATHS: usize = 20;

/// Which packs `--read-data` reads.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Subset {
    /// Every pack.
    All,
    /// Slice `n` (1-based) of `of`: packs whose id falls in it, so `of` runs cover everything.
    Slice {
        /// Which slice.
        n: u32,
        /// How many slices.
        of: u32,
    },
    /// About this share of the packs (0.0 - 1.0), picked at random.
    Fraction(f64),
}

impl Subset {
    fn selects(&self, pack: &PackId) -> Result<bool> {
        let x = u64::from_le_bytes(pack.0.first_chunk::<8>().copied().unwrap_or_default());
        Ok(match *self {
            Subset::All => true,
            Subset::Slice { n, of } => of > 0 && x % u64::from(of) == u64::from(n.saturating_sub(1)),
            Subset::Fraction(f) => (crate::crypto::random_below(1_000_000)? as f64) < f * 1_000_000.0,
        })
    }
}

/// What to check.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CheckOptions {
    /// Read packs too.
    pub read_data: Option<Subset>,
}

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// Data is missing or damaged: exit code 1.
    Error,
    /// Worth knowing, nothing lost (an orphan pack).
    Notice,
}

/// One problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Error or notice.
    pub severity: Severity,
    /// The object (`data/ab/...`, `index/...`, `snapshots/...`, `blob ...`).
    pub object: String,
    /// What is wrong.
    pub problem: String,
    /// Snapshots affected.
    pub snapshots: Vec<ObjectId>,
    /// Paths affected (at most `MAX_PATHS`), `/`-prefixed.
    pub paths: Vec<String>,
    /// How many paths are affected in all.
    pub path_count: u64,
}

/// What `check` found and did.
#[derive(Debug, Clone, Default)]
pub struct CheckReport {
    /// Problems, errors first.
    pub findings: Vec<Finding>,
    /// Snapshots checked.
    pub snapshots: u64,
    /// Distinct trees checked.
    pub trees: u64,
    /// Packs in the index.
    pub packs: u64,
    /// Packs read (`read_data`).
    pub packs_read: u64,
    /// Blobs opened and verified (`read_data`).
    pub blobs_read: u64,
    /// Bytes read (`read_data`).
    pub bytes_read: u64,
}

impl CheckReport {
    /// Whether anything is damaged or missing.
    pub fn has_errors(&self) -> bool {
        self.findings.iter().any(|f| f.severity == Severity::Error)
    }
}

fn finding(severity: Severity, object: impl Into<String>, problem: impl Into<String>) -> Finding {
    Finding {
        severity,
        object: object.into(),
        problem: problem.into(),
        snapshots: Vec::new(),
        paths: Vec::new(),
        path_count: 0,
    }
}

/// A blob that is missing or damaged: (the object to blame, why).
type Bad = HashMap<ChunkId, (String, String)>;

/// What damage reaches snapshots, by (object, problem).
type Hits = HashMap<(String, String), Finding>;

struct Checker<'a> {
    repo: &'a Repository,
    /// Pack sizes and the blobs stored more than once; the entries themselves stay on disk.
    packs: HashMap<PackId, u64>,
    copies: HashMap<ChunkId, u32>,
    /// Packs found missing or of the wrong size, with what that does to their blobs.
    bad_packs: HashMap<PackId, &'static str>,
    /// Packs in storage that no index names.
    orphans: Vec<PackId>,
    /// Copies found missing or damaged, by (blob, pack): (the object to blame, why). A blob
    /// is bad only once every copy of it is ([`Checker::settle_copies`]).
    bad_copies: HashMap<(ChunkId, PackId), (String, String)>,
    bad: Bad,
    /// Tree id -> whether damage lies below it.
    damaged_below: HashMap<ChunkId, bool>,
    report: CheckReport,
}

impl Checker<'_> {
    fn error(&mut self, object: impl Into<String>, problem: impl Into<String>) {
        self.report.findings.push(finding(Severity::Error, object, problem));
    }

    /// Whether a live index segment lists `id`: asked of the index cache, which holds exactly
    /// the live segments check read ([`index_view::load`]).
    /// Whether the index lists `id` (any copy: one in a pack only a write-only slot wrote
    /// counts here, though a full key's backup would not reuse it).
    fn indexed(&self, id: &ChunkId) -> Result<bool> {
        // The fast lookup first; it says no for unverified copies, which RocksDB then finds.
        Ok(self.repo.index().contains(id)? || self.repo.index().get(id)?.is_some())
    }

    fn check_slots(&mut self) -> Result<()> {
        let id = self.repo.config().repository_id;
        for name in self.repo.list_names(Dir::Keys)? {
            match self.repo.read_raw(&name).and_then(|b| SlotDoc::decode(&b, &name)) {
                Ok(slot) if slot.repository_id == id => {}
                Ok(_) => self.error(&name, "key slot belongs to another repository"),
                Err(e) => self.error(&name, e.to_string()),
            }
        }
        Ok(())
    }

    /// The audit chain must be whole; `cairn audit verify` also cross-checks snapshots.
    fn check_audit(&mut self) -> Result<()> {
        for problem in self.repo.audit_chain_problems()? {
            self.error(Dir::Audit.prefix(), format!("{problem}; run `cairn audit verify` for the whole picture"));
        }
        Ok(())
    }

    /// Reads the index segments; the entries are kept on disk for [`Checker::read_entries`].
    fn load_index(&mut self) -> Result<IndexView> {
        let mut problems = Vec::new();
        let mut view = index_view::load(self.repo, &mut problems)?;
        for (object, problem) in problems {
            self.error(object, problem);
        }
        for (pack, id, segment) in std::mem::take(&mut view.outside) {
            self.bad_copies.insert((id, pack), (segment, "its index entry lies outside its pack".into()));
        }
        self.packs = std::mem::take(&mut view.packs);
        self.copies = std::mem::take(&mut view.copies);
        self.report.packs = self.packs.len() as u64;
        Ok(view)
    }

    /// A blob is bad when no copy of it is intact: restore falls back from a damaged copy to
    /// another. Reports the blobs stored more than once as a notice.
    fn settle_copies(&mut self) {
        let mut per_blob: HashMap<ChunkId, Vec<&(String, String)>> = HashMap::new();
        for ((id, _), why) in &self.bad_copies {
            per_blob.entry(*id).or_default().push(why);
        }
        for (id, whys) in per_blob {
            let copies = self.copies.get(&id).copied().unwrap_or(1) as usize;
            if whys.len() >= copies
                && let Some(first) = whys.into_iter().min()
            {
                self.bad.insert(id, first.clone());
            }
        }
        if !self.copies.is_empty() {
            let extra: u64 = self.copies.values().map(|n| u64::from(n.saturating_sub(1))).sum();
            self.report.findings.push(finding(
                Severity::Notice,
                Dir::Index.prefix(),
                format!(
                    "{} blob(s) are stored in more than one pack ({extra} extra copies; backups that ran at once each \
                     stored the same new data): not damage, restore falls back from one copy to another",
                    self.copies.len()
                ),
            ));
        }
    }

    fn check_packs(&mut self) -> Result<()> {
        let mut stored: HashMap<PackId, String> = HashMap::new();
        stored.extend(self.repo.list_packs()?);
        let mut packs: Vec<(PackId, u64)> = self.packs.iter().map(|(p, s)| (*p, *s)).collect();
        packs.sort();
        for (pack, size) in packs {
            let name = pack_name(&pack);
            if !stored.contains_key(&pack) {
                self.error(&name, "pack is missing");
                self.bad_packs.insert(pack, "its pack is missing");
                continue;
            }
            match self.repo.pack_size(&pack)? {
                Some(actual) if actual == size => {}
                Some(actual) => {
                    self.error(&name, format!("pack is {actual} bytes, the index says {size}"));
                    self.bad_packs.insert(pack, "its pack has the wrong size");
                }
                None => {
                    self.error(&name, "pack is missing");
                    self.bad_packs.insert(pack, "its pack is missing");
                }
            }
        }
        let mut orphans: Vec<(&PackId, &String)> =
            stored.iter().filter(|(id, _)| !self.packs.contains_key(id)).collect();
        orphans.sort();
        self.orphans = orphans.iter().map(|(id, _)| **id).collect();
        for (_, name) in orphans {
            self.report.findings.push(finding(
                Severity::Notice,
                name,
                "pack is in no index (left by an interrupted backup, or repacked by prune; `cairn prune` marks it and a later prune deletes it after the grace period)",
            ));
        }
        Ok(())
    }

    /// Whether `id` (a tree) or anything below it is bad; every tree is read once.
    fn scan(&mut self, id: ChunkId) -> Result<bool> {
        if let Some(&d) = self.damaged_below.get(&id) {
            return Ok(d);
        }
        self.damaged_below.insert(id, false);
        self.report.trees += 1;
        if !self.indexed(&id)? {
            self.bad.entry(id).or_insert_with(|| (format!("tree {id}"), "not in the index".into()));
        }
        let mut damaged = self.bad.contains_key(&id);
        if !damaged {
            match self.repo.load_tree(&id) {
                Ok(tree) => {
                    for node in tree.nodes {
                        match node.kind {
                            NodeKind::Dir { subtree } => damaged |= self.scan(subtree)?,
                            NodeKind::File { chunks, .. } => {
                                for c in chunks {
                                    if !self.indexed(&c)? {
                                        self.bad
                                            .entry(c)
                                            .or_insert_with(|| (format!("blob {c}"), "not in the index".into()));
                                    }
                                    damaged |= self.bad.contains_key(&c);
                                }
                            }
                            _ => {}
                        }
                    }
                }
                Err(e) => {
                    self.bad.insert(id, (format!("tree {id}"), e.to_string()));
                    damaged = true;
                }
            }
        }
        self.damaged_below.insert(id, damaged);
        Ok(damaged)
    }

    /// Records which snapshots and paths use bad blobs, walking only into damaged trees. A
    /// path is counted once per snapshot that holds it.
    fn attribute(&mut self, snap: ObjectId, tree: ChunkId, prefix: &str, hits: &mut Hits) {
        if !self.damaged_below.get(&tree).copied().unwrap_or(false) {
            return;
        }
        if self.bad.contains_key(&tree) {
            note(hits, &self.bad, snap, tree, if prefix.is_empty() { "/" } else { prefix });
            return;
        }
        let Ok(t) = self.repo.load_tree(&tree) else { return };
        for node in t.nodes {
            let path = format!("{prefix}/{}", String::from_utf8_lossy(&node.name));
            match node.kind {
                NodeKind::Dir { subtree } => self.attribute(snap, subtree, &path, hits),
                NodeKind::File { chunks, .. } => {
                    for c in chunks.iter().filter(|c| self.bad.contains_key(c)) {
                        note(hits, &self.bad, snap, *c, &path);
                    }
                }
                _ => {}
            }
        }
    }
}

/// Adds `snap` and `path` to the finding for the bad `blob`.
fn note(hits: &mut Hits, bad: &Bad, snap: ObjectId, blob: ChunkId, path: &str) {
    let (obj, why) = bad.get(&blob).cloned().unwrap_or_default();
    let f = hits.entry((obj.clone(), why.clone())).or_insert_with(|| finding(Severity::Error, obj, why));
    if !f.snapshots.contains(&snap) {
        f.snapshots.push(snap);
    }
    f.path_count += 1;
    if f.paths.len() < MAX_PATHS {
        f.paths.push(path.to_string());
    }
}

/// Checks the repository.
pub fn check(repo: &Repository, opts: &CheckOptions, progress: &dyn Progress) -> Result<CheckReport> {
    let mut c = Checker {
        repo,
        packs: HashMap::new(),
        copies: HashMap::new(),
        bad_packs: HashMap::new(),
        orphans: Vec::new(),
        bad_copies: HashMap::new(),
        bad: Bad::new(),
        damaged_below: HashMap::new(),
        report: CheckReport::default(),
    };
    progress.phase("check: structure", None);
    c.check_slots()?;
    c.check_audit()?;
    for l in repo.leftovers()? {
        c.report.findings.push(finding(
            Severity::Notice,
            &l.name,
            format!(
                "temporary file of {} bytes left by an interrupted write; `cairn prune` removes it once it is an hour old",
                l.size
            ),
        ));
    }
    // Snapshots before the index: a backup running alongside (check takes a shared lock)
    // stores its index segments before its snapshot, so every snapshot listed here has its
    // blobs in the index read next, and in the client's index synced again. The other order
    // would take its blobs for missing.
    let mut roots = Vec::new();
    for name in repo.list_names(Dir::Snapshots)? {
        let Some(id) = Dir::Snapshots.id_of(&name) else { continue };
        match repo.load_snapshot(&id) {
            Ok(s) => roots.push((id, s.tree)),
            Err(e) => c.error(snapshot_name(&id), e.to_string()),
        }
    }
    repo.sync_index()?;
    let view = c.load_index()?;
    c.check_packs()?;
    c.read_entries(view, opts.read_data, progress)?;
    c.settle_copies();
    progress.phase("check: snapshots", None);
    c.report.snapshots = roots.len() as u64;
    for (_, tree) in &roots {
        c.scan(*tree)?;
    }
    let mut hits = Hits::new();
    for (snap, tree) in &roots {
        c.attribute(*snap, *tree, "", &mut hits);
    }
    let mut hits: Vec<Finding> = hits.into_values().collect();
    hits.sort_by(|a, b| a.object.cmp(&b.object).then(a.paths.cmp(&b.paths)));
    c.report.findings.extend(hits);
    c.report.findings.sort_by_key(|f| f.severity != Severity::Error);
    progress.done();
    Ok(c.report)
}
