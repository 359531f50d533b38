//! One capture run: folder, manifest, sink, dispatcher, workers, signals, summary.
//!
//! The dispatcher decides *when* (closed loop: as soon as a worker is free; open loop: at the
//! [`Arrivals`] offsets), the workers decide *how* ([`Worker::execute`]); both share one
//! request loop whatever the load mode.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use recap_schemas::manifest::{Counts, DatasetInfo, Endpoint as ManifestEndpoint, HostInfo, LoadSpec, Phases};
use recap_schemas::{LoadMode, Manifest, RunStatus, MANIFEST_FILE, SCHEMA_VERSION};
use tokio::sync::watch;

use crate::client::{Endpoint, EndpointOptions, Ticket, Worker, WorkerContext};
use crate::clock::Clock;
use crate::config::{Config, Load};
use crate::progress::Stats;
use crate::request::{prepare_all, PreparedRequest};
use crate::schedule::Arrivals;
use crate::session::{Cursor, ThinkTime};
use crate::shard::Shard;
use crate::sink::{Sink, SinkConfig};
use crate::summary::Summary;
use crate::{Error, Result};

/// Space kept free in the run folder for the final manifest (see [`run`]).
const RESERVE_FILE: &str = ".recap-reserve";
const RESERVE_BYTES: usize = 64 * 1024;

/// How the run ended, for the exit code.
#[derive(Debug)]
pub struct Outcome {
    /// Final manifest status.
    pub status: RunStatus,
    /// The end-of-run summary.
    pub summary: Summary,
    /// The run's live counters and histograms, final (a capacity search judges them).
    pub stats: Arc<Stats>,
}

/// Stop requests from signals and from the sink.
struct Control {
    stop: watch::Sender<bool>,
    cancel: watch::Sender<bool>,
    reason: Mutex<Option<(RunStatus, String)>>,
}

impl Control {
    fn stop(&self, status: RunStatus, why: String) {
        if let Ok(mut r) = self.reason.lock() {
            if r.is_none() {
                *r = Some((status, why));
            }
        }
        self.stop.send_replace(true);
    }
}

/// Creates the run folder, or refuses to overwrite an existing run without `force`.
fn prepare_out(out: &Path, force: bool) -> Result<()> {
    let io = |source| Error::Io {
        path: out.to_path_buf(),
        source,
    };
    if out.exists() {
        let non_empty = std::fs::read_dir(out).map_err(io)?.next().is_some();
        if non_empty {
            if !force {
                return Err(Error::Config(format!(
                    "--out {} already exists and is not empty; pass --force to replace the run in it",
                    out.display()
                )));
            }
            // Only what a run consists of is removed, never unrelated files.
            for part in [
                MANIFEST_FILE,
                recap_schemas::REQUESTS_DIR,
                recap_schemas::EVENTS_DIR,
                recap_schemas::SCRAPES_DIR,
                recap_schemas::analysis::ANALYSIS_DIR,
                recap_schemas::live::LIVE_FILE,
                RESERVE_FILE,
            ] {
                let p = out.join(part);
                let r = if p.is_dir() {
                    std::fs::remove_dir_all(&p)
                } else {
                    std::fs::remove_file(&p)
                };
                if let Err(e) = r {
                    if e.kind() != std::io::ErrorKind::NotFound {
                        return Err(Error::Io { path: p, source: e });
                    }
                }
            }
        }
    }
    std::fs::create_dir_all(out).map_err(io)
}

/// Writes the manifest atomically (temp file + rename), so a reader never sees half of it.
pub fn write_manifest(dir: &Path, m: &Manifest) -> Result<()> {
    write_json(dir, MANIFEST_FILE, m)
}

/// Writes `value` as pretty JSON to `dir/name` atomically (temp file + rename).
pub(crate) fn write_json(dir: &Path, name: &str, value: &impl serde::Serialize) -> Result<()> {
    let path = dir.join(name);
    let tmp = dir.join(format!("{name}.tmp"));
    let text = serde_json::to_string_pretty(value).map_err(|e| Error::Internal(e.to_string()))?;
    std::fs::write(&tmp, text + "\n").map_err(|source| Error::Io {
        path: tmp.clone(),
        source,
    })?;
    std::fs::rename(&tmp, &path).map_err(|source| Error::Io { path, source })
}

