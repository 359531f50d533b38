//! `--live ADDR`: what a running capture knows, published for other processes.
//!
//! Workers only bump the counters and histograms they already keep ([`Stats`]); a task of its
//! own renders a [`LiveSnapshot`] `--live-hz` times a second and hands it to a small HTTP/1.1
//! server: `/metrics` (Prometheus text), `/snapshot` (JSON) and `/stream` (server-sent events).
//! At the end of each run the final snapshot (`complete`) is published and written atomically
//! as `live.json` beside the manifest; before the process exits, every open `/stream` gets it
//! and is closed.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{Either, Full};
use hyper::body::{Body, Frame, Incoming};
use hyper_util::rt::TokioIo;
use recap_schemas::live::{
    LiveCounts, LiveDistribution, LiveMetric, LivePlan, LiveSnapshot, LiveState, LIVE_SCHEMA_VERSION,
};
use recap_schemas::ErrorKind;
use tokio::sync::{mpsc, watch};

use crate::clock::Clock;
use crate::progress::Stats;
use crate::recorder::WaitStats;
use crate::{Error, Result};

/// Snapshots per second on `/stream` when `--live-hz` is not given.
pub const DEFAULT_HZ: f64 = 2.0;
/// How often the publisher looks for a change of state between snapshots.
const STATE_CHECK: Duration = Duration::from_millis(50);
/// How long the process waits, at its end, for subscribers to receive the final snapshot.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// The published snapshot, rendered once for every subscriber.
struct Published {
    snapshot: LiveSnapshot,
    json: Bytes,
}

/// The live endpoint of one capture process (all the runs of a plan publish through it).
pub struct Live {
    addr: SocketAddr,
    hz: f64,
    latest: watch::Sender<Option<Arc<Published>>>,
    closing: watch::Sender<bool>,
    connections: Mutex<tokio::task::JoinSet<()>>,
    /// Shard 0 of a sharded capture: the barrier the other shards poll (`/barrier`).
    barrier: Mutex<Option<Arc<crate::shard::Barrier>>>,
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Live({})", self.addr)
    }
}

impl Live {
    /// Binds `addr` (`127.0.0.1:9464`; port 0 takes a free one) and serves it on the current
    /// runtime. Nothing is published until a run starts.
    pub async fn start(addr: &str, hz: f64) -> Result<Arc<Live>> {
        if !(hz.is_finite() && hz > 0.0 && hz <= 100.0) {
            return Err(Error::Config(format!(
                "--live-hz must be above 0 and at most 100, got {hz}"
            )));
        }
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| Error::Config(format!("--live {addr}: cannot listen: {e}")))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::Config(format!("--live {addr}: {e}")))?;
        let live = Arc::new(Live {
            addr,
            hz,
            latest: watch::channel(None).0,
            closing: watch::channel(false).0,
            connections: Mutex::new(tokio::task::JoinSet::new()),
            barrier: Mutex::new(None),
        });
        tokio::spawn(accept(listener, live.clone()));
        Ok(live)
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves `/barrier` for `count` shards meeting for run `round` of a plan (this process is
    /// shard 0, its clock `wall`); replaces the previous run's.
    pub fn open_barrier(&self, count: u32, wall: crate::clock::Wall, round: u32) -> Arc<crate::shard::Barrier> {
        let b = Arc::new(crate::shard::Barrier::new(count, wall, round));
        if let Ok(mut slot) = self.barrier.lock() {
            *slot = Some(b.clone());
        }
        b
    }

    /// The barrier served now, if this process is shard 0 of a sharded capture.
    fn current_barrier(&self) -> Option<Arc<crate::shard::Barrier>> {
        self.barrier.lock().ok().and_then(|b| b.clone())
    }

    fn publish(&self, snapshot: LiveSnapshot) {
        let json = Bytes::from(serde_json::to_vec(&snapshot).unwrap_or_default());
        self.latest.send_replace(Some(Arc::new(Published { snapshot, json })));
    }

    /// Starts publishing a run: a snapshot now and then every 1/hz s until [`RunFeed::finish`].
    pub fn feed(self: &Arc<Self>, source: RunSource) -> RunFeed {
        let source = Arc::new(source);
        let (stop, mut stop_rx) = watch::channel(false);
        let (live, src) = (self.clone(), source.clone());
        let task = tokio::spawn(async move {
            // A snapshot every 1/hz s, and one as soon as the run starts draining (checked
            // every 50 ms): a draining that lasts longer than that is published. A subscriber
            // that reads slower than snapshots come gets the latest one.
            let period = Duration::from_secs_f64(1.0 / live.hz);
            let mut tick = tokio::time::interval(period.min(STATE_CHECK));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut last: Option<(tokio::time::Instant, LiveState)> = None;
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop_rx.wait_for(|s| *s) => break,
                }
                let state = if src.draining.load(Relaxed) {
                    LiveState::Draining
                } else {
                    LiveState::Live
                };
                let now = tokio::time::Instant::now();
                let due = last.is_none_or(|(t, s)| s != state || now.duration_since(t) >= period);
                if due {
                    live.publish(src.snapshot(state, None));
                    last = Some((now, state));
                }
            }
        });
        RunFeed {
            live: self.clone(),
            source,
            stop,
            task,
        }
    }

    /// Ends publishing: each open `/stream` gets the latest snapshot and is closed, and idle
    /// connections are closed; waits at most [`CLOSE_GRACE`] for them.
    pub async fn close(&self) {
        self.closing.send_replace(true);
        let mut set = match self.connections.lock() {
            Ok(mut c) => std::mem::take(&mut *c),
            Err(_) => return,
        };
        let _ = tokio::time::timeout(CLOSE_GRACE, async { while set.join_next().await.is_some() {} }).await;
    }
}

