//! `summary.json`: one run scored under one tokenizer and one set of metric definitions.
//!
//! `analyze report` writes it; `plot`, scripts and `analyze sweep` read it back through these
//! types, so a renamed or missing field is an error naming the field, not an empty chart.
//! The metric definitions themselves are documented in `docs/metrics.md`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::enums::string_enum;

string_enum! {
    /// Where TTFT and E2E latency start.
    LatencyFrom {
        /// The `sent` event of the attempt that was answered (default): the server's share.
        Sent => "sent",
        /// The start of the TCP connect when the request opened its own connection, else
        /// `sent`: what a client opening a connection per request (vLLM's benchmark client)
        /// measures, connection set-up included.
        Connect => "connect",
        /// The moment the load schedule intended the request to be sent (`scheduled_ns`):
        /// time a saturated client spends queueing shows in TTFT and E2E instead of hiding in
        /// `client_lag` (coordinated omission). Unknown for a request whose `requests` row a
        /// kill took.
        Scheduled => "scheduled",
    }
}

string_enum! {
    /// What an inter-token latency is when one chunk delivers several tokens: each peer's
    /// definition (`docs/metrics.md`, "Per-token timing").
    ItlDefinition {
        /// No per-token ITL: the chunk gaps (`icl_ms`) are what vLLM calls ITL (default).
        Chunk => "chunk",
        /// A k-token chunk after a gap g gives k samples g/k (SGLang's `bench_serving`).
        Split => "split",
        /// A k-token chunk after a gap g gives one sample g/k (GenAI-Perf).
        Divided => "divided",
        /// A k-token chunk after a gap g gives g, then k - 1 zeros (inference-perf).
        FirstGetsGap => "first-gets-gap",
        /// One sample per request, (t_last - t_first)/(N - 1): TPOT (AIPerf, GuideLLM).
        Mean => "mean",
    }
}

string_enum! {
    /// Which event ends TTFT.
    TtftOn {
        /// First SSE event with non-empty content, reasoning or a tool call (default).
        Output => "output",
        /// First SSE event carrying any choice, even role-only or empty (vLLM's client).
        Any => "any",
        /// First SSE event with non-empty content (reasoning ignored).
        Content => "content",
    }
}

string_enum! {
    /// Which event ends E2E latency.
    E2eEnd {
        /// The last SSE event with output (default).
        LastToken => "last-token",
        /// The terminal `done` event (after usage and `[DONE]`): transport end.
        Done => "done",
    }
}

string_enum! {
    /// Where token counts come from.
    TokenSource {
        /// Counted by the tokenizer on the recorded text (default).
        Tokenizer => "tokenizer",
        /// `usage` as the server reported it.
        Server => "server",
    }
}

string_enum! {
    /// How a chat prompt's input length is counted.
    IslMode {
        /// Messages rendered through the chat template, when `tokenizer_config.json` has one.
        Template => "template",
        /// Message contents joined with `\n`.
        Raw => "raw",
    }
}

string_enum! {
    /// Which windows a summary reports besides the full measure window (`--window`).
    Window {
        /// The measure window only (default).
        Full => "full",
        /// Also the steady state: from the first measured request's end to the last
        /// measured request's send (`docs/metrics.md`, "Steady state").
        Steady => "steady",
    }
}

/// The chosen definition of each metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Definitions {
    /// Start point of TTFT and E2E (absent in summaries written before it existed: `sent`).
    #[serde(default = "default_latency_from")]
    pub latency_from: LatencyFrom,
    /// TTFT end point.
    pub ttft_on: TtftOn,
    /// E2E end point.
    pub e2e_end: E2eEnd,
    /// Token count source for ISL/OSL used in TPOT and throughput.
    pub tokens: TokenSource,
    /// Inter-token latency definition (`itl_ms`); absent in older summaries: `chunk`.
    #[serde(default = "default_itl")]
    pub itl: ItlDefinition,
}

fn default_itl() -> ItlDefinition {
    ItlDefinition::Chunk
}

fn default_latency_from() -> LatencyFrom {
    LatencyFrom::Sent
}

impl Default for Definitions {
    fn default() -> Self {
        Definitions {
            latency_from: LatencyFrom::Sent,
            ttft_on: TtftOn::Output,
            e2e_end: E2eEnd::LastToken,
            tokens: TokenSource::Tokenizer,
            itl: ItlDefinition::Chunk,
        }
    }
}

