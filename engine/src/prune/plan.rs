//! The prune plan: a pure function from how each pack is used to what to delete and what to
//! repack, computed before anything changes (`--dry-run` prints it).

use crate::format::BlobKind;
use crate::id::PackId;

/// How one indexed pack is used by the snapshots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackUsage {
    /// The pack.
    pub pack: PackId,
    /// Its size in bytes.
    pub size: u64,
    /// Data or tree pack.
    pub kind: BlobKind,
    /// Blobs it holds.
    pub blobs: u32,
    /// Blobs a snapshot needs from this pack (a blob stored twice counts in one pack only).
    pub used_blobs: u32,
    /// Sealed bytes of the used blobs.
    pub used_bytes: u64,
    /// Sealed bytes of the blobs no snapshot needs (extra copies included). The pack header is
    /// neither: it shrinks with the pack.
    pub unused_bytes: u64,
}

/// Limits of a prune.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PruneOptions {
    /// Repack a pack whose unused blobs exceed this share of it (0.05 = 5 %).
    pub max_unused: f64,
    /// Repack at most this many bytes of packs (`None`: no limit).
    pub max_repack_size: Option<u64>,
    /// Re-encrypt everything sealed under this data-key epoch: its packs are repacked whatever
    /// their use (and regardless of `max_repack_size`), other objects re-sealed.
    pub reencrypt_epoch: Option<u32>,
}

impl Default for PruneOptions {
    fn default() -> Self {
        PruneOptions { max_unused: 0.05, max_repack_size: None, reencrypt_epoch: None }
    }
}

/// What a prune will do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PrunePlan {
    /// Indexed packs with no used blob: deleted.
    pub delete: Vec<PackId>,
    /// Packs in storage that no index names (left by interrupted backups): deleted.
    pub orphans: Vec<PackId>,
    /// Packs whose used blobs are copied into new packs before they are deleted.
    pub repack: Vec<PackId>,
    /// Packs kept as they are.
    pub keep: u64,
    /// Bytes of the deleted packs (orphans included).
    pub delete_bytes: u64,
    /// Bytes of the packs to repack.
    pub repack_bytes: u64,
    /// Of those, bytes still needed (what the new packs will hold).
    pub repack_used_bytes: u64,
    /// Unused bytes left in kept packs.
    pub unused_bytes_kept: u64,
}

impl PrunePlan {
    /// Bytes the repository shrinks by.
    pub fn bytes_freed(&self) -> u64 {
        self.delete_bytes + self.repack_bytes.saturating_sub(self.repack_used_bytes)
    }

    /// Whether the plan changes nothing.
    pub fn is_empty(&self) -> bool {
        self.delete.is_empty() && self.orphans.is_empty() && self.repack.is_empty()
    }
}

impl PrunePlan {
    /// Moves `u` (a pack that must be rewritten, e.g. sealed under an epoch being retired) from
    /// keep to repack; packs already deleted or repacked stay as they are.
    pub fn force_repack(&mut self, u: &PackUsage) {
        if u.used_blobs == 0 || self.repack.contains(&u.pack) || self.delete.contains(&u.pack) {
            return;
        }
        self.keep = self.keep.saturating_sub(1);
        self.unused_bytes_kept = self.unused_bytes_kept.saturating_sub(u.unused_bytes);
        self.repack.push(u.pack);
        self.repack_bytes += u.size;
        self.repack_used_bytes += u.used_bytes;
    }
}

/// Decides, for every pack, delete, repack or keep. Repack candidates go most-wasteful first
/// until `max_repack_size` is reached.
pub fn plan(usage: &[PackUsage], orphans: &[(PackId, u64)], opts: PruneOptions) -> PrunePlan {
    let mut p = PrunePlan::default();
    let mut candidates: Vec<&PackUsage> = Vec::new();
    for u in usage {
        if u.used_blobs == 0 {
            p.delete.push(u.pack);
            p.delete_bytes += u.size;
        } else if u.used_blobs < u.blobs && (u.unused_bytes as f64) > opts.max_unused * u.size as f64 {
            candidates.push(u);
        } else {
            p.keep += 1;
            p.unused_bytes_kept += u.unused_bytes;
        }
    }
    candidates.sort_by(|a, b| {
        let share = |u: &PackUsage| u.unused_bytes as f64 / u.size.max(1) as f64;
        share(b).total_cmp(&share(a)).then(a.pack.cmp(&b.pack))
    });
    for u in candidates {
        if opts.max_repack_size.is_some_and(|max| p.repack_bytes + u.size > max) {
            p.keep += 1;
            p.unused_bytes_kept += u.unused_bytes;
            continue;
        }
        p.repack.push(u.pack);
        p.repack_bytes += u.size;
        p.repack_used_bytes += u.used_bytes;
    }
    for (pack, size) in orphans {
        p.orphans.push(*pack);
        p.delete_bytes += size;
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A pack of `size` bytes whose blobs take all but 2 bytes (the header).
    fn u(n: u8, size: u64, blobs: u32, used_blobs: u32, used_bytes: u64) -> PackUsage {
        let unused_bytes = (size - 2).saturating_sub(used_bytes);
        PackUsage { pack: PackId([n; 32]), size, kind: BlobKind::Data, blobs, used_blobs, used_bytes, unused_bytes }
    }

    #[test]
    fn unused_packs_go_wasteful_ones_are_repacked_within_the_limit() {
        let usage =
            [u(1, 100, 4, 0, 0), u(2, 100, 4, 4, 98), u(3, 100, 4, 2, 50), u(4, 100, 4, 3, 80), u(5, 100, 4, 3, 95)];
        let p = plan(&usage, &[(PackId([9; 32]), 7)], PruneOptions::default());
        assert_eq!(p.delete, vec![PackId([1; 32])]);
        assert_eq!(p.repack, vec![PackId([3; 32]), PackId([4; 32])], "most wasteful first; pack 5 is within 5 %");
        assert_eq!(p.keep, 2);
        assert_eq!(p.orphans, vec![PackId([9; 32])]);
        assert_eq!(p.bytes_freed(), 107 + 200 - 130);
        assert_eq!(p.unused_bytes_kept, 3, "pack 5's unused blob; pack 2 has none (its header does not count)");
        let limited =
            plan(&usage, &[], PruneOptions { max_unused: 0.05, max_repack_size: Some(150), reencrypt_epoch: None });
        assert_eq!(limited.repack, vec![PackId([3; 32])]);
        assert_eq!(limited.keep, 3);
    }

    proptest! {
        #[test]
        fn every_pack_gets_one_verdict_and_used_packs_are_never_just_deleted(
            v in proptest::collection::vec((3u64..1000, 1u32..10, 0u32..10, 0u64..1000), 0..40),
            max_unused in 0.0f64..1.0,
            limit in proptest::option::of(0u64..5000),
        ) {
            let usage: Vec<PackUsage> = v.iter().enumerate().map(|(i, &(size, blobs, used, bytes))| {
                let used = used.min(blobs);
                u(i as u8, size, blobs, used, if used == 0 { 0 } else { bytes.min(size) })
            }).collect();
            let p = plan(&usage, &[], PruneOptions { max_unused, max_repack_size: limit, reencrypt_epoch: None });
            prop_assert_eq!(p.delete.len() + p.repack.len() + p.keep as usize, usage.len());
            for d in &p.delete {
                let pack = usage.iter().find(|x| x.pack == *d).unwrap();
                prop_assert_eq!(pack.used_blobs, 0, "a pack with used blobs is deleted only after repacking");
            }
            if let Some(max) = limit {
                prop_assert!(p.repack_bytes <= max);
            }
        }
    }
}
