//! The charts. Each is a [`Chart`] drawn on any plotters backend, so PNG and SVG come from the
//! same code. Every chart has a title, axis labels with units and a legend.

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;
use recap_schemas::compare::{Comparison, Verdict};
use recap_schemas::sweep::{Better, Sweep};
use recap_schemas::{ErrorKind, Phase};
use recap_stats::percentile_sorted;

use crate::data::RunData;
use crate::theme::{color, FONT, GREY, SIZE};
use crate::{Error, Result};

/// Output image format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// PNG bitmap.
    Png,
    /// SVG vector (text stays text, so titles and labels are searchable).
    Svg,
}

impl Format {
    /// File extension.
    pub fn ext(self) -> &'static str {
        match self {
            Format::Png => "png",
            Format::Svg => "svg",
        }
    }
}

/// Something to draw.
pub enum Chart<'a> {
    /// TTFT, TPOT, ICL, E2E histograms with percentile markers.
    Distributions(&'a RunData),
    /// TTFT, TPOT, ICL, E2E CDFs, one line per run (one run: with percentile markers).
    Cdfs(Vec<&'a RunData>),
    /// Per-request TTFT/E2E against time, throughput and in-flight over time, warmup shaded.
    Timeline(&'a RunData),
    /// ISL and OSL histograms.
    Tokens(&'a RunData),
    /// Server vs tokenizer output tokens with the y = x line.
    Agreement(&'a RunData),
    /// Per-token ITL (the analysis' `--itl` definition) beside the inter-chunk gaps.
    Gaps(&'a RunData),
    /// `analyze compare`'s changes with their intervals and verdicts, per run and statistic.
    Verdicts(&'a Comparison),
    /// A sweep's Pareto front on its axes, with ellipses for repeated runs.
    Pareto(&'a Sweep),
    /// A sweep's p99 E2E latency against throughput.
    LatencyThroughput(&'a Sweep),
}

type DrawResult = std::result::Result<(), String>;

macro_rules! d {
    ($e:expr) => {
        $e.map_err(|e| e.to_string())?
    };
}

const METRICS: [(&str, &str); 4] = [
    ("ttft", "Time to first token (TTFT)"),
    ("tpot", "Time per output token (TPOT)"),
    ("icl", "Inter-chunk latency (ICL)"),
    ("e2e", "End-to-end latency (E2E)"),
];

/// Most points a scatter draws; past it every k-th point is drawn and the legend says so, so a
/// million-request run still makes an SVG a browser opens (a dot is ~100 bytes of SVG).
const MAX_POINTS: usize = 20_000;

/// Most vertices of a CDF line; past it the line runs through the samples at evenly spaced
/// ranks, exact at each of them (first and last included).
const MAX_CDF_VERTICES: usize = 2_000;

/// Every `step`-th item of `v`, `step` the smallest that keeps at most `cap` of them.
fn every_nth<T: Copy>(v: &[T], cap: usize) -> (Vec<T>, usize) {
    let step = v.len().div_ceil(cap.max(1)).max(1);
    (v.iter().step_by(step).copied().collect(), step)
}

/// The CDF of sorted samples `v`: (value, share of samples at or below it) at every rank, or
/// at [`MAX_CDF_VERTICES`] evenly spaced ranks.
fn cdf_points(v: &[f64]) -> Vec<(f64, f64)> {
    let n = v.len();
    let at = |k: usize| (v[k], (k + 1) as f64 / n as f64);
    if n <= MAX_CDF_VERTICES {
        return (0..n).map(at).collect();
    }
    let m = MAX_CDF_VERTICES;
    (0..m)
        .map(|j| at(((j as f64) * (n - 1) as f64 / (m - 1) as f64).round() as usize))
        .collect()
}

fn sorted(v: &[f64]) -> Vec<f64> {
    let mut s: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    s.sort_by(f64::total_cmp);
    s
}

/// A padded axis range that is never empty.
fn range(lo: f64, hi: f64, zero: bool) -> std::ops::Range<f64> {
    let lo = if zero { lo.min(0.0) } else { lo };
    let span = (hi - lo).abs();
    let pad = if span > 0.0 {
        span * 0.05
    } else {
        lo.abs().max(1.0) * 0.1
    };
    (if zero && lo >= 0.0 { 0.0 } else { lo - pad })..(hi + pad)
}

/// A value axis: linear, or the log10 of the values when they are positive and span two
/// decades or more (a TTFT of 20 ms beside an E2E of 5 s), labelled in the data's units.
#[derive(Debug, Clone, Copy)]
struct Axis {
    log: bool,
}

impl Axis {
    const LINEAR: Axis = Axis { log: false };

    fn for_values(lo: f64, hi: f64) -> Self {
        Axis {
            log: lo > 0.0 && hi / lo >= 100.0,
        }
    }

    /// Where a value is drawn.
    fn at(self, v: f64) -> f64 {
        if self.log {
            v.log10()
        } else {
            v
        }
    }

    /// The drawn range of values from `lo` to `hi` (linear: from 0 when `zero`).
    fn range(self, lo: f64, hi: f64, zero: bool) -> std::ops::Range<f64> {
        if self.log {
            let (a, b) = (lo.log10(), hi.log10());
            (a - 0.05 * (b - a))..(b + 0.05 * (b - a))
        } else {
            range(lo, hi, zero)
        }
    }

    fn label(self, drawn: f64) -> String {
        short(if self.log { 10f64.powf(drawn) } else { drawn })
    }

    fn desc(self, unit: &str) -> String {
        if self.log {
            format!("{unit} (log scale)")
        } else {
            unit.to_string()
        }
    }
}

/// A tick label with as many decimals as its size needs.
fn short(v: f64) -> String {
    let a = v.abs();
    if a >= 100.0 || a == 0.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

fn title_style() -> TextStyle<'static> {
    (FONT, 26).into_font().into()
}

fn label_style() -> TextStyle<'static> {
    (FONT, 16).into_font().into()
}

impl Chart<'_> {
    /// The file stem this chart is written to.
    pub fn file_stem(&self) -> &'static str {
        match self {
            Chart::Distributions(_) => "latency_histograms",
            Chart::Cdfs(r) if r.len() > 1 => "compare_cdf",
            Chart::Cdfs(_) => "latency_cdf",
            Chart::Timeline(_) => "timeline",
            Chart::Tokens(_) => "tokens",
            Chart::Agreement(_) => "token_agreement",
            Chart::Gaps(_) => "itl_vs_icl",
            Chart::Verdicts(_) => "compare_verdicts",
            Chart::Pareto(_) => "pareto",
            Chart::LatencyThroughput(_) => "latency_vs_throughput",
        }
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult {
        d!(root.fill(&WHITE));
        match self {
            Chart::Distributions(run) => distributions(root, run),
            Chart::Cdfs(runs) => cdfs(root, runs),
            Chart::Timeline(run) => timeline(root, run),
            Chart::Tokens(run) => tokens(root, run),
            Chart::Agreement(run) => agreement(root, run),
            Chart::Gaps(run) => gaps(root, run),
            Chart::Verdicts(c) => verdicts(root, c),
            Chart::Pareto(s) => pareto(root, s),
            Chart::LatencyThroughput(s) => latency_throughput(root, s),
        }?;
        d!(root.present());
        Ok(())
    }

    /// Size in pixels: [`SIZE`], taller for a comparison with many rows.
    pub fn size(&self) -> (u32, u32) {
        match self {
            Chart::Verdicts(c) => {
                let rows: usize = c.runs.iter().map(|r| r.rows.len()).sum();
                (SIZE.0, 160 + 34 * (rows + VERDICT_LEGEND_ROWS) as u32)
            }
            // A third panel for the server's own metrics.
            Chart::Timeline(run) if !run.server.is_empty() => (SIZE.0, SIZE.1 * 3 / 2),
            _ => SIZE,
        }
    }

    /// Renders to `<dir>/<stem>.<ext>` and returns the path.
    pub fn render(&self, dir: &Path, format: Format) -> Result<std::path::PathBuf> {
        crate::theme::init();
        let path = dir.join(format!("{}.{}", self.file_stem(), format.ext()));
        let size = self.size();
        let r = match format {
            Format::Png => self.draw(&BitMapBackend::new(&path, size).into_drawing_area()),
            Format::Svg => self.draw(&SVGBackend::new(&path, size).into_drawing_area()),
        };
        r.map_err(|e| Error::Draw(format!("{}: {e}", path.display())))?;
        Ok(path)
    }

    /// The chart as SVG text (for the HTML report).
    pub fn svg(&self) -> Result<String> {
        crate::theme::init();
        let mut out = String::new();
        self.draw(&SVGBackend::with_string(&mut out, self.size()).into_drawing_area())
            .map_err(|e| Error::Draw(format!("{}: {e}", self.file_stem())))?;
        Ok(out)
    }
}

type Ctx<'a, DB> =
    ChartContext<'a, DB, Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>>;

/// Grid and axis descriptions, in the chart font.
fn mesh<DB: DrawingBackend>(c: &mut Ctx<'_, DB>, x_desc: impl Into<String>, y_desc: impl Into<String>) -> DrawResult {
    mesh_axes(c, x_desc, y_desc, Axis::LINEAR, Axis::LINEAR)
}

/// [`mesh`] with tick labels in data units on a log axis.
fn mesh_axes<DB: DrawingBackend>(
    c: &mut Ctx<'_, DB>,
    x_desc: impl Into<String>,
    y_desc: impl Into<String>,
    x: Axis,
    y: Axis,
) -> DrawResult {
    let (fx, fy) = (move |v: &f64| x.label(*v), move |v: &f64| y.label(*v));
    let mut m = c.configure_mesh();
    m.x_desc(x_desc)
        .y_desc(y_desc)
        .label_style(label_style())
        .axis_desc_style(label_style());
    if x.log {
        m.x_label_formatter(&fx);
    }
    if y.log {
        m.y_label_formatter(&fy);
    }
    d!(m.draw());
    Ok(())
}

/// The legend box at `pos`.
fn legend<'a, DB: DrawingBackend + 'a>(c: &mut Ctx<'a, DB>, pos: SeriesLabelPosition) -> DrawResult {
    d!(c.configure_series_labels()
        .position(pos)
        .label_font(label_style())
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw());
    Ok(())
}

fn histogram<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    x_desc: &str,
    values: &[f64],
    series: usize,
    markers: bool,
) -> DrawResult {
    let v = sorted(values);
    let (Some(&lo), Some(&hi)) = (v.first(), v.last()) else {
        d!(area.titled(&format!("{title}: no samples"), title_style()));
        return Ok(());
    };
    let bins = 40usize;
    let width = if hi > lo {
        (hi - lo) / bins as f64
    } else {
        lo.abs().max(1.0) * 0.02
    };
    let mut counts = vec![0u32; bins];
    for x in &v {
        let i = (((x - lo) / width) as usize).min(bins - 1);
        counts[i] += 1;
    }
    let top = f64::from(counts.iter().copied().max().unwrap_or(1)) * 1.15;
    let mut chart = d!(ChartBuilder::on(area)
        .caption(title, title_style())
        .margin(12)
        .x_label_area_size(50)
        .y_label_area_size(70)
        .build_cartesian_2d(range(lo, lo + width * bins as f64, false), 0.0..top));
    mesh(&mut chart, x_desc, "requests")?;
    let c = color(series);
    d!(chart
        .draw_series(counts.iter().enumerate().map(|(i, n)| {
            let x0 = lo + width * i as f64;
            Rectangle::new([(x0, 0.0), (x0 + width, f64::from(*n))], c.mix(0.75).filled())
        }))
        .map(|s| s
            .label(format!("{} samples", v.len()))
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 14, y + 6)], c.filled()))));
    if markers {
        for (k, (name, p)) in [("p50", 50.0), ("p90", 90.0), ("p99", 99.0)].iter().enumerate() {
            let Some(x) = percentile_sorted(&v, *p) else { continue };
            let mc = color(k + 5);
            d!(chart
                .draw_series(LineSeries::new([(x, 0.0), (x, top)], mc.stroke_width(2)))
                .map(|s| s
                    .label(format!("{name} = {x:.3}"))
                    .legend(move |(lx, ly)| PathElement::new([(lx, ly), (lx + 14, ly)], mc.stroke_width(2)))));
        }
    }
    legend(&mut chart, SeriesLabelPosition::UpperRight)?;
    Ok(())
}

fn distributions<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, run: &RunData) -> DrawResult {
    let root = d!(root.titled(&format!("Latency distributions: {}", run.name), title_style()));
    for (area, (m, title)) in root.split_evenly((2, 2)).iter().zip(METRICS) {
        histogram(area, title, "ms", &run.latency(m), 0, true)?;
    }
    Ok(())
}

