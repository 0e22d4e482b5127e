//! `cairn key list|add|remove|passwd|rotate|epochs|retire-epoch`

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context;
use cairn_engine::audit::AuditRecord;
use cairn_engine::crypto::Argon2Params;
use cairn_engine::prune::{PruneOptions, prune};
use cairn_engine::repo::calibrate_argon2;
use cairn_engine::{NoProgress, ObjectId, Repository};

use crate::args::{GlobalArgs, KeyAddArgs, KeyArgs, KeyCommand, NewPasswordArgs};
use crate::{exit, output, secrets, table};

pub fn run(g: &GlobalArgs, a: &KeyArgs) -> anyhow::Result<i32> {
    match &a.command {
        KeyCommand::List => list(g),
        KeyCommand::Epochs => epochs(g),
        KeyCommand::Add(add_args) => {
            let repo = super::open(g)?;
            super::audited(&repo, super::Operation::KeyAdd, |rec| add(g, &repo, add_args, rec))
        }
        KeyCommand::Remove(r) => {
            let repo = super::open(g)?;
            super::audited(&repo, super::Operation::KeyRemove, |rec| {
                let _lock = super::lock(g, &repo, true, "key remove")?;
                let id = repo.resolve_slot(&r.id)?;
                repo.remove_slot(id, r.force)?;
                rec.slots_removed.push(id);
                report(g, "removed", id)
            })
        }
        KeyCommand::Passwd(p) => {
            let repo = super::open(g)?;
            super::audited(&repo, super::Operation::KeyPasswd, |rec| {
                let _lock = super::lock(g, &repo, true, "key passwd")?;
                let password = secrets::new_password(p.new_password_file.as_deref())?;
                let id = repo.change_password(&password, kdf(p)?)?;
                rec.slots_created.push(id);
                let code = report(g, "password changed for", id)?;
                if !g.json && !g.quiet {
                    println!(
                        "the repository key is unchanged: anyone holding an old copy of this slot (the storage, a backup of \
                         it) and the old password can still open the repository. Run `cairn key rotate` to shut them out"
                    );
                }
                Ok(code)
            })
        }
        KeyCommand::Rotate(r) => rotate(g, r.reencrypt),
        KeyCommand::RetireEpoch(r) => {
            let repo = super::open(g)?;
            super::audited(&repo, super::Operation::KeyRetireEpoch, |rec| {
                let _lock = super::lock(g, &repo, true, "key retire-epoch")?;
                repo.retire_epoch(r.epoch)?;
                rec.detail = format!("epoch {} retired", r.epoch);
                if g.json {
                    output::json(&serde_json::json!({ "retired_epoch": r.epoch }))?;
                } else if !g.quiet {
                    println!("epoch {} retired: the keyring no longer holds its key", r.epoch);
                }
                Ok(exit::OK)
            })
        }
    }
}

fn kdf(p: &NewPasswordArgs) -> anyhow::Result<Argon2Params> {
    Ok(match (p.kdf_memory, p.kdf_iterations) {
        (None, None) => calibrate_argon2(Duration::from_millis(500))?,
        (m, t) => Argon2Params { m_kib: m.unwrap_or(64 * 1024), t: t.unwrap_or(3), p: 1 },
    })
}

fn report(g: &GlobalArgs, what: &str, id: ObjectId) -> anyhow::Result<i32> {
    if g.json {
        output::json(&serde_json::json!({ "slot": id.to_hex(), "done": what }))?;
    } else if !g.quiet {
        println!("key slot {} {what}", id.short());
    }
    Ok(exit::OK)
}

/// When each slot last opened the repository, from the audit log.
fn last_used(repo: &Repository) -> HashMap<ObjectId, i64> {
    let mut out = HashMap::new();
    if let Ok(log) = repo.audit_log() {
        for e in log.entries {
            let t = out.entry(ObjectId(e.entry.slot)).or_insert(e.entry.time_ns);
            *t = (*t).max(e.entry.time_ns);
        }
    }
    out
}

