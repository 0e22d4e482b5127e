//! The server log: one JSON line per request that changes state and per refused request. Each
//! line carries `prev`, the MAC of the line before it, and ends with `mac`, a BLAKE3 MAC keyed
//! with the server's log key over every byte before it. So `verify` finds an edited line (its
//! MAC fails), a deleted line (the next one does not follow), lines reordered, and lines cut
//! from the start; someone without the log key cannot forge lines to paper over it. What the
//! chain cannot show is the loss of the newest lines with nothing after them: the server states
//! its head (line count and last MAC) when it stops, for monitoring to keep elsewhere.
//!
//! A change is answered only once its line is on the disk (syncs shared between concurrent
//! requests), and while lines cannot be written (or once a sync has failed, until a restart)
//! the server makes no change at all.
//!
//! A record names the identity, never its token: no secret enters the log.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The MAC field that closes every line; everything before it is what the MAC covers.
const MAC_FIELD: &str = ",\"mac\":\"";

/// The `prev` of a log's first line.
const GENESIS: [u8; 32] = [0; 32];

/// The key lines are MACed with, kept in a file only the server reads.
#[derive(Clone)]
pub struct LogKey([u8; 32]);

impl std::fmt::Debug for LogKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LogKey(..)")
    }
}

impl Drop for LogKey {
    fn drop(&mut self) {
        self.0 = [0; 32];
    }
}

impl LogKey {
    /// A new random key written to `path` (created, mode 0600; an existing file is refused).
    pub fn create(path: &Path) -> Result<Self> {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).map_err(|e| Error::Internal(format!("no randomness: {e}")))?;
        let mut file = {
            use std::os::unix::fs::OpenOptionsExt;
            OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)
        }
        .map_err(|e| Error::io(path, e))?;
        file.write_all(format!("{}\n", hex::encode(key)).as_bytes()).map_err(|e| Error::io(path, e))?;
        file.sync_all().map_err(|e| Error::io(path, e))?;
        Ok(LogKey(key))
    }

    /// The key in `path` (64 hex digits).
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let mut key = [0u8; 32];
        hex::decode_to_slice(text.trim(), &mut key)
            .map_err(|_| Error::Config(format!("{}: not a log key (64 hex digits)", path.display())))?;
        Ok(LogKey(key))
    }

    fn mac(&self, bytes: &[u8]) -> [u8; 32] {
        *blake3::keyed_hash(&self.0, bytes).as_bytes()
    }
}

/// What one request did, as the log records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// When the request ended, RFC 3339 UTC.
    pub time: String,
    /// The identity that made it; `None` when none was authenticated.
    pub identity: Option<String>,
    /// The client's address.
    pub remote: String,
    /// The repository it addressed.
    pub repository: String,
    /// HTTP method.
    pub method: String,
    /// The object name within the repository (empty for a listing).
    pub object: String,
    /// Request body bytes.
    pub size: u64,
    /// HTTP status answered.
    pub status: u16,
    /// Time taken, in microseconds.
    pub latency_us: u64,
}

impl Record {
    /// The time field for `at`.
    pub fn time_of(at: SystemTime) -> String {
        humantime::format_rfc3339_millis(at).to_string()
    }

    /// The latency field for `elapsed`.
    pub fn latency_of(elapsed: Duration) -> u64 {
        u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX)
    }
}

/// A line as written, before its MAC.
#[derive(Serialize, Deserialize)]
struct Line {
    seq: u64,
    #[serde(flatten)]
    record: Record,
    prev: String,
}

/// A line as read back, MAC included.
#[derive(Deserialize)]
struct SealedLine {
    seq: u64,
    prev: String,
    mac: String,
}

struct Head {
    file: File,
    seq: u64,
    mac: [u8; 32],
    /// The log's length after its last whole line.
    len: u64,
}

/// The log a server appends to.
pub struct ServerLog {
    path: PathBuf,
    key: LogKey,
    head: Mutex<Head>,
    /// A second handle on the file for `sync_data`, so lines go on being appended while a
    /// sync runs; under its lock, the last line known to be on the disk.
    durable: Mutex<(File, u64)>,
    /// Whether the last append failed (a full disk): state-changing requests wait for a line
    /// to be written again.
    failing: std::sync::atomic::AtomicBool,
    /// Whether a sync ever failed: lines written before it may never reach the disk, and
    /// Linux reports such a failure once, so nothing later can show them safe. Until the
    /// server restarts (and verifies the log), it makes no change.
    sync_failed: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for ServerLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerLog").field("path", &self.path).finish_non_exhaustive()
    }
}

