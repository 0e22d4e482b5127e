//! `cairn list packs|index|snapshots|keys|locks`: the ids of the repository's objects of one
//! kind, one per line (or a JSON array), as the storage lists them: for scripts and debugging.
//! Opening the repository first makes sure the listing is of a repository this key opens.

use cairn_engine::format::names::Dir;

use crate::args::{GlobalArgs, ListArgs, ListKind};
use crate::{exit, output};

pub fn run(g: &GlobalArgs, a: &ListArgs) -> anyhow::Result<i32> {
    let repo = super::open(g)?;
    let dir = match a.kind {
        ListKind::Packs => Dir::Data,
        ListKind::Index => Dir::Index,
        ListKind::Snapshots => Dir::Snapshots,
        ListKind::Keys => Dir::Keys,
        ListKind::Locks => Dir::Locks,
    };
    // Object names end in their id (packs sit one directory deeper, under their first byte).
    let mut ids: Vec<String> = repo
        .list_names(dir)?
        .iter()
        .filter_map(|name| name.rsplit('/').next())
        .filter(|id| id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(String::from)
        .collect();
    ids.sort();
    if g.json {
        output::json(&ids)?;
    } else {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        for id in &ids {
            writeln!(out, "{id}")?;
        }
    }
    Ok(exit::OK)
}
