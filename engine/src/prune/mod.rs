//! `prune`: reclaim the space of data no snapshot uses. Mark (every blob reachable from every
//! snapshot's trees), plan (`plan`, pure), then sweep in an order a crash cannot break:
//!
//! 1. copy the used blobs of packs being repacked into new packs (verified first);
//! 2. write the new index: segments listing every kept pack, the last one also naming every old
//!    segment as superseded, so readers switch to the new index only once it is complete;
//! 3. store the deletion marks (`marks`);
//! 4. delete the packs whose time has come;
//! 5. delete the old segments, then the old marks.
//!
//! A crash before 2 leaves unindexed packs (a later prune deletes them); after 2, readers
//! ignore the old segments, so no index entry ever points at a deleted pack. Prune refuses to
//! run when any tree or index segment cannot be read, when a snapshot cannot be read and the
//! plan would change anything, when a used blob is in no
//! pack, or when a snapshot the audit log says exists is not in the listing: it must see every
//! reference before it deletes anything. The index itself is not taken on trust (`claims`): a
//! used blob listed more than once keeps a copy only once that copy is read and verified, its
//! own pack's header listing it there (`verify`), a pack listed twice must be listed the same,
//! and a pack no live segment lists is read whole before it is marked or deleted; prune refuses
//! when that finds data snapshots use that the index does not hold. Otherwise only trees, index
//! segments, the packs being repacked and those holding a copy being verified are read. The
//! set of used blobs lives in memory up to a budget and in an on-disk scratch table beyond it
//! (`IdMap`), so memory does not grow with the repository.
//!
//! Deletion is two-phase, because the storage may hide a snapshot or an index segment from a
//! listing, and a backup may be storing packs whose index is not written yet: a pack the plan
//! discards is first marked (unused indexed packs stay in the index meanwhile, repacked and
//! orphan packs are out of it), and only a later prune that still finds it unreferenced once
//! the mark is older than the grace period deletes it. `instant_delete` skips the marks.

mod claims;
mod marks;
pub mod plan;
mod repack;
mod verify;

pub use plan::{DEFAULT_GRACE_PERIOD, PackUsage, PruneOptions, PrunePlan, Sweep, plan, sweep};

use std::collections::{BTreeSet, HashMap, HashSet};

use crate::error::{Error, Result};
use crate::format::index::IndexedPack;
use crate::format::now_ns;
use crate::id::{ChunkId, ObjectId, PackId};
use crate::index::IdMap;
use crate::progress::Progress;
use crate::repo::{IndexRewrite, Repository};

/// Temporary files of writes (local storage) older than this are left by processes that died:
/// prune, holding the exclusive lock, removes them. No writer lives that long without a lock,
/// and a pack takes seconds to write.
pub const LEFTOVER_AGE: std::time::Duration = std::time::Duration::from_secs(3600);

/// What a prune did (or, with `dry_run`, would do).
#[derive(Debug, Clone, Default)]
pub struct PruneOutcome {
    /// The plan.
    pub plan: PrunePlan,
    /// What became (or, with `dry_run`, would become) of the packs the plan discards.
    pub sweep: Sweep,
    /// Why the earlier deletion marks were not used (every pack was marked afresh), if so.
    pub marks_distrusted: Option<String>,
    /// Blobs snapshots use.
    pub used_blobs: u64,
    /// New packs written by repacking.
    pub packs_written: u64,
    /// Index segments written.
    pub segments_written: u64,
    /// Index segments deleted.
    pub segments_deleted: u64,
    /// Packs sealed under the epoch being re-encrypted (repacked, or deleted when unused).
    pub packs_reencrypted: u64,
    /// Other objects re-sealed under the current epoch.
    pub objects_resealed: u64,
    /// Whether anything was changed.
    pub dry_run: bool,
    /// Temporary files of interrupted writes removed (older than [`LEFTOVER_AGE`]), and their bytes.
    pub leftovers_removed: (u64, u64),
    /// Snapshots that could not be read, each with why. Their data cannot be told from unused
    /// data, so prune changes nothing while there are any and its plan would change anything.
    pub unreadable_snapshots: Vec<(ObjectId, String)>,
}

