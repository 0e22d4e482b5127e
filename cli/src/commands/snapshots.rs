//! `cairn snapshots`

use crate::args::{GlobalArgs, SnapshotsArgs};
use crate::{exit, output, table};

pub fn run(g: &GlobalArgs, a: &SnapshotsArgs) -> anyhow::Result<i32> {
    let repo = super::open(g)?;
    // One snapshot that cannot be read (damaged, or sealed under the newer keys of a rotation
    // this slot was not moved by yet) does not hide the others: they are listed, and a warning
    // names the rest.
    let all = super::filtered_snapshots(&repo, &a.filter)?;
    if g.json {
        let docs: Vec<_> = all
            .iter()
            .map(|(id, s)| {
                serde_json::json!({
                    "id": id.to_hex(), "time_ns": s.time_ns, "time": output::time(s.time_ns),
                    "hostname": s.hostname, "username": s.username,
                    "paths": s.paths.iter().map(|p| String::from_utf8_lossy(p).into_owned()).collect::<Vec<_>>(),
                    "tags": s.tags, "tree": s.tree.to_hex(), "program": s.program,
                    "writer": output::writer_json(s.writer),
                    "summary": { "bytes_total": s.summary.bytes_total, "bytes_added_stored": s.summary.bytes_added_stored,
                                 "files_new": s.summary.files_new, "errors": s.summary.errors },
                })
            })
            .collect();
        output::json(&docs)?;
    } else if !g.quiet {
        // Who wrote each snapshot matters once write-only slots write some: a stolen
        // write-only key can name any host (SPEC §15.5).
        let writers = all.iter().any(|(_, s)| s.writer != cairn_engine::format::snapshot::Writer::Full);
        let mut header = vec!["ID", "TIME (UTC)", "HOST", "TAGS", "PATHS"];
        if writers {
            header.push("WRITER");
        }
        let mut t = table::new(&header, &[]);
        for (id, s) in &all {
            let paths: Vec<String> = s.paths.iter().map(|p| String::from_utf8_lossy(p).into_owned()).collect();
            let mut row =
                vec![id.short(), output::time(s.time_ns), s.hostname.clone(), s.tags.join(","), paths.join("\n")];
            if writers {
                row.push(output::writer(s.writer));
            }
            t.add_row(row);
        }
        table::print(&t);
        println!("{} snapshot(s)", all.len());
    }
    Ok(exit::OK)
}
