//! `analyze sweep`: many runs -> one row per run labelled by its load, the Pareto front over
//! two chosen metrics, and per-label statistics of repeated runs (mean, std, t-based CIs and
//! the confidence ellipse).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use arrow_array::builder::{BooleanBuilder, Float64Builder, StringBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
pub use recap_schemas::sweep::{Better, Ellipse, Group, Interval, Sweep, SweepRow};
use recap_stats::ellipse::{ellipse, interval, repeats_needed, spread};
use recap_stats::pareto::front;

use crate::summary::Summary;
use crate::{Error, Result};

/// Label of a run's load, from its manifest.
pub fn load_label(load: &recap_schemas::manifest::LoadSpec) -> (String, Option<f64>) {
    use recap_schemas::{Arrival, LoadMode};
    match load.mode {
        // Sessions in progress at once, as capture's `--sessions` plan points name them.
        LoadMode::Concurrency if load.sessions.is_some() => (
            format!("s{}", load.concurrency.unwrap_or(0)),
            load.concurrency.map(f64::from),
        ),
        LoadMode::Concurrency => (
            format!("c{}", load.concurrency.unwrap_or(0)),
            load.concurrency.map(f64::from),
        ),
        LoadMode::Rate => {
            let r = load.rate_per_s.unwrap_or(0.0);
            let tail = match (load.arrival.unwrap_or(Arrival::Poisson), load.burstiness) {
                (Arrival::Gamma, Some(k)) => format!("-gamma{k}"),
                (Arrival::Constant, _) => "-const".to_string(),
                _ => String::new(),
            };
            (format!("r{r}{tail}"), Some(r))
        }
        LoadMode::Burst => (LoadMode::Burst.as_str().to_string(), None),
        LoadMode::Timestamps => {
            let scale = load.time_scale.unwrap_or(1.0);
            (format!("trace-x{scale}"), Some(scale))
        }
    }
}

/// The group a run belongs to: its plan point (prefixed with the plan id when several plans
/// are swept together), else its load's label.
fn group_label(m: &recap_schemas::Manifest, several_plans: bool) -> String {
    match &m.plan {
        Some(p) if several_plans => format!("{}/{}", p.plan_id, p.point),
        Some(p) => p.point.clone(),
        None => load_label(&m.load).0,
    }
}

/// What differs between two runs' workloads (dataset, API, model, streaming, `max_tokens`),
/// empty when nothing does: runs compared or grouped as repeats should share one.
pub(crate) fn workload_difference(a: &recap_schemas::Manifest, b: &recap_schemas::Manifest) -> String {
    RepeatKey::of(a).difference(&RepeatKey::of(b))
}

/// What must be equal for runs to be repeats of one point.
#[derive(Debug, PartialEq)]
struct RepeatKey<'a> {
    dataset_sha256: &'a str,
    api: recap_schemas::Api,
    model: &'a str,
    stream: bool,
    max_tokens: Option<u32>,
}

impl<'a> RepeatKey<'a> {
    fn of(m: &'a recap_schemas::Manifest) -> Self {
        RepeatKey {
            dataset_sha256: &m.dataset.sha256,
            api: m.endpoint.api,
            model: &m.endpoint.model,
            stream: m.endpoint.stream,
            max_tokens: m.load.max_tokens,
        }
    }

    fn difference(&self, o: &RepeatKey<'_>) -> String {
        let mut d = Vec::new();
        if self.dataset_sha256 != o.dataset_sha256 {
            d.push("dataset sha256");
        }
        if self.api != o.api {
            d.push("api");
        }
        if self.model != o.model {
            d.push("model");
        }
        if self.stream != o.stream {
            d.push("stream");
        }
        if self.max_tokens != o.max_tokens {
            d.push("max_tokens");
        }
        d.join(", ")
    }
}