impl ServerLog {
    /// Opens the log at `path` for appending, creating it if need be. An existing log must
    /// verify: a server does not extend a chain someone has broken.
    pub fn open(path: &Path, key: LogKey) -> Result<Self> {
        cut_torn_tail(path)?;
        let report = if path.exists() { verify(path, &key)? } else { Verified::default() };
        if let Some(problem) = report.problems.first() {
            return Err(Error::Config(format!(
                "{}: the server log does not verify ({problem}); move it aside to start a new one",
                path.display()
            )));
        }
        let file = OpenOptions::new().create(true).append(true).open(path).map_err(|e| Error::io(path, e))?;
        let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
        let syncing = file.try_clone().map_err(|e| Error::io(path, e))?;
        let head = Head { file, seq: report.lines, mac: report.head, len };
        Ok(ServerLog {
            path: path.to_path_buf(),
            key,
            durable: Mutex::new((syncing, report.lines)),
            head: Mutex::new(head),
            failing: std::sync::atomic::AtomicBool::new(false),
            sync_failed: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Whether the last append failed: the server then refuses changes (503) until a line
    /// can be written again, so nothing it stores goes unrecorded for long.
    pub fn failing(&self) -> bool {
        self.failing.load(std::sync::atomic::Ordering::Relaxed)
            || self.sync_failed.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Appends `record` as the next line and makes it durable: on the disk when this returns.
    /// Syncs are shared: a request that finds its line already synced by another's sync does
    /// not sync again, so concurrent requests cost one `fdatasync` between them.
    pub fn append_durably(&self, record: Record) -> Result<()> {
        let seq = self.append(record)?;
        let mut durable = self.durable.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if self.sync_failed.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(Error::io(&self.path, std::io::Error::other("an earlier sync of the log failed")));
        }
        if durable.1 >= seq {
            return Ok(());
        }
        let written = self.head.lock().unwrap_or_else(std::sync::PoisonError::into_inner).seq;
        if let Err(e) = durable.0.sync_data() {
            self.sync_failed.store(true, std::sync::atomic::Ordering::Relaxed);
            return Err(Error::io(&self.path, e));
        }
        durable.1 = written;
        Ok(())
    }

    /// Appends `record` as the next line; written (not synced) before this returns, in one
    /// write call, so a killed server leaves whole lines. Returns its sequence number.
    pub fn append(&self, record: Record) -> Result<u64> {
        let appended = self.append_line(record);
        self.failing.store(appended.is_err(), std::sync::atomic::Ordering::Relaxed);
        appended
    }

    fn append_line(&self, record: Record) -> Result<u64> {
        let mut head = self.head.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let line = Line { seq: head.seq + 1, record, prev: hex::encode(head.mac) };
        let mut text = serde_json::to_string(&line).map_err(|e| Error::Internal(e.to_string()))?;
        text.pop(); // the closing brace: the MAC field goes before it
        let mac = self.key.mac(text.as_bytes());
        text.push_str(MAC_FIELD);
        text.push_str(&hex::encode(mac));
        text.push_str("\"}\n");
        if let Err(e) = head.file.write_all(text.as_bytes()) {
            // A disk that filled up mid-line: cut the part written, so the next line does not
            // glue onto it and break the chain for good.
            let _ = head.file.set_len(head.len);
            return Err(Error::io(&self.path, e));
        }
        head.len += text.len() as u64;
        head.seq += 1;
        head.mac = mac;
        Ok(head.seq)
    }

    /// Lines written so far and the MAC of the last: what the server states when it stops.
    pub fn head(&self) -> (u64, String) {
        let head = self.head.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        (head.seq, hex::encode(head.mac))
    }

    /// Writes what was appended through to the disk.
    pub fn sync(&self) -> Result<()> {
        let head = self.head.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        head.file.sync_data().map_err(|e| Error::io(&self.path, e))
    }
}

/// Cuts a last line that has no newline: a write the server did not finish (killed, disk
/// full). It never joined the chain (no line after it names its MAC), so nothing verified is
/// lost, and the next line would otherwise be glued onto it.
fn cut_torn_tail(path: &Path) -> Result<()> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(path, e)),
    };
    if bytes.is_empty() || bytes.ends_with(b"\n") {
        return Ok(());
    }
    let whole = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    let file = OpenOptions::new().write(true).open(path).map_err(|e| Error::io(path, e))?;
    file.set_len(whole as u64).map_err(|e| Error::io(path, e))?;
    file.sync_all().map_err(|e| Error::io(path, e))
}

