//! `prune`: reclaim the space of data no snapshot uses. Mark (every blob reachable from every
//! snapshot's trees), plan (`plan`, pure), then sweep in an order a crash cannot break:
//!
//! 1. copy the used blobs of packs being repacked into new packs (verified first);
//! 2. write the new index: segments listing every kept pack, the last one also naming every old
//!    segment as superseded, so readers switch to the new index only once it is complete;
//! 3. delete unused, repacked and orphan packs;
//! 4. delete the old segments.
//!
//! A crash before 2 leaves unindexed packs (the next prune deletes them); after 2, readers
//! ignore the old segments, so no index entry ever points at a deleted pack. Prune refuses to
//! run when any snapshot, tree or index segment cannot be read, or when a used blob is in no
//! pack: it must see every reference before it deletes anything. Only trees, index segments
//! and the packs being repacked are read; data blobs of kept packs never are. The set of used
//! blobs lives in an on-disk scratch table, so memory does not grow with the repository.

pub mod plan;

pub use plan::{PackUsage, PruneOptions, PrunePlan, plan};

use std::collections::HashSet;

use crate::error::{Error, Result};
use crate::format::envelope::ObjectKind;
use crate::format::index::{IndexSegment, IndexedPack};
use crate::format::tree::NodeKind;
use crate::id::{ChunkId, ObjectId, PackId};
use crate::index::{BlobLocation, ScratchTable};
use crate::progress::Progress;
use crate::repo::{IndexRewrite, Repository, pack_name};

/// What a prune did (or, with `dry_run`, would do).
#[derive(Debug, Clone, Default)]
pub struct PruneOutcome {
    /// The plan.
    pub plan: PrunePlan,
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
}

/// Blobs reachable from every snapshot, on disk: id -> the pack whose copy is kept (empty until
/// the index scan claims one).
fn used_blobs(repo: &Repository, progress: &dyn Progress) -> Result<ScratchTable> {
    let mut used = repo.scratch_table("prune-used")?;
    // Trees are about one blob in a hundred: their visited set stays in memory.
    let mut seen_trees: HashSet<ChunkId> = HashSet::new();
    let mut trees: Vec<ChunkId> = repo.snapshots()?.into_iter().map(|(_, s)| s.tree).collect();
    while let Some(id) = trees.pop() {
        if !seen_trees.insert(id) {
            continue;
        }
        used.put(id.as_bytes(), b"")?;
        progress.bytes(1);
        for node in repo.load_tree(&id)?.nodes {
            match node.kind {
                NodeKind::Dir { subtree } => trees.push(subtree),
                NodeKind::File { chunks, .. } => {
                    for c in chunks {
                        used.put(c.as_bytes(), b"")?;
                    }
                }
                _ => {}
            }
        }
    }
    used.flush()?;
    Ok(used)
}

/// The present index segments and which of them are superseded.
fn segments(repo: &Repository) -> Result<(Vec<ObjectId>, HashSet<ObjectId>)> {
    let ids = repo.segment_ids()?;
    let mut superseded = HashSet::new();
    for id in &ids {
        superseded.extend(load_segment(repo, id)?.supersedes);
    }
    Ok((ids, superseded))
}

fn load_segment(repo: &Repository, id: &ObjectId) -> Result<IndexSegment> {
    let name = format!("index/{id}");
    IndexSegment::decode(&repo.load_object(ObjectKind::IndexSegment, &name)?, &name)
}

/// Calls `f` with every pack of the live (not superseded) segments, each pack once.
fn for_each_pack(
    repo: &Repository,
    live: &[ObjectId],
    mut f: impl FnMut(Option<ObjectId>, IndexedPack) -> Result<()>,
) -> Result<()> {
    let mut seen = HashSet::new();
    for id in live {
        for pack in load_segment(repo, id)?.packs {
            if seen.insert(pack.pack) {
                f(Some(*id), pack)?;
            }
        }
    }
    Ok(())
}

