//! `plot --html`: one self-contained page per run, sweep or comparison: the summary tables
//! with their intervals, the definitions the numbers were computed under, the charts as
//! inline SVG, the run's facts and the commands that reproduce it. No script, no external
//! font or stylesheet: it opens offline, mails as one file and prints.
//!
//! Every number taken from an analysis output carries `data-key` (its path in that JSON file,
//! `metrics.ttft_ms.p99`) and `data-value` (the value as written there), so a test or a script
//! can check the page against `summary.json` without parsing the formatted text.

use std::fmt::Write as _;

use recap_schemas::compare::Comparison;
use recap_schemas::summary::{Distribution, Summary, PERCENTILES};
use recap_schemas::sweep::Sweep;

use crate::chart::Chart;
use crate::data::RunData;
use crate::Result;

/// Escapes text for HTML element content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A number as the page shows it: four significant digits at most, integers as integers,
/// tiny values (p-values) in scientific notation.
pub fn num(v: f64) -> String {
    let a = v.abs();
    if a != 0.0 && a < 1e-3 {
        format!("{v:.2e}")
    } else if (v.fract() == 0.0 && a < 1e15) || a >= 1000.0 {
        format!("{v:.0}")
    } else if a >= 100.0 {
        format!("{v:.1}")
    } else if a >= 10.0 {
        format!("{v:.2}")
    } else if a >= 1.0 {
        format!("{v:.3}")
    } else {
        format!("{v:.4}")
    }
}

/// How a keyed number is shown: as [`num`] writes it, or a share as a signed percentage
/// (`data-scale` then tells a checker the page shows 100x the value).
#[derive(Debug, Clone, Copy)]
enum Shown {
    Number,
    Percent,
}

/// The attributes (` data-key=".." data-value=".."`, and `data-scale` for a percentage) and
/// the text of `v`, the value at `key` of the page's source file.
fn keyed(key: &str, v: f64, shown: Shown) -> (String, String) {
    match shown {
        Shown::Number => (format!(" data-key=\"{}\" data-value=\"{v}\"", esc(key)), num(v)),
        Shown::Percent => (
            format!(" data-key=\"{}\" data-value=\"{v}\" data-scale=\"100\"", esc(key)),
            format!("{:+.2}%", v * 100.0),
        ),
    }
}

/// The cell of a value that is absent.
const NA_CELL: &str = "<td class=\"n na\">&ndash;</td>";

fn keyed_cell(key: &str, v: Option<f64>, shown: Shown) -> String {
    v.map_or_else(
        || NA_CELL.to_string(),
        |v| {
            let (attrs, text) = keyed(key, v, shown);
            format!("<td class=\"n\"{attrs}>{text}</td>")
        },
    )
}

/// A table cell holding one value of an analysis file, keyed by its JSON path.
fn cell(key: &str, v: Option<f64>) -> String {
    keyed_cell(key, v, Shown::Number)
}

/// A share shown as a percentage.
fn percent_cell(key: &str, v: Option<f64>) -> String {
    keyed_cell(key, v, Shown::Percent)
}

/// A table cell holding a value of another file than the page's source (unkeyed).
fn value_cell(v: Option<f64>) -> String {
    v.map_or_else(|| NA_CELL.to_string(), |v| format!("<td class=\"n\">{}</td>", num(v)))
}

/// `[low, high]` with each bound keyed by its own path (`low`, `high`; `.0`, `.1`).
fn interval(kl: &str, kh: &str, l: Option<f64>, h: Option<f64>, shown: Shown) -> String {
    match (l, h) {
        (Some(l), Some(h)) => {
            let ((al, tl), (ah, th)) = (keyed(kl, l, shown), keyed(kh, h, shown));
            format!("<td class=\"n\">[<span{al}>{tl}</span>, <span{ah}>{th}</span>]</td>")
        }
        _ => NA_CELL.to_string(),
    }
}

/// An interval stored as a `[low, high]` array at `key`.
fn interval_cell(key: &str, iv: Option<&[f64; 2]>) -> String {
    interval(
        &format!("{key}.0"),
        &format!("{key}.1"),
        iv.map(|i| i[0]),
        iv.map(|i| i[1]),
        Shown::Number,
    )
}

