//! Prometheus metrics, kept in atomics and rendered as text on `GET /metrics`.
//!
//! Counters and histograms only; no labels beyond the fixed reason and endpoint
//! names below, so the set of series is bounded and known in advance.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Why a hit was refused (answered 4xx/5xx, nothing stored). Each has a stable code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    InvalidJson,
    InvalidField,
    FieldTooLong,
    BodyTooLarge,
    TooManyProps,
    UnknownSite,
    MissingUserAgent,
    InvalidUrl,
    Unauthorized,
    Forbidden,
    TooManyHits,
    QueueFull,
    DiskFull,
    Unavailable,
}

impl Refusal {
    pub const ALL: [Refusal; 14] = [
        Refusal::InvalidJson,
        Refusal::InvalidField,
        Refusal::FieldTooLong,
        Refusal::BodyTooLarge,
        Refusal::TooManyProps,
        Refusal::UnknownSite,
        Refusal::MissingUserAgent,
        Refusal::InvalidUrl,
        Refusal::Unauthorized,
        Refusal::Forbidden,
        Refusal::TooManyHits,
        Refusal::QueueFull,
        Refusal::DiskFull,
        Refusal::Unavailable,
    ];

    /// The code used in error bodies and the `reason` label.
    pub fn code(self) -> &'static str {
        match self {
            Refusal::InvalidJson => "invalid_json",
            Refusal::InvalidField => "invalid_field",
            Refusal::FieldTooLong => "field_too_long",
            Refusal::BodyTooLarge => "body_too_large",
            Refusal::TooManyProps => "too_many_props",
            Refusal::UnknownSite => "unknown_site",
            Refusal::MissingUserAgent => "missing_user_agent",
            Refusal::InvalidUrl => "invalid_url",
            Refusal::Unauthorized => "unauthorized",
            Refusal::Forbidden => "forbidden",
            Refusal::TooManyHits => "too_many_hits",
            Refusal::QueueFull => "queue_full",
            Refusal::DiskFull => "disk_full",
            Refusal::Unavailable => "unavailable",
        }
    }
}

/// Why a well-formed hit was deliberately not stored (answered 200, counted).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    Bot,
    ReferrerSpam,
    ExcludedAddress,
}

impl DropReason {
    pub const ALL: [DropReason; 3] = [
        DropReason::Bot,
        DropReason::ReferrerSpam,
        DropReason::ExcludedAddress,
    ];
    pub fn code(self) -> &'static str {
        match self {
            DropReason::Bot => "bot",
            DropReason::ReferrerSpam => "referrer_spam",
            DropReason::ExcludedAddress => "excluded_address",
        }
    }
}

/// The ingest endpoints, for the `endpoint` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Collect,
    Event,
    Batch,
}

impl Endpoint {
    pub const ALL: [Endpoint; 3] = [Endpoint::Collect, Endpoint::Event, Endpoint::Batch];
    pub fn code(self) -> &'static str {
        match self {
            Endpoint::Collect => "collect",
            Endpoint::Event => "event",
            Endpoint::Batch => "batch",
        }
    }
}