fn cdf_area<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    series: &[(&str, Vec<f64>)],
    markers: bool,
) -> DrawResult {
    let all: Vec<f64> = series.iter().flat_map(|(_, v)| v.iter().copied()).collect();
    let s = sorted(&all);
    let (Some(&lo), Some(&hi)) = (s.first(), s.last()) else {
        d!(area.titled(&format!("{title}: no samples"), title_style()));
        return Ok(());
    };
    let ax = Axis::for_values(lo, hi);
    let mut chart = d!(ChartBuilder::on(area)
        .caption(title, title_style())
        .margin(12)
        .x_label_area_size(50)
        .y_label_area_size(70)
        .build_cartesian_2d(ax.range(lo, hi, false), 0.0..1.02));
    mesh_axes(&mut chart, ax.desc("ms"), "fraction of requests", ax, Axis::LINEAR)?;
    for (i, (name, values)) in series.iter().enumerate() {
        let v = sorted(values);
        let c = color(i);
        let pts: Vec<(f64, f64)> = cdf_points(&v).into_iter().map(|(x, y)| (ax.at(x), y)).collect();
        d!(chart.draw_series(LineSeries::new(pts, c.stroke_width(3))).map(|s| s
            .label(name.to_string())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 14, y)], c.stroke_width(3)))));
        if markers {
            for (k, (pn, p)) in [("p50", 50.0), ("p90", 90.0), ("p99", 99.0)].iter().enumerate() {
                let Some(x) = percentile_sorted(&v, *p) else { continue };
                let mc = color(k + 5);
                d!(chart
                    .draw_series(PointSeries::of_element(
                        [(ax.at(x), p / 100.0)],
                        6,
                        mc.filled(),
                        &|c, s, st| Circle::new(c, s, st)
                    ))
                    .map(
                        |s| s.label(format!("{pn} = {x:.3}")).legend(move |(lx, ly)| Circle::new(
                            (lx + 7, ly),
                            5,
                            mc.filled()
                        ))
                    ));
            }
        }
    }
    legend(&mut chart, SeriesLabelPosition::LowerRight)?;
    Ok(())
}

