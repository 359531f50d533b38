//! `--constraint` and `--mlperf`: latency bounds checked the way MLPerf LoadGen checks a Server
//! run (the percentile within its bound, and early stopping at 99 % confidence), with the
//! public MLPerf Inference constraint table for the LLM benchmarks.

use std::time::Duration;

use recap_schemas::summary::{ConstraintCheck, Constraints};
use recap_schemas::Phase;
use recap_stats::early_stopping;

use crate::metrics::RequestMetrics;
use crate::{Error, Result};

/// A metric a bound applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// Time to first token.
    Ttft,
    /// Time per output token.
    Tpot,
    /// End-to-end latency.
    E2e,
}

impl Metric {
    fn name(self) -> &'static str {
        match self {
            Metric::Ttft => "ttft_ms",
            Metric::Tpot => "tpot_ms",
            Metric::E2e => "e2e_ms",
        }
    }

    fn value_ns(self, m: &RequestMetrics) -> Option<i64> {
        match self {
            Metric::Ttft => m.ttft_ns,
            Metric::Tpot => m.tpot_ns,
            Metric::E2e => m.e2e_ns,
        }
    }
}

/// One bound: the `percentile` (0-100) of `metric` at most `limit_ms`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bound {
    /// The metric.
    pub metric: Metric,
    /// Percentile, 0-100 exclusive.
    pub percentile: f64,
    /// The bound in ms.
    pub limit_ms: f64,
}

/// A named set of bounds (an MLPerf benchmark's Server or Interactive constraints).
#[derive(Debug, Clone, Copy)]
pub struct NamedSet {
    /// `--mlperf` value.
    pub name: &'static str,
    /// TTFT bound, ms, at the 99th percentile.
    pub ttft_ms: f64,
    /// TPOT bound, ms, at the 99th percentile.
    pub tpot_ms: f64,
}

/// The MLPerf Inference LLM constraint table (Server and Interactive scenarios: TTFT and TPOT
/// at the 99th percentile, `*.Server.target_latency_percentile = 99`), from
/// `loadgen/mlperf.conf` of mlcommons/inference at b66003e (LoadGen 6.0.17): the
/// `<model>.Server.ttft_latency` and `tpot_latency` lines, in ms; Interactive runs LoadGen's
/// Server scenario with the `<model>-interactive` keys.
pub const MLPERF: [NamedSet; 10] = [
    NamedSet {
        name: "llama2-70b-server",
        ttft_ms: 2000.0,
        tpot_ms: 200.0,
    },
    NamedSet {
        name: "llama2-70b-interactive",
        ttft_ms: 450.0,
        tpot_ms: 40.0,
    },
    NamedSet {
        name: "llama3.1-405b",
        ttft_ms: 6000.0,
        tpot_ms: 175.0,
    },
    NamedSet {
        name: "llama3.1-405b-interactive",
        ttft_ms: 4500.0,
        tpot_ms: 80.0,
    },
    NamedSet {
        name: "llama3.1-8b",
        ttft_ms: 2000.0,
        tpot_ms: 100.0,
    },
    NamedSet {
        name: "llama3.1-8b-interactive",
        ttft_ms: 500.0,
        tpot_ms: 30.0,
    },
    NamedSet {
        name: "deepseek-r1",
        ttft_ms: 2000.0,
        tpot_ms: 80.0,
    },
    NamedSet {
        name: "deepseek-r1-interactive",
        ttft_ms: 1500.0,
        tpot_ms: 15.0,
    },
    NamedSet {
        name: "gpt-oss-120b",
        ttft_ms: 3000.0,
        tpot_ms: 80.0,
    },
    // The rules' table says 20 ms; LoadGen and the submission checker enforce 15.
    NamedSet {
        name: "gpt-oss-120b-interactive",
        ttft_ms: 2000.0,
        tpot_ms: 15.0,
    },
];

/// MLPerf's minimum Server run duration, seconds (`*.Server.min_duration = 600000` ms in
/// `mlperf.conf`).
pub const MLPERF_MIN_DURATION_S: f64 = 600.0;

/// What to check: bounds, and the set they came from.
#[derive(Debug, Clone, Default)]
pub struct Spec {
    /// The `--mlperf` set's name.
    pub set: Option<&'static str>,
    /// Every bound (the set's, then `--constraint`'s).
    pub bounds: Vec<Bound>,
    /// Minimum measure window (the set's).
    pub min_duration_s: Option<f64>,
}

impl Spec {
    /// From `--mlperf NAME` (may be empty) and `--constraint ttft_p99=2000ms,...` (may be
    /// empty). `None` when neither is given.
    pub fn parse(mlperf: Option<&str>, constraint: &str) -> Result<Option<Spec>> {
        let mut spec = Spec::default();
        if let Some(name) = mlperf {
            let set = MLPERF.iter().find(|s| s.name == name).ok_or_else(|| {
                let names: Vec<&str> = MLPERF.iter().map(|s| s.name).collect();
                Error::Input(format!("--mlperf {name:?}: unknown set; one of {}", names.join(", ")))
            })?;
            spec.set = Some(set.name);
            spec.min_duration_s = Some(MLPERF_MIN_DURATION_S);
            spec.bounds.push(Bound {
                metric: Metric::Ttft,
                percentile: 99.0,
                limit_ms: set.ttft_ms,
            });
            spec.bounds.push(Bound {
                metric: Metric::Tpot,
                percentile: 99.0,
                limit_ms: set.tpot_ms,
            });
        }
        for part in constraint.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            spec.bounds.push(parse_bound(part)?);
        }
        Ok((!spec.bounds.is_empty()).then_some(spec))
    }
}

