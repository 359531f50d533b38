//! What a running capture publishes (`capture --live ADDR`): one typed snapshot, served as JSON
//! at `/snapshot`, as server-sent events at `/stream`, as Prometheus text at `/metrics`, and
//! written last as `live.json` beside the manifest.
//!
//! Latencies are HDR histograms (µs, [`SIGNIFICANT_DIGITS`] significant digits) carried whole
//! as `[value, count]` buckets, so a subscriber merges several captures exactly and reads any
//! percentile; the `p50`/`p90`/`p99` fields are conveniences computed from the same buckets.
//! Everything here is tokenizer-free: capture has no tokenizer.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::enums::string_enum;
use crate::ErrorKind;

/// File name of the final snapshot inside a run folder.
pub const LIVE_FILE: &str = "live.json";
/// Version of the snapshot's layout (fields only get added within a version).
pub const LIVE_SCHEMA_VERSION: u32 = 1;
/// Significant decimal digits of every live histogram: a percentile read from one is within
/// 0.1 % (plus 1 µs of truncation) of the sample it stands for.
pub const SIGNIFICANT_DIGITS: u8 = 3;
/// Largest value a live histogram holds, in µs (one hour); larger samples are clamped to it.
pub const MAX_US: u64 = 3_600_000_000;

string_enum! {
    /// Where a run stands.
    LiveState {
        /// Requests are being scheduled.
        Live => "live",
        /// Scheduling has stopped; requests still in flight are finishing.
        Draining => "draining",
        /// Every request has ended and the run folder is closed (its manifest is final).
        Complete => "complete",
    }
}

/// One snapshot of a running capture.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LiveSnapshot {
    /// [`LIVE_SCHEMA_VERSION`].
    pub schema_version: u32,
    /// The run's id (`manifest.run_id`).
    pub run_id: String,
    /// The run folder, as capture was given it.
    pub run_dir: String,
    /// Where the run stands.
    pub state: LiveState,
    /// Seconds since the run's clock started.
    pub elapsed_s: f64,
    /// 1-based number of this snapshot within the run (a subscriber sees gaps it missed).
    pub seq: u64,
    /// The plan this run is a point of, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<LivePlan>,
    /// Counters since the run started.
    pub counts: LiveCounts,
    /// Time to the first output event (`--ttft-on output`, from `sent`), every request that had one.
    pub ttft: LiveDistribution,
    /// Gaps between consecutive output events of one request (analyze's `icl_ms`).
    pub gap: LiveDistribution,
    /// `sent` to the terminal `done` of each successful request (`--e2e-end done`).
    pub e2e: LiveDistribution,
}

/// What shard 0 of a sharded capture answers on `/shards` (JSON): the other shards' live
/// endpoints, so that `plot --live` given shard 0's watches them all.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardsReply {
    /// Shards in the capture.
    pub count: u32,
    /// Each other shard that named its endpoint at the barrier, by index.
    pub live: Vec<ShardLive>,
}

/// One shard's live endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardLive {
    /// The shard.
    pub index: u32,
    /// `http://IP:PORT`: the address its barrier polls came from, with the port it named.
    pub url: String,
}

/// Where a run sits in its plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LivePlan {
    /// `manifest.plan.plan_id`.
    pub plan_id: String,
    /// The point's label (`c16`).
    pub point: String,
    /// 1-based position of this run among the plan's runs so far.
    pub index: u32,
    /// Runs the plan lists (a capacity search: the most runs it can take).
    pub total: u32,
}

/// Counters since the run started; at `complete` they equal the manifest's counts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LiveCounts {
    /// Requests handed to a connection.
    pub sent: u64,
    /// Requests that ended with `done`.
    pub done: u64,
    /// Requests that ended with `error`, by kind.
    pub errors: BTreeMap<ErrorKind, u64>,
    /// Requests that ended with `cancelled`.
    pub cancelled: u64,
    /// Requests in flight now.
    pub in_flight: u64,
    /// SSE events received.
    pub sse_events: u64,
    /// SSE events whose data could not be parsed.
    pub malformed_events: u64,
    /// Connections opened.
    pub connections: u64,
    /// Kept-alive connections found closed before reuse.
    pub stale_connections: u64,
    /// Requests sent again after a reused connection failed unanswered.
    pub retries: u64,
    /// Output tokens the server reported in `usage` (per-chunk usage gives a live rate;
    /// final usage only counts at each request's end).
    pub usage_output_tokens: u64,
    /// Times a worker waited for the recorder.
    pub recorder_waits: u64,
    /// Nanoseconds workers waited for the recorder in total.
    pub recorder_wait_ns: u64,
}

