//! `cairn serve`: the repository server, and the helpers that manage its identities and
//! verify its log.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use cairn_engine::storage::{LocalStorage, RetryPolicy, Retrying, S3Location, S3Storage, Storage};
use cairn_server::identities::{Identities, Permission};
use cairn_server::log::{LogKey, verify};
use cairn_server::{Backends, ServeOptions};

use crate::args::{
    AddIdentityArgs, GlobalArgs, GrantArgs, ServeAction, ServeArgs, ServeRunArgs, SetQuotaArgs, VerifyLogArgs,
};

pub fn run(g: &GlobalArgs, a: &ServeArgs) -> anyhow::Result<i32> {
    match &a.action {
        None => serve(g, &a.run),
        Some(ServeAction::AddIdentity(a)) => add_identity(g, a),
        Some(ServeAction::Grant(a)) => grant(a),
        Some(ServeAction::SetQuota(a)) => set_quota(a),
        Some(ServeAction::VerifyLog(a)) => verify_log(g, a),
    }
}

/// How each repository's storage is opened: a directory per repository under a root, or a
/// prefix per repository under an s3: URL.
fn opener(g: &GlobalArgs, root: &Path) -> anyhow::Result<Box<cairn_server::backends::OpenRepository>> {
    match root.to_str().filter(|r| S3Location::is_s3(r)) {
        Some(url) => {
            let url = url.trim_end_matches('/').to_string();
            S3Location::parse(&url)?;
            let opts = super::s3_options(g);
            let aws = crate::aws::settings_from_environment()?;
            Ok(Box::new(move |repo: &str| {
                let location = S3Location::parse(&format!("{url}/{repo}"))?;
                let s3: Arc<dyn Storage> = Arc::new(S3Storage::open(location, &opts, &aws)?);
                Ok(Arc::new(Retrying::new(s3, RetryPolicy::default())) as Arc<dyn Storage>)
            }))
        }
        None => {
            let root = root.to_path_buf();
            // No files kept open: the server holds a storage per repository for as long as it
            // runs, and would hold their descriptors (and deleted packs' space) too.
            Ok(Box::new(move |repo: &str| {
                Ok(Arc::new(LocalStorage::new(root.join(repo)).keep_files_open(0)) as Arc<dyn Storage>)
            }))
        }
    }
}

fn serve(g: &GlobalArgs, a: &ServeRunArgs) -> anyhow::Result<i32> {
    let (Some(storage), Some(identities), Some(log)) = (&a.storage, &a.identities, &a.log) else {
        bail_usage!("cairn serve needs --storage, --identities and --log");
    };
    let tls = match (&a.tls_cert, &a.tls_key) {
        (Some(cert), Some(key)) => {
            Some(cairn_server::tls::TlsFiles { cert: cert.clone(), key: key.clone(), client_ca: a.client_ca.clone() })
        }
        _ if g.insecure_http => None,
        _ => bail_usage!("give --tls-cert and --tls-key (or --insecure-http for plain http on loopback)"),
    };
    let mut opts = ServeOptions::new(a.listen, tls, identities.clone(), log.clone());
    if let Some(key) = &a.log_key {
        opts.log_key = key.clone();
    }
    opts.limits.max_body = a.max_body;
    opts.limits.body_memory = a.body_memory;
    opts.limits.body_timeout = a.body_timeout;
    opts.limits.rate_per_second = a.rate_limit;
    opts.max_connections = a.max_connections;
    opts.max_connections_per_address = a.max_connections_per_address;
    opts.header_timeout = a.header_timeout;
    let backends = Backends::new(opener(g, storage)?);
    let quiet = g.quiet;
    cairn_server::run(opts, backends, |addr, tls| {
        // Scripts and tests read the address (the port, when 0 was asked) from this line.
        let scheme = if tls { "https" } else { "http" };
        println!("cairn serve: listening on {scheme}://{addr}");
        if !quiet {
            eprintln!("cairn serve: serving {} (SIGHUP reloads certificates and identities)", storage.display());
        }
    })?;
    Ok(crate::exit::OK)
}

