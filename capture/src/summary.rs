//! The end-of-run summary: what the console (or `--json`) says when a run ends, and whether
//! it measured anything at all.

use recap_schemas::ErrorKind;
use serde::Serialize;

/// The final summary (stderr table, or JSON on stdout with `--json`). Client-side numbers
/// only: the TTFT here is untokenized and histogram-based; `analyze` gives the exact metrics.
#[derive(Debug, Serialize)]
pub struct Summary {
    /// The run folder.
    pub run_dir: String,
    /// Wall time of the run.
    pub elapsed_s: f64,
    /// Requests sent.
    pub sent: u64,
    /// Requests ended `done`.
    pub done: u64,
    /// Requests ended `error`, by kind.
    pub errors: std::collections::BTreeMap<ErrorKind, u64>,
    /// Requests ended `cancelled`.
    pub cancelled: u64,
    /// SSE events that could not be parsed (recorded as rows with `error_kind = protocol`).
    pub malformed_events: u64,
    /// Finished requests per second over the run.
    pub requests_per_s: f64,
    /// SSE events received.
    pub sse_events: u64,
    /// SSE events per second over the run.
    pub sse_events_per_s: f64,
    /// Client-side TTFT p50 (ms), histogram-based.
    pub ttft_p50_ms: Option<f64>,
    /// Client-side TTFT p99 (ms), histogram-based.
    pub ttft_p99_ms: Option<f64>,
    /// Rows written to `events`.
    pub event_rows: u64,
    /// Rows written to `requests`.
    pub request_rows: u64,
    /// Segment files written.
    pub segments: u64,
    /// Parquet bytes written.
    pub bytes_written: u64,
    /// Parquet bytes per `events` row (requests table included).
    pub bytes_per_event: f64,
    /// Peak resident memory of the capture process.
    pub peak_rss_bytes: Option<u64>,
    /// Connections opened.
    pub connections: u64,
    /// Kept-alive connections the server had closed, replaced before reuse.
    pub stale_connections: u64,
    /// Requests sent a second time after their reused connection failed unanswered.
    pub retries: u64,
    /// Times a worker waited because the recorder was behind.
    pub recorder_waits: u64,
    /// Nanoseconds workers spent waiting on the recorder.
    pub recorder_wait_ns: u64,
}

impl Summary {
    /// Why the run measured nothing, when no request succeeded: how many ended, in which
    /// error mostly (`None` when one did).
    pub fn nothing_succeeded(&self) -> Option<String> {
        if self.done > 0 {
            return None;
        }
        let errors: u64 = self.errors.values().sum();
        let Some((kind, n)) = self.errors.iter().max_by_key(|(k, n)| (**n, std::cmp::Reverse(**k))) else {
            return Some(if self.cancelled > 0 {
                format!(
                    "no request succeeded: {} cancelled, none ended otherwise",
                    self.cancelled
                )
            } else {
                format!("no request succeeded ({} sent, none ended)", self.sent)
            });
        };
        Some(format!(
            "no request succeeded: {errors} ended in errors, most often `{kind}` ({n}); the run is recorded in {}",
            self.run_dir
        ))
    }

    /// Human-readable multi-line rendering for the console.
    pub fn render(&self) -> String {
        let errors: u64 = self.errors.values().sum();
        let by_kind: Vec<String> = self.errors.iter().map(|(k, n)| format!("{k}={n}")).collect();
        let ms = |v: Option<f64>| v.map_or("-".to_string(), |x| format!("{x:.1} ms"));
        format!(
            "run        {}\n\
             elapsed    {:.2} s\n\
             requests   sent {}  done {}  errors {}{}  cancelled {}\n\
             rate       {:.1} req/s  {:.0} SSE events/s\n\
             ttft       p50 {}  p99 {}  (client-side, untokenized)\n\
             connections {} opened, {} found closed by the server before reuse, {} requests retried\n\
             recorded   {} events, {} requests, {} segments, {:.1} MiB, {:.1} B/event{}{}\n\
             memory     peak RSS {}",
            self.run_dir,
            self.elapsed_s,
            self.sent,
            self.done,
            errors,
            if by_kind.is_empty() {
                String::new()
            } else {
                format!(" ({})", by_kind.join(", "))
            },
            self.cancelled,
            self.requests_per_s,
            self.sse_events_per_s,
            ms(self.ttft_p50_ms),
            ms(self.ttft_p99_ms),
            self.connections,
            self.stale_connections,
            self.retries,
            self.event_rows,
            self.request_rows,
            self.segments,
            self.bytes_written as f64 / (1024.0 * 1024.0),
            self.bytes_per_event,
            if self.malformed_events > 0 {
                format!(", {} malformed SSE events", self.malformed_events)
            } else {
                String::new()
            },
            if self.recorder_waits > 0 {
                format!(
                    "\nbackpressure workers waited {:.1} ms in total ({} times) for the recorder: \
                     the client, not only the server, set the pace",
                    self.recorder_wait_ns as f64 / 1e6,
                    self.recorder_waits
                )
            } else {
                String::new()
            },
            self.peak_rss_bytes
                .map_or("-".to_string(), |b| format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0))),
        )
    }
}