/// Service-level objectives for goodput: a request is good when it succeeded and each given
/// bound holds (TPOT is undefined for one-token outputs and then holds).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Slo {
    /// TTFT bound in ms.
    pub ttft_ms: Option<f64>,
    /// TPOT bound in ms.
    pub tpot_ms: Option<f64>,
    /// E2E bound in ms.
    pub e2e_ms: Option<f64>,
}

impl Slo {
    /// Whether any bound is set.
    pub fn is_set(&self) -> bool {
        self.ttft_ms.is_some() || self.tpot_ms.is_some() || self.e2e_ms.is_some()
    }
}

/// The percentiles every distribution reports, by field name.
pub const PERCENTILES: [(&str, f64); 5] = [
    ("p50", 50.0),
    ("p90", 90.0),
    ("p95", 95.0),
    ("p99", 99.0),
    ("p99_9", 99.9),
];

/// Confidence of the percentile intervals in every [`Distribution`] (`intervals`).
pub const PERCENTILE_CONFIDENCE: f64 = 0.95;

/// Summary of one distribution; all fields null when there are no samples.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Distribution {
    /// Number of samples.
    pub count: u64,
    /// Arithmetic mean.
    pub mean: Option<f64>,
    /// Population standard deviation.
    pub std: Option<f64>,
    /// Smallest sample.
    pub min: Option<f64>,
    /// Largest sample.
    pub max: Option<f64>,
    /// Median.
    pub p50: Option<f64>,
    /// 90th percentile.
    pub p90: Option<f64>,
    /// 95th percentile.
    pub p95: Option<f64>,
    /// 99th percentile.
    pub p99: Option<f64>,
    /// 99.9th percentile.
    pub p99_9: Option<f64>,
    /// Distribution-free confidence intervals of the percentiles above, by name (`p99`):
    /// `[low, high]`, two of the samples (order statistics) that hold the true percentile
    /// with probability at least [`PERCENTILE_CONFIDENCE`] whatever the distribution
    /// (`docs/metrics.md`). A percentile with too few samples for one has none.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub intervals: BTreeMap<String, [f64; 2]>,
}

impl Distribution {
    /// The named statistic (`mean`, `p99`, ...), for sweep axes and SLO checks.
    pub fn get(&self, name: &str) -> Option<f64> {
        match name {
            "mean" => self.mean,
            "std" => self.std,
            "min" => self.min,
            "max" => self.max,
            "p50" => self.p50,
            "p90" => self.p90,
            "p95" => self.p95,
            "p99" => self.p99,
            "p99_9" => self.p99_9,
            _ => {
                // `p99_low`, `p99_high`: the bounds of a percentile's interval.
                let (p, end) = name.rsplit_once('_')?;
                let [low, high] = self.intervals.get(p)?;
                match end {
                    "low" => Some(*low),
                    "high" => Some(*high),
                    _ => None,
                }
            }
        }
    }
}

/// Agreement between tokenizer and server counts over requests that have both.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Agreement {
    /// Requests compared.
    pub compared: u64,
    /// Share with identical counts.
    pub share_equal: Option<f64>,
    /// Mean of (tokenizer - server).
    pub mean_diff: Option<f64>,
    /// Largest |tokenizer - server|.
    pub max_abs_diff: Option<i64>,
}

/// Goodput under the SLOs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Goodput {
    /// The bounds.
    pub slo: Slo,
    /// Measure-phase requests meeting them.
    pub good_requests: u64,
    /// Good requests per second of window.
    pub requests_per_s: Option<f64>,
    /// Good requests / measure-phase requests.
    pub share: Option<f64>,
}

/// Request counts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Counts {
    /// All requests in the run (warmup included).
    pub total: u64,
    /// Measure-phase requests.
    pub measure: u64,
    /// Measure-phase requests that succeeded.
    pub ok: u64,
    /// Measure-phase failures by `error_kind` (`lost`: no terminal event, the run was killed).
    pub errors: BTreeMap<crate::ErrorKind, u64>,
    /// SSE events marked `protocol` (malformed or in-stream errors) in measure-phase requests.
    pub protocol_events: u64,
    /// Measure-phase requests sent a second time because their reused connection failed
    /// before any response byte (the server had closed it); their latencies count from the
    /// answered attempt.
    #[serde(default)]
    pub retried: u64,
    /// Measure-phase successful requests whose output length is unknown (`--tokens server`
    /// and the server sent no `usage`): their tokens are missing from the token rates, and an
    /// SLO on TPOT counts them as not met.
    #[serde(default)]
    pub osl_unknown: u64,
}