fn cdfs<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, runs: &[&RunData]) -> DrawResult {
    let title = if runs.len() == 1 {
        format!("Latency CDFs: {}", runs[0].name)
    } else {
        format!(
            "Latency CDFs compared: {}",
            runs.iter().map(|r| r.name.as_str()).collect::<Vec<_>>().join(" vs ")
        )
    };
    let root = d!(root.titled(&title, title_style()));
    for (area, (m, t)) in root.split_evenly((2, 2)).iter().zip(METRICS) {
        let series: Vec<(&str, Vec<f64>)> = runs.iter().map(|r| (r.name.as_str(), r.latency(m))).collect();
        cdf_area(area, t, &series, runs.len() == 1)?;
    }
    Ok(())
}

/// The colour of an error kind on the timeline: fixed per kind, so two runs' charts agree,
/// and none of the colours the latencies use.
fn error_color(kind: ErrorKind) -> RGBColor {
    match kind {
        ErrorKind::HttpStatus => color(5),
        ErrorKind::ServerError => RGBColor(150, 30, 90),
        ErrorKind::Timeout => color(7),
        ErrorKind::Connect => RGBColor(120, 60, 0),
        _ => RGBColor(90, 90, 160),
    }
}

/// One error kind on the timeline: its count, the points drawn, 1 in how many.
type Failures = (ErrorKind, usize, Vec<(f64, f64)>, usize);

/// Turns drawn in colours of their own; later turns share the last one.
const TURN_COLOURS: [usize; 5] = [0, 2, 3, 4, 6];

/// The colour of a session turn (0-based, as datasets number them).
fn turn_color(turn: u32) -> RGBColor {
    color(TURN_COLOURS[(turn as usize).min(TURN_COLOURS.len() - 1)])
}

