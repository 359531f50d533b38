//! Command-line flags and the checked configuration the run receives.
//!
//! Flags are parsed by clap ([`Args`]) and validated once into a [`Config`]; the rest of the
//! crate only sees checked values. The flag names are a contract scripts rely on.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use http::HeaderMap;
use recap_schemas::live::Condition;
use recap_schemas::Api;
use serde_json::{Map, Value};

use crate::dataset::Dataset;
use crate::request::BodyOptions;
use crate::schedule::Arrival;

/// Which API to call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ApiArg {
    /// `/v1/chat/completions` with `messages`.
    Chat,
    /// `/v1/completions` with `prompt`.
    Completions,
    /// OpenAI Responses: `/v1/responses` with `input`.
    Responses,
    /// Anthropic Messages: `/v1/messages` with `messages` and `system`.
    Messages,
    /// `/v1/embeddings` with `input`, a batch of texts (not streamed).
    Embeddings,
    /// `/v1/rerank` with `query` and `documents` (not streamed).
    Rerank,
}

/// Where open-loop send times come from besides `--rate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ScheduleArg {
    /// Each dataset row once, in file order, at its `timestamp_ms` offset (a trace).
    Timestamps,
}

/// Inter-arrival process for `--rate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ArrivalArg {
    /// Evenly spaced requests.
    Constant,
    /// Exponential gaps (a Poisson process).
    Poisson,
    /// Gamma gaps with shape `--burstiness`.
    Gamma,
}

