//! `analyze`: parse the command line, run the subcommand, print, map errors to exit codes.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use recap_analyze::load::RunFolder;
use recap_analyze::metrics::{Definitions, E2eEnd, IslMode, LatencyFrom, TokenSource, TtftOn};
use recap_analyze::report::{report, ReportOptions};
use recap_analyze::summary::{Slo, SloExt, SummaryText};
use recap_analyze::sweep::SweepOutput;
use recap_analyze::tokenize::{Counter, SpecialText};

/// Offline, re-scorable metrics from Recap captures.
#[derive(Debug, Parser)]
#[command(name = "analyze", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// No progress bars, no console summary.
    #[arg(long, short, global = true)]
    quiet: bool,
    /// More logging; RUST_LOG overrides.
    #[arg(long, short, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Tokenize and score runs; writes <run>/analysis/<tokenizer-id>/{metrics.parquet,summary.*}.
    Report(ReportArgs),
    /// Score many runs into one table labelled by load, with the Pareto front and, for repeated
    /// runs of one load, confidence intervals and ellipses; writes sweep.{json,csv,parquet}.
    Sweep(SweepArgs),
    /// Run SQL over the tables `requests`, `events` and `metrics` of one or more runs.
    Sql {
        /// Run folders, then the query as the last argument.
        #[arg(required = true, num_args = 2..)]
        args: Vec<String>,
        /// Which analysis provides `metrics` (default: the newest).
        #[arg(long, value_name = "ID")]
        tokenizer_id: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: recap_analyze::sql::Format,
    },
}

#[derive(Debug, Args)]
struct ScoreArgs {
    /// tokenizer.json or tokenizer.json.gz; a tokenizer_config.json beside it gives the chat template.
    #[arg(long, value_name = "FILE")]
    tokenizer: PathBuf,
    /// Chat input length: through the chat template, or message contents joined by newlines.
    #[arg(long, default_value = "template", value_parser = choice(IslMode::ALL, IslMode::as_str))]
    isl: IslMode,
    /// Where TTFT and E2E start: the answered `sent`, or the connect of a connection the
    /// request opened (what a client with a connection per request measures).
    #[arg(long, default_value = "sent", value_parser = choice(LatencyFrom::ALL, LatencyFrom::as_str))]
    latency_from: LatencyFrom,
    /// Event that ends TTFT.
    #[arg(long, default_value = "output", value_parser = choice(TtftOn::ALL, TtftOn::as_str))]
    ttft_on: TtftOn,
    /// Event that ends E2E latency.
    #[arg(long, default_value = "last-token", value_parser = choice(E2eEnd::ALL, E2eEnd::as_str))]
    e2e_end: E2eEnd,
    /// Token counts from the tokenizer or the server's usage.
    #[arg(long, default_value = "tokenizer", value_parser = choice(TokenSource::ALL, TokenSource::as_str))]
    tokens: TokenSource,
    /// How literal special-token strings in text count.
    #[arg(long, value_enum, default_value = "special")]
    special_text: SpecialText,
    /// Goodput SLOs, e.g. ttft=200ms,tpot=50ms,e2e=10s.
    #[arg(long, default_value = "", value_name = "NAME=DURATION,...")]
    slo: String,
    /// Tokenizer threads (default: all cores).
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
}

#[derive(Debug, Args)]
struct ReportArgs {
    /// Run folders.
    #[arg(required = true)]
    runs: Vec<PathBuf>,
    #[command(flatten)]
    score: ScoreArgs,
    /// Print the summaries as JSON on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct SweepArgs {
    /// Run folders.
    #[arg(required = true)]
    runs: Vec<PathBuf>,
    #[command(flatten)]
    score: ScoreArgs,
    /// Folder for sweep.{json,csv,parquet}.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// x axis of the Pareto front and ellipses (a sweep column).
    #[arg(long, default_value = "output_tokens_per_s", value_name = "COLUMN")]
    x: String,
    /// y axis of the Pareto front and ellipses.
    #[arg(long, default_value = "output_tokens_per_s_per_user", value_name = "COLUMN")]
    y: String,
    /// Confidence level of intervals and ellipses over repeated runs.
    #[arg(long, default_value_t = 0.95, value_name = "LEVEL")]
    confidence: f64,
    /// Print the sweep as JSON on stdout.
    #[arg(long)]
    json: bool,
}

