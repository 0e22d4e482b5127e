//! Text versus `--json` output. JSON goes to stdout as exactly one document; human text and
//! errors go to stderr or stdout as a person expects.

use serde::Serialize;

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

/// Formats ns since the epoch as UTC `YYYY-MM-DD HH:MM:SS`.
pub fn time(ns: i64) -> String {
    cairn_engine::civil::format_utc(ns)
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

/// Writes a new recovery code to `path`, which must not exist yet, readable by its owner only.
pub fn write_recovery_code(path: &std::path::Path, code: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| anyhow::anyhow!("writing recovery code to {}: {e}", path.display()))?;
    writeln!(f, "{code}")?;
    Ok(())
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
