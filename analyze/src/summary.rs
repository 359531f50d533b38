//! Run-level summary: distributions, throughput over the measure window, goodput, error
//! counts and tokenizer-vs-server agreement, rendered as JSON, CSV, Markdown and a console table.

use std::collections::BTreeMap;
use std::time::Duration;

pub use recap_schemas::summary::{
    Agreement, ClientCheck, Constraints, Counts, Distribution, Goodput, PrefixGroupSummary, Scoring, Slo, SteadyState,
    Summary, TurnSummary, Window,
};

use recap_schemas::summary::LatencyFrom;
use recap_schemas::Phase;

use crate::metrics::RequestMetrics;
use crate::{Error, Result};

/// Everything [`summarize`] needs besides the metric rows.
pub struct SummaryInput<'a> {
    /// Run, tokenizer and definitions.
    pub scoring: Scoring,
    /// SLOs.
    pub slo: Slo,
    /// Per-request metrics.
    pub rows: &'a [RequestMetrics],
    /// The `icl_ms` distribution of the measure-phase successful requests, computed by the
    /// caller from `icl.parquet` in bounded memory (a run may hold billions of gaps).
    pub icl_ms: Distribution,
    /// The `itl_ms` distribution (from `itl.parquet`) with a per-token `--itl`.
    pub itl_ms: Option<Distribution>,
    /// Protocol events of each row, same order.
    pub protocol_events: &'a [u32],
    /// Which windows to report.
    pub window: Window,
    /// Latency bounds to check (`--constraint`, `--mlperf`).
    pub constraints: Option<&'a crate::constraints::Spec>,
}

/// The measure window: the first `sent` and the last terminal event of the measure-phase
/// requests (ns since run start), each `None` when no request has one.
pub fn measure_window(rows: &[RequestMetrics]) -> (Option<i64>, Option<i64>) {
    let measure = || rows.iter().filter(|m| m.phase == Some(Phase::Measure));
    (
        measure().filter_map(|m| m.sent_ns).min(),
        measure().filter_map(|m| m.end_ns).max(),
    )
}

/// CPU share from which the client may have set the pace: capture's own work then competes
/// with reading the responses it times.
pub const CLIENT_CPU_WARN: f64 = 0.8;

/// Timer lag (ms, p99) from which latencies may carry client delay: tokio's timers tick every
/// millisecond, so lag below a few ms is the clock's rounding, not load.
pub const CLIENT_LAG_WARN_MS: f64 = 5.0;

/// The client's health from a run's manifest ([`ClientCheck`]), with a warning for each way
/// it could have distorted the latencies.
pub fn client_check(h: &recap_schemas::ClientHealth, counts: Option<&recap_schemas::manifest::Counts>) -> ClientCheck {
    let ms = |us: u64| us as f64 / 1000.0;
    let (waits, wait_ms) = counts.map_or((0, 0.0), |c| (c.recorder_waits, c.recorder_wait_ns as f64 / 1e6));
    let mut warnings = Vec::new();
    let share = h.cpu_share();
    if share >= CLIENT_CPU_WARN {
        warnings.push(format!(
            "capture used {:.0}% of its {} cores: the client may have set the pace",
            share * 100.0,
            h.cores
        ));
    }
    if ms(h.timer_lag_p99_us) >= CLIENT_LAG_WARN_MS {
        warnings.push(format!(
            "capture's runtime woke timers {:.1} ms late at p99 ({:.1} ms at most): latencies may hold that much client delay",
            ms(h.timer_lag_p99_us),
            ms(h.timer_lag_max_us)
        ));
    }
    if waits > 0 {
        warnings.push(format!(
            "workers waited {wait_ms:.1} ms in total ({waits} times) for the recorder: the client set the pace then"
        ));
    }
    ClientCheck {
        cpu_share: share,
        cores: h.cores,
        timer_lag_p50_ms: ms(h.timer_lag_p50_us),
        timer_lag_p99_ms: ms(h.timer_lag_p99_us),
        timer_lag_max_ms: ms(h.timer_lag_max_us),
        recorder_waits: waits,
        recorder_wait_ms: wait_ms,
        warnings,
    }
}

