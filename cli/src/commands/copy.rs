//! `cairn copy --from-repo SRC --from-password-file F [SNAPSHOT...]`: snapshots of another
//! repository into this one (see `cairn_engine::copy` for how content is re-cut).

use cairn_engine::copy::copy_snapshots;

use crate::args::{CopyArgs, GlobalArgs};
use crate::{exit, output};

pub fn run(g: &GlobalArgs, a: &CopyArgs) -> anyhow::Result<i32> {
    // The source opens with its own location and secret, and the same transport settings.
    let mut source_args = g.clone();
    source_args.repo = Some(a.from_repo.clone());
    source_args.password_file = a.from_password_file.clone();
    source_args.password_command = a.from_password_command.clone();
    source_args.recovery_code_file = a.from_recovery_code_file.clone();
    source_args.key_file = a.from_key_file.clone();
    source_args.hsm_module = None;
    let source = super::open(&source_args)?;
    let dest = super::open(g)?;
    if source.config().repository_id == dest.config().repository_id {
        bail_usage!("--from-repo is the repository being copied into");
    }
    super::audited(&dest, super::Operation::Copy, |rec| {
        let _source_lock = super::read_lock(&source_args, &source, "copy (source)")?;
        let _lock = super::lock(g, &dest, false, "copy")?;
        let chosen = super::chosen_snapshots(&source, &a.snapshots, &a.filter)?;
        let done = copy_snapshots(&source, &dest, &chosen)?;
        rec.snapshots_created.extend(done.iter().filter_map(|c| c.copied));
        let copied = done.iter().filter(|c| c.copied.is_some()).count();
        rec.detail = format!("{copied} snapshot(s) copied from {}", a.from_repo.display());
        if g.json {
            output::json(&serde_json::json!({
                "snapshots": done.iter().map(|c| serde_json::json!({
                    "source_id": c.source.to_hex(), "id": c.copied.map(|i| i.to_hex()), "skipped": c.copied.is_none(),
                })).collect::<Vec<_>>(),
                "copied": copied,
            }))?;
        } else if !g.quiet {
            for c in &done {
                match c.copied {
                    Some(id) => println!("{} -> {}", c.source.short(), id.short()),
                    None => println!("{} is here already", c.source.short()),
                }
            }
            println!("{copied} snapshot(s) copied, {} already here", done.len() - copied);
        }
        Ok(exit::OK)
    })
}
