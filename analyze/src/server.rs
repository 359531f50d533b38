//! The server's own metrics: a run's `scrapes` (what `capture --scrape` read from the
//! server's metrics endpoint) parsed into `server_metrics` rows, one per exposition sample,
//! and the well-known series ([`recap_schemas::server::WELL_KNOWN`]) summarized over the
//! measure window.
//!
//! The Prometheus text parser is Recap's own, for a measured reason: of the crates that
//! exist, `prometheus-parse` reads names as `\w+` (so every `vllm:` and `sglang:` sample is
//! dropped) and splits label values at commas, and `openmetrics-parser` refuses a whole
//! exposition over one sample it finds invalid (a histogram count written as a float, a
//! `_created` line where it expects none); a run must keep every sample it can read and
//! count the lines it cannot. It follows the text format (names with colons, escaped label
//! values, `+Inf`/`-Inf`/`NaN`, timestamps, OpenMetrics' `# EOF` and exemplars), and CI checks
//! it against Python's `prometheus_client` parser (`tests/server_metrics_check.py`).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use arrow_array::builder::{Float64Builder, Int64Builder, StringBuilder};
use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{Array, ArrayRef, RecordBatch};
use recap_schemas::server::{self as srv, Combine, Denominator, MetricType, PREFIX_CACHE_COUNTERS, WELL_KNOWN};
use recap_schemas::summary::{ServerSeries, ServerSummary};

use crate::Result;

/// One exposition sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The name as exposed (`x_bucket`, `vllm:num_requests_running`).
    pub name: String,
    /// Labels in the order written, values unescaped.
    pub labels: Vec<(String, String)>,
    /// The value.
    pub value: f64,
    /// Its family's type.
    pub kind: MetricType,
    /// Its own timestamp (ms since the epoch), if written.
    pub timestamp_ms: Option<i64>,
}

/// One exposition, parsed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Exposition {
    /// The samples, in order.
    pub samples: Vec<Sample>,
    /// Lines that are neither a comment nor a readable sample.
    pub unparsed: u64,
}

fn is_name_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':'
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// The type of the family `name` belongs to: its own `# TYPE`, else that of a histogram
/// (`_bucket`, `_sum`, `_count`) or summary (`_sum`, `_count`) it is a part of; otherwise
/// untyped. As the text format (and Prometheus' own client parser) has it, a counter's
/// `# TYPE` names its samples exactly (`x_total`), so `x_total` under `# TYPE x counter`
/// stays untyped.
fn family_type(name: &str, types: &HashMap<String, MetricType>) -> MetricType {
    if let Some(t) = types.get(name) {
        return *t;
    }
    let part_of = |suffix: &str, kinds: &[MetricType]| {
        let t = types.get(name.strip_suffix(suffix)?)?;
        kinds.contains(t).then_some(*t)
    };
    part_of("_bucket", &[MetricType::Histogram])
        .or_else(|| part_of("_sum", &[MetricType::Histogram, MetricType::Summary]))
        .or_else(|| part_of("_count", &[MetricType::Histogram, MetricType::Summary]))
        .unwrap_or(MetricType::Untyped)
}

/// Parses a Prometheus text exposition (sample timestamps in ms).
pub fn parse(text: &str) -> Exposition {
    parse_as(text, false)
}

