//! `cairn unlock [--remove-all]`

use crate::args::{GlobalArgs, UnlockArgs};
use crate::{exit, output};

pub fn run(g: &GlobalArgs, a: &UnlockArgs) -> anyhow::Result<i32> {
    let repo = super::open(g)?;
    let removed = repo.unlock(&super::hostname(), a.remove_all)?;
    if g.json {
        output::json(&serde_json::json!({ "removed": removed }))?;
    } else if !g.quiet {
        println!("{removed} lock(s) removed");
    }
    Ok(exit::OK)
}