fn list(g: &GlobalArgs) -> anyhow::Result<i32> {
    let repo = super::open(g)?;
    let slots = repo.list_slots()?;
    let used = last_used(&repo);
    if g.json {
        let docs: Vec<_> = slots
            .iter()
            .map(|s| {
                serde_json::json!({
                    "id": s.id.to_hex(), "kind": s.kind, "write_only": s.write_only, "label": s.label,
                    "created": s.created_ns.map(output::time), "last_used": used.get(&s.id).map(|t| output::time(*t)),
                    "hsm_token": s.hsm_token, "hsm_key": s.hsm_key, "in_use": s.in_use, "current": s.current,
                    "listed": s.listed,
                })
            })
            .collect();
        output::json(&docs)?;
        return Ok(exit::OK);
    }
    let mut t = table::new(&["ID", "KIND", "LABEL", "CREATED", "LAST USED", "NOTE"], &[]);
    for s in &slots {
        let mut label = s.label.trim().to_string();
        if let (Some(t), Some(k)) = (&s.hsm_token, &s.hsm_key) {
            label = format!("{label} [{t}/{k}]");
        }
        let notes = [
            (s.in_use, "in use"),
            (s.listed && !s.current, "not yet on the current key: rerun `cairn key rotate`"),
            (!s.listed, "removed: not a valid slot of the repository; opens nothing"),
        ];
        let note: Vec<&str> = notes.iter().filter(|(on, _)| *on).map(|(_, n)| *n).collect();
        t.add_row(vec![
            s.id.short(),
            if s.write_only { format!("{} (write-only)", s.kind) } else { s.kind.to_string() },
            label,
            s.created_ns.map(output::time).unwrap_or_else(|| "?".into()),
            used.get(&s.id).map(|t| output::time(*t)).unwrap_or_else(|| "-".into()),
            note.join("; "),
        ]);
    }
    table::print(&t);
    Ok(exit::OK)
}

fn add(g: &GlobalArgs, repo: &Repository, a: &KeyAddArgs, rec: &mut AuditRecord) -> anyhow::Result<i32> {
    let _lock = super::lock(g, repo, true, "key add")?;
    // Before the slot exists: its code must have somewhere to go.
    let code_file = match &a.recovery_code_out {
        Some(path) if a.recovery => Some(output::SecretFile::create(path, "the recovery code")?),
        _ => None,
    };
    if a.write_only {
        return add_write_only_slot(g, repo, a, rec);
    }
    if let Some(path) = &a.new_key_file {
        return add_key_file_slot(g, repo, path, &a.label, rec);
    }
    let (id, code) = if a.password {
        let password = secrets::new_password(a.new_password.new_password_file.as_deref())?;
        let label = if a.label.is_empty() { "password" } else { &a.label };
        (repo.add_password_slot(&password, kdf(&a.new_password)?, label)?, None)
    } else if a.recovery {
        let label = if a.label.is_empty() { "recovery code" } else { &a.label };
        let (id, code) = repo.add_recovery_slot(label)?;
        (id, Some(code.display()))
    } else if a.hsm {
        let Some(cfg) = secrets::hsm_config(g)? else {
            bail_usage!("an HSM slot needs --hsm-module, --hsm-token and --hsm-key (or CAIRN_HSM_MODULE, ...)");
        };
        let label = if a.label.is_empty() { "hsm" } else { &a.label };
        (repo.add_hsm_slot(&cfg, label)?, None)
    } else {
        bail_usage!("say which kind of slot: --password, --recovery, --new-key-file PATH or --hsm");
    };
    rec.slots_created.push(id);
    let written = code_file.is_some() && code.is_some();
    let printed = output::place_recovery_code(code_file, code);
    if g.json {
        output::json(
            &serde_json::json!({ "slot": id.to_hex(), "recovery_code": printed.as_deref().map(String::as_str) }),
        )?;
    } else {
        if !g.quiet {
            println!("key slot {} added", id.short());
        }
        // Even with --quiet: the code exists only here, and the slot it opens was just made.
        if let Some(code) = printed {
            output::recovery_code(&code);
        } else if let (true, Some(path), false) = (written, &a.recovery_code_out, g.quiet) {
            println!("recovery code written to {}", path.display());
        }
    }
    Ok(exit::OK)
}

