//! `manifest.json`: what a run was, written at start (status `running`) and rewritten at the end.
//!
//! Everything `analyze` needs to label a run (load, endpoint, dataset) and to turn monotonic
//! timestamps into wall time lives here. Secrets never do: the command line and headers are
//! stored with credential values replaced by [`REDACTED`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{Api, RunStatus};

/// What replaces a secret value (API key, `Authorization` header) wherever it would be written.
pub const REDACTED: &str = "<redacted>";

/// The run manifest. Unknown fields are tolerated on read so newer writers stay readable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`crate::SCHEMA_VERSION`] of the run's tables.
    pub schema_version: u32,
    /// Unique id of the run, also in every segment's metadata.
    pub run_id: String,
    /// Version of the `capture` binary that wrote the run.
    pub recap_version: String,
    /// The command line, with secret values redacted.
    pub command: Vec<String>,
    /// Where requests went.
    pub endpoint: Endpoint,
    /// How load was generated.
    pub load: LoadSpec,
    /// Where prompts came from.
    pub dataset: DatasetInfo,
    /// UTC start time, RFC 3339.
    pub started_at: String,
    /// Wall-clock Unix time (ns) at monotonic `t_ns = 0`; read once at start.
    pub clock_anchor_unix_ns: i64,
    /// Machine the capture ran on.
    pub host: HostInfo,
    /// Lifecycle state; `running` after a crash.
    pub status: RunStatus,
    /// Why the run stopped early (signal, disk full); null for a complete run.
    #[serde(default)]
    pub status_message: Option<String>,
    /// UTC end time, RFC 3339; null while running.
    #[serde(default)]
    pub ended_at: Option<String>,
    /// Totals at the end of the run; null while running.
    #[serde(default)]
    pub counts: Option<Counts>,
    /// The plan point and repeat this run is, when it is part of a sweep (`plan.json`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<crate::plan::PlanPoint>,
    /// The run this one replayed (`capture --replay`): the same bodies at the same offsets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_of: Option<ReplayOf>,
    /// How the client itself fared over the run; null while running and in older runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<ClientHealth>,
    /// This run's place in a sharded capture (`capture --shard I/N`); absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<ShardInfo>,
}

crate::enums::string_enum! {
    /// How the shards of a sharded capture started together.
    ShardStart {
        /// Shard 0's live endpoint released every shard at one moment of its clock, and each
        /// shard measured its clock's offset to shard 0's (`--barrier`).
        Barrier => "barrier",
        /// Each shard waited for one wall-clock time (`--start-at`): the hosts' clocks are
        /// trusted (NTP), no offset is measured.
        StartAt => "start_at",
        /// Each shard started when it was launched.
        Unsynchronized => "unsynchronized",
    }
}

/// One shard of a sharded capture: which share of the load it sent and how its clock relates
/// to shard 0's, so that `analyze` can put every shard on one timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardInfo {
    /// This shard, from 0.
    pub index: u32,
    /// Shards in the capture.
    pub count: u32,
    /// How the shards started together.
    pub start: ShardStart,
    /// The `--start-at` time (RFC 3339), or the moment the barrier released the shards, on
    /// shard 0's clock.
    #[serde(default)]
    pub start_at: Option<String>,
    /// The barrier's URL (`--barrier`, credentials redacted).
    #[serde(default)]
    pub barrier: Option<String>,
    /// Shard 0's wall clock minus this host's, in ns (0 on shard 0): added to this run's
    /// `clock_anchor_unix_ns`, it puts this run's times on shard 0's clock. `null` when not
    /// measured (`--start-at`: the hosts' clocks are trusted).
    #[serde(default)]
    pub clock_offset_ns: Option<i64>,
    /// Half the round trip of the probe the offset comes from: the true offset lies within
    /// `clock_offset_ns` plus or minus this.
    #[serde(default)]
    pub clock_offset_uncertainty_ns: Option<i64>,
    /// Clock probes sent to shard 0 (the one with the shortest round trip is kept).
    #[serde(default)]
    pub clock_probes: u32,
}

