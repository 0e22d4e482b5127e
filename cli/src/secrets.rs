//! Where the password or recovery code comes from: --recovery-code-file, --password-file,
//! --password-command, CAIRN_PASSWORD, else a prompt when stdin is a tty. Never a prompt
//! without a tty: unattended jobs fail fast with a clear message.

use std::io::IsTerminal;
use std::process::Command;

use anyhow::{Context, bail};
use cairn_engine::crypto::SecretBytes;
use cairn_engine::keys::{OpenSecret, RecoveryCode};

use crate::args::GlobalArgs;

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
        return Ok(SecretBytes::from(pw));
    }
    if !std::io::stdin().is_terminal() {
        bail!(
            "no password given and no terminal to ask on: use --password-file, --password-command, CAIRN_PASSWORD_FILE or CAIRN_PASSWORD"
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

/// The secret that opens the repository.
pub fn open_secret(g: &GlobalArgs) -> anyhow::Result<OpenSecret> {
    if let Some(path) = &g.recovery_code_file {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading recovery code file {}", path.display()))?;
        let code = RecoveryCode::parse(&text).with_context(|| format!("recovery code in {}", path.display()))?;
        return Ok(OpenSecret::Recovery(code));
    }
    Ok(OpenSecret::Password(password(g, false)?))
}