/// Record an LLM endpoint load test: every timing event and every streamed chunk, to Parquet.
///
/// Closed loop: `--concurrency N` keeps N requests in flight. Open loop: `--rate R` sends on a
/// schedule (`--arrival`, `--burstiness`) with at most `--max-in-flight` in flight; `--rate inf`
/// sends everything at once. The run stops after `--requests` and/or `--duration` (default:
/// each dataset row once). Ctrl-C stops scheduling, lets in-flight requests finish for
/// `--grace`, then cancels them; a second Ctrl-C cancels at once.
#[derive(Debug, Clone, Parser)]
#[command(name = "capture", version)]
#[command(group = clap::ArgGroup::new("open_loop").args(["rate", "schedule"]).multiple(false))]
pub struct Args {
    /// Endpoint base URL (`http://host:8000`) or full path (`.../v1/chat/completions`).
    #[arg(long, value_name = "URL")]
    pub url: String,
    /// API to call.
    #[arg(long, value_enum, default_value = "chat")]
    pub api: ApiArg,
    /// `model` field sent with every request (default: `default`; with `--replay`, the
    /// recorded one).
    #[arg(long)]
    pub model: Option<String>,
    /// Send a recorded run again: its request bodies, in its order, at its scheduled offsets
    /// (open loop, like `--schedule timestamps`), to `--url`; `--model` replaces the model.
    /// The manifest links the source run.
    #[arg(long, value_name = "RUN", conflicts_with_all = ["dataset", "concurrency", "rate", "schedule"])]
    pub replay: Option<PathBuf>,
    /// JSONL (`prompt` or `messages`, optional `max_tokens`) or ShareGPT JSON; default: a small
    /// built-in prompt set.
    #[arg(long, value_name = "FILE")]
    pub dataset: Option<PathBuf>,
    /// Skip invalid dataset rows (counted) instead of stopping at the first one.
    #[arg(long)]
    pub skip_invalid: bool,
    /// Run folder to create.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Replace the run already in `--out`.
    #[arg(long)]
    pub force: bool,
    /// Closed loop: requests kept in flight. A list (`1,4,16`) runs a sweep: one run folder
    /// per point (and per `--repeat`) inside `--out`, listed in `plan.json`.
    /// `search:LO..HI` with `--until` searches for the highest concurrency that meets it.
    #[arg(long, conflicts_with = "rate", value_name = "N[,N...]|search:LO..HI", value_delimiter = ',', value_parser = parse_concurrency)]
    pub concurrency: Vec<ConcurrencyArg>,
    /// Open loop: requests per second, or `inf` to send all at once. A list (`2,4,8`) runs a
    /// sweep like `--concurrency`; `search:LO..HI` with `--until` searches like it.
    #[arg(long, value_name = "RATE|inf[,...]|search:LO..HI", value_delimiter = ',')]
    pub rate: Vec<String>,
    /// Multi-turn sessions in progress at once (closed loop), for a dataset whose rows carry
    /// `session_id` and `turn`: each session's turns in order, each after the previous answer
    /// and `--think-time`, with the conversation so far. A list runs a sweep. With `--rate`
    /// instead, sessions start at that rate.
    #[arg(long, conflicts_with_all = ["concurrency", "rate"], value_name = "N[,N...]", value_delimiter = ',')]
    pub sessions: Vec<u32>,
    /// Pause between a turn's answer and the session's next turn: a duration (`2s`) or
    /// `from-dataset` (each row's `think_time_ms`).
    #[arg(long, value_name = "DURATION|from-dataset")]
    pub think_time: Option<String>,
    /// Which answers a session's later turns carry: `recorded` (what the server answered in
    /// this run) or `dataset` (the rows' `reference_output`, the same history for every server).
    #[arg(long, value_name = "recorded|dataset", value_parser = parse_spelling::<recap_schemas::SessionHistory>)]
    pub session_history: Option<recap_schemas::SessionHistory>,
    /// Send each request's session id in this header (e.g. `x-session-id`), for routers that
    /// keep a session on one replica.
    #[arg(long, value_name = "NAME")]
    pub session_header: Option<String>,
    /// Runs of each load point (a plan folder with `plan.json` when above 1), for
    /// confidence intervals and ellipses in `analyze sweep`.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub repeat: u32,
    /// Pause between the runs of a plan (lets the server drain its queues and caches cool).
    #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub pause: Option<Duration>,
    /// Open loop at the dataset's own `timestamp_ms` offsets: each row once, in file order
    /// (`analyze dataset trace` writes such rows). `requests.scheduled_ns` is the scaled offset.
    #[arg(long, value_enum, conflicts_with = "concurrency")]
    pub schedule: Option<ScheduleArg>,
    /// With `--schedule timestamps` or `--replay`: multiply the offsets (0.5 replays twice as fast).
    #[arg(long, value_name = "FACTOR")]
    pub time_scale: Option<f64>,
    /// Arrival process for `--rate` (open loop only).
    #[arg(
        long,
        value_enum,
        default_value = "poisson",
        requires = "rate",
        conflicts_with = "concurrency"
    )]
    pub arrival: ArrivalArg,
    /// Gamma shape k for `--arrival gamma` (1 = Poisson, < 1 burstier); implies gamma.
    #[arg(long, value_name = "K", requires = "rate", conflicts_with = "concurrency")]
    pub burstiness: Option<f64>,
    /// Open loop: cap on requests in flight (late requests queue, and their lag is recorded).
    #[arg(
        long,
        value_name = "N",
        default_value_t = 1024,
        requires = "open_loop",
        conflicts_with = "concurrency"
    )]
    pub max_in_flight: u32,
    /// Measure-phase requests to send (the dataset cycles).
    #[arg(long, value_name = "N")]
    pub requests: Option<u64>,
    /// Stop scheduling after this long (`60s`, `5m`).
    #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub duration: Option<Duration>,
    /// Requests sent first and marked `warmup`.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub warmup_requests: u64,
    /// Requests scheduled within this time from the start are marked `warmup` (after any
    /// `--ramp-up`, which is marked `ramp`).
    #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub warmup: Option<Duration>,
    /// Requests scheduled in the last DURATION of `--duration` are marked `cooldown` (the
    /// server still sees full load while the measured requests finish).
    #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION", requires = "duration")]
    pub cooldown: Option<Duration>,
    /// Stop scheduling once more than this share of ended requests are errors (checked from
    /// the 20th ended request on); the run's status is then `stopped`, and a plan stops too.
    #[arg(long, value_name = "FRACTION")]
    pub max_error_rate: Option<f64>,
    /// Stop scheduling once a live latency percentile crosses a threshold (`ttft_p99>2s`,
    /// `e2e_p50>10s`, `gap_p99<1ms`; a list stops at the first that holds), judged every
    /// 100 ms once that latency has `--stop-min-samples` samples; the run's status is then
    /// `stopped` with the condition in its message, and a sweep stops too.
    #[arg(long, value_name = "METRIC_pQ>DURATION[,...]", value_delimiter = ',', value_parser = parse_condition)]
    pub stop_when: Vec<Condition>,
    /// Samples a latency needs before `--stop-when` (or `--until`) judges it during a run.
    #[arg(long, default_value_t = crate::steer::DEFAULT_MIN_SAMPLES, value_name = "N")]
    pub stop_min_samples: u64,
    /// The condition a capacity search (`--concurrency search:LO..HI`, `--rate search:LO..HI`)
    /// looks for: each load point runs until it holds (it then also stops that point, as
    /// `--stop-when` would) or the run ends, and the search reports the highest point at which
    /// it did not hold.
    #[arg(long, value_name = "METRIC_pQ>DURATION", value_parser = parse_condition)]
    pub until: Option<Condition>,
    /// A rate search ends when the highest rate that passed and the lowest that did not are
    /// within this share of each other.
    #[arg(long, default_value_t = 0.05, value_name = "FRACTION")]
    pub search_resolution: f64,
    /// Publish live numbers on this address (`127.0.0.1:9464`; port 0 picks a free one, named
    /// on stderr): `/metrics` (Prometheus text), `/snapshot` (JSON), `/stream` (server-sent
    /// events); the final snapshot is also written as `live.json` in the run folder.
    #[arg(long, value_name = "ADDR")]
    pub live: Option<String>,
    /// Snapshots per second published on `/stream` (and rendered for `/metrics`).
    #[arg(long, default_value_t = crate::live::DEFAULT_HZ, value_name = "HZ")]
    pub live_hz: f64,
    /// Grow the load linearly over DURATION: closed loop starts its workers one by one,
    /// open loop raises the rate from 0. Requests scheduled in it are marked `ramp`.
    #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub ramp_up: Option<Duration>,
    /// Stream responses as SSE (the default).
    #[arg(long, overrides_with = "no_stream")]
    pub stream: bool,
    /// Ask for whole (non-streaming) responses.
    #[arg(long)]
    pub no_stream: bool,
    /// `max_tokens` for rows without their own.
    #[arg(long, value_name = "N")]
    pub max_tokens: Option<u32>,
    /// `--api embeddings`: send every N consecutive dataset rows' texts as one request's
    /// `input` (a row with an `input` list is a batch of its own without it).
    #[arg(long, value_name = "N")]
    pub batch_size: Option<usize>,
    /// JSON object merged into every request body, e.g. '{"ignore_eos": true}'.
    #[arg(long, value_name = "JSON")]
    pub body_extra: Option<String>,
    /// Per-request timeout, from connect to the last byte.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "600s", value_name = "DURATION")]
    pub timeout: Duration,
    /// After Ctrl-C/SIGTERM, how long in-flight requests may finish before being cancelled.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10s", value_name = "DURATION")]
    pub grace: Duration,
    /// Environment variable holding the API key (sent as `Authorization: Bearer`, with
    /// `--api messages` as `x-api-key`; never written).
    #[arg(long, value_name = "VAR")]
    pub api_key_env: Option<String>,
    /// Extra request header `'Name: value'` (repeatable); credential values are redacted.
    #[arg(long = "header", short = 'H', value_name = "NAME: VALUE")]
    pub headers: Vec<String>,
    /// Seed of the arrival process.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub seed: u64,
    /// Accept any TLS certificate (self-signed test endpoints). Verification is on by default.
    #[arg(long)]
    pub insecure: bool,
    /// Longest time recorded rows wait before reaching a closed Parquet segment.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "1s", value_name = "DURATION")]
    pub flush_interval: Duration,
    /// Read these metrics endpoints (Prometheus text: vLLM, SGLang, TGI, llama.cpp
    /// `/metrics`, a DCGM exporter) every `--scrape-interval` during the run, into the run's
    /// `scrapes` table as received; `analyze` parses them (`server_metrics`). A failed read is
    /// a recorded row, never fatal, and never delays a request.
    #[arg(long, value_name = "URL[,URL...]", value_delimiter = ',')]
    pub scrape: Vec<String>,
    /// Period of `--scrape`.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "1s", value_name = "DURATION")]
    pub scrape_interval: Duration,
    /// Longest a scrape may take (default: the interval, at most 5 s).
    #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub scrape_timeout: Option<Duration>,
    /// Close a segment early at this many rows.
    #[arg(long, default_value_t = 1 << 20, value_name = "N")]
    pub segment_rows: usize,
    /// Sends the recorder buffers between workers and the Parquet writer (a send is one row,
    /// or the rows of one read of a stream); when full, workers wait, and the run reports how
    /// long (back-pressure). Memory is bounded by --record-buffer-bytes.
    #[arg(long, default_value_t = 1 << 16, value_name = "N")]
    pub record_buffer_rows: usize,
    /// Largest SSE event (or line) kept, in bytes; a bigger one becomes a `protocol` row
    /// without its data and the stream goes on.
    #[arg(long, default_value_t = crate::sse::DEFAULT_MAX_EVENT_BYTES, value_name = "BYTES")]
    pub max_event_bytes: usize,
    /// Most bytes of one response body decoded (after gzip/deflate), streamed or not; past it
    /// the request ends as a `protocol` error and memory stays flat (a decompression bomb).
    #[arg(long, default_value_t = crate::client::DEFAULT_MAX_RESPONSE_BYTES, value_name = "BYTES")]
    pub max_response_bytes: usize,
    /// Bytes of rows the recorder buffers between workers and the Parquet writer (a row with a
    /// raw payload may be large); when full, workers wait (back-pressure).
    #[arg(long, default_value_t = crate::recorder::DEFAULT_BUFFER_BYTES, value_name = "BYTES")]
    pub record_buffer_bytes: usize,
    /// Which raw payloads go to `events.raw`: every SSE event's data and every body (`all`),
    /// only those of rows with an error (`errors`), or none.
    #[arg(long, default_value = "all", value_name = "none|errors|all", value_parser = parse_spelling::<recap_schemas::RawMode>)]
    pub raw: recap_schemas::RawMode,
    /// Header carrying `<run_id>-<request_id>` on every request, so a run joins with the
    /// server's logs.
    #[arg(long, default_value = "x-request-id", value_name = "NAME")]
    pub request_id_header: String,
    /// Send no request-id header.
    #[arg(long)]
    pub no_request_id: bool,
    /// A session whose history passes this many bytes of text ends there (and is counted in
    /// the manifest), so memory per session stays bounded.
    #[arg(long, default_value_t = crate::session::DEFAULT_MAX_HISTORY_BYTES, value_name = "BYTES")]
    pub max_history_bytes: usize,
    /// Send shard I's share of the load of N capture processes (`0/4`): closed loop its share
    /// of the concurrency, open loop every N-th arrival of the one seeded schedule, whole
    /// sessions; into `--out`'s `shards/I`, which `analyze` reads as one run with the others.
    /// Without it, `JOB_COMPLETION_INDEX` (Kubernetes, with `RECAP_SHARDS`) or `SLURM_PROCID`
    /// (with `SLURM_NTASKS`) name the shard.
    #[arg(long, value_name = "I/N", value_parser = crate::shard::Shard::parse)]
    pub shard: Option<crate::shard::Shard>,
    /// Shards start at this wall-clock time (RFC 3339, `2026-12-04T10:00:00Z`); the hosts'
    /// clocks are trusted (NTP).
    #[arg(long, value_name = "RFC3339", conflicts_with = "barrier")]
    pub start_at: Option<String>,
    /// Shards start together when shard 0's live endpoint (`--live` on shard 0) releases them,
    /// and each measures its clock's offset to shard 0's on the way (every shard may be given
    /// the same command line: shard 0 serves the barrier itself).
    #[arg(long, value_name = "URL")]
    pub barrier: Option<String>,
    /// How long the barrier waits for every shard.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10m", value_name = "DURATION")]
    pub barrier_timeout: Duration,
    /// Tests only: pretend this host's wall clock is off by this many milliseconds.
    #[arg(long, hide = true, allow_negative_numbers = true, value_name = "MS")]
    pub test_clock_skew_ms: Option<i64>,
    /// Worker threads of the load generator (default: all cores).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// No progress line and no summary on stderr.
    #[arg(long, short)]
    pub quiet: bool,
    /// Print the final summary as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// More logging (repeat for more); RUST_LOG overrides.
    #[arg(long, short, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