/// Computes the summary.
pub fn summarize(inp: SummaryInput<'_>) -> Summary {
    let measure: Vec<usize> = (0..inp.rows.len())
        .filter(|i| inp.rows[*i].phase == Some(Phase::Measure))
        .collect();
    let ok: Vec<&RequestMetrics> = measure.iter().map(|i| &inp.rows[*i]).filter(|m| m.ok).collect();
    let mut errors = BTreeMap::new();
    for i in &measure {
        if let Some(k) = &inp.rows[*i].error_kind {
            *errors.entry(*k).or_insert(0) += 1;
        }
    }
    let (start, end) = measure_window(inp.rows);
    let window_s = match (start, end) {
        (Some(s), Some(e)) if e > s => Some((e - s) as f64 / 1e9),
        _ => None,
    };
    let per_s = |x: f64| window_s.map(|w| x / w);
    let osl: u64 = ok.iter().filter_map(|m| m.osl_tokens).map(u64::from).sum();
    let isl: u64 = ok.iter().filter_map(|m| m.isl_tokens).map(u64::from).sum();
    let ms = |v: Option<i64>| v.map(|x| x as f64 / 1e6);
    let mut metrics = request_distributions(ok.iter().copied());
    metrics.insert("icl_ms".into(), inp.icl_ms);
    if let Some(d) = inp.itl_ms {
        metrics.insert("itl_ms".into(), d);
    }
    metrics.insert(
        "client_lag_ms".into(),
        recap_stats::distribution(ok.iter().filter_map(|m| ms(m.client_lag_ns))),
    );
    let good = ok.iter().filter(|m| inp.slo.met_by(m)).count() as u64;
    let osl_unknown = ok.iter().filter(|m| m.osl_tokens.is_none()).count() as u64;
    let tpot_mean = metrics.get("tpot_ms").and_then(|d| d.mean).filter(|m| *m > 0.0);
    Summary {
        scoring: inp.scoring,
        requests: Counts {
            total: inp.rows.len() as u64,
            measure: measure.len() as u64,
            ok: ok.len() as u64,
            errors,
            protocol_events: measure.iter().map(|i| u64::from(inp.protocol_events[*i])).sum(),
            retried: measure.iter().filter(|i| inp.rows[**i].retries > 0).count() as u64,
            osl_unknown,
        },
        window_s,
        requests_per_s: per_s(ok.len() as f64),
        output_tokens_per_s: per_s(osl as f64),
        total_tokens_per_s: per_s((osl + isl) as f64),
        input_tokens_per_s: per_s(isl as f64),
        items_per_s: ok
            .iter()
            .any(|m| m.items.is_some())
            .then(|| per_s(ok.iter().filter_map(|m| m.items).map(u64::from).sum::<u64>() as f64))
            .flatten(),
        output_tokens_per_s_per_user: tpot_mean.map(|t| 1e3 / t),
        rate_intervals: rate_intervals(&ok, start, end),
        token_throughput_complete: osl_unknown == 0,
        goodput: Goodput {
            slo: inp.slo,
            good_requests: good,
            requests_per_s: per_s(good as f64),
            share: (!measure.is_empty()).then(|| good as f64 / measure.len() as f64),
        },
        osl_agreement: agreement(
            ok.iter()
                .filter_map(|m| Some((m.tokenizer_output_tokens, m.server_completion_tokens?))),
        ),
        isl_agreement: agreement(
            ok.iter()
                .filter_map(|m| Some((m.tokenizer_input_tokens?, m.server_prompt_tokens?))),
        ),
        planned_isl: agreement(ok.iter().filter_map(|m| Some((m.isl_tokens?, m.planned_input_tokens?)))),
        planned_osl: agreement(ok.iter().filter_map(|m| Some((m.osl_tokens?, m.max_tokens?)))),
        by_turn: grouped(measure.iter().map(|i| &inp.rows[*i]), |m| m.turn)
            .into_iter()
            .map(|(turn, requests, ok, metrics)| TurnSummary {
                turn,
                requests,
                ok,
                metrics,
            })
            .collect(),
        by_prefix_group: grouped(measure.iter().map(|i| &inp.rows[*i]), |m| m.prefix_group)
            .into_iter()
            .map(|(prefix_group, requests, ok, metrics)| PrefixGroupSummary {
                prefix_group,
                requests,
                ok,
                metrics,
            })
            .collect(),
        constraints: inp
            .constraints
            .map(|spec| crate::constraints::check(spec, inp.rows, window_s)),
        // Read from the run's scrapes and manifest by the report, which has the run folder.
        server: None,
        client: None,
        shards: None,
        steady: match inp.window {
            Window::Full => None,
            Window::Steady => start.and_then(|origin| steady_state(measure.iter().map(|i| &inp.rows[*i]), origin)),
        },
        metrics,
    }
}

/// The steady state of the measure-phase requests `measure` ([`SteadyState`]), its times
/// from `origin` (the measure window's start), or `None` (with a warning) when the last
/// request was sent before the first one ended.
fn steady_state<'a>(measure: impl Iterator<Item = &'a RequestMetrics> + Clone, origin: i64) -> Option<SteadyState> {
    let start = measure.clone().filter_map(|m| m.end_ns).min()?;
    let end = measure.clone().filter_map(|m| m.sent_ns).max()?;
    if end <= start {
        tracing::warn!("--window steady: no steady state, every measured request was sent before the first one ended");
        return None;
    }
    let window_s = (end - start) as f64 / 1e9;
    let inside = |t: Option<i64>| t.is_some_and(|t| start <= t && t <= end);
    let ended: Vec<&RequestMetrics> = measure.clone().filter(|m| inside(m.end_ns)).collect();
    let ok_ended = ended.iter().filter(|m| m.ok);
    let tokens: Option<u64> = ok_ended.clone().map(|m| m.osl_tokens.map(u64::from)).sum();
    let wholly: Vec<&RequestMetrics> = ended.iter().copied().filter(|m| inside(m.sent_ns)).collect();
    Some(SteadyState {
        start_s: (start - origin) as f64 / 1e9,
        end_s: (end - origin) as f64 / 1e9,
        window_s,
        requests_ended: ended.len() as u64,
        requests_per_s: ok_ended.count() as f64 / window_s,
        output_tokens_per_s: tokens.map(|t| t as f64 / window_s),
        requests_inside: wholly.len() as u64,
        metrics: request_distributions(wholly.iter().copied().filter(|m| m.ok)),
    })
}

/// Blocks the window is cut into for the rates' intervals.
const RATE_BLOCKS: usize = 20;

/// Bootstrap intervals of `requests_per_s` and `output_tokens_per_s`: the window cut into
/// [`RATE_BLOCKS`] equal blocks, each successful request (and its output tokens) counted in
/// the block holding its end, each block's rate resampled (seed 0, 2,000 resamples). The
/// blocks' mean rate is the reported rate, so the interval is around it; blocks keep the
/// run's ups and downs (a burst, a slow stretch), which resampling single requests would not.
fn rate_intervals(ok: &[&RequestMetrics], start: Option<i64>, end: Option<i64>) -> BTreeMap<String, [f64; 2]> {
    let (Some(start), Some(end)) = (start, end) else {
        return BTreeMap::new();
    };
    if end <= start || ok.is_empty() {
        return BTreeMap::new();
    }
    let block_s = (end - start) as f64 / 1e9 / RATE_BLOCKS as f64;
    let block =
        |t: i64| (((t - start) as f64 / (end - start) as f64 * RATE_BLOCKS as f64) as usize).min(RATE_BLOCKS - 1);
    let (mut requests, mut tokens) = (vec![0.0; RATE_BLOCKS], vec![0.0; RATE_BLOCKS]);
    let mut tokens_known = true;
    for m in ok {
        let Some(t) = m.end_ns else { continue };
        let b = block(t.max(start));
        requests[b] += 1.0 / block_s;
        match m.osl_tokens {
            Some(n) => tokens[b] += f64::from(n) / block_s,
            None => tokens_known = false,
        }
    }
    let confidence = recap_schemas::summary::PERCENTILE_CONFIDENCE;
    let interval = |v: &[f64]| recap_stats::compare::bootstrap_mean(v, confidence, 2000, 0);
    let mut out = BTreeMap::new();
    if let Some(i) = interval(&requests) {
        out.insert("requests_per_s".to_string(), i);
    }
    if tokens_known {
        if let Some(i) = interval(&tokens) {
            out.insert("output_tokens_per_s".to_string(), i);
        }
    }
    out
}

