//! Live numbers steer the run: `--stop-when` ends a run once a live percentile crosses its
//! threshold, and a capacity search (`--concurrency search:LO..HI --until COND`) picks the
//! next load point from how the last one went.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use recap_schemas::live::Condition;
use tokio::sync::watch;

use crate::progress::Stats;

/// Samples of a condition's latency needed before `--stop-when` judges it (`--stop-min-samples`).
pub const DEFAULT_MIN_SAMPLES: u64 = 100;
/// How often `--stop-when` conditions are judged.
const JUDGE_EVERY: Duration = Duration::from_millis(100);

/// The first condition that holds, once its latency has at least `min_samples` samples, as
/// the run's stop reason.
pub fn first_holding(stats: &Stats, conditions: &[Condition], min_samples: u64) -> Option<String> {
    conditions.iter().find_map(|c| {
        let (value, n) = stats.judge(c);
        let v = value.filter(|v| n >= min_samples && c.holds(*v))?;
        Some(format!(
            "stopped early: {}_p{} was {v:.1} ms after {n} samples (--stop-when {c})",
            c.metric, c.percentile
        ))
    })
}

/// Judges `conditions` every 100 ms until `done` or until the run drains (scheduling over: the
/// run was not stopped early, whatever its last requests do); calls `stop` with the reason once
/// one holds.
pub async fn watch_conditions(
    stats: Arc<Stats>,
    conditions: Vec<Condition>,
    min_samples: u64,
    stop: impl Fn(String),
    draining: Arc<AtomicBool>,
    mut done: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(JUDGE_EVERY);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = done.wait_for(|d| *d) => return,
        }
        if draining.load(Relaxed) {
            return;
        }
        if let Some(why) = first_holding(&stats, &conditions, min_samples) {
            stop(why);
            return;
        }
    }
}

/// A monotone search over load levels for the highest one at which a condition does not hold
/// (the load the server sustains within its objective): doubling from `lo` until the condition
/// holds or `hi` is reached, then bisection between the last level that passed and the first
/// that did not. Integer levels (concurrency) stop when those two are adjacent; real ones
/// (rates) when they are within `resolution` of each other (relative).
#[derive(Debug, Clone)]
pub struct Search {
    lo: f64,
    hi: f64,
    integer: bool,
    resolution: f64,
    /// Highest level that passed so far.
    passed: Option<f64>,
    /// Lowest level that failed so far.
    failed: Option<f64>,
}

impl Search {
    /// A search over `lo..=hi`.
    pub fn new(lo: f64, hi: f64, integer: bool, resolution: f64) -> Self {
        Search {
            lo,
            hi,
            integer,
            resolution,
            passed: None,
            failed: None,
        }
    }

    /// The next level to run, or `None` when the search is over.
    pub fn next(&self) -> Option<f64> {
        match (self.passed, self.failed) {
            (None, None) => Some(self.lo),
            (None, Some(_)) => None,
            (Some(p), None) if p >= self.hi => None,
            (Some(p), None) => Some(self.round((p * 2.0).min(self.hi))),
            (Some(p), Some(f)) => {
                let close = if self.integer {
                    f - p <= 1.0
                } else {
                    (f - p) <= self.resolution * p
                };
                if close {
                    return None;
                }
                let m = self.round((p + f) / 2.0);
                (m > p && m < f).then_some(m)
            }
        }
    }

    fn round(&self, x: f64) -> f64 {
        if self.integer {
            x.floor()
        } else {
            // Three significant decimals keep the folder names short.
            (x * 1000.0).round() / 1000.0
        }
    }

    /// Records how `level` went: `held` is whether the condition held there (past the knee).
    pub fn record(&mut self, level: f64, held: bool) {
        if held {
            self.failed = Some(self.failed.map_or(level, |f| f.min(level)));
        } else {
            self.passed = Some(self.passed.map_or(level, |p| p.max(level)));
        }
    }

    /// The highest level that passed.
    pub fn best(&self) -> Option<f64> {
        self.passed
    }

    /// The most runs the search can still take after those done (for progress displays).
    pub fn max_runs(&self) -> u32 {
        let span = (self.hi / self.lo.max(1e-9)).max(1.0).log2().ceil() as u32 + 1;
        let width = if self.integer {
            self.hi - self.lo
        } else {
            1.0 / self.resolution.max(1e-6)
        };
        span + width.max(1.0).log2().ceil() as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs a search against a server whose knee is `knee` (the condition holds above it).
    fn path(lo: f64, hi: f64, integer: bool, knee: f64) -> (Vec<f64>, Option<f64>) {
        let mut s = Search::new(lo, hi, integer, 0.05);
        let mut taken = Vec::new();
        while let Some(x) = s.next() {
            assert!(!taken.contains(&x), "{x} probed twice: {taken:?}");
            taken.push(x);
            s.record(x, x > knee);
            assert!(taken.len() < 40, "no end: {taken:?}");
        }
        (taken, s.best())
    }

    #[test]
    fn finds_the_knee_by_doubling_then_bisection() {
        let (taken, best) = path(1.0, 512.0, true, 13.0);
        assert_eq!(taken, vec![1.0, 2.0, 4.0, 8.0, 16.0, 12.0, 14.0, 13.0]);
        assert_eq!(best, Some(13.0));
        for knee in [1.0, 2.0, 3.0, 7.0, 100.0, 511.0] {
            assert_eq!(path(1.0, 512.0, true, knee).1, Some(knee), "knee {knee}");
        }
        assert_eq!(path(1.0, 512.0, true, 600.0).1, Some(512.0), "never crossed: the top");
        assert_eq!(path(4.0, 64.0, true, 2.0), (vec![4.0], None), "crossed at the bottom");
    }

    #[tokio::test]
    async fn conditions_are_judged_until_the_run_drains() {
        let stats = Arc::new(Stats::default());
        for _ in 0..200 {
            stats.record_ttft(500_000_000);
        }
        let c: Condition = "ttft_p50>100ms".parse().expect("valid");
        for (draining, stops) in [(false, true), (true, false)] {
            let fired = Arc::new(std::sync::Mutex::new(None));
            let f = fired.clone();
            let (_done, done_rx) = watch::channel(false);
            // Returns by itself either way: stopped, or the run is draining.
            watch_conditions(
                stats.clone(),
                vec![c],
                100,
                move |why| *f.lock().expect("lock") = Some(why),
                Arc::new(AtomicBool::new(draining)),
                done_rx,
            )
            .await;
            let why = fired.lock().expect("lock").clone();
            assert_eq!(why.is_some(), stops, "draining {draining}: {why:?}");
            if let Some(why) = why {
                assert!(
                    why.contains("ttft_p50 was 500") && why.contains("--stop-when ttft_p50>100ms"),
                    "{why}"
                );
            }
        }
        assert_eq!(
            first_holding(&stats, &[c], 201),
            None,
            "not before the minimum sample count"
        );
    }

    #[test]
    fn real_levels_stop_at_the_resolution() {
        let (taken, best) = path(0.5, 64.0, false, 9.3);
        let best = best.expect("a level passed");
        assert!((9.3 / 1.05..=9.3).contains(&best), "{best} from {taken:?}");
        assert!(taken.len() <= Search::new(0.5, 64.0, false, 0.05).max_runs() as usize);
    }
}
