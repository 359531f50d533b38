//! `analyze`: parse the command line, run the subcommand, print, map errors to exit codes.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use recap_analyze::metrics::{Definitions, E2eEnd, IslMode, ItlDefinition, LatencyFrom, TokenSource, TtftOn};
use recap_analyze::report::{report, ReportOptions};
use recap_analyze::store::RunFolder;
use recap_analyze::summary::{Slo, SloExt, SummaryText, Window};
use recap_analyze::sweep::SweepOutput;
use recap_analyze::template::ChatTemplate;
use recap_analyze::tokenize::{Counter, SpecialText};
use recap_schemas::Api;

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
    /// Whether runs differ from the first (the base): per latency metric and percentile, the
    /// change with a bootstrap interval, a rank test, and a verdict (better, worse, same).
    Compare(CompareArgs),
    /// Prepare token-exact workloads for capture (synthetic, ShareGPT, traces) and inspect them.
    #[command(subcommand)]
    Dataset(DatasetCommand),
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

#[derive(Debug, Subcommand)]
enum DatasetCommand {
    /// Prompts of exact input lengths (fixed or a distribution), optionally with shared prefixes.
    Synthetic(SyntheticArgs),
    /// ShareGPT conversations (or prompt/answer JSONL) with the reference answer's length as
    /// the output budget.
    #[command(visible_alias = "convert")]
    Sharegpt(SharegptArgs),
    /// A request trace (Mooncake, BurstGPT): its timestamps, lengths and shared prefix blocks.
    Trace(TraceArgs),
    /// Input/output lengths and prefix sharing of a dataset file, counted with a tokenizer.
    Inspect(InspectArgs),
}

#[derive(Debug, Args)]
struct DatasetTokenizer {
    /// tokenizer.json or tokenizer.json.gz; the chat template comes from chat_template.jinja, chat_template.json or tokenizer_config.json beside it.
    #[arg(long, value_name = "FILE")]
    tokenizer: PathBuf,
    /// Chat template to render with instead: a tokenizer_config.json or a .jinja file.
    #[arg(long, value_name = "FILE")]
    chat_template: Option<PathBuf>,
    /// Tokenizer threads (default: all cores).
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
}

#[derive(Debug, Args)]
struct DatasetOut {
    /// Rows for the completions API (`prompt`); counted with the tokenizer's BOS.
    #[arg(long, conflicts_with = "chat")]
    completions: bool,
    /// Rows for the chat API (`messages`, the default); counted through the chat template.
    #[arg(long)]
    chat: bool,
    /// Rows for the embeddings API (`input`, one text each: `capture --batch-size N` sends N
    /// per request); each text counted with the tokenizer's special tokens, as embedded.
    #[arg(long, conflicts_with_all = ["chat", "completions"])]
    embeddings: bool,
    /// Write `ignore_eos: true` and `min_tokens = max_tokens`, so servers generate exactly the budget.
    #[arg(long)]
    ignore_eos: bool,
    /// The JSONL file to write.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Print what was written as JSON on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct SyntheticArgs {
    #[command(flatten)]
    tok: DatasetTokenizer,
    #[command(flatten)]
    out: DatasetOut,
    /// Rows to generate.
    #[arg(long, value_name = "N")]
    count: usize,
    /// Input tokens: N, normal:MEAN:STDDEV, uniform:MIN:MAX or file:HISTOGRAM.csv.
    #[arg(long, value_name = "LENGTHS")]
    isl: recap_analyze::dataset::lengths::LengthDist,
    /// With a plain --isl N: a normal distribution of this standard deviation.
    #[arg(long, value_name = "TOKENS")]
    isl_stddev: Option<f64>,
    /// Output budget (max_tokens), in the same forms as --isl.
    #[arg(long, value_name = "LENGTHS")]
    osl: recap_analyze::dataset::lengths::LengthDist,
    /// With a plain --osl N: a normal distribution of this standard deviation.
    #[arg(long, value_name = "TOKENS")]
    osl_stddev: Option<f64>,
    /// Tokens of content every prompt of a prefix group starts with.
    #[arg(long, default_value_t = 0, value_name = "TOKENS")]
    shared_prefix: u32,
    /// Distinct shared prefixes; each row draws one.
    #[arg(long, default_value_t = 1, value_name = "K", requires = "shared_prefix")]
    prefix_groups: u32,
    /// Model context: input lengths are lowered so input + output fits.
    #[arg(long, value_name = "TOKENS")]
    context: Option<u32>,
    /// Seed of every random choice: the same seed and tokenizer give the same file.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Rerank rows (`capture --api rerank`): a query and N documents of --isl tokens each.
    #[arg(long, value_name = "N", conflicts_with_all = ["chat", "completions", "embeddings", "shared_prefix"])]
    rerank_documents: Option<usize>,
    /// With --rerank-documents: tokens of each row's query.
    #[arg(long, default_value_t = 16, value_name = "TOKENS", requires = "rerank_documents")]
    query_isl: u32,
}