fn timeline<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, run: &RunData) -> DrawResult {
    use crate::data::Row;
    let root = d!(root.titled(&format!("Timeline: {}", run.name), title_style()));
    let (top, rest) = root.split_vertically(SIZE.1 / 2 - 20);
    let (bottom, server) = if run.server.is_empty() {
        (rest, None)
    } else {
        let (b, s) = rest.split_vertically(SIZE.1 / 2 - 20);
        (b, Some(s))
    };
    // One time axis for every panel: the server's last scrape comes after the last response.
    let t_end = run
        .rows
        .iter()
        .filter_map(|r| r.end_s.or(r.sent_s))
        .chain(run.server.iter().flat_map(|l| l.points.iter().map(|p| p.0)))
        .fold(0.0f64, f64::max)
        .max(1e-3);
    let warm: Vec<f64> = run
        .rows
        .iter()
        .filter(|r| r.phase == Phase::Warmup)
        .filter_map(|r| r.end_s.or(r.sent_s))
        .collect();
    let warm_end = warm.iter().copied().fold(f64::NAN, f64::max);
    // Top: per-request latencies against when the request was sent; measured requests filled,
    // the other phases hollow; failed requests a cross at their time to failure, by kind.
    let pts = |f: fn(&Row) -> Option<f64>, measured: bool| -> Vec<(f64, f64, Option<u32>)> {
        run.rows
            .iter()
            .filter(|r| r.ok && (r.phase == Phase::Measure) == measured)
            .filter_map(|r| Some((r.sent_s?, f(r)?, r.turn)))
            .collect()
    };
    let failed_at = |r: &Row| Some((r.sent_s?, (r.end_s? - r.sent_s?).max(0.0) * 1e3));
    let mut kinds: Vec<(ErrorKind, Vec<(f64, f64)>)> = Vec::new();
    for r in run.rows.iter().filter(|r| !r.ok) {
        let (Some(kind), Some(p)) = (r.error_kind, failed_at(r)) else {
            continue;
        };
        match kinds.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, v)) => v.push(p),
            None => kinds.push((kind, vec![p])),
        }
    }
    kinds.sort_by_key(|(k, _)| *k);
    let series = [
        ("TTFT", pts(|r| r.ttft_ms, true), pts(|r| r.ttft_ms, false)),
        ("E2E", pts(|r| r.e2e_ms, true), pts(|r| r.e2e_ms, false)),
    ];
    // A long run draws 1 in `step` requests (the same ones in every series).
    let drawn: usize = series.iter().map(|(_, a, b)| a.len() + b.len()).sum();
    let step = drawn.div_ceil(MAX_POINTS).max(1);
    let series = series.map(|(name, a, b)| {
        (
            name,
            a.into_iter().step_by(step).collect::<Vec<_>>(),
            b.into_iter().step_by(step).collect::<Vec<_>>(),
        )
    });
    // Failures keep their count for the legend; at most a quarter of the points are drawn.
    let kinds: Vec<Failures> = kinds
        .into_iter()
        .map(|(k, p)| {
            let n = p.len();
            let (drawn, step) = every_nth(&p, MAX_POINTS / 4);
            (k, n, drawn, step)
        })
        .collect();
    let values = || {
        series
            .iter()
            .flat_map(|(_, a, b)| a.iter().chain(b).map(|p| p.1))
            .chain(kinds.iter().flat_map(|(_, _, v, _)| v.iter().map(|p| p.1)))
    };
    let lo = values().filter(|v| *v > 0.0).fold(f64::INFINITY, f64::min);
    let hi = values().fold(1.0f64, f64::max);
    let ax = if values().all(|v| v > 0.0) {
        Axis::for_values(lo, hi)
    } else {
        Axis::LINEAR
    };
    let yr = ax.range(lo.min(hi), hi, true);
    let mut c = d!(ChartBuilder::on(&top)
        .caption("Per-request latency by send time", title_style())
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..t_end, yr.clone()));
    mesh_axes(
        &mut c,
        "time since start (s)",
        ax.desc("latency (ms)"),
        Axis::LINEAR,
        ax,
    )?;
    if warm_end.is_finite() {
        d!(c.draw_series([Rectangle::new(
            [(0.0, yr.start), (warm_end, yr.end)],
            GREY.mix(0.25).filled()
        )])
        .map(|s| s
            .label(Phase::Warmup.as_str())
            .legend(|(x, y)| Rectangle::new([(x, y - 6), (x + 14, y + 6)], GREY.mix(0.4).filled()))));
    }
    let turns: std::collections::BTreeSet<u32> = run.rows.iter().filter_map(|r| r.turn).collect();
    let by_turn = turns.len() > 1;
    let mut legend_lines: Vec<String> = Vec::new();
    for (i, (name, measured, other)) in series.iter().enumerate() {
        let col = color(i);
        if by_turn && i == 0 {
            // Multi-turn runs: TTFT by turn (later turns carry the history as input); turns
            // from the fifth on share one colour.
            let last_bucket = TURN_COLOURS.len() as u32 - 1;
            let last = turns.iter().copied().max().unwrap_or(0);
            for bucket in 0..=last.min(last_bucket) {
                let tc = turn_color(bucket);
                let mine: Vec<(f64, f64)> = measured
                    .iter()
                    .filter(|p| p.2.map(|t| t.min(last_bucket)) == Some(bucket))
                    .map(|p| (p.0, ax.at(p.1)))
                    .collect();
                let label = if bucket == last_bucket && last > last_bucket {
                    format!("TTFT, turns {bucket} and later")
                } else {
                    format!("TTFT, turn {bucket}")
                };
                legend_lines.push(label.clone());
                d!(c.draw_series(mine.iter().map(|xy| Circle::new(*xy, 3, tc.filled())))
                    .map(|s| s
                        .label(label)
                        .legend(move |(x, y)| Circle::new((x + 7, y), 4, tc.filled()))));
            }
        } else {
            legend_lines.push(name.to_string());
            d!(
                c.draw_series(measured.iter().map(|p| Circle::new((p.0, ax.at(p.1)), 3, col.filled())))
                    .map(|s| s
                        .label(*name)
                        .legend(move |(x, y)| Circle::new((x + 7, y), 4, col.filled())))
            );
        }
        d!(c.draw_series(
            other
                .iter()
                .map(|p| Circle::new((p.0, ax.at(p.1)), 3, col.stroke_width(1)))
        ));
    }
    if step > 1 {
        let note = format!("1 in {step} requests drawn");
        legend_lines.push(note.clone());
        d!(c.draw_series(std::iter::empty::<Circle<(f64, f64), i32>>())
            .map(|s| s.label(note).legend(|(x, y)| EmptyElement::at((x, y)))));
    }
    if series.iter().any(|(_, _, o)| !o.is_empty()) {
        legend_lines.push("hollow: not measured (warmup, ramp, cooldown)".into());
        d!(c.draw_series(std::iter::empty::<Circle<(f64, f64), i32>>()).map(|s| s
            .label("hollow: not measured (warmup, ramp, cooldown)")
            .legend(|(x, y)| Circle::new((x + 7, y), 4, BLACK.stroke_width(1)))));
    }
    for (kind, n, p, step) in &kinds {
        let kc = error_color(*kind);
        let label = if *step > 1 {
            format!("error: {kind} ({n}, 1 in {step} drawn)")
        } else {
            format!("error: {kind} ({n})")
        };
        legend_lines.push(label.clone());
        d!(c.draw_series(
            p.iter()
                .map(|xy| Cross::new((xy.0, ax.at(xy.1)), 5, kc.stroke_width(2)))
        )
        .map(|s| s
            .label(label)
            .legend(move |(x, y)| Cross::new((x + 7, y), 5, kc.stroke_width(2)))));
    }
    let mut lines: Vec<String> = Vec::new();
    if warm_end.is_finite() {
        lines.push(Phase::Warmup.as_str().into());
    }
    lines.extend(legend_lines);
    let marks: Vec<(i32, i32)> = series
        .iter()
        .flat_map(|(_, a, b)| a.iter().chain(b))
        .map(|p| (p.0, p.1))
        .chain(kinds.iter().flat_map(|(_, _, v, _)| v.iter().copied()))
        .map(|(x, y)| c.backend_coord(&(x, ax.at(y))))
        .collect();
    let (corner, _) = quiet_corner(&c, &lines, &marks);
    legend(&mut c, corner)?;
    // Bottom: completions (and failures) per second and requests in flight, per bin.
    let bin = (t_end / 30.0).clamp(0.5, 10.0);
    let n = (t_end / bin).ceil() as usize + 1;
    let mut done = vec![0.0f64; n];
    let mut failed = vec![0.0f64; n];
    let mut inflight = vec![0.0f64; n];
    for r in &run.rows {
        if let Some(e) = r.end_s {
            let slot = if r.ok { &mut done } else { &mut failed };
            slot[((e / bin) as usize).min(n - 1)] += 1.0 / bin;
        }
        if let (Some(s), Some(e)) = (r.sent_s, r.end_s) {
            for (k, slot) in inflight.iter_mut().enumerate() {
                let mid = (k as f64 + 0.5) * bin;
                if s <= mid && mid < e {
                    *slot += 1.0;
                }
            }
        }
    }
    let ymax = done
        .iter()
        .chain(&inflight)
        .chain(&failed)
        .copied()
        .fold(1.0f64, f64::max)
        * 1.15;
    let mut c = d!(ChartBuilder::on(&bottom)
        .caption("Throughput and concurrency over time", title_style())
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..t_end, 0.0..ymax));
    mesh(&mut c, "time since start (s)", "requests/s, requests")?;
    if warm_end.is_finite() {
        d!(c.draw_series([Rectangle::new([(0.0, 0.0), (warm_end, ymax)], GREY.mix(0.25).filled())]));
    }
    let mut lines = vec![
        ("completed requests/s", &done, color(2)),
        ("requests in flight", &inflight, color(3)),
    ];
    if !kinds.is_empty() {
        lines.push(("failed requests/s", &failed, color(5)));
    }
    for (name, v, col) in lines {
        let pts: Vec<(f64, f64)> = v
            .iter()
            .enumerate()
            .map(|(k, y)| ((k as f64 + 0.5) * bin, *y))
            .collect();
        d!(c.draw_series(LineSeries::new(pts, col.stroke_width(3))).map(|s| s
            .label(name)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 14, y)], col.stroke_width(3)))));
    }
    legend(&mut c, SeriesLabelPosition::UpperRight)?;
    if let Some(area) = server {
        server_panel(&area, run, t_end, warm_end)?;
    }
    Ok(())
}