/// A write-only slot (SPEC §7.6), opened by a password or by a new key file (created first,
/// as for a full key file; a secret that cannot be written takes its slot away again).
fn add_write_only_slot(
    g: &GlobalArgs,
    repo: &Repository,
    a: &KeyAddArgs,
    rec: &mut AuditRecord,
) -> anyhow::Result<i32> {
    use cairn_engine::repo::WriteOnlySecret;
    let label = if a.label.is_empty() { "write-only" } else { &a.label };
    let (id, path) = if let Some(path) = &a.new_key_file {
        let file = output::SecretFile::create(path, "the key file")?;
        let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.clone());
        let (id, key) = repo.add_write_only_slot(WriteOnlySecret::KeyFile, label)?;
        let Some(key) = key else { anyhow::bail!("no key file was made for write-only slot {}", id.short()) };
        if let Err(e) = file.write(&key.encode()) {
            let undone = repo.remove_slot(id, false).map_or_else(
                |r| {
                    format!(
                        "the new slot {} could not be removed ({r}): run `cairn key remove {}`",
                        id.short(),
                        id.short()
                    )
                },
                |()| "the new slot was removed again".to_string(),
            );
            anyhow::bail!("could not write the key file {} ({e}); {undone}", path.display());
        }
        (id, Some(path))
    } else if a.password {
        let password = secrets::new_password(a.new_password.new_password_file.as_deref())?;
        (repo.add_write_only_slot(WriteOnlySecret::Password(&password, kdf(&a.new_password)?), label)?.0, None)
    } else if a.hsm {
        let Some(cfg) = secrets::hsm_config(g)? else {
            bail_usage!("an HSM slot needs --hsm-module, --hsm-token and --hsm-key (or CAIRN_HSM_MODULE, ...)");
        };
        (repo.add_write_only_slot(WriteOnlySecret::Hsm(&cfg), label)?.0, None)
    } else {
        bail_usage!(
            "a write-only slot is opened by a password, a key file or an HSM key: add --password, --new-key-file PATH or --hsm"
        );
    };
    rec.slots_created.push(id);
    if g.json {
        output::json(&serde_json::json!({ "slot": id.to_hex(), "write_only": true, "key_file": path }))?;
    } else if !g.quiet {
        match &path {
            Some(p) => println!("write-only key slot {} added; its key file is {}", id.short(), p.display()),
            None => println!("write-only key slot {} added", id.short()),
        }
        println!(
            "It can add snapshots (`cairn snapshot`) and nothing else: it reads no backup, not even its own. Restores, \
             forget and prune need a full key."
        );
    }
    Ok(exit::OK)
}

/// A key-file slot: the file is created first (so a path that cannot be used creates nothing),
/// then the slot, then the secret is written. A secret that cannot be written takes its slot
/// away again: unlike a recovery code, a key file is not printed as a fallback.
fn add_key_file_slot(
    g: &GlobalArgs,
    repo: &Repository,
    path: &std::path::Path,
    label: &str,
    rec: &mut AuditRecord,
) -> anyhow::Result<i32> {
    let file = output::SecretFile::create(path, "the key file")?;
    // Shown as an absolute path: what a crontab or a unit file needs.
    let path = &std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let label = if label.is_empty() { "key file" } else { label };
    let (id, key) = repo.add_key_file_slot(label)?;
    if let Err(e) = file.write(&key.encode()) {
        let undone = repo.remove_slot(id, false);
        anyhow::bail!(
            "could not write the key file {} ({e}); {}",
            path.display(),
            match undone {
                Ok(()) => "the new slot was removed again".to_string(),
                Err(r) => format!(
                    "the new slot {} could not be removed ({r}): run `cairn key remove {}`",
                    id.short(),
                    id.short()
                ),
            }
        );
    }
    rec.slots_created.push(id);
    if g.json {
        output::json(&serde_json::json!({ "slot": id.to_hex(), "key_file": path }))?;
    } else if !g.quiet {
        println!("key slot {} added; its key file is {}", id.short(), path.display());
        println!(
            "It opens the repository on its own (`--key-file {}` or CAIRN_KEY_FILE): keep it as you keep the data.",
            path.display()
        );
    }
    Ok(exit::OK)
}

