//! `recap-capture`: drive load against an OpenAI-compatible endpoint and record everything.
//!
//! The run only records; every number is computed later by `analyze`. No tokenizer and no
//! query engine are linked here, so the client stays cheap at high request rates.
//!
//! - [`api`]: what differs between the APIs (chat, completions), one module each.
//! - [`config`]: flags ([`config::Args`]) validated into a [`config::Config`].
//! - [`dataset`] and [`request`]: prompts, rendered into request bodies before the run.
//! - [`schedule`]: open-loop arrival offsets (constant, Poisson, gamma), seeded.
//! - [`client`]: one keep-alive connection per worker; stamps and records each event.
//! - [`connection`]: timed TCP/TLS connect, liveness check before reuse, response-byte count.
//! - [`sse`] and [`delta`]: incremental SSE framing and the response fields kept.
//! - [`recorder`] and [`sink`]: bounded channel to one writer thread, zstd Parquet segments.
//! - [`progress`]: live counters and the stderr line.
//! - [`summary`]: the end-of-run summary, and whether the run measured anything.
//! - [`run`]: folder, manifest, dispatcher, workers and signals tied together.
//! - [`plan`]: sweeps and repeats, a run folder each, listed in `plan.json`.
//! - [`redact`]: secrets never reach a file or a log.
//! - [`replay`]: a recorded run's requests, to send again (`--replay`).
//! - [`session`]: multi-turn sessions, each turn after the previous answer, with the history.
//! - [`scrape`]: `--scrape`, the server's metrics endpoints read during the run, as received.
//! - [`health`]: the client's own CPU use and timer lag, to show it did not set the pace.
//! - [`live`]: `--live`, snapshots for other processes (`/metrics`, `/snapshot`, `/stream`).
//! - [`steer`]: `--stop-when`, and the capacity search a plan runs (`search:LO..HI --until`).

pub mod api;
pub mod client;
pub mod clock;
pub mod config;
pub mod connection;
pub mod dataset;
pub mod delta;
pub mod health;
pub mod live;
pub mod plan;
pub mod progress;
pub mod recorder;
pub mod redact;
pub mod replay;
pub mod request;
pub mod run;
pub mod schedule;
pub mod scrape;
pub mod session;
pub mod shard;
pub mod sink;
pub mod sse;
pub mod steer;
pub mod summary;

pub use config::{Args, Config};
pub use run::{run, Outcome};

/// Why a capture could not start or finish cleanly (failed requests are data, not errors).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A flag, the dataset or the endpoint is unusable.
    #[error("{0}")]
    Config(String),
    /// A file or folder could not be read or written.
    #[error("{path}")]
    Io {
        /// The path involved.
        path: std::path::PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The recorder could not start (its folders cannot be created).
    #[error(transparent)]
    Sink(#[from] sink::SinkError),
    /// A bug.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
