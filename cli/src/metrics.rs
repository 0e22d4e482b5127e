//! `--metrics-file`: Prometheus text-format metrics for node_exporter's textfile collector.
//! Commands record values as they finish; `main` writes the file (temp file + rename, so the
//! collector never reads half of it) with the duration, the exit code, and the time of the
//! last success, which a failed run carries over from the previous file so that an alert on
//! "no success for 2 days" keeps working.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Mutex;

static RECORDED: Mutex<Vec<(&'static str, &'static str, f64)>> = Mutex::new(Vec::new());

/// Records a gauge `cairn_<operation>_<name>` with its help text.
pub fn record(name: &'static str, help: &'static str, value: f64) {
    RECORDED.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push((name, help, value));
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// The last success time recorded in an existing metrics file.
fn previous_success(path: &Path, metric: &str) -> Option<f64> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().find(|l| l.starts_with(metric)).and_then(|l| l.rsplit(' ').next()).and_then(|v| v.parse().ok())
}

/// Writes the metrics of `operation` to `path`.
pub fn write(
    path: &Path,
    operation: &str,
    repository: &str,
    duration_seconds: f64,
    exit_code: i32,
) -> std::io::Result<()> {
    let labels = format!("{{repository=\"{}\"}}", escape(repository));
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, value: f64| {
        let _ = writeln!(out, "# HELP cairn_{operation}_{name} {help}");
        let _ = writeln!(out, "# TYPE cairn_{operation}_{name} gauge");
        let _ = writeln!(out, "cairn_{operation}_{name}{labels} {value}");
    };
    gauge("duration_seconds", "How long the last run took.", duration_seconds);
    gauge("exit_code", "Exit code of the last run (0 ok, 3 partial snapshot, 11 locked, ...).", f64::from(exit_code));
    let success_metric = format!("cairn_{operation}_last_success_timestamp_seconds");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
    let success = if exit_code == 0 || (operation == "snapshot" && exit_code == 3) {
        Some(now)
    } else {
        previous_success(path, &success_metric)
    };
    if let Some(t) = success {
        gauge("last_success_timestamp_seconds", "When a run last succeeded (Unix time).", t.floor());
    }
    for (name, help, value) in RECORDED.lock().unwrap_or_else(std::sync::PoisonError::into_inner).iter() {
        gauge(name, help, *value);
    }
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    std::fs::write(&tmp, out)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_run_keeps_the_last_success_time() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("cairn.prom");
        record("files_new", "Files new in the snapshot.", 12.0);
        write(&p, "snapshot", "/srv/repo \"x\"", 1.5, 0).unwrap();
        let ok = std::fs::read_to_string(&p).unwrap();
        assert!(ok.contains("cairn_snapshot_files_new{repository=\"/srv/repo \\\"x\\\"\"} 12"), "{ok}");
        let t = previous_success(&p, "cairn_snapshot_last_success_timestamp_seconds").unwrap();
        write(&p, "snapshot", "/srv/repo", 0.2, 1).unwrap();
        let failed = std::fs::read_to_string(&p).unwrap();
        assert!(failed.contains("cairn_snapshot_exit_code{repository=\"/srv/repo\"} 1"), "{failed}");
        assert_eq!(previous_success(&p, "cairn_snapshot_last_success_timestamp_seconds"), Some(t));
    }
}