/// The capture process's own load during the run, so a run can show that the client did not
/// set the pace (`analyze` warns when it may have: `docs/metrics.md`, "The client's health").
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClientHealth {
    /// Wall seconds the run took.
    pub elapsed_s: f64,
    /// CPU seconds the process spent in user mode during the run (all its threads).
    pub cpu_user_s: f64,
    /// CPU seconds it spent in the kernel during the run.
    pub cpu_sys_s: f64,
    /// Cores the process could use.
    pub cores: u32,
    /// Wake-ups of the timer-lag probe: a task on the workers' runtime that sleeps 10 ms at a
    /// time and records how late it wakes.
    pub timer_lag_samples: u64,
    /// Median lateness (µs). tokio's timers tick every millisecond, so up to ~1,000 µs is the
    /// clock's own rounding, not load.
    pub timer_lag_p50_us: u64,
    /// 99th percentile lateness (µs).
    pub timer_lag_p99_us: u64,
    /// Largest lateness (µs).
    pub timer_lag_max_us: u64,
}

impl ClientHealth {
    /// CPU time over the wall time of all cores: 1.0 is every core busy the whole run.
    pub fn cpu_share(&self) -> f64 {
        (self.cpu_user_s + self.cpu_sys_s) / (self.elapsed_s * f64::from(self.cores.max(1))).max(1e-9)
    }
}

/// The source of a replayed run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplayOf {
    /// The source's `run_id`.
    pub run_id: String,
    /// The source run folder as given.
    pub path: String,
}

/// The endpoint under test.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Endpoint {
    /// Full URL requests were sent to (`scheme://host:port/path`), without credentials.
    pub url: String,
    /// `chat` or `completions`.
    pub api: Api,
    /// The `model` field sent.
    pub model: String,
    /// Whether responses were streamed (SSE).
    pub stream: bool,
    /// Extra headers sent, with credential values redacted.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Name of the environment variable the API key came from, if any (never the key).
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// The header that carried `<run_id>-<request_id>` (`--request-id-header`); absent with
    /// `--no-request-id` and in runs before schema version 3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id_header: Option<String>,
    /// Which raw payloads `events.raw` holds (`--raw`); runs before version 3 kept none.
    #[serde(default = "raw_none")]
    pub raw: crate::RawMode,
}

fn raw_none() -> crate::RawMode {
    crate::RawMode::None
}

/// The load that was generated; `analyze sweep` labels runs by it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadSpec {
    /// `concurrency` (closed loop), `rate` (open loop) or `burst` (all at once).
    pub mode: crate::LoadMode,
    /// Closed-loop concurrency; null in open loop.
    pub concurrency: Option<u32>,
    /// Open-loop target rate in requests/s; null in closed loop and for bursts.
    pub rate_per_s: Option<f64>,
    /// `constant`, `poisson` or `gamma` in open loop; null otherwise.
    pub arrival: Option<crate::Arrival>,
    /// Gamma shape k (1 = Poisson, < 1 burstier, > 1 smoother); null unless gamma.
    pub burstiness: Option<f64>,
    /// Cap on requests in flight in open loop (closed loop: the concurrency).
    pub max_in_flight: u32,
    /// `--requests`, if given (measure-phase requests, warmup excluded).
    pub requests: Option<u64>,
    /// `--duration` in seconds, if given.
    pub duration_s: Option<f64>,
    /// Requests sent first with phase `warmup`.
    pub warmup_requests: u64,
    /// `--max-tokens` default, if any.
    pub max_tokens: Option<u32>,
    /// Per-request timeout in seconds.
    pub timeout_s: f64,
    /// Seed of the arrival process.
    pub seed: u64,
    /// `timestamps` mode: the factor applied to the rows' offsets (`--time-scale`; 0.5 sends a
    /// trace twice as fast). Absent in other modes and in older manifests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_scale: Option<f64>,
    /// `--warmup` in seconds: requests scheduled this early are phase `warmup`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warmup_s: Option<f64>,
    /// `--cooldown` in seconds: requests scheduled in the run's last this-long are `cooldown`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cooldown_s: Option<f64>,
    /// `--ramp-up` in seconds: concurrency or rate grows linearly over it (phase `ramp`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ramp_up_s: Option<f64>,
    /// Multi-turn sessions: how a session dataset was sent. Absent for other datasets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sessions: Option<SessionSpec>,
}

