//! The charts. Each is a [`Chart`] drawn on any plotters backend, so PNG and SVG come from the
//! same code. Every chart has a title, axis labels with units and a legend.

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;
use recap_schemas::sweep::{Better, Sweep};
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
            Chart::Pareto(s) => pareto(root, s),
            Chart::LatencyThroughput(s) => latency_throughput(root, s),
        }?;
        d!(root.present());
        Ok(())
    }

    /// Renders to `<dir>/<stem>.<ext>` and returns the path.
    pub fn render(&self, dir: &Path, format: Format) -> Result<std::path::PathBuf> {
        crate::theme::init();
        let path = dir.join(format!("{}.{}", self.file_stem(), format.ext()));
        let r = match format {
            Format::Png => self.draw(&BitMapBackend::new(&path, SIZE).into_drawing_area()),
            Format::Svg => self.draw(&SVGBackend::new(&path, SIZE).into_drawing_area()),
        };
        r.map_err(|e| Error::Draw(format!("{}: {e}", path.display())))?;
        Ok(path)
    }
}

type Ctx<'a, DB> =
    ChartContext<'a, DB, Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>>;

/// Grid and axis descriptions, in the chart font.
fn mesh<DB: DrawingBackend>(c: &mut Ctx<'_, DB>, x_desc: impl Into<String>, y_desc: impl Into<String>) -> DrawResult {
    d!(c.configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .label_style(label_style())
        .axis_desc_style(label_style())
        .draw());
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
    let mut chart = d!(ChartBuilder::on(area)
        .caption(title, title_style())
        .margin(12)
        .x_label_area_size(50)
        .y_label_area_size(70)
        .build_cartesian_2d(range(lo, hi, false), 0.0..1.02));
    mesh(&mut chart, "ms", "fraction of requests")?;
    for (i, (name, values)) in series.iter().enumerate() {
        let v = sorted(values);
        let n = v.len() as f64;
        let c = color(i);
        let pts: Vec<(f64, f64)> = v.iter().enumerate().map(|(k, x)| (*x, (k + 1) as f64 / n)).collect();
        d!(chart.draw_series(LineSeries::new(pts, c.stroke_width(3))).map(|s| s
            .label(name.to_string())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 14, y)], c.stroke_width(3)))));
        if markers {
            for (k, (pn, p)) in [("p50", 50.0), ("p90", 90.0), ("p99", 99.0)].iter().enumerate() {
                let Some(x) = percentile_sorted(&v, *p) else { continue };
                let mc = color(k + 5);
                d!(chart
                    .draw_series(PointSeries::of_element(
                        [(x, p / 100.0)],
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

fn timeline<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, run: &RunData) -> DrawResult {
    let root = d!(root.titled(&format!("Timeline: {}", run.name), title_style()));
    let (top, bottom) = root.split_vertically(SIZE.1 / 2 - 20);
    let t_end = run
        .rows
        .iter()
        .filter_map(|r| r.end_s.or(r.sent_s))
        .fold(0.0f64, f64::max)
        .max(1e-3);
    let warm: Vec<f64> = run
        .rows
        .iter()
        .filter(|r| r.phase == recap_schemas::Phase::Warmup)
        .filter_map(|r| r.end_s.or(r.sent_s))
        .collect();
    let warm_end = warm.iter().copied().fold(f64::NAN, f64::max);
    // Top: per-request latencies against when the request was sent.
    let pts = |f: fn(&crate::data::Row) -> Option<f64>| -> Vec<(f64, f64)> {
        run.rows
            .iter()
            .filter(|r| r.ok)
            .filter_map(|r| Some((r.sent_s?, f(r)?)))
            .collect()
    };
    let (ttft, e2e) = (pts(|r| r.ttft_ms), pts(|r| r.e2e_ms));
    let ymax = ttft.iter().chain(&e2e).map(|p| p.1).fold(1.0f64, f64::max) * 1.1;
    let mut c = d!(ChartBuilder::on(&top)
        .caption("Per-request latency by send time", title_style())
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..t_end, 0.0..ymax));
    mesh(&mut c, "time since start (s)", "latency (ms)")?;
    if warm_end.is_finite() {
        d!(
            c.draw_series([Rectangle::new([(0.0, 0.0), (warm_end, ymax)], GREY.mix(0.25).filled())])
                .map(|s| s
                    .label(recap_schemas::Phase::Warmup.as_str())
                    .legend(|(x, y)| Rectangle::new([(x, y - 6), (x + 14, y + 6)], GREY.mix(0.4).filled())))
        );
    }
    for (i, (name, p)) in [("TTFT", &ttft), ("E2E", &e2e)].into_iter().enumerate() {
        let col = color(i);
        d!(c.draw_series(p.iter().map(|xy| Circle::new(*xy, 3, col.filled())))
            .map(|s| s
                .label(name)
                .legend(move |(x, y)| Circle::new((x + 7, y), 4, col.filled()))));
    }
    legend(&mut c, SeriesLabelPosition::UpperLeft)?;
    // Bottom: completions per second and requests in flight, per one-second bins (or finer).
    let bin = (t_end / 30.0).clamp(0.5, 10.0);
    let n = (t_end / bin).ceil() as usize + 1;
    let mut done = vec![0.0f64; n];
    let mut inflight = vec![0.0f64; n];
    for r in &run.rows {
        if let Some(e) = r.end_s {
            if r.ok {
                done[((e / bin) as usize).min(n - 1)] += 1.0 / bin;
            }
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
    let ymax = done.iter().chain(&inflight).copied().fold(1.0f64, f64::max) * 1.15;
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
    for (i, (name, v)) in [("completed requests/s", &done), ("requests in flight", &inflight)]
        .into_iter()
        .enumerate()
    {
        let col = color(i + 2);
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
    Ok(())
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
    d!(c.draw_series(
        pts.iter()
            .map(|p| EmptyElement::at((p.0, p.1)) + Text::new(p.2.clone(), (10, -22), (FONT, 16).into_font()))
    ));
    let mut front: Vec<(f64, f64)> = pts.iter().filter(|p| p.3).map(|p| (p.0, p.1)).collect();
    front.sort_by(|a, b| a.0.total_cmp(&b.0));
    let front_label = if groups.is_some() {
        "Pareto front of the group means"
    } else {
        "Pareto front"
    };
    d!(c.draw_series(LineSeries::new(front.clone(), front_c.stroke_width(3)))
        .map(|s| s
            .label(front_label)
            .legend(move |(lx, ly)| PathElement::new([(lx, ly), (lx + 14, ly)], front_c.stroke_width(3)))));
    d!(c.draw_series(front.iter().map(|p| Circle::new(*p, 9, front_c.stroke_width(2)))));
    let level = s.confidence * 100.0;
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
    legend(&mut c, SeriesLabelPosition::UpperRight)?;
    Ok(())
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