/// Parses an exposition; `openmetrics` when its `Content-Type` says so (timestamps are then
/// seconds, as OpenMetrics writes them).
pub fn parse_as(text: &str, openmetrics: bool) -> Exposition {
    let mut types: HashMap<String, MetricType> = HashMap::new();
    let mut out = Exposition::default();
    for line in text.lines() {
        let l = line.trim();
        if l.is_empty() {
            continue;
        }
        if let Some(rest) = l.strip_prefix('#') {
            let rest = rest.trim_start();
            if rest == "EOF" {
                break;
            }
            if let Some(decl) = rest.strip_prefix("TYPE") {
                let mut it = decl.split_whitespace();
                if let (Some(name), Some(kind)) = (it.next(), it.next()) {
                    let kind = match kind {
                        "counter" => MetricType::Counter,
                        "gauge" => MetricType::Gauge,
                        "histogram" | "gaugehistogram" => MetricType::Histogram,
                        "summary" => MetricType::Summary,
                        _ => MetricType::Untyped,
                    };
                    types.insert(name.to_string(), kind);
                }
            }
            continue;
        }
        match sample(l, openmetrics) {
            Some((name, labels, value, timestamp_ms)) => {
                let kind = family_type(&name, &types);
                out.samples.push(Sample {
                    name,
                    labels,
                    value,
                    kind,
                    timestamp_ms,
                });
            }
            None => out.unparsed += 1,
        }
    }
    out
}

type Parsed = (String, Vec<(String, String)>, f64, Option<i64>);

/// `name{labels} value [timestamp] [# exemplar]`.
fn sample(line: &str, openmetrics: bool) -> Option<Parsed> {
    let mut chars = line.char_indices().peekable();
    let (_, first) = chars.next()?;
    if !is_name_start(first) {
        return None;
    }
    let end = line.find(|c: char| !is_name_char(c)).unwrap_or(line.len());
    let name = line[..end].to_string();
    let mut rest = line[end..].trim_start();
    let mut labels = Vec::new();
    if let Some(after) = rest.strip_prefix('{') {
        rest = parse_labels(after, &mut labels)?;
    }
    let mut fields = rest.split_whitespace();
    let value = parse_value(fields.next()?)?;
    let timestamp_ms = match fields.next() {
        None => None,
        Some(f) if f.starts_with('#') => None,
        // Prometheus text writes milliseconds, OpenMetrics seconds (with or without a fraction).
        Some(f) => match (openmetrics, f.parse::<i64>()) {
            (false, Ok(ms)) => Some(ms),
            _ => Some((f.parse::<f64>().ok()? * 1000.0).round() as i64),
        },
    };
    Some((name, labels, value, timestamp_ms))
}

/// Labels up to the closing `}`; returns what follows it.
fn parse_labels<'a>(mut s: &'a str, out: &mut Vec<(String, String)>) -> Option<&'a str> {
    loop {
        s = s.trim_start();
        if let Some(rest) = s.strip_prefix('}') {
            return Some(rest);
        }
        let end = s.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))?;
        if end == 0 {
            return None;
        }
        let key = s[..end].to_string();
        s = s[end..]
            .trim_start()
            .strip_prefix('=')?
            .trim_start()
            .strip_prefix('"')?;
        let mut value = String::new();
        let mut it = s.char_indices();
        let close = loop {
            let (i, c) = it.next()?;
            match c {
                '"' => break i,
                '\\' => match it.next()?.1 {
                    'n' => value.push('\n'),
                    '\\' => value.push('\\'),
                    '"' => value.push('"'),
                    other => {
                        value.push('\\');
                        value.push(other);
                    }
                },
                c => value.push(c),
            }
        };
        out.push((key, value));
        s = s[close + 1..].trim_start();
        if let Some(rest) = s.strip_prefix(',') {
            s = rest;
        } else if !s.starts_with('}') {
            return None;
        }
    }
}

/// A value as Go's `ParseFloat` reads it (`+Inf`, `-Inf`, `NaN`, exponents).
fn parse_value(v: &str) -> Option<f64> {
    v.parse::<f64>().ok()
}

/// Labels as the JSON object `server_metrics.labels_json` stores.
fn labels_json(labels: &[(String, String)]) -> String {
    let map: serde_json::Map<String, serde_json::Value> = labels
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
        .collect();
    serde_json::Value::Object(map).to_string()
}

/// One scrape of the run: where, when, and what came back.
#[derive(Debug, Clone)]
pub struct Scrape {
    /// Endpoint.
    pub target: String,
    /// Sent (ns since run start).
    pub t_ns: i64,
    /// Why it failed, if it did.
    pub error: Option<String>,
    /// The parsed body (empty for a failed scrape).
    pub exposition: Exposition,
}

