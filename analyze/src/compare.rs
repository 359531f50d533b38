//! `analyze compare`: is the difference between runs real? For each latency metric and chosen
//! statistic, the change from the first (base) run with a bootstrap interval, a rank test over
//! the whole distribution, and a verdict that says which way and whether it is detectable.
//!
//! A change is called `better` or `worse` only when its interval excludes zero *and* it is at
//! least `--threshold` of the base value: on a machine whose timings are precise, a 0.3 %
//! difference can be statistically real and still be noise for a benchmark. Everything else
//! is `same` ("no detectable difference"). Lower is better for every metric compared.

pub use recap_schemas::compare::{Comparison, Row, RunComparison, Verdict};

use crate::metrics::RequestMetrics;
use crate::{Error, Result};

/// Metrics `compare` can test: per-request latencies (lower is better).
pub const METRICS: [&str; 3] = ["ttft_ms", "tpot_ms", "e2e_ms"];

/// How one run is compared with the base.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Confidence of the intervals.
    pub confidence: f64,
    /// Smallest relative change called a difference (0.05: 5 %).
    pub threshold: f64,
    /// Bootstrap resamples.
    pub resamples: usize,
    /// Bootstrap seed.
    pub seed: u64,
}

/// A run's samples of each metric (successful measure-phase requests), in ms.
pub struct Samples {
    /// The run's label (its folder).
    pub run: String,
    /// The run's manifest, for the workload check.
    pub manifest: recap_schemas::Manifest,
    /// Samples of each of [`METRICS`].
    pub values: [Vec<f64>; 3],
    /// Successful measured requests.
    pub requests: usize,
}

impl Samples {
    /// The samples of a run's per-request metrics.
    pub fn of(run: String, manifest: recap_schemas::Manifest, rows: &[RequestMetrics]) -> Self {
        let ok: Vec<&RequestMetrics> = rows
            .iter()
            .filter(|m| m.ok && m.phase == Some(recap_schemas::Phase::Measure))
            .collect();
        let ms = |f: fn(&RequestMetrics) -> Option<i64>| -> Vec<f64> {
            ok.iter().filter_map(|m| f(m)).map(|ns| ns as f64 / 1e6).collect()
        };
        Samples {
            run,
            manifest,
            values: [ms(|m| m.ttft_ns), ms(|m| m.tpot_ns), ms(|m| m.e2e_ns)],
            requests: ok.len(),
        }
    }
}

/// Compares every run after the first with the first, on `stats` (`p50`, `p90`, ... `p99_9`).
pub fn compare(runs: &[Samples], stats: &[String], opts: Options) -> Result<Comparison> {
    let [base, others @ ..] = runs else {
        return Err(Error::Input("compare needs at least two runs".into()));
    };
    if others.is_empty() {
        return Err(Error::Input("compare needs at least two runs".into()));
    }
    let percentiles: Vec<(String, f64)> = stats
        .iter()
        .map(|s| {
            recap_schemas::summary::PERCENTILES
                .iter()
                .find(|(name, _)| name == s)
                .map(|(name, p)| (name.to_string(), *p))
                .ok_or_else(|| {
                    let all: Vec<&str> = recap_schemas::summary::PERCENTILES.iter().map(|(n, _)| *n).collect();
                    Error::Input(format!("--stats: `{s}` is not one of {}", all.join(", ")))
                })
        })
        .collect::<Result<_>>()?;
    let runs = others
        .iter()
        .map(|other| RunComparison {
            run: other.run.clone(),
            requests: other.requests,
            workload_differs: crate::sweep::workload_difference(&base.manifest, &other.manifest),
            rows: METRICS
                .iter()
                .enumerate()
                .flat_map(|(k, metric)| {
                    let (a, b) = (&base.values[k], &other.values[k]);
                    let p_value = recap_stats::compare::mann_whitney(a, b).map(|m| m.p);
                    percentiles
                        .iter()
                        .map(move |(stat, p)| row(metric, stat, *p, a, b, p_value, opts))
                })
                .collect(),
        })
        .collect();
    Ok(Comparison {
        base: base.run.clone(),
        base_requests: base.requests,
        confidence: opts.confidence,
        threshold: opts.threshold,
        resamples: opts.resamples,
        seed: opts.seed,
        runs,
    })
}