/// What a run's snapshots are made of.
pub struct RunSource {
    /// The run's counters and histograms.
    pub stats: Arc<Stats>,
    /// Requests in flight.
    pub in_flight: Arc<AtomicU64>,
    /// The recorder's back-pressure.
    pub waits: Arc<WaitStats>,
    /// The run's clock.
    pub clock: Clock,
    /// `manifest.run_id`.
    pub run_id: String,
    /// The run folder.
    pub run_dir: String,
    /// Its place in a plan.
    pub plan: Option<LivePlan>,
    /// Set once scheduling has stopped (workers finish what is in flight).
    pub draining: Arc<AtomicBool>,
    seq: AtomicU64,
}

impl RunSource {
    /// A source whose snapshots are numbered from 1.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        stats: Arc<Stats>,
        in_flight: Arc<AtomicU64>,
        waits: Arc<WaitStats>,
        clock: Clock,
        run_id: String,
        run_dir: String,
        plan: Option<LivePlan>,
        draining: Arc<AtomicBool>,
    ) -> Self {
        RunSource {
            stats,
            in_flight,
            waits,
            clock,
            run_id,
            run_dir,
            plan,
            draining,
            seq: AtomicU64::new(0),
        }
    }

    /// The snapshot now; `elapsed_s` as given (the final one ends with the last request).
    fn snapshot(&self, state: LiveState, elapsed_s: Option<f64>) -> LiveSnapshot {
        let s = &self.stats;
        LiveSnapshot {
            schema_version: LIVE_SCHEMA_VERSION,
            run_id: self.run_id.clone(),
            run_dir: self.run_dir.clone(),
            state,
            elapsed_s: elapsed_s.unwrap_or_else(|| self.clock.elapsed().as_secs_f64()),
            seq: self.seq.fetch_add(1, Relaxed) + 1,
            plan: self.plan.clone(),
            counts: LiveCounts {
                sent: s.sent.load(Relaxed),
                done: s.done.load(Relaxed),
                errors: ErrorKind::ALL
                    .iter()
                    .map(|k| (*k, s.errors_of(*k)))
                    .filter(|(_, n)| *n > 0)
                    .collect(),
                cancelled: s.cancelled.load(Relaxed),
                in_flight: self.in_flight.load(Relaxed),
                sse_events: s.sse_events.load(Relaxed),
                malformed_events: s.malformed_events.load(Relaxed),
                connections: s.connections.load(Relaxed),
                stale_connections: s.stale_connections.load(Relaxed),
                retries: s.retries.load(Relaxed),
                usage_output_tokens: s.usage_output_tokens.load(Relaxed),
                recorder_waits: self.waits.waits.load(Relaxed),
                recorder_wait_ns: self.waits.wait_ns.load(Relaxed),
            },
            ttft: s.distribution(LiveMetric::Ttft),
            gap: s.distribution(LiveMetric::Gap),
            e2e: s.distribution(LiveMetric::E2e),
        }
    }
}