/// Reads and parses every scrape of the run's `scrapes` segments (`RunFolder::parts`), in time order.
pub fn read(parts: &[crate::store::parquet::Part]) -> Result<Vec<Scrape>> {
    use recap_schemas::scrapes as s;
    let mut out = Vec::new();
    for part in parts {
        let columns = [s::TARGET, s::T_NS, s::BODY, s::ERROR, s::CONTENT_TYPE];
        for b in crate::store::parquet::read_part(part, &columns)? {
            let col = |n: &str| b.column_by_name(n).cloned();
            let (Some(target), Some(t), Some(body), Some(error), Some(ctype)) = (
                col(s::TARGET),
                col(s::T_NS),
                col(s::BODY),
                col(s::ERROR),
                col(s::CONTENT_TYPE),
            ) else {
                continue;
            };
            let (target, body, error, ctype) = (
                target.as_string::<i32>(),
                body.as_string::<i32>(),
                error.as_string::<i32>(),
                ctype.as_string::<i32>(),
            );
            let t = t.as_primitive::<Int64Type>();
            for i in 0..b.num_rows() {
                out.push(Scrape {
                    target: target.value(i).to_string(),
                    t_ns: t.value(i),
                    error: error.is_valid(i).then(|| error.value(i).to_string()),
                    exposition: if body.is_valid(i) && error.is_null(i) {
                        let openmetrics = ctype.is_valid(i) && ctype.value(i).contains("openmetrics");
                        parse_as(body.value(i), openmetrics)
                    } else {
                        Exposition::default()
                    },
                });
            }
        }
    }
    out.sort_by_key(|s| s.t_ns);
    Ok(out)
}

/// Writes every sample of `scrapes` to `path` (`server_metrics.parquet`).
pub fn write(path: &Path, scrapes: &[Scrape]) -> Result<()> {
    let (mut target, mut t, mut name, mut labels, mut value, mut kind, mut ts) = (
        StringBuilder::new(),
        Int64Builder::new(),
        StringBuilder::new(),
        StringBuilder::new(),
        Float64Builder::new(),
        StringBuilder::new(),
        Int64Builder::new(),
    );
    for s in scrapes {
        for x in &s.exposition.samples {
            target.append_value(&s.target);
            t.append_value(s.t_ns);
            name.append_value(&x.name);
            labels.append_value(labels_json(&x.labels));
            value.append_value(x.value);
            kind.append_value(x.kind.as_str());
            ts.append_option(x.timestamp_ms);
        }
    }
    let cols: Vec<ArrayRef> = vec![
        Arc::new(target.finish()),
        Arc::new(t.finish()),
        Arc::new(name.finish()),
        Arc::new(labels.finish()),
        Arc::new(value.finish()),
        Arc::new(kind.finish()),
        Arc::new(ts.finish()),
    ];
    let batch = RecordBatch::try_new(srv::schema(), cols)
        .map_err(|e| crate::Error::Internal(format!("building {}: {e}", path.display())))?;
    crate::store::parquet::write_parquet(path, &batch, &[])
}

/// The value of `name` in one scrape, its label sets combined; `None` when absent.
fn scrape_value(s: &Scrape, name: &str, combine: Combine) -> Option<f64> {
    let v: Vec<f64> = s
        .exposition
        .samples
        .iter()
        .filter(|x| x.name == name)
        .map(|x| x.value)
        .collect();
    combine.apply(&v)
}