/// The server's own view under the client's, on the same clock: requests running and
/// waiting as it counts them, and its KV-cache usage (in %), one point per scrape.
fn server_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    run: &RunData,
    t_end: f64,
    warm_end: f64,
) -> DrawResult {
    let scale = |key: &str| if key == "kv_cache_usage" { 100.0 } else { 1.0 };
    let lines: Vec<(&crate::data::ServerLine, f64)> = run
        .server
        .iter()
        .filter(|l| matches!(l.key, "requests_running" | "requests_waiting" | "kv_cache_usage"))
        .map(|l| (l, scale(l.key)))
        .collect();
    let ymax = lines
        .iter()
        .flat_map(|(l, k)| l.points.iter().map(move |p| p.1 * k))
        .fold(1.0f64, f64::max)
        * 1.15;
    let mut c = d!(ChartBuilder::on(area)
        .caption("Server metrics (scraped from its endpoint)", title_style())
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..t_end, 0.0..ymax));
    mesh(&mut c, "time since start (s)", "requests, %")?;
    if warm_end.is_finite() {
        d!(c.draw_series([Rectangle::new([(0.0, 0.0), (warm_end, ymax)], GREY.mix(0.25).filled())]));
    }
    if lines.is_empty() {
        d!(c.draw_series(std::iter::empty::<Circle<(f64, f64), i32>>()).map(|s| s
            .label("no running, waiting or KV-cache series in the scrapes")
            .legend(|(x, y)| EmptyElement::at((x, y)))));
    }
    for (l, k) in &lines {
        // Fixed per series, so a chart reads the same whichever series a server exposes.
        let col = match l.key {
            "requests_running" => color(0),
            "requests_waiting" => color(5),
            _ => color(2),
        };
        let pts: Vec<(f64, f64)> = l.points.iter().map(|p| (p.0, p.1 * k)).collect();
        let label = if *k == 1.0 {
            l.description.to_string()
        } else {
            l.description.replace("share, 0 to 1", "%")
        };
        d!(c.draw_series(LineSeries::new(pts, col.stroke_width(2))).map(|s| s
            .label(label)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 14, y)], col.stroke_width(2)))));
    }
    legend(&mut c, SeriesLabelPosition::UpperRight)?;
    Ok(())
}

/// Per-token ITL under the analysis' definition beside the chunk gaps it was derived from:
/// where they differ, chunks carried several tokens.
fn gaps<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, run: &RunData) -> DrawResult {
    let def = run.summary.scoring.definitions.itl;
    let root = d!(root.titled(
        &format!("Per-token ITL ({def}) vs inter-chunk gaps: {}", run.name),
        title_style()
    ));
    let (l, r) = root.split_horizontally(SIZE.0 / 2);
    histogram(&l, "Inter-chunk latency (ICL)", "ms", &run.icl_ms, 0, true)?;
    let itl = run.itl_ms.as_deref().unwrap_or_default();
    histogram(&r, &format!("Inter-token latency (ITL, {def})"), "ms", itl, 2, true)
}

fn tokens<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, run: &RunData) -> DrawResult {
    let root = d!(root.titled(&format!("Token length distributions: {}", run.name), title_style()));
    let (l, r) = root.split_horizontally(SIZE.0 / 2);
    let isl: Vec<f64> = run.measured_ok().filter_map(|r| r.isl).collect();
    let osl: Vec<f64> = run.measured_ok().filter_map(|r| r.osl).collect();
    histogram(&l, "Input sequence length (ISL)", "tokens", &isl, 2, true)?;
    histogram(&r, "Output sequence length (OSL)", "tokens", &osl, 3, true)
}

fn agreement<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, run: &RunData) -> DrawResult {
    let pts: Vec<(f64, f64)> = run
        .measured_ok()
        .filter_map(|r| Some((r.server_out?, r.tokenizer_out?)))
        .collect();
    let hi = pts.iter().map(|p| p.0.max(p.1)).fold(1.0f64, f64::max) * 1.05;
    let tok = run.summary.scoring.tokenizer_id.as_str();
    let mut c = d!(ChartBuilder::on(root)
        .caption(
            format!("Output tokens: server usage vs {tok} ({})", run.name),
            title_style()
        )
        .margin(15)
        .x_label_area_size(50)
        .y_label_area_size(80)
        .build_cartesian_2d(0.0..hi, 0.0..hi));
    mesh(
        &mut c,
        "server usage.completion_tokens (tokens)",
        "tokenizer count (tokens)",
    )?;
    d!(
        c.draw_series(LineSeries::new([(0.0, 0.0), (hi, hi)], GREY.stroke_width(2)))
            .map(|s| s
                .label("y = x")
                .legend(|(x, y)| PathElement::new([(x, y), (x + 14, y)], GREY.stroke_width(2))))
    );
    let col = color(0);
    let label = if pts.is_empty() {
        "no requests with server usage".to_string()
    } else {
        format!("{} requests", pts.len())
    };
    let (pts, step) = every_nth(&pts, MAX_POINTS);
    let label = if step > 1 {
        format!("{label} (1 in {step} drawn)")
    } else {
        label
    };
    d!(
        c.draw_series(pts.iter().map(|p| Circle::new(*p, 4, col.mix(0.6).filled())))
            .map(|s| s
                .label(label)
                .legend(move |(x, y)| Circle::new((x + 7, y), 4, col.filled())))
    );
    legend(&mut c, SeriesLabelPosition::UpperLeft)?;
    Ok(())
}

fn axis_title(name: &str) -> String {
    let unit = if name.contains("_ms") {
        "ms"
    } else if name.contains("tokens_per_s_per_user") {
        "tokens/s per user"
    } else if name.contains("tokens_per_s") {
        "tokens/s"
    } else if name.contains("per_s") {
        "requests/s"
    } else {
        "count"
    };
    format!("{name} ({unit})")
}

/// (x, y, label, on the front) of every run with both values; `front` overrides the
/// sweep's own front flags (one per such run) when the axes differ from the sweep's.
fn sweep_points(s: &Sweep, x: &str, y: &str) -> Vec<(f64, f64, String, bool)> {
    s.rows
        .iter()
        .filter_map(|r| Some((r.value(x)?, r.value(y)?, r.label.clone(), r.pareto)))
        .collect()
}

/// A point of a scatter: coordinates, label, on the front.
type Point = (f64, f64, String, bool);

/// A closed outline in data coordinates.
type Polygon = Vec<(f64, f64)>;

/// The groups' means with their labels (`c4 (n=3)`, `c2 (n=2, rough)`: fewer than three runs
/// give no spread and only an approximate region of the mean) and their front flags.
fn group_points(s: &Sweep) -> Vec<Point> {
    s.groups
        .iter()
        .filter_map(|g| {
            let rough = if g.few_runs() && g.runs > 1 { ", rough" } else { "" };
            Some((
                g.x?.mean,
                g.y?.mean,
                format!("{} (n={}{rough})", g.label, g.runs),
                g.pareto,
            ))
        })
        .collect()
}