/// `ttft_p99=2000ms`, `tpot_p99.9=80ms`, `e2e_p90=10s`.
fn parse_bound(part: &str) -> Result<Bound> {
    let bad = |why: &str| {
        Error::Input(format!(
            "--constraint {part:?}: {why} (expected METRIC_pPERCENTILE=DURATION, e.g. ttft_p99=2000ms; metrics ttft, tpot, e2e)"
        ))
    };
    let (key, value) = part.split_once('=').ok_or_else(|| bad("no '='"))?;
    let (metric, pct) = key.trim().split_once("_p").ok_or_else(|| bad("no _pNN percentile"))?;
    let metric = match metric {
        "ttft" => Metric::Ttft,
        "tpot" => Metric::Tpot,
        "e2e" => Metric::E2e,
        _ => return Err(bad("unknown metric")),
    };
    let percentile: f64 = pct
        .replace('_', ".")
        .parse()
        .map_err(|_| bad("the percentile is not a number"))?;
    if !(percentile > 0.0 && percentile < 100.0) {
        return Err(bad("the percentile must be between 0 and 100"));
    }
    let d: Duration = humantime::parse_duration(value.trim()).map_err(|e| bad(&format!("not a duration: {e}")))?;
    Ok(Bound {
        metric,
        percentile,
        limit_ms: d.as_secs_f64() * 1e3,
    })
}

/// Checks every bound of `spec` over the measure-phase requests of `rows`, whose measure
/// window lasted `window_s`.
///
/// A failed request, or one whose value is unknown, counts as over the bound: an unknown never
/// passes. TPOT leaves out successful requests of one output token (no gap to time).
pub fn check(spec: &Spec, rows: &[RequestMetrics], window_s: Option<f64>) -> Constraints {
    let measure: Vec<&RequestMetrics> = rows.iter().filter(|m| m.phase == Some(Phase::Measure)).collect();
    let checks: Vec<ConstraintCheck> = spec
        .bounds
        .iter()
        .map(|b| {
            let checked = measure
                .iter()
                .filter(|m| !(b.metric == Metric::Tpot && m.ok && m.osl_tokens.is_some_and(|n| n <= 1)));
            // Each sample's value in ms; +∞ for a failure or an unknown.
            let mut all: Vec<f64> = checked
                .map(|m| match (m.ok, b.metric.value_ns(m)) {
                    (true, Some(ns)) => ns as f64 / 1e6,
                    _ => f64::INFINITY,
                })
                .collect();
            all.sort_by(f64::total_cmp);
            let finite: Vec<f64> = all.iter().copied().take_while(|v| v.is_finite()).collect();
            let over = all.iter().filter(|v| **v > b.limit_ms).count() as u64;
            let n = all.len() as u64;
            let q = b.percentile / 100.0;
            let value_ms = early_stopping::loadgen_percentile(&finite, q);
            let within = value_ms.is_some_and(|v| v <= b.limit_ms);
            let verdict = early_stopping::check(n, over, q);
            let estimate_ms = early_stopping::estimate(&all, q).ok().filter(|v| v.is_finite());
            let early = verdict.is_some_and(|v| v.passed);
            ConstraintCheck {
                metric: b.metric.name().to_string(),
                percentile: b.percentile,
                limit_ms: b.limit_ms,
                samples: n,
                over,
                value_ms,
                within,
                needed: verdict.map_or(u64::MAX, |v| v.needed),
                more_needed: verdict.map_or(u64::MAX, |v| v.more_needed),
                early_stopping: early,
                estimate_ms,
                passed: within && early,
            }
        })
        .collect();
    let long_enough = match spec.min_duration_s {
        Some(min) => window_s.is_some_and(|w| w >= min),
        None => true,
    };
    Constraints {
        set: spec.set.map(|s| format!("mlperf {s}")),
        confidence: early_stopping::CONFIDENCE,
        min_duration_s: spec.min_duration_s,
        passed: long_enough && checks.iter().all(|c| c.passed),
        checks,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_parse_and_bad_ones_name_the_part() {
        let s = Spec::parse(None, "ttft_p99=2000ms, tpot_p99.9=80ms,e2e_p90=10s")
            .expect("parse")
            .expect("some");
        assert_eq!(
            s.bounds,
            vec![
                Bound {
                    metric: Metric::Ttft,
                    percentile: 99.0,
                    limit_ms: 2000.0
                },
                Bound {
                    metric: Metric::Tpot,
                    percentile: 99.9,
                    limit_ms: 80.0
                },
                Bound {
                    metric: Metric::E2e,
                    percentile: 90.0,
                    limit_ms: 10_000.0
                },
            ]
        );
        assert!(Spec::parse(None, "").expect("empty").is_none());
        for bad in ["ttft=2s", "itl_p99=2s", "ttft_p100=2s", "ttft_p99=fast"] {
            let e = Spec::parse(None, bad).expect_err(bad).to_string();
            assert!(e.contains(bad), "{e}");
        }
        let m = Spec::parse(Some("deepseek-r1"), "e2e_p99=60s")
            .expect("parse")
            .expect("some");
        assert_eq!(m.bounds.len(), 3);
        assert_eq!(m.min_duration_s, Some(600.0));
        assert!(Spec::parse(Some("gpt-5"), "").is_err());
    }
}