/// One `--concurrency` value: a level, or a capacity search's range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConcurrencyArg {
    /// Requests in flight.
    N(u32),
    /// `search:LO..HI`.
    Search(u32, u32),
}

fn parse_concurrency(text: &str) -> Result<ConcurrencyArg, String> {
    match parse_search(text) {
        Some(Ok((lo, hi))) => {
            let int = |x: f64| (x.fract() == 0.0 && x >= 1.0 && x <= f64::from(u32::MAX)).then_some(x as u32);
            match (int(lo), int(hi)) {
                (Some(lo), Some(hi)) => Ok(ConcurrencyArg::Search(lo, hi)),
                _ => Err(format!(
                    "{text:?}: a concurrency search needs whole numbers of at least 1"
                )),
            }
        }
        Some(Err(e)) => Err(e),
        None => text
            .trim()
            .parse::<u32>()
            .map(ConcurrencyArg::N)
            .map_err(|_| format!("{text:?}: expected a whole number or search:LO..HI")),
    }
}

/// `search:LO..HI` as its bounds (`None`: not a search).
fn parse_search(text: &str) -> Option<Result<(f64, f64), String>> {
    let range = text.trim().strip_prefix("search:")?;
    let bad = || format!("{text:?}: expected search:LO..HI with 0 < LO < HI");
    let Some((lo, hi)) = range.split_once("..") else {
        return Some(Err(bad()));
    };
    Some(match (lo.trim().parse::<f64>(), hi.trim().parse::<f64>()) {
        (Ok(lo), Ok(hi)) if lo > 0.0 && hi > lo && hi.is_finite() => Ok((lo, hi)),
        _ => Err(bad()),
    })
}

fn parse_condition(text: &str) -> Result<Condition, String> {
    text.parse()
}

/// A capacity search: the levels it may try, and what it looks for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SearchSpec {
    /// `true`: concurrency (whole levels); `false`: rate.
    pub concurrency: bool,
    /// Lowest level.
    pub lo: f64,
    /// Highest level.
    pub hi: f64,
    /// `--until`.
    pub until: Condition,
}

/// A contract enum from its stored spelling (the error lists the spellings).
fn parse_spelling<T: std::str::FromStr<Err = String>>(text: &str) -> Result<T, String> {
    text.parse()
}

/// A flag value that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// The load to generate.
#[derive(Debug, Clone, PartialEq)]
pub enum Load {
    /// Closed loop with this many workers.
    Concurrency(u32),
    /// Open loop at `rate_per_s`.
    Rate {
        /// Requests per second.
        rate_per_s: f64,
        /// Arrival process.
        arrival: Arrival,
        /// Workers (cap on in-flight).
        max_in_flight: u32,
    },
    /// Everything at t = 0, capped in flight.
    Burst {
        /// Workers (cap on in-flight).
        max_in_flight: u32,
    },
    /// Each dataset row once at its own offset (`--schedule timestamps`).
    Timestamps {
        /// Send offsets in ns since the run start, one per dataset row, non-decreasing.
        offsets_ns: Arc<[i64]>,
        /// `--time-scale`.
        scale: f64,
        /// Workers (cap on in-flight).
        max_in_flight: u32,
    },
}

impl Load {
    /// Workers (= connections) the run needs.
    pub fn workers(&self) -> u32 {
        match self {
            Load::Concurrency(n) => *n,
            Load::Rate { max_in_flight, .. }
            | Load::Burst { max_in_flight }
            | Load::Timestamps { max_in_flight, .. } => *max_in_flight,
        }
    }
}

