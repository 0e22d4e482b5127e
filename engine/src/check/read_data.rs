//! One pass over the index's entries, pack by pack, read back from disk in pack order: the
//! blobs of packs found missing or of the wrong size are marked bad, and with `--read-data`
//! every selected pack is downloaded and verified, each once, on the I/O pool while the
//! entries of the next packs are read. A few packs' entries are in memory at a time.

use std::collections::HashSet;
use std::sync::mpsc::sync_channel;

use rayon::prelude::*;

use super::index_view::IndexView;
use super::{Checker, Severity, Subset, finding};
use crate::error::{Error, Result};
use crate::format::pack::BlobEntry;
use crate::id::{ChunkId, PackId};
use crate::index::BlobLocation;
use crate::progress::Progress;
use crate::repo::{Repository, pack_name};

/// What reading one pack found.
struct PackResult {
    pack: PackId,
    name: String,
    bytes: u64,
    blobs: u64,
    /// Why the pack could not be read at all, and the blobs the index places in it.
    unreadable: Option<(String, Vec<ChunkId>)>,
    /// Problems of the pack as a whole.
    errors: Vec<String>,
    /// Blobs that fail to open or to match their id, and why.
    bad: Vec<(ChunkId, String)>,
}

/// A pack's entries handed to the verifiers.
type Work = (PackId, Vec<(ChunkId, BlobEntry)>);

impl Checker<'_> {
    /// Walks the entries of `view`: marks the blobs of the packs in `bad_packs` bad, and reads
    /// the packs `subset` selects (those and the orphans; not the packs already bad).
    pub(super) fn read_entries(
        &mut self,
        view: IndexView,
        subset: Option<Subset>,
        progress: &dyn Progress,
    ) -> Result<()> {
        let mut selected: HashSet<PackId> = HashSet::new();
        if let Some(subset) = subset {
            let mut candidates: Vec<&PackId> = self.packs.keys().chain(&self.orphans).collect();
            candidates.sort();
            for pack in candidates {
                if !self.bad_packs.contains_key(pack) && subset.selects(pack)? {
                    selected.insert(*pack);
                }
            }
            let total: u64 = selected.iter().filter_map(|p| self.packs.get(p)).sum();
            progress.phase("check: reading packs", Some(total));
        }
        if selected.is_empty() && self.bad_packs.is_empty() {
            return Ok(());
        }
        let (repo, bad_packs) = (self.repo, &self.bad_packs);
        let mut marked: Vec<(ChunkId, PackId, &'static str)> = Vec::new();
        let mut sent: HashSet<PackId> = HashSet::new();
        // Enough packs queued to keep every connection busy while the next are read from disk.
        let (tx, rx) = sync_channel::<Work>(2 * repo.storage_connections().max(1));
        let (walked, verified) = std::thread::scope(|s| {
            let verifier = s.spawn(move || {
                repo.with_io_pool(|| {
                    rx.into_iter()
                        .par_bridge()
                        .map(|(pack, entries)| {
                            let r = verify_pack(repo, pack, &entries);
                            progress.bytes(r.bytes);
                            r
                        })
                        .collect::<Vec<_>>()
                })
            });
            let send = |work: Work| tx.send(work).map_err(|_| Error::Internal("the pack verifiers stopped".into()));
            let walked = view
                .for_each_pack(|pack, entries| {
                    if let Some(why) = bad_packs.get(&pack) {
                        marked.extend(entries.iter().map(|(id, _)| (*id, pack, *why)));
                    } else if selected.contains(&pack) {
                        sent.insert(pack);
                        send((pack, entries))?;
                    }
                    Ok(())
                })
                .and_then(|()| {
                    // Orphans, and indexed packs with no entry: verified by their headers.
                    let mut rest: Vec<&PackId> = selected.iter().filter(|p| !sent.contains(*p)).collect();
                    rest.sort();
                    rest.into_iter().try_for_each(|p| send((*p, Vec::new())))
                });
            drop(tx);
            (walked, verifier.join())
        });
        walked?;
        let mut results = verified.map_err(|_| Error::Internal("a pack verifier panicked".into()))?;
        for (id, pack, why) in marked {
            self.bad_copies.insert((id, pack), (pack_name(&pack), why.to_string()));
        }
        results.sort_by_key(|r| r.pack);
        for r in results {
            self.take(r);
        }
        Ok(())
    }

    /// Records what reading one pack found.
    fn take(&mut self, r: PackResult) {
        if !self.packs.contains_key(&r.pack) {
            // A pack in no index: nothing uses it, so its damage loses nothing.
            if let Some(why) = r
                .unreadable
                .map(|(why, _)| why)
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
            return;
        }
        if let Some((why, ids)) = r.unreadable {
            self.error(&r.name, why);
            for id in ids {
                self.bad_copies.insert((id, r.pack), (r.name.clone(), "its pack cannot be read".into()));
            }
            return;
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
            if self.copies.contains_key(&id) {
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
}

/// Reads one pack: its id must hash its bytes, its header must hold the index's entries, and
/// every indexed blob must open and match its id.
fn verify_pack(repo: &Repository, pack: PackId, entries: &[(ChunkId, BlobEntry)]) -> PackResult {
    let name = pack_name(&pack);
    let mut r = PackResult { pack, name, bytes: 0, blobs: 0, unreadable: None, errors: Vec::new(), bad: Vec::new() };
    let bytes = match repo.read_pack(&pack) {
        Ok(b) => b,
        Err(e) => {
            r.unreadable = Some((e.to_string(), entries.iter().map(|(id, _)| *id).collect()));
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