/// The numeric columns of one run.
pub fn values(s: &Summary) -> BTreeMap<String, Option<f64>> {
    let mut v = BTreeMap::new();
    v.insert("requests_ok".into(), Some(s.requests.ok as f64));
    v.insert("requests_per_s".into(), s.requests_per_s);
    v.insert("output_tokens_per_s".into(), s.output_tokens_per_s);
    v.insert("total_tokens_per_s".into(), s.total_tokens_per_s);
    v.insert("output_tokens_per_s_per_user".into(), s.output_tokens_per_s_per_user);
    v.insert("goodput_requests_per_s".into(), s.goodput.requests_per_s);
    for m in ["ttft_ms", "tpot_ms", "icl_ms", "e2e_ms"] {
        if let Some(d) = s.metrics.get(m) {
            for st in ["mean", "p50", "p90", "p99"] {
                v.insert(format!("{m}_{st}"), d.get(st));
            }
        }
    }
    // The server's own view of each point (`capture --scrape`): `server_requests_waiting_max`
    // shows where a queue starts to build.
    if let Some(srv) = &s.server {
        for (key, x) in &srv.series {
            v.insert(format!("server_{key}_mean"), x.mean);
            v.insert(format!("server_{key}_max"), x.max);
        }
        if srv.prefix_cache_hit_share.is_some() {
            v.insert("server_prefix_cache_hit_share".into(), srv.prefix_cache_hit_share);
        }
    }
    v
}