/// The per-request distributions of `ok` (successful requests) by metric name.
fn request_distributions<'a>(ok: impl Iterator<Item = &'a RequestMetrics> + Clone) -> BTreeMap<String, Distribution> {
    let ms = |v: Option<i64>| v.map(|x| x as f64 / 1e6);
    /// A metric of one request, in the unit its distribution is reported in.
    type Value<'v> = &'v dyn Fn(&RequestMetrics) -> Option<f64>;
    let per_request: [(&str, Value); 6] = [
        ("ttft_ms", &|m| ms(m.ttft_ns)),
        ("prefill_tokens_per_s", &|m| m.prefill_tokens_per_s),
        ("tpot_ms", &|m| ms(m.tpot_ns)),
        ("e2e_ms", &|m| ms(m.e2e_ns)),
        ("isl_tokens", &|m| m.isl_tokens.map(f64::from)),
        ("osl_tokens", &|m| m.osl_tokens.map(f64::from)),
    ];
    // What the server reports about itself, only when it did (llama.cpp's `timings`, the
    // `cached_tokens` of vLLM, SGLang and llama.cpp).
    // And what per-token timing measures, only when it ran (a per-token `--itl`).
    let server_reported: [(&str, Value); 6] = [
        ("server_prefill_ms", &|m| m.server_prefill_ms),
        ("server_decode_ms", &|m| m.server_decode_ms),
        ("prefix_cache_share", &|m| m.prefix_cache_share),
        ("time_to_second_token_ms", &|m| ms(m.time_to_second_token_ns)),
        ("tokens_per_chunk", &|m| m.tokens_per_chunk),
        ("time_to_first_answer_ms", &|m| ms(m.time_to_first_answer_ns)),
    ];
    let mut out: BTreeMap<String, Distribution> = per_request
        .iter()
        .map(|(name, value)| {
            (
                name.to_string(),
                recap_stats::distribution(ok.clone().filter_map(value)),
            )
        })
        .collect();
    for (name, value) in server_reported {
        let d = recap_stats::distribution(ok.clone().filter_map(value));
        if d.count > 0 {
            out.insert(name.to_string(), d);
        }
    }
    out
}

/// Measure-phase requests grouped by `key` (turn index, prefix group): each group's key,
/// requests, successes and distributions over its successes, in key order. Requests without
/// a key are in no group.
fn grouped<'a>(
    measure: impl Iterator<Item = &'a RequestMetrics>,
    key: fn(&RequestMetrics) -> Option<u32>,
) -> Vec<(u32, u64, u64, BTreeMap<String, Distribution>)> {
    let mut groups: BTreeMap<u32, Vec<&RequestMetrics>> = BTreeMap::new();
    for m in measure {
        if let Some(k) = key(m) {
            groups.entry(k).or_default().push(m);
        }
    }
    groups
        .into_iter()
        .map(|(k, rows)| {
            (
                k,
                rows.len() as u64,
                rows.iter().filter(|m| m.ok).count() as u64,
                request_distributions(rows.iter().copied().filter(|m| m.ok)),
            )
        })
        .collect()
}

fn fmt(v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(x) if x.abs() >= 1000.0 => format!("{x:.0}"),
        Some(x) if x.abs() >= 10.0 => format!("{x:.1}"),
        Some(x) => format!("{x:.3}"),
    }
}

const STATS: [&str; 10] = [
    "mean", "std", "min", "p50", "p90", "p95", "p99", "p99_9", "max", "count",
];

/// Parsing and checking [`Slo`]s (the type is part of the contract, in `recap-schemas`).
pub trait SloExt: Sized {
    /// Parses `ttft=200ms,tpot=50ms,e2e=10s`.
    fn parse(text: &str) -> Result<Self>;
    /// Whether a successful request meets every bound.
    fn met_by(&self, m: &RequestMetrics) -> bool;
}

impl SloExt for Slo {
    /// Parses `ttft=200ms,tpot=50ms,e2e=10s`.
    fn parse(text: &str) -> Result<Self> {
        let mut slo = Slo::default();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| Error::Input(format!("--slo {part:?}: expected NAME=DURATION, e.g. ttft=200ms")))?;
            let d: Duration = humantime::parse_duration(v.trim())
                .map_err(|e| Error::Input(format!("--slo {k}: {v:?} is not a duration ({e})")))?;
            let ms = d.as_secs_f64() * 1e3;
            match k.trim() {
                "ttft" => slo.ttft_ms = Some(ms),
                "tpot" => slo.tpot_ms = Some(ms),
                "e2e" => slo.e2e_ms = Some(ms),
                other => {
                    return Err(Error::Input(format!(
                        "--slo: unknown metric {other:?} (ttft, tpot, e2e)"
                    )))
                }
            }
        }
        Ok(slo)
    }

    /// Whether a successful request meets every bound.
    fn met_by(&self, m: &RequestMetrics) -> bool {
        let ms = |ns: Option<i64>| ns.map(|x| x as f64 / 1e6);
        let within = |bound: Option<f64>, v: Option<f64>, undefined_ok: bool| match (bound, v) {
            (None, _) => true,
            (Some(b), Some(v)) => v <= b,
            (Some(_), None) => undefined_ok,
        };
        // TPOT is undefined for a one-token answer (met: no gap to miss), but unknown when
        // the output length is (`--tokens server` without `usage`): never met then.
        let tpot_undefined_ok = m.osl_tokens.is_some_and(|n| n <= 1);
        m.ok && within(self.ttft_ms, ms(m.ttft_ns), false)
            && within(self.tpot_ms, ms(m.tpot_ns), tpot_undefined_ok)
            && within(self.e2e_ms, ms(m.e2e_ns), false)
    }
}

