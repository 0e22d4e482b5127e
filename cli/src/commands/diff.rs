//! `cairn diff SNAPSHOT1 SNAPSHOT2`: `+` added, `-` removed, `M` content modified, `U` metadata
//! only, `T` type changed.

use std::io::Write;

use cairn_engine::diff::{Change, DiffEntry, diff};

use crate::args::{DiffArgs, GlobalArgs};
use crate::{exit, output, output_node};

fn symbol(c: Change) -> &'static str {
    match c {
        Change::Added => "+",
        Change::Removed => "-",
        Change::Modified => "M",
        Change::MetadataOnly => "U",
        Change::TypeChanged => "T",
    }
}

pub fn run(g: &GlobalArgs, a: &DiffArgs) -> anyhow::Result<i32> {
    let repo = super::open(g)?;
    let (id1, s1) = super::find_snapshot(&repo, &a.first, &a.filter)?;
    let (id2, s2) = super::find_snapshot(&repo, &a.second, &a.filter)?;
    let mut counts = [0u64; 5];
    let mut docs = Vec::new();
    let mut out = std::io::stdout().lock();
    diff(&repo, s1.tree, s2.tree, &mut |e: DiffEntry| {
        if a.content_only && e.change == Change::MetadataOnly {
            return Ok(());
        }
        counts[e.change as usize] += 1;
        if g.json {
            docs.push(serde_json::json!({
                "path": format!("/{}", String::from_utf8_lossy(&e.path)), "change": format!("{:?}", e.change),
                "old": e.old.as_ref().map(|n| output_node::json(&e.path, n)),
                "new": e.new.as_ref().map(|n| output_node::json(&e.path, n)),
            }));
        } else if !g.quiet {
            let io =
                |r: std::io::Result<()>| r.map_err(|err| cairn_engine::Error::Target { path: "-".into(), source: err });
            io(write!(out, "{}    /", symbol(e.change)))?;
            io(out.write_all(&e.path))?;
            io(out.write_all(b"\n"))?;
        }
        Ok(())
    })?;
    let [added, removed, type_changed, modified, metadata] = counts;
    if g.json {
        output::json(&serde_json::json!({
            "first": id1.to_hex(), "second": id2.to_hex(), "changes": docs,
            "added": added, "removed": removed, "modified": modified, "metadata_only": metadata, "type_changed": type_changed,
        }))?;
    } else if !g.quiet {
        println!(
            "{added} added, {removed} removed, {modified} modified, {metadata} metadata only, {type_changed} type changed"
        );
    }
    Ok(exit::OK)
}