/// The validated configuration of a capture run.
#[derive(Debug)]
pub struct Config {
    /// Full request URL.
    pub url: String,
    /// Body options.
    pub body: BodyOptions,
    /// Prompts.
    pub dataset: Arc<Dataset>,
    /// Run folder.
    pub out: PathBuf,
    /// Replace an existing run.
    pub force: bool,
    /// Load shape.
    pub load: Load,
    /// Measure-phase requests (None: until `duration`).
    pub requests: Option<u64>,
    /// Scheduling window.
    pub duration: Option<Duration>,
    /// Warmup requests.
    pub warmup_requests: u64,
    /// Time-based warmup (`--warmup`).
    pub warmup: Option<Duration>,
    /// Time-based cooldown at the end of `duration`.
    pub cooldown: Option<Duration>,
    /// Linear ramp of concurrency or rate.
    pub ramp_up: Option<Duration>,
    /// Stop condition on the share of errors.
    pub max_error_rate: Option<f64>,
    /// The recorded run to send again (`--replay`).
    pub replay: Option<Arc<crate::replay::Replay>>,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Grace period after a stop signal.
    pub grace: Duration,
    /// Headers sent (credentials marked sensitive), including the API key's.
    pub headers: HeaderMap,
    /// Redacted `Name: value` lines for the manifest.
    pub headers_redacted: Vec<(String, String)>,
    /// Name of the API-key variable used, if any.
    pub api_key_env: Option<String>,
    /// Arrival seed.
    pub seed: u64,
    /// Skip TLS certificate verification.
    pub insecure: bool,
    /// Sink flush interval.
    pub flush_interval: Duration,
    /// Metrics endpoints read during the run (`--scrape`).
    pub scrape: Vec<crate::scrape::Target>,
    /// Their period.
    pub scrape_interval: Duration,
    /// One read's bound.
    pub scrape_timeout: Duration,
    /// Sink segment cap.
    pub segment_rows: usize,
    /// SSE event size cap.
    pub max_event_bytes: usize,
    /// Decoded response body cap.
    pub max_response_bytes: usize,
    /// Recorder channel cap in bytes.
    pub record_buffer_bytes: usize,
    /// Which raw payloads are kept.
    pub raw: recap_schemas::RawMode,
    /// The request-id header, unless `--no-request-id`.
    pub request_id_header: Option<http::HeaderName>,
    /// Every secret value the run knows, redacted in everything written.
    pub secrets: Arc<crate::redact::Secrets>,
    /// Recorder channel capacity.
    pub record_buffer_rows: usize,
    /// Runtime threads.
    pub threads: usize,
    /// No progress output.
    pub quiet: bool,
    /// JSON summary on stdout.
    pub json: bool,
    /// The command line, redacted.
    pub command: Vec<String>,
    /// The plan point this run is, in a sweep.
    pub plan: Option<recap_schemas::plan::PlanPoint>,
    /// A session dataset's sessions: each worker runs one conversation at a time.
    pub sessions: Option<Arc<crate::session::Sessions>>,
    /// `--session-header`: the header carrying each request's session id.
    pub session_header: Option<http::HeaderName>,
    /// `--stop-when` (and a search's `--until`): live conditions that stop the run.
    pub stop_when: Vec<Condition>,
    /// `--stop-min-samples`.
    pub stop_min_samples: u64,
    /// `--shard` (or the job's environment): this process's share of the load.
    pub shard: Option<crate::shard::Shard>,
    /// How the shards start together.
    pub start: crate::shard::Start,
    /// This host's wall clock (skewed in tests).
    pub wall: crate::clock::Wall,
    /// Which run of its plan this is (from 0): the shards of a sharded plan meet at the
    /// barrier once per run.
    pub round: u32,
    /// `--live`: where this process publishes (set by the caller, which starts it).
    pub live: Option<Arc<crate::live::Live>>,
    /// This run's place in its plan, for the live snapshots.
    pub live_plan: Option<recap_schemas::live::LivePlan>,
}

/// The send offsets of `--schedule timestamps`: each row's `timestamp_ms` minus the first
/// row's, times `scale`, in ns (fractions of a millisecond kept). Every row needs one and they
/// must not go back in time.
fn timestamp_offsets(dataset: &Dataset, scale: f64) -> Result<Arc<[i64]>, String> {
    let mut out = Vec::with_capacity(dataset.rows.len());
    let mut first = None;
    let mut last = 0.0;
    for (i, row) in dataset.rows.iter().enumerate() {
        let Some(ms) = row.plan.timestamp_ms else {
            return Err(format!(
                "--schedule timestamps: dataset {} row {} has no `timestamp_ms` (analyze dataset trace writes them)",
                dataset.path,
                i + 1
            ));
        };
        let t0 = *first.get_or_insert(ms);
        if ms < t0 {
            return Err(format!(
                "--schedule timestamps: dataset {} row {} has `timestamp_ms` {ms}, before the first row's {t0}",
                dataset.path,
                i + 1
            ));
        }
        if ms < last {
            return Err(format!(
                "--schedule timestamps: dataset {} row {} goes back in time (`timestamp_ms` {ms}); sort the rows by time",
                dataset.path,
                i + 1
            ));
        }
        last = ms;
        out.push(((ms - t0) * 1e6 * scale).round() as i64);
    }
    Ok(out.into())
}

/// One load point of a `--concurrency` or `--rate` list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Point {
    /// Closed loop at this concurrency.
    Concurrency(u32),
    /// Closed loop over this many sessions at once.
    Sessions(u32),
    /// Open loop at this rate (as given, `inf` included).
    Rate(String),
}

impl Point {
    /// The point's label and folder prefix: `c4`, `rate2.5`, `burst`.
    pub fn label(&self) -> String {
        match self {
            Point::Concurrency(n) => format!("c{n}"),
            Point::Sessions(n) => format!("s{n}"),
            Point::Rate(r) if r.eq_ignore_ascii_case("inf") => "burst".into(),
            Point::Rate(r) => format!("rate{r}"),
        }
    }
}

impl Args {
    /// The load points the flags list (none given: the default single point; a search's
    /// points are chosen as it goes, [`Args::search`]).
    pub fn points(&self) -> Vec<Point> {
        if !self.rate.is_empty() {
            self.rate.iter().cloned().map(Point::Rate).collect()
        } else if !self.sessions.is_empty() {
            self.sessions.iter().copied().map(Point::Sessions).collect()
        } else {
            self.concurrency
                .iter()
                .filter_map(|c| match c {
                    ConcurrencyArg::N(n) => Some(Point::Concurrency(*n)),
                    ConcurrencyArg::Search(..) => None,
                })
                .collect()
        }
    }

    /// Whether the flags describe a plan (several points, repeats, or a search) rather than
    /// one run.
    pub fn is_plan(&self) -> bool {
        self.points().len() > 1 || self.repeat > 1 || self.is_search()
    }