fn run_id(clock: &Clock) -> String {
    let stamp = humantime::format_rfc3339_seconds(clock.anchor_wall())
        .to_string()
        .replace([':', '-'], "");
    let salt: u32 = rand::Rng::random(&mut <rand::rngs::StdRng as rand::SeedableRng>::from_os_rng());
    format!("{}-{salt:08x}", stamp.trim_end_matches('Z'))
}

fn host_info() -> HostInfo {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "unknown".into());
    HostInfo {
        name,
        cores: std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
        os: format!("{}-{}", std::env::consts::OS, std::env::consts::ARCH),
    }
}

fn load_spec(cfg: &Config) -> LoadSpec {
    // A shard records its own share: the shards' load specs add up to the whole run's.
    let shard = cfg.shard.unwrap_or(Shard::WHOLE);
    let (mode, concurrency, rate_per_s, arrival, burstiness) = match &cfg.load {
        Load::Concurrency(n) => (LoadMode::Concurrency, Some(*n), None, None, None),
        Load::Rate {
            rate_per_s, arrival, ..
        } => {
            let k = match arrival {
                crate::schedule::Arrival::Gamma { shape } => Some(*shape),
                _ => None,
            };
            let rate = *rate_per_s / f64::from(shard.count);
            (LoadMode::Rate, None, Some(rate), Some(arrival.kind()), k)
        }
        Load::Burst { .. } => (LoadMode::Burst, None, None, None, None),
        Load::Timestamps { .. } => (LoadMode::Timestamps, None, None, None, None),
    };
    let time_scale = match &cfg.load {
        Load::Timestamps { scale, .. } => Some(*scale),
        _ => None,
    };
    LoadSpec {
        mode,
        concurrency,
        rate_per_s,
        arrival,
        burstiness,
        max_in_flight: cfg.load.workers(),
        requests: cfg
            .requests
            .map(|r| shard.count_in(cfg.warmup_requests, cfg.warmup_requests.saturating_add(r))),
        duration_s: cfg.duration.map(|d| d.as_secs_f64()),
        warmup_requests: shard.count_in(0, cfg.warmup_requests),
        warmup_s: cfg.warmup.map(|d| d.as_secs_f64()),
        cooldown_s: cfg.cooldown.map(|d| d.as_secs_f64()),
        ramp_up_s: cfg.ramp_up.map(|d| d.as_secs_f64()),
        max_tokens: cfg.body.max_tokens,
        timeout_s: cfg.timeout.as_secs_f64(),
        seed: cfg.seed,
        time_scale,
        sessions: cfg.sessions.as_ref().map(|s| recap_schemas::manifest::SessionSpec {
            sessions: s.list.len() as u64,
            think_time_s: match s.think {
                ThinkTime::Fixed(d) if !d.is_zero() => Some(d.as_secs_f64()),
                _ => None,
            },
            think_time_from_dataset: s.think == ThinkTime::FromDataset,
            history: s.history,
            header: cfg.session_header.as_ref().map(|h| h.as_str().to_string()),
            max_history_bytes: Some(s.max_history_bytes as u64),
        }),
    }
}

/// Hands out tickets: the one place that knows the load mode.
enum Dispatcher {
    Closed,
    /// Open loop: the feeder hands each due ticket to the most recently idle worker (LIFO), so
    /// a low rate keeps reusing one warm connection instead of cycling through every
    /// worker's (cold, possibly server-closed) one.
    Open {
        idle: Arc<IdleWorkers>,
    },
}

/// Workers waiting for an open-loop ticket, most recently idle last.
#[derive(Default)]
struct IdleWorkers {
    state: Mutex<IdleState>,
    /// Signalled when a worker becomes idle.
    arrived: tokio::sync::Notify,
}

#[derive(Default)]
struct IdleState {
    stack: Vec<tokio::sync::oneshot::Sender<(u64, i64)>>,
    closed: bool,
}