/// Runs as dots and the front through them; with `groups` (a sweep with repeats), runs are
/// small faint dots and the front, the labels and the regions belong to the groups' means:
/// a front over single runs would pick whichever repeat was lucky. Regions are cut to the
/// quadrant where rates and latencies live.
fn scatter_front<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    s: &Sweep,
    runs: Vec<Point>,
    groups: Option<Vec<Point>>,
    x: &str,
    y: &str,
) -> DrawResult {
    use recap_stats::ellipse::clip_to_quadrant;
    let outline = |e: recap_schemas::sweep::Ellipse| clip_to_quadrant(&e.outline(96));
    let (means, spreads): (Vec<Polygon>, Vec<Polygon>) = match &groups {
        Some(_) => (
            s.groups.iter().filter_map(|g| g.ellipse).map(outline).collect(),
            s.groups.iter().filter_map(|g| g.spread).map(outline).collect(),
        ),
        None => (Vec::new(), Vec::new()),
    };
    let pts = groups.as_ref().unwrap_or(&runs);
    let every = runs.iter().chain(groups.iter().flatten()).map(|p| (p.0, p.1));
    let all = every.chain(means.iter().chain(&spreads).flatten().copied());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::INFINITY, f64::NEG_INFINITY, f64::INFINITY, f64::NEG_INFINITY);
    for (a, b) in all {
        (x0, x1, y0, y1) = (x0.min(a), x1.max(a), y0.min(b), y1.max(b));
    }
    if !x0.is_finite() || !y0.is_finite() {
        d!(root.titled(&format!("{title}: no runs with both values"), title_style()));
        return Ok(());
    }
    let mut c = d!(ChartBuilder::on(root)
        .caption(title, title_style())
        .margin(15)
        .x_label_area_size(50)
        .y_label_area_size(90)
        .build_cartesian_2d(range(x0, x1, true), range(y0, y1, true)));
    mesh(&mut c, axis_title(x), axis_title(y))?;
    let (run_c, front_c, ell_c) = (color(0), color(5), color(2));
    let (run_r, run_style) = match groups {
        Some(_) => (4, run_c.mix(0.45).filled()),
        None => (6, run_c.filled()),
    };
    d!(
        c.draw_series(runs.iter().map(|p| Circle::new((p.0, p.1), run_r, run_style)))
            .map(|s| s
                .label("run")
                .legend(move |(lx, ly)| Circle::new((lx + 7, ly), 5, run_style)))
    );
    if let Some(g) = &groups {
        d!(
            c.draw_series(g.iter().map(|p| Circle::new((p.0, p.1), 7, run_c.filled())))
                .map(|s| s
                    .label("mean of a group of repeated runs")
                    .legend(move |(lx, ly)| Circle::new((lx + 7, ly), 6, run_c.filled())))
        );
    }
    let mut lines: Vec<String> = vec!["run".into()];
    if groups.is_some() {
        lines.push("mean of a group of repeated runs".into());
    }
    let front_label = if groups.is_some() {
        "Pareto front of the group means"
    } else {
        "Pareto front"
    };
    lines.push(front_label.into());
    let level = s.confidence * 100.0;
    if means.iter().any(|o| !o.is_empty()) {
        lines.push(format!("{level:.0}% region of the mean (rough for n=2)"));
    }
    if spreads.iter().any(|o| !o.is_empty()) {
        lines.push(format!("{level:.0}% spread of single runs (n>=3)"));
    }
    // One more line in case some labels are left out.
    lines.push("00 labels left out where they would overlap".into());
    let marks: Vec<(i32, i32)> = runs
        .iter()
        .chain(groups.iter().flatten())
        .map(|p| (p.0, p.1))
        .chain(means.iter().chain(&spreads).flatten().copied())
        .map(|p| c.backend_coord(&p))
        .collect();
    let (corner, legend_box) = quiet_corner(&c, &lines, &marks);
    let (labels, left_out) = place_labels(&c, pts, legend_box);
    d!(c.draw_series(
        labels
            .into_iter()
            .map(|(at, off, text)| EmptyElement::at(at) + Text::new(text, off, label_style()))
    ));
    if left_out > 0 {
        d!(c.draw_series(std::iter::empty::<Circle<(f64, f64), i32>>()).map(|s| s
            .label(format!("{left_out} labels left out where they would overlap"))
            .legend(|(x, y)| EmptyElement::at((x, y)))));
    }
    let mut front: Vec<(f64, f64)> = pts.iter().filter(|p| p.3).map(|p| (p.0, p.1)).collect();
    front.sort_by(|a, b| a.0.total_cmp(&b.0));
    d!(c.draw_series(LineSeries::new(front.clone(), front_c.stroke_width(3)))
        .map(|s| s
            .label(front_label)
            .legend(move |(lx, ly)| PathElement::new([(lx, ly), (lx + 14, ly)], front_c.stroke_width(3)))));
    d!(c.draw_series(front.iter().map(|p| Circle::new(*p, 9, front_c.stroke_width(2)))));
    for (i, o) in means.into_iter().filter(|o| !o.is_empty()).enumerate() {
        let series = d!(c.draw_series(LineSeries::new(o, ell_c.stroke_width(2))));
        if i == 0 {
            series
                .label(format!("{level:.0}% region of the mean (rough for n=2)"))
                .legend(move |(lx, ly)| PathElement::new([(lx, ly), (lx + 14, ly)], ell_c.stroke_width(2)));
        }
    }
    for (i, o) in spreads.into_iter().filter(|o| !o.is_empty()).enumerate() {
        let series = d!(c.draw_series(DashedLineSeries::new(o, 6, 4, ell_c.stroke_width(1))));
        if i == 0 {
            series
                .label(format!("{level:.0}% spread of single runs (n>=3)"))
                .legend(move |(lx, ly)| PathElement::new([(lx, ly), (lx + 14, ly)], ell_c.stroke_width(1)));
        }
    }
    legend(&mut c, corner)?;
    Ok(())
}

/// A box in pixels: (x0, y0, x1, y1).
type PxBox = (i32, i32, i32, i32);

