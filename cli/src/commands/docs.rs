//! `cairn completion SHELL` and `cairn man --out-dir DIR`: shell completions and man pages,
//! generated from the same clap definitions as `--help`, so they never disagree with it.

use anyhow::Context;
use clap::CommandFactory;

use crate::args::{Cli, CompletionArgs, ManArgs};
use crate::exit;

pub fn completion(a: &CompletionArgs) -> anyhow::Result<i32> {
    let mut cmd = Cli::command();
    // Into memory first: clap_complete panics on a failed write (`cairn completion bash | head`).
    let mut script = Vec::new();
    clap_complete::generate(a.shell, &mut cmd, "cairn", &mut script);
    std::io::Write::write_all(&mut std::io::stdout().lock(), &script)?;
    Ok(exit::OK)
}

pub fn man(a: &ManArgs) -> anyhow::Result<i32> {
    std::fs::create_dir_all(&a.out_dir).with_context(|| format!("cannot create {}", a.out_dir.display()))?;
    clap_mangen::generate_to(Cli::command(), &a.out_dir)
        .with_context(|| format!("cannot write man pages into {}", a.out_dir.display()))?;
    Ok(exit::OK)
}
