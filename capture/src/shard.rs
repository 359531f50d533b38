//! `--shard I/N`: one of N capture processes that together send one run's load, and how they
//! start together on one clock (`docs/capture.md`, "Sharded capture").
//!
//! The split is by request id: shard I sends exactly the ids `i` with `i % N == I` of the
//! unsharded run (closed loop: its own counter `k` sends id `k N + I`; open loop: the `i`-th
//! arrival of the one seeded schedule every shard draws), so the shards' union is the unsharded
//! run's requests, dataset rows and (open loop) schedule, and ids never collide when `analyze`
//! merges the shards. Orchestration stays with what users run: the index and count come from
//! the flag or the job's environment (Kubernetes Indexed Jobs, Slurm).
//!
//! Starting together: shard 0's `--live` endpoint serves `/barrier`. Each other shard polls
//! it; every reply carries shard 0's wall clock, so each poll is also a clock probe (the one
//! with the shortest round trip is kept: offset and half its round trip as the uncertainty).
//! Once all shards have arrived, shard 0 names a start time a little ahead on its clock and
//! every shard sleeps until that moment on its own clock, offset-corrected.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::Uri;
use hyper_util::rt::TokioIo;
use recap_schemas::live::{ShardLive, ShardsReply};
use recap_schemas::manifest::{ShardInfo, ShardStart};

use crate::clock::{rfc3339, unix_ns, Wall};

/// Environment variables holding a shard's index, in the order they are read: Kubernetes
/// Indexed Jobs set the first, Slurm the second (one task per shard).
pub const INDEX_VARS: [&str; 2] = ["JOB_COMPLETION_INDEX", "SLURM_PROCID"];
/// Environment variables holding the shard count: Kubernetes does not expose a Job's
/// `completions`, so its manifest sets `RECAP_SHARDS`; Slurm sets the second.
pub const COUNT_VARS: [&str; 2] = ["RECAP_SHARDS", "SLURM_NTASKS"];
/// How far ahead of the release shard 0 sets the start: every shard polls several times in it.
const START_LEAD: Duration = Duration::from_millis(300);
/// How often a shard polls the barrier.
const POLL: Duration = Duration::from_millis(20);
/// Clock probes a shard takes at least before it starts.
pub const MIN_PROBES: u32 = 8;

/// One shard of N.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// From 0.
    pub index: u32,
    /// N >= 1.
    pub count: u32,
}

impl Shard {
    /// The whole load: what a process that is not a shard sends.
    pub const WHOLE: Shard = Shard { index: 0, count: 1 };

    /// Parses `I/N`.
    pub fn parse(text: &str) -> Result<Shard, String> {
        let bad = || format!("--shard {text:?}: expected I/N with 0 <= I < N (e.g. 0/4)");
        let (i, n) = text.trim().split_once('/').ok_or_else(bad)?;
        let (index, count) = (
            i.trim().parse::<u32>().map_err(|_| bad())?,
            n.trim().parse::<u32>().map_err(|_| bad())?,
        );
        Shard::new(index, count).ok_or_else(bad)
    }

    /// `Some` when `index < count`.
    pub fn new(index: u32, count: u32) -> Option<Shard> {
        (count >= 1 && index < count).then_some(Shard { index, count })
    }

    /// The shard the job's environment names (`get` reads a variable), if it names both an
    /// index and a count above 1.
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<Option<Shard>, String> {
        let first = |vars: &[&'static str]| -> Option<(&'static str, String)> {
            vars.iter()
                .find_map(|v| get(v).filter(|s| !s.trim().is_empty()).map(|s| (*v, s)))
        };
        let (Some((iv, i)), Some((nv, n))) = (first(&INDEX_VARS), first(&COUNT_VARS)) else {
            return Ok(None);
        };
        let num = |var: &str, s: &str| {
            s.trim()
                .parse::<u32>()
                .map_err(|_| format!("${var}={s:?}: expected a whole number"))
        };
        let (index, count) = (num(iv, &i)?, num(nv, &n)?);
        if count <= 1 {
            return Ok(None);
        }
        Shard::new(index, count)
            .map(Some)
            .ok_or_else(|| format!("${iv}={index} is not below ${nv}={count}"))
    }

