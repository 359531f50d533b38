//! How a request is sent and its response recorded.
//!
//! Each worker owns one HTTP/1.1 keep-alive connection (hyper's low-level `client::conn`, so a
//! connection id can be recorded and no pool sits in the hot path), reconnecting when the
//! server closed it. An [`Exchange`] stamps `sent`, `headers`, every SSE event and the one
//! terminal event with the run's monotonic clock and hands each row to the [`Recorder`] as it
//! happens. Failures are rows with an `error_kind`, never errors that stop the run.

use std::error::Error as StdError;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, ACCEPT, CONTENT_ENCODING, CONTENT_TYPE, HOST, USER_AGENT};
use http::{HeaderMap, Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use recap_schemas::{ErrorKind, EventKind, Phase};
use tokio::sync::watch;
use tower_service::Service;

use crate::clock::Clock;
use crate::delta;
use crate::progress::Stats;
use crate::recorder::{EventRow, Recorder, RequestRow};
use crate::request::PreparedRequest;
use crate::sse::{SseEvent, SseParser};

/// Largest non-streaming success body kept (bigger is a `protocol` error).
const MAX_BODY_BYTES: usize = 256 << 20;
/// Bytes of an error body kept in `error_message`.
const ERROR_BODY_KEEP: usize = 4096;
/// Bytes of an error body read before giving up on reusing the connection.
const ERROR_BODY_READ: usize = 1 << 20;

/// Problems with the endpoint configuration (not with individual requests).
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    /// The URL does not parse or is not http(s).
    #[error("--url {url}: {message}")]
    Url {
        /// The URL as given.
        url: String,
        /// What is wrong.
        message: String,
    },
    /// TLS setup failed.
    #[error("setting up TLS: {0}")]
    Tls(String),
}

/// The endpoint every worker talks to, with its prebuilt headers and TLS connector.
pub struct Endpoint {
    uri: Uri,
    headers: HeaderMap,
    stream: bool,
    timeout: Duration,
    connector: HttpsConnector<HttpConnector>,
    next_connection: AtomicU32,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Headers may hold credentials: never print them.
        f.debug_struct("Endpoint")
            .field("uri", &self.uri)
            .field("stream", &self.stream)
            .finish_non_exhaustive()
    }
}

impl Endpoint {
    /// Builds the endpoint. `headers` are sent on every request (credentials marked sensitive
    /// by the caller); TLS verification uses the bundled Mozilla roots.
    pub fn new(
        url: &str,
        headers: HeaderMap,
        stream: bool,
        timeout: Duration,
        insecure: bool,
    ) -> Result<Self, EndpointError> {
        let uri: Uri = url.parse().map_err(|e: http::uri::InvalidUri| EndpointError::Url {
            url: url.to_string(),
            message: e.to_string(),
        })?;
        match uri.scheme_str() {
            Some("http" | "https") => {}
            _ => {
                return Err(EndpointError::Url {
                    url: url.to_string(),
                    message: "must start with http:// or https://".into(),
                })
            }
        }
        let authority = uri
            .authority()
            .ok_or_else(|| EndpointError::Url {
                url: url.to_string(),
                message: "has no host".into(),
            })?
            .clone();
        let mut all = HeaderMap::new();
        all.insert(
            HOST,
            HeaderValue::from_str(authority.as_str()).map_err(|e| EndpointError::Url {
                url: url.to_string(),
                message: e.to_string(),
            })?,
        );
        all.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        all.insert(
            ACCEPT,
            HeaderValue::from_static(if stream {
                "text/event-stream"
            } else {
                "application/json"
            }),
        );
        all.insert(
            USER_AGENT,
            HeaderValue::from_static(concat!("recap-capture/", env!("CARGO_PKG_VERSION"))),
        );
        for (k, v) in headers.iter() {
            all.insert(k.clone(), v.clone());
        }
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = hyper_rustls::HttpsConnectorBuilder::new();
        let builder = if insecure {
            let tls = rustls::ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .map_err(|e| EndpointError::Tls(e.to_string()))?
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider)))
                .with_no_client_auth();
            builder.with_tls_config(tls)
        } else {
            builder
                .with_provider_and_webpki_roots(provider)
                .map_err(|e| EndpointError::Tls(e.to_string()))?
        };
        let connector = builder.https_or_http().enable_http1().wrap_connector(http);
        Ok(Endpoint {
            uri,
            headers: all,
            stream,
            timeout,
            connector,
            next_connection: AtomicU32::new(0),
        })
    }

    async fn connect(&self) -> Result<(u32, SendRequest<Full<Bytes>>), Failure> {
        let mut connector = self.connector.clone();
        std::future::poll_fn(|cx| connector.poll_ready(cx))
            .await
            .map_err(|e| Failure::connect(e.as_ref()))?;
        let io = connector
            .call(self.uri.clone())
            .await
            .map_err(|e| Failure::connect(e.as_ref()))?;
        let (sender, conn) = hyper::client::conn::http1::Builder::new()
            .handshake(io)
            .await
            .map_err(|e| Failure::connect(&e))?;
        tokio::spawn(async move {
            // The connection task ends when the server closes it or the worker drops the sender;
            // either way the next request notices and reconnects.
            let _ = conn.await;
        });
        Ok((self.next_connection.fetch_add(1, Relaxed), sender))
    }
}

