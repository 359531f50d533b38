//! `plot`: charts from `analyze` outputs (PNG by default, `--format svg`, or one HTML report
//! with `--html`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use recap_plot::{html_compare, html_run, html_sweep, plot_compare, plot_run, plot_sweep, Format};

/// Draw charts of an analyzed run, a sweep folder, or several runs compared.
///
/// `plot RUN --out DIR` (one run, its newest analysis), `plot SWEEP_DIR --out DIR` (a folder
/// holding sweep.json), `plot RUN_A RUN_B --compare --out DIR` (overlaid CDFs). With `--html`,
/// one self-contained page instead of images: `DIR/<name>.html` (`DIR/compare.html`).
#[derive(Debug, Parser)]
#[command(name = "plot", version)]
struct Cli {
    /// A run folder, a sweep folder, or (with --compare) several run folders.
    #[arg(required_unless_present = "live")]
    inputs: Vec<PathBuf>,
    /// Folder for the images.
    #[arg(long, value_name = "DIR", required_unless_present = "live")]
    out: Option<PathBuf>,
    /// Watch running captures instead: a terminal dashboard of their `capture --live`
    /// addresses (`http://127.0.0.1:9464`), merged into one view; `q` quits.
    #[arg(long, value_name = "URL[,URL...]", value_delimiter = ',', conflicts_with_all = ["inputs", "out", "compare", "html"])]
    live: Vec<String>,
    /// Overlay the runs' latency CDFs.
    #[arg(long)]
    compare: bool,
    /// Write one self-contained HTML report (tables, definitions, inline SVG charts, the run's
    /// facts, how to reproduce) instead of images.
    #[arg(long)]
    html: bool,
    /// With `--compare --html`: the JSON `analyze compare --format json` printed, whose
    /// verdicts the report draws.
    #[arg(long, value_name = "FILE", requires_all = ["compare", "html"])]
    comparison: Option<PathBuf>,
    /// Image format.
    #[arg(long, value_enum, default_value = "png")]
    format: Format,
    /// Which analysis of a run to draw (default: the newest).
    #[arg(long, value_name = "ID")]
    tokenizer_id: Option<String>,
    /// Print nothing but errors.
    #[arg(long, short)]
    quiet: bool,
    /// More logging (repeat for more); RUST_LOG overrides.
    #[arg(long, short, action = clap::ArgAction::Count)]
    verbose: u8,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default = match (cli.quiet, cli.verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, _) => "debug",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default)),
        )
        .with_writer(std::io::stderr)
        .with_ansi({
            use std::io::IsTerminal;
            std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        })
        .with_target(false)
        .init();
    match run(&cli) {
        Ok(files) => {
            if !cli.quiet {
                for f in files {
                    println!("{}", f.display());
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("plot: error: {e:#}");
            // 2: the inputs cannot be charted; 1: drawing or writing failed.
            let usage = matches!(
                e.downcast_ref::<recap_plot::Error>(),
                Some(recap_plot::Error::Input(_) | recap_plot::Error::Unreadable { .. })
            );
            ExitCode::from(if usage { 2 } else { 1 })
        }
    }
}

fn run(cli: &Cli) -> anyhow::Result<Vec<PathBuf>> {
    if !cli.live.is_empty() {
        let urls: Vec<String> = cli
            .live
            .iter()
            .map(|u| {
                if u.contains("://") {
                    u.clone()
                } else {
                    format!("http://{u}")
                }
            })
            .collect();
        recap_plot::live::watch(&urls).context("the live dashboard")?;
        return Ok(Vec::new());
    }
    let id = cli.tokenizer_id.as_deref();
    let out = cli.out.clone().unwrap_or_default();
    let out = &out;
    if cli.compare {
        if cli.html {
            return Ok(vec![html_compare(&cli.inputs, id, cli.comparison.as_deref(), out)?]);
        }
        return Ok(plot_compare(&cli.inputs, id, out, cli.format)?);
    }
    let mut files = Vec::new();
    for input in &cli.inputs {
        let sweep = input.join(recap_schemas::analysis::SWEEP_JSON).exists();
        let made = match (sweep, cli.html) {
            (true, true) => html_sweep(input, out).map(|p| vec![p]),
            (true, false) => plot_sweep(input, out, cli.format),
            (false, true) => html_run(input, id, out).map(|p| vec![p]),
            (false, false) => plot_run(input, id, out, cli.format),
        };
        files.extend(made.with_context(|| format!("plotting {}", input.display()))?);
    }
    Ok(files)
}
