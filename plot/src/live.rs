//! `plot --live URL[,URL...]`: a terminal dashboard of running captures.
//!
//! Each URL is a `capture --live` address; a thread per capture reads its `/stream` (server-sent
//! events of [`LiveSnapshot`]s) and the screen shows all of them as one: counters added,
//! histograms merged exactly ([`LiveDistribution::merged`]), the state the furthest behind.
//! It keeps the last screen after the captures end; `q` (or Esc, Ctrl-C) quits. Given shard 0
//! of a sharded capture, it also watches every shard that shard 0 lists on `/shards` (looked
//! up every second, so shards that reach the barrier later join the view).

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Paragraph, Row, Sparkline, Table};
use ratatui::Frame;
use recap_schemas::live::{LiveCounts, LiveDistribution, LiveSnapshot, LiveState, ShardsReply};

/// What a reader thread reports.
enum Msg {
    Snapshot(usize, Box<LiveSnapshot>),
    /// The stream ended (the capture closed it: its process is ending).
    Ended(usize),
    /// Could not connect or read; the reader tries again.
    Failed(usize, String),
    /// Shard 0 of a sharded capture lists this shard's endpoint.
    Discovered(String),
}

/// How often shard 0's `/shards` is looked up.
const DISCOVER_EVERY: Duration = Duration::from_secs(1);

/// The live endpoints a `/shards` reply lists.
pub fn shard_urls(body: &str) -> Vec<String> {
    serde_json::from_str::<ShardsReply>(body)
        .map(|r| r.live.into_iter().map(|s| s.url).collect())
        .unwrap_or_default()
}

/// Looks up `url/shards` every [`DISCOVER_EVERY`] and reports each endpoint it lists; stops
/// at once for a capture that is not shard 0 (404), or when the dashboard is gone.
fn discover(url: String, tx: mpsc::Sender<Msg>) {
    let shards_url = format!("{}/shards", url.trim_end_matches('/'));
    loop {
        match ureq::get(&shards_url).call() {
            Ok(resp) => {
                let body = resp.into_body().read_to_string().unwrap_or_default();
                for u in shard_urls(&body) {
                    if tx.send(Msg::Discovered(u)).is_err() {
                        return;
                    }
                }
            }
            Err(ureq::Error::StatusCode(404)) => return,
            Err(_) => {}
        }
        std::thread::sleep(DISCOVER_EVERY);
    }
}

/// One watched capture.
#[derive(Debug, Default, Clone)]
pub struct Source {
    /// Its base URL.
    pub url: String,
    /// The latest snapshot it sent.
    pub latest: Option<LiveSnapshot>,
    /// Its stream ended.
    pub ended: bool,
    /// The last connection error, until a snapshot arrives.
    pub error: Option<String>,
}

/// All watched captures as one.
#[derive(Debug, Clone, PartialEq)]
pub struct Merged {
    /// Captures with a snapshot.
    pub reporting: usize,
    /// The state of the one furthest behind (`live` before `draining` before `complete`).
    pub state: Option<LiveState>,
    /// Longest elapsed time, s.
    pub elapsed_s: f64,
    /// Counters added.
    pub counts: LiveCounts,
    /// Histograms merged.
    pub ttft: LiveDistribution,
    /// Histograms merged.
    pub gap: LiveDistribution,
    /// Histograms merged.
    pub e2e: LiveDistribution,
}

/// Merges the captures' latest snapshots.
pub fn merge(sources: &[Source]) -> Merged {
    let snaps: Vec<&LiveSnapshot> = sources.iter().filter_map(|s| s.latest.as_ref()).collect();
    let mut counts = LiveCounts::default();
    for s in &snaps {
        counts.add(&s.counts);
    }
    Merged {
        reporting: snaps.len(),
        state: snaps.iter().map(|s| s.state).min(),
        elapsed_s: snaps.iter().map(|s| s.elapsed_s).fold(0.0, f64::max),
        counts,
        ttft: LiveDistribution::merged(snaps.iter().map(|s| &s.ttft)),
        gap: LiveDistribution::merged(snaps.iter().map(|s| &s.gap)),
        e2e: LiveDistribution::merged(snaps.iter().map(|s| &s.e2e)),
    }
}