impl IdleWorkers {
    /// Waits for the next ticket; `None` once the feeder is done.
    async fn wait(&self) -> Option<(u64, i64)> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        {
            let mut st = self.state.lock().ok()?;
            if st.closed {
                return None;
            }
            st.stack.push(tx);
        }
        self.arrived.notify_one();
        rx.await.ok()
    }

    /// Gives `ticket` to the most recently idle worker, waiting for one if all are busy.
    /// Returns false if the run stopped first.
    async fn hand_out(&self, mut ticket: (u64, i64), stop: &mut watch::Receiver<bool>) -> bool {
        loop {
            let arrived = self.arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            let next = self.state.lock().ok().and_then(|mut st| st.stack.pop());
            match next {
                Some(tx) => match tx.send(ticket) {
                    Ok(()) => return true,
                    // That worker stopped waiting (the run is ending): try the next one.
                    Err(t) => ticket = t,
                },
                None => {
                    tokio::select! {
                        _ = &mut arrived => {}
                        _ = stop.wait_for(|s| *s) => return false,
                    }
                }
            }
        }
    }

    /// No more tickets: idle and future waiters get `None`.
    fn close(&self) {
        if let Ok(mut st) = self.state.lock() {
            st.closed = true;
            st.stack.clear();
        }
    }
}

/// What one run sends and when: the requests, their count, the phases by schedule time.
struct Workload {
    /// Requests of the whole run (every shard's), warmup included.
    total: Option<u64>,
    /// The ids this process sends (all of them when not sharded).
    shard: Shard,
    /// Which phase a request is in, by id and schedule time.
    phases: Phases,
    deadline_ns: Option<i64>,
    prepared: Vec<Arc<PreparedRequest>>,
    rows: u64,
    /// The next request id where ids are not the open-loop feeder's (closed loop, sessions).
    next_id: AtomicU64,
    /// A session dataset's sessions, with what their later turns are built from.
    sessions: Option<SessionPlan>,
}

/// What building a session's turns needs.
struct SessionPlan {
    sessions: Arc<crate::session::Sessions>,
    dataset: Arc<crate::dataset::Dataset>,
    body: crate::request::BodyOptions,
    /// Sessions started so far (closed loop; open loop numbers them by arrival).
    started: AtomicU64,
    /// Turns promised to the sessions started so far: a session starts only while
    /// `--requests` leaves room, so a later session never takes the turns of an earlier one.
    reserved: AtomicU64,
}

impl SessionPlan {
    /// Starts the `n`-th session with the turns `total` leaves for it; `None` when none.
    fn start(&self, n: u64, total: Option<u64>) -> Option<Cursor> {
        let len = self.sessions.turns_of(n) as u64;
        let before = self.reserved.fetch_add(len, Relaxed);
        let room = total.map_or(len, |t| t.saturating_sub(before).min(len));
        (room > 0).then(|| self.sessions.start(n, self.body.api, room as usize))
    }
}

impl Workload {
    /// The phase of request `i` scheduled at `scheduled_ns`: warmup requests first, then
    /// by schedule time ramp, warmup, measure, cooldown.
    fn ticket(&self, i: u64, scheduled_ns: i64) -> Ticket {
        let row = i % self.rows;
        Ticket {
            request_id: i,
            phase: self.phases.phase(i, scheduled_ns),
            dataset_row: row,
            scheduled_ns,
            request: self.prepared[row as usize].clone(),
            keep_answer: false,
        }
    }

    /// The next request id, or `None` once `--requests` are all handed out.
    fn take_id(&self) -> Option<u64> {
        let i = self.shard.id(self.next_id.fetch_add(1, Relaxed));
        self.total.is_none_or(|t| i < t).then_some(i)
    }

    /// Requests this process may send (its share of `total`).
    fn own_total(&self) -> Option<u64> {
        self.total.map(|t| self.shard.count_in(0, t))
    }

    /// The ticket of the cursor's next turn.
    fn turn_ticket(&self, s: &SessionPlan, i: u64, scheduled_ns: i64, cursor: &mut Cursor) -> Ticket {
        let (row, request) = s.sessions.next_request(cursor, &s.dataset, &s.body);
        Ticket {
            request_id: i,
            phase: self.phases.phase(i, scheduled_ns),
            dataset_row: row,
            scheduled_ns,
            request: Arc::new(request),
            keep_answer: true,
        }
    }
}