    /// Whether the flags ask for a capacity search.
    pub fn is_search(&self) -> bool {
        self.concurrency.iter().any(|c| matches!(c, ConcurrencyArg::Search(..)))
            || self.rate.iter().any(|r| r.trim().starts_with("search:"))
    }

    /// The capacity search the flags ask for, checked (`None`: no search).
    pub fn search(&self) -> Result<Option<SearchSpec>, ConfigError> {
        let err = |m: &str| Err(ConfigError(m.to_string()));
        if !self.is_search() {
            if self.until.is_some() {
                return err("--until goes with a capacity search: --concurrency search:LO..HI or --rate search:LO..HI");
            }
            return Ok(None);
        }
        if self.concurrency.len() > 1 || self.rate.len() > 1 {
            return err("a capacity search (search:LO..HI) is the only value of --concurrency or --rate");
        }
        let Some(until) = self.until else {
            return err("a capacity search needs --until, the condition it looks for (e.g. --until 'ttft_p99>500ms')");
        };
        if self.repeat != 1 {
            return err("a capacity search runs each point once; --repeat is not supported with it");
        }
        if !(self.search_resolution > 0.0 && self.search_resolution < 1.0) {
            return err("--search-resolution must be between 0 and 1");
        }
        let (concurrency, lo, hi) = match (self.concurrency.first(), self.rate.first()) {
            (Some(ConcurrencyArg::Search(lo, hi)), _) => (true, f64::from(*lo), f64::from(*hi)),
            (_, Some(r)) => match parse_search(r) {
                Some(Ok((lo, hi))) => (false, lo, hi),
                Some(Err(e)) => return Err(ConfigError(format!("--rate {e}"))),
                None => return err("internal: not a search"),
            },
            _ => return err("internal: not a search"),
        };
        Ok(Some(SearchSpec {
            concurrency,
            lo,
            hi,
            until,
        }))
    }

    /// These flags for one point of a plan, writing into `out`.
    pub fn for_point(&self, point: &Point, out: PathBuf) -> Args {
        let mut a = self.clone();
        match point {
            Point::Concurrency(n) => {
                a.concurrency = vec![ConcurrencyArg::N(*n)];
                a.rate = Vec::new();
            }
            Point::Sessions(n) => {
                a.sessions = vec![*n];
                a.rate = Vec::new();
            }
            Point::Rate(r) => {
                a.rate = vec![r.clone()];
                a.concurrency = Vec::new();
            }
        }
        a.repeat = 1;
        a.out = out;
        // A search's condition becomes each point's stop condition ([`crate::plan`]).
        a.until = None;
        a
    }
}

/// What the flags name that is read from disk: read once, and shared by every run of a plan.
#[derive(Debug, Clone)]
pub struct Inputs {
    /// The dataset (`--dataset`, else the embedded one).
    pub dataset: Arc<Dataset>,
    /// The recorded run to send again (`--replay`).
    pub replay: Option<Arc<crate::replay::Replay>>,
}

impl Args {
    /// Reads the dataset and the run to replay.
    pub fn load_inputs(&self) -> Result<Inputs, ConfigError> {
        let dataset = match &self.dataset {
            Some(p) => Dataset::load(p, self.skip_invalid).map_err(|e| ConfigError(recap_schemas::error_chain(&e)))?,
            None => Dataset::embedded(),
        };
        let replay = match &self.replay {
            Some(dir) => Some(Arc::new(
                crate::replay::load(dir, self.model.as_deref()).map_err(ConfigError)?,
            )),
            None => None,
        };
        Ok(Inputs {
            dataset: Arc::new(dataset),
            replay,
        })
    }

    /// Validates the flags into a [`Config`], reading the dataset and the API key. `command`
    /// is the redacted command line for the manifest ([`crate::redact::command_line`]).
    pub fn into_config(self, command: Vec<String>) -> Result<Config, ConfigError> {
        let inputs = self.load_inputs()?;
        self.into_config_with(command, inputs)
    }