/// What [`verify`] found.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Verified {
    /// Lines read.
    pub lines: u64,
    /// The MAC of the last line, as it claims.
    pub head: [u8; 32],
    /// One entry per break in the chain, naming the line.
    pub problems: Vec<String>,
}

/// Checks the whole log at `path` against `key`.
pub fn verify(path: &Path, key: &LogKey) -> Result<Verified> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut out = Verified { head: GENESIS, ..Verified::default() };
    // The sequence number the previous line claims.
    let mut seq = 0;
    for (n, line) in BufReader::new(file).split(b'\n').enumerate() {
        let line = line.map_err(|e| Error::io(path, e))?;
        let n = n as u64 + 1;
        out.lines = n;
        let Some(sealed) = parse(&line) else {
            out.problems.push(format!("line {n}: not a server log line"));
            continue;
        };
        let covered = line.len().saturating_sub(MAC_FIELD.len() + 64 + 2);
        let claimed = sealed.mac;
        if line.get(..covered).map(|b| key.mac(b)) != Some(claimed) {
            out.problems.push(format!("line {n}: edited (its MAC does not match)"));
        } else if sealed.prev != out.head || sealed.seq != seq + 1 {
            out.problems.push(if n == 1 {
                format!("line {n}: the log does not start at its first line (lines before it were deleted)")
            } else {
                format!(
                    "line {n}: does not follow line {} (a line between them was deleted, or lines were reordered)",
                    n - 1
                )
            });
        }
        out.head = claimed;
        seq = sealed.seq;
    }
    Ok(out)
}

struct Parsed {
    seq: u64,
    prev: [u8; 32],
    mac: [u8; 32],
}