fn epochs(g: &GlobalArgs) -> anyhow::Result<i32> {
    let repo = super::open(g)?;
    let usage = repo.epoch_usage(false)?;
    let held = repo.key_epochs()?;
    let current = held.last().map(|e| e.0);
    if g.json {
        let docs: Vec<_> = usage
            .iter()
            .map(|(e, u)| {
                let created = held.iter().find(|h| h.0 == *e).and_then(|h| h.1);
                serde_json::json!({
                    "epoch": e, "current": Some(*e) == current, "held": created.is_some() || held.iter().any(|h| h.0 == *e),
                    "created": created.map(output::time), "packs": u.packs, "objects": u.objects,
                })
            })
            .collect();
        output::json(&docs)?;
    } else {
        let mut t = table::new(&["EPOCH", "CREATED", "PACKS", "OBJECTS", "NOTE"], &[0, 2, 3]);
        for (e, u) in &usage {
            let h = held.iter().find(|h| h.0 == *e);
            let note = if Some(*e) == current {
                "current"
            } else if h.is_none() {
                "key not held: these objects cannot be read"
            } else {
                ""
            };
            t.add_row(vec![
                e.to_string(),
                h.and_then(|h| h.1).map(output::time).unwrap_or_else(|| "?".into()),
                u.packs.to_string(),
                u.objects.to_string(),
                note.to_string(),
            ]);
        }
        table::print(&t);
    }
    Ok(exit::OK)
}

fn rotate(g: &GlobalArgs, reencrypt: bool) -> anyhow::Result<i32> {
    let repo = super::open(g)?;
    // Rotation re-seals every metadata object: a server grants that to `admin` only.
    repo.permits(cairn_engine::storage::Access::Admin)?;
    repo.check_not_rolled_back()?;
    let lock = super::lock(g, &repo, true, "key rotate")?;
    let old_epochs: Vec<u32> = repo.key_epochs()?.into_iter().map(|e| e.0).collect();
    let (repo, out) = match repo.rotate_key() {
        Ok(v) => v,
        Err(e) => return Err(anyhow::Error::new(e).context("key rotation failed; run `cairn key rotate` again")),
    };
    let mut rec = AuditRecord::new("key rotate");
    rec.slots_created = out.slots.clone();
    rec.detail = format!(
        "new epoch {}; {} keyring(s) removed; {} object(s) re-sealed; {} unreadable object(s) left as they were",
        out.epoch,
        out.keyrings_deleted,
        out.objects_resealed,
        out.objects_refused.len()
    );
    for name in &out.objects_refused {
        eprintln!("warning: {name} could not be read (damaged or forged): left as it was; readers now refuse it");
    }
    repo.audit(&super::actor(), &rec).context("the key was rotated, but its audit entry could not be written")?;
    let mut retired = Vec::new();
    if reencrypt {
        for epoch in old_epochs {
            let code = super::audited(&repo, super::Operation::Prune, |rec| {
                let opts = PruneOptions { reencrypt_epoch: Some(epoch), ..PruneOptions::default() };
                let p = prune(&repo, opts, false, &NoProgress)?;
                rec.packs_created = p.packs_written;
                rec.packs_deleted = p.sweep.delete_now.len() as u64;
                rec.detail = format!(
                    "epoch {epoch} re-encrypted: {} pack(s), {} object(s)",
                    p.packs_reencrypted, p.objects_resealed
                );
                Ok(exit::OK)
            })?;
            if code != exit::OK {
                return Ok(code);
            }
            super::audited(&repo, super::Operation::KeyRetireEpoch, |rec| {
                repo.retire_epoch(epoch)?;
                rec.detail = format!("epoch {epoch} retired");
                Ok(exit::OK)
            })?;
            retired.push(epoch);
        }
    }
    drop(lock);
    if g.json {
        output::json(&serde_json::json!({
            "epoch": out.epoch, "slots": out.slots.iter().map(|s| s.to_hex()).collect::<Vec<_>>(),
            "retired_epochs": retired,
        }))?;
    } else if !g.quiet {
        println!("repository key rotated: new data-key epoch {}, {} slot(s) re-sealed", out.epoch, out.slots.len());
        if retired.is_empty() {
            println!(
                "older epochs still seal existing data; `cairn key rotate --reencrypt` or `cairn prune --reencrypt-epoch E` then `cairn key retire-epoch E` retires them"
            );
        } else {
            let list: Vec<String> = retired.iter().map(u32::to_string).collect();
            println!("re-encrypted and retired epoch(s) {}", list.join(", "));
        }
    }
    Ok(exit::OK)
}
