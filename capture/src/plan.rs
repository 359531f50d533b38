//! Plans: several load points (`--concurrency 1,4,16`, `--rate 2,4,8`) and repeats of each
//! (`--repeat N`), run one after another through the same [`crate::run`] as a single run.
//!
//! Each point and repeat is a normal run folder inside `--out` (`c4-r2/`), whose manifest
//! names its plan point; `plan.json` lists them all and their status, rewritten after each
//! run, so a plan stopped half way says what ran, and carries the plan's own `status`. Every
//! point's flags are validated before the first run starts. A run that does not complete
//! (Ctrl-C, a failed recording) ends the plan, and so does Ctrl-C during `--pause`: the runs
//! not started stay `pending`.
//!
//! A capacity search (`--concurrency search:1..512 --until 'ttft_p99>500ms'`) is a plan whose
//! points [`Search`] picks one after another; `plan.json` records the path it took and the
//! highest point at which the condition did not hold.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use recap_schemas::live::LivePlan;
use recap_schemas::plan::{Plan, PlanPoint, PlanRun, PlanSearch, SearchStep, PLAN_FILE};
use recap_schemas::{LoadMode, PlanRunStatus, RunStatus};

use crate::config::{Args, Config, Point, SearchSpec};
use crate::run::Outcome;
use crate::steer::Search;
use crate::{Error, Result};

