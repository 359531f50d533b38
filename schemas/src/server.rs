//! The server's own metrics, as `analyze` reads them from a run's `scrapes`: the
//! `server_metrics` table (one row per exposition sample) and the well-known series the
//! summary reports, with the metric names each server exposes them under.

use std::sync::{Arc, OnceLock};

use arrow_schema::{DataType, Field, Schema, SchemaRef};

use serde::{Deserialize, Serialize};

use crate::enums::string_enum;

/// File name of the parsed samples, `<run>/analysis/server_metrics.parquet`.
pub const SERVER_METRICS_FILE: &str = "server_metrics.parquet";

/// `utf8`: the endpoint scraped (the `scrapes.target`).
pub const TARGET: &str = "target";
/// `i64` ns since run start: when the scrape was sent (capture's clock).
pub const T_NS: &str = "t_ns";
/// `utf8`: the sample's name as exposed (`vllm:num_requests_running`, `x_bucket`).
pub const NAME: &str = "name";
/// `utf8`: the sample's labels as a JSON object (`{"model_name":"m","le":"0.5"}`).
pub const LABELS_JSON: &str = "labels_json";
/// `f64`: the value (`+Inf`, `-Inf` and `NaN` kept).
pub const VALUE: &str = "value";
/// `utf8`: [`MetricType`] of the sample's family (`untyped` when no `# TYPE` names it).
pub const TYPE: &str = "type";
/// `i64` ms since the Unix epoch: the sample's own timestamp, when the exposition gave one.
pub const TIMESTAMP_MS: &str = "timestamp_ms";

/// The Arrow schema of `server_metrics.parquet`.
pub fn schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            Arc::new(Schema::new(vec![
                Field::new(TARGET, DataType::Utf8, false),
                Field::new(T_NS, DataType::Int64, false),
                Field::new(NAME, DataType::Utf8, false),
                Field::new(LABELS_JSON, DataType::Utf8, false),
                Field::new(VALUE, DataType::Float64, false),
                Field::new(TYPE, DataType::Utf8, false),
                Field::new(TIMESTAMP_MS, DataType::Int64, true),
            ]))
        })
        .clone()
}

string_enum! {
    /// A metric family's type, as `# TYPE` declares it.
    MetricType {
        /// Only goes up (resets on restart).
        Counter => "counter",
        /// Any value.
        Gauge => "gauge",
        /// `_bucket{le}`, `_sum`, `_count` samples.
        Histogram => "histogram",
        /// `{quantile}`, `_sum`, `_count` samples.
        Summary => "summary",
        /// Declared `untyped` or `unknown`, or not declared.
        Untyped => "untyped",
    }
}

/// How one scrape's samples of a well-known series (several label sets: engines, GPUs) make
/// one value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Combine {
    /// Added up (requests running across engines, power across GPUs).
    Sum,
    /// Averaged (cache usage, utilization).
    Mean,
}

impl Combine {
    /// One scrape's value from its label sets' finite values; `None` when there are none.
    pub fn apply(self, values: &[f64]) -> Option<f64> {
        let v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        let sum: f64 = v.iter().sum();
        Some(match self {
            Combine::Sum => sum,
            Combine::Mean => sum / v.len() as f64,
        })
    }
}

/// One series over a run scraped from several targets (replicas, GPU nodes): each target's
/// `k`-th scrape makes round `k` (every target is read on the same period from the run's
/// start), and a round's values (one per target, label sets already combined) are combined by
/// `combine`. Input: (target, scrape time, value); output: (the round's first time, value),
/// in time order.
pub fn rounds(points: &[(&str, i64, f64)], combine: Combine) -> Vec<(i64, f64)> {
    let mut by_target: std::collections::BTreeMap<&str, Vec<(i64, f64)>> = std::collections::BTreeMap::new();
    for (target, t, v) in points {
        by_target.entry(target).or_default().push((*t, *v));
    }
    let mut rounds: Vec<(i64, Vec<f64>)> = Vec::new();
    for series in by_target.values_mut() {
        series.sort_by_key(|p| p.0);
        for (k, (t, v)) in series.iter().enumerate() {
            match rounds.get_mut(k) {
                Some((first, vs)) => {
                    *first = (*first).min(*t);
                    vs.push(*v);
                }
                None => rounds.push((*t, vec![*v])),
            }
        }
    }
    rounds
        .into_iter()
        .filter_map(|(t, vs)| Some((t, combine.apply(&vs)?)))
        .collect()
}

/// How much a counter grew over `values` (in time order), as Prometheus' `increase` counts it:
/// a drop is a reset (a server restart), after which the counter starts again from zero.
pub fn increase(values: &[f64]) -> f64 {
    values
        .windows(2)
        .map(|w| if w[1] >= w[0] { w[1] - w[0] } else { w[1] })
        .sum()
}

