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
//! only, so the cost stays with the damage, not with the number of snapshots.

use std::collections::{HashMap, HashSet};

use rayon::prelude::*;

use crate::error::Result;
use crate::format::names::Dir;
use crate::format::pack::BlobEntry;
use crate::format::slot::SlotDoc;
use crate::format::tree::NodeKind;
use crate::id::{ChunkId, ObjectId, PackId};
use crate::index::BlobLocation;
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

/// The index as the segments say: blob -> (pack, entry) of its first copy, every copy of
/// each blob by pack, and pack -> size.
#[derive(Default)]
struct IndexView {
    blobs: HashMap<ChunkId, (PackId, BlobEntry)>,
    /// Every entry of every pack, duplicates included: `--read-data` reads each copy.
    entries: HashMap<PackId, Vec<(ChunkId, BlobEntry)>>,
    /// How many packs hold each blob stored more than once.
    copies: HashMap<ChunkId, u32>,
    packs: HashMap<PackId, u64>,
}

/// A blob that is missing or damaged: (the object to blame, why).
type Bad = HashMap<ChunkId, (String, String)>;

/// What damage reaches snapshots, by (object, problem).
type Hits = HashMap<(String, String), Finding>;

struct Checker<'a> {
    repo: &'a Repository,
    index: IndexView,
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

    fn check_slots(&mut self) -> Result<()> {
        let id = self.repo.config().repository_id;
        for name in self.repo.storage().list(Dir::Keys.prefix())? {
            match self
                .repo
                .storage()
                .get_bounded(&name, crate::format::MAX_SMALL_OBJECT)
                .and_then(|b| SlotDoc::decode(&b, &name))
            {
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

    fn load_index(&mut self) -> Result<()> {
        let mut segments = Vec::new();
        for name in self.repo.storage().list(Dir::Index.prefix())? {
            match self.repo.load_segment_named(&name) {
                Ok(s) => segments.push((name, s)),
                Err(e) => self.error(&name, format!("{e}; the blobs it lists look missing until `cairn repair index`")),
            }
        }
        let superseded: HashSet<String> =
            segments.iter().flat_map(|(_, s)| s.supersedes.iter().map(|id| Dir::Index.object(id))).collect();
        for (name, seg) in segments {
            if superseded.contains(&name) {
                continue;
            }
            for pack in seg.packs {
                self.index.packs.insert(pack.pack, pack.size);
                for b in pack.blobs {
                    if u64::from(b.offset) + u64::from(b.length) > pack.size {
                        self.error(&name, format!("entry for blob {} lies outside pack {}", b.id, pack.pack));
                        continue;
                    }
                    self.index.entries.entry(pack.pack).or_default().push((b.id, b));
                    match self.index.blobs.entry(b.id) {
                        std::collections::hash_map::Entry::Vacant(v) => {
                            v.insert((pack.pack, b));
                        }
                        std::collections::hash_map::Entry::Occupied(o) if o.get().0 != pack.pack => {
                            *self.index.copies.entry(b.id).or_insert(1) += 1;
                        }
                        std::collections::hash_map::Entry::Occupied(_) => {}
                    }
                }
            }
        }
        self.report.packs = self.index.packs.len() as u64;
        Ok(())
    }

    /// Marks every blob copy in `pack` bad.
    fn pack_bad(&mut self, pack: &PackId, why: &str) {
        let name = pack_name(pack);
        for (id, _) in self.index.entries.get(pack).map_or(&[][..], Vec::as_slice) {
            self.bad_copies.insert((*id, *pack), (name.clone(), why.to_string()));
        }
    }

    /// A blob is bad when no copy of it is intact: restore falls back from a damaged copy to
    /// another. Reports the blobs stored more than once as a notice.
    fn settle_copies(&mut self) {
        let mut per_blob: HashMap<ChunkId, Vec<&(String, String)>> = HashMap::new();
        for ((id, _), why) in &self.bad_copies {
            per_blob.entry(*id).or_default().push(why);
        }
        for (id, whys) in per_blob {
            let copies = self.index.copies.get(&id).copied().unwrap_or(1) as usize;
            if whys.len() >= copies
                && let Some(first) = whys.into_iter().min()
            {
                self.bad.insert(id, first.clone());
            }
        }
        if !self.index.copies.is_empty() {
            let extra: u64 = self.index.copies.values().map(|n| u64::from(n.saturating_sub(1))).sum();
            self.report.findings.push(finding(
                Severity::Notice,
                Dir::Index.prefix(),
                format!(
                    "{} blob(s) are stored in more than one pack ({extra} extra copies; backups that ran at once each \
                     stored the same new data): not damage, restore falls back from one copy to another",
                    self.index.copies.len()
                ),
            ));
        }
    }

    fn check_packs(&mut self) -> Result<()> {
        let mut stored: HashMap<PackId, String> = HashMap::new();
        stored.extend(self.repo.list_packs()?);
        let mut packs: Vec<(PackId, u64)> = self.index.packs.iter().map(|(p, s)| (*p, *s)).collect();
        packs.sort();
        for (pack, size) in packs {
            let name = pack_name(&pack);
            if !stored.contains_key(&pack) {
                self.error(&name, "pack is missing");
                self.pack_bad(&pack, "its pack is missing");
                continue;
            }
            match self.repo.pack_size(&pack)? {
                Some(actual) if actual == size => {}
                Some(actual) => {
                    self.error(&name, format!("pack is {actual} bytes, the index says {size}"));
                    self.pack_bad(&pack, "its pack has the wrong size");
                }
                None => {
                    self.error(&name, "pack is missing");
                    self.pack_bad(&pack, "its pack is missing");
                }
            }
        }
        let mut orphans: Vec<(&PackId, &String)> =
            stored.iter().filter(|(id, _)| !self.index.packs.contains_key(id)).collect();
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

    /// Reads every selected pack of the index, each copy of a blob stored twice included, and
    /// verifies every blob in it.
    fn read_data(&mut self, subset: Subset, progress: &dyn Progress) -> Result<()> {
        let by_pack = &self.index.entries;
        let already_bad: HashSet<PackId> = self.bad_copies.keys().map(|(_, p)| *p).collect();
        let mut selected = Vec::new();
        for pack in self.index.packs.keys().chain(&self.orphans) {
            if subset.selects(pack)? && !already_bad.contains(pack) {
                selected.push(*pack);
            }
        }
        selected.sort();
        let total: u64 = selected.iter().filter_map(|p| self.index.packs.get(p)).sum();
        progress.phase("check: reading packs", Some(total));
        // Packs are verified in parallel, each read once; the results merge in pack order.
        let results: Vec<PackResult> = self.repo.with_io_pool(|| {
            selected
                .par_iter()
                .map(|pack| {
                    let r = verify_pack(self.repo, *pack, by_pack.get(pack).map_or(&[][..], Vec::as_slice));
                    progress.bytes(r.bytes);
                    r
                })
                .collect()
        });
        for r in results {
            if !self.index.packs.contains_key(&r.pack) {
                // A pack in no index: nothing uses it, so its damage loses nothing.
                if let Some(why) = r
                    .unreadable
                    .into_iter()
                    .chain(r.errors)
                    .chain(r.bad.into_iter().map(|(id, why)| format!("blob {id}: {why}")))
                    .next()
                {
                    self.report.findings.push(finding(
                        Severity::Notice,
                        &r.name,
                        format!("pack is in no index and damaged: {why}"),
                    ));
                } else {
                    self.report.packs_read += 1;
                    self.report.bytes_read += r.bytes;
                    self.report.blobs_read += r.blobs;
                }
                continue;
            }
            if let Some(why) = r.unreadable {
                self.error(&r.name, why);
                self.pack_bad(&r.pack, "its pack cannot be read");
                continue;
            }
            self.report.packs_read += 1;
            self.report.bytes_read += r.bytes;
            self.report.blobs_read += r.blobs;
            for e in r.errors {
                self.error(&r.name, e);
            }
            let mut damaged = 0u64;
            let mut with_copy = 0u64;
            for (id, why) in r.bad {
                damaged += 1;
                if self.index.copies.contains_key(&id) {
                    with_copy += 1;
                }
                self.bad_copies.insert((id, r.pack), (r.name.clone(), why));
            }
            if damaged > 0 {
                let copies = if with_copy > 0 {
                    format!(
                        " ({with_copy} of them also stored in another pack, which restore reads instead if it is intact)"
                    )
                } else {
                    String::new()
                };
                self.error(&r.name, format!("{damaged} blob(s) fail to decrypt or do not match their id{copies}"));
            }
        }
        Ok(())
    }

    /// Whether `id` (a tree) or anything below it is bad; every tree is read once.
    fn scan(&mut self, id: ChunkId) -> bool {
        if let Some(&d) = self.damaged_below.get(&id) {
            return d;
        }
        self.damaged_below.insert(id, false);
        self.report.trees += 1;
        if !self.index.blobs.contains_key(&id) {
            self.bad.entry(id).or_insert_with(|| (format!("tree {id}"), "not in the index".into()));
        }
        let mut damaged = self.bad.contains_key(&id);
        if !damaged {
            match self.repo.load_tree(&id) {
                Ok(tree) => {
                    for node in tree.nodes {
                        match node.kind {
                            NodeKind::Dir { subtree } => damaged |= self.scan(subtree),
                            NodeKind::File { chunks, .. } => {
                                for c in chunks {
                                    if !self.index.blobs.contains_key(&c) {
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
        damaged
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

/// What reading one pack found.
struct PackResult {
    pack: PackId,
    name: String,
    bytes: u64,
    blobs: u64,
    /// Why the pack could not be read at all.
    unreadable: Option<String>,
    /// Problems of the pack as a whole.
    errors: Vec<String>,
    /// Blobs that fail to open or to match their id, and why.
    bad: Vec<(ChunkId, String)>,
}

/// Reads one pack: its id must hash its bytes, its header must hold the index's entries, and
/// every indexed blob must open and match its id.
fn verify_pack(repo: &Repository, pack: PackId, entries: &[(ChunkId, BlobEntry)]) -> PackResult {
    let name = pack_name(&pack);
    let mut r = PackResult { pack, name, bytes: 0, blobs: 0, unreadable: None, errors: Vec::new(), bad: Vec::new() };
    let bytes = match repo.read_pack(&pack) {
        Ok(b) => b,
        Err(e) => {
            r.unreadable = Some(e.to_string());
            return r;
        }
    };
    r.bytes = bytes.len() as u64;
    // Opening the header hashes the whole pack once (its binding to the blobs, and the id).
    let opened = repo.open_pack(&r.name, &bytes);
    let id = opened.as_ref().map_or_else(|_| PackId::of(&bytes), |o| o.id);
    if id != pack {
        r.errors.push("pack content does not match its name (BLAKE3 of the bytes)".into());
    }
    // A pack in no index (`entries` empty) is verified by its header's entries.
    let mut from_header = Vec::new();
    match opened {
        Ok(o) if entries.is_empty() => from_header = o.header.blobs.iter().map(|b| (b.id, *b)).collect(),
        Ok(o) => {
            let header: HashSet<(ChunkId, u32, u32)> =
                o.header.blobs.iter().map(|b| (b.id, b.offset, b.length)).collect();
            let missing = entries.iter().filter(|(id, e)| !header.contains(&(*id, e.offset, e.length))).count();
            if missing > 0 {
                r.errors.push(format!("{missing} of {} index entries are not in the pack header", entries.len()));
            }
        }
        Err(e) => r.errors.push(e.to_string()),
    }
    for (id, entry) in entries.iter().chain(&from_header) {
        let start = entry.offset as usize;
        let sealed = bytes.get(start..start + entry.length as usize).unwrap_or_default();
        r.blobs += 1;
        if let Err(e) = repo.open_blob(id, &BlobLocation::of(pack, entry), &r.name, sealed) {
            r.bad.push((*id, e.to_string()));
        }
    }
    r
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
        index: IndexView::default(),
        orphans: Vec::new(),
        bad_copies: HashMap::new(),
        bad: Bad::new(),
        damaged_below: HashMap::new(),
        report: CheckReport::default(),
    };
    progress.phase("check: structure", None);
    c.check_slots()?;
    c.check_audit()?;
    for l in repo.storage().leftovers()? {
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
    for name in repo.storage().list(Dir::Snapshots.prefix())? {
        let Some(id) = Dir::Snapshots.id_of(&name) else { continue };
        match repo.load_snapshot(&id) {
            Ok(s) => roots.push((id, s.tree)),
            Err(e) => c.error(snapshot_name(&id), e.to_string()),
        }
    }
    repo.sync_index()?;
    c.load_index()?;
    c.check_packs()?;
    if let Some(subset) = opts.read_data {
        c.read_data(subset, progress)?;
    }
    c.settle_copies();
    progress.phase("check: snapshots", None);
    c.report.snapshots = roots.len() as u64;
    for (_, tree) in &roots {
        c.scan(*tree);
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