/// Reads `url/stream` until it ends, reconnecting while it cannot connect.
fn read_stream(i: usize, url: String, tx: mpsc::Sender<Msg>) {
    let stream_url = format!("{}/stream", url.trim_end_matches('/'));
    loop {
        let resp = match ureq::get(&stream_url).call() {
            Ok(r) => r,
            Err(e) => {
                if tx.send(Msg::Failed(i, e.to_string())).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(500));
                continue;
            }
        };
        let reader = BufReader::new(resp.into_body().into_reader());
        let mut data = String::new();
        for line in reader.lines() {
            let Ok(line) = line else { break };
            if let Some(d) = line.strip_prefix("data:") {
                data.push_str(d.trim_start());
            } else if line.is_empty() && !data.is_empty() {
                match serde_json::from_str::<LiveSnapshot>(&data) {
                    Ok(s) => {
                        if tx.send(Msg::Snapshot(i, Box::new(s))).is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Msg::Failed(i, format!("a snapshot that does not parse: {e}")));
                    }
                }
                data.clear();
            }
        }
        let _ = tx.send(Msg::Ended(i));
        return;
    }
}

/// Watches `urls` until the user quits.
pub fn watch(urls: &[String]) -> std::io::Result<()> {
    let (tx, rx) = mpsc::channel();
    let mut sources: Vec<Source> = urls
        .iter()
        .map(|u| Source {
            url: u.clone(),
            ..Source::default()
        })
        .collect();
    for (i, u) in urls.iter().enumerate() {
        let (tx, u) = (tx.clone(), u.clone());
        std::thread::spawn(move || read_stream(i, u, tx));
    }
    for u in urls {
        let (tx, u) = (tx.clone(), u.clone());
        std::thread::spawn(move || discover(u, tx));
    }
    let mut terminal = ratatui::init();
    let mut rates = Rates::default();
    let result = (|| -> std::io::Result<()> {
        loop {
            while let Ok(m) = rx.try_recv() {
                match m {
                    Msg::Snapshot(i, s) => {
                        sources[i].latest = Some(*s);
                        sources[i].error = None;
                    }
                    Msg::Ended(i) => sources[i].ended = true,
                    Msg::Failed(i, e) => sources[i].error = Some(e),
                    Msg::Discovered(u) => {
                        if !sources
                            .iter()
                            .any(|s| s.url.trim_end_matches('/') == u.trim_end_matches('/'))
                        {
                            let (i, tx) = (sources.len(), tx.clone());
                            sources.push(Source {
                                url: u.clone(),
                                ..Source::default()
                            });
                            std::thread::spawn(move || read_stream(i, u, tx));
                        }
                    }
                }
            }
            let merged = merge(&sources);
            rates.observe(&merged);
            terminal.draw(|f| draw(f, &sources, &merged, &rates))?;
            if event::poll(Duration::from_millis(100))? {
                if let Event::Key(k) = event::read()? {
                    let ctrl_c = k.code == KeyCode::Char('c') && k.modifiers.contains(KeyModifiers::CONTROL);
                    if k.kind == KeyEventKind::Press && (matches!(k.code, KeyCode::Char('q') | KeyCode::Esc) || ctrl_c)
                    {
                        return Ok(());
                    }
                }
            }
        }
    })();
    ratatui::restore();
    result
}

/// Rates over the last second, and a history of requests/s for the sparkline.
#[derive(Default)]
struct Rates {
    seen: VecDeque<(Instant, u64, u64, u64)>,
    req_per_s: f64,
    events_per_s: f64,
    tokens_per_s: f64,
    history: VecDeque<u64>,
    last_sample: Option<Instant>,
}

