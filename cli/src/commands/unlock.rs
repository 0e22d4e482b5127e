//! `cairn unlock [--remove-all]`

use crate::args::{GlobalArgs, UnlockArgs};
use crate::{exit, output};

pub fn run(g: &GlobalArgs, a: &UnlockArgs) -> anyhow::Result<i32> {
    let repo = super::open(g)?;
    super::audited(&repo, super::Operation::Unlock, |rec| {
        let removed = repo.unlock(a.remove_all)?;
        rec.detail = format!("{removed} lock(s) removed");
        if g.json {
            output::json(&serde_json::json!({ "removed": removed }))?;
        } else if !g.quiet {
            println!("{removed} lock(s) removed");
        }
        Ok(exit::OK)
    })
}
