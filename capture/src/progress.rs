//! Live counters and the stderr progress line (the end-of-run summary is [`crate::summary`]).
//!
//! Counters are atomics bumped by workers; TTFT, the gaps between output events and E2E go
//! into HDR histograms (the contract's [`recap_schemas::live`] layout) so percentiles are live
//! without storing samples and without any tokenization. `--live` publishes them.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Duration;

use crate::summary::Summary;
use hdrhistogram::Histogram;
use recap_schemas::ErrorKind;

/// Run-wide live counters.
#[derive(Debug)]
pub struct Stats {
    /// Requests handed to a connection.
    pub sent: AtomicU64,
    /// Requests that ended with `done`.
    pub done: AtomicU64,
    /// Requests that ended with `error`, by [`ErrorKind`] (indexed like `ErrorKind::ALL`).
    pub errors: [AtomicU64; ErrorKind::ALL.len()],
    /// Requests that ended with `cancelled`.
    pub cancelled: AtomicU64,
    /// SSE events received (all kinds of event, including `[DONE]`).
    pub sse_events: AtomicU64,
    /// SSE events whose data could not be parsed.
    pub malformed_events: AtomicU64,
    /// Connections opened.
    pub connections: AtomicU64,
    /// Kept-alive connections found closed (or unusable) before reuse, and replaced.
    pub stale_connections: AtomicU64,
    /// Requests sent again after their reused connection failed before any response byte.
    pub retries: AtomicU64,
    /// Output tokens reported in `usage` (each request's latest `completion_tokens`, added as
    /// it grows).
    pub usage_output_tokens: AtomicU64,
    /// Whether gaps between output events are recorded: a push per event, so only when
    /// something reads them (`--live`, or a condition on `gap`).
    pub keep_gaps: bool,
    ttft: Mutex<Dist>,
    gap: Mutex<Dist>,
    e2e: Mutex<Dist>,
}

/// A live histogram and the exact sum of its samples.
#[derive(Debug)]
struct Dist {
    h: Histogram<u64>,
    sum_us: u64,
}

impl Dist {
    fn new() -> Mutex<Dist> {
        Mutex::new(Dist {
            h: recap_schemas::live::new_histogram(),
            sum_us: 0,
        })
    }

    /// Records one sample given in ns.
    fn add(&mut self, ns: i64) {
        let us = recap_schemas::live::to_us(ns);
        let _ = self.h.record(us);
        self.sum_us += us;
    }
}

fn record(d: &Mutex<Dist>, ns: i64) {
    if let Ok(mut d) = d.lock() {
        d.add(ns);
    }
}

/// Ended requests needed before `--max-error-rate` is judged: one early error is no trend.
pub const MIN_ENDED_FOR_ERROR_RATE: u64 = 20;

impl Stats {
    /// The share of ended requests that are errors, when at least
    /// [`MIN_ENDED_FOR_ERROR_RATE`] ended and the share is above `max`.
    pub fn error_share_over(&self, max: f64) -> Option<f64> {
        let errors: u64 = self.errors.iter().map(|e| e.load(Relaxed)).sum();
        let ended = errors + self.done.load(Relaxed);
        let share = errors as f64 / ended.max(1) as f64;
        (ended >= MIN_ENDED_FOR_ERROR_RATE && share > max).then_some(share)
    }
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            sent: AtomicU64::new(0),
            done: AtomicU64::new(0),
            errors: Default::default(),
            cancelled: AtomicU64::new(0),
            sse_events: AtomicU64::new(0),
            malformed_events: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            stale_connections: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            usage_output_tokens: AtomicU64::new(0),
            keep_gaps: false,
            ttft: Dist::new(),
            gap: Dist::new(),
            e2e: Dist::new(),
        }
    }
}

fn error_index(kind: ErrorKind) -> usize {
    ErrorKind::ALL.iter().position(|k| *k == kind).unwrap_or(0)
}