/// The well-known series over the scrapes sent within `[start_ns, end_ns]` (the measure
/// window): each one's values per scrape round (label sets, then targets, combined by the
/// series' rule), and the prefix-cache hit share from the growth of the hit and query
/// counters over the window's scrapes of each target (resets counted as Prometheus does).
pub fn summarize(scrapes: &[Scrape], start_ns: i64, end_ns: i64) -> ServerSummary {
    let inside: Vec<&Scrape> = scrapes
        .iter()
        .filter(|s| s.t_ns >= start_ns && s.t_ns <= end_ns)
        .collect();
    let mut targets: Vec<String> = scrapes.iter().map(|s| s.target.clone()).collect();
    targets.sort();
    targets.dedup();
    let mut series = BTreeMap::new();
    for wk in WELL_KNOWN {
        let found = wk.names.iter().find_map(|name| {
            let per_scrape: Vec<(&str, i64, f64)> = inside
                .iter()
                .filter_map(|s| Some((s.target.as_str(), s.t_ns, scrape_value(s, name, wk.combine)?)))
                .collect();
            let v: Vec<f64> = srv::rounds(&per_scrape, wk.combine).into_iter().map(|r| r.1).collect();
            (!v.is_empty()).then_some((*name, v))
        });
        if let Some((name, v)) = found {
            series.insert(
                wk.key.to_string(),
                ServerSeries {
                    metric: name.to_string(),
                    samples: v.len() as u64,
                    mean: Some(v.iter().sum::<f64>() / v.len() as f64),
                    min: v.iter().copied().reduce(f64::min),
                    max: v.iter().copied().reduce(f64::max),
                },
            );
        }
    }
    let prefix_cache_hit_share = PREFIX_CACHE_COUNTERS.iter().find_map(|pair| {
        let (mut dh, mut dother, mut found) = (0.0, 0.0, false);
        for t in &targets {
            let of = |name: &str| -> Vec<f64> {
                inside
                    .iter()
                    .filter(|s| &s.target == t)
                    .filter_map(|s| scrape_value(s, name, Combine::Sum))
                    .collect()
            };
            let (h, o) = (of(pair.hits), of(pair.other));
            if !h.is_empty() && !o.is_empty() {
                found = true;
                dh += srv::increase(&h);
                dother += srv::increase(&o);
            }
        }
        let looked_up = match pair.other_is {
            Denominator::Queries => dother,
            Denominator::Misses => dh + dother,
        };
        (found && looked_up > 0.0).then(|| (dh / looked_up).clamp(0.0, 1.0))
    });
    ServerSummary {
        targets,
        scrapes: inside.len() as u64,
        failed_scrapes: inside.iter().filter(|s| s.error.is_some()).count() as u64,
        unparsed_lines: inside.iter().map(|s| s.exposition.unparsed).sum(),
        series,
        prefix_cache_hit_share,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="m"} 3.0
vllm:num_requests_running{engine="1",model_name="m"} 2.0
# TYPE vllm:prefix_cache_queries_total counter
vllm:prefix_cache_queries_total{model_name="m"} 100.0
vllm:prefix_cache_queries_created{model_name="m"} 1.7e9
# TYPE lat histogram
lat_bucket{le="0.5"} 1
lat_bucket{le="+Inf"} 3
lat_sum 2.5
lat_count 3
msdos_file_access_time_seconds{path="C:\\DIR\\FILE.TXT",error="Cannot find file:\n\"FILE.TXT\""} 1.458255915e9
weird{a="x,y=z}"} -Inf 1395066363000
nan_value NaN
this is not a sample
"#;

    #[test]
    fn reads_names_with_colons_escapes_special_values_and_types() {
        let e = parse(TEXT);
        assert_eq!(e.unparsed, 1, "{e:?}");
        assert_eq!(e.samples.len(), 11);
        let s = &e.samples[0];
        assert_eq!(s.name, "vllm:num_requests_running");
        assert_eq!(s.kind, MetricType::Gauge);
        assert_eq!(
            s.labels,
            [("engine".into(), "0".into()), ("model_name".into(), "m".into())]
        );
        assert_eq!(e.samples[2].kind, MetricType::Counter);
        assert_eq!(
            e.samples[3].kind,
            MetricType::Untyped,
            "`_created` is a family of its own"
        );
        assert_eq!(e.samples[5].value, 3.0);
        assert_eq!(e.samples[5].labels[0].1, "+Inf");
        assert_eq!(e.samples[6].kind, MetricType::Histogram);
        let ms = &e.samples[8];
        assert_eq!(ms.labels[0].1, r"C:\DIR\FILE.TXT");
        assert_eq!(ms.labels[1].1, "Cannot find file:\n\"FILE.TXT\"");
        assert_eq!(ms.kind, MetricType::Untyped);
        let w = &e.samples[9];
        assert_eq!(w.labels, [("a".into(), "x,y=z}".into())]);
        assert_eq!((w.value, w.timestamp_ms), (f64::NEG_INFINITY, Some(1395066363000)));
        assert!(e.samples[10].value.is_nan());
    }

    #[test]
    fn openmetrics_timestamps_are_seconds() {
        assert_eq!(
            parse_as("a 1 1520879607\n", true).samples[0].timestamp_ms,
            Some(1_520_879_607_000)
        );
        assert_eq!(
            parse_as("a 1 1520879607.5\n", true).samples[0].timestamp_ms,
            Some(1_520_879_607_500)
        );
        assert_eq!(
            parse("a 1 1520879607000\n").samples[0].timestamp_ms,
            Some(1_520_879_607_000)
        );
    }

    #[test]
    fn stops_at_eof_and_skips_exemplars() {
        let e = parse("# TYPE a_total counter\na_total 2 # {trace_id=\"x\"} 1\n# EOF\nb 1\n");
        assert_eq!(e.samples.len(), 1);
        assert_eq!((e.samples[0].value, e.samples[0].timestamp_ms), (2.0, None));
    }

    #[test]
    fn the_window_keeps_its_scrapes_and_counters_give_the_hit_share() {
        let scrape = |t: i64, running: f64, hits: f64, queries: f64| Scrape {
            target: "http://h/metrics".into(),
            t_ns: t,
            error: None,
            exposition: parse(&format!(
                "vllm:num_requests_running{{e=\"0\"}} {running}\nvllm:num_requests_running{{e=\"1\"}} 1\n\
                 vllm:prefix_cache_hits_total {hits}\nvllm:prefix_cache_queries_total {queries}\n"
            )),
        };
        let s = [
            scrape(0, 9.0, 0.0, 0.0),
            scrape(10, 1.0, 10.0, 100.0),
            scrape(20, 3.0, 40.0, 200.0),
            scrape(30, 9.0, 90.0, 300.0),
        ];
        let sum = summarize(&s, 5, 25);
        assert_eq!(sum.scrapes, 2);
        let r = &sum.series["requests_running"];
        // Two engines added up per scrape: 2 and 4.
        assert_eq!((r.samples, r.mean, r.min, r.max), (2, Some(3.0), Some(2.0), Some(4.0)));
        // (40 - 10) / (200 - 100)
        assert_eq!(sum.prefix_cache_hit_share, Some(0.3));
    }

    #[test]
    fn llama_cpp_counts_misses_beside_hits() {
        // llama.cpp's prompt_tokens_total excludes cached tokens: the share is hits over both.
        let scrape = |t: i64, cached: f64, prompt: f64| Scrape {
            target: "http://h/metrics".into(),
            t_ns: t,
            error: None,
            exposition: parse(&format!(
                "# TYPE llamacpp:prompt_tokens_total counter\nllamacpp:prompt_tokens_total {prompt}\n\
                 # TYPE llamacpp:prompt_tokens_cached_total counter\nllamacpp:prompt_tokens_cached_total {cached}\n"
            )),
        };
        let s = [scrape(10, 100.0, 50.0), scrape(20, 160.0, 90.0)];
        // (160 - 100) / ((160 - 100) + (90 - 50))
        assert_eq!(summarize(&s, 0, 30).prefix_cache_hit_share, Some(0.6));
    }
}