/// `--insecure`: accepts any server certificate but still checks handshake signatures, so
/// the connection is encrypted, just not authenticated.
#[derive(Debug)]
struct AcceptAnyCert(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A request due to be sent, as the dispatcher hands it to a worker.
#[derive(Debug, Clone)]
pub struct Ticket {
    /// Unique id, in dispatch order.
    pub request_id: u64,
    /// Warmup or measure.
    pub phase: Phase,
    /// Dataset row index.
    pub dataset_row: u64,
    /// Intended send time (ns since start).
    pub scheduled_ns: i64,
    /// The prepared body.
    pub request: Arc<PreparedRequest>,
}

/// Why a request failed: becomes the terminal row's `error_kind` and `error_message`.
#[derive(Debug, Clone)]
pub struct Failure {
    kind: ErrorKind,
    message: String,
    http_status: Option<u16>,
}

impl Failure {
    fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Failure {
            kind,
            message: message.into(),
            http_status: None,
        }
    }

    fn connect(e: &(dyn StdError + 'static)) -> Self {
        Failure::new(ErrorKind::Connect, format!("connect failed: {}", chain(e)))
    }

    fn before_headers(e: &hyper::Error) -> Self {
        let kind = if e.is_parse() {
            ErrorKind::Protocol
        } else {
            ErrorKind::StreamReset
        };
        Failure::new(kind, format!("no response headers: {}", chain(e)))
    }

    fn in_body(e: &hyper::Error) -> Self {
        let kind = if e.is_parse() {
            ErrorKind::Protocol
        } else {
            ErrorKind::StreamReset
        };
        Failure::new(kind, format!("response body ended abnormally: {}", chain(e)))
    }
}

/// The error and its sources, `: `-joined (hyper's top-level messages alone say little).
fn chain(e: &(dyn StdError + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        let text = inner.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        cur = inner.source();
    }
    s
}

/// Shared by all workers: where rows go and what is counted.
#[derive(Clone)]
pub struct WorkerContext {
    /// The endpoint.
    pub endpoint: Arc<Endpoint>,
    /// Row sink.
    pub recorder: Recorder,
    /// Run clock.
    pub clock: Clock,
    /// Live counters.
    pub stats: Arc<Stats>,
    /// Becomes true when in-flight requests must be cancelled.
    pub cancel: watch::Receiver<bool>,
    /// Requests in flight right now.
    pub in_flight: Arc<AtomicU64>,
}

/// One load-generating worker with its connection.
pub struct Worker {
    ctx: WorkerContext,
    conn: Option<(u32, SendRequest<Full<Bytes>>)>,
}

enum Outcome {
    Done,
    Failed(Failure),
    Cancelled,
}

/// What one request has reached so far (kept outside the exchange future so a timeout or a
/// cancellation can still report it).
#[derive(Default)]
struct Progress {
    seq: u32,
    body_bytes: u64,
    t_sent: Option<i64>,
    first_output: bool,
}

impl Worker {
    /// A worker with no connection yet (it connects on its first request).
    pub fn new(ctx: WorkerContext) -> Self {
        Worker { ctx, conn: None }
    }

    /// Sends one request and records everything about it, ending with exactly one terminal
    /// row. Never fails: failures are recorded.
    pub async fn execute(&mut self, t: Ticket) {
        let ctx = self.ctx.clone();
        ctx.in_flight.fetch_add(1, Relaxed);
        let mut progress = Progress::default();
        let mut cancel = ctx.cancel.clone();
        let deadline = tokio::time::Instant::now() + ctx.endpoint.timeout;
        let outcome = tokio::select! {
            r = tokio::time::timeout_at(deadline, self.exchange(&t, &mut progress)) => match r {
                Ok(Ok(())) => Outcome::Done,
                Ok(Err(f)) => Outcome::Failed(f),
                Err(_) => Outcome::Failed(Failure::new(
                    ErrorKind::Timeout,
                    format!("no complete response within {}", humantime::format_duration(ctx.endpoint.timeout)),
                )),
            },
            _ = cancel.wait_for(|c| *c) => Outcome::Cancelled,
        };
        let now = ctx.clock.now_ns();
        let mut row = EventRow::new(t.request_id, EventKind::Done, now);
        row.bytes = Some(u32::try_from(progress.body_bytes).unwrap_or(u32::MAX));
        let reached = |p: &Progress| {
            format!(
                "{}; reached {} response bytes, {} SSE events",
                if p.t_sent.is_some() {
                    "request sent"
                } else {
                    "request not sent"
                },
                p.body_bytes,
                p.seq
            )
        };
        match outcome {
            Outcome::Done => {
                ctx.stats.done.fetch_add(1, Relaxed);
            }
            Outcome::Failed(f) => {
                // A failed exchange leaves the connection in an unknown state: start afresh.
                self.conn = None;
                ctx.stats.add_error(f.kind);
                row.kind = Some(EventKind::Error);
                row.error_kind = Some(f.kind);
                row.http_status = f.http_status;
                row.error_message = Some(format!("{} ({})", f.message, reached(&progress)));
            }
            Outcome::Cancelled => {
                self.conn = None;
                ctx.stats.cancelled.fetch_add(1, Relaxed);
                row.kind = Some(EventKind::Cancelled);
                row.error_kind = Some(ErrorKind::Cancelled);
                row.error_message = Some(format!(
                    "run stopped before the response ended ({})",
                    reached(&progress)
                ));
            }
        }
        ctx.recorder.event(row).await;
        ctx.in_flight.fetch_sub(1, Relaxed);
    }

    async fn ready_connection(&mut self) -> Result<(u32, &mut SendRequest<Full<Bytes>>), Failure> {
        let reusable = match self.conn.as_mut() {
            Some((_, s)) => s.ready().await.is_ok(),
            None => false,
        };
        if !reusable {
            self.conn = Some(self.ctx.endpoint.connect().await?);
        }
        let (id, s) = self.conn.as_mut().expect("invariant: connection was just set");
        Ok((*id, s))
    }

    async fn exchange(&mut self, t: &Ticket, p: &mut Progress) -> Result<(), Failure> {
        let ctx = self.ctx.clone();
        let ep = &ctx.endpoint;
        let connected = self.ready_connection().await;
        let request_row = |connection_id| RequestRow {
            request_id: t.request_id,
            phase: t.phase,
            dataset_row: t.dataset_row,
            api: t.request.api,
            scheduled_ns: t.scheduled_ns,
            prompt: t.request.prompt.clone(),
            messages_json: t.request.messages_json.clone(),
            max_tokens: t.request.max_tokens,
            params_json: t.request.params_json.clone(),
            request_bytes: u32::try_from(t.request.body.len()).unwrap_or(u32::MAX),
            connection_id,
        };
        let (conn_id, sender) = match connected {
            Ok(c) => c,
            Err(f) => {
                ctx.recorder.request(request_row(None)).await;
                return Err(f);
            }
        };
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(ep.uri.path_and_query().map_or("/", |pq| pq.as_str()))
            .body(Full::new(t.request.body.clone()))
            .map_err(|e| Failure::new(ErrorKind::Protocol, format!("building request: {e}")))?;
        *req.headers_mut() = ep.headers.clone();
        // Stamp, then hand over: hyper queues the request to the connection synchronously.
        let t_sent = ctx.clock.now_ns();
        let response = sender.send_request(req);
        p.t_sent = Some(t_sent);
        ctx.stats.sent.fetch_add(1, Relaxed);
        ctx.recorder.request(request_row(Some(conn_id))).await;
        let mut sent = EventRow::new(t.request_id, EventKind::Sent, t_sent);
        sent.bytes = Some(u32::try_from(t.request.body.len()).unwrap_or(u32::MAX));
        ctx.recorder.event(sent).await;

        let response = response.await.map_err(|e| Failure::before_headers(&e))?;
        let status = response.status();
        let mut headers_row = EventRow::new(t.request_id, EventKind::Headers, ctx.clock.now_ns());
        headers_row.http_status = Some(status.as_u16());
        ctx.recorder.event(headers_row).await;

        let is_sse = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("text/event-stream"));
        let mut dec = Decoder::for_encoding(response.headers().get(CONTENT_ENCODING))?;
        let mut body = response.into_body();

        if !status.is_success() {
            let mut kept = Vec::new();
            let mut read = 0usize;
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|e| Failure::in_body(&e))?;
                if let Ok(raw) = frame.into_data() {
                    p.body_bytes += raw.len() as u64;
                    read += raw.len();
                    let data = dec.push(&raw)?;
                    let room = ERROR_BODY_KEEP.saturating_sub(kept.len());
                    kept.extend_from_slice(&data[..data.len().min(room)]);
                    if read > ERROR_BODY_READ {
                        self.conn = None;
                        break;
                    }
                }
            }
            let mut f = Failure::new(
                ErrorKind::HttpStatus,
                format!("HTTP {}: {}", status.as_u16(), String::from_utf8_lossy(&kept).trim()),
            );
            f.http_status = Some(status.as_u16());
            return Err(f);
        }

        let rid = t.request_id;
        if is_sse {
            let mut parser = SseParser::new();
            let mut events = Vec::new();
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|e| Failure::in_body(&e))?;
                let Ok(raw) = frame.into_data() else {
                    continue;
                };
                let now = ctx.clock.now_ns();
                p.body_bytes += raw.len() as u64;
                parser.feed(&dec.push(&raw)?, &mut events);
                for ev in events.drain(..) {
                    record_sse(&ctx, rid, ev, now, t_sent, p).await;
                }
            }
            parser.feed(&dec.finish()?, &mut events);
            parser.finish(&mut events);
            let now = ctx.clock.now_ns();
            for ev in events.drain(..) {
                record_sse(&ctx, rid, ev, now, t_sent, p).await;
            }
            Ok(())
        } else {
            let mut buf = Vec::new();
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|e| Failure::in_body(&e))?;
                if let Ok(raw) = frame.into_data() {
                    p.body_bytes += raw.len() as u64;
                    let data = dec.push(&raw)?;
                    if buf.len() + data.len() > MAX_BODY_BYTES {
                        return Err(Failure::new(
                            ErrorKind::Protocol,
                            format!("response body over {MAX_BODY_BYTES} bytes"),
                        ));
                    }
                    buf.extend_from_slice(&data);
                }
            }
            buf.extend_from_slice(&dec.finish()?);
            let now = ctx.clock.now_ns();
            let text = std::str::from_utf8(&buf)
                .map_err(|e| Failure::new(ErrorKind::Protocol, format!("response body is not UTF-8: {e}")))?;
            let d = delta::parse(text).map_err(|e| {
                let head: String = text.chars().take(200).collect();
                Failure::new(
                    ErrorKind::Protocol,
                    format!("response body is not valid JSON: {e}; body starts {head:?}"),
                )
            })?;
            let mut row = EventRow::new(rid, EventKind::Sse, now);
            row.seq = Some(0);
            row.bytes = Some(u32::try_from(buf.len()).unwrap_or(u32::MAX));
            p.seq = 1;
            if d.has_output() {
                ctx.stats.record_ttft(now - t_sent);
            }
            fill(&mut row, d);
            ctx.stats.sse_events.fetch_add(1, Relaxed);
            ctx.recorder.event(row).await;
            Ok(())
        }
    }
}