impl Stats {
    /// Counters and histograms; `keep_gaps` as [`Stats::keep_gaps`].
    pub fn new(keep_gaps: bool) -> Self {
        Stats {
            keep_gaps,
            ..Stats::default()
        }
    }

    /// Counts a request that ended in `error` of `kind`.
    pub fn add_error(&self, kind: ErrorKind) {
        self.errors[error_index(kind)].fetch_add(1, Relaxed);
    }

    /// Requests ended in `error` of `kind`.
    pub fn errors_of(&self, kind: ErrorKind) -> u64 {
        self.errors[error_index(kind)].load(Relaxed)
    }

    /// Total requests ended in `error`.
    pub fn errors_total(&self) -> u64 {
        self.errors.iter().map(|e| e.load(Relaxed)).sum()
    }

    /// Requests finished in any way.
    pub fn finished(&self) -> u64 {
        self.done.load(Relaxed) + self.errors_total() + self.cancelled.load(Relaxed)
    }

    /// Records one time-to-first-output sample.
    pub fn record_ttft(&self, ttft_ns: i64) {
        record(&self.ttft, ttft_ns);
    }

    /// Records the gaps between consecutive output events of one request.
    pub fn record_gaps(&self, gaps_ns: &[i64]) {
        if gaps_ns.is_empty() {
            return;
        }
        if let Ok(mut d) = self.gap.lock() {
            for ns in gaps_ns {
                d.add(*ns);
            }
        }
    }

    /// Records one successful request's `sent` to `done`.
    pub fn record_e2e(&self, e2e_ns: i64) {
        record(&self.e2e, e2e_ns);
    }

    fn dist(&self, metric: recap_schemas::live::LiveMetric) -> &Mutex<Dist> {
        use recap_schemas::live::LiveMetric;
        match metric {
            LiveMetric::Ttft => &self.ttft,
            LiveMetric::Gap => &self.gap,
            LiveMetric::E2e => &self.e2e,
        }
    }

    /// TTFT quantile in ms, if any sample.
    pub fn ttft_ms(&self, q: f64) -> Option<f64> {
        recap_schemas::live::quantile_ms(&self.ttft.lock().ok()?.h, q)
    }

    /// The latency histogram a live metric reads, with its exact sum (µs).
    pub fn distribution(&self, metric: recap_schemas::live::LiveMetric) -> recap_schemas::live::LiveDistribution {
        use recap_schemas::live::LiveDistribution;
        let d = self.dist(metric);
        // Only the non-empty buckets are read under the lock (one scan, no copy of the
        // histogram's hundreds of KB); percentiles are computed outside it.
        let (buckets, sum) = match d.lock() {
            Ok(d) => (recap_schemas::live::buckets_of(&d.h), d.sum_us),
            Err(_) => return LiveDistribution::default(),
        };
        LiveDistribution::from_buckets(buckets, sum)
    }

    /// A condition's value now, with the samples it is judged on.
    pub fn judge(&self, c: &recap_schemas::live::Condition) -> (Option<f64>, u64) {
        match self.dist(c.metric).lock() {
            Ok(d) => (c.value_ms(&d.h), d.h.len()),
            Err(_) => (None, 0),
        }
    }