impl PruneOutcome {
    /// Whether the plan deletes, repacks or marks anything, or rewrites the index.
    pub fn changes_anything(&self) -> bool {
        !self.plan.delete.is_empty()
            || !self.plan.repack.is_empty()
            || !self.sweep.delete_now.is_empty()
            || !self.sweep.marks.is_empty()
    }
}

/// What [`used_blobs`] finds.
struct Used {
    /// Blobs reachable from every snapshot that can be read (in memory, on disk past the
    /// map's budget): id -> the copy kept (a [`claims::Claim`], empty until the index scan
    /// claims one).
    blobs: IdMap<{ claims::CLAIM_LEN }>,
    /// The raw length of every tree among them (as read: its id fixes it).
    tree_lengths: HashMap<ChunkId, u32>,
    /// The snapshots that cannot be read.
    unreadable: Vec<(ObjectId, String)>,
}

/// The blobs every snapshot that can be read uses.
fn used_blobs(repo: &Repository, progress: &dyn Progress) -> Result<Used> {
    let mut used = repo.id_map("prune-used")?;
    // Trees are about one blob in a hundred: their lengths (which bound what a copy of one may
    // decompress to) stay in memory.
    let mut tree_lengths: HashMap<ChunkId, u32> = HashMap::new();
    let (readable, unreadable) = repo.readable_snapshots()?;
    let unreadable = unreadable.into_iter().map(|(id, e)| (id, e.to_string())).collect();
    // A snapshot is stored after its index segments: read the index again now that the
    // snapshots are listed, so a snapshot stored since the first sync has its blobs known.
    // (Only a backup that ignored the exclusive lock, or one whose lock this host's clock took
    // for stale, can have stored one.)
    repo.sync_index()?;
    // The first tree that cannot be read stops the prune.
    crate::tree_walk::walk_trees(repo, readable.into_iter().map(|(_, s)| s.tree), |tree| {
        used.put(tree.id.as_bytes(), b"")?;
        progress.bytes(1);
        tree_lengths.insert(tree.id, tree.length);
        for c in &tree.refs.chunks {
            used.put(c.as_bytes(), b"")?;
        }
        Ok(())
    })?;
    Ok(Used { blobs: used, tree_lengths, unreadable })
}

/// Calls `f` with every pack of the live (not superseded) segments, each pack once.
fn for_each_pack(
    repo: &Repository,
    live: &[ObjectId],
    mut f: impl FnMut(Option<ObjectId>, IndexedPack) -> Result<()>,
) -> Result<()> {
    let mut seen = HashSet::new();
    for id in live {
        for pack in repo.load_segment(id)?.packs {
            if seen.insert(pack.pack) {
                f(Some(*id), pack)?;
            }
        }
    }
    Ok(())
}

/// Removes the storage's temporary files older than `age`; returns how many and their bytes.
/// The caller holds the exclusive lock, so no writer is working on them.
fn remove_leftovers(repo: &Repository, age: std::time::Duration) -> Result<(u64, u64)> {
    let now = std::time::SystemTime::now();
    let mut removed = (0, 0);
    for l in repo.leftovers()? {
        let old = l.modified.and_then(|m| now.duration_since(m).ok()).is_some_and(|a| a > age);
        if old {
            repo.remove_leftover(&l)?;
            removed.0 += 1;
            removed.1 += l.size;
        }
    }
    Ok(removed)
}

/// Refuses with [`Error::SnapshotsMissing`] when the audit log names snapshots that the
/// listing of `snapshots/` does not show: their data must not be taken for unused.
fn check_snapshots_against_log(repo: &Repository) -> Result<()> {
    let missing = repo.missing_snapshots()?;
    if missing.is_empty() { Ok(()) } else { Err(Error::SnapshotsMissing { ids: missing }) }
}