impl Rates {
    fn observe(&mut self, m: &Merged) {
        let now = Instant::now();
        let c = &m.counts;
        self.seen
            .push_back((now, c.ended(), c.sse_events, c.usage_output_tokens));
        while self.seen.len() > 2 && now.duration_since(self.seen[1].0) >= Duration::from_secs(1) {
            self.seen.pop_front();
        }
        if m.state == Some(LiveState::Complete) && m.elapsed_s > 0.0 {
            // Every capture has ended: the rates of the whole runs.
            self.req_per_s = c.ended() as f64 / m.elapsed_s;
            self.events_per_s = c.sse_events as f64 / m.elapsed_s;
            self.tokens_per_s = c.usage_output_tokens as f64 / m.elapsed_s;
        } else if let (Some(a), Some(b)) = (self.seen.front(), self.seen.back()) {
            let dt = b.0.duration_since(a.0).as_secs_f64();
            if dt > 0.0 {
                self.req_per_s = b.1.saturating_sub(a.1) as f64 / dt;
                self.events_per_s = b.2.saturating_sub(a.2) as f64 / dt;
                self.tokens_per_s = b.3.saturating_sub(a.3) as f64 / dt;
            }
        }
        if self
            .last_sample
            .is_none_or(|t| now.duration_since(t) >= Duration::from_millis(500))
        {
            self.last_sample = Some(now);
            self.history.push_back(self.req_per_s.round() as u64);
            if self.history.len() > 400 {
                self.history.pop_front();
            }
        }
    }
}

/// A latency in ms as the screen shows it.
pub fn ms(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.1}"))
}

fn draw(f: &mut Frame, sources: &[Source], m: &Merged, rates: &Rates) {
    let [head, middle, spark, foot] = Layout::vertical([
        Constraint::Length(2 + sources.len() as u16 + 1),
        Constraint::Min(14),
        Constraint::Length(6),
        Constraint::Length(1),
    ])
    .areas(f.area());
    let mut lines = vec![Line::from(format!(
        "state {}   elapsed {:.1} s   captures {}/{}",
        m.state.map_or("waiting", |s| s.as_str()),
        m.elapsed_s,
        m.reporting,
        sources.len()
    ))
    .style(Style::default().add_modifier(Modifier::BOLD))];
    for s in sources {
        let what = match (&s.latest, &s.error) {
            (Some(l), _) => {
                let plan = l
                    .plan
                    .as_ref()
                    .map(|p| format!("   plan {} (run {} of at most {})", p.point, p.index, p.total))
                    .unwrap_or_default();
                format!(
                    "{}  {}  {}{}{}",
                    l.run_id,
                    l.run_dir,
                    l.state,
                    plan,
                    if s.ended { "  (ended)" } else { "" }
                )
            }
            (None, Some(e)) => format!("not connected: {e}"),
            (None, None) => "connecting".into(),
        };
        lines.push(Line::from(format!("{}  {what}", s.url)));
    }
    f.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(" recap live ")),
        head,
    );

    let [left, right] = Layout::horizontal([Constraint::Length(34), Constraint::Min(40)]).areas(middle);
    let c = &m.counts;
    let mut rows: Vec<(String, String)> = vec![
        ("sent".into(), c.sent.to_string()),
        ("done".into(), c.done.to_string()),
        ("errors".into(), c.errors_total().to_string()),
    ];
    for (k, n) in &c.errors {
        rows.push((format!("  {k}"), n.to_string()));
    }
    rows.extend([
        ("cancelled".into(), c.cancelled.to_string()),
        ("in flight".into(), c.in_flight.to_string()),
        ("connections".into(), c.connections.to_string()),
        ("retries".into(), c.retries.to_string()),
        ("sse events".into(), c.sse_events.to_string()),
        ("output tokens".into(), c.usage_output_tokens.to_string()),
        ("recorder waits".into(), c.recorder_waits.to_string()),
        ("requests/s".into(), format!("{:.1}", rates.req_per_s)),
        ("events/s".into(), format!("{:.0}", rates.events_per_s)),
        ("tokens/s".into(), format!("{:.0}", rates.tokens_per_s)),
    ]);
    let counts = Table::new(
        rows.into_iter().map(|(k, v)| Row::new([k, v])),
        [Constraint::Length(16), Constraint::Length(14)],
    )
    .block(Block::bordered().title(" requests "));
    f.render_widget(counts, left);

    let header =
        Row::new(["", "count", "p50", "p90", "p99", "max"]).style(Style::default().add_modifier(Modifier::BOLD));
    let lat = [("ttft", &m.ttft), ("gap", &m.gap), ("e2e", &m.e2e)].map(|(name, d)| {
        Row::new([
            name.to_string(),
            d.count.to_string(),
            ms(d.p50_ms),
            ms(d.p90_ms),
            ms(d.p99_ms),
            ms(d.max_ms),
        ])
    });
    let widths = [
        Constraint::Length(6),
        Constraint::Length(9),
        Constraint::Length(10),
        Constraint::Length(10),
        Constraint::Length(10),
        Constraint::Length(10),
    ];
    f.render_widget(
        Table::new(lat, widths)
            .header(header)
            .block(Block::bordered().title(" latency, ms ")),
        right,
    );
    let data: Vec<u64> = rates.history.iter().copied().collect();
    let width = spark.width.saturating_sub(2) as usize;
    let shown = &data[data.len().saturating_sub(width)..];
    f.render_widget(
        Sparkline::default()
            .block(Block::bordered().title(" requests/s "))
            .data(shown),
        spark,
    );
    f.render_widget(Paragraph::new("q: quit"), foot);
}

