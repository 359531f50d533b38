//! `recap-plot`: the charts people look at, drawn from `analyze` outputs with plotters.
//!
//! - [`data`]: read a run's analysis (`metrics.parquet`, `icl.parquet`, `summary.json`) or a
//!   sweep's `sweep.json`.
//! - [`chart`]: every chart, drawn to PNG or SVG from the same code.
//! - [`theme`]: size, the bundled font, the colour-blind-safe palette.
//! - [`html`]: one self-contained HTML report with the tables, definitions and charts.
//! - [`live`]: `plot --live`, a terminal dashboard of running captures.
//!
//! [`plot_run`], [`plot_sweep`] and [`plot_compare`] write a folder of charts; [`html_run`],
//! [`html_sweep`] and [`html_compare`] one page each.

pub mod chart;
pub mod data;
pub mod html;
pub mod live;
pub mod theme;

use std::path::{Path, PathBuf};

pub use chart::{Chart, Format};
use data::RunData;

/// Why charts could not be drawn.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The input cannot be charted (no analysis, too few requests, not a sweep).
    #[error("{0}")]
    Input(String),
    /// An input the user named (an analysis, a sweep) cannot be read.
    #[error("cannot read {path}")]
    Unreadable {
        /// The path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A file could not be written.
    #[error("{path}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// plotters failed.
    #[error("drawing {0}")]
    Draw(String),
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

fn mkdir(out: &Path) -> Result<()> {
    std::fs::create_dir_all(out).map_err(|source| Error::Io {
        path: out.to_path_buf(),
        source,
    })
}

/// Charts of one run: latency histograms and CDFs, timeline, token lengths, token agreement.
pub fn plot_run(run: &Path, tokenizer_id: Option<&str>, out: &Path, format: Format) -> Result<Vec<PathBuf>> {
    let data = RunData::load(run, tokenizer_id)?;
    data.require_samples(2)?;
    mkdir(out)?;
    [
        Chart::Distributions(&data),
        Chart::Cdfs(vec![&data]),
        Chart::Timeline(&data),
        Chart::Tokens(&data),
        Chart::Agreement(&data),
    ]
    .iter()
    .map(|c| c.render(out, format))
    .collect()
}

/// Charts of a sweep folder (`sweep.json`): the Pareto front with confidence ellipses and
/// latency against throughput.
pub fn plot_sweep(dir: &Path, out: &Path, format: Format) -> Result<Vec<PathBuf>> {
    let sweep = data::load_sweep(dir)?;
    mkdir(out)?;
    [Chart::Pareto(&sweep), Chart::LatencyThroughput(&sweep)]
        .iter()
        .map(|c| c.render(out, format))
        .collect()
}

/// Two or more runs to compare, each with enough samples to draw.
fn load_compared(runs: &[PathBuf], tokenizer_id: Option<&str>) -> Result<Vec<RunData>> {
    if runs.len() < 2 {
        return Err(Error::Input("--compare needs two or more runs".into()));
    }
    let data = runs
        .iter()
        .map(|r| RunData::load(r, tokenizer_id))
        .collect::<Result<Vec<_>>>()?;
    for d in &data {
        d.require_samples(2)?;
    }
    Ok(data)
}

/// Overlaid latency CDFs of two or more runs.
pub fn plot_compare(runs: &[PathBuf], tokenizer_id: Option<&str>, out: &Path, format: Format) -> Result<Vec<PathBuf>> {
    let data = load_compared(runs, tokenizer_id)?;
    mkdir(out)?;
    Ok(vec![Chart::Cdfs(data.iter().collect()).render(out, format)?])
}

fn write_page(out: &Path, name: &str, page: &str) -> Result<PathBuf> {
    mkdir(out)?;
    let path = out.join(format!("{name}.html"));
    std::fs::write(&path, page).map_err(|source| Error::Io {
        path: path.clone(),
        source,
    })?;
    Ok(path)
}

fn folder_name(p: &Path) -> String {
    std::path::absolute(p)
        .ok()
        .and_then(|a| a.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "report".into())
}

/// `<out>/<run folder name>.html`: the report of one run.
pub fn html_run(run: &Path, tokenizer_id: Option<&str>, out: &Path) -> Result<PathBuf> {
    let data = RunData::load(run, tokenizer_id)?;
    data.require_samples(2)?;
    let name = folder_name(run);
    let page = html::run_report(&data, &out.display().to_string())?;
    write_page(out, &name, &page)
}

/// `<out>/<sweep folder name>.html`: the report of a sweep folder.
pub fn html_sweep(dir: &Path, out: &Path) -> Result<PathBuf> {
    let sweep = data::load_sweep(dir)?;
    let name = folder_name(dir);
    let page = html::sweep_report(&sweep, &dir.display().to_string(), &out.display().to_string())?;
    write_page(out, &name, &page)
}

/// `<out>/compare.html`: two or more runs side by side, with `analyze compare --format json`'s
/// verdicts when `comparison` names that file.
pub fn html_compare(
    runs: &[PathBuf],
    tokenizer_id: Option<&str>,
    comparison: Option<&Path>,
    out: &Path,
) -> Result<PathBuf> {
    let data = load_compared(runs, tokenizer_id)?;
    let cmp = comparison.map(data::load_comparison).transpose()?;
    let page = html::compare_report(&data, cmp.as_ref(), &out.display().to_string())?;
    write_page(out, "compare", &page)
}