fn parse(line: &[u8]) -> Option<Parsed> {
    let sealed: SealedLine = serde_json::from_slice(line).ok()?;
    let tail = format!("{MAC_FIELD}{}\"}}", sealed.mac);
    if !line.ends_with(tail.as_bytes()) || sealed.mac.len() != 64 {
        return None;
    }
    let mut prev = [0u8; 32];
    let mut mac = [0u8; 32];
    hex::decode_to_slice(&sealed.prev, &mut prev).ok()?;
    hex::decode_to_slice(&sealed.mac, &mut mac).ok()?;
    Some(Parsed { seq: sealed.seq, prev, mac })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(i: u64) -> Record {
        Record {
            time: Record::time_of(SystemTime::UNIX_EPOCH + Duration::from_secs(i)),
            identity: Some(format!("host{}", i % 3)),
            remote: "127.0.0.1:5000".into(),
            repository: "main".into(),
            method: "PUT".into(),
            object: format!("snapshots/{i:064x}"),
            size: i * 100,
            status: if i.is_multiple_of(4) { 403 } else { 201 },
            latency_us: 250,
        }
    }

    fn written(n: u64) -> (tempfile::TempDir, PathBuf, LogKey) {
        let dir = tempfile::tempdir().unwrap();
        let key = LogKey::create(&dir.path().join("log.key")).unwrap();
        let path = dir.path().join("server.log");
        let log = ServerLog::open(&path, key.clone()).unwrap();
        for i in 0..n {
            log.append(record(i)).unwrap();
        }
        (dir, path, key)
    }

    fn lines(path: &Path) -> Vec<String> {
        std::fs::read_to_string(path).unwrap().lines().map(String::from).collect()
    }

    fn rewrite(path: &Path, lines: &[String]) {
        std::fs::write(path, lines.iter().map(|l| format!("{l}\n")).collect::<String>()).unwrap();
    }

    #[test]
    fn lines_appended_durably_from_many_threads_form_one_chain() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("serve.log");
        let key = LogKey::create(&dir.path().join("serve.log.key")).unwrap();
        let log = ServerLog::open(&path, key.clone()).unwrap();
        std::thread::scope(|s| {
            for t in 0..8 {
                let log = &log;
                s.spawn(move || (0..25).for_each(|i| log.append_durably(record(t * 100 + i)).unwrap()));
            }
        });
        assert!(!log.failing());
        assert_eq!(log.head().0, 200);
        assert_eq!(log.durable.lock().unwrap().1, 200, "every line was synced");
        let report = verify(&path, &key).unwrap();
        assert_eq!((report.lines, report.problems.len()), (200, 0), "{:?}", report.problems);
    }

    #[test]
    fn a_whole_log_verifies_and_reopening_continues_the_chain() {
        let (_dir, path, key) = written(5);
        let report = verify(&path, &key).unwrap();
        assert_eq!((report.lines, report.problems.len()), (5, 0), "{:?}", report.problems);
        let log = ServerLog::open(&path, key.clone()).unwrap();
        log.append(record(5)).unwrap();
        assert_eq!(log.head().0, 6);
        assert_eq!(log.head().1, hex::encode(verify(&path, &key).unwrap().head));
        assert!(verify(&path, &key).unwrap().problems.is_empty());
        let parsed: Record = serde_json::from_str(&lines(&path)[5]).unwrap();
        assert_eq!(parsed, record(5), "a line is the record, plus seq, prev and mac");
    }

    #[test]
    fn an_edited_a_deleted_and_reordered_lines_are_each_reported() {
        let (_dir, path, key) = written(6);
        let original = lines(&path);

        let mut edited = original.clone();
        edited[4] = edited[4].replace("\"status\":403", "\"status\":200");
        assert_ne!(edited[4], original[4]);
        rewrite(&path, &edited);
        assert_eq!(verify(&path, &key).unwrap().problems, ["line 5: edited (its MAC does not match)"]);

        let mut deleted = original.clone();
        deleted.remove(2);
        rewrite(&path, &deleted);
        let problems = verify(&path, &key).unwrap().problems;
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].starts_with("line 3: does not follow line 2"), "{problems:?}");

        let mut reordered = original.clone();
        reordered.swap(1, 2);
        rewrite(&path, &reordered);
        let problems = verify(&path, &key).unwrap().problems;
        assert!(problems.iter().any(|p| p.starts_with("line 2: does not follow")), "{problems:?}");

        rewrite(&path, &original[2..]);
        let problems = verify(&path, &key).unwrap().problems;
        assert!(problems[0].starts_with("line 1: the log does not start"), "{problems:?}");

        // The last line too: its own MAC covers it.
        let mut last = original.clone();
        last[5] = last[5].replace("host2", "host0");
        rewrite(&path, &last);
        assert_eq!(verify(&path, &key).unwrap().problems, ["line 6: edited (its MAC does not match)"]);

        // A torn last line (a write the server did not finish) is cut when the log is opened.
        let mut torn: String = original.iter().map(|l| format!("{l}\n")).collect();
        torn.push_str("{\"seq\":7,\"time\":");
        std::fs::write(&path, &torn).unwrap();
        let log = ServerLog::open(&path, key.clone()).unwrap();
        log.append(record(6)).unwrap();
        drop(log);
        let report = verify(&path, &key).unwrap();
        assert_eq!((report.lines, report.problems.len()), (7, 0), "{:?}", report.problems);

        // And a server refuses to extend a broken log.
        rewrite(&path, &last);
        let e = ServerLog::open(&path, key.clone()).unwrap_err();
        assert!(e.to_string().contains("does not verify"), "{e}");
    }

    #[test]
    fn a_forger_without_the_key_cannot_rebuild_the_chain() {
        let (dir, path, key) = written(3);
        let other = LogKey::create(&dir.path().join("other.key")).unwrap();
        // Lines made with another key (a forger's) do not verify with the server's.
        let forged_path = dir.path().join("forged.log");
        let forged = ServerLog::open(&forged_path, other).unwrap();
        for i in 0..3 {
            forged.append(record(i + 10)).unwrap();
        }
        let report = verify(&forged_path, &key).unwrap();
        assert_eq!(report.problems.len(), 3, "{:?}", report.problems);
        assert!(verify(&path, &key).unwrap().problems.is_empty());
    }

    #[test]
    fn garbage_lines_and_a_bad_key_file_are_errors_not_panics() {
        let (dir, path, key) = written(2);
        let mut text = std::fs::read(&path).unwrap();
        text.extend_from_slice(b"{\"seq\":3}\n\xff\xfe not json\n,\"mac\":\"\"}\n");
        std::fs::write(&path, &text).unwrap();
        let report = verify(&path, &key).unwrap();
        assert_eq!(report.lines, 5);
        assert_eq!(report.problems.len(), 3, "{:?}", report.problems);
        let bad = dir.path().join("bad.key");
        std::fs::write(&bad, "not hex").unwrap();
        assert!(LogKey::load(&bad).is_err());
        assert!(LogKey::create(&dir.path().join("log.key")).is_err(), "an existing key is never overwritten");
    }
}
