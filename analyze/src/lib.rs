//! `recap-analyze`: offline, re-scorable metrics from Recap captures.
//!
//! Everything that needs a tokenizer or a query engine happens here, after the run:
//!
//! - [`store`]: the one door to storage: run folders (any status, versions checked, SQL
//!   tables), analyze's own Parquet files and caches, and their failure policy.
//! - [`keys`]: content keys naming texts, so work done on a text is found again.
//! - [`columns`]: typed access to a batch's columns by name (segments and caches alike).
//! - [`reassemble`]: per-request output text per channel and the event times.
//! - [`tokenize`] and [`template`]: token counts with a real `tokenizer.json`, on all cores,
//!   through [`bpe`]'s count-only path for byte-level BPE vocabularies where it is exact,
//!   chat prompts rendered through the model's chat template.
//! - [`input`]: how a request's input is counted (template, BOS), shared by reports and
//!   datasets.
//! - [`dataset`]: `analyze dataset`: token-exact workloads for capture, and their statistics.
//! - [`metrics`]: per-request TTFT, TPOT, E2E, ISL, OSL, client lag under named definitions.
//! - [`per_token`]: each output token timed by the event that delivered its last byte; the
//!   peers' ITL definitions from it.
//! - [`summary`]: throughput, goodput, agreement (percentiles come from `recap-stats`).
//! - [`report`]: `<run>/analysis/<tokenizer-id>/{metrics.parquet, summary.*}`.
//! - [`sweep`]: one row per run, Pareto fronts, and confidence intervals and ellipses over
//!   repeated runs (the statistics live in `recap-stats`, the file types in `recap-schemas`).
//! - [`compare`]: whether runs differ: bootstrap intervals, a rank test, a verdict.
//! - [`series`]: the run second by second (`series.parquet`).
//! - [`server`]: the server's own metrics from `capture --scrape` (`server_metrics.parquet`).
//! - [`sql`]: ad-hoc SQL over `requests`, `events`, `scrapes`, `metrics`, `server_metrics`.

pub mod bpe;
pub mod columns;
pub mod compare;
pub mod constraints;
pub mod dataset;
pub mod input;
pub mod keys;
pub mod metrics;
pub mod per_token;
pub mod progress;
pub mod reassemble;
pub mod reference;
pub mod report;
pub mod series;
pub mod server;
pub mod sql;
pub mod store;
pub mod summary;
pub mod sweep;
pub mod template;
pub mod tokenize;

/// Why an analysis failed, by who is at fault (`docs/architecture.md`, "Errors"): the user's
/// input (exit 2) or the run time (exit 1). A variant's message never repeats its source; the
/// binary prints the whole chain once ([`chain`]).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad input: a run folder, tokenizer file, dataset or flag that cannot be used.
    #[error("{0}")]
    Input(String),
    /// A file the user named cannot be read (missing, no permission).
    #[error("cannot read {}", path.display())]
    Unreadable {
        /// The path as given.
        path: std::path::PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A file could not be read or written while working (a full disk, permissions).
    #[error("{}", path.display())]
    Io {
        /// The path.
        path: std::path::PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A Parquet file could not be encoded.
    #[error("writing {}", path.display())]
    Parquet {
        /// The file.
        path: std::path::PathBuf,
        /// The encoder's error.
        #[source]
        source: parquet::errors::ParquetError,
    },
    /// DataFusion rejected a query or a table.
    #[error("query")]
    Query(#[source] Box<datafusion::error::DataFusionError>),
    /// Arrow refused a table analyze built: a bug.
    #[error("internal error: building a table")]
    Arrow(#[from] arrow_schema::ArrowError),
    /// A bug.
    #[error("internal error: {0}")]
    Internal(String),
    /// What went wrong in one file of the run (a segment): the cause is the source.
    #[error("{}", path.display())]
    Within {
        /// The file.
        path: std::path::PathBuf,
        /// What went wrong there.
        #[source]
        source: Box<Error>,
    },
}

impl Error {
    /// Whether the user's input is at fault (exit 2) rather than the run time (exit 1).
    pub fn is_usage(&self) -> bool {
        match self {
            Error::Within { source, .. } => source.is_usage(),
            e => matches!(e, Error::Input(_) | Error::Unreadable { .. } | Error::Query(_)),
        }
    }

    /// `source`, as it happened in the file at `path`.
    pub fn within(path: &std::path::Path, source: Error) -> Self {
        Error::Within {
            path: path.to_path_buf(),
            source: Box::new(source),
        }
    }

    /// A file the user named, unreadable.
    pub fn unreadable(path: &std::path::Path, source: std::io::Error) -> Self {
        Error::Unreadable {
            path: path.to_path_buf(),
            source,
        }
    }
}

impl From<datafusion::error::DataFusionError> for Error {
    fn from(e: datafusion::error::DataFusionError) -> Self {
        Error::Query(Box::new(e))
    }
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