/// Undoes `Content-Encoding` as bytes arrive, so SSE events are still recorded when they
/// arrive (gzip is flushed per chunk by servers that compress streams).
enum Decoder {
    Identity,
    Gzip(Box<flate2::write::GzDecoder<Vec<u8>>>),
    Deflate(Box<flate2::write::ZlibDecoder<Vec<u8>>>),
}

impl Decoder {
    fn for_encoding(value: Option<&HeaderValue>) -> Result<Self, Failure> {
        let enc = value
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim().to_ascii_lowercase())
            .unwrap_or_default();
        match enc.as_str() {
            "" | "identity" => Ok(Decoder::Identity),
            "gzip" | "x-gzip" => Ok(Decoder::Gzip(Box::new(flate2::write::GzDecoder::new(Vec::new())))),
            "deflate" => Ok(Decoder::Deflate(Box::new(flate2::write::ZlibDecoder::new(Vec::new())))),
            other => Err(Failure::new(
                ErrorKind::Protocol,
                format!("unsupported Content-Encoding {other:?}"),
            )),
        }
    }

    fn push<'a>(&mut self, data: &'a [u8]) -> Result<std::borrow::Cow<'a, [u8]>, Failure> {
        use std::io::Write;
        let bad =
            |e: std::io::Error| Failure::new(ErrorKind::Protocol, format!("cannot decode the compressed body: {e}"));
        match self {
            Decoder::Identity => Ok(std::borrow::Cow::Borrowed(data)),
            Decoder::Gzip(d) => {
                d.write_all(data).and_then(|_| d.flush()).map_err(bad)?;
                Ok(std::borrow::Cow::Owned(std::mem::take(d.get_mut())))
            }
            Decoder::Deflate(d) => {
                d.write_all(data).and_then(|_| d.flush()).map_err(bad)?;
                Ok(std::borrow::Cow::Owned(std::mem::take(d.get_mut())))
            }
        }
    }

    fn finish(&mut self) -> Result<Vec<u8>, Failure> {
        let bad = |e: std::io::Error| Failure::new(ErrorKind::Protocol, format!("compressed body ends early: {e}"));
        match std::mem::replace(self, Decoder::Identity) {
            Decoder::Identity => Ok(Vec::new()),
            Decoder::Gzip(d) => d.finish().map_err(bad),
            Decoder::Deflate(d) => d.finish().map_err(bad),
        }
    }
}

