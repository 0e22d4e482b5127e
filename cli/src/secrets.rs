//! Where the secret that opens the repository comes from, first match wins:
//! --recovery-code-file; --key-file or CAIRN_KEY_FILE; --password-file, --password-command, CAIRN_PASSWORD; an HSM key
//! (--hsm-module, --hsm-token, --hsm-key with --hsm-pin-file or CAIRN_HSM_PIN); else a prompt
//! when stdin is a tty. Never a prompt without a tty: unattended jobs fail fast with a clear
//! message.

use std::io::IsTerminal;
use std::process::Command;

use anyhow::{Context, bail};
use cairn_engine::crypto::SecretBytes;
use cairn_engine::keys::{HsmConfig, KeyFile, OpenSecret, RecoveryCode};

use crate::args::GlobalArgs;

/// The first line of a secret, without its line end (`\n` or `\r\n`): what a password file, a
/// password command or an environment variable holds.
fn first_line(bytes: Vec<u8>) -> SecretBytes {
    let all = SecretBytes::new(bytes);
    let line = all.expose().split(|&b| b == b'\n').next().unwrap_or_default();
    SecretBytes::new(line.strip_suffix(b"\r").unwrap_or(line).to_vec())
}

/// The password from the configured source; `confirm` asks twice when prompting.
pub fn password(g: &GlobalArgs, confirm: bool) -> anyhow::Result<SecretBytes> {
    if let Some(path) = &g.password_file {
        let bytes = std::fs::read(path).with_context(|| format!("reading password file {}", path.display()))?;
        return Ok(first_line(bytes));
    }
    if let Some(cmd) = &g.password_command {
        let out = Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .output()
            .with_context(|| format!("running password command {cmd:?}"))?;
        if !out.status.success() {
            bail!("password command {cmd:?} failed with {}", out.status);
        }
        return Ok(first_line(out.stdout));
    }
    if let Ok(pw) = std::env::var("CAIRN_PASSWORD") {
        // As from a file: `CAIRN_PASSWORD=$(cat file)` and a value with its line end are the same password.
        return Ok(first_line(pw.into_bytes()));
    }
    if !std::io::stdin().is_terminal() {
        bail!(
            "no password given and no terminal to ask on: use --key-file or CAIRN_KEY_FILE, --password-file, \
             --password-command, CAIRN_PASSWORD_FILE or CAIRN_PASSWORD (or --recovery-code-file, or an HSM key)"
        );
    }
    let pw = rpassword::prompt_password("repository password: ").context("reading password")?;
    if confirm {
        let again = rpassword::prompt_password("repeat password: ").context("reading password")?;
        if again != pw {
            bail!("passwords do not match");
        }
    }
    Ok(SecretBytes::from(pw))
}

fn has_password_source(g: &GlobalArgs) -> bool {
    g.password_file.is_some() || g.password_command.is_some() || std::env::var_os("CAIRN_PASSWORD").is_some()
}

/// The HSM key named by the global flags, when module, token and key are all given.
pub fn hsm_config(g: &GlobalArgs) -> anyhow::Result<Option<HsmConfig>> {
    let (Some(module), Some(token), Some(key_label)) = (&g.hsm_module, &g.hsm_token, &g.hsm_key) else {
        return Ok(None);
    };
    let pin = if let Some(path) = &g.hsm_pin_file {
        first_line(std::fs::read(path).with_context(|| format!("reading HSM PIN file {}", path.display()))?)
    } else if let Ok(pin) = std::env::var("CAIRN_HSM_PIN") {
        SecretBytes::from(pin)
    } else if std::io::stdin().is_terminal() {
        SecretBytes::from(rpassword::prompt_password(format!("PIN of token {token}: ")).context("reading PIN")?)
    } else {
        bail!("no HSM PIN given and no terminal to ask on: use --hsm-pin-file or CAIRN_HSM_PIN");
    };
    Ok(Some(HsmConfig { module: module.clone(), token: token.clone(), key_label: key_label.clone(), pin }))
}