/// A run being published.
pub struct RunFeed {
    live: Arc<Live>,
    source: Arc<RunSource>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl RunFeed {
    /// Publishes the run's final snapshot (`complete`, ending at `elapsed_s`) and returns it,
    /// for the run to write as `live.json`.
    pub async fn finish(mut self, elapsed_s: f64) -> LiveSnapshot {
        self.stop.send_replace(true);
        let _ = (&mut self.task).await;
        let snapshot = self.source.snapshot(LiveState::Complete, Some(elapsed_s));
        self.live.publish(snapshot.clone());
        snapshot
    }
}

impl Drop for RunFeed {
    /// A run that ends with an error stops its publisher too.
    fn drop(&mut self) {
        self.stop.send_replace(true);
        self.task.abort();
    }
}

async fn accept(listener: tokio::net::TcpListener, live: Arc<Live>) {
    let mut closing = live.closing.subscribe();
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(sp) => sp,
                Err(e) => {
                    tracing::debug!("--live: accept failed: {e}");
                    continue;
                }
            },
            _ = closing.wait_for(|c| *c) => return,
        };
        let l = live.clone();
        let Ok(mut set) = live.connections.lock() else { return };
        // Connections that ended are collected here, so the set stays as small as the open ones.
        while set.try_join_next().is_some() {}
        set.spawn(async move {
            let mut closing = l.closing.subscribe();
            let svc = {
                let l = l.clone();
                hyper::service::service_fn(move |req| {
                    let l = l.clone();
                    async move { Ok::<_, Infallible>(route(&l, &req, peer)) }
                })
            };
            let conn = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc);
            tokio::pin!(conn);
            let closed = tokio::select! {
                _ = conn.as_mut() => false,
                r = closing.wait_for(|c| *c) => r.is_ok(),
            };
            if closed {
                // Idle keep-alive connections close now; a `/stream` ends after the final
                // snapshot.
                conn.as_mut().graceful_shutdown();
                let _ = conn.await;
            }
        });
    }
}

type LiveBody = Either<Full<Bytes>, SseBody>;

fn text(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<LiveBody> {
    let mut r = Response::new(Either::Left(Full::new(body.into())));
    *r.status_mut() = status;
    if let Ok(v) = header::HeaderValue::from_str(content_type) {
        r.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    r
}

fn route(live: &Arc<Live>, req: &Request<Incoming>, peer: SocketAddr) -> Response<LiveBody> {
    if req.method() != Method::GET {
        return text(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "GET only\n");
    }
    let latest = live.latest.borrow().clone();
    match req.uri().path() {
        "/metrics" => text(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            latest.map(|p| prometheus_text(&p.snapshot)).unwrap_or_default(),
        ),
        "/snapshot" => match latest {
            Some(p) => text(StatusCode::OK, "application/json", p.json.clone()),
            None => text(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                "no run has started yet\n",
            ),
        },
        "/stream" => {
            let (tx, rx) = mpsc::channel(4);
            tokio::spawn(stream(live.clone(), tx));
            let mut r = Response::new(Either::Right(SseBody(rx)));
            let h = r.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("text/event-stream"),
            );
            h.insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-cache"));
            r
        }
        "/barrier" => barrier(live, req.uri().query(), peer),
        "/shards" => match live.current_barrier() {
            Some(b) => text(
                StatusCode::OK,
                "application/json",
                serde_json::to_vec(&b.shards()).unwrap_or_default(),
            ),
            None => not_shard_0(),
        },
        "/" => text(
            StatusCode::OK,
            "text/plain",
            "recap capture: /metrics (Prometheus text), /snapshot (JSON), /stream (server-sent events), /barrier and /shards (shard 0 of a sharded capture)\n",
        ),
        _ => text(StatusCode::NOT_FOUND, "text/plain", "not found\n"),
    }
}

/// What `/barrier` and `/shards` answer on any capture but shard 0 of a sharded one.
fn not_shard_0() -> Response<LiveBody> {
    text(
        StatusCode::NOT_FOUND,
        "text/plain",
        "no barrier here: this capture is not shard 0 of a sharded capture with --barrier\n",
    )
}

/// `/barrier?shard=I&count=N&round=K[&live=PORT]`: shard I of N arrives for run K of its plan (its live
/// endpoint on PORT of the address it polls from); the reply
/// ([`crate::shard::BarrierReply`]) carries this clock and, once every shard has arrived, the
/// start.
fn barrier(live: &Arc<Live>, query: Option<&str>, peer: SocketAddr) -> Response<LiveBody> {
    let Some(b) = live.current_barrier() else {
        return not_shard_0();
    };
    let param = |name: &str| {
        query
            .unwrap_or("")
            .split('&')
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .map(|v| v.parse::<u32>())
            .transpose()
    };
    let (Ok(shard), Ok(count), Ok(round), Ok(port)) = (param("shard"), param("count"), param("round"), param("live"))
    else {
        return text(
            StatusCode::BAD_REQUEST,
            "text/plain",
            "shard=I&count=N&round=K&live=PORT: expected numbers\n",
        );
    };
    let Ok(port) = port.map(u16::try_from).transpose() else {
        return text(StatusCode::BAD_REQUEST, "text/plain", "live=PORT: not a port\n");
    };
    let url = port.map(|p| format!("http://{}", SocketAddr::new(peer.ip(), p)));
    // A poll without `count` is taken as of this capture's count.
    let shard = shard.map(|i| (i, count.unwrap_or(b.count())));
    match b.poll(shard, round.unwrap_or(0), url) {
        Ok(reply) => text(
            StatusCode::OK,
            "application/json",
            serde_json::to_vec(&reply).unwrap_or_default(),
        ),
        Err(e) => text(StatusCode::BAD_REQUEST, "text/plain", format!("{e}\n")),
    }
}

/// Sends every new snapshot as `event: snapshot`; after the process closes publishing, sends
/// the latest one (unless it went out already) and ends.
async fn stream(live: Arc<Live>, tx: mpsc::Sender<Bytes>) {
    let mut latest = live.latest.subscribe();
    let mut closing = live.closing.subscribe();
    let mut sent: Option<(String, u64)> = None;
    loop {
        let end = *closing.borrow_and_update();
        let current = latest.borrow_and_update().clone();
        if let Some(p) = current {
            let key = (p.snapshot.run_id.clone(), p.snapshot.seq);
            if sent.as_ref() != Some(&key) {
                let mut frame = Vec::with_capacity(p.json.len() + 32);
                frame.extend_from_slice(b"event: snapshot\ndata: ");
                frame.extend_from_slice(&p.json);
                frame.extend_from_slice(b"\n\n");
                if tx.send(Bytes::from(frame)).await.is_err() {
                    return;
                }
                sent = Some(key);
            }
        }
        if end {
            return;
        }
        tokio::select! {
            r = latest.changed() => if r.is_err() { return },
            _ = closing.changed() => {}
        }
    }
}

/// A `/stream` response body: the frames [`stream`] sends, until it ends.
struct SseBody(mpsc::Receiver<Bytes>);

impl Body for SseBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b))))
    }
}

