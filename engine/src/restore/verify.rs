//! Checks a file on disk against its node: each stored chunk's bytes are read from the file's
//! data extents and their keyed hash compared with the chunk id. Used by `--verify` after a
//! restore and by `--overwrite if-changed` to keep an existing file whose bytes are right.

use std::fs::File;
use std::os::unix::fs::FileExt;

use crate::error::Result;
use crate::format::tree::{Node, NodeKind};
use crate::repo::Repository;

use crate::format::extents::Extents;

/// Whether `file` holds exactly the content of `node` (a file node). `Ok(false)` for a
/// mismatch; errors are I/O or index failures.
pub(super) fn content_matches(repo: &Repository, file: &File, node: &Node) -> Result<bool> {
    let NodeKind::File { chunks, holes } = &node.kind else {
        return Ok(false);
    };
    let Ok(meta) = file.metadata() else { return Ok(false) };
    if meta.len() != node.size {
        return Ok(false);
    }
    let Some(extents) = Extents::new(holes, node.size) else { return Ok(false) };
    let mut data_pos = 0u64;
    let mut buf = Vec::new();
    for id in chunks {
        let len = u64::from(repo.locate(id)?.raw_length);
        buf.clear();
        buf.resize(usize::try_from(len).unwrap_or(0), 0);
        let mut filled = 0usize;
        for (file_off, piece_len) in extents.pieces(data_pos, len) {
            let piece = buf.get_mut(filled..filled + piece_len as usize).unwrap_or_default();
            if file.read_exact_at(piece, file_off).is_err() {
                return Ok(false);
            }
            filled += piece_len as usize;
        }
        if filled as u64 != len || repo.chunk_id(&buf) != *id {
            return Ok(false);
        }
        data_pos += len;
    }
    // Invariant: the data extents are exactly covered by the chunks.
    Ok(data_pos == extents.data_len())
}