    /// Whether request (or session, or arrival) `id` is this shard's.
    pub fn owns(&self, id: u64) -> bool {
        id % u64::from(self.count) == u64::from(self.index)
    }

    /// The id this shard's `k`-th own request has.
    pub fn id(&self, k: u64) -> u64 {
        k.saturating_mul(u64::from(self.count))
            .saturating_add(u64::from(self.index))
    }

    /// How many of the ids in `lo..hi` are this shard's.
    pub fn count_in(&self, lo: u64, hi: u64) -> u64 {
        let below = |x: u64| {
            // ids < x that are ≡ index (mod count)
            let (n, i) = (u64::from(self.count), u64::from(self.index));
            if x <= i {
                0
            } else {
                (x - i).div_ceil(n)
            }
        };
        below(hi).saturating_sub(below(lo))
    }

    /// This shard's share of `n` workers (the first `n % N` shards get one more).
    pub fn share(&self, n: u32) -> u32 {
        n / self.count + u32::from(self.index < n % self.count)
    }
}

/// How the shards start together.
#[derive(Debug, Clone, PartialEq)]
pub enum Start {
    /// Each shard starts when launched.
    Now,
    /// `--start-at`: at this wall-clock time.
    At(SystemTime),
    /// `--barrier URL`: released by shard 0's live endpoint.
    Barrier {
        /// Shard 0's live endpoint (base URL).
        url: Uri,
        /// As recorded (credentials removed).
        shown: String,
        /// How long to wait for every shard.
        timeout: Duration,
    },
}

/// Unix ns as the manifest writes times.
fn rfc3339_of_unix_ns(ns: i64) -> String {
    rfc3339(UNIX_EPOCH + Duration::from_nanos(u64::try_from(ns).unwrap_or(0)))
}

/// Shard 0's side of the barrier, served on its live endpoint (`/barrier?shard=I`).
#[derive(Debug)]
pub struct Barrier {
    count: u32,
    /// Which run of the plan it starts (0 for a single run).
    round: u32,
    wall: Wall,
    state: Mutex<BarrierState>,
    arrived: tokio::sync::Notify,
}

#[derive(Debug, Default)]
struct BarrierState {
    arrived: BTreeSet<u32>,
    start_unix_ns: Option<i64>,
    /// The live endpoint each other shard named, as shard 0 reaches it (`http://IP:PORT`).
    live: std::collections::BTreeMap<u32, String>,
}

/// What `/barrier` answers (JSON): shard 0's clock, who has arrived, and the start once set.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BarrierReply {
    /// Shards in the capture.
    pub count: u32,
    /// The run of the plan shard 0 is starting (a shard asking for a later one waits).
    pub round: u32,
    /// Shards that have polled so far (shard 0 included).
    pub arrived: u32,
    /// The start, on shard 0's clock (Unix ns); `null` until every shard has arrived.
    pub start_unix_ns: Option<i64>,
    /// Shard 0's wall clock when it answered (Unix ns): each poll is a clock probe.
    pub now_unix_ns: i64,
}

impl Barrier {
    /// A barrier for `count` shards meeting for run `round` of their plan, on shard 0, whose
    /// clock is `wall`.
    pub fn new(count: u32, wall: Wall, round: u32) -> Barrier {
        let mut state = BarrierState::default();
        state.arrived.insert(0);
        Barrier {
            count,
            round,
            wall,
            state: Mutex::new(state),
            arrived: tokio::sync::Notify::new(),
        }
    }

