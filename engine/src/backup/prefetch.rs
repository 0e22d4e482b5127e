//! Parent trees fetched ahead of the walk. An unchanged snapshot reads one parent tree per
//! directory, one after the other; on a remote store each read is a round trip, so a tree of
//! ten thousand directories would wait ten thousand round trips. When the walker enters a
//! directory, the parent subtrees of its subdirectories are requested in the background
//! (storage reads only: they are opened and verified on the walker's thread when used).
//!
//! Only with a remote store's I/O pool (more storage connections than cores); at most
//! [`MAX_AHEAD`] reads are outstanding or waiting, so memory stays bounded.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use crate::error::Result;
use crate::format::tree::{Node, NodeKind, Tree};
use crate::id::ChunkId;
use crate::index::BlobLocation;
use crate::repo::{Repository, pack_name};

/// Reads started but not yet taken, at most.
const MAX_AHEAD: usize = 512;

#[derive(Debug, Default)]
struct Slot {
    sealed: Mutex<Option<Result<Vec<u8>>>>,
    ready: Condvar,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[derive(Debug)]
pub(super) struct TreePrefetch<'r> {
    repo: &'r Repository,
    slots: Mutex<HashMap<ChunkId, (BlobLocation, Arc<Slot>)>>,
}

impl<'r> TreePrefetch<'r> {
    pub(super) fn new(repo: &'r Repository) -> Self {
        TreePrefetch { repo, slots: Mutex::default() }
    }

    /// Starts reading the subtrees of `tree`'s directories, if the store is remote.
    pub(super) fn ahead(&self, tree: &Tree) {
        if !self.repo.has_io_pool() {
            return;
        }
        let mut slots = lock(&self.slots);
        for node in &tree.nodes {
            let NodeKind::Dir { subtree } = &node.kind else { continue };
            if slots.len() >= MAX_AHEAD {
                break;
            }
            if slots.contains_key(subtree) {
                continue;
            }
            let Ok(loc) = self.repo.locate(subtree) else { continue };
            let slot = Arc::new(Slot::default());
            let (reader, task_slot) = (self.repo.sealed_blob_reader(), Arc::clone(&slot));
            let spawned = self.repo.spawn_io(move || {
                let sealed = reader.read(&loc);
                *lock(&task_slot.sealed) = Some(sealed);
                task_slot.ready.notify_all();
            });
            if !spawned {
                return;
            }
            slots.insert(*subtree, (loc, slot));
        }
    }

    /// Drops what was read ahead for `tree`'s subdirectories and never taken (directories
    /// gone from the source, or excluded since), once the walk of `tree`'s directory is done:
    /// otherwise they would fill the [`MAX_AHEAD`] budget and stop all reading ahead.
    pub(super) fn done(&self, tree: Option<Tree>) {
        let Some(tree) = tree else { return };
        let mut slots = lock(&self.slots);
        if slots.is_empty() {
            return;
        }
        for node in &tree.nodes {
            if let NodeKind::Dir { subtree } = &node.kind {
                slots.remove(subtree);
            }
        }
    }

    /// The parent subtree below `node` when it is a directory: prefetched if it was, read now
    /// otherwise. A tree that cannot be read is `None` (the backup re-reads the files instead).
    pub(super) fn subtree(&self, node: Option<&Node>) -> Option<Tree> {
        let Some(NodeKind::Dir { subtree }) = node.map(|n| &n.kind) else { return None };
        let Some((loc, slot)) = lock(&self.slots).remove(subtree) else {
            return self.repo.load_tree(subtree).ok();
        };
        let mut sealed = lock(&slot.sealed);
        while sealed.is_none() {
            sealed = slot.ready.wait(sealed).unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        let sealed = sealed.take()?.ok()?;
        let pack = pack_name(&loc.pack);
        let bytes = self.repo.open_blob(subtree, &loc, &pack, &sealed).ok()?;
        Tree::decode(&bytes, &format!("tree {subtree}")).ok()
    }
}
