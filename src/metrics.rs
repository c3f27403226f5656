//! Process-wide counters for `/metrics` (Prometheus text format): messages accepted, deliveries by
//! outcome, a histogram of attempt durations, the server's connections (open, cap, refused).
//! Gauges that live in the store (queue depth, oldest due task, disabled endpoints, store size,
//! free disk space and writes refused for lack of it) are read at scrape time by the API. Plain
//! atomics: counting costs a few nanoseconds on the hot paths. A once-a-minute snapshot of the
//! counters keeps the last hour, per minute, for the admin dashboard (in memory: it restarts at
//! zero).

use std::collections::VecDeque;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds of the attempt-duration buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// How a try ended, for counting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// An HTTP answer that is not 2xx.
    HttpError,
    Timeout,
    /// DNS, connect, TLS, refused by the SSRF guard.
    NetworkError,
}

const OUTCOMES: [(Outcome, &str); 4] = [
    (Outcome::Success, "success"),
    (Outcome::HttpError, "http_error"),
    (Outcome::Timeout, "timeout"),
    (Outcome::NetworkError, "network_error"),
];

#[derive(Debug, Default)]
pub struct Metrics {
    messages_accepted: AtomicU64,
    /// Of those, test events (`send-example`).
    test_messages_accepted: AtomicU64,
    deliveries: [AtomicU64; 4],
    /// Cumulative counts per bucket, then the +Inf bucket.
    duration_buckets: [AtomicU64; 13],
    duration_micros_sum: AtomicU64,
    /// Counter values at the start of each recent minute, oldest first.
    minutes: Mutex<VecDeque<(i64, Counts)>>,
    started: Started,
    connections: Connections,
}

/// The HTTP server's connections: open now, the cap, and those refused over it.
#[derive(Debug, Default)]
struct Connections {
    open: AtomicU64,
    max: AtomicU64,
    refused: AtomicU64,
}

/// When the process began counting.
#[derive(Debug)]
struct Started(std::time::Instant);

impl Default for Started {
    fn default() -> Self {
        Started(std::time::Instant::now())
    }
}

/// Minutes of history kept (the current one comes on top).
const HISTORY_MINUTES: usize = 60;

/// The counters the dashboard shows, cumulative or over a span.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub accepted: u64,
    /// Of `accepted`, test events sent with `send-example`.
    pub test: u64,
    /// Tries that succeeded.
    pub delivered: u64,
    /// Tries that did not (an error status, a timeout, a network error).
    pub failed: u64,
}

impl Counts {
    fn minus(self, earlier: Counts) -> Counts {
        Counts {
            accepted: self.accepted.saturating_sub(earlier.accepted),
            test: self.test.saturating_sub(earlier.test),
            delivered: self.delivered.saturating_sub(earlier.delivered),
            failed: self.failed.saturating_sub(earlier.failed),
        }
    }

    fn plus(self, other: Counts) -> Counts {
        Counts {
            accepted: self.accepted + other.accepted,
            test: self.test + other.test,
            delivered: self.delivered + other.delivered,
            failed: self.failed + other.failed,
        }
    }
}

/// The last hour: one entry per minute (start in ms since the epoch), oldest first, the current
/// minute last; and their sum.
#[derive(Debug, Clone, Default)]
pub struct Recent {
    pub per_minute: Vec<(i64, Counts)>,
    pub total: Counts,
}

/// Values read from the store at scrape time.
#[derive(Debug, Clone, Default)]
pub struct StoreGauges {
    pub queue_depth: u64,
    pub oldest_due_age_seconds: f64,
    pub disabled_endpoints: u64,
    pub store_bytes: u64,
    /// Bytes on disk of sled's files and of the payload log.
    pub store_tree_bytes: u64,
    pub store_payload_bytes: u64,
    /// Bytes this process had the block layer write (`/proc/self/io` `write_bytes`), if known.
    pub write_bytes: Option<u64>,
    pub storage: StorageGauges,
}

/// The store's disk, read fresh at each scrape (cheap, unlike the queue figures).
#[derive(Debug, Clone, Default)]
pub struct StorageGauges {
    /// `None` when the file system cannot be read.
    pub free_bytes: Option<u64>,
    pub min_free_bytes: u64,
    /// New writes are refused (disk under the reserve, or commits fail).
    pub degraded: bool,
    /// Writes refused for lack of disk space since start (answered 507).
    pub refused_writes: u64,
}