/// A series the summary reports, by the names servers expose it under (first found wins).
#[derive(Debug, Clone, Copy)]
pub struct WellKnown {
    /// Its key in `summary.json`'s `server.series`.
    pub key: &'static str,
    /// What it is, with its unit.
    pub description: &'static str,
    /// Exposed names: vLLM (v1, then v0), SGLang, llama.cpp, TGI, DCGM.
    pub names: &'static [&'static str],
    /// How a scrape's label sets combine.
    pub combine: Combine,
}

/// The gauges the summary reports over the measure window.
pub const WELL_KNOWN: &[WellKnown] = &[
    WellKnown {
        key: "kv_cache_usage",
        description: "KV-cache usage (share, 0 to 1)",
        names: &[
            "vllm:kv_cache_usage_perc",
            "vllm:gpu_cache_usage_perc",
            "sglang:token_usage",
            "llamacpp:kv_cache_usage_ratio",
        ],
        combine: Combine::Mean,
    },
    WellKnown {
        key: "requests_running",
        description: "requests running (in the batch)",
        names: &[
            "vllm:num_requests_running",
            "sglang:num_running_reqs",
            "llamacpp:requests_processing",
            "tgi_batch_current_size",
        ],
        combine: Combine::Sum,
    },
    WellKnown {
        key: "requests_waiting",
        description: "requests waiting (queued)",
        names: &[
            "vllm:num_requests_waiting",
            "sglang:num_queue_reqs",
            "llamacpp:requests_deferred",
            "tgi_queue_size",
        ],
        combine: Combine::Sum,
    },
    WellKnown {
        key: "prefix_cache_hit_rate",
        description: "prefix-cache hit rate as the server reports it (share)",
        names: &["sglang:cache_hit_rate"],
        combine: Combine::Mean,
    },
    WellKnown {
        key: "gpu_utilization_pct",
        description: "GPU utilization (%, DCGM)",
        names: &["DCGM_FI_DEV_GPU_UTIL"],
        combine: Combine::Mean,
    },
    WellKnown {
        key: "gpu_power_w",
        description: "GPU power (W, all GPUs, DCGM)",
        names: &["DCGM_FI_DEV_POWER_USAGE"],
        combine: Combine::Sum,
    },
];

/// What the second counter of a [`HitCounters`] pair counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denominator {
    /// Every prompt token looked up, hits included (vLLM).
    Queries,
    /// Prompt tokens not served from the cache (llama.cpp's `prompt_tokens_total`).
    Misses,
}

/// Two counters whose growth over the window gives the prefix-cache hit share of prompt
/// tokens: `Δhits / Δqueries`, or `Δhits / (Δhits + Δmisses)`.
#[derive(Debug, Clone, Copy)]
pub struct HitCounters {
    /// Prompt tokens served from the cache.
    pub hits: &'static str,
    /// The other counter.
    pub other: &'static str,
    /// What it counts.
    pub other_is: Denominator,
}

/// The hit counters servers expose, first found wins: vLLM v1, vLLM v0, llama.cpp.
pub const PREFIX_CACHE_COUNTERS: &[HitCounters] = &[
    HitCounters {
        hits: "vllm:prefix_cache_hits_total",
        other: "vllm:prefix_cache_queries_total",
        other_is: Denominator::Queries,
    },
    HitCounters {
        hits: "vllm:gpu_prefix_cache_hits_total",
        other: "vllm:gpu_prefix_cache_queries_total",
        other_is: Denominator::Queries,
    },
    HitCounters {
        hits: "llamacpp:prompt_tokens_cached_total",
        other: "llamacpp:prompt_tokens_total",
        other_is: Denominator::Misses,
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_combine_targets_and_increase_survives_a_reset() {
        // Two replicas, three scrapes each, slightly apart: running requests add up per round.
        let pts = [
            ("a", 0, 3.0),
            ("b", 2, 4.0),
            ("a", 100, 5.0),
            ("b", 101, 1.0),
            ("a", 200, 2.0),
            ("b", 203, 2.0),
        ];
        assert_eq!(rounds(&pts, Combine::Sum), [(0, 7.0), (100, 6.0), (200, 4.0)]);
        assert_eq!(rounds(&pts, Combine::Mean), [(0, 3.5), (100, 3.0), (200, 2.0)]);
        // 10 -> 30 is 20, a restart to 5 counts 5, then 5 -> 9 is 4.
        assert_eq!(increase(&[10.0, 30.0, 5.0, 9.0]), 29.0);
        assert_eq!(increase(&[7.0]), 0.0);
    }

    #[test]
    fn well_known_keys_are_distinct() {
        let mut keys: Vec<&str> = WELL_KNOWN.iter().map(|w| w.key).collect();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), WELL_KNOWN.len());
    }
}