/// `le` bounds of the Prometheus histograms, seconds (from 1 ms to 2 min).
const BUCKETS_S: [f64; 17] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0,
];

/// Escapes a label value (backslash, double quote, newline).
fn label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// The snapshot as Prometheus text exposition (format 0.0.4, where a counter's TYPE line
/// names it with its `_total`, as its samples do): counters end in `_total`,
/// latencies are histograms in seconds, the run's state is a state set.
pub fn prometheus_text(s: &LiveSnapshot) -> String {
    fn head(o: &mut String, name: &str, kind: &str, help: &str) {
        let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }
    let mut o = String::with_capacity(8192);
    let c = &s.counts;
    let counters: [(&str, &str, u64); 10] = [
        ("requests_sent", "Requests handed to a connection.", c.sent),
        ("requests_done", "Requests that ended successfully.", c.done),
        (
            "requests_cancelled",
            "Requests cancelled when the run stopped.",
            c.cancelled,
        ),
        ("sse_events", "Server-sent events received.", c.sse_events),
        (
            "malformed_events",
            "Server-sent events whose data could not be parsed.",
            c.malformed_events,
        ),
        ("connections_opened", "Connections opened.", c.connections),
        (
            "connections_stale",
            "Kept-alive connections found closed before reuse.",
            c.stale_connections,
        ),
        (
            "retries",
            "Requests sent again after a reused connection failed unanswered.",
            c.retries,
        ),
        (
            "usage_output_tokens",
            "Output tokens the server reported in usage.",
            c.usage_output_tokens,
        ),
        (
            "recorder_waits",
            "Times a worker waited for the recorder.",
            c.recorder_waits,
        ),
    ];
    for (name, help, v) in counters {
        head(&mut o, &format!("recap_capture_{name}_total"), "counter", help);
        let _ = writeln!(o, "recap_capture_{name}_total {v}");
    }
    head(
        &mut o,
        "recap_capture_recorder_wait_seconds_total",
        "counter",
        "Time workers waited for the recorder.",
    );
    let _ = writeln!(
        o,
        "recap_capture_recorder_wait_seconds_total {}",
        c.recorder_wait_ns as f64 / 1e9
    );
    head(
        &mut o,
        "recap_capture_request_errors_total",
        "counter",
        "Requests that ended in an error, by kind.",
    );
    for k in ErrorKind::ALL.iter().filter(|k| **k != ErrorKind::Cancelled) {
        let _ = writeln!(
            o,
            "recap_capture_request_errors_total{{kind=\"{k}\"}} {}",
            c.errors.get(k).copied().unwrap_or(0)
        );
    }
    head(
        &mut o,
        "recap_capture_requests_in_flight",
        "gauge",
        "Requests in flight.",
    );
    let _ = writeln!(o, "recap_capture_requests_in_flight {}", c.in_flight);
    head(
        &mut o,
        "recap_capture_elapsed_seconds",
        "gauge",
        "Seconds since the run started.",
    );
    let _ = writeln!(o, "recap_capture_elapsed_seconds {}", s.elapsed_s);
    head(
        &mut o,
        "recap_capture_run_info",
        "gauge",
        "The run being published (always 1).",
    );
    let _ = writeln!(
        o,
        "recap_capture_run_info{{run_id=\"{}\",run_dir=\"{}\",plan_point=\"{}\"}} 1",
        label(&s.run_id),
        label(&s.run_dir),
        label(s.plan.as_ref().map_or("", |p| p.point.as_str()))
    );
    head(
        &mut o,
        "recap_capture_run_state",
        "gauge",
        "The run's state: 1 for the current one.",
    );
    for st in LiveState::ALL {
        let _ = writeln!(
            o,
            "recap_capture_run_state{{state=\"{st}\"}} {}",
            u8::from(*st == s.state)
        );
    }
    if let Some(p) = &s.plan {
        head(
            &mut o,
            "recap_capture_plan_run_index",
            "gauge",
            "1-based position of this run in its plan.",
        );
        let _ = writeln!(o, "recap_capture_plan_run_index {}", p.index);
        head(
            &mut o,
            "recap_capture_plan_runs",
            "gauge",
            "Runs the plan lists (at most, for a search).",
        );
        let _ = writeln!(o, "recap_capture_plan_runs {}", p.total);
    }
    for (name, help, d) in [
        ("ttft_seconds", "Time to the first output event, from sent.", &s.ttft),
        (
            "inter_chunk_gap_seconds",
            "Gaps between consecutive output events of a request.",
            &s.gap,
        ),
        ("e2e_seconds", "Sent to done of successful requests.", &s.e2e),
    ] {
        let n = format!("recap_capture_{name}");
        head(&mut o, &n, "histogram", help);
        histogram(&mut o, &n, d);
    }
    o
}

