//! `cairn init`

use std::time::Duration;

use anyhow::Context;
use cairn_engine::chunker::ChunkerParams;
use cairn_engine::crypto::Argon2Params;
use cairn_engine::repo::calibrate_argon2;
use cairn_engine::{InitOptions, Repository};

use crate::args::{GlobalArgs, InitArgs};
use crate::{exit, output, secrets};

fn chunk_sizes(s: &str) -> anyhow::Result<ChunkerParams> {
    let parts: Vec<u32> = s
        .split(',')
        .map(|p| p.trim().parse::<u32>())
        .collect::<Result<_, _>>()
        .map_err(|_| crate::exit::UsageError("--chunk-sizes takes MIN,AVG,MAX in bytes".into()))?;
    let [min_size, avg_size, max_size] = parts.as_slice() else {
        bail_usage!("--chunk-sizes takes three numbers: MIN,AVG,MAX")
    };
    Ok(ChunkerParams { min_size: *min_size, avg_size: *avg_size, max_size: *max_size })
}

pub fn run(g: &GlobalArgs, a: &InitArgs) -> anyhow::Result<i32> {
    let storage = super::storage(g)?;
    // Before asking for a password twice: a repository that exists is refused at once.
    Repository::check_can_init(storage.as_ref())?;
    // Before anything is created: a recovery slot whose code cannot be kept must not exist.
    let code_file = match &a.recovery_code_out {
        Some(path) if !a.no_recovery_code => Some(output::SecretFile::create(path, "the recovery code")?),
        _ => None,
    };
    let password = secrets::password(g, true)?;
    let argon2 = match (a.kdf_memory, a.kdf_iterations) {
        (None, None) => calibrate_argon2(Duration::from_millis(500))?,
        (m, t) => Argon2Params { m_kib: m.unwrap_or(64 * 1024), t: t.unwrap_or(3), p: 1 },
    };
    let mut opts = InitOptions::new(password, argon2);
    opts.recovery_code = !a.no_recovery_code;
    opts.label = a.label.clone();
    opts.actor = super::actor();
    if let Some(s) = &a.chunk_sizes {
        opts.chunker = chunk_sizes(s)?;
    }
    opts.pack_target_size = a.pack_size.checked_mul(1024 * 1024).context("--pack-size too large")?;
    opts.zstd_level = a.compression;
    let outcome = Repository::init(storage.clone(), &opts)?;
    let code_text = outcome.recovery_code.as_ref().map(|c| c.display());
    let written = code_file.is_some() && code_text.is_some();
    let printed_code = output::place_recovery_code(code_file, code_text);
    if g.json {
        output::json(&serde_json::json!({
            "repository": storage.location(),
            "repository_id": outcome.repository_id.to_hex(),
            "recovery_code": printed_code.as_deref().map(String::as_str),
            "argon2id": { "m_kib": argon2.m_kib, "t": argon2.t, "p": argon2.p },
        }))?;
    } else {
        if !g.quiet {
            println!("created repository {} at {}", &outcome.repository_id.to_hex()[..12], storage.location());
        }
        // Even with --quiet: the code exists only here, and a slot it opens was just made.
        if let Some(code) = printed_code {
            output::recovery_code(&code);
        } else if let (true, Some(path), false) = (written, &a.recovery_code_out, g.quiet) {
            println!("recovery code written to {}", path.display());
        }
    }
    Ok(exit::OK)
}