/// The agreement of (measured, reference) count pairs: tokenizer vs server, or measured vs
/// planned.
fn agreement(pairs: impl Iterator<Item = (u32, u32)>) -> Agreement {
    let d: Vec<i64> = pairs.map(|(t, s)| i64::from(t) - i64::from(s)).collect();
    if d.is_empty() {
        return Agreement::default();
    }
    let n = d.len() as f64;
    Agreement {
        compared: d.len() as u64,
        share_equal: Some(d.iter().filter(|x| **x == 0).count() as f64 / n),
        mean_diff: Some(d.iter().sum::<i64>() as f64 / n),
        max_abs_diff: d.iter().map(|x| x.abs()).max(),
    }
}

/// The text renderings of a [`Summary`].
pub trait SummaryText {
    /// Flat `key,value` rows (`ttft_ms.p99,123.4`) for CSV and scripts.
    fn flat(&self) -> Vec<(String, String)>;
    /// CSV text (`key,value`).
    fn to_csv(&self) -> Result<String>;
    /// Console rendering.
    fn to_console(&self) -> String;
    /// Markdown rendering.
    fn to_markdown(&self) -> String;
}

impl SummaryText for Summary {
    fn flat(&self) -> Vec<(String, String)> {
        let mut out = vec![
            ("run".into(), self.scoring.run.clone()),
            ("run_id".into(), self.scoring.run_id.clone()),
            ("status".into(), self.scoring.status.to_string()),
            ("tokenizer_id".into(), self.scoring.tokenizer_id.clone()),
            ("requests.total".into(), self.requests.total.to_string()),
            ("requests.measure".into(), self.requests.measure.to_string()),
            ("requests.ok".into(), self.requests.ok.to_string()),
            ("requests.retried".into(), self.requests.retried.to_string()),
            ("requests.osl_unknown".into(), self.requests.osl_unknown.to_string()),
            (
                "token_throughput_complete".into(),
                self.token_throughput_complete.to_string(),
            ),
        ];
        for (k, n) in &self.requests.errors {
            out.push((format!("errors.{k}"), n.to_string()));
        }
        let num = |v: Option<f64>| v.map_or(String::new(), |x| format!("{x}"));
        for (k, v) in [
            ("window_s", self.window_s),
            ("requests_per_s", self.requests_per_s),
            ("output_tokens_per_s", self.output_tokens_per_s),
            ("total_tokens_per_s", self.total_tokens_per_s),
            ("input_tokens_per_s", self.input_tokens_per_s),
            ("items_per_s", self.items_per_s),
            ("output_tokens_per_s_per_user", self.output_tokens_per_s_per_user),
            (
                "requests_per_s_low",
                self.rate_intervals.get("requests_per_s").map(|i| i[0]),
            ),
            (
                "requests_per_s_high",
                self.rate_intervals.get("requests_per_s").map(|i| i[1]),
            ),
            (
                "output_tokens_per_s_low",
                self.rate_intervals.get("output_tokens_per_s").map(|i| i[0]),
            ),
            (
                "output_tokens_per_s_high",
                self.rate_intervals.get("output_tokens_per_s").map(|i| i[1]),
            ),
            ("goodput.requests_per_s", self.goodput.requests_per_s),
            ("goodput.share", self.goodput.share),
            ("osl_agreement.share_equal", self.osl_agreement.share_equal),
            ("osl_agreement.mean_diff", self.osl_agreement.mean_diff),
            ("isl_agreement.share_equal", self.isl_agreement.share_equal),
            ("isl_agreement.mean_diff", self.isl_agreement.mean_diff),
            ("planned_isl.share_equal", self.planned_isl.share_equal),
            ("planned_isl.mean_diff", self.planned_isl.mean_diff),
            ("planned_osl.share_equal", self.planned_osl.share_equal),
            ("planned_osl.mean_diff", self.planned_osl.mean_diff),
        ] {
            out.push((k.into(), num(v)));
        }
        // Every statistic of a distribution, then each percentile interval's bounds.
        let stats = |out: &mut Vec<(String, String)>, key: &str, d: &Distribution| {
            for s in STATS {
                let v = if s == "count" { Some(d.count as f64) } else { d.get(s) };
                out.push((format!("{key}.{s}"), num(v)));
            }
            for (p, _) in recap_schemas::summary::PERCENTILES {
                for end in ["low", "high"] {
                    out.push((format!("{key}.{p}_{end}"), num(d.get(&format!("{p}_{end}")))));
                }
            }
        };
        for (name, d) in &self.metrics {
            stats(&mut out, name, d);
        }
        let groups = self
            .by_turn
            .iter()
            .map(|t| (format!("turn{}", t.turn), t.requests, t.ok, &t.metrics))
            .chain(
                self.by_prefix_group
                    .iter()
                    .map(|g| (format!("prefix_group{}", g.prefix_group), g.requests, g.ok, &g.metrics)),
            );
        if let Some(c) = &self.constraints {
            out.push(("constraints.passed".into(), c.passed.to_string()));
            for k in &c.checks {
                let key = format!("constraints.{}_p{}", k.metric.trim_end_matches("_ms"), k.percentile);
                for (name, v) in [
                    ("limit_ms", Some(k.limit_ms)),
                    ("value_ms", k.value_ms),
                    ("estimate_ms", k.estimate_ms),
                    ("samples", Some(k.samples as f64)),
                    ("over", Some(k.over as f64)),
                    ("more_needed", Some(k.more_needed as f64)),
                ] {
                    out.push((format!("{key}.{name}"), num(v)));
                }
                out.push((format!("{key}.passed"), k.passed.to_string()));
            }
        }
        if let Some(st) = &self.steady {
            for (k, v) in [
                ("steady.start_s", Some(st.start_s)),
                ("steady.end_s", Some(st.end_s)),
                ("steady.window_s", Some(st.window_s)),
                ("steady.requests_ended", Some(st.requests_ended as f64)),
                ("steady.requests_inside", Some(st.requests_inside as f64)),
                ("steady.requests_per_s", Some(st.requests_per_s)),
                ("steady.output_tokens_per_s", st.output_tokens_per_s),
            ] {
                out.push((k.into(), num(v)));
            }
            for (name, d) in &st.metrics {
                stats(&mut out, &format!("steady.{name}"), d);
            }
        }
        if let Some(srv) = &self.server {
            for (key, x) in &srv.series {
                out.push((format!("server.{key}.mean"), num(x.mean)));
                out.push((format!("server.{key}.max"), num(x.max)));
            }
            out.push(("server.prefix_cache_hit_share".into(), num(srv.prefix_cache_hit_share)));
            out.push(("server.failed_scrapes".into(), num(Some(srv.failed_scrapes as f64))));
        }
        if let Some(sh) = &self.shards {
            out.push(("shards.count".into(), sh.count.to_string()));
            out.push(("shards.merged".into(), sh.shards.len().to_string()));
            out.push(("shards.warnings".into(), sh.warnings.len().to_string()));
        }
        if let Some(c) = &self.client {
            for (k, v) in [
                ("client.cpu_share", c.cpu_share),
                ("client.timer_lag_p99_ms", c.timer_lag_p99_ms),
                ("client.recorder_wait_ms", c.recorder_wait_ms),
                ("client.warnings", c.warnings.len() as f64),
            ] {
                out.push((k.into(), num(Some(v))));
            }
        }
        for (key, requests, ok, metrics) in groups {
            out.push((format!("{key}.requests"), requests.to_string()));
            out.push((format!("{key}.ok"), ok.to_string()));
            for (name, d) in metrics {
                stats(&mut out, &format!("{key}.{name}"), d);
            }
        }
        out
    }