    /// Shard `shard` (index, count) polls for run `round` (`None`: the query named none, which
    /// only reads the clock), naming its live endpoint `live` (`http://IP:PORT`) if it has one. A shard
    /// ahead of shard 0 (a later round) is not counted and gets no start: it polls again until
    /// shard 0 opens that round.
    pub fn poll(&self, shard: Option<(u32, u32)>, round: u32, live: Option<String>) -> Result<BarrierReply, String> {
        let mut st = self.state.lock().map_err(|_| "barrier state poisoned".to_string())?;
        if let Some((s, count)) = shard {
            if count != self.count || s >= self.count {
                return Err(format!(
                    "shard {s}/{count} polls the barrier of a capture of {} shards: the shards were given different counts",
                    self.count
                ));
            }
            if let Some(url) = live {
                st.live.insert(s, url);
            }
            if round < self.round {
                return Err(format!(
                    "shard {s} asks to start run {round} of the plan, but shard 0 is at run {}: the shards' plans differ",
                    self.round
                ));
            }
            if round == self.round && st.arrived.insert(s) {
                self.arrived.notify_one();
            }
        }
        let current = round == self.round;
        Ok(BarrierReply {
            count: self.count,
            round: self.round,
            arrived: st.arrived.len() as u32,
            start_unix_ns: st.start_unix_ns.filter(|_| current),
            // Read last, as close to the reply going out as this handler gets.
            now_unix_ns: self.wall.now_unix_ns(),
        })
    }