    /// [`Args::into_config`] with the inputs already read ([`Args::load_inputs`]).
    pub fn into_config_with(self, command: Vec<String>, inputs: Inputs) -> Result<Config, ConfigError> {
        let err = |m: String| ConfigError(m);
        let Inputs { dataset, replay } = inputs;
        if self.search()?.is_some() {
            return Err(err(
                "internal: a capacity search is configured one point at a time".into()
            ));
        }
        if self.time_scale.is_some() && self.schedule.is_none() && replay.is_none() {
            return Err(err("--time-scale goes with --schedule timestamps or --replay".into()));
        }
        let api = match (&replay, self.api) {
            (Some(r), _) => r.manifest.endpoint.api,
            (None, ApiArg::Chat) => Api::Chat,
            (None, ApiArg::Completions) => Api::Completions,
            (None, ApiArg::Responses) => Api::Responses,
            (None, ApiArg::Messages) => Api::Messages,
            (None, ApiArg::Embeddings) => Api::Embeddings,
            (None, ApiArg::Rerank) => Api::Rerank,
        };
        let shape = crate::api::of(api);
        let dataset = match self.batch_size {
            Some(0) => return Err(err("--batch-size must be at least 1".into())),
            Some(_) if api != Api::Embeddings || replay.is_some() => {
                return Err(err("--batch-size goes with --api embeddings".into()))
            }
            Some(n) => Arc::new(dataset.batched(n)),
            None => dataset,
        };
        if api == Api::Messages && replay.is_none() && self.max_tokens.is_none() {
            if let Some(i) = dataset.rows.iter().position(|r| r.plan.max_tokens.is_none()) {
                return Err(err(format!(
                    "dataset {} row {}: --api messages needs an output budget (`max_tokens`, which the API requires): give --max-tokens",
                    dataset.path,
                    i + 1
                )));
            }
        }
        if api == Api::Rerank && replay.is_none() {
            if let Some(i) = dataset
                .rows
                .iter()
                .position(|r| !matches!(r.prompt, crate::dataset::Prompt::Rerank { .. }))
            {
                return Err(err(format!(
                    "dataset {} row {}: --api rerank sends rows with `query` and `documents`; this one has none",
                    dataset.path,
                    i + 1
                )));
            }
        }
        let url = full_url(&self.url, api);
        if self.concurrency.len() > 1 || self.rate.len() > 1 || self.sessions.len() > 1 || self.repeat != 1 {
            return Err(err(
                "internal: a plan (lists or --repeat) is configured one point at a time".into(),
            ));
        }
        let concurrency = match self.concurrency.first() {
            None => None,
            Some(ConcurrencyArg::N(n)) => Some(*n),
            Some(ConcurrencyArg::Search(..)) => {
                return Err(err(
                    "internal: a capacity search is configured one point at a time".into()
                ))
            }
        };
        let load = match (self.rate.first(), concurrency) {
            _ if replay.is_some() || self.schedule == Some(ScheduleArg::Timestamps) => {
                if self.max_in_flight == 0 {
                    return Err(err("--max-in-flight must be at least 1".into()));
                }
                let scale = self.time_scale.unwrap_or(1.0);
                if !(scale.is_finite() && scale > 0.0) {
                    return Err(err(format!("--time-scale must be a positive number, got {scale}")));
                }
                let offsets_ns = match &replay {
                    Some(r) => r
                        .offsets_ns
                        .iter()
                        .map(|o| (*o as f64 * scale).round() as i64)
                        .collect(),
                    None => timestamp_offsets(&dataset, scale).map_err(err)?,
                };
                Load::Timestamps {
                    offsets_ns,
                    scale,
                    max_in_flight: self.max_in_flight,
                }
            }
            (Some(_), Some(_)) => return Err(err("give --rate or --concurrency, not both".into())),
            (None, c) => {
                let n = c.or(self.sessions.first().copied()).unwrap_or(1);
                if n == 0 {
                    return Err(err("--concurrency must be at least 1".into()));
                }
                Load::Concurrency(n)
            }
            (Some(r), None) => {
                if self.max_in_flight == 0 {
                    return Err(err("--max-in-flight must be at least 1".into()));
                }
                if r.eq_ignore_ascii_case("inf") {
                    Load::Burst {
                        max_in_flight: self.max_in_flight,
                    }
                } else {
                    let rate: f64 = r
                        .parse()
                        .map_err(|_| err(format!("--rate {r:?}: expected a number or `inf`")))?;
                    if !(rate.is_finite() && rate > 0.0) {
                        return Err(err(format!("--rate must be positive, got {r}")));
                    }
                    let arrival = match (self.arrival, self.burstiness) {
                        (_, Some(k)) if !(k.is_finite() && k > 0.0) => {
                            return Err(err(format!("--burstiness must be positive, got {k}")))
                        }
                        (ArrivalArg::Gamma, k) => Arrival::Gamma {
                            shape: k.unwrap_or(1.0),
                        },
                        (ArrivalArg::Poisson, Some(k)) => Arrival::Gamma { shape: k },
                        (ArrivalArg::Poisson, None) => Arrival::Poisson,
                        (ArrivalArg::Constant, Some(_)) => {
                            return Err(err("--burstiness needs --arrival gamma (or poisson)".into()))
                        }
                        (ArrivalArg::Constant, None) => Arrival::Constant,
                    };
                    Load::Rate {
                        rate_per_s: rate,
                        arrival,
                        max_in_flight: self.max_in_flight,
                    }
                }
            }
        };
        let session_dataset = replay.is_none() && crate::session::has_sessions(&dataset);
        let session_flags = !self.sessions.is_empty()
            || self.think_time.is_some()
            || self.session_history.is_some()
            || self.session_header.is_some();
        if session_dataset && !api.generates() {
            return Err(err(format!(
                "dataset {} holds multi-turn sessions, which --api {api} has none of",
                dataset.path
            )));
        }
        if session_flags && !session_dataset {
            return Err(err(
                "--sessions, --think-time, --session-history and --session-header need a dataset whose rows carry `session_id`"
                    .into(),
            ));
        }
        let sessions = if session_dataset {
            if !self.concurrency.is_empty() {
                return Err(err(format!(
                    "dataset {} holds multi-turn sessions: give --sessions N (sessions at once) instead of --concurrency",
                    dataset.path
                )));
            }
            if matches!(load, Load::Timestamps { .. } | Load::Burst { .. }) {
                return Err(err(format!(
                    "dataset {} holds multi-turn sessions: they run with --sessions N or a numeric --rate (sessions started per second)",
                    dataset.path
                )));
            }
            let think = match self.think_time.as_deref() {
                None => crate::session::ThinkTime::Fixed(Duration::ZERO),
                Some("from-dataset") => crate::session::ThinkTime::FromDataset,
                Some(text) => crate::session::ThinkTime::Fixed(humantime::parse_duration(text).map_err(|e| {
                    err(format!(
                        "--think-time {text:?}: expected a duration (`2s`) or `from-dataset`: {e}"
                    ))
                })?),
            };
            let history = self.session_history.unwrap_or(recap_schemas::SessionHistory::Recorded);
            let mut sessions =
                crate::session::Sessions::from_dataset(&dataset, history, think, self.session_header.is_some())
                    .map_err(err)?;
            if self.max_history_bytes == 0 {
                return Err(err("--max-history-bytes must be at least 1".into()));
            }
            sessions.max_history_bytes = self.max_history_bytes;
            Some(Arc::new(sessions))
        } else {
            None
        };
        let session_header = match &self.session_header {
            None => None,
            Some(name) => Some(
                http::HeaderName::from_bytes(name.trim().as_bytes())
                    .map_err(|e| err(format!("--session-header {name:?}: {e}")))?,
            ),
        };
        let warmup_requests = match &replay {
            Some(r) if self.warmup_requests == 0 => r.manifest.load.warmup_requests,
            _ => self.warmup_requests,
        };
        let rows = replay.as_ref().map_or(dataset.rows.len(), |r| r.requests.len()) as u64;
        let requests = match (self.requests, self.duration) {
            (None, None) if replay.is_some() => Some(rows.saturating_sub(warmup_requests).max(1)),
            (Some(n), _) if matches!(load, Load::Timestamps { .. }) && n > dataset.rows.len() as u64 => {
                return Err(err(format!(
                    "--schedule timestamps sends each dataset row once; --requests {n} is more than its {} rows",
                    dataset.rows.len()
                )))
            }
            (Some(0), _) => return Err(err("--requests must be at least 1".into())),
            (r @ Some(_), _) => r,
            (None, Some(_)) => None,
            (None, None) => Some(dataset.rows.len() as u64),
        };
        let extra = match &self.body_extra {
            None => Map::new(),
            Some(text) => match serde_json::from_str::<Value>(text) {
                Ok(Value::Object(m)) => m,
                Ok(_) => return Err(err("--body-extra must be a JSON object".into())),
                Err(e) => return Err(err(format!("--body-extra is not valid JSON: {e}"))),
            },
        };
        let mut headers = HeaderMap::new();
        let mut headers_redacted = Vec::new();
        let mut secrets = crate::redact::url_secrets(&self.url);
        // A token in a --scrape (or --barrier) URL's query is sent, and kept out of every byte
        // written.
        for url in self.scrape.iter().chain(&self.barrier) {
            secrets.extend(crate::redact::url_secrets(url));
        }
        for line in &self.headers {
            let (name, value) = crate::client::parse_header(line).map_err(err)?;
            let shown = crate::redact::redact_header_line(line);
            let shown_value = shown
                .split_once(':')
                .map_or(String::new(), |(_, v)| v.trim().to_string());
            headers_redacted.push((name.as_str().to_string(), shown_value));
            if crate::redact::is_secret_header(name.as_str()) {
                secrets.push(String::from_utf8_lossy(value.as_bytes()).into_owned());
            }
            headers.append(name, value);
        }
        if let Some(var) = &self.api_key_env {
            let key = std::env::var(var).map_err(|_| err(format!("--api-key-env {var}: the variable is not set")))?;
            if key.is_empty() {
                return Err(err(format!("--api-key-env {var}: the variable is empty")));
            }
            let (name, value) = shape.key_header(&key);
            let mut v = http::HeaderValue::from_str(&value).map_err(|_| {
                err(format!(
                    "--api-key-env {var}: the key has characters not allowed in a header"
                ))
            })?;
            v.set_sensitive(true);
            headers.insert(name, v);
            secrets.push(key);
        }
        // What the API requires and the user did not give (Messages: `anthropic-version`).
        for (name, value) in shape.required_headers() {
            if !headers.contains_key(*name) {
                headers.insert(*name, http::HeaderValue::from_static(value));
                headers_redacted.push((name.to_string(), value.to_string()));
            }
        }
        let request_id_header = if self.no_request_id {
            None
        } else {
            Some(
                http::HeaderName::from_bytes(self.request_id_header.trim().as_bytes())
                    .map_err(|e| err(format!("--request-id-header {:?}: {e}", self.request_id_header)))?,
            )
        };
        if self.max_response_bytes == 0 {
            return Err(err("--max-response-bytes must be at least 1".into()));
        }
        if self.record_buffer_bytes == 0 {
            return Err(err("--record-buffer-bytes must be at least 1".into()));
        }
        if self.segment_rows == 0 {
            return Err(err("--segment-rows must be at least 1".into()));
        }
        if self.record_buffer_rows == 0 {
            return Err(err("--record-buffer-rows must be at least 1".into()));
        }
        if self.max_event_bytes == 0 {
            return Err(err("--max-event-bytes must be at least 1".into()));
        }
        if self.flush_interval.is_zero() {
            return Err(err("--flush-interval must be positive".into()));
        }
        if self.scrape_interval.is_zero() || self.scrape_timeout.is_some_and(|t| t.is_zero()) {
            return Err(err("--scrape-interval and --scrape-timeout must be positive".into()));
        }
        let scrape = self
            .scrape
            .iter()
            .map(|u| crate::scrape::Target::parse(u))
            .collect::<Result<Vec<_>, _>>()
            .map_err(err)?;
        if let (Some(d), Some(w), Some(c)) = (self.duration, self.warmup, self.cooldown) {
            if w + c >= d {
                return Err(err(format!(
                    "--warmup {} and --cooldown {} leave nothing of --duration {} to measure",
                    humantime::format_duration(w),
                    humantime::format_duration(c),
                    humantime::format_duration(d)
                )));
            }
        }
        if self.ramp_up.is_some() && matches!(load, Load::Timestamps { .. } | Load::Burst { .. }) {
            return Err(err(
                "--ramp-up needs --concurrency or a numeric --rate (a trace and a burst have their own timing)".into(),
            ));
        }
        if let Some(r) = self.max_error_rate {
            if !(0.0..1.0).contains(&r) {
                return Err(err(format!("--max-error-rate must be in [0, 1), got {r}")));
            }
        }
        let threads = self
            .threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
            .max(1);
        let shard = self.shard_of_env()?;
        let start = self.start()?;
        if shard.is_none() && start != crate::shard::Start::Now {
            return Err(err(
                "--start-at and --barrier start the shards of a sharded capture: give --shard I/N".into(),
            ));
        }
        let (load, out) = match shard {
            None => (load, self.out),
            Some(s) => (
                shard_load(load, s, sessions.is_some())?,
                self.out.join(recap_schemas::SHARDS_DIR).join(s.index.to_string()),
            ),
        };
        Ok(Config {
            url,
            body: BodyOptions {
                api,
                model: match (&self.model, &replay) {
                    (Some(m), _) => m.clone(),
                    (None, Some(r)) => r.manifest.endpoint.model.clone(),
                    (None, None) => "default".into(),
                },
                stream: replay.as_ref().map_or(!self.no_stream, |r| r.manifest.endpoint.stream),
                max_tokens: self.max_tokens,
                extra,
            },
            dataset,
            out,
            force: self.force,
            load,
            requests,
            duration: self.duration,
            warmup_requests,
            warmup: self.warmup,
            cooldown: self.cooldown,
            ramp_up: self.ramp_up,
            max_error_rate: self.max_error_rate,
            replay,
            timeout: self.timeout,
            grace: self.grace,
            headers,
            headers_redacted,
            api_key_env: self.api_key_env,
            seed: self.seed,
            insecure: self.insecure,
            flush_interval: self.flush_interval,
            scrape,
            scrape_interval: self.scrape_interval,
            scrape_timeout: self
                .scrape_timeout
                .unwrap_or_else(|| self.scrape_interval.min(Duration::from_secs(5))),
            segment_rows: self.segment_rows,
            max_event_bytes: self.max_event_bytes,
            max_response_bytes: self.max_response_bytes,
            record_buffer_bytes: self.record_buffer_bytes,
            raw: self.raw,
            request_id_header,
            secrets: Arc::new(crate::redact::Secrets::new(secrets)),
            record_buffer_rows: self.record_buffer_rows,
            threads,
            quiet: self.quiet,
            json: self.json,
            command,
            plan: None,
            sessions,
            session_header,
            stop_when: self.stop_when.clone(),
            stop_min_samples: self.stop_min_samples,
            shard,
            start,
            wall: crate::clock::Wall {
                skew_ns: self.test_clock_skew_ms.unwrap_or(0).saturating_mul(1_000_000),
            },
            round: 0,
            live: None,
            live_plan: None,
        })
    }