/// Scores every run; returns (summary, load) pairs.
fn score_runs(
    rt: &tokio::runtime::Runtime,
    runs: &[PathBuf],
    a: &ScoreArgs,
    progress: bool,
    mut each: impl FnMut(&recap_analyze::report::Report),
) -> anyhow::Result<Vec<(recap_analyze::summary::Summary, recap_schemas::manifest::LoadSpec)>> {
    if let Some(n) = a.threads {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
            .context("setting tokenizer threads")?;
    }
    let counter = Counter::load(&a.tokenizer, a.special_text)?;
    let opts = ReportOptions {
        definitions: Definitions {
            latency_from: a.latency_from,
            ttft_on: a.ttft_on,
            e2e_end: a.e2e_end,
            tokens: a.tokens,
        },
        isl: a.isl,
        slo: Slo::parse(&a.slo)?,
        progress,
    };
    let mut out = Vec::new();
    for dir in runs {
        let run = RunFolder::open(dir).with_context(|| format!("opening run {}", dir.display()))?;
        let r = rt
            .block_on(report(&run, &counter, &opts))
            .with_context(|| format!("analyzing {}", dir.display()))?;
        each(&r);
        out.push((r.summary, run.manifest.load.clone()));
    }
    Ok(out)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default = match (cli.quiet, cli.verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, _) => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(color_on_stderr())
        .with_target(false)
        .init();
    match real_main(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("analyze: error: {e:#}");
            // 2: what the user gave cannot be used (flags, paths, files, the query);
            // 1: the analysis failed at run time (I/O, a bug).
            let usage = matches!(
                e.downcast_ref::<recap_analyze::Error>(),
                Some(recap_analyze::Error::Input(_) | recap_analyze::Error::Query(_))
            );
            ExitCode::from(if usage { 2 } else { 1 })
        }
    }
}

/// ANSI colour in logs only on a terminal, and never with `NO_COLOR` set.
fn color_on_stderr() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

fn real_main(cli: Cli) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    match cli.command {
        Command::Report(a) => {
            let show = !cli.quiet && !a.json;
            let all = score_runs(&rt, &a.runs, &a.score, show, |r| {
                if show {
                    println!("{}\nwritten to {}\n", r.summary.to_console(), r.dir.display());
                }
            })?;
            if a.json {
                // Always an array, one summary per run, also for one run: scripts need one shape.
                let v: Vec<_> = all.iter().map(|x| &x.0).collect();
                println!("{}", serde_json::to_string_pretty(&v)?);
            }
            Ok(())
        }
        Command::Sweep(a) => {
            let all = score_runs(&rt, &a.runs, &a.score, !cli.quiet && !a.json, |_| {})?;
            let sweep = recap_analyze::sweep::build(&all, &a.x, &a.y, a.confidence)?;
            sweep
                .write(&a.out)
                .with_context(|| format!("writing {}", a.out.display()))?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&sweep)?);
            } else if !cli.quiet {
                println!("{}written to {}", sweep.to_console(), a.out.display());
            }
            Ok(())
        }
        Command::Sql {
            mut args,
            tokenizer_id,
            format,
        } => {
            let query = args.pop().context("missing query")?;
            let runs = args
                .iter()
                .map(|d| RunFolder::open(std::path::Path::new(d)).with_context(|| format!("opening run {d}")))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let out = rt.block_on(async {
                let ctx = recap_analyze::sql::session(&runs, tokenizer_id.as_deref()).await?;
                recap_analyze::sql::run_query(&ctx, &query, format).await
            })?;
            println!("{out}");
            Ok(())
        }
    }
}

/// A clap parser for a closed set of the contract's values (its spellings are the flag
/// values, listed in `--help`).
fn choice<T: Copy + Send + Sync + 'static>(
    all: &'static [T],
    as_str: fn(T) -> &'static str,
) -> impl clap::builder::TypedValueParser<Value = T> {
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(all.iter().map(|v| as_str(*v))).map(move |text| {
        *all.iter()
            .find(|v| as_str(**v) == text)
            .expect("invariant: clap accepted only listed values")
    })
}