fn histogram(o: &mut String, name: &str, d: &LiveDistribution) {
    let mut cumulative = 0u64;
    let mut b = d.buckets.iter().peekable();
    for le in BUCKETS_S {
        let le_us = (le * 1e6).round() as u64;
        while let Some([v, n]) = b.peek() {
            if *v > le_us {
                break;
            }
            cumulative += n;
            b.next();
        }
        let _ = writeln!(o, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
    }
    let _ = writeln!(o, "{name}_bucket{{le=\"+Inf\"}} {}", d.count);
    let _ = writeln!(o, "{name}_sum {}", d.sum_ms / 1000.0);
    let _ = writeln!(o, "{name}_count {}", d.count);
}

#[cfg(test)]
mod tests {
    use super::*;
    use recap_schemas::live::new_histogram;

    #[test]
    fn histograms_render_cumulative_buckets_in_seconds() {
        // 0.5 ms, 2 ms, 2 ms, 30 ms, 200 s (over the top bucket): hand-counted per `le`.
        let mut h = new_histogram();
        for us in [500u64, 2000, 2000, 30_000, 200_000_000] {
            h.record(us).expect("in range");
        }
        let d = LiveDistribution::from_histogram(&h, 200_034_500);
        let mut o = String::new();
        histogram(&mut o, "x", &d);
        let bucket = |le: &str| -> u64 {
            let prefix = format!("x_bucket{{le=\"{le}\"}} ");
            o.lines()
                .find_map(|l| l.strip_prefix(&prefix))
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("no bucket {le} in {o}"))
        };
        assert_eq!(bucket("0.001"), 1);
        assert_eq!(bucket("0.0025"), 3);
        assert_eq!(bucket("0.025"), 3);
        assert_eq!(bucket("0.05"), 4);
        assert_eq!(bucket("120"), 4);
        assert_eq!(bucket("+Inf"), 5);
        assert!(o.contains("x_count 5\n") && o.contains("x_sum 200.0345\n"), "{o}");
    }

    #[test]
    fn labels_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