    fn to_csv(&self) -> Result<String> {
        let (keys, values): (Vec<String>, Vec<String>) = self.flat().into_iter().unzip();
        let batch = arrow_array::RecordBatch::try_from_iter([
            (
                "key",
                std::sync::Arc::new(arrow_array::StringArray::from(keys)) as arrow_array::ArrayRef,
            ),
            (
                "value",
                std::sync::Arc::new(arrow_array::StringArray::from(values)) as arrow_array::ArrayRef,
            ),
        ])?;
        crate::store::parquet::csv(&[batch])
    }

    fn to_console(&self) -> String {
        let mut s = headline(self).join("\n");
        s.push_str("\n\n");
        s.push_str(&table(self, false));
        s.push_str(&intervals_table(self, false));
        s.push_str(&turn_table(self, false));
        s
    }

    fn to_markdown(&self) -> String {
        let mut s = format!("# Recap summary: {}\n\n", self.scoring.run);
        for l in headline(self) {
            s.push_str(&format!("- {l}\n"));
        }
        s.push('\n');
        s.push_str(&table(self, true));
        s.push_str(&intervals_table(self, true));
        s.push_str(&turn_table(self, true));
        s
    }
}

/// The by-turn table of a multi-turn run: requests, successes and the p50 and p90 of TTFT,
/// E2E and ISL of each turn index (and the p50 prefix-cache share, when reported).
fn turn_table(summary: &Summary, md: bool) -> String {
    if summary.by_turn.is_empty() {
        return String::new();
    }
    // The prefix-cache hit share by turn, when the server reported cached tokens.
    let cache = summary
        .by_turn
        .iter()
        .any(|t| t.metrics.contains_key("prefix_cache_share"));
    let mut header = vec![
        "turn", "n", "ok", "ttft p50", "ttft p90", "e2e p50", "e2e p90", "isl p50", "isl p90",
    ];
    if cache {
        header.push("cache p50");
    }
    let mut rows = vec![header.iter().map(|h| h.to_string()).collect::<Vec<_>>()];
    for t in &summary.by_turn {
        let stat = |metric: &str, st: &str| fmt(t.metrics.get(metric).and_then(|d| d.get(st)));
        let mut row = vec![
            t.turn.to_string(),
            t.requests.to_string(),
            t.ok.to_string(),
            stat("ttft_ms", "p50"),
            stat("ttft_ms", "p90"),
            stat("e2e_ms", "p50"),
            stat("e2e_ms", "p90"),
            stat("isl_tokens", "p50"),
            stat("isl_tokens", "p90"),
        ];
        if cache {
            row.push(stat("prefix_cache_share", "p50"));
        }
        rows.push(row);
    }
    let mut s = String::from(if md {
        "\n### By turn\n\n"
    } else {
        "\nby turn (ms, tokens)\n"
    });
    for (i, r) in rows.iter().enumerate() {
        if md {
            s.push_str(&format!("| {} |\n", r.join(" | ")));
            if i == 0 {
                s.push_str(&format!("|{}\n", "---|".repeat(r.len())));
            }
        } else {
            s.push_str(&format!("{:<6}", r[0]));
            for c in &r[1..] {
                s.push_str(&format!("{c:>10}"));
            }
            s.push('\n');
        }
    }
    s
}

/// The percentile intervals of the latencies (`[low, high]`, `-` where the run is too short).
fn intervals_table(summary: &Summary, md: bool) -> String {
    use recap_schemas::summary::PERCENTILE_CONFIDENCE;
    let wanted = ["p50", "p90", "p99"];
    let rows: Vec<(&str, Vec<String>)> = ["ttft_ms", "tpot_ms", "icl_ms", "itl_ms", "e2e_ms"]
        .into_iter()
        .filter_map(|name| {
            let d = summary.metrics.get(name).filter(|d| d.count > 0)?;
            let cells = wanted
                .iter()
                .map(|p| {
                    d.intervals.get(*p).map_or("-".into(), |[lo, hi]| {
                        format!("[{}, {}]", fmt(Some(*lo)), fmt(Some(*hi)))
                    })
                })
                .collect();
            Some((name, cells))
        })
        .collect();
    if rows.is_empty() {
        return String::new();
    }
    let title = format!("{:.0}% interval", PERCENTILE_CONFIDENCE * 100.0);
    let mut s = String::from("\n");
    if md {
        s.push_str(&format!(
            "| {title} | {} |\n|{}\n",
            wanted.join(" | "),
            "---|".repeat(wanted.len() + 1)
        ));
        for (name, cells) in rows {
            s.push_str(&format!("| {name} | {} |\n", cells.join(" | ")));
        }
    } else {
        s.push_str(&format!("{title:<24}"));
        for w in wanted {
            s.push_str(&format!("{w:>22}"));
        }
        s.push('\n');
        for (name, cells) in rows {
            s.push_str(&format!("{name:<24}"));
            for c in cells {
                s.push_str(&format!("{c:>22}"));
            }
            s.push('\n');
        }
    }
    s
}