#[derive(Debug, Args)]
struct SharegptArgs {
    /// ShareGPT JSON (array or one item per line), or JSONL with prompt/messages and an answer field.
    input: PathBuf,
    #[command(flatten)]
    tok: DatasetTokenizer,
    #[command(flatten)]
    out: DatasetOut,
    /// max_tokens for every row instead of the reference answer's length (and for items without one).
    #[arg(long, value_name = "TOKENS")]
    osl: Option<u32>,
    /// Use --osl for every row, not only for items without a reference answer.
    #[arg(long, requires = "osl")]
    no_reference_osl: bool,
    /// Model context: input + output must fit.
    #[arg(long, value_name = "TOKENS")]
    context: Option<u32>,
    /// What an item over --context becomes.
    #[arg(long, value_enum, default_value = "drop")]
    over_context: recap_analyze::dataset::convert::OverContext,
    /// Keep the first N usable items.
    #[arg(long, value_name = "N")]
    count: Option<usize>,
}

#[derive(Debug, Args)]
struct TraceArgs {
    /// The trace file.
    input: PathBuf,
    /// Its format.
    #[arg(long, value_enum)]
    format: recap_analyze::dataset::trace::TraceFormat,
    #[command(flatten)]
    tok: DatasetTokenizer,
    #[command(flatten)]
    out: DatasetOut,
    /// Tokens per hash_ids block.
    #[arg(long, default_value_t = recap_analyze::dataset::trace::mooncake::BLOCK_TOKENS, value_name = "TOKENS")]
    block_tokens: u32,
    /// Keep the first N requests.
    #[arg(long, value_name = "N")]
    count: Option<usize>,
    /// Seed of the composed text.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

#[derive(Debug, Args)]
struct InspectArgs {
    /// A dataset file (JSONL rows).
    input: PathBuf,
    #[command(flatten)]
    tok: DatasetTokenizer,
    /// Print the statistics as JSON on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct ScoreArgs {
    /// tokenizer.json or tokenizer.json.gz; the chat template comes from chat_template.jinja, chat_template.json or tokenizer_config.json beside it.
    #[arg(long, value_name = "FILE")]
    tokenizer: PathBuf,
    /// Chat input length: through the chat template, or message contents joined by newlines.
    #[arg(long, default_value = "template", value_parser = choice(IslMode::ALL, IslMode::as_str))]
    isl: IslMode,
    /// Where TTFT and E2E start: the answered `sent`, the connect of a connection the request
    /// opened (what a client with a connection per request measures), or the time the load
    /// schedule intended (client queueing included: no coordinated omission).
    #[arg(long, default_value = "sent", value_parser = choice(LatencyFrom::ALL, LatencyFrom::as_str))]
    latency_from: LatencyFrom,
    /// Event that ends TTFT.
    #[arg(long, default_value = "output", value_parser = choice(TtftOn::ALL, TtftOn::as_str))]
    ttft_on: TtftOn,
    /// Event that ends E2E latency.
    #[arg(long, default_value = "last-token", value_parser = choice(E2eEnd::ALL, E2eEnd::as_str))]
    e2e_end: E2eEnd,
    /// Inter-token latency when a chunk carries several tokens (`itl_ms`): `chunk` (the chunk
    /// gaps, vLLM; no per-token work), `split` (SGLang), `divided` (GenAI-Perf),
    /// `first-gets-gap` (inference-perf), `mean` (AIPerf, GuideLLM). Per-token choices time each
    /// token by the event that delivered its last byte and read the events.
    #[arg(long, default_value = "chunk", value_parser = choice(ItlDefinition::ALL, ItlDefinition::as_str))]
    itl: ItlDefinition,
    /// Token counts from the tokenizer or the server's usage.
    #[arg(long, default_value = "tokenizer", value_parser = choice(TokenSource::ALL, TokenSource::as_str))]
    tokens: TokenSource,
    /// How literal special-token strings in text count.
    #[arg(long, value_enum, default_value = "special")]
    special_text: SpecialText,
    /// Count with the `tokenizers` library itself instead of Recap's fast path (the counts
    /// are the same; this is slower and needs no trust in the fast path).
    #[arg(long)]
    exact: bool,
    /// Goodput SLOs, e.g. ttft=200ms,tpot=50ms,e2e=10s.
    #[arg(long, default_value = "", value_name = "NAME=DURATION,...")]
    slo: String,
    /// Latency bounds checked as MLPerf LoadGen checks a Server run (the percentile, and early
    /// stopping at 99 % confidence), e.g. ttft_p99=2000ms,tpot_p99=80ms.
    #[arg(long, default_value = "", value_name = "METRIC_pP=DURATION,...")]
    constraint: String,
    /// An MLPerf Inference benchmark's Server or Interactive constraints (TTFT and TPOT p99,
    /// 600 s minimum duration), checked like --constraint.
    #[arg(long, value_name = "SET", value_parser = clap::builder::PossibleValuesParser::new(
        recap_analyze::constraints::MLPERF.iter().map(|s| s.name)))]
    mlperf: Option<String>,
    /// Windows reported: the measure window (`full`), or also its steady state (`steady`: from
    /// the first measured request's end to the last one's send).
    #[arg(long, default_value = "full", value_parser = choice(Window::ALL, Window::as_str))]
    window: Window,
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
    /// Interval half-width, as a share of the mean, that each group's `repeats_needed` is
    /// computed for (0.05: ±5 %).
    #[arg(long, default_value_t = 0.05, value_name = "SHARE")]
    target_width: f64,
    /// Print the sweep as JSON on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct CompareArgs {
    /// Run folders: the base first, then the runs compared with it.
    #[arg(required = true, num_args = 2..)]
    runs: Vec<PathBuf>,
    #[command(flatten)]
    score: ScoreArgs,
    /// Percentiles compared, comma-separated (p50, p90, p95, p99, p99_9).
    #[arg(long, default_value = "p50,p99", value_delimiter = ',')]
    stats: Vec<String>,
    /// Confidence of the bootstrap intervals.
    #[arg(long, default_value_t = 0.95, value_name = "LEVEL")]
    confidence: f64,
    /// Smallest change, relative to the base, called a difference (0.05: 5 %).
    #[arg(long, default_value_t = 0.05, value_name = "SHARE")]
    threshold: f64,
    /// Bootstrap resamples.
    #[arg(long, default_value_t = 1000, value_name = "N")]
    resamples: usize,
    /// Bootstrap seed (the same seed gives the same intervals).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output: a table, Markdown, or JSON.
    #[arg(long, value_enum, default_value = "table")]
    format: CompareFormat,
    /// Exit 1 when a statistic of a run is `worse` than the base (or `different`: worse or
    /// better), for CI.
    #[arg(long, value_enum)]
    fail_on: Option<FailOn>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum CompareFormat {
    Table,
    Markdown,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum FailOn {
    Worse,
    Different,
}

/// Scores every run; returns (summary, load) pairs.
fn threads(n: Option<usize>) -> anyhow::Result<()> {
    if let Some(n) = n {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
            .context("setting tokenizer threads")?;
    }
    Ok(())
}

/// The tokenizer and chat template of a dataset command.
fn dataset_tokenizer(t: &DatasetTokenizer) -> anyhow::Result<(Counter, Option<ChatTemplate>)> {
    threads(t.threads)?;
    let counter = Counter::load(&t.tokenizer, SpecialText::Special)?;
    let template = t.chat_template.as_deref().map(ChatTemplate::load_file).transpose()?;
    Ok((counter, template))
}

fn run_dataset(cmd: DatasetCommand, quiet: bool) -> anyhow::Result<()> {
    use recap_analyze::dataset::{self, compose::Composer, Measure};
    let started = std::time::Instant::now();
    let api = |o: &DatasetOut| match (o.completions, o.embeddings) {
        (_, true) => Api::Embeddings,
        (true, false) => Api::Completions,
        (false, false) => Api::Chat,
    };
    let (command, out, rows, adjusted, measure_parts) = match cmd {
        DatasetCommand::Inspect(a) => {
            let (counter, template) = dataset_tokenizer(&a.tok)?;
            let completions = Measure::new(&counter, template.as_ref(), Api::Completions)?;
            let chat = Measure::new(&counter, template.as_ref(), Api::Chat).ok();
            let ins = dataset::inspect::inspect(&a.input, chat.as_ref(), &completions)?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&ins)?);
            } else if !quiet {
                print!("{}", ins.to_console());
            }
            return Ok(());
        }
        DatasetCommand::Synthetic(a) => {
            let (counter, template) = dataset_tokenizer(&a.tok)?;
            // Rerank texts are counted on their own (no template): as embedded texts are.
            let rows_api = if a.rerank_documents.is_some() {
                Api::Embeddings
            } else {
                api(&a.out)
            };
            let measure = Measure::new(&counter, template.as_ref(), rows_api)?;
            let composer = Composer::new(&|t| measure.tokens(t))?;
            let spec = dataset::synthetic::Spec {
                count: a.count,
                isl: a.isl.with_stddev(a.isl_stddev, "isl")?,
                osl: a.osl.with_stddev(a.osl_stddev, "osl")?,
                shared_prefix: a.shared_prefix,
                prefix_groups: a.prefix_groups,
                ignore_eos: a.out.ignore_eos,
                context: a.context,
                seed: a.seed,
            };
            let (rows, adjusted, api) = match a.rerank_documents {
                Some(n) => (
                    dataset::synthetic::generate_rerank(&spec, &measure, &composer, n, a.query_isl)?,
                    Default::default(),
                    Api::Rerank,
                ),
                None => {
                    let (rows, adjusted) = dataset::synthetic::generate(&spec, &measure, &composer)?;
                    (rows, adjusted, measure.api())
                }
            };
            ("synthetic", a.out, rows, adjusted, (counter.id().to_string(), api))
        }
        DatasetCommand::Sharegpt(a) => {
            let (counter, template) = dataset_tokenizer(&a.tok)?;
            let measure = Measure::new(&counter, template.as_ref(), api(&a.out))?;
            let spec = dataset::convert::Spec {
                reference_osl: !a.no_reference_osl,
                fallback_osl: a.osl,
                context: a.context,
                over_context: a.over_context,
                limit: a.count,
                ignore_eos: a.out.ignore_eos,
            };
            let (rows, adjusted) = dataset::convert::generate(&a.input, &spec, &measure)?;
            (
                "sharegpt",
                a.out,
                rows,
                adjusted,
                (counter.id().to_string(), measure.api()),
            )
        }
        DatasetCommand::Trace(a) => {
            let (counter, template) = dataset_tokenizer(&a.tok)?;
            let measure = Measure::new(&counter, template.as_ref(), api(&a.out))?;
            let composer = Composer::new(&|t| measure.tokens(t))?;
            let (trace, skipped) = dataset::trace::read(a.format, &a.input)?;
            let spec = dataset::trace::Spec {
                block_tokens: a.block_tokens,
                ignore_eos: a.out.ignore_eos,
                limit: a.count,
                seed: a.seed,
            };
            let (rows, mut adjusted) = dataset::trace::generate(&trace, &spec, &measure, &composer)?;
            if skipped > 0 {
                adjusted.insert("trace lines skipped (no output tokens)".into(), skipped);
            }
            (
                "trace",
                a.out,
                rows,
                adjusted,
                (counter.id().to_string(), measure.api()),
            )
        }
    };
    dataset::write_rows(&out.out, &rows).with_context(|| format!("writing {}", out.out.display()))?;
    let written = dataset::Written::new(command, &out.out, &rows, measure_parts, started, adjusted);
    if out.json {
        println!("{}", serde_json::to_string_pretty(&written)?);
    } else if !quiet {
        print!("{}", written.to_console());
    }
    Ok(())
}

