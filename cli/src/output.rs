//! Text versus `--json` output. JSON goes to stdout as exactly one document; human text and
//! errors go to stderr or stdout as a person expects.

use serde::Serialize;

/// A line on standard error that cannot panic: a warning from a long-running command (a mount)
/// whose terminal may be gone.
pub fn warn(msg: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{msg}");
}

/// Prints `value` as the command's one JSON document.
pub fn json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Reports an error: a JSON object on stdout with --json, a message on stderr always.
pub fn error(err: &anyhow::Error, json_mode: bool) {
    let message = error_text(err);
    if json_mode {
        let doc = serde_json::json!({ "error": message, "exit_code": crate::exit::code_for(err) });
        println!("{doc}");
    }
    eprintln!("cairn: error: {message}");
}

/// The error and its causes on one line, each cause only if the text so far does not already
/// say it: the engine's errors include their source in their own message, and `{:#}` would
/// print it twice ("No space left on device: No space left on device").
fn error_text(err: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in err.chain() {
        let part = cause.to_string();
        if part.is_empty() || text.contains(&part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    text
}

/// An engine error with what to do about it. Its source is the engine error, so the exit code
/// stays that error's.
#[derive(Debug)]
pub struct Hinted {
    pub error: cairn_engine::Error,
    pub hint: String,
}

impl std::fmt::Display for Hinted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.error, self.hint)
    }
}

impl std::error::Error for Hinted {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

/// Human-readable byte count.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{n} B") } else { format!("{v:.2} {}", UNITS[unit]) }
}

/// Who wrote a snapshot, for people.
pub fn writer(w: cairn_engine::format::snapshot::Writer) -> String {
    use cairn_engine::format::snapshot::Writer;
    match w {
        Writer::Full => "full key".into(),
        Writer::WriteOnly(slot) => format!("write-only slot {}", slot.short()),
    }
}

/// A machine-readable writer: `full` or `write-only:<slot id>`.
pub fn writer_json(w: cairn_engine::format::snapshot::Writer) -> String {
    use cairn_engine::format::snapshot::Writer;
    match w {
        Writer::Full => "full".into(),
        Writer::WriteOnly(slot) => format!("write-only:{}", slot.to_hex()),
    }
}

/// Formats ns since the epoch as UTC `YYYY-MM-DD HH:MM:SS`.
pub fn time(ns: i64) -> String {
    cairn_engine::utc::format(ns)
}

/// Shows a new recovery code once, with what to do with it.
pub fn recovery_code(code: &str) {
    println!();
    println!("Recovery code (shown once; write it down and keep it apart from this machine):");
    println!();
    println!("    {code}");
    println!();
    println!("It opens the repository on its own: with `--recovery-code-file FILE`.");
}

/// The file a new secret (a recovery code, a key file) goes to, created (exclusively, mode
/// 0600) before the secret exists: a path that cannot be used stops the command before it
/// creates anything. Removed again when dropped without the secret written into it.
pub struct SecretFile {
    path: std::path::PathBuf,
    file: Option<std::fs::File>,
}

impl SecretFile {
    /// Creates `path`, which must not exist yet, for `what` ("the recovery code").
    pub fn create(path: &std::path::Path, what: &str) -> anyhow::Result<Self> {
        use std::os::unix::fs::OpenOptionsExt;
        let file =
            std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(|e| {
                anyhow::anyhow!("cannot create {} for {what} ({e}); nothing was created", path.display())
            })?;
        Ok(SecretFile { path: path.to_path_buf(), file: Some(file) })
    }

    /// Where it is.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Writes `text` (with a line end) and syncs it. On failure the file is removed.
    pub fn write(mut self, text: &str) -> std::io::Result<()> {
        use std::io::Write;
        let mut file = self.file.take().ok_or_else(|| std::io::Error::other("already written"))?;
        let mut body = zeroize::Zeroizing::new(text.to_string());
        if !body.ends_with('\n') {
            body.push('\n');
        }
        let result = file.write_all(body.as_bytes()).and_then(|()| file.sync_all());
        if result.is_err() {
            let _ = std::fs::remove_file(&self.path);
        }
        result
    }
}

impl Drop for SecretFile {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Puts a new recovery code where it was asked to go: into `file` when one was made, else (and
/// when writing it fails: the slot exists, so the code must not be lost) on stdout. Returns the
/// code when it was not written to a file, for the caller to print or put in its JSON.
pub fn place_recovery_code(
    file: Option<SecretFile>,
    code: Option<zeroize::Zeroizing<String>>,
) -> Option<zeroize::Zeroizing<String>> {
    let (Some(file), Some(code)) = (file, code.as_ref()) else { return code };
    let path = file.path().display().to_string();
    match file.write(code) {
        Ok(()) => None,
        Err(e) => {
            eprintln!("cairn: warning: could not write the recovery code to {path} ({e}); it is shown here instead");
            Some(code.clone())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_names_each_cause_once() {
        let io = std::io::Error::new(std::io::ErrorKind::StorageFull, "No space left on device");
        let engine = cairn_engine::Error::Target { path: "/t/f".into(), source: io };
        let err = anyhow::Error::new(engine).context("restore failed");
        assert_eq!(error_text(&err), "restore failed: cannot restore /t/f: No space left on device");
        // Causes the text does not include yet are kept.
        let err = anyhow::anyhow!("inner cause").context("outer");
        assert_eq!(error_text(&err), "outer: inner cause");
    }
}
