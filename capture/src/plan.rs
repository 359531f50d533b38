//! Plans: several load points (`--concurrency 1,4,16`, `--rate 2,4,8`) and repeats of each
//! (`--repeat N`), run one after another through the same [`crate::run`] as a single run.
//!
//! Each point and repeat is a normal run folder inside `--out` (`c4-r2/`), whose manifest
//! names its plan point; `plan.json` lists them all and their status, rewritten after each
//! run, so a plan stopped half way says what ran, and carries the plan's own `status`. Every
//! point's flags are validated before the first run starts. A run that does not complete
//! (Ctrl-C, a failed recording) ends the plan, and so does Ctrl-C during `--pause`: the runs
//! not started stay `pending`.

use std::path::Path;
use std::time::SystemTime;

use recap_schemas::plan::{Plan, PlanPoint, PlanRun, PLAN_FILE};
use recap_schemas::{PlanRunStatus, RunStatus};

use crate::config::{Args, Config};
use crate::run::Outcome;
use crate::{Error, Result};

/// Runs every point and repeat of `args`; `each` sees every finished run. Returns the last
/// run's outcome (the first that did not complete, if any).
pub fn run_plan(
    args: &Args,
    command: &[String],
    rt: &tokio::runtime::Runtime,
    mut each: impl FnMut(&PlanRun, &Outcome),
) -> Result<Outcome> {
    let out = &args.out;
    let non_empty = std::fs::read_dir(out).is_ok_and(|mut d| d.next().is_some());
    if non_empty && !args.force {
        return Err(Error::Config(format!(
            "--out {} already exists and is not empty; pass --force to replace the plan in it",
            out.display()
        )));
    }
    let stamp = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let plan_id = format!("plan-{stamp}-{:08x}", rand::random::<u32>());
    // Read once: every run of the plan shares the dataset (and the run to replay).
    let inputs = args
        .load_inputs()
        .map_err(|e| Error::Config(recap_schemas::error_chain(&e)))?;
    let mut configs: Vec<(PlanRun, Config)> = Vec::new();
    for point in args.points() {
        for repeat in 1..=args.repeat {
            let label = point.label();
            let dir = format!("{label}-r{repeat}");
            let mut cfg = args
                .for_point(&point, out.join(&dir))
                .into_config_with(command.to_vec(), inputs.clone())
                .map_err(|e| Error::Config(format!("point {label}: {e}")))?;
            cfg.plan = Some(PlanPoint {
                plan_id: plan_id.clone(),
                point: label.clone(),
                repeat,
                repeats: args.repeat,
            });
            let run = PlanRun {
                point: label,
                repeat,
                dir,
                status: PlanRunStatus::Pending,
            };
            configs.push((run, cfg));
        }
    }
    let mut plan = Plan {
        plan_id,
        runs: configs.iter().map(|(r, _)| r.clone()).collect(),
        pause_s: args.pause.map_or(0.0, |d| d.as_secs_f64()),
        status: Some(RunStatus::Running),
        status_message: None,
    };
    std::fs::create_dir_all(out).map_err(|source| Error::Io {
        path: out.clone(),
        source,
    })?;
    write_plan(out, &plan)?;
    // Made before the first run and kept for the whole plan: a signal stream sees only the
    // signals sent after it was made, and once one is made the default action (ending the
    // process unrecorded) is gone, so Ctrl-C between runs must be listened to here.
    let mut signals = PlanSignals::new(rt);
    let total = configs.len();
    let mut last: Option<Outcome> = None;
    let mut ended = (RunStatus::Complete, None);
    for (i, (run, cfg)) in configs.into_iter().enumerate() {
        if i > 0 {
            // The pause, cut short by SIGINT/SIGTERM (also one received at the very end of
            // the previous run, after its own handler was gone).
            let pause = args.pause.unwrap_or_default();
            let signal = match signals.as_mut() {
                Some(s) => rt.block_on(s.wait(pause)),
                None => {
                    std::thread::sleep(pause);
                    None
                }
            };
            if let Some(name) = signal {
                let why = format!(
                    "stopped by {name} before {}: {} of {total} runs not started",
                    run.dir,
                    total - i
                );
                tracing::warn!("plan {why}");
                if let Some(o) = last.as_mut() {
                    o.status = RunStatus::Interrupted;
                }
                ended = (RunStatus::Interrupted, Some(why));
                break;
            }
        }
        plan.runs[i].status = PlanRunStatus::Running;
        write_plan(out, &plan)?;
        let outcome = match rt.block_on(crate::run(cfg)) {
            Ok(o) => o,
            Err(e) => {
                let why = format!("{} could not run: {}", run.dir, recap_schemas::error_chain(&e));
                plan.runs[i].status = PlanRunStatus::Failed;
                plan.status = Some(RunStatus::Failed);
                plan.status_message = Some(why);
                write_plan(out, &plan)?;
                return Err(e);
            }
        };
        plan.runs[i].status = outcome.status.into();
        write_plan(out, &plan)?;
        each(&run, &outcome);
        let stop = outcome.status != RunStatus::Complete;
        if stop {
            let why = format!(
                "stopped after {} of {total} runs: {} did not complete ({})",
                i + 1,
                run.dir,
                outcome.status
            );
            tracing::warn!("plan {why}");
            ended = (outcome.status, Some(why));
        }
        last = Some(outcome);
        if stop {
            break;
        }
    }
    (plan.status, plan.status_message) = (Some(ended.0), ended.1);
    write_plan(out, &plan)?;
    last.ok_or_else(|| Error::Internal("a plan with no runs".into()))
}

/// SIGINT and SIGTERM, listened to for a whole plan.
struct PlanSignals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
}

impl PlanSignals {
    fn new(rt: &tokio::runtime::Runtime) -> Option<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        let _in_runtime = rt.enter();
        match (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) {
            (Ok(int), Ok(term)) => Some(PlanSignals { int, term }),
            _ => {
                tracing::warn!("cannot install signal handlers; Ctrl-C between runs will not end the plan cleanly");
                None
            }
        }
    }

    /// Waits `pause`; the signal's name if one came first (or had already come).
    async fn wait(&mut self, pause: std::time::Duration) -> Option<&'static str> {
        tokio::select! {
            biased;
            _ = self.int.recv() => Some("SIGINT"),
            _ = self.term.recv() => Some("SIGTERM"),
            _ = tokio::time::sleep(pause) => None,
        }
    }
}

/// Writes `plan.json` atomically.
fn write_plan(dir: &Path, plan: &Plan) -> Result<()> {
    crate::run::write_json(dir, PLAN_FILE, plan)
}