impl Metrics {
    pub fn message_accepted(&self) {
        self.messages_accepted.fetch_add(1, Ordering::Relaxed);
    }

    /// A test event accepted: counted as accepted too (it is real traffic to the endpoint), and
    /// apart, so the dashboard can tell them apart.
    pub fn test_message_accepted(&self) {
        self.message_accepted();
        self.test_messages_accepted.fetch_add(1, Ordering::Relaxed);
    }

    pub fn attempt(&self, outcome: Outcome, took: Duration) {
        let i = OUTCOMES
            .iter()
            .position(|(o, _)| *o == outcome)
            .unwrap_or(0);
        self.deliveries[i].fetch_add(1, Ordering::Relaxed);
        let secs = took.as_secs_f64();
        let bucket = BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(BUCKETS.len());
        self.duration_buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.duration_micros_sum
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    }

    pub fn connection_opened(&self) {
        self.connections.open.fetch_add(1, Ordering::Relaxed);
    }

    pub fn connection_closed(&self) {
        self.connections.open.fetch_sub(1, Ordering::Relaxed);
    }

    /// A connection closed at once because `server.max_connections` were open.
    pub fn connection_refused(&self) {
        self.connections.refused.fetch_add(1, Ordering::Relaxed);
    }

    pub fn set_connections_max(&self, max: u64) {
        self.connections.max.store(max, Ordering::Relaxed);
    }

    pub fn uptime(&self) -> Duration {
        self.started.0.elapsed()
    }

    fn totals(&self) -> Counts {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Counts {
            accepted: load(&self.messages_accepted),
            test: load(&self.test_messages_accepted),
            delivered: load(&self.deliveries[0]),
            failed: self.deliveries[1..].iter().map(load).sum(),
        }
    }

    /// Note the counters at the start of the minute `now_ms` falls in, once per minute. Called
    /// every few seconds by a timer, and before each read, so a count lands in the minute it was
    /// made in, give or take the timer's period.
    pub fn tick(&self, now_ms: i64) {
        let minute = now_ms.div_euclid(60_000) * 60_000;
        let mut m = self.minutes.lock().unwrap_or_else(|e| e.into_inner());
        if m.back().is_none_or(|(at, _)| *at < minute) {
            m.push_back((minute, self.totals()));
            while m.len() > HISTORY_MINUTES {
                m.pop_front();
            }
        }
    }

    /// Counts per minute over the last hour (since start, if that is sooner).
    pub fn recent(&self, now_ms: i64) -> Recent {
        self.tick(now_ms);
        let now = self.totals();
        let m = self.minutes.lock().unwrap_or_else(|e| e.into_inner());
        let ends = m.iter().skip(1).map(|(_, c)| *c).chain([now]);
        let per_minute: Vec<(i64, Counts)> = m
            .iter()
            .zip(ends)
            .map(|((at, start), end)| (*at, end.minus(*start)))
            .collect();
        let total = per_minute
            .iter()
            .fold(Counts::default(), |t, (_, c)| t.plus(*c));
        Recent { per_minute, total }
    }