fn row(metric: &str, stat: &str, p: f64, a: &[f64], b: &[f64], p_value: Option<f64>, opts: Options) -> Row {
    let (base, value) = (
        recap_stats::percentile_select(&mut a.to_vec(), p),
        recap_stats::percentile_select(&mut b.to_vec(), p),
    );
    let shift = recap_stats::compare::bootstrap_shift(a, b, p, opts.confidence, opts.resamples, opts.seed);
    let rel = |x: f64| base.filter(|b| *b != 0.0).map(|b| x / b);
    let change = shift.and_then(|s| rel(s.difference));
    let (low, high) = (shift.and_then(|s| rel(s.low)), shift.and_then(|s| rel(s.high)));
    let verdict = match (change, low, high) {
        (Some(c), Some(l), Some(_)) if l > 0.0 && c >= opts.threshold => Verdict::Worse,
        (Some(c), Some(_), Some(h)) if h < 0.0 && -c >= opts.threshold => Verdict::Better,
        _ => Verdict::Same,
    };
    Row {
        metric: metric.to_string(),
        stat: stat.to_string(),
        base,
        value,
        change,
        change_low: low,
        change_high: high,
        p_value,
        verdict,
    }
}

/// The comparison as a console table (`md`: Markdown).
pub fn render(c: &Comparison, md: bool) -> String {
    let pct = |x: Option<f64>| x.map_or("-".to_string(), |x| format!("{:+.1}%", 100.0 * x));
    let num = |x: Option<f64>| x.map_or("-".to_string(), |x| format!("{x:.3}"));
    let mut s = format!(
        "base {} ({} requests); {:.0}% bootstrap intervals ({} resamples, seed {}); a change counts from {:.1}%\n",
        c.base,
        c.base_requests,
        c.confidence * 100.0,
        c.resamples,
        c.seed,
        c.threshold * 100.0
    );
    let header = [
        "metric",
        "stat",
        "base",
        "run",
        "change",
        "interval",
        "rank-test p",
        "verdict",
    ];
    for r in &c.runs {
        s.push_str(&format!("\n{} ({} requests)\n", r.run, r.requests));
        if !r.workload_differs.is_empty() {
            s.push_str(&format!(
                "warning: not the same workload as the base ({} differ)\n",
                r.workload_differs
            ));
        }
        let lines: Vec<[String; 8]> = r
            .rows
            .iter()
            .map(|x| {
                [
                    x.metric.clone(),
                    x.stat.clone(),
                    num(x.base),
                    num(x.value),
                    pct(x.change),
                    format!("[{}, {}]", pct(x.change_low), pct(x.change_high)),
                    x.p_value.map_or("-".into(), |p| {
                        if p < 1e-3 {
                            format!("{p:.1e}")
                        } else {
                            format!("{p:.3}")
                        }
                    }),
                    match x.verdict {
                        Verdict::Better => "better".into(),
                        Verdict::Worse => "WORSE".into(),
                        Verdict::Same => "no detectable difference".into(),
                    },
                ]
            })
            .collect();
        if md {
            s.push_str(&format!(
                "\n| {} |\n|{}\n",
                header.join(" | "),
                "---|".repeat(header.len())
            ));
            for l in &lines {
                s.push_str(&format!("| {} |\n", l.join(" | ")));
            }
        } else {
            let widths = [10, 6, 10, 10, 9, 20, 12, 0];
            let line = |cells: &[String]| {
                let mut out = String::new();
                for (c, w) in cells.iter().zip(widths) {
                    out.push_str(&format!("{c:<w$} "));
                }
                out.trim_end().to_string() + "\n"
            };
            s.push_str(&line(&header.map(String::from)));
            for l in &lines {
                s.push_str(&line(l));
            }
        }
    }
    s
}