fn table(summary: &Summary, md: bool) -> String {
    let mut s = String::new();
    let header = [
        "metric", "mean", "std", "min", "p50", "p90", "p95", "p99", "p99.9", "max", "n",
    ];
    if md {
        s.push_str(&format!(
            "| {} |\n|{}\n",
            header.join(" | "),
            "---|".repeat(header.len())
        ));
    } else {
        s.push_str(&format!("{:<24}", header[0]));
        for h in &header[1..] {
            s.push_str(&format!("{h:>10}"));
        }
        s.push('\n');
    }
    for name in [
        "ttft_ms",
        "tpot_ms",
        "icl_ms",
        "itl_ms",
        "e2e_ms",
        "time_to_second_token_ms",
        "tokens_per_chunk",
        "isl_tokens",
        "osl_tokens",
        "prefill_tokens_per_s",
        "client_lag_ms",
        "server_prefill_ms",
        "server_decode_ms",
        "prefix_cache_share",
    ] {
        let Some(d) = summary.metrics.get(name) else { continue };
        let cells: Vec<String> = STATS
            .iter()
            .map(|st| {
                if *st == "count" {
                    d.count.to_string()
                } else {
                    fmt(d.get(st))
                }
            })
            .collect();
        if md {
            s.push_str(&format!("| {name} | {} |\n", cells.join(" | ")));
        } else {
            s.push_str(&format!("{name:<24}"));
            for c in cells {
                s.push_str(&format!("{c:>10}"));
            }
            s.push('\n');
        }
    }
    s
}

fn headline(summary: &Summary) -> Vec<String> {
    let errs: Vec<String> = summary
        .requests
        .errors
        .iter()
        .map(|(k, n)| format!("{k}={n}"))
        .collect();
    vec![
        format!(
            "run {} ({}), tokenizer {}{}",
            summary.scoring.run,
            summary.scoring.status,
            summary.scoring.tokenizer_id,
            summary
                .scoring
                .tokenizer_engine
                .as_deref()
                .map_or(String::new(), |e| format!(", counted by {e}"))
        ),
        format!(
            "requests: {} measured, {} ok, errors {}{}",
            summary.requests.measure,
            summary.requests.ok,
            if errs.is_empty() {
                "none".to_string()
            } else {
                errs.join(" ")
            },
            if summary.requests.retried > 0 {
                format!(
                    ", {} retried once on a fresh connection (the server had closed the reused one)",
                    summary.requests.retried
                )
            } else {
                String::new()
            }
        ),
        format!(
            "window {} s: {} req/s{}{}, {} output tok/s{}, {} total tok/s, {} tok/s/user{}",
            fmt(summary.window_s),
            fmt(summary.requests_per_s),
            rate_interval(summary, "requests_per_s"),
            match summary.items_per_s {
                Some(i) => format!(", {} items/s, {} input tok/s", fmt(Some(i)), fmt(summary.input_tokens_per_s)),
                None => String::new(),
            },
            fmt(summary.output_tokens_per_s),
            rate_interval(summary, "output_tokens_per_s"),
            fmt(summary.total_tokens_per_s),
            fmt(summary.output_tokens_per_s_per_user),
            if summary.token_throughput_complete {
                String::new()
            } else {
                format!(
                    " (token rates INCOMPLETE: {} successful requests have no server usage, so no output length)",
                    summary.requests.osl_unknown
                )
            }
        ),
        if summary.goodput.slo.is_set() {
            format!(
                "goodput: {} req/s ({} of measured) under ttft<={} tpot<={} e2e<={} ms",
                fmt(summary.goodput.requests_per_s),
                summary
                    .goodput
                    .share
                    .map_or("-".into(), |s| format!("{:.1}%", s * 100.0)),
                fmt(summary.goodput.slo.ttft_ms),
                fmt(summary.goodput.slo.tpot_ms),
                fmt(summary.goodput.slo.e2e_ms)
            )
        } else {
            "goodput: no --slo given".into()
        },
        format!(
            "tokens vs server usage: output {} equal (mean diff {}), input {} equal (mean diff {})",
            summary
                .osl_agreement
                .share_equal
                .map_or("-".into(), |s| format!("{:.1}%", s * 100.0)),
            fmt(summary.osl_agreement.mean_diff),
            summary
                .isl_agreement
                .share_equal
                .map_or("-".into(), |s| format!("{:.1}%", s * 100.0)),
            fmt(summary.isl_agreement.mean_diff)
        ),
    ]
    .into_iter()
    .chain((summary.planned_isl.compared > 0 || summary.planned_osl.compared > 0).then(|| {
        format!(
            "planned vs measured: input {} equal to isl_tokens (mean diff {}), output {} equal to max_tokens (mean diff {})",
            share(summary.planned_isl.share_equal),
            fmt(summary.planned_isl.mean_diff),
            share(summary.planned_osl.share_equal),
            fmt(summary.planned_osl.mean_diff)
        )
    }))
    .chain(
        (summary.scoring.definitions.latency_from != LatencyFrom::Sent)
            .then(|| format!("latencies from {}", summary.scoring.definitions.latency_from)),
    )
    .chain(summary.steady.as_ref().map(|st| {
        let p50 = |name: &str| fmt(st.metrics.get(name).and_then(|d| d.p50));
        format!(
            "steady state {}-{} s ({} s, {} requests inside): {} req/s, {} output tok/s, p50 TTFT {} ms, p50 TPOT {} ms",
            fmt(Some(st.start_s)),
            fmt(Some(st.end_s)),
            fmt(Some(st.window_s)),
            st.requests_inside,
            fmt(Some(st.requests_per_s)),
            fmt(st.output_tokens_per_s),
            p50("ttft_ms"),
            p50("tpot_ms"),
        )
    }))
    .chain(summary.constraints.iter().flat_map(constraint_lines))
    .chain(summary.client.as_ref().map(|c| {
        format!(
            "client: {:.0}% of {} cores, timer lag p99 {:.1} ms (max {:.1}), recorder waits {}{}",
            c.cpu_share * 100.0,
            c.cores,
            c.timer_lag_p99_ms,
            c.timer_lag_max_ms,
            c.recorder_waits,
            if c.warnings.is_empty() {
                ": no sign it set the pace (CPU averaged over its cores)".to_string()
            } else {
                format!(": WARNING {}", c.warnings.join("; "))
            }
        )
    }))
    .chain(summary.shards.as_ref().map(|sh| {
        let worst = sh
            .shards
            .iter()
            .filter_map(|s| s.clock_offset_uncertainty_ms)
            .fold(0.0_f64, f64::max);
        let spread = sh.shards.iter().map(|s| s.shift_ms.abs()).fold(0.0_f64, f64::max);
        format!(
            "shards: {} of {} merged ({} requests), clocks within ±{worst:.2} ms, started within {spread:.1} ms{}",
            sh.shards.len(),
            sh.count,
            sh.shards.iter().map(|s| s.requests.to_string()).collect::<Vec<_>>().join(" + "),
            if sh.warnings.is_empty() {
                String::new()
            } else {
                format!(": WARNING {}", sh.warnings.join("; "))
            }
        )
    }))
    .chain(short_run(summary))
    .collect()
}