/// A histogram with fixed upper bounds.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    counts: Vec<AtomicU64>,
    /// Sum of observations, in millionths of the unit.
    sum_micro: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            counts: (0..bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_micro: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, v: f64) {
        if let Some(i) = self.bounds.iter().position(|b| v <= *b) {
            self.counts[i].fetch_add(1, Relaxed);
        }
        self.sum_micro.fetch_add((v * 1e6) as u64, Relaxed);
        self.count.fetch_add(1, Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.count.load(Relaxed)
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cum = 0;
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            cum += c.load(Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {cum}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", self.count());
        let _ = writeln!(
            out,
            "{name}_sum {}",
            self.sum_micro.load(Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "{name}_count {}", self.count());
    }
}

const SECONDS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];
const ROWS: &[f64] = &[1.0, 10.0, 100.0, 1000.0, 5000.0, 10000.0, 50000.0];

/// Gauges read from the queue and the store when rendering.
#[derive(Clone, Copy, Debug, Default)]
pub struct Gauges {
    pub queue_pending_records: u64,
    pub queue_bytes: u64,
    pub queue_segments: u64,
    pub committed_seq: u64,
}

/// All of the daemon's metrics.
#[derive(Debug)]
pub struct Metrics {
    accepted: [AtomicU64; 3],
    refused: [AtomicU64; Refusal::ALL.len()],
    dropped: [AtomicU64; 3],
    pub stored: AtomicU64,
    pub batch_errors: AtomicU64,
    pub undecodable: AtomicU64,
    /// Cluster nodes: ingest requests answered 503 because the majority did
    /// not confirm their hits in time (the hits stay queued and are sent
    /// again).
    pub unreplicated: AtomicU64,
    /// Engagements acknowledged with 202 (durable in the queue).
    pub engagements_accepted: AtomicU64,
    /// Engagements stored with their pageview.
    pub engagements_stored: AtomicU64,
    /// Engagements whose pageview was not found, not stored.
    pub engagements_unattributed: AtomicU64,
    pub batch_rows: Histogram,
    pub batch_commit_seconds: Histogram,
    pub fsync_seconds: Histogram,
    pub group_records: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            accepted: Default::default(),
            refused: Default::default(),
            dropped: Default::default(),
            stored: AtomicU64::new(0),
            batch_errors: AtomicU64::new(0),
            undecodable: AtomicU64::new(0),
            unreplicated: AtomicU64::new(0),
            engagements_accepted: AtomicU64::new(0),
            engagements_stored: AtomicU64::new(0),
            engagements_unattributed: AtomicU64::new(0),
            batch_rows: Histogram::new(ROWS),
            batch_commit_seconds: Histogram::new(SECONDS),
            fsync_seconds: Histogram::new(SECONDS),
            group_records: Histogram::new(ROWS),
        }
    }
}

impl Metrics {
    pub fn accepted(&self, e: Endpoint, n: u64) {
        self.accepted[e as usize].fetch_add(n, Relaxed);
    }
    pub fn refused(&self, r: Refusal) {
        self.refused[r as usize].fetch_add(1, Relaxed);
    }
    pub fn dropped(&self, r: DropReason) {
        self.dropped[r as usize].fetch_add(1, Relaxed);
    }
    pub fn refused_count(&self, r: Refusal) -> u64 {
        self.refused[r as usize].load(Relaxed)
    }
    pub fn accepted_count(&self, e: Endpoint) -> u64 {
        self.accepted[e as usize].load(Relaxed)
    }
    pub fn dropped_count(&self, r: DropReason) -> u64 {
        self.dropped[r as usize].load(Relaxed)
    }
    pub fn observe_fsync(&self, d: Duration, records: usize) {
        self.fsync_seconds.observe(d.as_secs_f64());
        self.group_records.observe(records as f64);
    }