/// A new password for `key add --password` / `key passwd`: --new-password-file,
/// CAIRN_NEW_PASSWORD, else a prompt (twice) on a tty.
pub fn new_password(file: Option<&std::path::Path>) -> anyhow::Result<SecretBytes> {
    if let Some(path) = file {
        let bytes = std::fs::read(path).with_context(|| format!("reading new password file {}", path.display()))?;
        return Ok(first_line(bytes));
    }
    if let Ok(pw) = std::env::var("CAIRN_NEW_PASSWORD") {
        return Ok(first_line(pw.into_bytes()));
    }
    if !std::io::stdin().is_terminal() {
        bail!("no new password given and no terminal to ask on: use --new-password-file or CAIRN_NEW_PASSWORD");
    }
    let pw = rpassword::prompt_password("new password: ").context("reading password")?;
    let again = rpassword::prompt_password("repeat new password: ").context("reading password")?;
    if again != pw {
        bail!("passwords do not match");
    }
    Ok(SecretBytes::from(pw))
}

/// Reads a key file. One that other users may read or write, or that another user owns, is
/// refused, as ssh refuses such a private key: whoever reads it can read every backup. The
/// checks are made on the open file, so it cannot be swapped between check and read.
pub fn key_file(path: &std::path::Path) -> anyhow::Result<KeyFile> {
    use std::io::Read;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let refuse = |why: String| -> anyhow::Error {
        cairn_engine::Error::WrongKey(format!("key file {}: {why}; nothing was done", path.display())).into()
    };
    let file = std::fs::File::open(path).with_context(|| format!("reading key file {}", path.display()))?;
    let meta = file.metadata().with_context(|| format!("reading key file {}", path.display()))?;
    let mode = meta.permissions().mode() & 0o7777;
    if !meta.is_file() {
        return Err(refuse("not a regular file".into()));
    }
    if mode & 0o077 != 0 {
        return Err(refuse(format!("open to other users (mode {mode:04o}). Run `chmod 600 {}`", path.display())));
    }
    // The owner can always read it and change its mode: another user's file is not private.
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != me {
        return Err(refuse(format!("owned by user {}, not by this user ({me})", meta.uid())));
    }
    // A key file is a few hundred bytes; anything much larger is not one.
    let mut text = zeroize::Zeroizing::new(String::new());
    file.take(64 * 1024).read_to_string(&mut text).with_context(|| format!("reading key file {}", path.display()))?;
    KeyFile::parse(&text).map_err(|e| {
        let why = match e {
            cairn_engine::Error::InvalidInput(why) => why,
            e => e.to_string(),
        };
        cairn_engine::Error::WrongKey(format!("key file {}: {why}", path.display())).into()
    })
}

/// Whether one of `flags` was typed on this process's command line (not set by the environment
/// or a profile, which adds its flags to the arguments clap parses, not to these).
fn on_command_line(flags: &[&str]) -> bool {
    // Raw bytes: the other arguments (paths to back up) need not be UTF-8.
    std::env::args_os().skip(1).any(|a| {
        let a = a.as_encoded_bytes();
        flags
            .iter()
            .any(|f| a == f.as_bytes() || a.strip_prefix(f.as_bytes()).is_some_and(|r| r.first() == Some(&b'=')))
    })
}

/// The secret that opens the repository.
pub fn open_secret(g: &GlobalArgs) -> anyhow::Result<OpenSecret> {
    if let Some(path) = &g.recovery_code_file {
        let text = zeroize::Zeroizing::new(
            std::fs::read_to_string(path).with_context(|| format!("reading recovery code file {}", path.display()))?,
        );
        let code = RecoveryCode::parse(&text).with_context(|| format!("recovery code in {}", path.display()))?;
        return Ok(OpenSecret::Recovery(code));
    }
    // A password given on this command line wins over a key file from the environment or a
    // profile (an admin running a command by hand where the nightly job's CAIRN_KEY_FILE is set).
    let password_on_command_line = on_command_line(&["--password-file", "--password-command"]);
    if let Some(path) = &g.key_file
        && (on_command_line(&["--key-file"]) || !password_on_command_line)
    {
        return Ok(OpenSecret::KeyFile(key_file(path)?));
    }
    if !has_password_source(g)
        && let Some(cfg) = hsm_config(g)?
    {
        return Ok(OpenSecret::Hsm(cfg));
    }
    Ok(OpenSecret::Password(password(g, false)?))
}