    /// The exposition text, with the store's gauges.
    pub fn render(&self, g: &StoreGauges) -> String {
        let mut out = String::with_capacity(2048);
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "# HELP herald_messages_accepted_total Messages accepted (202) since start."
        );
        let _ = writeln!(out, "# TYPE herald_messages_accepted_total counter");
        let _ = writeln!(
            out,
            "herald_messages_accepted_total {}",
            load(&self.messages_accepted)
        );
        let _ = writeln!(
            out,
            "# HELP herald_deliveries_total Delivery tries since start, by outcome."
        );
        let _ = writeln!(out, "# TYPE herald_deliveries_total counter");
        for (i, (_, name)) in OUTCOMES.iter().enumerate() {
            let _ = writeln!(
                out,
                "herald_deliveries_total{{outcome=\"{name}\"}} {}",
                load(&self.deliveries[i])
            );
        }
        let _ = writeln!(
            out,
            "# HELP herald_attempt_duration_seconds Duration of delivery tries."
        );
        let _ = writeln!(out, "# TYPE herald_attempt_duration_seconds histogram");
        let mut cumulative = 0;
        for (i, b) in BUCKETS.iter().enumerate() {
            cumulative += load(&self.duration_buckets[i]);
            let _ = writeln!(
                out,
                "herald_attempt_duration_seconds_bucket{{le=\"{b}\"}} {cumulative}"
            );
        }
        cumulative += load(&self.duration_buckets[BUCKETS.len()]);
        let _ = writeln!(
            out,
            "herald_attempt_duration_seconds_bucket{{le=\"+Inf\"}} {cumulative}"
        );
        let sum = load(&self.duration_micros_sum) as f64 / 1e6;
        let _ = writeln!(out, "herald_attempt_duration_seconds_sum {sum}");
        let _ = writeln!(out, "herald_attempt_duration_seconds_count {cumulative}");
        let gauges: [(&str, &str, f64); 4] = [
            (
                "herald_queue_depth",
                "Delivery tasks waiting or running.",
                g.queue_depth as f64,
            ),
            (
                "herald_queue_oldest_due_age_seconds",
                "How overdue the most overdue task is (0 if none).",
                g.oldest_due_age_seconds,
            ),
            (
                "herald_endpoints_disabled",
                "Endpoints that are disabled.",
                g.disabled_endpoints as f64,
            ),
            (
                "herald_store_bytes",
                "Bytes the store uses on disk.",
                g.store_bytes as f64,
            ),
        ];
        for (name, help, v) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        }
        let name = "herald_store_disk_bytes";
        let _ = writeln!(
            out,
            "# HELP {name} Bytes the store uses on disk, by part: sled's trees (subscriptions, \
             queue, message records, attempts) and the payload log.\n# TYPE {name} gauge\n\
             {name}{{part=\"trees\"}} {}\n{name}{{part=\"payloads\"}} {}",
            g.store_tree_bytes, g.store_payload_bytes
        );
        if let Some(w) = g.write_bytes {
            let name = "herald_store_write_bytes_total";
            let _ = writeln!(
                out,
                "# HELP {name} Bytes Herald had written to the block device since start \
                 (/proc/self/io write_bytes; the store is its only writer of note).\n\
                 # TYPE {name} counter\n{name} {w}"
            );
        }
        render_storage(&mut out, &g.storage);
        self.render_connections(&mut out);
        out
    }

    fn render_connections(&self, out: &mut String) {
        let c = &self.connections;
        let name = "herald_connections_refused_total";
        let _ = writeln!(
            out,
            "# HELP {name} Connections closed at once because server.max_connections were open.\n\
             # TYPE {name} counter\n{name} {}",
            c.refused.load(Ordering::Relaxed)
        );
        let gauges = [
            (
                "herald_connections_open",
                "Client connections open now.",
                &c.open,
            ),
            (
                "herald_connections_max",
                "The cap on open client connections (server.max_connections).",
                &c.max,
            ),
        ];
        for (name, help, v) in gauges {
            let v = v.load(Ordering::Relaxed);
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        }
    }
}

/// The disk figures, in the exposition text.
/// `write_bytes` of `/proc/self/io`: what this process had the block layer write (Linux only).
pub fn process_write_bytes() -> Option<u64> {
    let io = std::fs::read_to_string("/proc/self/io").ok()?;
    io.lines()
        .find_map(|l| l.strip_prefix("write_bytes:"))
        .and_then(|v| v.trim().parse().ok())
}