const STYLE: &str = r#"
:root { color-scheme: light; --ink: #1d2430; --muted: #5b6472; --rule: #d6dae1; --band: #f4f6f9; --accent: #0072B2; }
* { box-sizing: border-box; }
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color: var(--ink); margin: 0 auto; max-width: 1180px; padding: 24px 28px 48px; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 20px; margin: 32px 0 10px; padding-bottom: 4px; border-bottom: 2px solid var(--rule); }
h3 { font-size: 16px; margin: 18px 0 6px; }
p.sub { color: var(--muted); margin: 0 0 12px; }
nav { display: flex; flex-wrap: wrap; gap: 14px; font-size: 14px; margin: 8px 0 0; }
nav a { color: var(--accent); text-decoration: none; }
table { border-collapse: collapse; margin: 6px 0 14px; font-size: 14px; display: block; max-width: 100%; overflow-x: auto; }
th, td { border-bottom: 1px solid var(--rule); padding: 4px 10px; text-align: left; vertical-align: top; }
th { background: var(--band); font-weight: 600; }
td.n { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.na { color: var(--muted); }
th[scope=row] { white-space: nowrap; }
.verdict-better { color: #007a5a; font-weight: 600; }
.verdict-worse { color: #b34700; font-weight: 600; }
.pass { color: #007a5a; font-weight: 700; }
.fail { color: #b34700; font-weight: 700; }
.warn { background: #fff4e0; border-left: 4px solid #e69f00; padding: 6px 10px; margin: 8px 0; }
figure.chart { margin: 14px 0 22px; break-inside: avoid; page-break-inside: avoid; }
figure.chart svg { display: block; width: 100%; height: auto; border: 1px solid var(--rule); }
figcaption { color: var(--muted); font-size: 13px; margin-top: 4px; }
pre { background: var(--band); padding: 10px 12px; overflow-x: auto; font-size: 13px; white-space: pre-wrap; word-break: break-all; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 3px 16px; font-size: 14px; }
dl.facts dt { color: var(--muted); }
dl.facts dd { margin: 0; word-break: break-all; }
footer { margin-top: 36px; color: var(--muted); font-size: 12px; }
@media print { body { max-width: none; padding: 0; font-size: 11px; } nav { display: none; } h2 { break-after: avoid; } table { break-inside: avoid; } }
"#;

/// The page around `body`.
fn page(title: &str, subtitle: &str, sections: &[(&str, &str)], body: &str) -> String {
    let nav: String = sections
        .iter()
        .map(|(id, name)| format!("<a href=\"#{id}\">{}</a>", esc(name)))
        .collect();
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>{t}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<header><h1>{t}</h1><p class=\"sub\">{s}</p><nav>{nav}</nav></header>\n{body}\n<footer>Written by Recap plot {v}. Self-contained: no script, font or stylesheet is loaded from anywhere.</footer>\n</body>\n</html>\n",
        t = esc(title),
        s = subtitle,
        v = env!("CARGO_PKG_VERSION"),
    )
}

/// A chart as an inline SVG figure that scales with the page.
fn figure(chart: &Chart<'_>, caption: &str) -> Result<String> {
    let svg = chart.svg()?;
    let (w, h) = chart.size();
    // plotters writes width/height only; a viewBox lets the browser scale it to the column.
    let head = format!("<svg width=\"{w}\" height=\"{h}\"");
    let svg = match svg.find(&head) {
        Some(at) if !svg[..at + 200.min(svg.len() - at)].contains("viewBox") => format!(
            "{}<svg role=\"img\" aria-label=\"{}\" viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\"{}",
            &svg[..at],
            esc(caption),
            &svg[at + head.len()..]
        ),
        _ => svg.replacen(
            "<svg ",
            &format!("<svg role=\"img\" aria-label=\"{}\" ", esc(caption)),
            1,
        ),
    };
    // Drop the XML declaration: inline SVG is HTML content.
    let svg = match svg.strip_prefix("<?xml") {
        Some(rest) => rest
            .split_once("?>")
            .map_or(svg.clone(), |(_, r)| r.trim_start().to_string()),
        None => svg,
    };
    Ok(format!(
        "<figure class=\"chart\" id=\"chart-{}\">\n{svg}\n<figcaption>{}</figcaption>\n</figure>\n",
        chart.file_stem(),
        esc(caption)
    ))
}

/// The shell-quoted form of one argument.
fn sh(arg: &str) -> String {
    if !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=,@%+".contains(c))
    {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

/// Rows of the distributions table: each metric's count, mean, percentiles and p99 interval.
fn distributions(prefix: &str, metrics: &std::collections::BTreeMap<String, Distribution>) -> String {
    let mut s = String::from("<table class=\"dist\"><thead><tr><th>metric</th><th>count</th><th>mean</th>");
    for (p, _) in PERCENTILES {
        let _ = write!(s, "<th>{}</th>", p.replace('_', "."));
    }
    s.push_str("<th>p99 95% interval</th><th>max</th></tr></thead><tbody>\n");
    // Latencies first, in the order people read them, then the rest alphabetically.
    let first = [
        "ttft_ms",
        "tpot_ms",
        "itl_ms",
        "icl_ms",
        "e2e_ms",
        "isl_tokens",
        "osl_tokens",
    ];
    let mut names: Vec<&String> = metrics.keys().collect();
    names.sort_by_key(|n| (first.iter().position(|f| f == n).unwrap_or(first.len()), n.to_string()));
    for name in names {
        let d = &metrics[name];
        let k = |f: &str| format!("{prefix}metrics.{name}.{f}");
        let _ = write!(
            s,
            "<tr><th scope=\"row\">{}</th><td class=\"n\" data-key=\"{}\" data-value=\"{}\">{}</td>{}",
            esc(name),
            esc(&k("count")),
            d.count,
            d.count,
            cell(&k("mean"), d.mean)
        );
        for (p, _) in PERCENTILES {
            s.push_str(&cell(&k(p), d.get(p)));
        }
        s.push_str(&interval_cell(&k("intervals.p99"), d.intervals.get("p99")));
        s.push_str(&cell(&k("max"), d.max));
        s.push_str("</tr>\n");
    }
    s.push_str("</tbody></table>\n");
    s
}

fn summary_tables(sum: &Summary) -> String {
    let mut s = String::new();
    let r = &sum.requests;
    let _ = write!(
        s,
        "<h3>Requests</h3><table><tbody><tr><th scope=\"row\">total (warmup included)</th>{}</tr><tr><th scope=\"row\">measured</th>{}</tr><tr><th scope=\"row\">succeeded</th>{}</tr>",
        cell("requests.total", Some(r.total as f64)),
        cell("requests.measure", Some(r.measure as f64)),
        cell("requests.ok", Some(r.ok as f64)),
    );
    for (kind, n) in &r.errors {
        let _ = write!(
            s,
            "<tr><th scope=\"row\">failed: {}</th>{}</tr>",
            esc(kind.as_str()),
            cell(&format!("requests.errors.{kind}"), Some(*n as f64))
        );
    }
    let _ = writeln!(
        s,
        "<tr><th scope=\"row\">retried on a closed connection</th>{}</tr></tbody></table>",
        cell("requests.retried", Some(r.retried as f64))
    );
    if !r.errors.is_empty() {
        let failed: u64 = r.errors.values().sum();
        let _ = writeln!(
            s,
            "<p class=\"warn\">{failed} of {} measured requests failed; the latencies below are over the {} that succeeded.</p>",
            r.measure, r.ok
        );
    }
    s.push_str(
        "<h3>Throughput</h3><table><thead><tr><th>rate</th><th>value</th><th>95% interval</th></tr></thead><tbody>\n",
    );
    for (key, name, v) in [
        ("requests_per_s", "requests/s", sum.requests_per_s),
        ("output_tokens_per_s", "output tokens/s", sum.output_tokens_per_s),
        ("total_tokens_per_s", "input + output tokens/s", sum.total_tokens_per_s),
        (
            "output_tokens_per_s_per_user",
            "output tokens/s per user",
            sum.output_tokens_per_s_per_user,
        ),
        ("window_s", "measure window (s)", sum.window_s),
    ] {
        let _ = writeln!(
            s,
            "<tr><th scope=\"row\">{name}</th>{}{}</tr>",
            cell(key, v),
            interval_cell(&format!("rate_intervals.{key}"), sum.rate_intervals.get(key))
        );
    }
    s.push_str("</tbody></table>\n");
    if !sum.token_throughput_complete {
        s.push_str("<p class=\"warn\">Some answers' output length is unknown: the token rates undercount.</p>\n");
    }
    let g = &sum.goodput;
    if g.slo.is_set() {
        let bounds: Vec<String> = [("TTFT", g.slo.ttft_ms), ("TPOT", g.slo.tpot_ms), ("E2E", g.slo.e2e_ms)]
            .iter()
            .filter_map(|(n, v)| v.map(|v| format!("{n} &le; {} ms", num(v))))
            .collect();
        let _ = writeln!(
            s,
            "<h3>Goodput ({})</h3><table><tbody><tr><th scope=\"row\">good requests</th>{}</tr><tr><th scope=\"row\">good requests/s</th>{}</tr><tr><th scope=\"row\">share good</th>{}</tr></tbody></table>",
            bounds.join(", "),
            cell("goodput.good_requests", Some(g.good_requests as f64)),
            cell("goodput.requests_per_s", g.requests_per_s),
            cell("goodput.share", g.share)
        );
    }
    if let Some(srv) = &sum.server {
        s.push_str(&server_table(srv));
    }
    if let Some(c) = &sum.client {
        s.push_str(&client_table(c));
    }
    s.push_str("<h3>Distributions (measured, successful requests; ms or tokens)</h3>\n");
    s.push_str(&distributions("", &sum.metrics));
    if let Some(c) = &sum.constraints {
        let _ = writeln!(
            s,
            "<h3>Latency constraints{} &mdash; <span class=\"{}\">{}</span></h3><table><thead><tr><th>bound</th><th>value (ms)</th><th>limit (ms)</th><th>over</th><th>samples</th><th>more needed</th><th>result</th></tr></thead><tbody>",
            c.set.as_deref().map_or(String::new(), |s| format!(" ({})", esc(s))),
            if c.passed { "pass" } else { "fail" },
            if c.passed { "PASS" } else { "FAIL" }
        );
        for (i, k) in c.checks.iter().enumerate() {
            let key = |f: &str| format!("constraints.checks.{i}.{f}");
            let _ = writeln!(
                s,
                "<tr><th scope=\"row\">{} p{}</th>{}{}{}{}{}<td class=\"{}\">{}</td></tr>",
                esc(&k.metric),
                k.percentile,
                cell(&key("value_ms"), k.value_ms),
                cell(&key("limit_ms"), Some(k.limit_ms)),
                cell(&key("over"), Some(k.over as f64)),
                cell(&key("samples"), Some(k.samples as f64)),
                cell(&key("more_needed"), Some(k.more_needed as f64)),
                if k.passed { "pass" } else { "fail" },
                if k.passed { "pass" } else { "fail" }
            );
        }
        s.push_str("</tbody></table>\n");
    }
    if let Some(st) = &sum.steady {
        let _ = writeln!(
            s,
            "<h3>Steady state ({} s to {} s)</h3><table><tbody><tr><th scope=\"row\">requests/s</th>{}</tr><tr><th scope=\"row\">output tokens/s</th>{}</tr></tbody></table>",
            num(st.start_s),
            num(st.end_s),
            cell("steady.requests_per_s", Some(st.requests_per_s)),
            cell("steady.output_tokens_per_s", st.output_tokens_per_s),
        );
        s.push_str(&distributions("steady.", &st.metrics));
    }
    s
}

/// Whether the client could have set the pace.
fn client_table(c: &recap_schemas::summary::ClientCheck) -> String {
    let mut s = String::from("<h3>The client's health</h3>\n");
    if c.warnings.is_empty() {
        s.push_str("<p class=\"sub\">Nothing here says the client set the pace.</p>\n");
    }
    for w in &c.warnings {
        let _ = writeln!(s, "<p class=\"warn\">{}</p>", esc(w));
    }
    let _ = writeln!(
        s,
        "<table><tbody><tr><th scope=\"row\">CPU used (share of {} cores)</th>{}</tr><tr><th scope=\"row\">timer lag p50 / p99 / max (ms)</th>{}{}{}</tr><tr><th scope=\"row\">recorder waits (times, ms)</th>{}{}</tr></tbody></table>",
        c.cores,
        cell("client.cpu_share", Some(c.cpu_share)),
        cell("client.timer_lag_p50_ms", Some(c.timer_lag_p50_ms)),
        cell("client.timer_lag_p99_ms", Some(c.timer_lag_p99_ms)),
        cell("client.timer_lag_max_ms", Some(c.timer_lag_max_ms)),
        cell("client.recorder_waits", Some(c.recorder_waits as f64)),
        cell("client.recorder_wait_ms", Some(c.recorder_wait_ms)),
    );
    s
}

/// The server's own metrics over the measure window (`capture --scrape`).
fn server_table(srv: &recap_schemas::summary::ServerSummary) -> String {
    let mut s = format!(
        "<h3>The server's own metrics (scraped, measure window)</h3><p class=\"sub\">{} scrapes of {}; {} failed, {} lines unreadable.</p>\n",
        srv.scrapes,
        esc(&srv.targets.join(", ")),
        srv.failed_scrapes,
        srv.unparsed_lines
    );
    if srv.failed_scrapes > 0 {
        let _ = writeln!(
            s,
            "<p class=\"warn\">{} scrapes failed; <code>analyze sql RUN \"SELECT target, error FROM scrapes WHERE error IS NOT NULL\"</code> says why.</p>",
            srv.failed_scrapes
        );
    }
    s.push_str("<table><thead><tr><th>series</th><th>read from</th><th>scrapes</th><th>mean</th><th>min</th><th>max</th></tr></thead><tbody>\n");
    for wk in recap_schemas::server::WELL_KNOWN {
        let Some(x) = srv.series.get(wk.key) else { continue };
        let k = |f: &str| format!("server.series.{}.{f}", wk.key);
        let _ = writeln!(
            s,
            "<tr><th scope=\"row\">{}</th><td><code>{}</code></td>{}{}{}{}</tr>",
            esc(wk.description),
            esc(&x.metric),
            cell(&k("samples"), Some(x.samples as f64)),
            cell(&k("mean"), x.mean),
            cell(&k("min"), x.min),
            cell(&k("max"), x.max)
        );
    }
    if let Some(h) = srv.prefix_cache_hit_share {
        let _ = writeln!(
            s,
            "<tr><th scope=\"row\">prefix-cache hit share of prompt tokens (counters)</th><td></td><td></td>{}<td></td><td></td></tr>",
            cell("server.prefix_cache_hit_share", Some(h))
        );
    }
    s.push_str("</tbody></table>\n");
    s
}

fn definitions(sum: &Summary) -> String {
    let d = &sum.scoring.definitions;
    let rows = [
        ("latency starts at", d.latency_from.as_str(), "--latency-from"),
        ("TTFT ends at the first event with", d.ttft_on.as_str(), "--ttft-on"),
        ("E2E ends at", d.e2e_end.as_str(), "--e2e-end"),
        ("inter-token latency", d.itl.as_str(), "--itl"),
        ("token counts from", d.tokens.as_str(), "--tokens"),
        ("chat input length", sum.scoring.isl.as_str(), "--isl"),
    ];
    let mut s = String::from("<table><thead><tr><th>definition</th><th>value</th><th>flag</th></tr></thead><tbody>\n");
    for (name, v, flag) in rows {
        let _ = writeln!(
            s,
            "<tr><th scope=\"row\">{name}</th><td><code>{}</code></td><td><code>{flag}</code></td></tr>",
            esc(v)
        );
    }
    let _ = writeln!(
            s,
            "<tr><th scope=\"row\">tokenizer</th><td><code>{}</code></td><td><code>--tokenizer</code></td></tr><tr><th scope=\"row\">tokenizer engine</th><td>{}</td><td></td></tr></tbody></table>\n<p class=\"sub\">Each definition is documented in docs/metrics.md with the peer whose number it reproduces.</p>",
        esc(&sum.scoring.tokenizer_id),
        esc(sum.scoring.tokenizer_engine.as_deref().unwrap_or("not recorded"))
    );
    s
}

fn facts(run: &RunData) -> String {
    let Some(m) = &run.manifest else {
        return "<p class=\"warn\">The run's manifest.json could not be read; its facts are missing.</p>\n".into();
    };
    let l = &m.load;
    let mut rows: Vec<(&str, String)> = vec![
        ("run id", m.run_id.clone()),
        ("status", m.status.to_string()),
        ("server", m.endpoint.url.clone()),
        (
            "API",
            format!(
                "{}{}",
                m.endpoint.api,
                if m.endpoint.stream { ", streamed" } else { "" }
            ),
        ),
        ("model", m.endpoint.model.clone()),
        ("load", {
            let mut v = l.mode.to_string();
            if let Some(c) = l.concurrency {
                let _ = write!(v, ", concurrency {c}");
            }
            if let Some(r) = l.rate_per_s {
                let _ = write!(v, ", {} requests/s", num(r));
            }
            if let Some(a) = l.arrival {
                let _ = write!(v, ", {a} arrivals");
            }
            v
        }),
        (
            "length",
            match (l.requests, l.duration_s) {
                (Some(n), _) => format!("{n} requests after {} warmup", l.warmup_requests),
                (None, Some(d)) => format!("{} s", num(d)),
                _ => "-".into(),
            },
        ),
        ("max tokens", l.max_tokens.map_or("-".into(), |t| t.to_string())),
        (
            "dataset",
            format!("{} ({}, {} rows)", m.dataset.path, m.dataset.format, m.dataset.rows),
        ),
        ("started", m.started_at.clone()),
        ("ended", m.ended_at.clone().unwrap_or_else(|| "-".into())),
        (
            "client host",
            format!("{} ({} cores, {})", m.host.name, m.host.cores, m.host.os),
        ),
        ("capture version", m.recap_version.clone()),
    ];
    if let Some(p) = &m.plan {
        rows.push((
            "plan point",
            format!("{} (repeat {} of {}, plan {})", p.point, p.repeat, p.repeats, p.plan_id),
        ));
    }
    if let Some(s) = &m.status_message {
        rows.push(("status message", s.clone()));
    }
    let mut s = String::from("<dl class=\"facts\">\n");
    for (k, v) in rows {
        let _ = writeln!(s, "<dt>{k}</dt><dd>{}</dd>", esc(&v));
    }
    s.push_str("</dl>\n");
    s
}

/// A duration in ms as analyze's flags read it (humantime): whole ms, else whole µs.
fn dur(ms: f64) -> String {
    if ms.fract() == 0.0 {
        format!("{ms:.0}ms")
    } else {
        format!("{:.0}us", ms * 1000.0)
    }
}

/// The flags that re-score a run as this page shows it: definitions, SLOs, windows and
/// constraints.
fn score_flags(sum: &Summary) -> String {
    let d = &sum.scoring.definitions;
    let defaults = recap_schemas::summary::Definitions::default();
    let mut f = String::new();
    if d.latency_from != defaults.latency_from {
        let _ = write!(f, " --latency-from {}", d.latency_from);
    }
    if d.ttft_on != defaults.ttft_on {
        let _ = write!(f, " --ttft-on {}", d.ttft_on);
    }
    if d.e2e_end != defaults.e2e_end {
        let _ = write!(f, " --e2e-end {}", d.e2e_end);
    }
    if d.itl != defaults.itl {
        let _ = write!(f, " --itl {}", d.itl);
    }
    if d.tokens != defaults.tokens {
        let _ = write!(f, " --tokens {}", d.tokens);
    }
    if sum.scoring.isl != recap_schemas::summary::IslMode::Template {
        let _ = write!(f, " --isl {}", sum.scoring.isl);
    }
    let slo = &sum.goodput.slo;
    let bounds: Vec<String> = [("ttft", slo.ttft_ms), ("tpot", slo.tpot_ms), ("e2e", slo.e2e_ms)]
        .iter()
        .filter_map(|(n, v)| v.map(|v| format!("{n}={}", dur(v))))
        .collect();
    if !bounds.is_empty() {
        let _ = write!(f, " --slo {}", bounds.join(","));
    }
    if sum.steady.is_some() {
        f.push_str(" --window steady");
    }
    if let Some(c) = &sum.constraints {
        match c.set.as_deref().and_then(|s| s.strip_prefix("mlperf ")) {
            Some(set) => {
                let _ = write!(f, " --mlperf {}", sh(set));
            }
            None => {
                let checks: Vec<String> = c
                    .checks
                    .iter()
                    .map(|k| {
                        let p = format!("{}", k.percentile).replace('.', "_");
                        format!("{}_p{p}={}", k.metric.trim_end_matches("_ms"), dur(k.limit_ms))
                    })
                    .collect();
                let _ = write!(f, " --constraint {}", checks.join(","));
            }
        }
    }
    f
}

fn reproduce(run: &RunData, out_name: &str) -> String {
    let folder = sh(&run.summary.scoring.run);
    let capture = run.manifest.as_ref().map_or_else(
        || "# capture: the manifest is missing".to_string(),
        |m| m.command.iter().map(|a| sh(a)).collect::<Vec<_>>().join(" "),
    );
    let tokenizer = &run.summary.scoring.tokenizer_id;
    // Everything from files is escaped as one text: a folder may be named anything.
    let commands = format!(
        "{capture}\nanalyze report {folder} --tokenizer TOKENIZER_{tokenizer}{}\nplot {folder} --html --out {}",
        score_flags(&run.summary),
        sh(out_name)
    );
    format!(
        "<pre><code>{}</code></pre>\n<p class=\"sub\">TOKENIZER_{t} stands for the tokenizer file whose id is <code>{t}</code>.</p>\n",
        esc(&commands),
        t = esc(tokenizer),
    )
}

/// The charts of one run, with captions.
fn run_charts(run: &RunData) -> Result<String> {
    let mut s = String::new();
    s.push_str(&figure(
        &Chart::Timeline(run),
        if run.server.is_empty() {
            "Per-request TTFT and E2E by send time (measured filled, other phases hollow, failures as crosses at their time to failure, by kind); throughput, failures and concurrency over time."
        } else {
            "Per-request TTFT and E2E by send time (measured filled, other phases hollow, failures as crosses at their time to failure, by kind); throughput, failures and concurrency over time; under them, the server's own count of running and waiting requests and its KV-cache usage, scrape by scrape, on the same clock."
        },
    )?);
    s.push_str(&figure(
        &Chart::Cdfs(vec![run]),
        "Latency CDFs of measured, successful requests; a log axis where the values span two decades or more.",
    )?);
    s.push_str(&figure(
        &Chart::Distributions(run),
        "Latency histograms with p50, p90 and p99.",
    )?);
    if run.itl_ms.is_some() {
        s.push_str(&figure(
            &Chart::Gaps(run),
            "Per-token inter-token latency under the chosen definition beside the inter-chunk gaps: they differ where chunks carried several tokens.",
        )?);
    }
    s.push_str(&figure(&Chart::Tokens(run), "Input and output lengths.")?);
    s.push_str(&figure(
        &Chart::Agreement(run),
        "Output tokens counted by the tokenizer against the server's usage.",
    )?);
    Ok(s)
}

/// The report of one analyzed run.
pub fn run_report(run: &RunData, out_name: &str) -> Result<String> {
    let sum = &run.summary;
    let mut body = String::new();
    let _ = writeln!(
            body,
            "<section id=\"summary\"><h2>Summary</h2>\n{}</section>\n<section id=\"definitions\"><h2>Definitions</h2>\n{}</section>\n<section id=\"charts\"><h2>Charts</h2>\n{}</section>\n<section id=\"run\"><h2>Run</h2>\n{}</section>\n<section id=\"reproduce\"><h2>How to reproduce</h2>\n{}</section>",
        summary_tables(sum),
        definitions(sum),
        run_charts(run)?,
        facts(run),
        reproduce(run, out_name)
    );
    let sub = format!(
        "run <code>{}</code> ({}), scored with <code>{}</code>",
        esc(&sum.scoring.run_id),
        esc(sum.scoring.status.as_str()),
        esc(&sum.scoring.tokenizer_id)
    );
    Ok(page(
        &format!("Recap report: {}", run.name),
        &sub,
        &[
            ("summary", "Summary"),
            ("definitions", "Definitions"),
            ("charts", "Charts"),
            ("run", "Run"),
            ("reproduce", "How to reproduce"),
        ],
        &body,
    ))
}

/// The report of a sweep folder (`sweep.json`).
pub fn sweep_report(sweep: &Sweep, name: &str, out_name: &str) -> Result<String> {
    let title = std::path::Path::new(name)
        .file_name()
        .map_or_else(|| name.to_string(), |n| n.to_string_lossy().into_owned());
    let mut body = String::from("<section id=\"summary\"><h2>Points</h2>\n");
    let level = sweep.confidence * 100.0;
    let repeats = sweep.groups.iter().any(|g| g.runs > 1);
    if repeats {
        let _ = writeln!(
            body,
            "<h3>Groups of repeated runs (means with {level:.0}% intervals)</h3><table><thead><tr><th>point</th><th>runs</th><th>{x} mean</th><th>{x} interval</th><th>{y} mean</th><th>{y} interval</th><th>repeats for &plusmn;{w:.0}%</th><th>on the front</th></tr></thead><tbody>",
            x = esc(&sweep.x),
            y = esc(&sweep.y),
            w = sweep.target_width * 100.0
        );
        for (i, g) in sweep.groups.iter().enumerate() {
            let k = |f: &str| format!("groups.{i}.{f}");
            let needed = g
                .repeats_needed
                .iter()
                .map(|n| n.map_or("-".to_string(), |n| n.to_string()))
                .collect::<Vec<_>>()
                .join(" / ");
            let _ = writeln!(
                body,
                "<tr><th scope=\"row\">{}{}</th><td class=\"n\">{}</td>{}{}{}{}<td class=\"n\">{needed}</td><td>{}</td></tr>",
                esc(&g.label),
                if g.few_runs() && g.runs > 1 { " (rough: fewer than 3 runs)" } else { "" },
                g.runs,
                cell(&k("x.mean"), g.x.map(|v| v.mean)),
                interval(&k("x.low"), &k("x.high"), g.x.map(|v| v.low), g.x.map(|v| v.high), Shown::Number),
                cell(&k("y.mean"), g.y.map(|v| v.mean)),
                interval(&k("y.low"), &k("y.high"), g.y.map(|v| v.low), g.y.map(|v| v.high), Shown::Number),
                if g.pareto { "yes" } else { "" }
            );
        }
        body.push_str("</tbody></table>\n");
    }
    let mut cols: Vec<&String> = sweep.rows.iter().flat_map(|r| r.values.keys()).collect();
    cols.sort();
    cols.dedup();
    let wanted = [
        sweep.x.as_str(),
        sweep.y.as_str(),
        "requests_per_s",
        "ttft_ms_p99",
        "tpot_ms_p99",
        "e2e_ms_p99",
    ];
    let mut shown: Vec<&str> = Vec::new();
    for w in wanted {
        if !shown.contains(&w) && cols.iter().any(|c| c.as_str() == w) {
            shown.push(w);
        }
    }
    body.push_str("<h3>Runs</h3><table><thead><tr><th>run</th><th>point</th>");
    for c in &shown {
        let _ = write!(body, "<th>{}</th>", esc(c));
    }
    body.push_str("<th>on the front</th></tr></thead><tbody>\n");
    for (i, r) in sweep.rows.iter().enumerate() {
        let short = std::path::Path::new(&r.run)
            .file_name()
            .map_or_else(|| r.run.clone(), |n| n.to_string_lossy().into_owned());
        let _ = write!(
            body,
            "<tr><th scope=\"row\" title=\"{}\">{}</th><td>{}</td>",
            esc(&r.run),
            esc(&short),
            esc(&r.label)
        );
        for c in &shown {
            body.push_str(&cell(&format!("rows.{i}.values.{c}"), r.value(c)));
        }
        let _ = writeln!(body, "<td>{}</td></tr>", if r.pareto { "yes" } else { "" });
    }
    body.push_str("</tbody></table></section>\n");
    let _ = writeln!(
        body,
        "<section id=\"charts\"><h2>Charts</h2>\n{}{}</section>",
        figure(
            &Chart::Pareto(sweep),
            &format!(
                "{} against {}: the Pareto front{}; regions clipped to the quadrant where rates and latencies live.",
                sweep.y,
                sweep.x,
                if repeats {
                    format!(" over group means, with {level:.0}% regions of each mean and the spread of single runs")
                } else {
                    String::new()
                }
            )
        )?,
        figure(
            &Chart::LatencyThroughput(sweep),
            "p99 end-to-end latency against request throughput, one dot per run."
        )?
    );
    let runs: Vec<String> = sweep.rows.iter().map(|r| sh(&r.run)).collect();
    let _ = writeln!(
            body,
            "<section id=\"reproduce\"><h2>How to reproduce</h2><pre><code>{}</code></pre><p class=\"sub\">Each run's own capture command is in its manifest.json and in its own report (<code>plot RUN --html</code>).</p></section>",
        esc(&format!(
            "analyze sweep {} --tokenizer TOKENIZER --x {} --y {} --out {}\nplot {} --html --out {}",
            runs.join(" "),
            sh(&sweep.x),
            sh(&sweep.y),
            sh(name),
            sh(name),
            sh(out_name)
        ))
    );
    Ok(page(
        &format!("Recap sweep: {title}"),
        &format!(
            "{} runs in {} points; {} against {}",
            sweep.rows.len(),
            sweep.groups.len(),
            esc(&sweep.y),
            esc(&sweep.x)
        ),
        &[
            ("summary", "Points"),
            ("charts", "Charts"),
            ("reproduce", "How to reproduce"),
        ],
        &body,
    ))
}

/// The report of two or more runs compared: each run's headline numbers, their CDFs, and
/// `analyze compare`'s verdicts when its JSON is given.
pub fn compare_report(runs: &[RunData], comparison: Option<&Comparison>, out_name: &str) -> Result<String> {
    if let Some(c) = comparison {
        check_comparison(runs, c)?;
    }
    let mut body = String::from("<section id=\"summary\"><h2>Runs</h2><table><thead><tr><th>run</th><th>succeeded / measured</th><th>requests/s</th><th>output tokens/s</th>");
    let heads = [
        ("ttft_ms", "p50"),
        ("ttft_ms", "p99"),
        ("tpot_ms", "p99"),
        ("e2e_ms", "p99"),
    ];
    for (m, p) in heads {
        let _ = write!(body, "<th>{m} {p}</th>");
    }
    body.push_str("<th>definitions</th></tr></thead><tbody>\n");
    for r in runs {
        let s = &r.summary;
        let _ = write!(
            body,
            "<tr data-run=\"{}\"><th scope=\"row\">{}</th><td class=\"n\">{} / {}</td>{}{}",
            esc(&r.name),
            esc(&r.name),
            s.requests.ok,
            s.requests.measure,
            value_cell(s.requests_per_s),
            value_cell(s.output_tokens_per_s)
        );
        for (m, p) in heads {
            body.push_str(&value_cell(s.metrics.get(m).and_then(|d| d.get(p))));
        }
        let d = &s.scoring.definitions;
        let _ = writeln!(
            body,
            "<td><code>{}</code>, latency from {}, TTFT on {}, ITL {}</td></tr>",
            esc(&s.scoring.tokenizer_id),
            d.latency_from,
            d.ttft_on,
            d.itl
        );
    }
    body.push_str("</tbody></table>\n");
    let defs: std::collections::BTreeSet<String> = runs
        .iter()
        .map(|r| format!("{:?}", r.summary.scoring.definitions))
        .collect();
    if defs.len() > 1 {
        body.push_str("<p class=\"warn\">The runs were scored under different definitions: their numbers do not measure the same thing. Re-score them with the same flags.</p>\n");
    }
    body.push_str("</section>\n<section id=\"verdicts\"><h2>Is the difference real?</h2>\n");
    match comparison {
        Some(c) => {
            let _ = writeln!(
            body,
            "<p class=\"sub\">Base {} ({} requests); {:.0}% bootstrap intervals ({} resamples, seed {}); a change counts from {:.1}%.</p>",
                esc(&c.base),
                c.base_requests,
                c.confidence * 100.0,
                c.resamples,
                c.seed,
                c.threshold * 100.0
            );
            body.push_str(&figure(
                &Chart::Verdicts(c),
                "Each statistic's change against the base with its bootstrap interval; the shaded band is too small to count.",
            )?);
            body.push_str("<table><thead><tr><th>run</th><th>metric</th><th>stat</th><th>base</th><th>value</th><th>change</th><th>interval</th><th>rank-test p</th><th>verdict</th></tr></thead><tbody>\n");
            for (i, rc) in c.runs.iter().enumerate() {
                if !rc.workload_differs.is_empty() {
                    let _ = writeln!(
                        body,
                        "<tr><td colspan=\"9\" class=\"warn\">{}: not the same workload as the base ({} differ)</td></tr>",
                        esc(&rc.run),
                        esc(&rc.workload_differs)
                    );
                }
                for (j, x) in rc.rows.iter().enumerate() {
                    let k = |f: &str| format!("runs.{i}.rows.{j}.{f}");
                    let _ = writeln!(
                        body,
                        "<tr><th scope=\"row\">{}</th><td>{}</td><td>{}</td>{}{}{}{}{}<td class=\"verdict-{}\">{}</td></tr>",
                        esc(&rc.run),
                        esc(&x.metric),
                        esc(&x.stat),
                        cell(&k("base"), x.base),
                        cell(&k("value"), x.value),
                        percent_cell(&k("change"), x.change),
                        interval(&k("change_low"), &k("change_high"), x.change_low, x.change_high, Shown::Percent),
                        cell(&k("p_value"), x.p_value),
                        x.verdict,
                        match x.verdict {
                            recap_schemas::compare::Verdict::Same => "no detectable difference",
                            v => v.as_str(),
                        }
                    );
                }
            }
            body.push_str("</tbody></table>\n");
        }
        None => {
            let names: Vec<String> = runs.iter().map(|r| sh(&r.summary.scoring.run)).collect();
            let _ = writeln!(
            body,
            "<p class=\"warn\">No verdicts: this page was made without <code>--comparison</code>. Run <code>analyze compare {} --tokenizer TOKENIZER --format json &gt; compare.json</code> and pass <code>--comparison compare.json</code>.</p>",
                esc(&names.join(" "))
            );
        }
    }
    body.push_str("</section>\n");
    let refs: Vec<&RunData> = runs.iter().collect();
    let _ = writeln!(
        body,
        "<section id=\"charts\"><h2>Charts</h2>\n{}</section>",
        figure(
            &Chart::Cdfs(refs),
            "Latency CDFs of the runs overlaid (measured, successful requests)."
        )?
    );
    let names: Vec<String> = runs.iter().map(|r| sh(&r.summary.scoring.run)).collect();
    let _ = writeln!(
            body,
            "<section id=\"reproduce\"><h2>How to reproduce</h2><pre><code>{}</code></pre></section>",
        esc(&format!(
            "analyze compare {n} --tokenizer TOKENIZER --format json > compare.json\nplot {n} --compare --html --comparison compare.json --out {}",
            sh(out_name),
            n = names.join(" ")
        ))
    );
    let title = runs.iter().map(|r| r.name.as_str()).collect::<Vec<_>>().join(" vs ");
    Ok(page(
        &format!("Recap comparison: {title}"),
        &format!("{} runs, the first is the base", runs.len()),
        &[
            ("summary", "Runs"),
            ("verdicts", "Verdicts"),
            ("charts", "Charts"),
            ("reproduce", "How to reproduce"),
        ],
        &body,
    ))
}

/// The last path component of a run as `analyze compare` named it.
fn folder_of(run: &str) -> &str {
    let trimmed = run.trim_end_matches('/');
    trimmed.rsplit('/').next().unwrap_or(trimmed)
}

/// Refuses a comparison of other runs than those given: its base must be the first run and
/// every run it compares one of the others (matched by folder name).
fn check_comparison(runs: &[RunData], c: &Comparison) -> Result<()> {
    let names: Vec<&str> = runs.iter().map(|r| r.name.as_str()).collect();
    let base_ok = names.first() == Some(&folder_of(&c.base));
    let others: Vec<&str> = c.runs.iter().map(|r| folder_of(&r.run)).collect();
    if !base_ok || others.iter().any(|o| !names[1..].contains(o)) {
        return Err(crate::Error::Input(format!(
            "--comparison compares {} against {}, not the runs given ({}): run `analyze compare` on these runs, base first",
            folder_of(&c.base),
            others.join(", "),
            names.join(", ")
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            esc(r#"<a href="x">&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn numbers_keep_four_significant_digits() {
        assert_eq!(num(1234.567), "1235");
        assert_eq!(num(123.456), "123.5");
        assert_eq!(num(12.3456), "12.35");
        assert_eq!(num(1.23456), "1.235");
        assert_eq!(num(0.0123456), "0.0123");
        assert_eq!(num(42.0), "42");
        assert_eq!(num(0.000123), "1.23e-4");
    }

    #[test]
    fn durations_read_back_as_analyze_reads_them() {
        assert_eq!(dur(50.0), "50ms");
        assert_eq!(dur(12.5), "12500us");
    }

    #[test]
    fn shell_quotes_what_a_shell_would_split() {
        assert_eq!(sh("runs/c64"), "runs/c64");
        assert_eq!(sh("a b"), "'a b'");
        assert_eq!(sh("it's"), r"'it'\''s'");
    }
}