impl Dispatcher {
    /// The worker's next ticket: the next turn of the session it is in (`cursor`), once its
    /// think time has passed, else a new request (or a new session's first turn) by the load
    /// mode. `None` ends the worker.
    async fn next(
        &self,
        plan: &Workload,
        clock: &Clock,
        stop: &watch::Receiver<bool>,
        cursor: &mut Option<Cursor>,
    ) -> Option<Ticket> {
        if *stop.borrow() {
            return None;
        }
        if let (Some(c), Some(s)) = (cursor.as_mut(), &plan.sessions) {
            let at = c.ready_at_ns;
            if plan.deadline_ns.is_some_and(|d| at >= d) {
                return None;
            }
            let mut stop = stop.clone();
            tokio::select! {
                _ = tokio::time::sleep_until(clock.instant_at(at).into()) => {}
                _ = stop.wait_for(|s| *s) => return None,
            }
            let i = plan.take_id()?;
            return Some(plan.turn_ticket(s, i, at, c));
        }
        match self {
            Dispatcher::Closed => {
                let now = clock.now_ns();
                if plan.deadline_ns.is_some_and(|d| now >= d) {
                    return None;
                }
                match &plan.sessions {
                    Some(s) => {
                        let n = plan.shard.id(s.started.fetch_add(1, Relaxed));
                        let c = cursor.insert(s.start(n, plan.own_total())?);
                        let i = plan.take_id()?;
                        Some(plan.turn_ticket(s, i, now, c))
                    }
                    None => Some(plan.ticket(plan.take_id()?, now)),
                }
            }
            Dispatcher::Open { idle } => {
                let mut stop = stop.clone();
                let (k, at) = tokio::select! {
                    got = idle.wait() => got?,
                    _ = stop.wait_for(|s| *s) => return None,
                };
                match &plan.sessions {
                    // Open loop starts sessions: the k-th arrival is the k-th session.
                    Some(s) => {
                        let c = cursor.insert(s.start(k, plan.own_total())?);
                        let i = plan.take_id()?;
                        Some(plan.turn_ticket(s, i, at, c))
                    }
                    None => Some(plan.ticket(k, at)),
                }
            }
        }
    }
}

/// Feeds open-loop tickets at their scheduled offsets until the plan or a stop ends it.
async fn feed(
    idle: Arc<IdleWorkers>,
    offsets: Box<dyn Iterator<Item = i64> + Send>,
    plan_total: Option<u64>,
    shard: Shard,
    deadline_ns: Option<i64>,
    clock: Clock,
    mut stop: watch::Receiver<bool>,
) {
    for (i, at) in offsets.enumerate() {
        let i = i as u64;
        if plan_total.is_some_and(|t| i >= t) || deadline_ns.is_some_and(|d| at >= d || clock.now_ns() >= d) {
            break;
        }
        // A shard sends its own arrivals of the whole run's schedule.
        if !shard.owns(i) {
            continue;
        }
        tokio::select! {
            _ = tokio::time::sleep_until(clock.instant_at(at).into()) => {}
            _ = stop.wait_for(|s| *s) => break,
        }
        if !idle.hand_out((i, at), &mut stop).await {
            break;
        }
    }
    idle.close();
}

/// Descriptors a run needs besides one per connection: segment files, the manifest, the
/// runtime's own (epoll, eventfd, signal pipe), stdio.
const SPARE_FDS: u64 = 64;