/// The constraint checks, one line each after a verdict line.
fn constraint_lines(c: &Constraints) -> Vec<String> {
    let mut out = vec![format!(
        "constraints{}: {}{}",
        c.set.as_deref().map_or(String::new(), |s| format!(" ({s})")),
        if c.passed { "PASS" } else { "FAIL" },
        c.min_duration_s
            .map_or(String::new(), |m| format!(" (the run must last at least {m:.0} s)"))
    )];
    for k in &c.checks {
        let early = if k.early_stopping {
            format!("early stopping holds ({} of {} over)", k.over, k.samples)
        } else {
            format!(
                "early stopping needs {} more requests ({} of {} over)",
                k.more_needed, k.over, k.samples
            )
        };
        out.push(format!(
            "  {} p{} {} ms, bound {} ms ({}): {}; {}; {}",
            k.metric.trim_end_matches("_ms"),
            k.percentile,
            fmt(k.value_ms),
            fmt(Some(k.limit_ms)),
            if k.within { "within" } else { "OVER" },
            if k.passed { "pass" } else { "FAIL" },
            early,
            k.estimate_ms
                .map_or("too few requests for an early-stopping estimate".into(), |e| format!(
                    "below {} ms at {:.0}% confidence",
                    fmt(Some(e)),
                    c.confidence * 100.0
                )),
        ));
    }
    out
}

/// ` [low, high]` of a rate's interval, or nothing.
fn rate_interval(summary: &Summary, name: &str) -> String {
    summary.rate_intervals.get(name).map_or(String::new(), |[lo, hi]| {
        format!(" [{}, {}]", fmt(Some(*lo)), fmt(Some(*hi)))
    })
}

/// A warning when the run has too few successful requests for some reported percentiles of
/// TTFT to have a confidence interval: which ones, and how many samples each needs.
fn short_run(summary: &Summary) -> Option<String> {
    use recap_schemas::summary::{PERCENTILES, PERCENTILE_CONFIDENCE};
    let d = summary.metrics.get("ttft_ms").filter(|d| d.count > 0)?;
    let open: Vec<String> = PERCENTILES
        .iter()
        .filter(|(name, _)| !d.intervals.contains_key(*name))
        .map(|(name, p)| {
            format!(
                "{name} needs {}",
                recap_stats::percentile::samples_needed(*p, PERCENTILE_CONFIDENCE)
            )
        })
        .collect();
    (!open.is_empty()).then(|| {
        format!(
            "too few samples for a {:.0}% interval: {} (TTFT has {}); read those percentiles as rough",
            PERCENTILE_CONFIDENCE * 100.0,
            open.join(", "),
            d.count
        )
    })
}

fn share(v: Option<f64>) -> String {
    v.map_or("-".into(), |s| format!("{:.1}%", s * 100.0))
}

#[cfg(test)]
mod tests {

    #[test]
    fn the_client_check_warns_at_its_bounds() {
        let h = recap_schemas::ClientHealth {
            elapsed_s: 10.0,
            cpu_user_s: 15.0,
            cpu_sys_s: 1.0,
            cores: 2,
            timer_lag_samples: 900,
            timer_lag_p50_us: 1_100,
            timer_lag_p99_us: 4_999,
            timer_lag_max_us: 30_000,
        };
        // 16 CPU s over 2 cores x 10 s: 80 %, the bound; lag p99 just under 5 ms.
        let c = client_check(&h, None);
        assert_eq!(c.cpu_share, 0.8);
        assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
        assert!(c.warnings[0].contains("80% of its 2 cores"));
        let lagging = recap_schemas::ClientHealth {
            cpu_user_s: 1.0,
            timer_lag_p99_us: 5_000,
            ..h
        };
        let counts = recap_schemas::manifest::Counts {
            recorder_waits: 3,
            recorder_wait_ns: 2_500_000,
            ..Default::default()
        };
        let c = client_check(&lagging, Some(&counts));
        assert_eq!(c.warnings.len(), 2, "{:?}", c.warnings);
        assert!(c.warnings[0].contains("5.0 ms late at p99 (30.0 ms at most)"));
        assert!(c.warnings[1].contains("2.5 ms in total (3 times)"));
        let calm = recap_schemas::ClientHealth {
            cpu_user_s: 1.0,
            timer_lag_p99_us: 1_200,
            ..h
        };
        assert!(client_check(&calm, None).warnings.is_empty());
    }

    use super::*;

    fn row(id: u64, ok: bool, sent: i64, end: i64, ttft: i64, osl: u32) -> RequestMetrics {
        RequestMetrics {
            request_id: id,
            phase: Some(Phase::Measure),
            ok,
            error_kind: (!ok).then_some(recap_schemas::ErrorKind::Timeout),
            ttft_ns: Some(ttft),
            e2e_ns: Some(end - sent),
            tpot_ns: Some(10_000_000),
            isl_tokens: Some(5),
            osl_tokens: Some(osl),
            tokenizer_output_tokens: osl,
            server_completion_tokens: Some(osl + u32::from(id == 1)),
            sent_ns: Some(sent),
            end_ns: Some(end),
            ..Default::default()
        }
    }

