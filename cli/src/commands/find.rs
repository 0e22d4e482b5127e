//! `cairn find PATTERN... [--snapshot ID]... [--host H] [--tag T] [--path P]`: matching paths in each snapshot.

use cairn_engine::format::tree::Node;
use cairn_engine::pattern::PathPatterns;
use cairn_engine::trees::walk;

use crate::args::{FindArgs, GlobalArgs};
use crate::{exit, output, output_node};

pub fn run(g: &GlobalArgs, a: &FindArgs) -> anyhow::Result<i32> {
    let Some(patterns) = PathPatterns::new(&a.patterns)? else {
        bail_usage!("no pattern given");
    };
    let repo = super::open(g)?;
    let snapshots = super::chosen_snapshots(&repo, &a.snapshots, &a.filter)?;
    let mut docs = Vec::new();
    let mut found = 0u64;
    for (id, snap) in &snapshots {
        let mut hits: Vec<(Vec<u8>, Node)> = Vec::new();
        walk(&repo, snap.tree, b"", &mut |p, n| {
            if patterns.matches_snapshot_path(p, n.is_dir()) {
                hits.push((p.to_vec(), n.clone()));
            }
            Ok(())
        })?;
        found += hits.len() as u64;
        if g.json {
            docs.push(serde_json::json!({
                "snapshot": id.to_hex(), "time": output::time(snap.time_ns), "hostname": snap.hostname,
                "matches": hits.iter().map(|(p, n)| output_node::json(p, n)).collect::<Vec<_>>(),
            }));
        } else if !g.quiet && !hits.is_empty() {
            println!("snapshot {} of {} at {}:", &id.to_hex()[..12], snap.hostname, output::time(snap.time_ns));
            let mut out = std::io::stdout().lock();
            for (p, n) in &hits {
                output_node::write_line(&mut out, p, n, true)?;
            }
            println!();
        }
    }
    if g.json {
        output::json(&docs)?;
    } else if !g.quiet {
        println!("{found} match(es) in {} snapshot(s)", snapshots.len());
    }
    Ok(exit::OK)
}
