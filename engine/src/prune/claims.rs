//! Which copy of each used blob prune keeps, against an index that may lie (SPEC §15.4). An
//! identity that may only add objects (an append-only `cairn serve` identity) still holds the
//! key: it can store validly sealed packs whose blobs carry the ids of used blobs but other
//! content, and index segments that list them first, list a real pack short, or supersede the
//! real segments. Prune must then not take the real packs for unused or orphaned. So:
//!
//! - a used blob listed in more than one place keeps one copy only once that copy has been read
//!   and verified (`verify`: its own pack's header lists it there, and it opens, its content
//!   hashing to its id); a copy that fails gives way to the next, and a used blob none of whose
//!   listed copies verifies stops the prune;
//! - a pack listed by two present segments (live, or superseded but not yet deleted) must be
//!   listed the same by both: otherwise one of them lies about what the pack holds;
//! - a pack no live segment lists (an orphan) is read whole and its own header opened before it
//!   is marked or deleted: when it holds a used blob whose kept copy does not verify (or that no
//!   pack in the index holds), prune stops. An orphan whose header cannot be read is a crash
//!   leftover and goes as before.
//!
//! Duplicates are rare (backups that ran at once), so verifying them costs little; the claims
//! live in prune's on-disk table of used blobs, one ranged read per copy verified and one whole
//! read per pack holding such a copy (its header).

use std::collections::{HashMap, HashSet};

use crate::error::{Error, Result};
use crate::format::BlobKind;
use crate::format::index::IndexedPack;
use crate::format::names::Dir;
use crate::format::pack::BlobEntry;
use crate::id::{ChunkId, ObjectId, PackId};
use crate::index::{BlobLocation, IdMap};
use crate::progress::Progress;
use crate::repo::{Repository, pack_name};

use super::PackUsage;
use super::verify::Verifier;

/// Whether a claimed copy was read and verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Checked {
    /// Not read: the only copy seen so far.
    Not,
    /// Listed so by its own pack's header, read, opened, and its content hashes to its id.
    Good,
    /// Read and found wanting (missing, not listed there by its pack's header, does not open,
    /// or another content), as every other copy seen so far.
    Bad,
}

/// The copy of a used blob prune keeps: the value of its id in the table of used blobs (an
/// empty value: no copy seen yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Claim {
    /// Where the copy is.
    pub loc: BlobLocation,
    checked: Checked,
}

/// Bytes of an encoded [`Claim`]: pack, offset, length, raw length, kind, checked.
pub(super) const CLAIM_LEN: usize = 32 + 4 + 4 + 4 + 1 + 1;

impl Claim {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(CLAIM_LEN);
        out.extend_from_slice(self.loc.pack.as_bytes());
        out.extend_from_slice(&self.loc.offset.to_le_bytes());
        out.extend_from_slice(&self.loc.length.to_le_bytes());
        out.extend_from_slice(&self.loc.raw_length.to_le_bytes());
        out.push(self.loc.kind.code());
        out.push(match self.checked {
            Checked::Not => 0,
            Checked::Good => 1,
            Checked::Bad => 2,
        });
        out
    }

    /// The claim a value of the table holds; `None` for an empty value (no copy seen yet).
    pub(super) fn decode(bytes: &[u8]) -> Result<Option<Claim>> {
        if bytes.is_empty() {
            return Ok(None);
        }
        let bad = || Error::Internal("prune's table of used blobs holds a malformed claim".into());
        let (pack, rest) = bytes.split_first_chunk::<32>().ok_or_else(bad)?;
        let (offset, rest) = rest.split_first_chunk::<4>().ok_or_else(bad)?;
        let (length, rest) = rest.split_first_chunk::<4>().ok_or_else(bad)?;
        let (raw_length, rest) = rest.split_first_chunk::<4>().ok_or_else(bad)?;
        let &[kind, checked] = rest else { return Err(bad()) };
        let loc = BlobLocation {
            pack: PackId(*pack),
            kind: BlobKind::from_code(kind).ok_or_else(bad)?,
            offset: u32::from_le_bytes(*offset),
            length: u32::from_le_bytes(*length),
            raw_length: u32::from_le_bytes(*raw_length),
        };
        let checked = match checked {
            0 => Checked::Not,
            1 => Checked::Good,
            2 => Checked::Bad,
            _ => return Err(bad()),
        };
        Ok(Some(Claim { loc, checked }))
    }
}

/// `claim` once its copy has been read (verified now if it was not yet).
fn checked(verifier: &mut Verifier<'_>, id: &ChunkId, mut claim: Claim) -> Result<Claim> {
    if claim.checked == Checked::Not {
        claim.checked = if verifier.verifies(id, &claim.loc)? { Checked::Good } else { Checked::Bad };
    }
    Ok(claim)
}

/// How the live index uses the packs it lists.
#[derive(Debug, Default)]
pub(super) struct Claimed {
    /// Per listed pack, in index order.
    pub usage: Vec<PackUsage>,
    /// The packs some live segment lists.
    pub indexed: HashSet<PackId>,
}