/// Runs every point and repeat of `args` (or a capacity search's points, chosen as it goes);
/// `each` sees every finished run. Every run publishes on `live`, if given. Returns the last
/// run's outcome (the first that did not complete, if any).
pub fn run_plan(
    args: &Args,
    command: &[String],
    rt: &tokio::runtime::Runtime,
    live: Option<Arc<crate::live::Live>>,
    mut each: impl FnMut(&PlanRun, &Outcome),
) -> Result<Outcome> {
    let out = &args.out;
    let shard = args.shard_of_env().map_err(|e| Error::Config(e.0))?;
    let non_empty = std::fs::read_dir(out).is_ok_and(|mut d| d.next().is_some());
    // The shards of a sharded plan fill one folder together: each checks only its own runs.
    if non_empty && !args.force && shard.is_none() {
        return Err(Error::Config(format!(
            "--out {} already exists and is not empty; pass --force to replace the plan in it",
            out.display()
        )));
    }
    if shard.is_some() {
        // Each shard would judge the knee from its own share and the shards would part ways.
        if args.is_search() {
            return Err(Error::Config(
                "--shard with a capacity search: each shard would search on its own share; run the search from one capture, or shard each point".into(),
            ));
        }
        // Only a barrier starts every point together.
        if args.start_at.is_some() {
            return Err(Error::Config(
                "a sharded sweep or --repeat starts each point together at a barrier: give --barrier, not --start-at"
                    .into(),
            ));
        }
    }
    // One shard writes `plan.json` (the others run the same list in the same order).
    let save = |plan: &Plan| match shard {
        Some(s) if s.index != 0 => Ok(()),
        _ => write_plan(out, plan),
    };
    let search = args.search().map_err(|e| Error::Config(e.0))?;
    if let Some(s) = &search {
        if !s.until.above {
            return Err(Error::Config(format!(
                "--until {}: a capacity search looks for a latency rising past a threshold; use `>`",
                s.until
            )));
        }
    }
    let stamp = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let plan_id = format!("plan-{stamp}-{:08x}", rand::random::<u32>());
    // Read once: every run of the plan shares the dataset (and the run to replay).
    let inputs = args
        .load_inputs()
        .map_err(|e| Error::Config(recap_schemas::error_chain(&e)))?;
    let configure = |point: &Point, repeat: u32, repeats: u32| -> Result<(PlanRun, Config)> {
        let label = point.label();
        let dir = format!("{label}-r{repeat}");
        let mut cfg = args
            .for_point(point, out.join(&dir))
            .into_config_with(command.to_vec(), inputs.clone())
            .map_err(|e| Error::Config(format!("point {label}: {e}")))?;
        cfg.plan = Some(PlanPoint {
            plan_id: plan_id.clone(),
            point: label.clone(),
            repeat,
            repeats,
        });
        cfg.live = live.clone();
        let run = PlanRun {
            point: label,
            repeat,
            dir,
            status: PlanRunStatus::Pending,
        };
        Ok((run, cfg))
    };
    let mut listed: VecDeque<(PlanRun, Config)> = VecDeque::new();
    let mut searching = None;
    match &search {
        None => {
            for point in args.points() {
                for repeat in 1..=args.repeat {
                    listed.push_back(configure(&point, repeat, args.repeat)?);
                }
            }
        }
        Some(s) => {
            // Both ends are checked before the first run, as a sweep checks all its points.
            for level in [s.lo, s.hi] {
                configure(&search_point(s, level), 1, 1)?;
            }
            searching = Some(Search::new(s.lo, s.hi, s.concurrency, args.search_resolution));
        }
    }
    let mut plan = Plan {
        plan_id: plan_id.clone(),
        runs: listed.iter().map(|(r, _)| r.clone()).collect(),
        pause_s: args.pause.map_or(0.0, |d| d.as_secs_f64()),
        status: Some(RunStatus::Running),
        status_message: None,
        search: search.as_ref().map(|s| PlanSearch {
            load: if s.concurrency {
                LoadMode::Concurrency
            } else {
                LoadMode::Rate
            },
            lo: s.lo,
            hi: s.hi,
            until: s.until.to_string(),
            min_samples: args.stop_min_samples,
            steps: Vec::new(),
            best: None,
            best_level: None,
        }),
    };
    std::fs::create_dir_all(out).map_err(|source| Error::Io {
        path: out.clone(),
        source,
    })?;
    save(&plan)?;
    // Made before the first run and kept for the whole plan: a signal stream sees only the
    // signals sent after it was made, and once one is made the default action (ending the
    // process unrecorded) is gone, so Ctrl-C between runs must be listened to here.
    let mut signals = PlanSignals::new(rt);
    let mut last: Option<Outcome> = None;
    let mut ended = (RunStatus::Complete, None);
    let mut i = 0usize;
    loop {
        // The next run: the list's, or the search's next level.
        let (level, (run, mut cfg)) = match (&searching, &search) {
            (Some(sr), Some(s)) => match sr.next() {
                None => break,
                Some(level) => {
                    let (run, mut cfg) = match configure(&search_point(s, level), 1, 1) {
                        Ok(c) => c,
                        Err(e) => {
                            plan.status = Some(RunStatus::Failed);
                            plan.status_message = Some(format!("the search could not go on: {e}"));
                            save(&plan)?;
                            return Err(e);
                        }
                    };
                    // The point ends as soon as the condition holds: it is past the knee.
                    cfg.stop_when.push(s.until);
                    (Some(level), (run, cfg))
                }
            },
            _ => match listed.pop_front() {
                None => break,
                Some(next) => (None, next),
            },
        };
        let total = match &searching {
            Some(sr) => sr.max_runs(),
            None => plan.runs.len() as u32,
        };
        if level.is_some() {
            plan.runs.push(run.clone());
        }
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
                let why = match &searching {
                    Some(_) => format!("stopped by {name} before {}: the search did not finish", run.dir),
                    None => format!(
                        "stopped by {name} before {}: {} of {total} runs not started",
                        run.dir,
                        total as usize - i
                    ),
                };
                tracing::warn!("plan {why}");
                if let Some(o) = last.as_mut() {
                    o.status = RunStatus::Interrupted;
                }
                if level.is_some() {
                    plan.runs.pop();
                }
                ended = (RunStatus::Interrupted, Some(why));
                break;
            }
        }
        cfg.live_plan = Some(LivePlan {
            plan_id: plan_id.clone(),
            point: run.point.clone(),
            index: i as u32 + 1,
            total,
        });
        plan.runs[i].status = PlanRunStatus::Running;
        save(&plan)?;
        // The shards of a sharded plan meet at the barrier once per run.
        cfg.round = i as u32;
        let outcome = match rt.block_on(crate::run(cfg)) {
            Ok(o) => o,
            Err(e) => {
                let why = format!("{} could not run: {}", run.dir, recap_schemas::error_chain(&e));
                plan.runs[i].status = PlanRunStatus::Failed;
                plan.status = Some(RunStatus::Failed);
                plan.status_message = Some(why);
                save(&plan)?;
                return Err(e);
            }
        };
        plan.runs[i].status = outcome.status.into();
        let mut stop = outcome.status != RunStatus::Complete;
        if let (Some(level), Some(sr), Some(s), Some(rec)) = (level, searching.as_mut(), &search, plan.search.as_mut())
        {
            // A point a stop condition ended (`--until` itself, `--max-error-rate`, another
            // `--stop-when`) is a finished measurement past the knee; an interrupted or failed
            // one ends the search unjudged.
            stop = matches!(outcome.status, RunStatus::Failed | RunStatus::Interrupted);
            let (value_ms, samples) = outcome.stats.judge(&s.until);
            // No sample (nothing succeeded) is no evidence the objective was met.
            let held =
                (!stop).then(|| outcome.status == RunStatus::Stopped || value_ms.is_none_or(|v| s.until.holds(v)));
            if let Some(held) = held {
                sr.record(level, held);
            }
            rec.steps.push(SearchStep {
                point: run.point.clone(),
                level,
                dir: run.dir.clone(),
                status: outcome.status,
                value_ms,
                samples,
                held,
            });
            rec.best_level = sr.best();
            rec.best = sr.best().map(|b| search_point(s, b).label());
        }
        save(&plan)?;
        each(&run, &outcome);
        if stop {
            let why = format!(
                "stopped after {} runs: {} did not complete ({})",
                i + 1,
                run.dir,
                outcome.status
            );
            tracing::warn!("plan {why}");
            ended = (outcome.status, Some(why));
        }
        last = Some(outcome);
        i += 1;
        if stop {
            break;
        }
    }
    (plan.status, plan.status_message) = (Some(ended.0), ended.1);
    save(&plan)?;
    last.ok_or_else(|| Error::Internal("a plan with no runs".into()))
}

/// The load point of a search's level.
fn search_point(s: &SearchSpec, level: f64) -> Point {
    if s.concurrency {
        Point::Concurrency(level as u32)
    } else {
        Point::Rate(format!("{level}"))
    }
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