impl LiveCounts {
    /// Requests ended in `error`, all kinds.
    pub fn errors_total(&self) -> u64 {
        self.errors.values().sum()
    }

    /// Requests ended in any way.
    pub fn ended(&self) -> u64 {
        self.done + self.errors_total() + self.cancelled
    }

    /// Adds another capture's counters (several captures watched as one).
    pub fn add(&mut self, o: &LiveCounts) {
        self.sent += o.sent;
        self.done += o.done;
        for (k, n) in &o.errors {
            *self.errors.entry(*k).or_default() += n;
        }
        self.cancelled += o.cancelled;
        self.in_flight += o.in_flight;
        self.sse_events += o.sse_events;
        self.malformed_events += o.malformed_events;
        self.connections += o.connections;
        self.stale_connections += o.stale_connections;
        self.retries += o.retries;
        self.usage_output_tokens += o.usage_output_tokens;
        self.recorder_waits += o.recorder_waits;
        self.recorder_wait_ns += o.recorder_wait_ns;
    }
}

/// A latency distribution: the whole HDR histogram, and a few percentiles read from it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LiveDistribution {
    /// Samples.
    pub count: u64,
    /// Sum of the samples (exact, not from the buckets), ms.
    pub sum_ms: f64,
    /// 50th percentile, ms (null without samples).
    pub p50_ms: Option<f64>,
    /// 90th percentile, ms.
    pub p90_ms: Option<f64>,
    /// 99th percentile, ms.
    pub p99_ms: Option<f64>,
    /// Largest sample, ms.
    pub max_ms: Option<f64>,
    /// Non-empty buckets as `[highest value in µs, count]`, ascending.
    pub buckets: Vec<[u64; 2]>,
}

/// An empty histogram with the live bounds and precision.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_US, SIGNIFICANT_DIGITS).expect("invariant: static histogram bounds are valid")
}

/// A sample in ns as the µs value a live histogram records (truncated, clamped to its bounds).
pub fn to_us(ns: i64) -> u64 {
    u64::try_from(ns / 1000).unwrap_or(0).clamp(1, MAX_US)
}

/// The `q` quantile of `h` in ms (HDR's rank rule: the smallest recorded value with at least
/// `q * count` samples at or below it, reported as its bucket's highest equivalent value).
pub fn quantile_ms(h: &Histogram<u64>, q: f64) -> Option<f64> {
    (!h.is_empty()).then(|| h.value_at_quantile(q) as f64 / 1000.0)
}

/// The non-empty buckets of `h` as `[highest equivalent value, count]`, ascending: a scan of
/// its counts, without copying the histogram (a live one is read under its lock).
pub fn buckets_of(h: &Histogram<u64>) -> Vec<[u64; 2]> {
    h.iter_recorded()
        .map(|v| [v.value_iterated_to(), v.count_at_value()])
        .collect()
}

/// The `q` quantile of ascending `buckets` holding `count` samples, in their unit: HDR's rank
/// rule ([`quantile_ms`]) for `q > 0`, read from the buckets alone.
pub fn bucket_quantile(buckets: &[[u64; 2]], count: u64, q: f64) -> Option<u64> {
    let need = ((q.min(1.0) * count as f64).ceil() as u64).max(1);
    let mut seen = 0u64;
    buckets.iter().find_map(|[v, n]| {
        seen += n;
        (seen >= need).then_some(*v)
    })
}

impl LiveDistribution {
    /// The distribution of `h`, whose samples sum to `sum_us`.
    pub fn from_histogram(h: &Histogram<u64>, sum_us: u64) -> Self {
        Self::from_buckets(buckets_of(h), sum_us)
    }

    /// The distribution of ascending `[value µs, count]` buckets ([`buckets_of`]).
    pub fn from_buckets(buckets: Vec<[u64; 2]>, sum_us: u64) -> Self {
        let count = buckets.iter().map(|b| b[1]).sum();
        let q = |q: f64| bucket_quantile(&buckets, count, q).map(|v| v as f64 / 1000.0);
        LiveDistribution {
            count,
            sum_ms: sum_us as f64 / 1000.0,
            p50_ms: q(0.5),
            p90_ms: q(0.9),
            p99_ms: q(0.99),
            max_ms: buckets.last().map(|b| b[0] as f64 / 1000.0),
            buckets,
        }
    }