/// Runs a prune (the caller holds the exclusive lock; a lock whose refresh failed stops it
/// before it changes anything, see [`Repository::check_locks`]).
pub fn prune(repo: &Repository, opts: PruneOptions, dry_run: bool, progress: &dyn Progress) -> Result<PruneOutcome> {
    repo.sync_index()?;
    if let Some(problem) = repo.index_problems().first() {
        return Err(Error::InvalidInput(format!(
            "prune needs the whole index, and {problem}; run `cairn check`, then `cairn repair index`"
        )));
    }
    // Before the snapshots are read: what the log says exists must be listed.
    check_snapshots_against_log(repo)?;
    progress.phase("prune: finding used blobs", None);
    let Used { blobs: mut used, tree_lengths, unreadable: unreadable_snapshots } = used_blobs(repo, progress)?;
    let mut verifier = verify::Verifier::new(repo, tree_lengths);
    let (all_segments, superseded) = repo.segments_and_superseded()?;
    let live: Vec<ObjectId> = all_segments.iter().filter(|id| !superseded.contains(id)).copied().collect();
    // Per-pack usage; each used blob is claimed by one copy, verified when it has others
    // (`claims`: the index may have been written to make real packs look unused).
    let replaced: Vec<ObjectId> = all_segments.iter().filter(|id| superseded.contains(id)).copied().collect();
    let claims::Claimed { usage, indexed } = claims::claim_copies(repo, &mut verifier, &live, &replaced, &mut used)?;
    let mut orphans = Vec::new();
    for (id, _) in repo.list_packs()? {
        if !indexed.contains(&id) {
            orphans.push((id, repo.pack_size(&id)?.unwrap_or(0)));
        }
    }
    orphans.sort();
    // An orphan holding data snapshots use that the index does not hold is never deleted.
    claims::check_orphans(repo, &mut verifier, &orphans, &mut used, progress)?;
    drop(verifier);
    let used_count = claims::check_claims(&mut used)?;
    let mut the_plan = plan::plan(&usage, &orphans, opts);
    let mut stale: HashSet<PackId> = HashSet::new();
    if let Some(epoch) = opts.reencrypt_epoch {
        if epoch == repo.key_epochs()?.last().map_or(0, |e| e.0) {
            return Err(Error::InvalidInput(format!(
                "epoch {epoch} is the current epoch; `cairn key rotate` first, then re-encrypt the old one"
            )));
        }
        progress.phase("prune: finding packs of the old epoch", None);
        for u in &usage {
            if repo.pack_epoch(&u.pack, u.size)? == epoch {
                stale.insert(u.pack);
                the_plan.force_repack(u);
            }
        }
    }
    // Packs sealed under the epoch being re-encrypted go at once: it cannot be retired while
    // any pack is sealed under it.
    let mut force_now = stale.clone();
    if let Some(epoch) = opts.reencrypt_epoch {
        for (id, size) in &orphans {
            if repo.pack_epoch(id, *size)? == epoch {
                force_now.insert(*id);
            }
        }
    }
    let sizes: HashMap<PackId, u64> = usage.iter().map(|u| (u.pack, u.size)).chain(orphans.iter().copied()).collect();
    let earlier = marks::read(repo)?;
    let the_sweep = plan::sweep(&the_plan, &sizes, &earlier.packs, &force_now, now_ns(), opts);
    let mut out = PruneOutcome {
        plan: the_plan,
        sweep: the_sweep,
        marks_distrusted: earlier.distrusted.clone(),
        used_blobs: used_count,
        dry_run,
        packs_reencrypted: stale.len() as u64,
        unreadable_snapshots,
        ..PruneOutcome::default()
    };
    if dry_run {
        return Ok(out);
    }
    // A snapshot that cannot be read may use any pack that looks unused: with one, prune goes
    // on only when its plan changes nothing (then it cannot matter what the snapshot uses).
    if !out.unreadable_snapshots.is_empty() && (out.changes_anything() || !superseded.is_empty()) {
        return Err(Error::SnapshotsUnreadable { snapshots: out.unreadable_snapshots.clone() });
    }
    let deleting: BTreeSet<PackId> = out.sweep.delete_now.iter().copied().collect();
    // Out of the new index: repacked packs (their used blobs are in the new packs) and indexed
    // packs deleted now. Unused packs only marked stay indexed, so a snapshot the storage hid
    // finds its blobs when it shows again.
    let gone: HashSet<PackId> =
        out.plan.repack.iter().chain(out.plan.delete.iter().filter(|p| deleting.contains(p))).copied().collect();
    let rewrite_index = !gone.is_empty() || !superseded.is_empty();
    repo.check_locks()?;
    repo.check_interrupted("prune stopped before changing anything")?;

    if rewrite_index {
        let repack: HashSet<PackId> = out.plan.repack.iter().copied().collect();
        // 1. Repack: the used blobs whose kept copy is in a repacked pack, verified, into new packs.
        // Only the claims in those packs are needed from here on: the table of every used blob
        // goes before the new packs fill.
        let mut keep = repack::kept_copies(repo, &mut used, &repack)?;
        drop(used);
        progress.phase("prune: repacking", Some(out.plan.repack_used_bytes));
        let writer = repo.repack_writer()?;
        for_each_pack(repo, &live, |_, pack| {
            if !repack.contains(&pack.pack) {
                return Ok(());
            }
            repo.check_interrupted(
                "prune stopped while repacking; nothing was deleted, and the packs it wrote are unindexed (a later \
                 prune removes them)",
            )?;
            repack::copy_kept(repo, &writer, &pack, &mut keep, stale.contains(&pack.pack), progress)
        })?;
        let new_packs = writer.finish()?;
        out.packs_written = new_packs.len() as u64;
        // 2. The new index: kept packs, then the new packs; the last segment supersedes the old.
        progress.phase("prune: writing the index", None);
        repo.check_locks()?;
        let mut rewrite = IndexRewrite::new(repo)?;
        for_each_pack(repo, &live, |_, pack| if gone.contains(&pack.pack) { Ok(()) } else { rewrite.add(pack) })?;
        for pack in new_packs {
            rewrite.add(pack)?;
        }
        out.segments_written = rewrite.finish(all_segments.clone())?;
    } else {
        drop(used);
    }

    repo.check_interrupted("prune stopped before deleting anything; the index it wrote is complete")?;
    // 3. The marks, before anything is deleted: a crash from here on keeps every mark's time.
    progress.phase("prune: deleting", None);
    let marks_unchanged = earlier.distrusted.is_none()
        && earlier.objects.len() <= 1
        && earlier.packs == out.sweep.marks
        && (earlier.objects.len() == 1 || out.sweep.marks.is_empty());
    let generation = earlier.generation + 1;
    if !marks_unchanged {
        marks::write(repo, generation, &earlier.objects, &out.sweep.marks)?;
    }
    // 4. Packs, then 5. the old segments and the old marks.
    repo.check_locks()?;
    repo.delete_packs(&out.sweep.delete_now)?;
    if rewrite_index {
        repo.delete_segments(&all_segments)?;
        out.segments_deleted += all_segments.len() as u64;
    }
    if !marks_unchanged {
        marks::delete(repo, &earlier.objects)?;
        marks::remember(repo.cache_dir(), generation);
    } else {
        marks::remember(repo.cache_dir(), earlier.generation);
    }
    // 6. Everything else sealed under the old epoch.
    if let Some(epoch) = opts.reencrypt_epoch {
        out.objects_resealed = repo.reseal_objects(epoch)?;
    }
    // 7. Temporary files left by writers that died.
    out.leftovers_removed = remove_leftovers(repo, LEFTOVER_AGE)?;
    repo.sync_index()?;
    progress.done();
    Ok(out)
}
