//! `plan.json`: a capture that ran several load points (a sweep) and repeats of each, one
//! normal run folder per point and repeat, listed here so `analyze sweep` groups repeats by
//! the point they ran, not by a label guessed from each manifest.

use serde::{Deserialize, Serialize};

use crate::{LoadMode, PlanRunStatus, RunStatus};

/// File name of the plan inside a plan folder.
pub const PLAN_FILE: &str = "plan.json";

/// Where a run sits in a plan (`manifest.plan`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanPoint {
    /// Id of the plan (shared by all its runs).
    pub plan_id: String,
    /// The point's label (`c4`, `r2.5`): repeats of one point share it.
    pub point: String,
    /// 1-based repeat of the point.
    pub repeat: u32,
    /// Repeats planned for each point.
    pub repeats: u32,
}

/// One run of a plan, as `plan.json` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanRun {
    /// The point's label.
    pub point: String,
    /// 1-based repeat.
    pub repeat: u32,
    /// The run folder, relative to the plan folder.
    pub dir: String,
    /// `pending` before it ran, `running` while it runs, then its run's final status.
    pub status: PlanRunStatus,
}

/// `plan.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// Id shared by the plan's runs (their `manifest.plan.plan_id`).
    pub plan_id: String,
    /// Every run in execution order: points in the order given, each repeated.
    pub runs: Vec<PlanRun>,
    /// Pause between runs, in seconds.
    pub pause_s: f64,
    /// How the plan stands: `running` until it ends, then `complete`, the status of the run
    /// that ended it, or `interrupted` (a signal between runs). Absent in older plans.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<RunStatus>,
    /// Why the plan ended early, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_message: Option<String>,
    /// A capacity search's path and result (`--concurrency search:LO..HI --until COND`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search: Option<PlanSearch>,
}

/// A capacity search: the levels it tried, in order, and the highest that met the objective.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanSearch {
    /// `concurrency` or `rate`.
    pub load: LoadMode,
    /// Lowest level allowed.
    pub lo: f64,
    /// Highest level allowed.
    pub hi: f64,
    /// The condition searched for (`--until`), normalized (`ttft_p99>500ms`).
    pub until: String,
    /// Samples a point needed before the condition could stop it early.
    pub min_samples: u64,
    /// Every level run, in order.
    pub steps: Vec<SearchStep>,
    /// Label of the highest level at which the condition did not hold (`c13`); null when it
    /// held at the lowest.
    pub best: Option<String>,
    /// That level.
    pub best_level: Option<f64>,
}

/// One level of a capacity search.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchStep {
    /// The point's label.
    pub point: String,
    /// The level (concurrency or requests/s).
    pub level: f64,
    /// Its run folder.
    pub dir: String,
    /// The run's status (`stopped` when the condition stopped it early).
    pub status: RunStatus,
    /// The condition's latency percentile over the whole run, ms (null: no sample).
    pub value_ms: Option<f64>,
    /// Samples it was computed from.
    pub samples: u64,
    /// Whether the point was past the knee: the condition held over the whole run, a stop
    /// condition ended it, or it had no sample. Null for a point interrupted or failed (unjudged).
    pub held: Option<bool>,
}
