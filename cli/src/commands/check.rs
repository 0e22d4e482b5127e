//! `cairn check [--read-data] [--read-data-subset N/T|P%]`

use cairn_engine::check::{CheckOptions, Severity, Subset, check};

use crate::args::{CheckArgs, GlobalArgs};
use crate::progress::TermProgress;
use crate::{exit, output};

fn subset(a: &CheckArgs) -> anyhow::Result<Option<Subset>> {
    let Some(spec) = &a.read_data_subset else {
        return Ok(a.read_data.then_some(Subset::All));
    };
    if let Some(p) = spec.strip_suffix('%') {
        let p: f64 = p
            .trim()
            .parse()
            .map_err(|_| crate::exit::UsageError(format!("--read-data-subset {spec:?}: not a percentage")))?;
        if !(0.0..=100.0).contains(&p) {
            bail_usage!("--read-data-subset {spec:?}: a percentage is between 0 and 100");
        }
        return Ok(Some(Subset::Fraction(p / 100.0)));
    }
    let Some((n, of)) = spec.split_once('/') else {
        bail_usage!("--read-data-subset takes N/T (e.g. 3/7) or P% (e.g. 10%)");
    };
    let (n, of): (u32, u32) = (n.trim().parse()?, of.trim().parse()?);
    if of == 0 || n == 0 || n > of {
        bail_usage!("--read-data-subset {spec:?}: need 1 <= N <= T");
    }
    Ok(Some(Subset::Slice { n, of }))
}

pub fn run(g: &GlobalArgs, a: &CheckArgs) -> anyhow::Result<i32> {
    let opts = CheckOptions { read_data: subset(a)? };
    let mut repo = super::open(g)?;
    // check verifies what the storage holds, never the client's copy of it.
    repo.set_tree_pack_cache(false);
    super::audited(&repo, super::Operation::Check, |rec| {
        let _lock = super::read_lock(g, &repo, "check")?;
        let progress = TermProgress::new(g.quiet || g.json);
        let r = check(&repo, &opts, &progress)?;
        let code = if r.has_errors() { exit::ERROR } else { exit::OK };
        let errors = r.findings.iter().filter(|f| f.severity == Severity::Error).count();
        rec.detail = format!("{} pack(s) read", r.packs_read);
        if errors > 0 {
            rec.outcome = format!("failed: {errors} problem(s) found");
        }
        crate::metrics::record("errors", "Damaged or missing objects found.", errors as f64);
        crate::metrics::record("bytes_read", "Bytes of packs read and verified.", r.bytes_read as f64);
        if g.json {
            let findings: Vec<_> = r
                .findings
                .iter()
                .map(|f| {
                    serde_json::json!({
                        "severity": if f.severity == Severity::Error { "error" } else { "notice" },
                        "object": f.object, "problem": f.problem,
                        "snapshots": f.snapshots.iter().map(|s| s.to_hex()).collect::<Vec<_>>(),
                        "paths": f.paths, "path_count": f.path_count,
                    })
                })
                .collect();
            output::json(&serde_json::json!({
                "ok": !r.has_errors(), "findings": findings, "snapshots": r.snapshots, "trees": r.trees, "packs": r.packs,
                "packs_read": r.packs_read, "blobs_read": r.blobs_read, "bytes_read": r.bytes_read, "exit_code": code,
            }))?;
        } else {
            for f in &r.findings {
                let tag = if f.severity == Severity::Error { "error" } else { "notice" };
                eprintln!("{tag}: {}: {}", f.object, f.problem);
                if !f.snapshots.is_empty() {
                    let ids: Vec<String> = f.snapshots.iter().map(|s| s.to_hex()[..12].to_string()).collect();
                    eprintln!("  affects snapshot(s) {}; {} path(s), e.g.:", ids.join(", "), f.path_count);
                    for p in &f.paths {
                        eprintln!("    {p}");
                    }
                }
            }
            if !g.quiet {
                println!(
                    "checked {} snapshot(s), {} tree(s), {} pack(s){}: {}",
                    r.snapshots,
                    r.trees,
                    r.packs,
                    if opts.read_data.is_some() {
                        format!(
                            "; read {} pack(s), {} blob(s), {}",
                            r.packs_read,
                            r.blobs_read,
                            output::bytes(r.bytes_read)
                        )
                    } else {
                        String::new()
                    },
                    if r.has_errors() { "errors found" } else { "no errors" }
                );
            }
        }
        Ok(code)
    })
}