/// When each phase of a run begins: the one rule that gives a request its `phase`, used by
/// capture when it schedules the request and by analyze for a request whose `requests` row
/// (and with it the phase) was lost to a kill.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Phases {
    /// Ids below this are `warmup` (`--warmup-requests`).
    pub warmup_requests: u64,
    /// Scheduled before this (ns from the run's start): `ramp` (`--ramp-up`).
    pub ramp_ns: i64,
    /// Scheduled before this (and after the ramp): `warmup` (`--warmup`).
    pub warmup_ns: i64,
    /// Scheduled from this on: `cooldown` (`--duration` minus `--cooldown`).
    pub cooldown_ns: Option<i64>,
}

impl Phases {
    /// The phases a manifest's load describes.
    pub fn of(load: &LoadSpec) -> Self {
        let ns = |s: f64| (s * 1e9).round() as i64;
        Phases {
            warmup_requests: load.warmup_requests,
            ramp_ns: load.ramp_up_s.map_or(0, ns),
            warmup_ns: load.warmup_s.map_or(0, ns),
            cooldown_ns: load
                .duration_s
                .zip(load.cooldown_s)
                .map(|(d, c)| ns(d).saturating_sub(ns(c))),
        }
    }

    /// The phase of request `request_id` scheduled at `scheduled_ns`: the first
    /// `--warmup-requests` ids, then by schedule time ramp, warmup, measure, cooldown.
    pub fn phase(&self, request_id: u64, scheduled_ns: i64) -> crate::Phase {
        use crate::Phase;
        if request_id < self.warmup_requests {
            Phase::Warmup
        } else if scheduled_ns < self.ramp_ns {
            Phase::Ramp
        } else if scheduled_ns < self.warmup_ns {
            Phase::Warmup
        } else if self.cooldown_ns.is_some_and(|c| scheduled_ns >= c) {
            Phase::Cooldown
        } else {
            Phase::Measure
        }
    }
}

/// How the turns of a session dataset were sent (`docs/capture.md`, "Multi-turn sessions").
/// In closed loop `concurrency` is the number of sessions in progress at once; in open loop
/// `rate_per_s` is the rate at which sessions start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionSpec {
    /// Sessions in the dataset (they cycle when more requests are sent).
    pub sessions: u64,
    /// `--think-time` in seconds between a turn's answer and the next turn; null with
    /// `from_dataset` or no think time.
    pub think_time_s: Option<f64>,
    /// Think times came from the rows' `think_time_ms`.
    pub think_time_from_dataset: bool,
    /// Which answers later turns carry.
    pub history: crate::SessionHistory,
    /// Header carrying the session id on every request (`--session-header`), if any.
    pub header: Option<String>,
    /// `--max-history-bytes`: a session whose history grows past it ends there. Absent in
    /// runs before schema version 3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_history_bytes: Option<u64>,
}

/// The dataset prompts were drawn from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetInfo {
    /// Path as given, or `<embedded>` for the built-in default.
    pub path: String,
    /// `jsonl` or `sharegpt`.
    pub format: String,
    /// SHA-256 of the file's bytes, hex.
    pub sha256: String,
    /// Usable rows (the dataset cycles when more requests are sent).
    pub rows: u64,
}

/// The capturing machine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostInfo {
    /// Host name.
    pub name: String,
    /// Logical cores available to the process.
    pub cores: u32,
    /// Operating system and architecture (`linux-x86_64`).
    pub os: String,
}