/// The corner of the plot where a legend of `lines` covers the fewest of `points` (pixels),
/// and the box it will take there (the layout plotters uses: 5 px from the corner, 10 px
/// margins, a 30 px sample column, lines 1.25 font sizes apart).
fn quiet_corner<DB: DrawingBackend>(
    c: &Ctx<'_, DB>,
    lines: &[String],
    points: &[(i32, i32)],
) -> (SeriesLabelPosition, PxBox) {
    let area = c.plotting_area();
    let (xr, yr) = area.get_pixel_range();
    let style = label_style();
    let text_w = lines
        .iter()
        .map(|l| {
            area.estimate_text_size(l, &style)
                .map_or(8 * l.len() as i32, |(w, _)| w as i32)
        })
        .max()
        .unwrap_or(0);
    let (w, h) = (text_w + 30 + 20, lines.len() as i32 * 20 + 20);
    let corners = [
        (SeriesLabelPosition::UpperRight, (xr.end - 5 - w, yr.start + 5)),
        (SeriesLabelPosition::UpperLeft, (xr.start + 5, yr.start + 5)),
        (SeriesLabelPosition::LowerRight, (xr.end - 5 - w, yr.end - 5 - h)),
        (SeriesLabelPosition::LowerLeft, (xr.start + 5, yr.end - 5 - h)),
    ];
    let covered = |(x, y): (i32, i32)| {
        points
            .iter()
            .filter(|(px, py)| *px >= x - 6 && *px <= x + w + 6 && *py >= y - 6 && *py <= y + h + 6)
            .count()
    };
    // `min_by_key` keeps the first of equals: the upper right when nothing is covered.
    let (pos, (x, y)) = corners
        .into_iter()
        .min_by_key(|(_, at)| covered(*at))
        .unwrap_or((SeriesLabelPosition::UpperRight, (xr.end - 5 - w, yr.start + 5)));
    (pos, (x, y, x + w, y + h))
}

/// A label placed at a point: the point, the text's offset from it in pixels, the text.
type Placed = ((f64, f64), (i32, i32), String);

/// Places each point's label at the first of eight spots around the point that overlaps no
/// point and no label placed before it and stays inside the plot; a label with no free spot
/// is left out (the HTML report's tables name every point) and counted.
fn place_labels<DB: DrawingBackend>(c: &Ctx<'_, DB>, pts: &[Point], keep_out: PxBox) -> (Vec<Placed>, usize) {
    let area = c.plotting_area();
    let (xr, yr) = area.get_pixel_range();
    let style = label_style();
    let px: Vec<(i32, i32)> = pts.iter().map(|p| c.backend_coord(&(p.0, p.1))).collect();
    // Boxes as (x0, y0, x1, y1) in pixels: every point's marker (radius 9) first.
    let mut taken: Vec<PxBox> = px.iter().map(|(x, y)| (x - 9, y - 9, x + 9, y + 9)).collect();
    taken.push(keep_out);
    let overlaps = |a: &PxBox, b: &PxBox| a.0 < b.2 && b.0 < a.2 && a.1 < b.3 && b.1 < a.3;
    let (mut placed, mut left_out) = (Vec::new(), 0);
    for (p, (x, y)) in pts.iter().zip(&px) {
        let (w, h) = area
            .estimate_text_size(&p.2, &style)
            .unwrap_or((8 * p.2.len() as u32, 16));
        let (w, h) = (w as i32, h as i32);
        let spots = [
            (10, -h - 6),
            (10, 6),
            (-w - 10, -h - 6),
            (-w - 10, 6),
            (-w / 2, -h - 12),
            (-w / 2, 12),
            (12, -h / 2),
            (-w - 12, -h / 2),
        ];
        let free = spots.into_iter().find(|(dx, dy)| {
            let b = (x + dx, y + dy, x + dx + w, y + dy + h);
            b.0 >= xr.start
                && b.2 <= xr.end
                && b.1 >= yr.start
                && b.3 <= yr.end
                && !taken.iter().any(|t| overlaps(t, &b))
        });
        match free {
            Some((dx, dy)) => {
                taken.push((x + dx, y + dy, x + dx + w, y + dy + h));
                // Offsets are from the point's own pixel, relative to the plotting area.
                placed.push(((p.0, p.1), (dx, dy), p.2.clone()));
            }
            None => left_out += 1,
        }
    }
    (placed, left_out)
}

fn pareto<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, s: &Sweep) -> DrawResult {
    let (x, y) = (s.x.as_str(), s.y.as_str());
    let repeats = s.groups.iter().any(|g| g.runs > 1);
    scatter_front(
        root,
        &format!("Pareto front: {y} vs {x}"),
        s,
        sweep_points(s, x, y),
        repeats.then(|| group_points(s)),
        x,
        y,
    )
}

fn latency_throughput<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, s: &Sweep) -> DrawResult {
    // Front recomputed for these axes: lower latency and higher throughput are better.
    let (x, y) = ("requests_per_s", "e2e_ms_p99");
    let mut pts = sweep_points(s, x, y);
    let coords: Vec<(f64, f64)> = pts.iter().map(|p| (p.0, p.1)).collect();
    let on = recap_stats::pareto::front(&coords, Better::Higher, Better::Lower);
    for (p, on) in pts.iter_mut().zip(on) {
        p.3 = on;
    }
    scatter_front(root, "p99 end-to-end latency vs request throughput", s, pts, None, x, y)
}

/// Rows of the verdict chart kept free below the statistics for its legend.
const VERDICT_LEGEND_ROWS: usize = 4;

