//! `recap-analyze`: offline, re-scorable metrics from Recap captures.
//!
//! Everything that needs a tokenizer or a query engine happens here, after the run:
//!
//! - [`load`]: open run folders (any status), check schema versions, register DataFusion tables.
//! - [`reassemble`]: per-request output text per channel and the event times.
//! - [`records`]: the reassembled table (texts as hashes) and each distinct output text, cached,
//!   so re-analysis, even with another tokenizer, skips the events.
//! - [`tokenize`] and [`template`]: token counts with a real `tokenizer.json`, on all cores,
//!   through [`bpe`]'s count-only path for byte-level BPE vocabularies where it is exact,
//!   chat prompts rendered through the model's chat template.
//! - [`input`]: how a request's input is counted (template, BOS), shared by reports and
//!   datasets.
//! - [`dataset`]: `analyze dataset`: token-exact workloads for capture, and their statistics.
//! - [`metrics`]: per-request TTFT, TPOT, E2E, ISL, OSL, client lag under named definitions.
//! - [`summary`]: throughput, goodput, agreement (percentiles come from `recap-stats`).
//! - [`report`]: `<run>/analysis/<tokenizer-id>/{metrics.parquet, summary.*}`.
//! - [`sweep`]: one row per run, Pareto fronts, and confidence intervals and ellipses over
//!   repeated runs (the statistics live in `recap-stats`, the file types in `recap-schemas`).
//! - [`sql`]: ad-hoc SQL over `requests`, `events`, `metrics`.
//! - [`store`]: Parquet writes, footers, segment fingerprints and the caches (one failure
//!   policy: a cache that cannot be written is a warning).

pub mod bpe;
pub mod dataset;
pub mod input;
pub mod load;
pub mod metrics;
pub mod progress;
pub mod reassemble;
pub mod records;
pub mod report;
pub mod sql;
pub mod store;
pub mod summary;
pub mod sweep;
pub mod template;
pub mod tokenize;

/// Why an analysis failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad input: a run folder, tokenizer file or flag that cannot be used.
    #[error("{0}")]
    Input(String),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: std::path::PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// DataFusion rejected a query or a file.
    #[error("query: {0}")]
    Query(String),
    /// A bug.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