/// Which run was scored, and how: the fields that name a summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scoring {
    /// Run folder.
    pub run: String,
    /// Run id.
    pub run_id: String,
    /// Manifest status.
    pub status: crate::RunStatus,
    /// Tokenizer id.
    pub tokenizer_id: String,
    /// The engine that counted the tokens: `fast path (...)` (Recap's count-only BPE, checked
    /// against `tokenizers`) or `tokenizers (why)`. Absent in older summaries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokenizer_engine: Option<String>,
    /// Definitions used.
    pub definitions: Definitions,
    /// How chat ISL was counted.
    pub isl: IslMode,
}

/// The summary of one run under one tokenizer and one set of definitions (`summary.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Run, tokenizer and definitions (flattened into the JSON's top level).
    #[serde(flatten)]
    pub scoring: Scoring,
    /// Request counts.
    pub requests: Counts,
    /// Measure window: first `sent` to last terminal event of measure-phase requests.
    pub window_s: Option<f64>,
    /// Successful requests / window.
    pub requests_per_s: Option<f64>,
    /// Output tokens of successful requests / window.
    pub output_tokens_per_s: Option<f64>,
    /// Input + output tokens of successful requests / window.
    pub total_tokens_per_s: Option<f64>,
    /// Input tokens of successful requests / window (what embeddings and rerank servers are
    /// sized by).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_tokens_per_s: Option<f64>,
    /// Items of successful embeddings or rerank requests (texts embedded, documents scored) /
    /// window; absent for the generating APIs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items_per_s: Option<f64>,
    /// 1000 / mean TPOT (ms): the token rate one user sees once output starts.
    pub output_tokens_per_s_per_user: Option<f64>,
    /// Bootstrap intervals of the rates (`requests_per_s`, `output_tokens_per_s`) at
    /// [`PERCENTILE_CONFIDENCE`], over 20 equal time blocks of the window (`docs/metrics.md`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub rate_intervals: BTreeMap<String, [f64; 2]>,
    /// False when some successful requests' output length is unknown
    /// (`requests.osl_unknown`): the token rates above then undercount.
    #[serde(default = "yes")]
    pub token_throughput_complete: bool,
    /// Goodput.
    pub goodput: Goodput,
    /// Distributions over measure-phase successful requests (ICL over all their gaps), by
    /// metric name (`ttft_ms`, `tpot_ms`, `icl_ms`, `e2e_ms`, `isl_tokens`, `osl_tokens`,
    /// `client_lag_ms`).
    pub metrics: BTreeMap<String, Distribution>,
    /// Output-token agreement (tokenizer vs `usage.completion_tokens`).
    pub osl_agreement: Agreement,
    /// Input-token agreement (tokenizer vs `usage.prompt_tokens`).
    pub isl_agreement: Agreement,
    /// Measured input tokens vs the length the dataset row was generated for
    /// (`planned_input_tokens`); `compared` is 0 for datasets without a plan.
    #[serde(default)]
    pub planned_isl: Agreement,
    /// Output tokens vs the `max_tokens` sent: with `ignore_eos` every request should equal it.
    #[serde(default)]
    pub planned_osl: Agreement,
    /// Multi-turn runs: the measure-phase requests of each turn index, in turn order (TTFT
    /// by turn shows what a prefix cache saves as the history grows). Empty otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub by_turn: Vec<TurnSummary>,
    /// Runs of a dataset with `prefix_group`s: the measure-phase requests of each group (the
    /// prefix-cache hit share by group shows whether shared prefixes were reused). Empty
    /// otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub by_prefix_group: Vec<PrefixGroupSummary>,
    /// With `--window steady`: the steady state, beside the full window above (absent when
    /// not asked for, or when the run has none: every request sent before the first ended).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steady: Option<SteadyState>,
    /// With `--constraint` or `--mlperf`: each latency bound checked as MLPerf LoadGen checks
    /// its Server scenario (absent otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub constraints: Option<Constraints>,
    /// The server's own metrics over the measure window, from the run's scrapes
    /// (`capture --scrape`; absent for runs without).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<ServerSummary>,
    /// Whether the client could have set the pace (`docs/metrics.md`, "The client's health");
    /// absent for runs captured before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<ClientCheck>,
    /// A sharded capture (`capture --shard I/N`) read as one run: each shard's share and
    /// clock, and what may be wrong with the merge. Absent for a run of one process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shards: Option<ShardsSummary>,
}