/// End-of-run totals, for a quick look without reading Parquet.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Counts {
    /// Requests sent (rows in `requests`).
    pub requests: u64,
    /// Requests whose terminal event is `done`.
    pub done: u64,
    /// Requests whose terminal event is `error`, by `error_kind`.
    pub errors: BTreeMap<crate::ErrorKind, u64>,
    /// Requests whose terminal event is `cancelled`.
    pub cancelled: u64,
    /// Rows in `events`.
    pub events: u64,
    /// SSE rows in `events`.
    pub sse_events: u64,
    /// Segment files written per table.
    pub segments: u64,
    /// Bytes of Parquet written (both tables).
    pub bytes_written: u64,
    /// Connections opened (each has a `connect` row).
    #[serde(default)]
    pub connections: u64,
    /// Kept-alive connections found closed by the server before reuse, and replaced.
    #[serde(default)]
    pub stale_connections: u64,
    /// Requests sent again on a fresh connection after their reused one failed before any
    /// response byte (each has a `retry` row).
    #[serde(default)]
    pub retries: u64,
    /// Times a worker had to wait because the recorder's channel was full (back-pressure:
    /// the client, not the server, set the pace while it waited).
    #[serde(default)]
    pub recorder_waits: u64,
    /// Total nanoseconds workers spent waiting on the recorder.
    #[serde(default)]
    pub recorder_wait_ns: u64,
    /// Sessions ended early because their history passed `--max-history-bytes`.
    #[serde(default)]
    pub sessions_history_capped: u64,
    /// Capture stopped reusing connections: the server closed kept-alive connections right
    /// after their first response (llama.cpp's `llama-server` does), so every later request
    /// opened a fresh one instead of risking a write into a closed socket.
    #[serde(default)]
    pub keep_alive_stopped: bool,
    /// Rows in `scrapes` (`--scrape`): reads of the server's metrics endpoints, failed ones
    /// included.
    #[serde(default)]
    pub scrapes: u64,
}

impl Counts {
    /// Adds another run's totals (the shards of a sharded capture read as one run).
    pub fn add(&mut self, o: &Counts) {
        self.requests += o.requests;
        self.done += o.done;
        for (k, n) in &o.errors {
            *self.errors.entry(*k).or_default() += n;
        }
        self.cancelled += o.cancelled;
        self.events += o.events;
        self.sse_events += o.sse_events;
        self.segments += o.segments;
        self.bytes_written += o.bytes_written;
        self.connections += o.connections;
        self.stale_connections += o.stale_connections;
        self.retries += o.retries;
        self.recorder_waits += o.recorder_waits;
        self.recorder_wait_ns += o.recorder_wait_ns;
        self.sessions_history_capped += o.sessions_history_capped;
        self.keep_alive_stopped |= o.keep_alive_stopped;
        self.scrapes += o.scrapes;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_tolerates_unknown_fields() {
        let m = Manifest {
            client: None,
            schema_version: 1,
            run_id: "r".into(),
            recap_version: "0.1.0".into(),
            command: vec!["capture".into()],
            endpoint: Endpoint {
                url: "http://127.0.0.1:1/v1/chat/completions".into(),
                api: Api::Chat,
                model: "m".into(),
                stream: true,
                headers: BTreeMap::new(),
                api_key_env: None,
                request_id_header: None,
                raw: crate::RawMode::All,
            },
            load: LoadSpec {
                mode: crate::LoadMode::Concurrency,
                concurrency: Some(4),
                rate_per_s: None,
                arrival: None,
                burstiness: None,
                max_in_flight: 4,
                requests: Some(10),
                duration_s: None,
                warmup_requests: 0,
                max_tokens: Some(16),
                timeout_s: 600.0,
                seed: 0,
                time_scale: None,
                warmup_s: None,
                cooldown_s: None,
                ramp_up_s: None,
                sessions: None,
            },
            dataset: DatasetInfo {
                path: "d".into(),
                format: "jsonl".into(),
                sha256: "00".into(),
                rows: 1,
            },
            started_at: "2026-01-01T00:00:00Z".into(),
            clock_anchor_unix_ns: 1,
            host: HostInfo {
                name: "h".into(),
                cores: 2,
                os: "linux-x86_64".into(),
            },
            status: RunStatus::Running,
            status_message: None,
            ended_at: None,
            counts: None,
            plan: None,
            replay_of: None,
            shard: None,
        };
        let mut v = serde_json::to_value(&m).expect("serializes");
        v["a_future_field"] = serde_json::json!(1);
        let back: Manifest = serde_json::from_value(v).expect("deserializes");
        assert_eq!(back, m);
    }
}
