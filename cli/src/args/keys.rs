//! Arguments of `key` (slots, rotation, epochs) and `audit`.

use std::path::PathBuf;

use clap::{Args, Subcommand};

#[derive(Debug, Args)]
pub struct KeyArgs {
    #[command(subcommand)]
    pub command: KeyCommand,
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// List key slots: id, kind, label, created, last used (from the audit log).
    List,
    /// Add a key slot: a password, a new recovery code, a new key file, or a key on an HSM token.
    Add(KeyAddArgs),
    /// Remove a key slot (never the last one that opens the repository).
    Remove(KeyRemoveArgs),
    /// Change the password of the slot the repository is opened with.
    Passwd(NewPasswordArgs),
    /// Make a new repository key and data-key epoch; re-seal every slot to it.
    Rotate(KeyRotateArgs),
    /// Show the data-key epochs and what each still seals.
    Epochs,
    /// Drop a data-key epoch from the keyring once nothing is sealed under it.
    RetireEpoch(RetireEpochArgs),
}

#[derive(Debug, Args)]
#[group(id = "slot_kind", required = true, multiple = false)]
pub struct KeyAddArgs {
    /// A password slot (new password from --new-password-file, CAIRN_NEW_PASSWORD or a prompt).
    #[arg(long, group = "slot_kind")]
    pub password: bool,
    /// A recovery-code slot: prints a new code once.
    #[arg(long, group = "slot_kind")]
    pub recovery: bool,
    /// An HSM slot (--hsm-module, --hsm-token, --hsm-key, PIN); creates the key on the token
    /// (AES-256, sensitive, non-extractable) when it does not exist.
    #[arg(long, group = "slot_kind")]
    pub hsm: bool,
    /// A key-file slot, for unattended jobs: writes a new key file to PATH (mode 0600; PATH
    /// must not exist). Open with `--key-file PATH` or CAIRN_KEY_FILE.
    #[arg(long, group = "slot_kind", value_name = "PATH")]
    pub new_key_file: Option<PathBuf>,
    /// Make the slot write-only (with --password, --new-key-file or --hsm): it can add backups and
    /// read nothing, not even what it wrote; restores need a full key. For backed-up hosts, so
    /// a host that is broken into gives away no backup.
    #[arg(long)]
    pub write_only: bool,
    /// A label to tell the slot apart in `key list` (stored encrypted).
    #[arg(long, default_value = "")]
    pub label: String,
    /// Write a new recovery code to this file (mode 0600) instead of printing it.
    #[arg(long)]
    pub recovery_code_out: Option<PathBuf>,
    #[command(flatten)]
    pub new_password: NewPasswordArgs,
}

#[derive(Debug, Args)]
pub struct NewPasswordArgs {
    /// Read the new password from this file (first line).
    #[arg(long, env = "CAIRN_NEW_PASSWORD_FILE", value_name = "PATH")]
    pub new_password_file: Option<PathBuf>,
    /// Argon2id memory in KiB for the new password (default: 65536).
    #[arg(long, value_name = "KIB")]
    pub kdf_memory: Option<u32>,
    /// Argon2id iterations (default: calibrated to about 0.5 s on this machine).
    #[arg(long, value_name = "N")]
    pub kdf_iterations: Option<u32>,
}

#[derive(Debug, Args)]
pub struct KeyRemoveArgs {
    /// Slot id or unique prefix.
    pub id: String,
    /// Allow removing the slot this command opened the repository with.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct KeyRotateArgs {
    /// Then re-encrypt everything sealed under older epochs and retire them.
    #[arg(long)]
    pub reencrypt: bool,
}

#[derive(Debug, Args)]
pub struct RetireEpochArgs {
    /// The epoch to drop.
    pub epoch: u32,
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    #[command(subcommand)]
    pub command: AuditCommand,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Print the audit log, oldest first.
    Log,
    /// Prove the chain is whole and agrees with the repository; exits 1 when it does not.
    Verify,
}