/// The shards a run was merged from (`docs/metrics.md`, "Sharded runs").
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ShardsSummary {
    /// Shards the capture was launched with.
    pub count: u32,
    /// The shards found, by index.
    pub shards: Vec<ShardSummary>,
    /// What makes the merge doubtful (a missing shard, a clock offset known too loosely), one
    /// sentence each; empty when nothing does.
    pub warnings: Vec<String>,
}

/// One shard of a merged run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ShardSummary {
    /// Its index.
    pub index: u32,
    /// Its `manifest.run_id`.
    pub run_id: String,
    /// Its run status.
    pub status: String,
    /// Requests it sent (its manifest's count).
    pub requests: u64,
    /// Of which ended `done`.
    pub done: u64,
    /// Of which ended in an error.
    pub errors: u64,
    /// Its clock's measured offset to shard 0's (ms; `null`: not measured).
    pub clock_offset_ms: Option<f64>,
    /// That offset's uncertainty (plus or minus, ms).
    pub clock_offset_uncertainty_ms: Option<f64>,
    /// How far its times were moved to put them on shard 0's timeline (ms).
    pub shift_ms: f64,
}

/// The capture process's own load during the run, from its manifest, and what it may have
/// distorted.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClientCheck {
    /// CPU time over the wall time of all cores (1.0: every core busy the whole run).
    pub cpu_share: f64,
    /// Cores capture could use.
    pub cores: u32,
    /// How late the runtime woke a 10 ms sleep (ms): median, 99th percentile, largest.
    pub timer_lag_p50_ms: f64,
    /// 99th percentile.
    pub timer_lag_p99_ms: f64,
    /// Largest.
    pub timer_lag_max_ms: f64,
    /// Times workers waited for the recorder.
    pub recorder_waits: u64,
    /// Their total wait (ms).
    pub recorder_wait_ms: f64,
    /// What may have distorted the latencies, one sentence each; empty when nothing did.
    pub warnings: Vec<String>,
}

/// The server's metrics over the measure window (`docs/metrics.md`, "Server metrics").
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServerSummary {
    /// Endpoints scraped.
    pub targets: Vec<String>,
    /// Scrapes sent within the window (all targets).
    pub scrapes: u64,
    /// Of those, the ones that failed (timeout, connect, status); their rows say why.
    pub failed_scrapes: u64,
    /// Lines of the window's expositions that could not be read as samples.
    pub unparsed_lines: u64,
    /// Each well-known series found (`recap_schemas::server::WELL_KNOWN`), by key.
    pub series: BTreeMap<String, ServerSeries>,
    /// Prompt tokens served from the prefix cache over the window, from the server's hit and
    /// query counters (vLLM); absent when it exposes none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix_cache_hit_share: Option<f64>,
}

/// One well-known series over the window: each scrape's value (label sets combined).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServerSeries {
    /// The exposed name it was read from.
    pub metric: String,
    /// Scrapes that carried it.
    pub samples: u64,
    /// Mean over those scrapes.
    pub mean: Option<f64>,
    /// Smallest.
    pub min: Option<f64>,
    /// Largest.
    pub max: Option<f64>,
}

/// Latency bounds checked the way MLPerf LoadGen checks a Server run (`docs/metrics.md`,
/// "Constraints").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Constraints {
    /// The named set (`mlperf llama2-70b`), or null for `--constraint` alone.
    pub set: Option<String>,
    /// Confidence of the early-stopping checks (LoadGen: 0.99).
    pub confidence: f64,
    /// The set's minimum run duration in seconds (MLPerf: 600), checked against the measure
    /// window; null when the set has none.
    pub min_duration_s: Option<f64>,
    /// Every bound held, early stopping held for each, and the run lasted long enough.
    pub passed: bool,
    /// One check per bound.
    pub checks: Vec<ConstraintCheck>,
}