/// Changes against the base with their bootstrap intervals, one row per run, metric and
/// statistic, the band of changes too small to count shaded, coloured by verdict.
fn verdicts<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, cmp: &Comparison) -> DrawResult {
    let rows: Vec<(String, &recap_schemas::compare::Row)> = cmp
        .runs
        .iter()
        .flat_map(|r| {
            r.rows
                .iter()
                .map(move |x| (format!("{}: {} {}", r.run, x.metric, x.stat), x))
        })
        .collect();
    let pct = |x: Option<f64>| x.map(|v| v * 100.0);
    let t = cmp.threshold * 100.0;
    let lo = rows
        .iter()
        .filter_map(|(_, x)| pct(x.change_low).or(pct(x.change)))
        .fold(-t, f64::min);
    let hi = rows
        .iter()
        .filter_map(|(_, x)| pct(x.change_high).or(pct(x.change)))
        .fold(t, f64::max);
    let n = rows.len().max(1) as f64;
    let mut c = d!(ChartBuilder::on(root)
        .caption(
            format!(
                "Change against {} with {:.0}% intervals (a change counts from {:.1}%)",
                cmp.base,
                cmp.confidence * 100.0,
                t
            ),
            title_style()
        )
        .margin(15)
        .x_label_area_size(50)
        .y_label_area_size(300)
        .right_y_label_area_size(220)
        .build_cartesian_2d(range(lo, hi, false), -0.5 - VERDICT_LEGEND_ROWS as f64..n - 0.5));
    d!(c.configure_mesh()
        .x_desc("change against the base (%)")
        .disable_y_mesh()
        .y_labels(0)
        .label_style(label_style())
        .axis_desc_style(label_style())
        .draw());
    d!(
        c.draw_series([Rectangle::new([(-t, -0.5), (t, n - 0.5)], GREY.mix(0.2).filled())])
            .map(|s| s
                .label("too small to count")
                .legend(|(x, y)| Rectangle::new([(x, y - 6), (x + 14, y + 6)], GREY.mix(0.3).filled())))
    );
    d!(c.draw_series(LineSeries::new([(0.0, -0.5), (0.0, n - 0.5)], BLACK.stroke_width(1))));
    let verdict_color = |v: Verdict| match v {
        Verdict::Better => color(2),
        Verdict::Worse => color(5),
        Verdict::Same => GREY,
    };
    for v in Verdict::ALL {
        let vc = verdict_color(*v);
        let label = match v {
            Verdict::Same => "no detectable difference".to_string(),
            v => v.to_string(),
        };
        d!(c.draw_series(std::iter::empty::<Circle<(f64, f64), i32>>()).map(|s| s
            .label(label)
            .legend(move |(x, y)| Circle::new((x + 7, y), 5, vc.filled()))));
    }
    let area = c.plotting_area().clone();
    let (xr, _) = area.get_pixel_range();
    for (i, (name, x)) in rows.iter().enumerate() {
        // Top to bottom in the order analyze printed them.
        let y = n - 1.0 - i as f64;
        let vc = verdict_color(x.verdict);
        if let (Some(l), Some(h)) = (pct(x.change_low), pct(x.change_high)) {
            d!(c.draw_series(LineSeries::new([(l, y), (h, y)], vc.stroke_width(3))));
        }
        if let Some(ch) = pct(x.change) {
            d!(c.draw_series([Circle::new((ch, y), 6, vc.filled())]));
        }
        let (_, py) = c.backend_coord(&(0.0, y));
        let style = label_style().pos(plotters::style::text_anchor::Pos::new(
            plotters::style::text_anchor::HPos::Right,
            plotters::style::text_anchor::VPos::Center,
        ));
        d!(root.draw(&Text::new(name.clone(), (xr.start - 10, py), style)));
        let fmt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:+.1}%"));
        let shown = format!(
            "{} [{}, {}] {}",
            fmt(pct(x.change)),
            fmt(pct(x.change_low)),
            fmt(pct(x.change_high)),
            x.verdict
        );
        let style = label_style().pos(plotters::style::text_anchor::Pos::new(
            plotters::style::text_anchor::HPos::Left,
            plotters::style::text_anchor::VPos::Center,
        ));
        d!(root.draw(&Text::new(shown, (xr.end + 10, py), style)));
    }
    legend(&mut c, SeriesLabelPosition::LowerRight)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 0..10 x 0..10 chart on an SVG string, handed to `f`.
    fn with_chart(f: impl FnOnce(&Ctx<'_, SVGBackend<'_>>)) {
        crate::theme::init();
        let mut out = String::new();
        let root = SVGBackend::with_string(&mut out, SIZE).into_drawing_area();
        let c = ChartBuilder::on(&root)
            .margin(15)
            .x_label_area_size(50)
            .y_label_area_size(90)
            .build_cartesian_2d(0.0..10.0, 0.0..10.0)
            .expect("chart");
        f(&c);
    }

    #[test]
    fn labels_never_overlap_and_the_rest_are_counted() {
        with_chart(|c| {
            // Twelve points on one spot: eight spots around it, so some labels must go.
            let pts: Vec<Point> = (0..12).map(|i| (5.0, 5.0, format!("c16 (n={i})"), false)).collect();
            let (placed, left_out) = place_labels(c, &pts, (0, 0, 0, 0));
            assert_eq!(placed.len() + left_out, 12);
            assert!(left_out > 0 && !placed.is_empty(), "{} placed", placed.len());
            let area = c.plotting_area();
            let boxes: Vec<PxBox> = placed
                .iter()
                .map(|(at, (dx, dy), text)| {
                    let (x, y) = c.backend_coord(at);
                    let (w, h) = area.estimate_text_size(text, &label_style()).expect("size");
                    (x + dx, y + dy, x + dx + w as i32, y + dy + h as i32)
                })
                .collect();
            for (i, a) in boxes.iter().enumerate() {
                for b in &boxes[i + 1..] {
                    assert!(
                        !(a.0 < b.2 && b.0 < a.2 && a.1 < b.3 && b.1 < a.3),
                        "labels overlap: {a:?} {b:?}"
                    );
                }
            }
        });
    }

    #[test]
    fn labels_stay_out_of_the_legend() {
        with_chart(|c| {
            let pts = vec![(9.5, 9.5, "c64 (n=3)".to_string(), true)];
            let (x, y) = c.backend_coord(&(9.5, 9.5));
            // A legend box over everything near the point: no spot is free.
            let (placed, left_out) = place_labels(c, &pts, (x - 400, y - 400, x + 400, y + 400));
            assert_eq!((placed.len(), left_out), (0, 1));
        });
    }

    #[test]
    fn the_legend_goes_where_the_data_is_not() {
        with_chart(|c| {
            let lines = vec!["run".to_string(), "Pareto front".to_string()];
            let cloud = |x: f64, y: f64| -> Vec<(i32, i32)> {
                (0..20).map(|i| c.backend_coord(&(x + 0.01 * i as f64, y))).collect()
            };
            let (empty, _) = quiet_corner(c, &lines, &[]);
            assert!(matches!(empty, SeriesLabelPosition::UpperRight));
            let (p, _) = quiet_corner(c, &lines, &cloud(9.5, 9.5));
            assert!(matches!(p, SeriesLabelPosition::UpperLeft), "upper right is taken");
            let mut both = cloud(9.5, 9.5);
            both.extend(cloud(0.2, 9.5));
            let (p, _) = quiet_corner(c, &lines, &both);
            assert!(
                matches!(p, SeriesLabelPosition::LowerRight),
                "both upper corners are taken"
            );
        });
    }

    #[test]
    fn long_runs_are_thinned_to_what_a_browser_opens() {
        let v: Vec<f64> = (0..100_000).map(f64::from).collect();
        let c = cdf_points(&v);
        assert_eq!(c.len(), MAX_CDF_VERTICES);
        assert_eq!((c[0], c[c.len() - 1]), ((0.0, 1e-5), (99_999.0, 1.0)), "ends kept");
        // Each vertex is a sample and its exact share at or below it.
        assert!(c.iter().all(|(x, y)| (y - (x + 1.0) / 1e5).abs() < 1e-12));
        let small: Vec<f64> = (0..10).map(f64::from).collect();
        assert_eq!(cdf_points(&small).len(), 10, "short runs keep every sample");
        let (kept, step) = every_nth(&v, MAX_POINTS);
        assert_eq!((step, kept.len()), (5, 20_000));
        assert_eq!(every_nth(&small, MAX_POINTS), (small.clone(), 1));
    }

    #[test]
    fn axes_turn_logarithmic_at_two_decades() {
        assert!(!Axis::for_values(1.0, 99.0).log);
        assert!(Axis::for_values(1.0, 100.0).log);
        assert!(!Axis::for_values(0.0, 1000.0).log, "zero has no logarithm");
        let ax = Axis::for_values(2.0, 500.0);
        assert_eq!(ax.at(100.0), 2.0);
        assert_eq!(ax.label(2.0), "100");
        assert_eq!(ax.desc("ms"), "ms (log scale)");
    }
}