fn render_storage(out: &mut String, s: &StorageGauges) {
    let name = "herald_storage_full_rejections_total";
    let _ = writeln!(
        out,
        "# HELP {name} Writes refused for lack of disk space (answered 507) since start.\n\
         # TYPE {name} counter\n{name} {}",
        s.refused_writes
    );
    let mut gauges: Vec<(&str, &str, f64)> = vec![
        (
            "herald_storage_degraded",
            "1 while new writes are refused: free disk space under the reserve, or the store cannot commit.",
            if s.degraded { 1.0 } else { 0.0 },
        ),
        (
            "herald_storage_min_free_bytes",
            "The free-space reserve (store.min_free_mb) in bytes.",
            s.min_free_bytes as f64,
        ),
    ];
    if let Some(free) = s.free_bytes {
        gauges.push((
            "herald_storage_free_bytes",
            "Bytes free for Herald on the data directory's file system.",
            free as f64,
        ));
    }
    for (name, help, v) in gauges {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_histogram_render_as_prometheus_text() {
        let m = Metrics::default();
        m.message_accepted();
        m.message_accepted();
        m.attempt(Outcome::Success, Duration::from_millis(3));
        m.attempt(Outcome::Timeout, Duration::from_secs(40));
        m.attempt(Outcome::HttpError, Duration::from_millis(70));
        let text = m.render(&StoreGauges {
            queue_depth: 7,
            store_tree_bytes: 5,
            store_payload_bytes: 9,
            write_bytes: Some(4096),
            ..Default::default()
        });
        assert!(text.contains("herald_store_disk_bytes{part=\"trees\"} 5\n"));
        assert!(text.contains("herald_store_disk_bytes{part=\"payloads\"} 9\n"));
        assert!(text.contains(
            "# TYPE herald_store_write_bytes_total counter\nherald_store_write_bytes_total 4096\n"
        ));
        assert!(text.contains("herald_messages_accepted_total 2\n"));
        assert!(text.contains("herald_deliveries_total{outcome=\"success\"} 1\n"));
        assert!(text.contains("herald_deliveries_total{outcome=\"timeout\"} 1\n"));
        assert!(text.contains("herald_attempt_duration_seconds_bucket{le=\"0.005\"} 1\n"));
        assert!(text.contains("herald_attempt_duration_seconds_bucket{le=\"0.1\"} 2\n"));
        assert!(text.contains("herald_attempt_duration_seconds_bucket{le=\"30\"} 2\n"));
        assert!(text.contains("herald_attempt_duration_seconds_bucket{le=\"+Inf\"} 3\n"));
        assert!(text.contains("herald_attempt_duration_seconds_count 3\n"));
        assert!(text.contains("herald_queue_depth 7\n"));
        assert!(text.contains("herald_storage_full_rejections_total 0\n"));
        assert!(text.contains("herald_storage_degraded 0\n"));
        assert!(
            !text.contains("herald_storage_free_bytes"),
            "unknown: left out"
        );
    }

    #[test]
    fn connections_render_as_gauges_and_a_counter() {
        let m = Metrics::default();
        m.set_connections_max(20);
        m.connection_opened();
        m.connection_opened();
        m.connection_closed();
        m.connection_refused();
        let text = m.render(&StoreGauges::default());
        assert!(text.contains("# TYPE herald_connections_refused_total counter\n"));
        assert!(text.contains("herald_connections_refused_total 1\n"));
        assert!(text.contains("# TYPE herald_connections_open gauge\nherald_connections_open 1\n"));
        assert!(text.contains("herald_connections_max 20\n"));
    }

    #[test]
    fn storage_figures_render() {
        let text = Metrics::default().render(&StoreGauges {
            storage: StorageGauges {
                free_bytes: Some(1024),
                min_free_bytes: 2048,
                degraded: true,
                refused_writes: 3,
            },
            ..Default::default()
        });
        assert!(text.contains("# TYPE herald_storage_full_rejections_total counter\n"));
        assert!(text.contains("herald_storage_full_rejections_total 3\n"));
        assert!(text.contains("herald_storage_degraded 1\n"));
        assert!(text.contains("herald_storage_free_bytes 1024\n"));
        assert!(text.contains("herald_storage_min_free_bytes 2048\n"));
    }

    #[test]
    fn the_last_hour_is_kept_per_minute() {
        let m = Metrics::default();
        let minute = |n: i64| 1_000_000 * 60_000 + n * 60_000;
        m.tick(minute(0) + 5);
        m.message_accepted();
        m.attempt(Outcome::Success, Duration::from_millis(1));
        m.tick(minute(1) + 1_000);
        m.message_accepted();
        m.test_message_accepted();
        m.attempt(Outcome::Timeout, Duration::from_secs(1));
        m.attempt(Outcome::NetworkError, Duration::from_millis(1));
        let r = m.recent(minute(1) + 30_000);
        assert_eq!(
            r.per_minute,
            vec![
                (
                    minute(0),
                    Counts {
                        accepted: 1,
                        test: 0,
                        delivered: 1,
                        failed: 0
                    }
                ),
                (
                    minute(1),
                    Counts {
                        accepted: 2,
                        test: 1,
                        delivered: 0,
                        failed: 2
                    }
                ),
            ]
        );
        assert_eq!(r.total.accepted, 3);

        // An hour later only the last 60 minutes count; the oldest fall away.
        for n in 2..=70 {
            m.tick(minute(n));
        }
        m.message_accepted();
        let r = m.recent(minute(70) + 1);
        assert_eq!(r.per_minute.len(), 60);
        assert_eq!(r.per_minute.first().unwrap().0, minute(11));
        assert_eq!(r.per_minute.last().unwrap().0, minute(70));
        assert_eq!(
            r.total,
            Counts {
                accepted: 1,
                test: 0,
                delivered: 0,
                failed: 0
            }
        );
    }
}