    /// Snapshot for the final summary.
    pub fn summary(
        &self,
        elapsed: Duration,
        run_dir: &str,
        sink: &crate::sink::SinkStats,
        waits: &crate::recorder::WaitStats,
    ) -> Summary {
        let secs = elapsed.as_secs_f64().max(1e-9);
        let finished = self.finished();
        Summary {
            run_dir: run_dir.to_string(),
            elapsed_s: secs,
            sent: self.sent.load(Relaxed),
            done: self.done.load(Relaxed),
            errors: ErrorKind::ALL
                .iter()
                .map(|k| (*k, self.errors[error_index(*k)].load(Relaxed)))
                .filter(|(_, n)| *n > 0)
                .collect(),
            cancelled: self.cancelled.load(Relaxed),
            malformed_events: self.malformed_events.load(Relaxed),
            requests_per_s: finished as f64 / secs,
            sse_events: self.sse_events.load(Relaxed),
            sse_events_per_s: self.sse_events.load(Relaxed) as f64 / secs,
            ttft_p50_ms: self.ttft_ms(0.5),
            ttft_p99_ms: self.ttft_ms(0.99),
            event_rows: sink.event_rows,
            request_rows: sink.request_rows,
            segments: sink.segments,
            bytes_written: sink.bytes_written,
            bytes_per_event: if sink.event_rows > 0 {
                sink.bytes_written as f64 / sink.event_rows as f64
            } else {
                0.0
            },
            peak_rss_bytes: peak_rss_bytes(),
            connections: self.connections.load(Relaxed),
            stale_connections: self.stale_connections.load(Relaxed),
            retries: self.retries.load(Relaxed),
            recorder_waits: waits.waits.load(Relaxed),
            recorder_wait_ns: waits.wait_ns.load(Relaxed),
        }
    }
}

/// Peak resident set size of this process (`VmHWM`), where the OS reports it.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Prints the live line every second until `stop` resolves. On a terminal the line is
/// redrawn in place; otherwise a plain line is logged every 10 s.
pub async fn live(
    stats: &Stats,
    clock: crate::clock::Clock,
    in_flight: impl Fn() -> u64,
    stop: impl std::future::Future<Output = ()>,
) {
    let tty = std::io::stderr().is_terminal();
    let period = if tty {
        Duration::from_secs(1)
    } else {
        Duration::from_secs(10)
    };
    let mut tick = tokio::time::interval(period);
    tick.tick().await;
    tokio::pin!(stop);
    let (mut last_done, mut last_sse, mut last_t) = (0u64, 0u64, 0.0f64);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = tick.tick() => {}
        }
        let t = clock.elapsed().as_secs_f64();
        let done = stats.finished();
        let sse = stats.sse_events.load(Relaxed);
        let dt = (t - last_t).max(1e-9);
        let ms = |v: Option<f64>| v.map_or("-".to_string(), |x| format!("{x:.0}"));
        let line = format!(
            "{:>6.1}s sent {} done {} err {} in-flight {} | {:.0} req/s {:.0} ev/s | ttft p50 {} p99 {} ms",
            t,
            stats.sent.load(Relaxed),
            stats.done.load(Relaxed),
            stats.errors_total() + stats.cancelled.load(Relaxed),
            in_flight(),
            (done - last_done) as f64 / dt,
            (sse - last_sse) as f64 / dt,
            ms(stats.ttft_ms(0.5)),
            ms(stats.ttft_ms(0.99)),
        );
        (last_done, last_sse, last_t) = (done, sse, t);
        let mut err = std::io::stderr().lock();
        if tty {
            let _ = write!(err, "\r\x1b[2K{line}");
        } else {
            let _ = writeln!(err, "{line}");
        }
        let _ = err.flush();
    }
    if tty {
        let _ = write!(std::io::stderr(), "\r\x1b[2K");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_quantiles() {
        let s = Stats::default();
        s.done.fetch_add(3, Relaxed);
        s.add_error(ErrorKind::Timeout);
        s.add_error(ErrorKind::HttpStatus);
        assert_eq!(s.finished(), 5);
        assert_eq!(s.ttft_ms(0.5), None);
        for ms in 1..=100 {
            s.record_ttft(ms * 1_000_000);
        }
        let p50 = s.ttft_ms(0.5).expect("samples");
        assert!((p50 - 50.0).abs() < 0.1, "{p50}");
        let sum = s.summary(
            Duration::from_secs(1),
            "r",
            &crate::sink::SinkStats::default(),
            &crate::recorder::WaitStats::default(),
        );
        assert_eq!(sum.errors.get(&ErrorKind::Timeout), Some(&1));
        assert!(sum.render().contains("errors 2"));
    }
}