    fn scoring() -> Scoring {
        Scoring {
            run: "r".into(),
            run_id: "id".into(),
            status: recap_schemas::RunStatus::Complete,
            tokenizer_id: "t".into(),
            tokenizer_engine: None,
            definitions: recap_schemas::summary::Definitions::default(),
            isl: recap_schemas::summary::IslMode::Raw,
        }
    }

    #[test]
    fn window_throughput_goodput_and_agreement_by_hand() {
        let rows = vec![
            row(0, true, 0, 1_000_000_000, 100_000_000, 10),
            row(1, true, 500_000_000, 2_000_000_000, 300_000_000, 20),
            row(2, false, 600_000_000, 1_500_000_000, 50_000_000, 0),
        ];
        let s = summarize(SummaryInput {
            scoring: scoring(),
            slo: Slo::parse("ttft=200ms").expect("slo"),
            rows: &rows,
            // The gaps of the measure-phase successful rows 0 and 1, in ms.
            icl_ms: recap_stats::distribution([1e-6, 3e-6, 2e-6]),
            itl_ms: None,
            protocol_events: &[0, 1, 0],
            window: Window::Full,
            constraints: None,
        });
        assert_eq!(s.window_s, Some(2.0));
        assert_eq!(s.requests_per_s, Some(1.0));
        assert_eq!(s.output_tokens_per_s, Some(15.0));
        assert_eq!(s.total_tokens_per_s, Some(20.0));
        assert_eq!(s.goodput.good_requests, 1);
        assert_eq!(s.goodput.share, Some(1.0 / 3.0));
        assert_eq!(s.requests.errors.get(&recap_schemas::ErrorKind::Timeout), Some(&1));
        assert_eq!(s.metrics["ttft_ms"].mean, Some(200.0));
        assert_eq!(s.osl_agreement.share_equal, Some(0.5));
        assert_eq!(s.osl_agreement.max_abs_diff, Some(1));
        assert_eq!(s.output_tokens_per_s_per_user, Some(100.0));
        assert!(s.to_csv().expect("csv").contains("ttft_ms.p50,200\n"));
        assert!(s.to_markdown().contains("| ttft_ms |"));
    }

    #[test]
    fn unknown_output_lengths_fail_a_tpot_slo_and_mark_token_rates_incomplete() {
        // Row 0: a server without usage under --tokens server (OSL and TPOT unknown); row 1: a
        // one-token answer (TPOT undefined, nothing to miss); row 2: a measured TPOT.
        let mut unknown = row(0, true, 0, 1_000_000_000, 1_000_000, 10);
        (unknown.osl_tokens, unknown.tpot_ns) = (None, None);
        let mut one = row(1, true, 0, 1_000_000_000, 1_000_000, 1);
        one.tpot_ns = None;
        let measured = row(2, true, 0, 1_000_000_000, 1_000_000, 10);
        let rows = vec![unknown, one, measured];
        let s = summarize(SummaryInput {
            scoring: scoring(),
            slo: Slo::parse("tpot=1s").expect("slo"),
            rows: &rows,
            icl_ms: Distribution::default(),
            itl_ms: None,
            protocol_events: &[0, 0, 0],
            window: Window::Full,
            constraints: None,
        });
        assert_eq!(s.goodput.good_requests, 2, "the unknown TPOT is not met");
        assert_eq!(s.requests.osl_unknown, 1);
        assert!(!s.token_throughput_complete);
        assert!(s.to_console().contains("INCOMPLETE"), "{}", s.to_console());
    }

    #[test]
    fn by_turn_groups_measured_requests_by_turn_index() {
        let mut rows = vec![
            row(0, true, 0, 1_000_000_000, 100_000_000, 10),
            row(1, true, 0, 1_000_000_000, 300_000_000, 10),
            row(2, false, 0, 1_000_000_000, 50_000_000, 0),
            row(3, true, 0, 1_000_000_000, 20_000_000, 10),
            row(4, true, 0, 1_000_000_000, 999_000_000, 10),
        ];
        for (r, t) in rows.iter_mut().zip([0, 1, 1, 1, 0]) {
            r.turn = Some(t);
        }
        rows[4].phase = Some(Phase::Warmup);
        let s = summarize(SummaryInput {
            scoring: scoring(),
            slo: Slo::default(),
            rows: &rows,
            icl_ms: Distribution::default(),
            itl_ms: None,
            protocol_events: &[0; 5],
            window: Window::Full,
            constraints: None,
        });
        let turns: Vec<(u32, u64, u64)> = s.by_turn.iter().map(|t| (t.turn, t.requests, t.ok)).collect();
        assert_eq!(turns, [(0, 1, 1), (1, 3, 2)], "warmup excluded, failures counted");
        assert_eq!(
            s.by_turn[1].metrics["ttft_ms"].p50,
            Some(160.0),
            "median of 300 and 20 ms"
        );
        assert!(s.to_console().contains("by turn"));
        assert!(s.to_csv().expect("csv").contains("turn1.ttft_ms.count,2\n"));
        let plain: Vec<RequestMetrics> = rows[..1]
            .iter()
            .map(|r| RequestMetrics {
                turn: None,
                ..r.clone()
            })
            .collect();
        let single = summarize(SummaryInput {
            scoring: scoring(),
            slo: Slo::default(),
            rows: &plain,
            icl_ms: Distribution::default(),
            itl_ms: None,
            protocol_events: &[0],
            window: Window::Full,
            constraints: None,
        });
        assert!(single.by_turn.is_empty() && !single.to_console().contains("by turn"));
    }

    #[test]
    fn slo_parsing_errors_are_clear() {
        assert_eq!(Slo::parse("ttft=200ms, e2e=10s").expect("ok").e2e_ms, Some(10_000.0));
        assert!(Slo::parse("ttft").is_err());
        assert!(Slo::parse("foo=1s").expect_err("bad").to_string().contains("foo"));
        assert!(Slo::parse("ttft=fast").is_err());
    }
}
