//! `sweep.json`: many runs, one row each, the Pareto front over two chosen metrics and the
//! statistics of repeated runs (t-based intervals, confidence ellipses).
//!
//! `analyze sweep` writes it; `plot` reads it back through these types.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::enums::string_enum;

string_enum! {
    /// Whether larger or smaller values of an axis are better.
    Better {
        /// Larger is better (throughput, goodput, tokens/s/user).
        Higher => "higher",
        /// Smaller is better (latency).
        Lower => "lower",
    }
}

impl Better {
    /// The direction implied by a metric name: latencies (`*_ms*`, `*_ns*`) and lag are
    /// minimized, everything else (rates, tokens) maximized.
    pub fn for_metric(name: &str) -> Better {
        if name.contains("_ms") || name.contains("_ns") || name.contains("lag") {
            Better::Lower
        } else {
            Better::Higher
        }
    }
}

/// Mean and t-based confidence interval of one axis (the interval is cut at 0: every sweep
/// column is a rate, a latency or a count, so its true mean is never negative).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    /// Sample mean.
    pub mean: f64,
    /// Sample standard deviation (n - 1); 0 for one run.
    pub std: f64,
    /// Lower bound (= mean for one run).
    pub low: f64,
    /// Upper bound.
    pub high: f64,
}

/// A confidence ellipse of a 2-D mean.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Ellipse {
    /// Centre x (mean).
    pub center_x: f64,
    /// Centre y (mean).
    pub center_y: f64,
    /// Semi-axis along the major direction.
    pub semi_major: f64,
    /// Semi-axis along the minor direction.
    pub semi_minor: f64,
    /// Angle of the major axis from the x axis, radians, in (-π/2, π/2].
    pub angle_rad: f64,
    /// Sample covariance entries.
    pub cov_xx: f64,
    /// Sample covariance entries.
    pub cov_xy: f64,
    /// Sample covariance entries.
    pub cov_yy: f64,
    /// Confidence level.
    pub confidence: f64,
}

impl Ellipse {
    /// `k` points on the outline (for drawing), closed (the first point repeated at the end).
    pub fn outline(&self, k: usize) -> Vec<(f64, f64)> {
        let (c, s) = (self.angle_rad.cos(), self.angle_rad.sin());
        (0..=k)
            .map(|i| {
                let t = 2.0 * std::f64::consts::PI * i as f64 / k.max(1) as f64;
                let (u, v) = (self.semi_major * t.cos(), self.semi_minor * t.sin());
                (self.center_x + u * c - v * s, self.center_y + u * s + v * c)
            })
            .collect()
    }
}

/// One run of the sweep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepRow {
    /// Run folder.
    pub run: String,
    /// Load label (`c64`, `r10`, `burst`) that groups repeated runs.
    pub label: String,
    /// The run's load shape.
    pub mode: crate::LoadMode,
    /// The load's number: concurrency, or rate in req/s.
    pub load: Option<f64>,
    /// Numeric columns by name (`output_tokens_per_s`, `ttft_ms_p99`, ...).
    pub values: BTreeMap<String, Option<f64>>,
    /// On the Pareto front of the chosen axes.
    pub pareto: bool,
}

impl SweepRow {
    /// The value of column `name`, if present and defined.
    pub fn value(&self, name: &str) -> Option<f64> {
        self.values.get(name).copied().flatten()
    }
}

/// Statistics of one label's repeated runs on the two axes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Group {
    /// The label.
    pub label: String,
    /// Runs in the group.
    pub runs: usize,
    /// x axis mean and CI.
    pub x: Option<Interval>,
    /// y axis mean and CI.
    pub y: Option<Interval>,
    /// Where the true mean lies: the confidence region of the mean (two or more runs; with
    /// two, a large-sample approximation to read as rough). It shrinks as runs are added.
    pub ellipse: Option<Ellipse>,
    /// Where one more run would fall: the prediction region of a single run (three or more
    /// runs). It does not shrink with more runs; it shows how much single runs scatter.
    #[serde(default)]
    pub spread: Option<Ellipse>,
    /// Runs needed in all for each axis' interval half-width to be at most
    /// `Sweep::target_width` of its mean, from this group's standard deviation (two or more
    /// runs); `[x, y]`.
    #[serde(default)]
    pub repeats_needed: [Option<u64>; 2],
    /// Group mean on the front of group means.
    pub pareto: bool,
}

impl Group {
    /// Fewer than three runs: no spread region, and the mean's region is an approximation.
    pub fn few_runs(&self) -> bool {
        self.runs < 3
    }
}

fn default_target_width() -> f64 {
    0.05
}

/// The whole sweep (`sweep.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sweep {
    /// x axis metric.
    pub x: String,
    /// y axis metric.
    pub y: String,
    /// Direction of x.
    pub x_better: Better,
    /// Direction of y.
    pub y_better: Better,
    /// Confidence level of intervals and ellipses.
    pub confidence: f64,
    /// Target interval half-width, relative to the mean, for `Group::repeats_needed`.
    #[serde(default = "default_target_width")]
    pub target_width: f64,
    /// Rows, one per run, ordered by label then run.
    pub rows: Vec<SweepRow>,
    /// Groups of repeated runs, ordered by load.
    pub groups: Vec<Group>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outline_is_closed_and_on_the_ellipse() {
        let e = Ellipse {
            center_x: 1.0,
            center_y: 2.0,
            semi_major: 3.0,
            semi_minor: 1.0,
            angle_rad: 0.5,
            cov_xx: 0.0,
            cov_xy: 0.0,
            cov_yy: 0.0,
            confidence: 0.95,
        };
        let pts = e.outline(64);
        assert_eq!(pts.len(), 65);
        let (f, l) = (pts[0], pts[64]);
        assert!((f.0 - l.0).abs() < 1e-9 && (f.1 - l.1).abs() < 1e-9);
        for (x, y) in pts {
            // Back into the ellipse's frame: (u/a)^2 + (v/b)^2 == 1.
            let (dx, dy) = (x - 1.0, y - 2.0);
            let (c, s) = (0.5f64.cos(), 0.5f64.sin());
            let (u, v) = (dx * c + dy * s, -dx * s + dy * c);
            assert!(((u / 3.0).powi(2) + v.powi(2) - 1.0).abs() < 1e-9);
        }
    }
}