/// Parses `REPO=PERM[,PERM...]` (`*=...`: every repository not named otherwise).
fn parse_grant(text: &str) -> anyhow::Result<(String, Vec<Permission>)> {
    let Some((repo, perms)) = text.split_once('=') else {
        bail_usage!("{text:?}: expected REPO=PERM[,PERM...] (read, append, delete, keys, admin)");
    };
    if repo != cairn_server::identities::ANY_REPOSITORY && !cairn_server::backends::is_repository_name(repo) {
        bail_usage!("{repo:?} is not a repository name (lower-case letters, digits, - _ .)");
    }
    let mut held = Vec::new();
    for p in perms.split(',').filter(|p| !p.is_empty()) {
        held.push(match p {
            "read" => Permission::Read,
            "append" => Permission::Append,
            "delete" => Permission::Delete,
            "keys" => Permission::Keys,
            "admin" => Permission::Admin,
            other => bail_usage!("{other:?} is not a permission (read, append, delete, keys, admin)"),
        });
    }
    held.sort();
    held.dedup();
    Ok((repo.to_string(), held))
}

fn add_identity(g: &GlobalArgs, a: &AddIdentityArgs) -> anyhow::Result<i32> {
    let grants = a.repositories.iter().map(|r| parse_grant(r)).collect::<anyhow::Result<Vec<_>>>()?;
    let mut ids = Identities::load(&a.identities)?;
    let token = match &a.certificate {
        Some(pem) => {
            let fingerprint = certificate_fingerprint(pem)?;
            ids.add_certificate(&a.name, &fingerprint)?;
            None
        }
        None => Some(zeroize::Zeroizing::new(ids.add(&a.name)?)),
    };
    let identity = ids.identities.iter_mut().find(|i| i.name == a.name).context("the identity just added is gone")?;
    for (repo, perms) in grants {
        identity.repositories.insert(repo, perms);
    }
    ids.save(&a.identities)?;
    if g.json {
        let doc = serde_json::json!({ "name": a.name, "token": token.as_deref().map(|t| t.as_str()) });
        println!("{doc}");
    } else if let Some(token) = token {
        eprintln!("cairn: identity {} added; its token (shown once, store it now):", a.name);
        println!("{}", token.as_str());
    } else {
        eprintln!("cairn: identity {} added, authenticated by its client certificate", a.name);
    }
    Ok(crate::exit::OK)
}

/// The SHA-256 of the first certificate in a PEM file, as identities name certificates.
fn certificate_fingerprint(pem: &Path) -> anyhow::Result<String> {
    cairn_server::tls::file_fingerprint(pem).map_err(Into::into)
}

fn grant(a: &GrantArgs) -> anyhow::Result<i32> {
    let (repo, perms) = parse_grant(&a.grant)?;
    let mut ids = Identities::load(&a.identities)?;
    let Some(identity) = ids.identities.iter_mut().find(|i| i.name == a.name) else {
        bail_usage!("no identity named {:?} in {}", a.name, a.identities.display());
    };
    if perms.is_empty() {
        identity.repositories.remove(&repo);
    } else {
        identity.repositories.insert(repo, perms);
    }
    ids.save(&a.identities)?;
    Ok(crate::exit::OK)
}

fn set_quota(a: &SetQuotaArgs) -> anyhow::Result<i32> {
    if a.repository != cairn_server::identities::ANY_REPOSITORY
        && !cairn_server::backends::is_repository_name(&a.repository)
    {
        bail_usage!("{:?} is not a repository name (nor `*`)", a.repository);
    }
    let mut ids = Identities::load(&a.identities)?;
    if a.size.trim().eq_ignore_ascii_case("none") {
        ids.quotas.remove(&a.repository);
    } else {
        let size = match crate::args::parse_size(&a.size) {
            Ok(s) => s,
            Err(why) => bail_usage!("{why}, or none"),
        };
        ids.quotas.insert(a.repository.clone(), size);
    }
    ids.save(&a.identities)?;
    eprintln!("cairn: quotas saved; a running server takes them up on SIGHUP");
    Ok(crate::exit::OK)
}

fn verify_log(g: &GlobalArgs, a: &VerifyLogArgs) -> anyhow::Result<i32> {
    let key_path: PathBuf = a.log_key.clone().unwrap_or_else(|| cairn_server::serve::default_log_key(&a.log));
    let key = LogKey::load(&key_path)?;
    let report = verify(&a.log, &key)?;
    if g.json {
        let doc = serde_json::json!({
            "lines": report.lines,
            "head": hex::encode(report.head),
            "problems": report.problems,
        });
        println!("{doc}");
    } else {
        for problem in &report.problems {
            println!("{problem}");
        }
        if !g.quiet {
            eprintln!(
                "cairn: {} lines, {} problem(s); head {}",
                report.lines,
                report.problems.len(),
                hex::encode(report.head)
            );
        }
    }
    Ok(if report.problems.is_empty() { crate::exit::OK } else { crate::exit::ERROR })
}
