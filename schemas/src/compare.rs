//! The output of `analyze compare --format json`: each run against a base, per metric and
//! statistic, with a bootstrap interval of the change and a verdict. `plot --html --compare
//! --comparison FILE` draws it; scripts gate on it.

use serde::{Deserialize, Serialize};

use crate::enums::string_enum;

string_enum! {
    /// The verdict on one statistic (lower is better for every metric compared).
    Verdict {
        /// Lower than the base, by at least the threshold, the interval excluding zero.
        Better => "better",
        /// Higher than the base, likewise.
        Worse => "worse",
        /// No detectable difference.
        Same => "same",
    }
}

/// One statistic of one metric, base against one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// Metric (`ttft_ms`).
    pub metric: String,
    /// Statistic (`p50`, `p99`).
    pub stat: String,
    /// The base run's value.
    pub base: Option<f64>,
    /// This run's value.
    pub value: Option<f64>,
    /// `value / base - 1`.
    pub change: Option<f64>,
    /// Bootstrap interval of `value - base`, as a share of `base`.
    pub change_low: Option<f64>,
    /// Upper bound.
    pub change_high: Option<f64>,
    /// Mann-Whitney two-sided p-value of the whole distributions of the metric.
    pub p_value: Option<f64>,
    /// The call.
    pub verdict: Verdict,
}

/// One run against the base.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunComparison {
    /// The run compared.
    pub run: String,
    /// Its successful measured requests.
    pub requests: usize,
    /// What differs in the workload from the base (empty: the same).
    pub workload_differs: String,
    /// One row per metric and statistic.
    pub rows: Vec<Row>,
}

/// `analyze compare`'s result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// The base run.
    pub base: String,
    /// Its successful measured requests.
    pub base_requests: usize,
    /// Confidence of the intervals.
    pub confidence: f64,
    /// Smallest relative change called a difference.
    pub threshold: f64,
    /// Bootstrap resamples.
    pub resamples: usize,
    /// Bootstrap seed.
    pub seed: u64,
    /// Every other run against the base.
    pub runs: Vec<RunComparison>,
}

impl Comparison {
    /// Whether any statistic of any run is `verdict`.
    pub fn any(&self, verdict: Verdict) -> bool {
        self.runs.iter().any(|r| r.rows.iter().any(|x| x.verdict == verdict))
    }
}