    /// Shards in the capture.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// The other shards' live endpoints named so far.
    pub fn shards(&self) -> ShardsReply {
        let live = self
            .state
            .lock()
            .map(|st| {
                st.live
                    .iter()
                    .map(|(index, url)| ShardLive {
                        index: *index,
                        url: url.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        ShardsReply {
            count: self.count,
            live,
        }
    }

    /// Waits until every shard has polled, sets the start [`START_LEAD`] ahead, and returns it.
    async fn release(&self, timeout: Duration) -> Result<i64, String> {
        let wait = async {
            loop {
                let notified = self.arrived.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                {
                    let mut st = self.state.lock().map_err(|_| "barrier state poisoned".to_string())?;
                    if st.arrived.len() as u32 >= self.count {
                        let start = self.wall.now_unix_ns().saturating_add(START_LEAD.as_nanos() as i64);
                        st.start_unix_ns = Some(start);
                        return Ok(start);
                    }
                }
                notified.await;
            }
        };
        match tokio::time::timeout(timeout, wait).await {
            Ok(r) => r,
            Err(_) => {
                let missing: Vec<String> = self
                    .state
                    .lock()
                    .map(|st| {
                        (0..self.count)
                            .filter(|s| !st.arrived.contains(s))
                            .map(|s| s.to_string())
                            .collect()
                    })
                    .unwrap_or_default();
                Err(format!(
                    "the barrier waited {} for shards {} (--barrier-timeout)",
                    humantime::format_duration(timeout),
                    missing.join(", ")
                ))
            }
        }
    }
}

/// Waits for this shard's start (`start`), measuring its clock against shard 0's where there
/// is a barrier; shard 0 of a barrier run releases the others through `barrier`. Returns what
/// the manifest records. Errors are for the user (an unreachable barrier, a timeout).
pub async fn synchronize(
    shard: Shard,
    start: &Start,
    wall: Wall,
    round: u32,
    barrier: Option<&Barrier>,
    live_port: Option<u16>,
) -> Result<ShardInfo, String> {
    let mut info = ShardInfo {
        index: shard.index,
        count: shard.count,
        start: ShardStart::Unsynchronized,
        start_at: None,
        barrier: None,
        clock_offset_ns: None,
        clock_offset_uncertainty_ns: None,
        clock_probes: 0,
    };
    match start {
        Start::Now => {}
        Start::At(at) => {
            info.start = ShardStart::StartAt;
            let at_ns = unix_ns(*at);
            info.start_at = Some(rfc3339_of_unix_ns(at_ns));
            sleep_until_unix(at_ns, wall).await;
        }
        Start::Barrier { url, shown, timeout } => {
            info.start = ShardStart::Barrier;
            info.barrier = Some(shown.clone());
            let start_ns = if shard.index == 0 {
                let b = barrier.ok_or("shard 0 serves the barrier on its live endpoint: give it --live ADDR")?;
                info.clock_offset_ns = Some(0);
                info.clock_offset_uncertainty_ns = Some(0);
                b.release(*timeout).await?
            } else {
                let (start, probe) = poll_barrier(url, shown, shard, round, live_port, wall, *timeout).await?;
                info.clock_offset_ns = Some(probe.offset_ns);
                info.clock_offset_uncertainty_ns = Some(probe.uncertainty_ns);
                info.clock_probes = probe.probes;
                // The start is on shard 0's clock; this clock reads `offset` less.
                start.saturating_sub(probe.offset_ns)
            };
            info.start_at = Some(rfc3339_of_unix_ns(
                start_ns.saturating_add(info.clock_offset_ns.unwrap_or(0)),
            ));
            sleep_until_unix(start_ns, wall).await;
        }
    }
    Ok(info)
}

/// Sleeps until this clock reads `at_ns`; warns (and starts now) when it is already past.
async fn sleep_until_unix(at_ns: i64, wall: Wall) {
    let wait = at_ns.saturating_sub(wall.now_unix_ns());
    if wait <= 0 {
        if wait < -1_000_000_000 {
            tracing::warn!(
                "the shards' start time passed {:.1} s ago: starting now",
                -wait as f64 / 1e9
            );
        }
        return;
    }
    tokio::time::sleep(Duration::from_nanos(wait as u64)).await;
}

/// The best clock probe so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    /// Shard 0's clock minus this one's (ns).
    pub offset_ns: i64,
    /// Half the round trip (ns).
    pub uncertainty_ns: i64,
    /// Probes taken.
    pub probes: u32,
}

impl Probe {
    /// Takes a probe sent at `t0` and answered at `t1` (this clock) with shard 0's `remote`:
    /// kept when its round trip is the shortest so far.
    pub fn take(best: Option<Probe>, t0: i64, remote: i64, t1: i64) -> Probe {
        let half = (t1 - t0).max(0) / 2;
        let offset = remote - (t0 + half);
        let probes = best.map_or(0, |b| b.probes) + 1;
        match best {
            Some(b) if b.uncertainty_ns <= half => Probe { probes, ..b },
            _ => Probe {
                offset_ns: offset,
                uncertainty_ns: half,
                probes,
            },
        }
    }
}

/// Polls `/barrier?shard=I` until the start is set (and at least [`MIN_PROBES`] probes were
/// taken): the start on shard 0's clock and the best probe. Messages name the URL as `shown`
/// (credentials removed), never as given.
async fn poll_barrier(
    url: &Uri,
    shown: &str,
    shard: Shard,
    round: u32,
    live_port: Option<u16>,
    wall: Wall,
    timeout: Duration,
) -> Result<(i64, Probe), String> {
    let base = url.to_string();
    let live = live_port.map_or(String::new(), |p| format!("&live={p}"));
    let (index, count) = (shard.index, shard.count);
    let target: Uri = format!(
        "{}/barrier?shard={index}&count={count}&round={round}{live}",
        base.trim_end_matches('/')
    )
    .parse()
    .map_err(|e| format!("--barrier {shown:?}: {e}"))?;
    let deadline = tokio::time::Instant::now() + timeout;
    let mut best: Option<Probe> = None;
    let mut conn: Option<hyper::client::conn::http1::SendRequest<Empty<Bytes>>> = None;
    let mut last_error = String::new();
    loop {
        if tokio::time::Instant::now() >= deadline {
            return Err(format!(
                "--barrier {shown}: no start after {} ({last_error})",
                humantime::format_duration(timeout)
            ));
        }
        if conn.is_none() {
            match connect(&target).await {
                Ok(c) => conn = Some(c),
                Err(e) => {
                    last_error = e;
                    tokio::time::sleep(POLL * 5).await;
                    continue;
                }
            }
        }
        let Some(sender) = conn.as_mut() else { continue };
        let t0 = wall.now_unix_ns();
        let reply = get_reply(sender, &target).await;
        let t1 = wall.now_unix_ns();
        match reply {
            Ok(r) => {
                best = Some(Probe::take(best, t0, r.now_unix_ns, t1));
                if let (Some(start), Some(p)) = (r.start_unix_ns, best) {
                    if p.probes >= MIN_PROBES {
                        return Ok((start, p));
                    }
                    // Probes are cheap next to the lead: take the rest at once.
                    continue;
                }
            }
            // Shard 0 refused this shard (an index past the count, another plan): waiting
            // cannot help.
            Err(Refusal::Refused(e)) => return Err(format!("--barrier {shown}: {e}")),
            Err(Refusal::Retry(e)) => {
                last_error = e;
                conn = None;
            }
        }
        tokio::time::sleep(POLL).await;
    }
}

async fn connect(uri: &Uri) -> Result<hyper::client::conn::http1::SendRequest<Empty<Bytes>>, String> {
    let host = uri.host().unwrap_or("127.0.0.1");
    let port = uri.port_u16().unwrap_or(80);
    let stream = tokio::net::TcpStream::connect((host.trim_start_matches('[').trim_end_matches(']'), port))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let _ = stream.set_nodelay(true);
    let (sender, conn) = hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream))
        .await
        .map_err(|e| format!("HTTP handshake: {e}"))?;
    tokio::spawn(conn);
    Ok(sender)
}

/// Why a poll got no reply to use.
enum Refusal {
    /// Not yet (shard 0 not up, or not at its barrier yet; the connection failed): poll again.
    Retry(String),
    /// Shard 0 answered that this shard cannot join (HTTP 400).
    Refused(String),
}

impl From<String> for Refusal {
    fn from(e: String) -> Self {
        Refusal::Retry(e)
    }
}

async fn get_reply(
    sender: &mut hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    uri: &Uri,
) -> Result<BarrierReply, Refusal> {
    sender.ready().await.map_err(|e| format!("connection: {e}"))?;
    let authority = uri
        .authority()
        .map_or_else(|| "127.0.0.1".to_string(), |a| a.to_string());
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let req = hyper::Request::get(path)
        .header(hyper::header::HOST, authority)
        .body(Empty::new())
        .map_err(|e| format!("request: {e}"))?;
    let resp = sender.send_request(req).await.map_err(|e| format!("request: {e}"))?;
    let status = resp.status();
    let body = Limited::new(resp.into_body(), 64 << 10)
        .collect()
        .await
        .map_err(|e| format!("reading the reply: {e}"))?
        .to_bytes();
    if !status.is_success() {
        let why = format!("HTTP {status}: {}", String::from_utf8_lossy(&body).trim());
        return Err(if status == http::StatusCode::BAD_REQUEST {
            Refusal::Refused(why)
        } else {
            Refusal::Retry(why)
        });
    }
    serde_json::from_slice(&body).map_err(|e| Refusal::Retry(format!("not a barrier reply: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_partition_ids_and_counts_by_hand() {
        let shards: Vec<Shard> = (0..4).map(|i| Shard::new(i, 4).expect("valid")).collect();
        // 10 ids over 4 shards: 0,4,8 | 1,5,9 | 2,6 | 3,7.
        assert_eq!(
            shards.iter().map(|s| s.count_in(0, 10)).collect::<Vec<_>>(),
            [3, 3, 2, 2]
        );
        assert_eq!(shards[1].count_in(2, 10), 2);
        assert_eq!(shards[3].count_in(4, 7), 0);
        for id in 0..100u64 {
            assert_eq!(shards.iter().filter(|s| s.owns(id)).count(), 1);
        }
        assert_eq!(shards[2].id(3), 14);
        assert_eq!(shards.iter().map(|s| s.share(10)).collect::<Vec<_>>(), [3, 3, 2, 2]);
        assert_eq!(shards.iter().map(|s| s.share(32)).sum::<u32>(), 32);
    }

    #[test]
    fn parses_the_flag_and_the_job_environment() {
        assert_eq!(Shard::parse("2/4"), Ok(Shard { index: 2, count: 4 }));
        assert!(Shard::parse("4/4").is_err());
        assert!(Shard::parse("1").is_err());
        assert!(Shard::parse("0/0").is_err());
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
        };
        assert_eq!(
            Shard::from_env(env(&[("JOB_COMPLETION_INDEX", "3"), ("RECAP_SHARDS", "4")])),
            Ok(Some(Shard { index: 3, count: 4 }))
        );
        assert_eq!(
            Shard::from_env(env(&[("SLURM_PROCID", "1"), ("SLURM_NTASKS", "2")])),
            Ok(Some(Shard { index: 1, count: 2 }))
        );
        // One task is no sharding; an index alone says nothing about the count.
        assert_eq!(
            Shard::from_env(env(&[("SLURM_PROCID", "0"), ("SLURM_NTASKS", "1")])),
            Ok(None)
        );
        assert_eq!(Shard::from_env(env(&[("JOB_COMPLETION_INDEX", "0")])), Ok(None));
        assert!(Shard::from_env(env(&[("SLURM_PROCID", "5"), ("SLURM_NTASKS", "4")])).is_err());
        assert!(Shard::from_env(env(&[("SLURM_PROCID", "x"), ("SLURM_NTASKS", "4")])).is_err());
    }

    #[test]
    fn keeps_the_probe_with_the_shortest_round_trip() {
        // Remote clock 1000 ns ahead; round trips 400, 100 and 300 ns.
        let p = Probe::take(None, 0, 1200, 400);
        assert_eq!((p.offset_ns, p.uncertainty_ns), (1000, 200));
        let p = Probe::take(Some(p), 10_000, 11_050, 10_100);
        assert_eq!((p.offset_ns, p.uncertainty_ns, p.probes), (1000, 50, 2));
        let p = Probe::take(Some(p), 20_000, 22_000, 20_300);
        assert_eq!((p.offset_ns, p.uncertainty_ns, p.probes), (1000, 50, 3));
    }

    #[tokio::test]
    async fn the_barrier_releases_once_every_shard_polled() {
        let b = std::sync::Arc::new(Barrier::new(3, Wall::default(), 0));
        assert_eq!(b.poll(Some((1, 3)), 0, None).map(|r| r.start_unix_ns), Ok(None));
        let releasing = tokio::spawn({
            let b = b.clone();
            async move { b.release(Duration::from_secs(5)).await }
        });
        assert!(b.poll(Some((7, 3)), 0, None).is_err());
        // A shard told of another count is refused, whatever its index.
        assert!(b.poll(Some((1, 4)), 0, None).is_err());
        // A shard already at the plan's next run is not counted for this one.
        assert_eq!(b.poll(Some((2, 3)), 1, None).map(|r| r.arrived), Ok(2));
        let r = b
            .poll(Some((2, 3)), 0, Some("http://10.0.0.2:9466".into()))
            .expect("valid shard");
        assert_eq!(r.arrived, 3);
        let start = releasing.await.expect("joined").expect("released");
        assert_eq!(
            b.shards().live,
            vec![ShardLive {
                index: 2,
                url: "http://10.0.0.2:9466".into()
            }]
        );
        assert_eq!(b.poll(Some((1, 3)), 0, None).map(|r| r.start_unix_ns), Ok(Some(start)));
        // ... and gets no start until shard 0 opens that run's barrier.
        assert_eq!(b.poll(Some((1, 3)), 1, None).map(|r| r.start_unix_ns), Ok(None));
        // A shard behind shard 0 ran a different plan.
        let later = Barrier::new(2, Wall::default(), 3);
        assert!(later.poll(Some((1, 2)), 2, None).is_err());
        // A barrier short of a shard names it.
        let lone = Barrier::new(2, Wall::default(), 0);
        let err = lone.release(Duration::from_millis(10)).await.expect_err("times out");
        assert!(err.contains("shards 1"), "{err}");
    }
}