/// One bound: `metric`'s `percentile` at most `limit_ms`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConstraintCheck {
    /// `ttft_ms`, `tpot_ms` or `e2e_ms`.
    pub metric: String,
    /// Percentile, 0-100 (`99`).
    pub percentile: f64,
    /// The bound.
    pub limit_ms: f64,
    /// Measure-phase requests checked (for TPOT, those with more than one output token or
    /// unknown length).
    pub samples: u64,
    /// Of those, over the bound: failed, unknown, or larger than `limit_ms`.
    pub over: u64,
    /// The percentile as LoadGen takes it (`sorted[⌊n·p⌋]` of the successful requests' values).
    pub value_ms: Option<f64>,
    /// `value_ms <= limit_ms` (LoadGen's "performance constraints satisfied").
    pub within: bool,
    /// Samples early stopping needs with this many over the bound (`h + t`).
    pub needed: u64,
    /// How many more samples a short run lacks, were each under the bound.
    pub more_needed: u64,
    /// Early stopping holds: `samples >= needed`.
    pub early_stopping: bool,
    /// LoadGen's early-stopping estimate of the percentile: a value the true percentile is
    /// below at `confidence`; null when the run is too short for one.
    pub estimate_ms: Option<f64>,
    /// `within && early_stopping`.
    pub passed: bool,
}

/// The part of the measure window where the load neither ramps up nor drains: from the end of
/// the first measured request (before it, every request is in its first round) to the send of
/// the last (after it, the load only drains). Rates count the requests that end inside it;
/// distributions are over the successful requests sent and ended inside it, which saw only
/// steady load.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SteadyState {
    /// Start, seconds after the measure window's start (its first measured `sent`).
    pub start_s: f64,
    /// End, seconds after the measure window's start.
    pub end_s: f64,
    /// `end_s - start_s`.
    pub window_s: f64,
    /// Measure-phase requests ending inside the window (successful or not).
    pub requests_ended: u64,
    /// Successful requests ending inside the window / window.
    pub requests_per_s: f64,
    /// Output tokens of the successful requests ending inside the window / window.
    pub output_tokens_per_s: Option<f64>,
    /// Measure-phase requests sent and ended inside the window.
    pub requests_inside: u64,
    /// Distributions over the successful requests sent and ended inside the window
    /// (`ttft_ms`, `tpot_ms`, `e2e_ms`, ...).
    pub metrics: BTreeMap<String, Distribution>,
}

fn yes() -> bool {
    true
}

/// The measure-phase requests of one `prefix_group`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PrefixGroupSummary {
    /// The dataset rows' `prefix_group`.
    pub prefix_group: u32,
    /// Measure-phase requests of this group.
    pub requests: u64,
    /// Of which succeeded.
    pub ok: u64,
    /// Over the successful ones, by metric name (as [`TurnSummary::metrics`]).
    pub metrics: BTreeMap<String, Distribution>,
}

/// The measure-phase requests of one turn index of a multi-turn run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TurnSummary {
    /// 0-based turn index.
    pub turn: u32,
    /// Measure-phase requests of this turn.
    pub requests: u64,
    /// Of which succeeded.
    pub ok: u64,
    /// Over the successful ones, by metric name (`ttft_ms`, `tpot_ms`, `e2e_ms`,
    /// `isl_tokens`, `osl_tokens`).
    pub metrics: BTreeMap<String, Distribution>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_are_the_cli_and_json_ones() {
        assert_eq!(E2eEnd::LastToken.as_str(), "last-token");
        assert_eq!(
            serde_json::to_string(&E2eEnd::LastToken).ok().as_deref(),
            Some("\"last-token\"")
        );
        assert_eq!("any".parse::<TtftOn>(), Ok(TtftOn::Any));
        assert!("nope"
            .parse::<TtftOn>()
            .is_err_and(|e| e.contains("output, any, content")));
    }

    #[test]
    fn a_missing_field_is_named() {
        let e = serde_json::from_str::<Counts>(r#"{"total": 1, "measure": 1, "ok": 1, "errors": {}}"#)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("protocol_events"), "{e}");
    }
}