/// Runs a prune (the caller holds the exclusive lock).
pub fn prune(repo: &Repository, opts: PruneOptions, dry_run: bool, progress: &dyn Progress) -> Result<PruneOutcome> {
    repo.sync_index()?;
    if let Some(problem) = repo.index_problems().first() {
        return Err(Error::InvalidInput(format!(
            "prune needs the whole index, and {problem}; run `cairn check`, then `cairn repair index`"
        )));
    }
    progress.phase("prune: finding used blobs", None);
    let mut used = used_blobs(repo, progress)?;
    let (all_segments, superseded) = segments(repo)?;
    let live: Vec<ObjectId> = all_segments.iter().filter(|id| !superseded.contains(id)).copied().collect();
    // Per-pack usage; each used blob is claimed by the first pack that holds it.
    let mut usage = Vec::new();
    let mut indexed: HashSet<PackId> = HashSet::new();
    for_each_pack(repo, &live, |_, pack| {
        indexed.insert(pack.pack);
        let mut u = PackUsage {
            pack: pack.pack,
            size: pack.size,
            kind: pack.blobs.first().map_or(crate::format::BlobKind::Data, |b| b.kind),
            blobs: pack.blobs.len() as u32,
            used_blobs: 0,
            used_bytes: 0,
            unused_bytes: 0,
        };
        for b in &pack.blobs {
            if used.get(b.id.as_bytes())?.is_some_and(|claim| claim.is_empty()) {
                used.put(b.id.as_bytes(), pack.pack.as_bytes())?;
                u.used_blobs += 1;
                u.used_bytes += u64::from(b.length);
            } else {
                u.unused_bytes += u64::from(b.length);
            }
        }
        usage.push(u);
        Ok(())
    })?;
    let mut used_count = 0u64;
    used.for_each(|id, claim| {
        used_count += 1;
        if claim.is_empty() {
            return Err(Error::Missing(format!(
                "blob {} (a snapshot uses it, no pack holds it; prune deletes nothing until `cairn check` and `cairn repair` have run)",
                hex::encode(id)
            )));
        }
        Ok(())
    })?;
    let mut orphans = Vec::new();
    for name in repo.storage().list("data/")? {
        let Some(id) = name.rsplit('/').next().and_then(|h| PackId::from_hex(h).ok()) else { continue };
        if !indexed.contains(&id) {
            orphans.push((id, repo.storage().stat(&name)?.unwrap_or(0)));
        }
    }
    orphans.sort();
    let mut the_plan = plan::plan(&usage, &orphans, opts);
    let mut stale: HashSet<PackId> = HashSet::new();
    if let Some(epoch) = opts.reencrypt_epoch {
        if epoch == repo.key_epochs().last().map_or(0, |e| e.0) {
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
    let mut out = PruneOutcome {
        plan: the_plan,
        used_blobs: used_count,
        dry_run,
        packs_reencrypted: stale.len() as u64,
        ..PruneOutcome::default()
    };
    if dry_run {
        return Ok(out);
    }
    if out.plan.is_empty() && superseded.is_empty() {
        if let Some(epoch) = opts.reencrypt_epoch {
            out.objects_resealed = repo.reseal_objects(epoch)?;
        }
        return Ok(out);
    }
    let repack: HashSet<PackId> = out.plan.repack.iter().copied().collect();
    let gone: HashSet<PackId> = out.plan.delete.iter().chain(&out.plan.repack).copied().collect();

    // 1. Repack: the used blobs whose kept copy is in a repacked pack, verified, into new packs.
    progress.phase("prune: repacking", Some(out.plan.repack_used_bytes));
    let writer = repo.repack_writer()?;
    for_each_pack(repo, &live, |_, pack| {
        if !repack.contains(&pack.pack) {
            return Ok(());
        }
        let name = pack_name(&pack.pack);
        let bytes = repo.storage().get_bounded(&name, repo.config().max_pack_size())?;
        for b in &pack.blobs {
            if used.get(b.id.as_bytes())?.as_deref() != Some(pack.pack.as_bytes().as_slice()) {
                continue;
            }
            let start = b.offset as usize;
            let sealed = bytes
                .get(start..start + b.length as usize)
                .ok_or_else(|| Error::corrupt(&name, format!("blob {} lies beyond the pack's end", b.id)))?;
            let loc = BlobLocation::of(pack.pack, b);
            let bytes = if stale.contains(&pack.pack) {
                repo.reseal_blob(&b.id, &loc, &name, sealed)?
            } else {
                repo.open_blob(&b.id, &loc, &name, sealed)?;
                sealed.to_vec()
            };
            progress.bytes(u64::from(b.length));
            writer.add(b.kind, b.id, b.raw_length, bytes)?;
        }
        Ok(())
    })?;
    let new_packs = writer.finish()?;
    out.packs_written = new_packs.len() as u64;
    // Claims moved to the new packs; nothing else needs `used` from here on.
    drop(used);

    // 2. The new index: kept packs, then the new packs; the last segment supersedes the old.
    progress.phase("prune: writing the index", None);
    let mut rewrite = IndexRewrite::new(repo);
    for_each_pack(repo, &live, |_, pack| if gone.contains(&pack.pack) { Ok(()) } else { rewrite.add(pack) })?;
    for pack in new_packs {
        rewrite.add(pack)?;
    }
    out.segments_written = rewrite.finish(all_segments.clone())?;

    // 3. Packs, then 4. the old segments.
    progress.phase("prune: deleting", None);
    let packs: Vec<String> =
        out.plan.delete.iter().chain(&out.plan.repack).chain(&out.plan.orphans).map(pack_name).collect();
    repo.storage().delete_many(&packs)?;
    let segments: Vec<String> = all_segments.iter().map(|id| format!("index/{id}")).collect();
    repo.storage().delete_many(&segments)?;
    out.segments_deleted += segments.len() as u64;
    // 5. Everything else sealed under the old epoch.
    if let Some(epoch) = opts.reencrypt_epoch {
        out.objects_resealed = repo.reseal_objects(epoch)?;
    }
    repo.sync_index()?;
    progress.done();
    Ok(out)
}