    /// The histogram back from its buckets (each bucket's value lands in that same bucket).
    pub fn histogram(&self) -> Histogram<u64> {
        let mut h = new_histogram();
        for [v, n] in &self.buckets {
            let _ = h.record_n((*v).clamp(1, MAX_US), *n);
        }
        h
    }

    /// The distribution of the union of several captures' samples: exact, as the histograms
    /// share their bucket layout.
    pub fn merged<'a>(all: impl IntoIterator<Item = &'a LiveDistribution>) -> LiveDistribution {
        let mut h = new_histogram();
        let mut sum_ms = 0.0;
        for d in all {
            let _ = h.add(d.histogram());
            sum_ms += d.sum_ms;
        }
        let mut out = LiveDistribution::from_histogram(&h, 0);
        out.sum_ms = sum_ms;
        out
    }
}

string_enum! {
    /// A live latency a condition is judged on.
    LiveMetric {
        /// [`LiveSnapshot::ttft`].
        Ttft => "ttft",
        /// [`LiveSnapshot::gap`].
        Gap => "gap",
        /// [`LiveSnapshot::e2e`].
        E2e => "e2e",
    }
}

/// `--stop-when` / `--until`: a live percentile compared with a threshold, e.g. `ttft_p99>2s`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Condition {
    /// Which latency.
    pub metric: LiveMetric,
    /// The percentile, 0..=100 (`p99` is 99, `p99.9` is 99.9).
    pub percentile: f64,
    /// `true` for `>`, `false` for `<`.
    pub above: bool,
    /// The threshold, ms.
    pub threshold_ms: f64,
}

impl Condition {
    /// Whether `value_ms` makes the condition hold.
    pub fn holds(&self, value_ms: f64) -> bool {
        if self.above {
            value_ms > self.threshold_ms
        } else {
            value_ms < self.threshold_ms
        }
    }

    /// The condition's percentile of `h`, ms.
    pub fn value_ms(&self, h: &Histogram<u64>) -> Option<f64> {
        quantile_ms(h, self.percentile / 100.0)
    }
}

impl std::fmt::Display for Condition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}_p{}{}{}ms",
            self.metric,
            self.percentile,
            if self.above { '>' } else { '<' },
            self.threshold_ms
        )
    }
}

impl std::str::FromStr for Condition {
    type Err = String;

    /// `METRIC_pQ>DURATION` or `<`: `ttft_p99>2s`, `e2e_p50<800ms`, `gap_p99.9>50ms`.
    fn from_str(text: &str) -> Result<Self, String> {
        let bad = |why: &str| {
            format!("{text:?}: {why} (expected METRIC_pQ>DURATION, e.g. ttft_p99>500ms; METRIC is ttft, gap or e2e)")
        };
        let (lhs, rhs, above) = match (text.split_once('>'), text.split_once('<')) {
            (Some((l, r)), None) => (l, r, true),
            (None, Some((l, r))) => (l, r, false),
            _ => return Err(bad("one `>` or `<`")),
        };
        let (metric, pct) = lhs.trim().split_once("_p").ok_or_else(|| bad("no `_p` percentile"))?;
        let metric = LiveMetric::parse(metric).ok_or_else(|| bad("unknown metric"))?;
        let percentile: f64 = pct.parse().map_err(|_| bad("the percentile is not a number"))?;
        if !(percentile > 0.0 && percentile < 100.0) {
            return Err(bad("the percentile must be above 0 and below 100"));
        }
        let rhs = rhs.trim();
        let threshold_ms = if let Ok(ms) = rhs.parse::<f64>() {
            ms
        } else {
            parse_duration_ms(rhs).ok_or_else(|| bad("the threshold is not a duration"))?
        };
        if !(threshold_ms.is_finite() && threshold_ms >= 0.0) {
            return Err(bad("the threshold must be a finite duration"));
        }
        Ok(Condition {
            metric,
            percentile,
            above,
            threshold_ms,
        })
    }
}

