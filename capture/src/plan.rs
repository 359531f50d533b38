//! Plans: several load points (`--concurrency 1,4,16`, `--rate 2,4,8`) and repeats of each
//! (`--repeat N`), run one after another through the same [`crate::run`] as a single run.
//!
//! Each point and repeat is a normal run folder inside `--out` (`c4-r2/`), whose manifest
//! names its plan point; `plan.json` lists them all and their status, rewritten after each
//! run, so a plan stopped half way says what ran. Every point's flags are validated before
//! the first run starts. A run that does not complete (Ctrl-C, a failed recording) ends the
//! plan.

use std::path::Path;
use std::time::SystemTime;

use recap_schemas::plan::{Plan, PlanPoint, PlanRun, PLAN_FILE};
use recap_schemas::RunStatus;

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
    let inputs = args.load_inputs().map_err(|e| Error::Config(e.to_string()))?;
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
                status: "pending".into(),
            };
            configs.push((run, cfg));
        }
    }
    let mut plan = Plan {
        plan_id,
        runs: configs.iter().map(|(r, _)| r.clone()).collect(),
        pause_s: args.pause.map_or(0.0, |d| d.as_secs_f64()),
    };
    std::fs::create_dir_all(out).map_err(|source| Error::Io {
        path: out.clone(),
        source,
    })?;
    write_plan(out, &plan)?;
    let total = configs.len();
    let mut last = None;
    for (i, (run, cfg)) in configs.into_iter().enumerate() {
        if i > 0 {
            if let Some(p) = args.pause {
                std::thread::sleep(p);
            }
        }
        let outcome = rt.block_on(crate::run(cfg))?;
        plan.runs[i].status = outcome.status.to_string();
        write_plan(out, &plan)?;
        each(&run, &outcome);
        let stop = outcome.status != RunStatus::Complete;
        last = Some(outcome);
        if stop {
            tracing::warn!(
                "plan stopped after {} of {total} runs: {} did not complete",
                i + 1,
                run.dir
            );
            break;
        }
    }
    last.ok_or_else(|| Error::Internal("a plan with no runs".into()))
}

/// Writes `plan.json` atomically.
fn write_plan(dir: &Path, plan: &Plan) -> Result<()> {
    crate::run::write_json(dir, PLAN_FILE, plan)
}
