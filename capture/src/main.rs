//! `capture`: parse flags, set up logging, run, map the outcome to an exit code.

use std::process::ExitCode;

use anyhow::Context;
use clap::{CommandFactory, FromArgMatches};
use recap_capture::{run, Args, Outcome};
use recap_schemas::RunStatus;

fn main() -> ExitCode {
    let cmd = Args::command();
    let matches = cmd.clone().get_matches();
    let args = Args::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let command = recap_capture::redact::command_line("capture", &cmd, &matches);
    init_tracing(args.verbose, args.quiet);
    match real_main(args, command) {
        Ok(outcome) => exit_code(&outcome),
        Err(e) => {
            eprintln!("capture: error: {e:#}");
            // 2: the flags, dataset or endpoint cannot be used; 1: the run failed (I/O, a bug).
            let usage = e.downcast_ref::<recap_capture::config::ConfigError>().is_some()
                || matches!(
                    e.downcast_ref::<recap_capture::Error>(),
                    Some(recap_capture::Error::Config(_))
                );
            ExitCode::from(if usage { 2 } else { 1 })
        }
    }
}

/// The exit status of a finished run (`docs/architecture.md`, "Errors"): 130 when interrupted,
/// else 1 when it failed or when no request succeeded (a dead endpoint is not a benchmark),
/// else 0 (a stop condition that held is a finished measurement).
fn exit_code(outcome: &Outcome) -> ExitCode {
    if outcome.status == RunStatus::Interrupted {
        // The user stopped it: whatever it measured so far, 130 says so.
        return ExitCode::from(130);
    }
    if outcome.status == RunStatus::Failed {
        // The manifest and the summary say why; "nothing succeeded" would hide it.
        return ExitCode::from(1);
    }
    if let Some(why) = outcome.summary.nothing_succeeded() {
        eprintln!("capture: error: {why}");
        return ExitCode::from(1);
    }
    match outcome.status {
        RunStatus::Complete | RunStatus::Stopped => ExitCode::SUCCESS,
        _ => ExitCode::from(1),
    }
}

fn real_main(args: Args, command: Vec<String>) -> anyhow::Result<Outcome> {
    if args.is_plan() {
        return plan_main(&args, &command);
    }
    let (live_addr, live_hz) = (args.live.clone(), args.live_hz);
    let mut cfg = args.into_config(command).context("invalid arguments")?;
    let (quiet, json) = (cfg.quiet, cfg.json);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cfg.threads)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let out = cfg.out.clone();
    let live = start_live(&rt, live_addr.as_deref(), live_hz)?;
    cfg.live = live.clone();
    let outcome = rt.block_on(run(cfg));
    if let Some(l) = live {
        rt.block_on(l.close());
    }
    let outcome = outcome.with_context(|| format!("capture into {}", out.display()))?;
    // Results go to stdout (JSON with --json, else the human summary, as analyze does);
    // logs and the live progress line stay on stderr.
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&outcome.summary).context("serializing the summary")?
        );
    } else if !quiet {
        println!("{}", outcome.summary.render());
        if outcome.status != RunStatus::Complete {
            println!("status     {}", outcome.status);
        }
    }
    Ok(outcome)
}

/// A sweep and/or repeats: one run per point and repeat, a line each, then `plan.json`.
fn plan_main(args: &Args, command: &[String]) -> anyhow::Result<Outcome> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(
            args.threads
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
                .max(1),
        )
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let (quiet, json) = (args.quiet, args.json);
    let mut all = Vec::new();
    let mut dead = Vec::new();
    let mut runs = 0usize;
    let live = start_live(&rt, args.live.as_deref(), args.live_hz)?;
    let outcome = recap_capture::plan::run_plan(args, command, &rt, live.clone(), |run, outcome| {
        runs += 1;
        if outcome.status != RunStatus::Interrupted {
            if let Some(why) = outcome.summary.nothing_succeeded() {
                dead.push(format!("{}: {why}", run.dir));
            }
        }
        if json {
            all.push(serde_json::json!({"point": run.point, "repeat": run.repeat, "dir": run.dir, "status": outcome.status, "summary": outcome.summary}));
        } else if !quiet {
            println!(
                "== {} (repeat {}): {}\n{}\n",
                run.point,
                run.repeat,
                outcome.status,
                outcome.summary.render()
            );
        }
    });
    if let Some(l) = live {
        rt.block_on(l.close());
    }
    let outcome = outcome.with_context(|| format!("plan into {}", args.out.display()))?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&all).context("serializing the summaries")?
        );
    } else if !quiet {
        println!(
            "plan written to {}",
            args.out.join(recap_schemas::plan::PLAN_FILE).display()
        );
    }
    // A capacity search expects points where nothing succeeds (past the knee): it measured
    // nothing only when no point succeeded.
    if matches!(args.search(), Ok(Some(_))) && dead.len() < runs {
        dead.clear();
    }
    if !dead.is_empty() && outcome.status != RunStatus::Interrupted {
        // Reported here, once for the plan, so the last run's status cannot hide an earlier one.
        for d in &dead {
            eprintln!("capture: error: {d}");
        }
        return Ok(Outcome {
            status: RunStatus::Failed,
            ..outcome
        });
    }
    Ok(outcome)
}

/// Starts `--live` on the runtime and names its address on stderr (whatever `--quiet` says:
/// with port 0 it is the only way to learn it).
fn start_live(
    rt: &tokio::runtime::Runtime,
    addr: Option<&str>,
    hz: f64,
) -> anyhow::Result<Option<std::sync::Arc<recap_capture::live::Live>>> {
    let Some(addr) = addr else { return Ok(None) };
    let live = rt.block_on(recap_capture::live::Live::start(addr, hz))?;
    eprintln!("capture: live on http://{} (/metrics, /snapshot, /stream)", live.addr());
    Ok(Some(live))
}

fn init_tracing(verbose: u8, quiet: bool) {
    let default = match (quiet, verbose) {
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
        .with_ansi({
            use std::io::IsTerminal;
            std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        })
        .with_target(false)
        .init();
}