/// `250ms`, `2s`, `1.5s`, `800us`: a duration in ms (a bare number is ms).
fn parse_duration_ms(text: &str) -> Option<f64> {
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (num, unit) = text.split_at(split);
    let v: f64 = num.parse().ok()?;
    let scale = match unit {
        "us" | "µs" => 1e-3,
        "ms" => 1.0,
        "s" => 1e3,
        "m" | "min" => 60e3,
        _ => return None,
    };
    Some(v * scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_parse_and_print() {
        let c: Condition = "ttft_p99>2s".parse().expect("valid");
        assert_eq!(
            (c.metric, c.percentile, c.above, c.threshold_ms),
            (LiveMetric::Ttft, 99.0, true, 2000.0)
        );
        assert_eq!(c.to_string(), "ttft_p99>2000ms");
        let c: Condition = "gap_p99.9 < 50ms".parse().expect("valid");
        assert_eq!(
            (c.metric, c.percentile, c.above, c.threshold_ms),
            (LiveMetric::Gap, 99.9, false, 50.0)
        );
        assert!(c.holds(49.0) && !c.holds(50.0));
        assert_eq!("e2e_p50>800".parse::<Condition>().map(|c| c.threshold_ms), Ok(800.0));
        for bad in [
            "ttft>2s",
            "tpot_p99>2s",
            "ttft_p100>1s",
            "ttft_p99>=2s",
            "ttft_p99>2 parsecs",
            "ttft_p99",
        ] {
            assert!(bad.parse::<Condition>().is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn merged_buckets_equal_the_histogram_of_all_samples() {
        // Two captures' samples, and one histogram of their union: merging the published
        // buckets must give the union's percentiles exactly.
        let (mut a, mut b, mut all) = (new_histogram(), new_histogram(), new_histogram());
        let mut x: u64 = 12345;
        for i in 0..5000u64 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let v = 100 + (x >> 40) % 2_000_000;
            if i % 3 == 0 {
                a.record(v).expect("in range")
            } else {
                b.record(v).expect("in range")
            }
            all.record(v).expect("in range");
        }
        let (da, db) = (
            LiveDistribution::from_histogram(&a, 0),
            LiveDistribution::from_histogram(&b, 0),
        );
        let m = LiveDistribution::merged([&da, &db]);
        let u = LiveDistribution::from_histogram(&all, 0);
        assert_eq!(m.buckets, u.buckets);
        assert_eq!(
            (m.count, m.p50_ms, m.p99_ms, m.max_ms),
            (u.count, u.p50_ms, u.p99_ms, u.max_ms)
        );
    }

    #[test]
    fn bucket_percentiles_equal_the_histograms() {
        let mut h = new_histogram();
        let mut x: u64 = 99;
        for n in 1..=2000u64 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            h.record(1 + (x >> 33) % 50_000_000).expect("in range");
            if n % 97 == 0 || n < 5 {
                let d = LiveDistribution::from_histogram(&h, 0);
                assert_eq!(d.count, h.len());
                assert_eq!(d.max_ms, Some(h.max() as f64 / 1000.0));
                // q = 0 is HDR's lowest equivalent value: not a percentile anything reads.
                for q in [0.001, 0.25, 0.5, 0.9, 0.99, 0.999, 1.0] {
                    let hdr = h.value_at_quantile(q);
                    assert_eq!(bucket_quantile(&d.buckets, d.count, q), Some(hdr), "q {q} of {n}");
                }
            }
        }
    }

    #[test]
    fn snapshot_round_trips_through_json() {
        let mut h = new_histogram();
        for v in [500u64, 1500, 1500, 9000] {
            h.record(v).expect("in range");
        }
        let s = LiveSnapshot {
            schema_version: LIVE_SCHEMA_VERSION,
            run_id: "r".into(),
            run_dir: "runs/x".into(),
            state: LiveState::Draining,
            elapsed_s: 1.5,
            seq: 3,
            plan: None,
            counts: LiveCounts {
                errors: [(ErrorKind::Timeout, 2)].into_iter().collect(),
                ..LiveCounts::default()
            },
            ttft: LiveDistribution::from_histogram(&h, 12_500),
            gap: LiveDistribution::default(),
            e2e: LiveDistribution::default(),
        };
        let text = serde_json::to_string(&s).expect("serializes");
        assert!(
            text.contains(r#""state":"draining""#) && text.contains(r#""timeout":2"#),
            "{text}"
        );
        assert_eq!(serde_json::from_str::<LiveSnapshot>(&text).expect("parses"), s);
        assert_eq!(s.ttft.p50_ms, Some(1.5), "HDR rank rule: the 2nd of 4 samples");
    }
}
