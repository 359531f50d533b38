//! `--scrape URL[,URL]`: reads servers' metrics endpoints (vLLM, SGLang, TGI and llama.cpp
//! `/metrics`, a DCGM exporter) every `--scrape-interval` while the run goes, and records
//! every read as a `scrapes` row: the exposition text as received, or why the read failed.
//!
//! Each target has its own task and its own connection, outside the load loop: a slow or
//! dead endpoint costs a failed row, never a delayed request. Nothing is parsed here (capture
//! stays lean, and a run keeps what the server said): `analyze` parses the text.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::Uri;
use hyper_util::rt::TokioIo;
use tokio::sync::watch;

use crate::clock::Clock;
use crate::recorder::{Recorder, ScrapeRow};

/// The largest exposition body kept; a larger one is a failed scrape (vLLM's is ~100 KB).
pub const MAX_BODY_BYTES: usize = 16 << 20;

/// What `Accept` asks for: the Prometheus text format, which every server here speaks.
const ACCEPT: &str = "text/plain;version=0.0.4;q=1,application/openmetrics-text;q=0.5,*/*;q=0.1";

/// One endpoint to read.
#[derive(Debug, Clone)]
pub struct Target {
    /// Where to send the GET.
    pub uri: Uri,
    /// The URL as recorded (credentials and query secrets removed).
    pub shown: String,
}

impl Target {
    /// Parses `url`; only `http://` is read (metrics endpoints are plain HTTP in practice).
    pub fn parse(url: &str) -> Result<Self, String> {
        let uri: Uri = url
            .parse()
            .map_err(|e| format!("--scrape {:?}: {e}", crate::redact::redact_url(url)))?;
        if uri.scheme_str() != Some("http") || uri.host().is_none() {
            return Err(format!(
                "--scrape {url:?}: give an http:// URL with a host (https is not read)"
            ));
        }
        Ok(Target {
            uri,
            shown: crate::redact::redact_url(url),
        })
    }
}

/// Reads every target each `interval` until `stop` turns true, then once more (so counters
/// cover the whole run), each read bounded by `timeout`. Returns when all targets are done.
pub async fn run(
    targets: Vec<Target>,
    interval: Duration,
    timeout: Duration,
    recorder: Recorder,
    clock: Clock,
    stop: watch::Receiver<bool>,
) {
    let mut tasks = tokio::task::JoinSet::new();
    for target in targets {
        let (recorder, mut stop) = (recorder.clone(), stop.clone());
        tasks.spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                let last = tokio::select! {
                    _ = tick.tick() => false,
                    _ = stop.wait_for(|s| *s) => true,
                };
                recorder.scrape(scrape_once(&target, timeout, clock).await).await;
                if last {
                    break;
                }
            }
        });
    }
    drop(recorder);
    while tasks.join_next().await.is_some() {}
}

/// One read of `target`.
pub async fn scrape_once(target: &Target, timeout: Duration, clock: Clock) -> ScrapeRow {
    let t_ns = clock.now_ns();
    let got = tokio::time::timeout(timeout, get(&target.uri)).await;
    let mut row = ScrapeRow {
        target: target.shown.clone(),
        t_ns,
        ..ScrapeRow::default()
    };
    match got {
        Err(_) => row.error = Some(format!("timed out after {}", humantime::format_duration(timeout))),
        Ok(Err(e)) => row.error = Some(e),
        Ok(Ok((status, content_type, body))) => {
            row.http_status = Some(status);
            row.content_type = content_type;
            if let Some(body) = body {
                row.body = Some(String::from_utf8_lossy(&body).into_owned());
            }
            if status != 200 {
                row.error = Some(format!("HTTP status {status}"));
            } else if row.body.is_none() {
                row.error = Some(format!("body over {MAX_BODY_BYTES} bytes"));
            }
        }
    }
    row.end_ns = clock.now_ns();
    row
}

/// GET `uri` on a connection of its own: status, `Content-Type`, and the body (`None` when
/// over [`MAX_BODY_BYTES`]).
async fn get(uri: &Uri) -> Result<(u16, Option<String>, Option<Bytes>), String> {
    let host = uri.host().unwrap_or("127.0.0.1");
    let port = uri.port_u16().unwrap_or(80);
    let stream = tokio::net::TcpStream::connect((host.trim_start_matches('[').trim_end_matches(']'), port))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream))
        .await
        .map_err(|e| format!("HTTP handshake: {e}"))?;
    let conn = tokio::spawn(conn);
    let authority = uri.authority().map_or_else(|| host.to_string(), |a| a.to_string());
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let req = hyper::Request::get(path)
        .header(hyper::header::HOST, authority)
        .header(hyper::header::ACCEPT, ACCEPT)
        .header(
            hyper::header::USER_AGENT,
            concat!("recap-capture/", env!("CARGO_PKG_VERSION")),
        )
        .body(Empty::new())
        .map_err(|e| format!("request: {e}"))?;
    let resp = sender.send_request(req).await.map_err(|e| format!("request: {e}"))?;
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = match Limited::new(resp.into_body(), MAX_BODY_BYTES).collect().await {
        Ok(b) => Some(b.to_bytes()),
        Err(e) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => None,
        Err(e) => return Err(format!("reading the body: {e}")),
    };
    conn.abort();
    Ok((status, content_type, body))
}