/// One pack's listing, to compare with its other listings.
#[derive(Debug, Clone, Copy)]
struct Listed {
    /// The first segment that lists it.
    segment: ObjectId,
    /// BLAKE3 of the listing (size and blob entries).
    digest: [u8; 32],
    /// Its place in [`Claimed::usage`].
    at: usize,
}

fn digest(pack: &IndexedPack) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(&pack.size.to_le_bytes());
    for b in &pack.blobs {
        h.update(&[b.kind.code()]);
        h.update(b.id.as_bytes());
        h.update(&b.offset.to_le_bytes());
        h.update(&b.length.to_le_bytes());
        h.update(&b.raw_length.to_le_bytes());
    }
    *h.finalize().as_bytes()
}

fn listed_twice(pack: &PackId, first: &ObjectId, second: &ObjectId) -> Error {
    Error::corrupt(
        "index",
        format!(
            "pack {} is listed differently by index segments {} and {} (one of them is damaged, or was planted to \
             make the pack's blobs look unused); prune deletes nothing until `cairn check` and `cairn repair index` \
             have run",
            pack_name(pack),
            Dir::Index.object(first),
            Dir::Index.object(second)
        ),
    )
}

/// Reads the `live` segments: per pack, its usage, each used blob claimed by one copy (`used`
/// maps the ids of used blobs to their [`Claim`]s, empty before the scan). A used blob met again
/// elsewhere has its claimed copy verified before the other copy counts as unused; when the
/// claimed copy fails, the other one is verified and, if good, takes the claim. Then the
/// `superseded` segments still present are compared with the live ones: every pack must be
/// listed the same wherever it is listed.
pub(super) fn claim_copies(
    repo: &Repository,
    verifier: &mut Verifier<'_>,
    live: &[ObjectId],
    superseded: &[ObjectId],
    used: &mut IdMap<CLAIM_LEN>,
) -> Result<Claimed> {
    let mut out = Claimed::default();
    let mut listed: HashMap<PackId, Listed> = HashMap::new();
    let unverified = repo.index().unverified_packs()?;
    for segment in live {
        for pack in repo.load_segment(segment)?.packs {
            let digest = digest(&pack);
            if let Some(first) = listed.get(&pack.pack) {
                if first.digest != digest {
                    return Err(listed_twice(&pack.pack, &first.segment, segment));
                }
                continue;
            }
            let at = out.usage.len();
            listed.insert(pack.pack, Listed { segment: *segment, digest, at });
            out.usage.push(PackUsage {
                pack: pack.pack,
                size: pack.size,
                kind: pack.blobs.first().map_or(BlobKind::Data, |b| b.kind),
                blobs: pack.blobs.len() as u32,
                used_blobs: 0,
                used_bytes: 0,
                unused_bytes: 0,
            });
            for b in &pack.blobs {
                claim_blob(verifier, used, &mut out.usage, &listed, (&pack.pack, &unverified), b)?;
            }
        }
    }
    for segment in superseded {
        for pack in repo.load_segment(segment)?.packs {
            if let Some(first) = listed.get(&pack.pack)
                && first.digest != digest(&pack)
            {
                return Err(listed_twice(&pack.pack, &first.segment, segment));
            }
        }
    }
    out.indexed = listed.into_keys().collect();
    Ok(out)
}

/// What a copy of a blob counts as in its pack's usage.
#[derive(Debug, Clone, Copy)]
enum Tally {
    /// The copy prune keeps.
    Used,
    /// Not a used blob, or a used blob kept elsewhere.
    Unused,
    /// Was the kept copy; the claim moved to another copy.
    Released,
}

fn tally(usage: &mut [PackUsage], listed: &HashMap<PackId, Listed>, pack: &PackId, length: u32, t: Tally) {
    let Some(u) = listed.get(pack).and_then(|l| usage.get_mut(l.at)) else { return };
    let length = u64::from(length);
    match t {
        Tally::Used => {
            u.used_blobs += 1;
            u.used_bytes += length;
        }
        Tally::Unused => u.unused_bytes += length,
        Tally::Released => {
            u.used_blobs = u.used_blobs.saturating_sub(1);
            u.used_bytes = u.used_bytes.saturating_sub(length);
            u.unused_bytes += length;
        }
    }
}