fn score_runs(
    rt: &tokio::runtime::Runtime,
    runs: &[PathBuf],
    a: &ScoreArgs,
    progress: bool,
    mut each: impl FnMut(&recap_analyze::report::Report),
) -> anyhow::Result<Vec<(recap_analyze::summary::Summary, recap_schemas::Manifest)>> {
    threads(a.threads)?;
    // Every run folder is checked before the tokenizer is read: a mistyped run is the first
    // thing to hear about, and a long sweep never fails on its last folder.
    let opened = runs
        .iter()
        .map(|dir| RunFolder::open(dir).map_err(anyhow::Error::from))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let counter = Counter::load(&a.tokenizer, a.special_text)?.with_exact(a.exact);
    let opts = ReportOptions {
        definitions: Definitions {
            latency_from: a.latency_from,
            ttft_on: a.ttft_on,
            e2e_end: a.e2e_end,
            tokens: a.tokens,
            itl: a.itl,
        },
        isl: a.isl,
        slo: Slo::parse(&a.slo)?,
        window: a.window,
        constraints: recap_analyze::constraints::Spec::parse(a.mlperf.as_deref(), &a.constraint)?,
        progress,
    };
    let mut out = Vec::new();
    for run in opened {
        let r = rt
            .block_on(report(&run, &counter, &opts))
            .with_context(|| format!("analyzing {}", run.dir.display()))?;
        each(&r);
        out.push((r.summary, run.manifest.clone()));
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
            let usage = e.chain().any(|c| {
                c.downcast_ref::<recap_analyze::Error>()
                    .is_some_and(recap_analyze::Error::is_usage)
            });
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
            let sweep = recap_analyze::sweep::build(&all, &a.x, &a.y, a.confidence, a.target_width)?;
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
        Command::Dataset(cmd) => run_dataset(cmd, cli.quiet),
        Command::Compare(a) => {
            use recap_analyze::compare::{compare, render, Options, Samples, Verdict};
            if !(0.0 < a.confidence && a.confidence < 1.0) {
                return Err(recap_analyze::Error::Input(format!(
                    "--confidence {} is not between 0 and 1",
                    a.confidence
                ))
                .into());
            }
            let mut rows = Vec::new();
            let scored = score_runs(&rt, &a.runs, &a.score, false, |r| rows.push(r.rows.clone()))?;
            let samples: Vec<Samples> = scored
                .into_iter()
                .zip(rows)
                .map(|((summary, manifest), rows)| Samples::of(summary.scoring.run, manifest, &rows))
                .collect();
            let opts = Options {
                confidence: a.confidence,
                threshold: a.threshold,
                resamples: a.resamples,
                seed: a.seed,
            };
            let c = compare(&samples, &a.stats, opts)?;
            match a.format {
                CompareFormat::Json => println!("{}", serde_json::to_string_pretty(&c)?),
                CompareFormat::Markdown => print!("{}", render(&c, true)),
                CompareFormat::Table => {
                    if !cli.quiet {
                        print!("{}", render(&c, false));
                    }
                }
            }
            let failed = match a.fail_on {
                Some(FailOn::Worse) => c.any(Verdict::Worse),
                Some(FailOn::Different) => c.any(Verdict::Worse) || c.any(Verdict::Better),
                None => false,
            };
            if failed {
                let what = if a.fail_on == Some(FailOn::Worse) {
                    "is worse than"
                } else {
                    "differs from"
                };
                anyhow::bail!("a run {what} the base (--fail-on)");
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
                .map(|d| RunFolder::open(std::path::Path::new(d)).map_err(anyhow::Error::from))
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
