//! Profiles: `--profile NAME` reads NAME.toml (from `$XDG_CONFIG_HOME/cairn` or
//! `~/.config/cairn`, then `/etc/cairn`; a NAME with a `/` is a path) and turns it into command
//! line flags, put before the user's own so that those win (a flag given twice keeps its last
//! value; list flags such as `--exclude` add up).
//!
//! The file mirrors the command line, so every flag works in it without a second schema:
//! top-level keys are global flags (`repo = "/srv/repo"`, `password-file = ...`, `json = true`);
//! a table named after a command holds that command's flags (`[snapshot] exclude-caches = true`,
//! `[forget] keep-daily = 14`). `true` adds a switch, a string or number its value, an array one
//! flag per element. `[snapshot] sources = [...]` are the paths to back up when the command
//! line names none. Unknown keys are refused by the command line parser, naming the flag.

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{CommandFactory, Parser};

use crate::args::{Cli, Command};

/// `args` (the process's, program name first) with the profile's flags put in, or unchanged
/// when no profile is asked for (`--profile NAME` or `CAIRN_PROFILE`).
pub fn expand(args: Vec<OsString>) -> anyhow::Result<Vec<OsString>> {
    let Some(name) = profile_name(&args) else { return Ok(args) };
    let path = locate(&name)?;
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read profile {}", path.display()))?;
    let table: toml::Table =
        toml::from_str(&text).with_context(|| format!("profile {} is not valid TOML", path.display()))?;
    let cmd = Cli::command();
    let (sub_at, sub_name) = subcommand_position(&cmd, &args);
    let mut global = Vec::new();
    let mut own = Vec::new();
    let mut sources = Vec::new();
    for (key, value) in &table {
        match value {
            toml::Value::Table(section) => {
                if !cmd.get_subcommands().any(|c| c.get_name() == key) {
                    bail!("profile {}: [{key}] is not a cairn command", path.display());
                }
                if sub_name.as_deref() != Some(key.as_str()) {
                    continue;
                }
                for (k, v) in section {
                    if key == "snapshot" && k == "sources" {
                        sources =
                            strings(v).with_context(|| format!("profile {}: [snapshot] sources", path.display()))?;
                    } else {
                        flags(k, v, &mut own).with_context(|| format!("profile {}: [{key}] {k}", path.display()))?;
                    }
                }
            }
            v if key == "profile" => bail!("profile {}: a profile cannot name another ({v:?})", path.display()),
            v => flags(key, v, &mut global).with_context(|| format!("profile {}: {key}", path.display()))?,
        }
    }
    let mut out: Vec<OsString> = Vec::with_capacity(args.len() + global.len() + own.len() + sources.len());
    out.push(args[0].clone());
    out.extend(global);
    match sub_at {
        Some(i) => {
            out.extend(args[1..=i].iter().cloned());
            out.extend(own);
            out.extend(args[i + 1..].iter().cloned());
        }
        None => out.extend(args[1..].iter().cloned()),
    }
    // The profile's sources only when the command line names none (nor a stream to back up).
    if !sources.is_empty() && !names_sources(&out) {
        out.extend(sources.into_iter().map(OsString::from));
    }
    Ok(out)
}

/// Whether these arguments make a snapshot that has sources already.
fn names_sources(args: &[OsString]) -> bool {
    match Cli::try_parse_from(args) {
        Ok(cli) => match cli.command {
            Command::Snapshot(a) => {
                !a.paths.is_empty()
                    || a.stdin
                    || a.stdin_from_command.is_some()
                    || !a.files_from.is_empty()
                    || !a.files_from_raw.is_empty()
            }
            _ => true,
        },
        Err(_) => false,
    }
}

fn profile_name(args: &[OsString]) -> Option<String> {
    let mut it = args.iter().skip(1).take_while(|a| *a != "--");
    while let Some(a) = it.next() {
        let a = a.to_string_lossy();
        if a == "--profile" {
            return it.next().map(|v| v.to_string_lossy().into_owned());
        }
        if let Some(v) = a.strip_prefix("--profile=") {
            return Some(v.to_string());
        }
    }
    std::env::var("CAIRN_PROFILE").ok().filter(|v| !v.is_empty())
}

fn locate(name: &str) -> anyhow::Result<PathBuf> {
    if name.contains('/') {
        return Ok(PathBuf::from(name));
    }
    let file = format!("{name}.toml");
    let mut tried = Vec::new();
    let user_dir = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")));
    for dir in user_dir.into_iter().map(|d| d.join("cairn")).chain([PathBuf::from("/etc/cairn")]) {
        let path = dir.join(&file);
        if path.is_file() {
            return Ok(path);
        }
        tried.push(path.display().to_string());
    }
    bail!("no profile {name:?}: looked for {}", tried.join(" and "))
}

/// Where the subcommand's name is in `args`, and its name (aliases resolved): the first word
/// that is not a global flag or a global flag's value.
fn subcommand_position(cmd: &clap::Command, args: &[OsString]) -> (Option<usize>, Option<String>) {
    let takes_value = |long: Option<&str>, short: Option<char>| {
        cmd.get_arguments().any(|a| {
            (long.is_some() && a.get_long() == long || short.is_some() && a.get_short() == short)
                && a.get_action().takes_values()
        })
    };
    let mut i = 1;
    while i < args.len() {
        let a = args[i].to_string_lossy();
        if a == "--" {
            break;
        }
        if let Some(long) = a.strip_prefix("--") {
            i += if !long.contains('=') && takes_value(Some(long), None) { 2 } else { 1 };
            continue;
        }
        if let Some(short) = a.strip_prefix('-').filter(|s| !s.is_empty()) {
            let c = short.chars().next();
            i += if short.len() == 1 && takes_value(None, c) { 2 } else { 1 };
            continue;
        }
        let found = cmd.get_subcommands().find(|c| c.get_name() == a || c.get_all_aliases().any(|al| al == a));
        return (Some(i), found.map(|c| c.get_name().to_string()));
    }
    (None, None)
}

fn strings(v: &toml::Value) -> anyhow::Result<Vec<String>> {
    match v {
        toml::Value::Array(items) => items.iter().map(scalar).collect(),
        other => Ok(vec![scalar(other)?]),
    }
}

fn scalar(v: &toml::Value) -> anyhow::Result<String> {
    Ok(match v {
        toml::Value::String(s) => s.clone(),
        toml::Value::Integer(n) => n.to_string(),
        toml::Value::Float(f) => f.to_string(),
        other => bail!("expected a string or a number, not {other:?}"),
    })
}

/// The flags `--key ...` for one profile entry.
fn flags(key: &str, value: &toml::Value, out: &mut Vec<OsString>) -> anyhow::Result<()> {
    let flag = OsString::from(format!("--{key}"));
    match value {
        toml::Value::Boolean(true) => out.push(flag),
        toml::Value::Boolean(false) => {}
        toml::Value::Array(_) => {
            for v in strings(value)? {
                out.push(flag.clone());
                out.push(v.into());
            }
        }
        other => {
            out.push(flag);
            out.push(OsStr::new(&scalar(other)?).to_owned());
        }
    }
    Ok(())
}