/// Raises the soft open-files limit so that every worker can hold its connection (two
/// descriptors each: hyper's stream and the duplicate `connection::Connection` peeks on): the
/// usual soft default (1024) would otherwise turn a `--concurrency 10000` run into thousands
/// of `connect` errors that say nothing about the endpoint. Warns when the hard limit is too low.
fn raise_fd_limit(workers: u32) {
    let need = 2 * u64::from(workers) + SPARE_FDS;
    match rlimit::increase_nofile_limit(need) {
        Ok(got) if got < need => tracing::warn!(
            "open-files limit is {got} but {workers} connections need about {need}; \
             expect connect errors (raise it with `ulimit -n`)"
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!("could not raise the open-files limit: {e}"),
    }
}

/// Runs a capture to the end and returns how it ended. Request failures are data, not errors;
/// `Err` means the run could not start (folder, dataset, endpoint configuration).
pub async fn run(cfg: Config) -> Result<Outcome> {
    // Everything that can be checked before a request (flags and dataset were checked when
    // the config was built; URL and TLS here) is checked before `--force` removes anything.
    let endpoint = Endpoint::new(
        &cfg.url,
        cfg.headers.clone(),
        EndpointOptions {
            api: cfg.body.api,
            stream: cfg.body.stream,
            timeout: cfg.timeout,
            insecure: cfg.insecure,
            max_event_bytes: cfg.max_event_bytes,
            max_response_bytes: cfg.max_response_bytes,
            raw: cfg.raw,
        },
    )
    .map_err(|e| Error::Config(e.to_string()))?
    .with_session_header(cfg.session_header.clone());
    prepare_out(&cfg.out, cfg.force)?;
    raise_fd_limit(cfg.load.workers());
    // Shards start together (and measure their clocks) before the run's clock starts.
    let shard_info = match cfg.shard {
        None => None,
        Some(shard) => {
            let barrier = match (&cfg.start, shard.index, &cfg.live) {
                (crate::shard::Start::Barrier { .. }, 0, Some(live)) => {
                    Some(live.open_barrier(shard.count, cfg.wall, cfg.round))
                }
                _ => None,
            };
            Some(
                crate::shard::synchronize(
                    shard,
                    &cfg.start,
                    cfg.wall,
                    cfg.round,
                    barrier.as_deref(),
                    cfg.live.as_ref().map(|l| l.addr().port()),
                )
                .await
                .map_err(Error::Config)?,
            )
        }
    };
    let clock = Clock::start_on(cfg.wall);
    let run_id = run_id(&clock);
    let endpoint = Arc::new(endpoint.with_request_id(cfg.request_id_header.clone(), &run_id));
    let mut manifest = Manifest {
        client: None,
        schema_version: SCHEMA_VERSION,
        run_id: run_id.clone(),
        recap_version: env!("CARGO_PKG_VERSION").into(),
        // Whatever flag a secret came in (or a value that holds one), it is written redacted.
        command: cfg.command.iter().map(|w| cfg.secrets.redact(w).into_owned()).collect(),
        endpoint: ManifestEndpoint {
            url: cfg.secrets.redact(&crate::redact::redact_url(&cfg.url)).into_owned(),
            api: cfg.body.api,
            model: cfg.body.model.clone(),
            stream: cfg.body.stream,
            headers: cfg.headers_redacted.iter().cloned().collect(),
            api_key_env: cfg.api_key_env.clone(),
            request_id_header: cfg.request_id_header.as_ref().map(|h| h.as_str().to_string()),
            raw: cfg.raw,
        },
        load: load_spec(&cfg),
        dataset: DatasetInfo {
            path: cfg.dataset.path.clone(),
            format: cfg.dataset.format.into(),
            sha256: cfg.dataset.sha256.clone(),
            rows: cfg.dataset.rows.len() as u64,
        },
        started_at: crate::clock::rfc3339(clock.anchor_wall()),
        clock_anchor_unix_ns: clock.anchor_unix_ns(),
        host: host_info(),
        status: RunStatus::Running,
        status_message: None,
        ended_at: None,
        counts: None,
        plan: cfg.plan.clone(),
        replay_of: cfg.replay.as_ref().map(|r| recap_schemas::manifest::ReplayOf {
            run_id: r.manifest.run_id.clone(),
            path: r.source.display().to_string(),
        }),
        shard: shard_info,
    };
    if let Some(r) = &cfg.replay {
        // The workload is the source's: `analyze sweep` sees the two as the same dataset.
        manifest.dataset = r.manifest.dataset.clone();
    }
    write_manifest(&cfg.out, &manifest)?;
    if cfg.dataset.skipped > 0 {
        tracing::warn!(
            "dataset {}: skipped {} invalid rows (--skip-invalid)",
            cfg.dataset.path,
            cfg.dataset.skipped
        );
    }

    let (stop_tx, stop_rx) = watch::channel(false);
    let (cancel_tx, cancel_rx) = watch::channel(false);
    let control = Arc::new(Control {
        stop: stop_tx,
        cancel: cancel_tx,
        reason: Mutex::new(None),
    });
    // Listened to before the bodies are rendered (which takes a while for a large dataset),
    // so Ctrl-C at any moment ends the run as `interrupted`, also inside a plan.
    let signals = tokio::spawn(watch_signals(control.clone(), cfg.grace));

    let mut sink_cfg = SinkConfig::new(cfg.out.clone(), run_id.clone());
    sink_cfg.flush_interval = cfg.flush_interval;
    sink_cfg.max_segment_rows = cfg.segment_rows;
    sink_cfg.channel_capacity = cfg.record_buffer_rows;
    sink_cfg.buffer_bytes = cfg.record_buffer_bytes;
    sink_cfg.secrets = cfg.secrets.clone();
    sink_cfg.scrapes = !cfg.scrape.is_empty();
    // A little space set aside so that the final manifest can still be written when the disk
    // fills up: released the moment recording fails, and at the end of the run.
    let reserve = cfg.out.join(RESERVE_FILE);
    let _ = std::fs::write(&reserve, vec![0u8; RESERVE_BYTES]);
    let ctl = control.clone();
    let reserve_on_error = reserve.clone();
    let (sink, recorder) = Sink::spawn(
        sink_cfg,
        Arc::new(move |msg: &str| {
            let _ = std::fs::remove_file(&reserve_on_error);
            ctl.stop(
                RunStatus::Failed,
                format!("recording failed, scheduling stopped: {msg}"),
            );
            // Nothing more can be recorded, so waiting for in-flight requests is pointless.
            ctl.cancel.send_replace(true);
        }),
    )?;

    let ns = |d: std::time::Duration| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX);
    let deadline_ns = cfg.duration.map(ns);
    let ramp_ns = cfg.ramp_up.map_or(0, ns);
    let plan = Arc::new(Workload {
        total: cfg.requests.map(|r| r + cfg.warmup_requests),
        shard: cfg.shard.unwrap_or(Shard::WHOLE),
        phases: Phases {
            warmup_requests: cfg.warmup_requests,
            ramp_ns,
            warmup_ns: cfg.warmup.map_or(0, ns),
            cooldown_ns: match (deadline_ns, cfg.cooldown) {
                (Some(d), Some(c)) => Some(d.saturating_sub(ns(c))),
                _ => None,
            },
        },
        deadline_ns,
        prepared: match (&cfg.replay, &cfg.sessions) {
            (Some(r), _) => r.requests.clone(),
            // Session turns are rendered as they are sent, with their history.
            (None, Some(_)) => Vec::new(),
            (None, None) => prepare_all(&cfg.dataset, &cfg.body),
        },
        rows: cfg.replay.as_ref().map_or(cfg.dataset.rows.len(), |r| r.requests.len()) as u64,
        next_id: AtomicU64::new(0),
        sessions: cfg.sessions.as_ref().map(|sessions| SessionPlan {
            sessions: sessions.clone(),
            dataset: cfg.dataset.clone(),
            body: cfg.body.clone(),
            started: AtomicU64::new(0),
            reserved: AtomicU64::new(0),
        }),
    });
    // Gaps cost a push per event: kept only when something reads them.
    let keep_gaps = cfg.live.is_some()
        || cfg
            .stop_when
            .iter()
            .any(|c| c.metric == recap_schemas::live::LiveMetric::Gap);
    let stats = Arc::new(Stats::new(keep_gaps));
    let in_flight = Arc::new(AtomicU64::new(0));
    // Scheduling has stopped (a stop condition, a signal, or no more requests to send).
    let draining = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stopped_watch = tokio::spawn({
        let (d, mut s) = (draining.clone(), stop_rx.clone());
        async move {
            let _ = s.wait_for(|v| *v).await;
            d.store(true, Relaxed);
        }
    });

    // Open loop and burst feed tickets at their offsets; closed loop hands them out on demand.
    let offsets: Option<Box<dyn Iterator<Item = i64> + Send>> = match &cfg.load {
        Load::Concurrency(_) => None,
        Load::Rate {
            rate_per_s, arrival, ..
        } => {
            let base = Arrivals::new(*rate_per_s, *arrival, cfg.seed).map_err(|e| Error::Config(e.to_string()))?;
            Some(Box::new(crate::schedule::ramped(base, ramp_ns)))
        }
        Load::Burst { .. } => Some(Box::new(std::iter::repeat(0))),
        Load::Timestamps { offsets_ns, .. } => {
            let offsets = offsets_ns.clone();
            Some(Box::new((0..offsets.len()).map(move |i| offsets[i])))
        }
    };
    let mut feeder = None;
    let dispatcher = Arc::new(match offsets {
        None => Dispatcher::Closed,
        Some(offsets) => {
            let idle = Arc::new(IdleWorkers::default());
            feeder = Some(tokio::spawn(feed(
                idle.clone(),
                offsets,
                plan.total,
                plan.shard,
                plan.deadline_ns,
                clock,
                stop_rx.clone(),
            )));
            Dispatcher::Open { idle }
        }
    });

    let progress = if cfg.quiet {
        None
    } else {
        let (s, f) = (stats.clone(), in_flight.clone());
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            crate::progress::live(&s, clock, move || f.load(Relaxed), async move {
                let _ = done_rx.await;
            })
            .await;
        });
        Some((task, done_tx))
    };

    let ctx = WorkerContext {
        endpoint: endpoint.clone(),
        recorder: recorder.clone(),
        clock,
        stats: stats.clone(),
        cancel: cancel_rx,
        in_flight: in_flight.clone(),
    };
    let waits = recorder.wait_stats();
    let feed = cfg.live.as_ref().map(|live| {
        live.feed(crate::live::RunSource::new(
            stats.clone(),
            in_flight.clone(),
            waits.clone(),
            clock,
            run_id.clone(),
            cfg.out.display().to_string(),
            cfg.live_plan.clone(),
            draining.clone(),
        ))
    });
    let (judge_stop, judge_stop_rx) = watch::channel(false);
    let judge = (!cfg.stop_when.is_empty()).then(|| {
        let ctl = control.clone();
        tokio::spawn(crate::steer::watch_conditions(
            stats.clone(),
            cfg.stop_when.clone(),
            cfg.stop_min_samples,
            move |why| ctl.stop(RunStatus::Stopped, why),
            draining.clone(),
            judge_stop_rx,
        ))
    });
    // The client's own health: CPU from here on, and a probe of the runtime's lateness.
    let cpu_at_start = crate::health::cpu_seconds();
    let health_start = std::time::Instant::now();
    let (probe_stop, probe_stop_rx) = watch::channel(false);
    let probe = tokio::spawn(crate::health::timer_lag(probe_stop_rx));
    // The server's metrics endpoints, read on their own tasks until the workers are done.
    let (scrape_stop, scrape_stop_rx) = watch::channel(false);
    let scraper = (!cfg.scrape.is_empty()).then(|| {
        tokio::spawn(crate::scrape::run(
            cfg.scrape.clone(),
            cfg.scrape_interval,
            cfg.scrape_timeout,
            recorder.with_own_waits(),
            clock,
            scrape_stop_rx,
        ))
    });
    drop(recorder);
    let mut workers = tokio::task::JoinSet::new();
    let workers_n = cfg.load.workers();
    let error_guard = cfg.max_error_rate.map(|max| (max, control.clone()));
    let closed_ramp = matches!(cfg.load, Load::Concurrency(_)) && ramp_ns > 0;
    for k in 0..workers_n {
        let (ctx, dispatcher, plan, mut stop) = (ctx.clone(), dispatcher.clone(), plan.clone(), stop_rx.clone());
        let error_guard = error_guard.clone();
        let draining = draining.clone();
        // Closed-loop ramp: worker k joins at k/N of the ramp, so concurrency grows linearly.
        let start_ns = if closed_ramp {
            i64::try_from(i128::from(ramp_ns) * i128::from(k) / i128::from(workers_n)).unwrap_or(0)
        } else {
            0
        };
        workers.spawn(async move {
            if start_ns > 0 {
                tokio::select! {
                    _ = tokio::time::sleep_until(ctx.clock.instant_at(start_ns).into()) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
            let mut worker = Worker::new(ctx.clone());
            let mut cursor = None;
            while let Some(ticket) = dispatcher.next(&plan, &ctx.clock, &stop, &mut cursor).await {
                let answer = worker.execute(ticket).await;
                if let (Some(c), Some(s)) = (cursor.as_mut(), &plan.sessions) {
                    if !s.sessions.answered(c, answer, &s.dataset, ctx.clock.now_ns()) {
                        cursor = None;
                    }
                }
                if let Some((max, control)) = &error_guard {
                    if let Some(share) = ctx.stats.error_share_over(*max) {
                        control.stop(
                            RunStatus::Stopped,
                            format!(
                                "stopped early: {:.1}% of ended requests were errors (--max-error-rate {max})",
                                share * 100.0
                            ),
                        );
                    }
                }
            }
            // No more tickets: the run drains what is in flight.
            draining.store(true, Relaxed);
        });
    }
    drop(ctx);
    while let Some(r) = workers.join_next().await {
        if let Err(e) = r {
            tracing::error!("a worker task failed: {e}");
        }
    }
    if let Some(f) = feeder {
        f.abort();
    }
    stopped_watch.abort();
    judge_stop.send_replace(true);
    if let Some(j) = judge {
        let _ = j.await;
    }
    // The run's time and the client's health end with the last request, before the final
    // scrape (which may take up to --scrape-timeout).
    let elapsed = clock.elapsed();
    let cpu_at_end = crate::health::cpu_seconds();
    let health_elapsed = health_start.elapsed();
    probe_stop.send_replace(true);
    let lag = probe
        .await
        .unwrap_or_else(|_| hdrhistogram::Histogram::new(3).expect("invariant: valid precision"));
    manifest.client = Some(crate::health::report(health_elapsed, cpu_at_start, cpu_at_end, &lag));
    // One last read of each endpoint, so its counters cover the whole run.
    scrape_stop.send_replace(true);
    if let Some(s) = scraper {
        let _ = s.await;
    }
    signals.abort();
    if let Some((task, done)) = progress {
        drop(done);
        let _ = task.await;
    }
    drop(dispatcher);
    let sink_stats = tokio::task::spawn_blocking(move || sink.finish())
        .await
        .map_err(|e| Error::Internal(format!("joining the sink: {e}")))?;

    let (status, message) = match control.reason.lock().ok().and_then(|r| r.clone()) {
        Some((s, m)) => (s, Some(m)),
        None => (RunStatus::Complete, None),
    };
    let _ = std::fs::remove_file(&reserve);
    let summary = stats.summary(elapsed, &cfg.out.display().to_string(), &sink_stats, &waits);
    if summary.recorder_waits > 0 {
        tracing::warn!(
            "the recorder fell behind: workers waited {:.1} ms in total ({} times) before they could record; \
             throughput and latencies of this run may be bound by the client",
            summary.recorder_wait_ns as f64 / 1e6,
            summary.recorder_waits
        );
    }
    manifest.status = status;
    manifest.status_message = message.or(sink_stats.error.clone());
    manifest.ended_at = Some(crate::clock::rfc3339(SystemTime::now()));
    manifest.counts = Some(Counts {
        requests: sink_stats.request_rows,
        done: summary.done,
        errors: summary.errors.clone(),
        cancelled: summary.cancelled,
        events: sink_stats.event_rows,
        sse_events: sink_stats.sse_rows,
        segments: sink_stats.segments,
        bytes_written: sink_stats.bytes_written,
        connections: summary.connections,
        stale_connections: summary.stale_connections,
        retries: summary.retries,
        keep_alive_stopped: endpoint.keep_alive.stopped(),
        scrapes: sink_stats.scrape_rows,
        recorder_waits: summary.recorder_waits,
        recorder_wait_ns: summary.recorder_wait_ns,
        sessions_history_capped: cfg
            .sessions
            .as_ref()
            .map_or(0, |s| s.capped.load(std::sync::atomic::Ordering::Relaxed)),
    });
    write_manifest(&cfg.out, &manifest)?;
    if let Some(feed) = feed {
        let snapshot = feed.finish(elapsed.as_secs_f64()).await;
        // Subscribers have it; a failed write is a warning, the run and its manifest are whole.
        if let Err(e) = write_json(&cfg.out, recap_schemas::live::LIVE_FILE, &snapshot) {
            tracing::warn!(
                "--live: the final snapshot was published but not written: {}",
                recap_schemas::error_chain(&e)
            );
        }
    }
    Ok(Outcome { status, summary, stats })
}

async fn watch_signals(control: Arc<Control>, grace: std::time::Duration) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) else {
        tracing::warn!("cannot install signal handlers; Ctrl-C will kill the run without closing it");
        return;
    };
    let name = tokio::select! {
        _ = int.recv() => "SIGINT",
        _ = term.recv() => "SIGTERM",
    };
    tracing::warn!(
        "{name}: no new requests; in-flight requests get {} to finish (again to cancel now)",
        humantime::format_duration(grace)
    );
    control.stop(RunStatus::Interrupted, format!("stopped by {name}"));
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
        _ = tokio::time::sleep(grace) => {}
    }
    control.cancel.send_replace(true);
}