    /// `--shard`, else the shard the job's environment names.
    pub fn shard_of_env(&self) -> Result<Option<crate::shard::Shard>, ConfigError> {
        match self.shard {
            Some(s) => Ok(Some(s)),
            None => crate::shard::Shard::from_env(|k| std::env::var(k).ok()).map_err(ConfigError),
        }
    }

    /// How the shards start together (`--start-at`, `--barrier`).
    fn start(&self) -> Result<crate::shard::Start, ConfigError> {
        use crate::shard::Start;
        if let Some(text) = &self.start_at {
            let at = humantime::parse_rfc3339_weak(text.trim()).map_err(|e| {
                ConfigError(format!(
                    "--start-at {text:?}: expected an RFC 3339 time (2026-12-04T10:00:00Z): {e}"
                ))
            })?;
            return Ok(Start::At(at));
        }
        let Some(url) = &self.barrier else {
            return Ok(Start::Now);
        };
        let shown = crate::redact::redact_url(url);
        let uri: http::Uri = url
            .trim()
            .parse()
            .map_err(|e| ConfigError(format!("--barrier {shown:?}: {e}")))?;
        if uri.scheme_str() != Some("http") || uri.host().is_none() {
            return Err(ConfigError(format!(
                "--barrier {shown:?}: give shard 0's live endpoint as http://HOST:PORT"
            )));
        }
        if self.barrier_timeout.is_zero() {
            return Err(ConfigError("--barrier-timeout must be positive".into()));
        }
        Ok(Start::Barrier {
            url: uri,
            shown,
            timeout: self.barrier_timeout,
        })
    }
}