/// Builds the sweep from per-run summaries and their manifests. Repeats are grouped by their
/// plan point (`manifest.plan`, written by a capture plan), else by the load's label; runs
/// whose workload differs (dataset, API, model, stream, `max_tokens`) are never grouped.
///
/// `target_width` is the interval half-width, relative to the mean, that
/// [`Group::repeats_needed`] is computed for.
pub fn build(
    runs: &[(Summary, recap_schemas::Manifest)],
    x: &str,
    y: &str,
    confidence: f64,
    target_width: f64,
) -> Result<Sweep> {
    if !(confidence > 0.0 && confidence < 1.0) {
        return Err(Error::Input(format!(
            "--confidence must be in (0, 1), got {confidence}"
        )));
    }
    if !(target_width > 0.0 && target_width.is_finite()) {
        return Err(Error::Input(format!(
            "--target-width must be a positive share of the mean (0.05: 5 %), got {target_width}"
        )));
    }
    let plans: std::collections::BTreeSet<&str> = runs
        .iter()
        .filter_map(|(_, m)| m.plan.as_ref().map(|p| p.plan_id.as_str()))
        .collect();
    let mut rows: Vec<SweepRow> = runs
        .iter()
        .map(|(s, m)| SweepRow {
            run: s.scoring.run.clone(),
            label: group_label(m, plans.len() > 1),
            mode: m.load.mode,
            load: load_label(&m.load).1,
            values: values(s),
            pareto: false,
        })
        .collect();
    // Runs of one label must be repeats of one workload.
    let mut workloads: BTreeMap<&str, (&str, RepeatKey<'_>)> = BTreeMap::new();
    for (r, (_, m)) in rows.iter().zip(runs) {
        let w = RepeatKey::of(m);
        match workloads.get(r.label.as_str()) {
            Some((first, other)) if *other != w => {
                return Err(Error::Input(format!(
                "runs {first} and {} are both {} but their workloads differ ({}); they cannot be repeats of one point",
                r.run,
                r.label,
                other.difference(&w)
            )))
            }
            Some(_) => {}
            None => {
                workloads.insert(&r.label, (&r.run, w));
            }
        }
    }
    for axis in [x, y] {
        if let Some(r) = rows.first() {
            if !r.values.contains_key(axis) {
                let known: Vec<&str> = r.values.keys().map(String::as_str).collect();
                return Err(Error::Input(format!(
                    "unknown sweep axis {axis:?}; one of: {}",
                    known.join(", ")
                )));
            }
        }
    }
    let (xb, yb) = (Better::for_metric(x), Better::for_metric(y));
    let coord = |r: &SweepRow, k: &str| r.values.get(k).copied().flatten().unwrap_or(f64::NAN);
    let pts: Vec<(f64, f64)> = rows.iter().map(|r| (coord(r, x), coord(r, y))).collect();
    for (r, on) in rows.iter_mut().zip(front(&pts, xb, yb)) {
        r.pareto = on;
    }
    rows.sort_by(|a, b| {
        a.load
            .unwrap_or(f64::INFINITY)
            .total_cmp(&b.load.unwrap_or(f64::INFINITY))
            .then(a.run.cmp(&b.run))
    });
    let mut by_label: Vec<(String, Vec<&SweepRow>)> = Vec::new();
    for r in &rows {
        match by_label.iter_mut().find(|(l, _)| *l == r.label) {
            Some((_, v)) => v.push(r),
            None => by_label.push((r.label.clone(), vec![r])),
        }
    }
    let mut groups: Vec<Group> = by_label
        .into_iter()
        .map(|(label, members)| {
            let xs: Vec<f64> = members.iter().map(|r| coord(r, x)).filter(|v| v.is_finite()).collect();
            let ys: Vec<f64> = members.iter().map(|r| coord(r, y)).filter(|v| v.is_finite()).collect();
            let paired: (Vec<f64>, Vec<f64>) = members
                .iter()
                .map(|r| (coord(r, x), coord(r, y)))
                .filter(|(a, b)| a.is_finite() && b.is_finite())
                .unzip();
            let (xi, yi) = (
                nonnegative(interval(&xs, confidence)),
                nonnegative(interval(&ys, confidence)),
            );
            let needed = |i: Option<Interval>, n: usize| {
                i.filter(|_| n >= 2)
                    .and_then(|i| repeats_needed(i.std, target_width * i.mean.abs(), confidence))
            };
            Group {
                label,
                runs: members.len(),
                repeats_needed: [needed(xi, xs.len()), needed(yi, ys.len())],
                x: xi,
                y: yi,
                ellipse: ellipse(&paired.0, &paired.1, confidence),
                spread: spread(&paired.0, &paired.1, confidence),
                pareto: false,
            }
        })
        .collect();
    let means: Vec<(f64, f64)> = groups
        .iter()
        .map(|g| (g.x.map_or(f64::NAN, |i| i.mean), g.y.map_or(f64::NAN, |i| i.mean)))
        .collect();
    for (g, on) in groups.iter_mut().zip(front(&means, xb, yb)) {
        g.pareto = on;
    }
    Ok(Sweep {
        x: x.into(),
        y: y.into(),
        x_better: xb,
        y_better: yb,
        confidence,
        target_width,
        rows,
        groups,
    })
}

/// An interval cut at 0: sweep columns are rates, latencies and counts, whose true mean is
/// never negative (a t interval of two or three runs easily reaches below it).
fn nonnegative(i: Option<Interval>) -> Option<Interval> {
    i.map(|i| Interval {
        low: i.low.max(0.0),
        ..i
    })
}

/// The files and console text of a [`Sweep`].
pub trait SweepOutput {
    /// The rows as an Arrow batch (run, label, mode, load, numeric columns, pareto).
    fn to_batch(&self) -> Result<RecordBatch>;
    /// CSV of the rows.
    fn to_csv(&self) -> Result<String>;
    /// Writes `sweep.json`, `sweep.csv` and `sweep.parquet` into `dir`.
    fn write(&self, dir: &Path) -> Result<()>;
    /// Console table: one line per run, `*` marking the front, then the groups.
    fn to_console(&self) -> String;
}

/// The numeric column names, from the first row.
fn columns(sweep: &Sweep) -> Vec<String> {
    sweep
        .rows
        .first()
        .map(|r| r.values.keys().cloned().collect())
        .unwrap_or_default()
}

impl SweepOutput for Sweep {
    fn to_batch(&self) -> Result<RecordBatch> {
        let cols = columns(self);
        let mut fields = vec![
            Field::new("run", DataType::Utf8, false),
            Field::new("label", DataType::Utf8, false),
            Field::new("mode", DataType::Utf8, false),
            Field::new("load", DataType::Float64, true),
        ];
        fields.extend(cols.iter().map(|c| Field::new(c, DataType::Float64, true)));
        fields.push(Field::new("pareto", DataType::Boolean, false));
        let (mut run, mut label, mut mode, mut load, mut pareto) = (
            StringBuilder::new(),
            StringBuilder::new(),
            StringBuilder::new(),
            Float64Builder::new(),
            BooleanBuilder::new(),
        );
        let mut nums: Vec<Float64Builder> = cols.iter().map(|_| Float64Builder::new()).collect();
        for r in &self.rows {
            run.append_value(&r.run);
            label.append_value(&r.label);
            mode.append_value(r.mode.as_str());
            load.append_option(r.load);
            for (b, c) in nums.iter_mut().zip(&cols) {
                b.append_option(r.values.get(c).copied().flatten());
            }
            pareto.append_value(r.pareto);
        }
        let mut arrays: Vec<ArrayRef> = vec![
            Arc::new(run.finish()),
            Arc::new(label.finish()),
            Arc::new(mode.finish()),
            Arc::new(load.finish()),
        ];
        arrays.extend(nums.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
        arrays.push(Arc::new(pareto.finish()));
        RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).map_err(Error::from)
    }

    fn to_csv(&self) -> Result<String> {
        crate::store::parquet::csv(&[self.to_batch()?])
    }

    fn write(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|source| Error::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let write = |name: &str, bytes: Vec<u8>| {
            let p = dir.join(name);
            std::fs::write(&p, bytes).map_err(|source| Error::Io { path: p, source })
        };
        write(
            recap_schemas::analysis::SWEEP_JSON,
            serde_json::to_vec_pretty(self).map_err(|e| Error::Internal(e.to_string()))?,
        )?;
        write(recap_schemas::analysis::SWEEP_CSV, self.to_csv()?.into_bytes())?;
        crate::store::parquet::write_parquet(
            &dir.join(recap_schemas::analysis::SWEEP_PARQUET),
            &self.to_batch()?,
            &[],
        )?;
        Ok(())
    }

    fn to_console(&self) -> String {
        let f = |v: Option<f64>| v.map_or("-".to_string(), |x| format!("{x:.2}"));
        let mut s = format!("{:<10} {:>14} {:>14}  pareto  run\n", "label", self.x, self.y);
        for r in &self.rows {
            s.push_str(&format!(
                "{:<10} {:>14} {:>14}  {:^6}  {}\n",
                r.label,
                f(r.values.get(&self.x).copied().flatten()),
                f(r.values.get(&self.y).copied().flatten()),
                if r.pareto { "*" } else { "" },
                r.run
            ));
        }
        if self.groups.iter().any(|g| g.runs > 1) {
            s.push_str(&format!(
                "\nrepeated runs ({:.0}% confidence):\n",
                self.confidence * 100.0
            ));
            for g in self.groups.iter().filter(|g| g.runs > 1) {
                let ci = |i: Option<Interval>, needed: Option<u64>| {
                    let more = match needed {
                        Some(n) if n as usize > g.runs => format!(
                            " (±{:.0}%: {} more runs)",
                            self.target_width * 100.0,
                            n as usize - g.runs
                        ),
                        Some(_) => format!(" (within ±{:.0}%)", self.target_width * 100.0),
                        None => String::new(),
                    };
                    i.map_or("-".into(), |i| {
                        format!("{:.2} [{:.2}, {:.2}]{more}", i.mean, i.low, i.high)
                    })
                };
                let rough = if g.few_runs() { ", rough: fewer than 3 runs" } else { "" };
                s.push_str(&format!(
                    "{:<10} n={}{rough}  x {}  y {}\n",
                    g.label,
                    g.runs,
                    ci(g.x, g.repeats_needed[0]),
                    ci(g.y, g.repeats_needed[1])
                ));
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_from_loads() {
        let mut l = recap_schemas::manifest::LoadSpec {
            mode: recap_schemas::LoadMode::Concurrency,
            concurrency: Some(64),
            rate_per_s: None,
            arrival: None,
            burstiness: None,
            max_in_flight: 64,
            requests: None,
            duration_s: None,
            warmup_requests: 0,
            max_tokens: None,
            timeout_s: 1.0,
            seed: 0,
            time_scale: None,
            warmup_s: None,
            cooldown_s: None,
            ramp_up_s: None,
            sessions: None,
        };
        assert_eq!(load_label(&l), ("c64".into(), Some(64.0)));
        l.sessions = Some(recap_schemas::manifest::SessionSpec {
            sessions: 10,
            think_time_s: None,
            think_time_from_dataset: false,
            history: recap_schemas::SessionHistory::Recorded,
            header: None,
            max_history_bytes: None,
        });
        assert_eq!(load_label(&l).0, "s64");
        l.sessions = None;
        l.mode = recap_schemas::LoadMode::Rate;
        l.rate_per_s = Some(2.5);
        l.arrival = Some(recap_schemas::Arrival::Gamma);
        l.burstiness = Some(0.5);
        assert_eq!(load_label(&l).0, "r2.5-gamma0.5");
    }
}