/// Counts the copy `b` of `pack` as used or not, moving a used blob's claim to it when the
/// claimed copy fails and this one verifies, or when the claimed copy is in a pack only a
/// write-only slot wrote (`unverified`, SPEC §11) and this one is not: a verified copy there is
/// sound, but full keys do not deduplicate against it, so the next backups would store it again.
fn claim_blob(
    verifier: &mut Verifier<'_>,
    used: &mut IdMap<CLAIM_LEN>,
    usage: &mut [PackUsage],
    listed: &HashMap<PackId, Listed>,
    (pack, unverified): (&PackId, &HashSet<PackId>),
    b: &BlobEntry,
) -> Result<()> {
    let Some(value) = used.get(b.id.as_bytes())? else {
        tally(usage, listed, pack, b.length, Tally::Unused);
        return Ok(());
    };
    let here = BlobLocation::of(*pack, b);
    let Some(claim) = Claim::decode(&value)? else {
        used.put(b.id.as_bytes(), &Claim { loc: here, checked: Checked::Not }.encode())?;
        tally(usage, listed, pack, b.length, Tally::Used);
        return Ok(());
    };
    // Another copy of a used blob: the claimed one must verify before this one counts as
    // unused (its pack may go); when it does not, this one takes the claim if it verifies.
    let mut claim = checked(verifier, &b.id, claim)?;
    let better_here =
        claim.checked == Checked::Bad || (unverified.contains(&claim.loc.pack) && !unverified.contains(pack));
    if better_here && claim.loc != here && verifier.verifies(&b.id, &here)? {
        tally(usage, listed, &claim.loc.pack, claim.loc.length, Tally::Released);
        claim = Claim { loc: here, checked: Checked::Good };
        tally(usage, listed, pack, b.length, Tally::Used);
    } else {
        tally(usage, listed, pack, b.length, Tally::Unused);
    }
    used.put(b.id.as_bytes(), &claim.encode())
}

/// Before any orphan (a pack in storage no live segment lists) is marked or deleted: reads
/// each whole and opens its own header; when it holds a used blob that no listed copy holds,
/// or whose claimed copy does not verify, the index lies about that blob and prune refuses.
/// An orphan whose header cannot be read (a crash leftover, cut short) holds nothing anyone
/// can read and stays deletable; so does one whose used blobs are kept, verified, elsewhere
/// (a crashed backup whose data a later one stored again, a crashed prune's new packs).
pub(super) fn check_orphans(
    repo: &Repository,
    verifier: &mut Verifier<'_>,
    orphans: &[(PackId, u64)],
    used: &mut IdMap<CLAIM_LEN>,
    progress: &dyn Progress,
) -> Result<()> {
    if orphans.is_empty() {
        return Ok(());
    }
    progress.phase("prune: reading packs no index lists", Some(orphans.len() as u64));
    for (pack, _) in orphans {
        progress.bytes(1);
        let blobs = match repo.read_verified_pack(pack) {
            Ok((_, opened)) => opened.header.blobs,
            Err(Error::Corrupt { .. } | Error::Missing(_) | Error::UnsupportedVersion { .. }) => continue,
            Err(e) => return Err(e),
        };
        let mut unlisted = 0u64;
        for b in &blobs {
            let Some(value) = used.get(b.id.as_bytes())? else { continue };
            let good = match Claim::decode(&value)? {
                None => false,
                Some(claim) => {
                    let claim = checked(verifier, &b.id, claim)?;
                    used.put(b.id.as_bytes(), &claim.encode())?;
                    claim.checked == Checked::Good
                }
            };
            unlisted += u64::from(!good);
        }
        if unlisted > 0 {
            return Err(Error::corrupt(
                "index",
                format!(
                    "pack {} holds {unlisted} blob(s) snapshots use that the index does not list (the index lists no \
                     copy of them, or copies that do not open, do not match their ids or that their packs' headers \
                     do not list: a damaged index, or one planted to make this pack look orphaned); prune deletes \
                     nothing until `cairn check` and `cairn repair index` have run",
                    pack_name(pack)
                ),
            ));
        }
    }
    Ok(())
}

/// Counts the used blobs; refuses when one has no copy in the index, or none that verifies.
pub(super) fn check_claims(used: &mut IdMap<CLAIM_LEN>) -> Result<u64> {
    let mut count = 0u64;
    used.for_each(|id, value| {
        count += 1;
        match Claim::decode(value)? {
            None => Err(Error::Missing(format!(
                "blob {} (a snapshot uses it, no pack holds it; prune deletes nothing until `cairn check` and `cairn \
                 repair` have run)",
                hex::encode(id)
            ))),
            Some(claim) if claim.checked == Checked::Bad => Err(Error::corrupt(
                format!("blob {}", hex::encode(id)),
                "a snapshot uses it, and no copy of it the index lists opens, matches its id and is listed there by \
                 its own pack's header (a damaged pack, or one planted under its id); prune deletes nothing until \
                 `cairn check --read-data` and `cairn repair` have run",
            )),
            Some(_) => Ok(()),
        }
    })?;
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_round_trip_and_empty_is_unclaimed() {
        let loc = BlobLocation { pack: PackId([7; 32]), kind: BlobKind::Tree, offset: 9, length: 1000, raw_length: 77 };
        for checked in [Checked::Not, Checked::Good, Checked::Bad] {
            let c = Claim { loc, checked };
            assert_eq!(c.encode().len(), CLAIM_LEN);
            assert_eq!(Claim::decode(&c.encode()).unwrap(), Some(c));
        }
        assert_eq!(Claim::decode(b"").unwrap(), None);
        assert!(Claim::decode(&[1; 31]).is_err());
        let mut bad = Claim { loc, checked: Checked::Good }.encode();
        bad[CLAIM_LEN - 1] = 9;
        assert!(Claim::decode(&bad).is_err());
    }
}
