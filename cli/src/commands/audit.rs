//! `cairn audit log|verify`

use cairn_engine::ObjectId;
use cairn_engine::audit::LoadedEntry;

use crate::args::{AuditArgs, AuditCommand, GlobalArgs};
use crate::{exit, output};

fn ids(v: &[[u8; 32]]) -> Vec<String> {
    v.iter().map(|b| ObjectId(*b).to_hex()).collect()
}

fn entry_json(e: &LoadedEntry) -> serde_json::Value {
    let x = &e.entry;
    serde_json::json!({
        "seq": x.seq, "name": e.name, "mac": hex::encode(e.mac),
        "prev": x.prev.iter().map(hex::encode).collect::<Vec<_>>(),
        "time": output::time(x.time_ns), "host": x.host, "user": x.user, "slot": ObjectId(x.slot).to_hex(),
        "operation": x.operation, "outcome": x.outcome,
        "snapshots_created": ids(&x.snapshots_created), "snapshots_deleted": ids(&x.snapshots_deleted),
        "packs_created": x.packs_created, "packs_deleted": x.packs_deleted,
        "slots_created": ids(&x.slots_created), "slots_removed": ids(&x.slots_removed),
        "detail": x.detail,
    })
}

fn short_list(v: &[[u8; 32]]) -> String {
    v.iter().map(|b| ObjectId(*b).short()).collect::<Vec<_>>().join(",")
}

pub fn run(g: &GlobalArgs, a: &AuditArgs) -> anyhow::Result<i32> {
    let repo = super::open(g)?;
    match a.command {
        AuditCommand::Log => {
            let log = repo.audit_log()?;
            if g.json {
                output::json(&serde_json::json!({
                    "entries": log.entries.iter().map(entry_json).collect::<Vec<_>>(),
                    "problems": log.problems,
                }))?;
            } else {
                for e in &log.entries {
                    let x = &e.entry;
                    let mut what = Vec::new();
                    if !x.snapshots_created.is_empty() {
                        what.push(format!("+snapshots {}", short_list(&x.snapshots_created)));
                    }
                    if !x.snapshots_deleted.is_empty() {
                        what.push(format!("-snapshots {}", short_list(&x.snapshots_deleted)));
                    }
                    if x.packs_created + x.packs_deleted > 0 {
                        what.push(format!("packs +{} -{}", x.packs_created, x.packs_deleted));
                    }
                    if !x.slots_created.is_empty() {
                        what.push(format!("+slots {}", short_list(&x.slots_created)));
                    }
                    if !x.slots_removed.is_empty() {
                        what.push(format!("-slots {}", short_list(&x.slots_removed)));
                    }
                    if !x.detail.is_empty() {
                        what.push(x.detail.clone());
                    }
                    println!(
                        "{:>5}  {}  {}@{}  slot {}  {}: {}  {}",
                        x.seq,
                        output::time(x.time_ns),
                        x.user,
                        x.host,
                        ObjectId(x.slot).short(),
                        x.operation,
                        x.outcome,
                        what.join("; ")
                    );
                }
                for p in &log.problems {
                    eprintln!("error: {p}");
                }
            }
            Ok(if log.problems.is_empty() { exit::OK } else { exit::ERROR })
        }
        AuditCommand::Verify => {
            let report = repo.audit_verify()?;
            let code = if report.is_ok() { exit::OK } else { exit::ERROR };
            if g.json {
                output::json(&serde_json::json!({
                    "ok": report.is_ok(), "entries": report.entries, "head_seq": report.head_seq,
                    "forks": report.forks, "interrupted": report.interrupted, "problems": report.problems, "exit_code": code,
                }))?;
            } else {
                for f in &report.forks {
                    println!("fork (concurrent writers, both branches verified): {f}");
                }
                for i in &report.interrupted {
                    println!("interrupted: {i}");
                }
                for p in &report.problems {
                    eprintln!("error: {p}");
                }
                if !g.quiet {
                    println!(
                        "{} entries{}: {}",
                        report.entries,
                        report.head_seq.map(|s| format!(", head at seq {s}")).unwrap_or_default(),
                        if report.is_ok() { "the chain is whole and matches the repository" } else { "PROBLEMS FOUND" }
                    );
                }
            }
            Ok(code)
        }
    }
}