#[cfg(test)]
mod tests {
    use super::*;
    use recap_schemas::live::{new_histogram, LIVE_SCHEMA_VERSION};
    use recap_schemas::ErrorKind;

    #[test]
    fn lists_the_shards_shard_0_names_and_nothing_from_other_answers() {
        let body =
            r#"{"count":3,"live":[{"index":1,"url":"http://10.0.0.2:9465"},{"index":2,"url":"http://10.0.0.3:9466"}]}"#;
        assert_eq!(shard_urls(body), ["http://10.0.0.2:9465", "http://10.0.0.3:9466"]);
        assert!(shard_urls("not found\n").is_empty());
        assert!(shard_urls(r#"{"count":1,"live":[]}"#).is_empty());
    }

    fn snap(state: LiveState, done: u64, timeouts: u64, samples: &[u64]) -> LiveSnapshot {
        let mut h = new_histogram();
        for v in samples {
            h.record(*v).expect("in range");
        }
        LiveSnapshot {
            schema_version: LIVE_SCHEMA_VERSION,
            run_id: "r".into(),
            run_dir: "d".into(),
            state,
            elapsed_s: done as f64,
            seq: 1,
            plan: None,
            counts: LiveCounts {
                sent: done + timeouts,
                done,
                errors: [(ErrorKind::Timeout, timeouts)]
                    .into_iter()
                    .filter(|(_, n)| *n > 0)
                    .collect(),
                ..LiveCounts::default()
            },
            ttft: LiveDistribution::from_histogram(&h, samples.iter().sum()),
            gap: LiveDistribution::default(),
            e2e: LiveDistribution::default(),
        }
    }

    #[test]
    fn captures_merge_into_one_view() {
        let sources = vec![
            Source {
                latest: Some(snap(LiveState::Complete, 3, 1, &[100, 200, 300])),
                ..Source::default()
            },
            Source {
                latest: Some(snap(LiveState::Draining, 2, 0, &[400, 500])),
                ..Source::default()
            },
            Source::default(),
        ];
        let m = merge(&sources);
        assert_eq!(m.reporting, 2);
        assert_eq!(m.state, Some(LiveState::Draining), "the capture furthest behind");
        assert_eq!((m.counts.sent, m.counts.done, m.counts.errors_total()), (6, 5, 1));
        assert_eq!(m.elapsed_s, 3.0);
        // Five samples of 0.1..0.5 ms: the median is the third, the max the fifth.
        assert_eq!((m.ttft.count, m.ttft.p50_ms, m.ttft.max_ms), (5, Some(0.3), Some(0.5)));
        assert!((m.ttft.sum_ms - 1.5).abs() < 1e-9);
    }
}
