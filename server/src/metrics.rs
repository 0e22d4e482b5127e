//! The server's Prometheus metrics (`/metrics`, text format 0.0.4): requests by method and
//! status, bytes in and out, a latency histogram and storage errors. Counters only grow, as
//! Prometheus expects; nothing in them names an identity or an object.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 12] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

/// What the server counts.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    storage_errors: AtomicU64,
    latency_buckets: [AtomicU64; BUCKETS.len()],
    latency_count: AtomicU64,
    latency_sum_us: AtomicU64,
    connections: AtomicU64,
    log_lines_skipped: AtomicU64,
    connections_refused: AtomicU64,
}

impl Metrics {
    /// Counts one answered request.
    pub fn request(&self, method: &str, status: u16, bytes_in: u64, bytes_out: u64, latency: Duration) {
        {
            let mut requests = self.requests.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            // Only the methods the protocol has, so a client cannot grow the map.
            let method = match method {
                "GET" | "HEAD" | "PUT" | "DELETE" | "POST" => method,
                _ => "OTHER",
            };
            *requests.entry((method.to_string(), status)).or_default() += 1;
        }
        self.bytes_in.fetch_add(bytes_in, Ordering::Relaxed);
        self.bytes_out.fetch_add(bytes_out, Ordering::Relaxed);
        let secs = latency.as_secs_f64();
        for (bound, bucket) in BUCKETS.iter().zip(&self.latency_buckets) {
            if secs <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        self.latency_sum_us.fetch_add(u64::try_from(latency.as_micros()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// Counts a failure of the storage behind the server.
    pub fn storage_error(&self) {
        self.storage_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// An unauthenticated refusal went unrecorded (over its address's rate).
    pub fn log_line_skipped(&self) {
        self.log_lines_skipped.fetch_add(1, Ordering::Relaxed);
    }

    /// A connection closed unserved: its address had its share of connections.
    pub fn connection_refused(&self) {
        self.connections_refused.fetch_add(1, Ordering::Relaxed);
    }

    /// A connection opened (`+1`) or closed (`-1`).
    pub fn connection(&self, opened: bool) {
        if opened {
            self.connections.fetch_add(1, Ordering::Relaxed);
        } else {
            self.connections.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// The text `/metrics` answers.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP cairn_server_requests_total Requests answered, by method and status.\n");
        out.push_str("# TYPE cairn_server_requests_total counter\n");
        for ((method, status), n) in self.requests.lock().unwrap_or_else(std::sync::PoisonError::into_inner).iter() {
            let _ = writeln!(out, "cairn_server_requests_total{{method=\"{method}\",status=\"{status}\"}} {n}");
        }
        let counter = |out: &mut String, name: &str, help: &str, v: &AtomicU64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}", v.load(Ordering::Relaxed));
        };
        counter(&mut out, "cairn_server_received_bytes_total", "Request body bytes received.", &self.bytes_in);
        counter(&mut out, "cairn_server_sent_bytes_total", "Response body bytes sent.", &self.bytes_out);
        counter(
            &mut out,
            "cairn_server_storage_errors_total",
            "Failures of the storage behind the server.",
            &self.storage_errors,
        );
        counter(
            &mut out,
            "cairn_server_log_lines_skipped_total",
            "Unauthenticated refusals not written to the server log (over an address's rate).",
            &self.log_lines_skipped,
        );
        counter(
            &mut out,
            "cairn_server_connections_refused_total",
            "Connections closed unserved: their address had its share (--max-connections-per-address).",
            &self.connections_refused,
        );
        let _ = writeln!(
            out,
            "# HELP cairn_server_connections Connections open.\n# TYPE cairn_server_connections gauge\ncairn_server_connections {}",
            self.connections.load(Ordering::Relaxed)
        );
        out.push_str("# HELP cairn_server_request_duration_seconds Time to answer a request.\n");
        out.push_str("# TYPE cairn_server_request_duration_seconds histogram\n");
        for (bound, bucket) in BUCKETS.iter().zip(&self.latency_buckets) {
            let _ = writeln!(
                out,
                "cairn_server_request_duration_seconds_bucket{{le=\"{bound}\"}} {}",
                bucket.load(Ordering::Relaxed)
            );
        }
        let count = self.latency_count.load(Ordering::Relaxed);
        let _ = writeln!(out, "cairn_server_request_duration_seconds_bucket{{le=\"+Inf\"}} {count}");
        let sum = self.latency_sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "cairn_server_request_duration_seconds_sum {sum}");
        let _ = writeln!(out, "cairn_server_request_duration_seconds_count {count}");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_by_method_and_status_with_a_cumulative_histogram() {
        let m = Metrics::default();
        m.request("PUT", 201, 100, 0, Duration::from_millis(3));
        m.request("PUT", 201, 50, 0, Duration::from_millis(300));
        m.request("BREW", 400, 0, 10, Duration::from_secs(20));
        m.storage_error();
        let text = m.render();
        assert!(text.contains("cairn_server_requests_total{method=\"PUT\",status=\"201\"} 2\n"), "{text}");
        assert!(text.contains("cairn_server_requests_total{method=\"OTHER\",status=\"400\"} 1\n"), "{text}");
        assert!(text.contains("cairn_server_received_bytes_total 150\n"), "{text}");
        assert!(text.contains("cairn_server_sent_bytes_total 10\n"), "{text}");
        assert!(text.contains("cairn_server_storage_errors_total 1\n"), "{text}");
        assert!(text.contains("_bucket{le=\"0.005\"} 1\n"), "{text}");
        assert!(text.contains("_bucket{le=\"0.5\"} 2\n"), "{text}");
        assert!(text.contains("_bucket{le=\"+Inf\"} 3\n"), "{text}");
        assert!(text.contains("_count 3\n"), "{text}");
    }
}