fn fill(row: &mut EventRow, d: delta::Delta) {
    row.content = d.content;
    row.reasoning = d.reasoning;
    row.tool_calls_json = d.tool_calls_json;
    row.role = d.role;
    row.finish_reason = d.finish_reason;
    row.usage_prompt_tokens = d.usage_prompt_tokens;
    row.usage_completion_tokens = d.usage_completion_tokens;
    row.usage_reasoning_tokens = d.usage_reasoning_tokens;
    if let Some(m) = d.error_message {
        row.error_kind = Some(ErrorKind::Protocol);
        row.error_message = Some(format!("server reported an error in the stream: {m}"));
    }
}

async fn record_sse(ctx: &WorkerContext, request_id: u64, ev: SseEvent, t_ns: i64, t_sent: i64, p: &mut Progress) {
    let mut row = EventRow::new(request_id, EventKind::Sse, t_ns);
    row.seq = Some(p.seq);
    row.bytes = Some(u32::try_from(ev.raw_bytes).unwrap_or(u32::MAX));
    p.seq += 1;
    ctx.stats.sse_events.fetch_add(1, Relaxed);
    match std::str::from_utf8(&ev.data) {
        Err(e) => {
            ctx.stats.malformed_events.fetch_add(1, Relaxed);
            row.error_kind = Some(ErrorKind::Protocol);
            row.error_message = Some(format!("SSE data is not valid UTF-8: {e}"));
        }
        Ok(text) if text.trim() == "[DONE]" => row.done_marker = true,
        Ok(text) => match delta::parse(text) {
            Ok(d) => {
                if !p.first_output && d.has_output() {
                    p.first_output = true;
                    ctx.stats.record_ttft(t_ns - t_sent);
                }
                fill(&mut row, d);
            }
            Err(e) => {
                ctx.stats.malformed_events.fetch_add(1, Relaxed);
                let head: String = text.chars().take(200).collect();
                row.error_kind = Some(ErrorKind::Protocol);
                row.error_message = Some(format!("malformed SSE event: {e}; data starts {head:?}"));
            }
        },
    }
    ctx.recorder.event(row).await;
}

/// Parses one `--header 'Name: value'` flag. Credential headers are marked sensitive so
/// hyper never prints them.
pub fn parse_header(text: &str) -> Result<(HeaderName, HeaderValue), String> {
    let (name, value) = text
        .split_once(':')
        .ok_or_else(|| format!("--header {text:?}: expected 'Name: value'"))?;
    let name: HeaderName = name
        .trim()
        .parse()
        .map_err(|e| format!("--header: bad name {:?}: {e}", name.trim()))?;
    let mut value: HeaderValue = value
        .trim()
        .parse()
        .map_err(|e| format!("--header {}: bad value: {e}", name.as_str()))?;
    if crate::redact::is_secret_header(name.as_str()) {
        value.set_sensitive(true);
    }
    Ok((name, value))
}