    /// Prometheus text exposition format 0.0.4.
    pub fn render(&self, g: Gauges) -> String {
        let mut o = String::with_capacity(4096);
        o.push_str("# HELP hitvault_hits_accepted_total Hits acknowledged with 202 (durable in the queue).\n");
        o.push_str("# TYPE hitvault_hits_accepted_total counter\n");
        for e in Endpoint::ALL {
            let _ = writeln!(
                o,
                "hitvault_hits_accepted_total{{endpoint=\"{}\"}} {}",
                e.code(),
                self.accepted_count(e)
            );
        }
        o.push_str("# HELP hitvault_hits_refused_total Requests refused with an error status, by reason.\n");
        o.push_str("# TYPE hitvault_hits_refused_total counter\n");
        for r in Refusal::ALL {
            let _ = writeln!(
                o,
                "hitvault_hits_refused_total{{reason=\"{}\"}} {}",
                r.code(),
                self.refused_count(r)
            );
        }
        o.push_str("# HELP hitvault_hits_dropped_total Well-formed hits deliberately not stored, by reason.\n");
        o.push_str("# TYPE hitvault_hits_dropped_total counter\n");
        for r in DropReason::ALL {
            let _ = writeln!(
                o,
                "hitvault_hits_dropped_total{{reason=\"{}\"}} {}",
                r.code(),
                self.dropped_count(r)
            );
        }
        let counters = [
            (
                "hitvault_hits_stored_total",
                "Hits written to DuckDB.",
                self.stored.load(Relaxed),
            ),
            (
                "hitvault_batch_errors_total",
                "Batches DuckDB refused (retried).",
                self.batch_errors.load(Relaxed),
            ),
            (
                "hitvault_engagements_accepted_total",
                "Engagements (time on page, scroll depth) acknowledged with 202 (durable in the queue); not counted as hits.",
                self.engagements_accepted.load(Relaxed),
            ),
            (
                "hitvault_engagements_stored_total",
                "Engagements (time on page, scroll depth) written to DuckDB with their pageview.",
                self.engagements_stored.load(Relaxed),
            ),
            (
                "hitvault_engagements_unattributed_total",
                "Engagements not stored: no pageview of the same site, visitor and path before them that day.",
                self.engagements_unattributed.load(Relaxed),
            ),
            (
                "hitvault_queue_undecodable_total",
                "Queue records that could not be decoded.",
                self.undecodable.load(Relaxed),
            ),
            (
                "hitvault_cluster_unreplicated_total",
                "Cluster nodes: ingest requests answered 503 because a majority did not confirm their hits in time (the hits stay queued and are sent again).",
                self.unreplicated.load(Relaxed),
            ),
        ];
        for (name, help, v) in counters {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
        }
        let gauges = [
            (
                "hitvault_queue_depth",
                "Records in the queue not yet committed to DuckDB.",
                g.queue_pending_records,
            ),
            (
                "hitvault_queue_bytes",
                "Bytes of queue segments on disk.",
                g.queue_bytes,
            ),
            (
                "hitvault_queue_segments",
                "Queue segment files on disk.",
                g.queue_segments,
            ),
            (
                "hitvault_committed_seq",
                "Last queue sequence number committed to DuckDB.",
                g.committed_seq,
            ),
        ];
        for (name, help, v) in gauges {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        }
        self.batch_rows
            .render(&mut o, "hitvault_batch_rows", "Hits per DuckDB batch.");
        self.batch_commit_seconds.render(
            &mut o,
            "hitvault_batch_commit_seconds",
            "Time to append and commit one batch.",
        );
        self.fsync_seconds.render(
            &mut o,
            "hitvault_queue_fsync_seconds",
            "fdatasync latency of one queue group commit.",
        );
        self.group_records.render(
            &mut o,
            "hitvault_queue_group_records",
            "Records sharing one queue fsync.",
        );
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_cumulative_buckets() {
        let m = Metrics::default();
        m.accepted(Endpoint::Collect, 3);
        m.refused(Refusal::UnknownSite);
        m.dropped(DropReason::Bot);
        m.fsync_seconds.observe(0.0003);
        m.fsync_seconds.observe(0.02);
        let t = m.render(Gauges {
            queue_pending_records: 5,
            ..Gauges::default()
        });
        assert!(t.contains("hitvault_hits_accepted_total{endpoint=\"collect\"} 3\n"));
        assert!(t.contains("hitvault_hits_refused_total{reason=\"unknown_site\"} 1\n"));
        assert!(t.contains("hitvault_hits_dropped_total{reason=\"bot\"} 1\n"));
        assert!(t.contains("hitvault_queue_depth 5\n"));
        assert!(t.contains("hitvault_queue_fsync_seconds_bucket{le=\"0.0005\"} 1\n"));
        assert!(t.contains("hitvault_queue_fsync_seconds_bucket{le=\"0.025\"} 2\n"));
        assert!(t.contains("hitvault_queue_fsync_seconds_count 2\n"));
    }
}
