//! `recap-stats`: the pure statistics `analyze` computes and `plot` draws with.
//!
//! No I/O and no engines: numbers in, numbers (or the contract's types) out, so `plot` can
//! share them without linking `analyze`.
//!
//! - [`percentile`]: exact linear-interpolation percentiles and [`distribution`].
//! - [`quantiles`]: the same distribution of more integer samples than memory holds.
//! - [`pareto`]: which points are on the Pareto front of two axes.
//! - [`ellipse`]: t-based intervals and confidence ellipses of repeated runs.
//! - [`compare`]: whether two samples differ: a rank test and a bootstrap interval.
//! - [`early_stopping`]: MLPerf LoadGen's early stopping for a latency percentile bound.
//!
//! ```
//! let d = recap_stats::distribution([4.0, 1.0, 3.0, 2.0]);
//! assert_eq!(d.p50, Some(2.5));
//! ```

pub mod compare;
pub mod early_stopping;
pub mod ellipse;
pub mod pareto;
pub mod percentile;
pub mod quantiles;

pub use percentile::{distribution, percentile_select, percentile_sorted};
pub use quantiles::Quantiles;