/// Shard `s`'s part of `load`: its share of the workers (closed loop: of the concurrency or
/// the sessions at once; open loop: of the in-flight cap). The schedule itself is the whole
/// run's, of which the shard takes every N-th arrival.
fn shard_load(load: Load, s: crate::shard::Shard, sessions: bool) -> Result<Load, ConfigError> {
    let capped = |m: u32| s.share(m).max(1);
    Ok(match load {
        Load::Concurrency(n) => {
            let share = s.share(n);
            if share == 0 {
                let what = if sessions { "--sessions" } else { "--concurrency" };
                return Err(ConfigError(format!(
                    "{what} {n} is below the shard count {}: every shard needs at least one",
                    s.count
                )));
            }
            Load::Concurrency(share)
        }
        Load::Rate {
            rate_per_s,
            arrival,
            max_in_flight,
        } => Load::Rate {
            rate_per_s,
            arrival,
            max_in_flight: capped(max_in_flight),
        },
        Load::Burst { max_in_flight } => Load::Burst {
            max_in_flight: capped(max_in_flight),
        },
        Load::Timestamps {
            offsets_ns,
            scale,
            max_in_flight,
        } => Load::Timestamps {
            offsets_ns,
            scale,
            max_in_flight: capped(max_in_flight),
        },
    })
}

/// The request URL: a base URL gets the API's standard path appended.
pub fn full_url(url: &str, api: Api) -> String {
    let suffix = crate::api::of(api).path();
    // A query string (`?api_key=...`, `?api-version=...`) stays at the end.
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let trimmed = base.trim_end_matches('/');
    let after_scheme = trimmed.split_once("://").map_or(trimmed, |(_, r)| r);
    let path = if !after_scheme.contains('/') {
        format!("{trimmed}/v1/{suffix}")
    } else if trimmed.ends_with("/v1") {
        format!("{trimmed}/{suffix}")
    } else {
        trimmed.to_string()
    };
    match query {
        Some(q) => format!("{path}?{q}"),
        None => path,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(extra: &[&str]) -> Result<Config, ConfigError> {
        let mut argv = vec!["capture", "--url", "http://127.0.0.1:9", "--out", "/tmp/x"];
        argv.extend_from_slice(extra);
        let cmd = <Args as clap::CommandFactory>::command();
        let m = cmd
            .clone()
            .try_get_matches_from(&argv)
            .map_err(|e| ConfigError(e.to_string()))?;
        let args = <Args as clap::FromArgMatches>::from_arg_matches(&m).map_err(|e| ConfigError(e.to_string()))?;
        args.into_config(crate::redact::command_line("capture", &cmd, &m))
    }

    #[test]
    fn urls_get_standard_paths() {
        assert_eq!(
            full_url("http://h:8000", Api::Chat),
            "http://h:8000/v1/chat/completions"
        );
        assert_eq!(
            full_url("http://h:8000/", Api::Completions),
            "http://h:8000/v1/completions"
        );
        assert_eq!(full_url("http://h/v1", Api::Chat), "http://h/v1/chat/completions");
        assert_eq!(full_url("http://h/custom/gen", Api::Chat), "http://h/custom/gen");
        assert_eq!(
            full_url("http://h:1/v1?api_key=K", Api::Chat),
            "http://h:1/v1/chat/completions?api_key=K"
        );
        assert_eq!(
            full_url("http://h:1?x=1", Api::Completions),
            "http://h:1/v1/completions?x=1"
        );
    }

    #[test]
    fn load_modes() {
        assert_eq!(parse(&[]).expect("ok").load, Load::Concurrency(1));
        assert_eq!(parse(&["--concurrency", "64"]).expect("ok").load, Load::Concurrency(64));
        assert_eq!(
            parse(&["--rate", "inf", "--max-in-flight", "8"]).expect("ok").load,
            Load::Burst { max_in_flight: 8 }
        );
        let l = parse(&["--rate", "5", "--arrival", "gamma", "--burstiness", "0.5"])
            .expect("ok")
            .load;
        assert_eq!(
            l,
            Load::Rate {
                rate_per_s: 5.0,
                arrival: Arrival::Gamma { shape: 0.5 },
                max_in_flight: 1024
            }
        );
        assert!(parse(&["--rate", "0"]).is_err());
        assert!(parse(&["--rate", "x"]).is_err());
        assert!(parse(&["--rate", "1", "--concurrency", "2"]).is_err());
        // Flags that would do nothing in closed loop are refused, not ignored.
        for flag in [
            &["--arrival", "gamma"][..],
            &["--burstiness", "0.5"],
            &["--max-in-flight", "8"],
        ] {
            let mut args = vec!["--concurrency", "4"];
            args.extend_from_slice(flag);
            assert!(parse(&args).is_err(), "{flag:?} with --concurrency");
            assert!(parse(flag).is_err(), "{flag:?} without --rate");
        }
    }

    #[test]
    fn defaults_and_stream_flags() {
        let c = parse(&[]).expect("ok");
        assert!(c.body.stream);
        assert_eq!(c.requests, Some(c.dataset.rows.len() as u64));
        assert!(!parse(&["--no-stream"]).expect("ok").body.stream);
        assert_eq!(parse(&["--duration", "5s"]).expect("ok").requests, None);
    }

    #[test]
    fn api_key_from_env_is_sensitive_and_redacted() {
        std::env::set_var("RECAP_TEST_KEY_CONFIG", "sk-secret-value");
        let c = parse(&[
            "--api-key-env",
            "RECAP_TEST_KEY_CONFIG",
            "-H",
            "Authorization: Bearer other",
        ])
        .expect("ok");
        let v = c.headers.get(http::header::AUTHORIZATION).expect("auth");
        assert!(v.is_sensitive());
        assert!(!format!("{:?}", c.command).contains("other"));
        assert!(!format!("{:?}", c.headers_redacted).contains("other"));
        assert!(parse(&["--api-key-env", "RECAP_TEST_KEY_UNSET_XYZ"]).is_err());
    }
}
