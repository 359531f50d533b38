//! How a request is sent and its response recorded.
//!
//! Each worker owns one HTTP/1.1 keep-alive [`Connection`] (hyper's low-level `client::conn`,
//! so a connection id can be recorded and no pool sits in the hot path). A worker stamps
//! `connect`/`connected`/`tls_done` when it opens a connection, `sent`, `headers`, every SSE
//! event and the one terminal event with the run's monotonic clock and hands each row to the
//! [`Recorder`] as it happens. Failures are rows with an `error_kind`, never errors
//! that stop the run.
//!
//! Connection reuse never invents errors: an idle connection the server closed is detected
//! before reuse and replaced; a request that fails on a reused connection before a single
//! response byte arrived is sent once more on a fresh connection, with a `retry` row saying
//! so (see `docs/capture.md`, "Connections").

use std::borrow::Cow;
use std::error::Error as StdError;
use std::future::Future;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use http::header::{HeaderName, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, HOST, USER_AGENT};
use http::{HeaderMap, Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use recap_schemas::{ErrorKind, EventKind, Phase, RawMode};
use tokio::sync::watch;

use crate::clock::Clock;
use crate::connection::{driven, Connection, Connector, Driver, FinishError};
use crate::delta;
use crate::progress::Stats;
use crate::recorder::{EventBatch, EventRow, Recorder, RequestRow};
use crate::request::PreparedRequest;
use crate::sse::{SseEventRef, SseEvents, SseParser};

/// Default of `--max-response-bytes`: the most bytes of one response body capture decodes
/// (after `Content-Encoding`), streamed or not; past it the request ends as a `protocol` error.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 256 << 20;
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
        /// The URL as given (credentials redacted).
        url: String,
        /// What is wrong.
        message: String,
    },
    /// TLS setup failed.
    #[error("setting up TLS: {0}")]
    Tls(String),
}

/// The endpoint every worker talks to, with its prebuilt headers and connector.
pub struct Endpoint {
    /// The API spoken: how bodies are read.
    pub shape: &'static dyn crate::api::ApiShape,
    path: String,
    headers: HeaderMap,
    stream: bool,
    timeout: Duration,
    max_event_bytes: usize,
    max_response_bytes: usize,
    raw: RawMode,
    connector: Connector,
    next_connection: AtomicU32,
    /// `--session-header`: carries each session turn's `session_id`.
    session_header: Option<HeaderName>,
    /// `--request-id-header` and the run id its values start with.
    request_id: Option<(HeaderName, String)>,
    /// Response headers whose values are never written: credentials by name, and every
    /// header the user sent (an echo of it would carry its value).
    hidden_headers: Vec<String>,
    /// What this run has learned about the server's keep-alive.
    pub keep_alive: KeepAlive,
}

/// Kept-alive connections the server closed after their first response before capture stops
/// reusing connections ([`KeepAlive`]).
const KEEP_ALIVE_LEARN_AFTER: u64 = 2;

/// Whether the server really keeps connections alive, learned from this run. Some servers
/// (llama.cpp's `llama-server`) advertise keep-alive yet close the connection after every
/// streamed response; a client that reuses it writes its next request into a closed socket
/// (a `retry`: a wasted write, a reconnect, client lag) or finds it closed just in time.
/// Once [`KEEP_ALIVE_LEARN_AFTER`] connections were lost right after their first response
/// and none has ever answered a second request, every request gets a fresh connection; one
/// connection answering twice proves keep-alive and reuse goes on for the whole run.
#[derive(Debug, Default)]
pub struct KeepAlive {
    proven: AtomicBool,
    lost_after_first: AtomicU64,
    stopped: AtomicBool,
}

impl KeepAlive {
    /// A kept-alive connection that had answered `served` requests was found closed (before
    /// reuse, or by an attempt that got no answer).
    fn lost(&self, served: u32) {
        if served != 1 {
            return;
        }
        let n = self.lost_after_first.fetch_add(1, Relaxed) + 1;
        if n >= KEEP_ALIVE_LEARN_AFTER && !self.proven.load(Relaxed) && !self.stopped.swap(true, Relaxed) {
            tracing::info!(
                "the server closed {n} kept-alive connections right after their first response: \
                 every request now opens a fresh connection (manifest counts.keep_alive_stopped)"
            );
        }
    }

    /// A connection answered its `served`-th request.
    fn answered(&self, served: u32) {
        if served >= 2 {
            self.proven.store(true, Relaxed);
        }
    }

    /// Whether reuse was stopped for the rest of the run.
    pub fn stopped(&self) -> bool {
        self.stopped.load(Relaxed)
    }
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Headers may hold credentials: never print them.
        f.debug_struct("Endpoint")
            .field("path", &self.path)
            .field("stream", &self.stream)
            .finish_non_exhaustive()
    }
}

/// What [`Endpoint::new`] needs besides the URL and headers.
#[derive(Debug, Clone, Copy)]
pub struct EndpointOptions {
    /// The API spoken.
    pub api: recap_schemas::Api,
    /// Ask for SSE streams.
    pub stream: bool,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Accept any TLS certificate.
    pub insecure: bool,
    /// Largest SSE event kept (bigger is a `protocol` row and the stream goes on).
    pub max_event_bytes: usize,
    /// Most bytes of one response body decoded (`--max-response-bytes`).
    pub max_response_bytes: usize,
    /// Which raw payloads are kept (`--raw`).
    pub raw: RawMode,
}

impl Endpoint {
    /// Builds the endpoint. `headers` are sent on every request (credentials marked sensitive
    /// by the caller). Credentials in the URL's user-info become an `Authorization: Basic`
    /// header (unless one is given) and never reach `Host`, a file or a log. TLS verification
    /// uses the bundled Mozilla roots.
    pub fn new(url: &str, headers: HeaderMap, opts: EndpointOptions) -> Result<Self, EndpointError> {
        let bad = |message: String| EndpointError::Url {
            url: crate::redact::redact_url(url),
            message,
        };
        let uri: Uri = url.parse().map_err(|e: http::uri::InvalidUri| bad(e.to_string()))?;
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => return Err(bad("must start with http:// or https://".into())),
        };
        let authority = uri.authority().ok_or_else(|| bad("has no host".into()))?;
        let host = authority.host();
        if host.is_empty() {
            return Err(bad("has no host".into()));
        }
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        let host_header = match authority.port_u16() {
            Some(p) => format!("{host}:{p}"),
            None => host.to_string(),
        };
        let user_info = authority
            .as_str()
            .rsplit_once('@')
            .map(|(user_info, _)| user_info.to_string());
        let mut all = HeaderMap::new();
        all.insert(
            HOST,
            HeaderValue::from_str(&host_header).map_err(|e| bad(e.to_string()))?,
        );
        all.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        all.insert(
            ACCEPT,
            HeaderValue::from_static(if opts.stream {
                "text/event-stream"
            } else {
                "application/json"
            }),
        );
        all.insert(
            USER_AGENT,
            HeaderValue::from_static(concat!("recap-capture/", env!("CARGO_PKG_VERSION"))),
        );
        if let Some(ui) = user_info {
            use base64::Engine;
            let encoded = base64::engine::general_purpose::STANDARD.encode(ui.as_bytes());
            let mut v = HeaderValue::from_str(&format!("Basic {encoded}"))
                .map_err(|_| bad("user-info cannot be sent as a header".into()))?;
            v.set_sensitive(true);
            all.insert(AUTHORIZATION, v);
        }
        let hidden_headers: Vec<String> = headers.keys().map(|k| k.as_str().to_string()).collect();
        for (k, v) in headers.iter() {
            all.insert(k.clone(), v.clone());
        }
        let tls = if https {
            Some(Arc::new(tls_config(opts.insecure)?))
        } else {
            None
        };
        let connector = Connector::new(host, port, tls).map_err(bad)?;
        Ok(Endpoint {
            shape: crate::api::of(opts.api),
            path: uri.path_and_query().map_or("/", |pq| pq.as_str()).to_string(),
            headers: all,
            stream: opts.stream,
            timeout: opts.timeout,
            max_event_bytes: opts.max_event_bytes,
            max_response_bytes: opts.max_response_bytes,
            raw: opts.raw,
            connector,
            next_connection: AtomicU32::new(0),
            session_header: None,
            request_id: None,
            hidden_headers,
            keep_alive: KeepAlive::default(),
        })
    }

    /// Sends `<run_id>-<request_id>` in `header` on every request; `None` sends none.
    pub fn with_request_id(mut self, header: Option<HeaderName>, run_id: &str) -> Self {
        self.request_id = header.map(|h| (h, run_id.to_string()));
        self
    }

    /// Whether `raw` is kept on a row with (`error`) or without an error.
    fn keeps_raw(&self, error: bool) -> bool {
        match self.raw {
            RawMode::All => true,
            RawMode::Errors => error,
            RawMode::None => false,
        }
    }

    /// The response headers as one JSON object (lower-case names, repeated values joined
    /// with `, `), credential values and echoes of the user's own headers redacted. Written
    /// directly (no `serde_json::Value` tree: it runs once per request on the hot path).
    fn headers_json(&self, headers: &HeaderMap) -> String {
        let mut out = Vec::with_capacity(64 * headers.len() + 2);
        out.push(b'{');
        for (i, name) in headers.keys().enumerate() {
            let n = name.as_str();
            if i > 0 {
                out.push(b',');
            }
            // Writing JSON strings into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut out, n);
            out.push(b':');
            if crate::redact::is_secret_header(n) || self.hidden_headers.iter().any(|h| h == n) {
                let _ = serde_json::to_writer(&mut out, recap_schemas::manifest::REDACTED);
            } else {
                // One value (nearly always) is written as it is, nothing joined.
                let mut values = headers
                    .get_all(name)
                    .iter()
                    .map(|v| String::from_utf8_lossy(v.as_bytes()));
                let first = values.next().unwrap_or_default();
                match values.next() {
                    None => {
                        let _ = serde_json::to_writer(&mut out, &*first);
                    }
                    Some(second) => {
                        let mut joined = first.into_owned();
                        for v in std::iter::once(second).chain(values) {
                            joined.push_str(", ");
                            joined.push_str(&v);
                        }
                        let _ = serde_json::to_writer(&mut out, &joined);
                    }
                }
            }
        }
        out.push(b'}');
        // Only JSON text of UTF-8 strings was written.
        String::from_utf8(out).unwrap_or_default()
    }

    /// Sends each session turn's id in `header` (sticky routing); `None` sends none.
    pub fn with_session_header(mut self, header: Option<HeaderName>) -> Self {
        self.session_header = header;
        self
    }

    /// Opens a connection for `request_id`, recording `connect` (start), `connected` (TCP
    /// up) and, for https, `tls_done`.
    async fn connect(&self, request_id: u64, ctx: &WorkerContext) -> Result<Connection, Failure> {
        let addrs = self
            .connector
            .resolve()
            .await
            .map_err(|e| Failure::connect(&e, "resolving the host"))?;
        ctx.recorder
            .event(EventRow::new(request_id, EventKind::Connect, ctx.clock.now_ns()))
            .await;
        ctx.stats.connections.fetch_add(1, Relaxed);
        let tcp = self
            .connector
            .tcp(&addrs)
            .await
            .map_err(|e| Failure::connect(&e, "TCP connect"))?;
        ctx.recorder
            .event(EventRow::new(request_id, EventKind::Connected, ctx.clock.now_ns()))
            .await;
        let id = self.next_connection.fetch_add(1, Relaxed);
        let conn = self.connector.finish(tcp, id).await.map_err(|e| match e {
            FinishError::Tls(e) => Failure::connect(&e, "TLS handshake"),
            FinishError::Http(e) => Failure::connect(&e, "HTTP/1.1 handshake"),
        })?;
        if self.connector.is_tls() {
            ctx.recorder
                .event(EventRow::new(request_id, EventKind::TlsDone, ctx.clock.now_ns()))
                .await;
        }
        Ok(conn)
    }
}

/// The rustls client configuration: Mozilla's roots, or (`--insecure`) any certificate.
fn tls_config(insecure: bool) -> Result<rustls::ClientConfig, EndpointError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| EndpointError::Tls(e.to_string()))?;
    let mut cfg = if insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider)))
            .with_no_client_auth()
    } else {
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
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
    /// Collect the answer's content for [`Worker::execute`] to return (a session turn's
    /// answer joins the history of the next turn).
    pub keep_answer: bool,
}

/// Why a request failed: becomes the terminal row's `error_kind` and `error_message`.
#[derive(Debug, Clone)]
pub struct Failure {
    kind: ErrorKind,
    message: String,
    http_status: Option<u16>,
    /// The connection is still usable (an HTTP error whose body was read to its end).
    keep_connection: bool,
    /// What the server sent, for the terminal row's `raw` (an HTTP error's body).
    raw: Option<String>,
}

impl Failure {
    fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Failure {
            kind,
            message: message.into(),
            http_status: None,
            keep_connection: false,
            raw: None,
        }
    }

    fn connect(e: &(dyn StdError + 'static), phase: &str) -> Self {
        Failure::new(
            ErrorKind::Connect,
            format!("{phase} failed: {}", recap_schemas::error_chain(e)),
        )
    }

    fn before_headers(e: &hyper::Error) -> Self {
        let kind = if e.is_parse() {
            ErrorKind::Protocol
        } else {
            ErrorKind::StreamReset
        };
        Failure::new(kind, format!("no response headers: {}", recap_schemas::error_chain(e)))
    }

    fn in_body(e: &hyper::Error) -> Self {
        let kind = if e.is_parse() {
            ErrorKind::Protocol
        } else {
            ErrorKind::StreamReset
        };
        Failure::new(
            kind,
            format!("response body ended abnormally: {}", recap_schemas::error_chain(e)),
        )
    }
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
    conn: Option<Connection>,
    /// The framed events of a read, their buffers kept from stream to stream.
    events: SseEvents,
}

/// How one request ended, as the worker sees it (the recorded `ErrorKind` is in `Failure`).
enum RequestEnd {
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
    /// When the latest output event arrived (the start of the next gap).
    last_output_ns: i64,
    /// Gaps between output events so far (when recorded), handed to the live histogram in one
    /// lock at the request's end rather than one lock per event.
    gaps_ns: Vec<i64>,
    /// The latest `usage.completion_tokens` (the live token counter grows by its increase).
    usage_output_tokens: u32,
    connection_id: Option<u32>,
    /// The content received so far, when the ticket keeps its answer.
    answer: Option<String>,
    /// The first error the server reported inside its response (`server_error`).
    server_error: Option<String>,
    /// A `finish_reason` or `[DONE]` arrived: the stream ended as the server meant it to.
    finished: bool,
    /// The server's id for the request (response header, else the first object's `id`).
    server_request_id: Option<String>,
    /// The request id sent in `--request-id-header`.
    client_request_id: Option<String>,
    /// The previous event, for reading the next against it.
    memo: delta::StreamMemo,
}

/// How one attempt of a request ended.
enum Attempt {
    /// Finished (or failed after the response began): no retry.
    Final(Result<(), Failure>),
    /// Failed before a single response byte arrived.
    Unanswered(Failure),
}

impl Worker {
    /// A worker with no connection yet (it connects on its first request).
    pub fn new(ctx: WorkerContext) -> Self {
        Worker {
            ctx,
            conn: None,
            events: SseEvents::default(),
        }
    }

    /// Sends one request and records everything about it, ending with exactly one terminal
    /// row and one `requests` row, whatever stopped it (timeout or cancellation during
    /// connect, TLS, the exchange, or a wait on the recorder). Never fails: failures are
    /// recorded. Returns the answer's content when the ticket keeps it and the request
    /// succeeded.
    pub async fn execute(&mut self, t: Ticket) -> Option<String> {
        let ctx = self.ctx.clone();
        ctx.in_flight.fetch_add(1, Relaxed);
        let mut progress = Progress {
            answer: t.keep_answer.then(String::new),
            ..Progress::default()
        };
        let deadline = tokio::time::Instant::now() + ctx.endpoint.timeout;
        let outcome = {
            let mut cancel = ctx.cancel.clone();
            let probe = ctx.cancel.clone();
            let mut exchange = std::pin::pin!(self.exchange(&t, &mut progress));
            let mut expiry = std::pin::pin!(tokio::time::sleep_until(deadline));
            let mut stop = std::pin::pin!(cancel.wait_for(|c| *c));
            let mut armed = false;
            std::future::poll_fn(|cx| {
                if let Poll::Ready(r) = exchange.as_mut().poll(cx) {
                    return Poll::Ready(match r {
                        Ok(()) => RequestEnd::Done,
                        Err(f) => RequestEnd::Failed(f),
                    });
                }
                // The deadline's timer and the cancel signal are registered by their first
                // poll and wake the task when they fire; after that each is polled only when
                // it may have (an atomic load) instead of on every wake-up: a timer's and a
                // watch's poll cost ~350 instructions per event when each event is a read of
                // its own (B3 flushed).
                let may_expire = !armed || expiry.is_elapsed();
                if may_expire && expiry.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(RequestEnd::Failed(Failure::new(
                        ErrorKind::Timeout,
                        format!(
                            "no complete response within {}",
                            humantime::format_duration(ctx.endpoint.timeout)
                        ),
                    )));
                }
                let may_stop = !armed || probe.has_changed().unwrap_or(true);
                if may_stop && stop.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(RequestEnd::Cancelled);
                }
                armed = true;
                Poll::Pending
            })
            .await
        };
        let now = ctx.clock.now_ns();
        let mut row = EventRow::new(t.request_id, EventKind::Done, now);
        row.bytes = Some(u32::try_from(progress.body_bytes).unwrap_or(u32::MAX));
        let answered = matches!(outcome, RequestEnd::Done);
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
            RequestEnd::Done => {
                ctx.stats.done.fetch_add(1, Relaxed);
                if let Some(sent) = progress.t_sent {
                    ctx.stats.record_e2e(now - sent);
                }
                // Gaps of successful requests only, as analyze's `icl_ms`.
                ctx.stats.record_gaps(&progress.gaps_ns);
            }
            RequestEnd::Failed(f) => {
                // A failed exchange leaves the connection in an unknown state, unless it was
                // an HTTP error answered in full: then it is as good as after a success.
                if !f.keep_connection {
                    self.conn = None;
                }
                ctx.stats.add_error(f.kind);
                row.kind = Some(EventKind::Error);
                row.set_error(f.kind, format!("{} ({})", f.message, reached(&progress)));
                row.details_mut().http_status = f.http_status;
                row.raw = f.raw.filter(|_| ctx.endpoint.keeps_raw(true));
            }
            RequestEnd::Cancelled => {
                self.conn = None;
                ctx.stats.cancelled.fetch_add(1, Relaxed);
                row.kind = Some(EventKind::Cancelled);
                row.set_error(
                    ErrorKind::Cancelled,
                    format!("run stopped before the response ended ({})", reached(&progress)),
                );
            }
        }
        ctx.recorder.request(request_row(&t, &progress)).await;
        ctx.recorder.event(row).await;
        ctx.in_flight.fetch_sub(1, Relaxed);
        progress.answer.filter(|_| answered)
    }

    /// The kept-alive connection if the server has not closed it, else a new one (recorded).
    async fn ready_connection(&mut self, request_id: u64) -> Result<&mut Connection, Failure> {
        if self.conn.is_some() && self.ctx.endpoint.keep_alive.stopped() {
            // The server closes connections after its responses: a fresh one, no retry.
            self.conn = None;
        }
        if let Some(c) = self.conn.as_mut() {
            let stale = match driven(&mut c.driver, c.sender.ready()).await {
                Err(_) => Some("hyper saw it close"),
                Ok(()) => c.peer_closed(),
            };
            if let Some(why) = stale {
                tracing::debug!("connection {} not reused: {why}", c.id);
                self.ctx.stats.stale_connections.fetch_add(1, Relaxed);
                self.ctx.endpoint.keep_alive.lost(c.served);
                self.conn = None;
            }
        }
        if self.conn.is_none() {
            self.conn = Some(self.ctx.endpoint.connect(request_id, &self.ctx).await?);
        }
        Ok(self.conn.as_mut().expect("invariant: connection was just set"))
    }

    /// Sends the request, once more on a fresh connection if a reused one failed before
    /// any response byte arrived (the server had closed it while the request was written).
    async fn exchange(&mut self, t: &Ticket, p: &mut Progress) -> Result<(), Failure> {
        let mut retried = false;
        loop {
            let conn = self.ready_connection(t.request_id).await?;
            let served = conn.served;
            match self.attempt(t, p).await {
                Attempt::Final(r) => return r,
                Attempt::Unanswered(f) if served > 0 && !retried => {
                    retried = true;
                    self.conn = None;
                    self.ctx.endpoint.keep_alive.lost(served);
                    self.ctx.stats.retries.fetch_add(1, Relaxed);
                    let mut row = EventRow::new(t.request_id, EventKind::Retry, self.ctx.clock.now_ns());
                    row.set_error(
                        f.kind,
                        format!(
                            "{} on reused connection {} before any response byte; sending again on a fresh connection",
                            f.message,
                            p.connection_id.unwrap_or(u32::MAX)
                        ),
                    );
                    self.ctx.recorder.event(row).await;
                }
                Attempt::Unanswered(f) => return Err(f),
            }
        }
    }

    /// One attempt on the current connection.
    async fn attempt(&mut self, t: &Ticket, p: &mut Progress) -> Attempt {
        let ctx = self.ctx.clone();
        let ep = &ctx.endpoint;
        let conn = self
            .conn
            .as_mut()
            .expect("invariant: attempt runs on a ready connection");
        p.connection_id = Some(conn.id);
        let mut req = match Request::builder()
            .method(Method::POST)
            .uri(ep.path.as_str())
            .body(Full::new(t.request.body.clone()))
        {
            Ok(r) => r,
            Err(e) => return Attempt::Final(Err(Failure::new(ErrorKind::Protocol, format!("building request: {e}")))),
        };
        *req.headers_mut() = ep.headers.clone();
        if let Some((name, run_id)) = &ep.request_id {
            let id = format!("{run_id}-{}", t.request_id);
            // Run ids are `[0-9a-z-]`: always a valid header value.
            if let Ok(v) = HeaderValue::from_str(&id) {
                req.headers_mut().insert(name.clone(), v);
            }
            p.client_request_id = Some(id);
        }
        if let (Some(name), Some(id)) = (&ep.session_header, &t.request.session_id) {
            // Session ids were checked to be valid header values when the dataset was read.
            if let Ok(v) = HeaderValue::from_str(id) {
                req.headers_mut().insert(name.clone(), v);
            }
        }
        let received_before = conn.received_bytes();
        // Stamp, then hand over: hyper queues the request to the connection synchronously.
        let t_sent = ctx.clock.now_ns();
        let response = conn.sender.send_request(req);
        if p.t_sent.is_none() {
            ctx.stats.sent.fetch_add(1, Relaxed);
        }
        p.t_sent = Some(t_sent);
        let mut sent = EventRow::new(t.request_id, EventKind::Sent, t_sent);
        sent.bytes = Some(u32::try_from(t.request.body.len()).unwrap_or(u32::MAX));
        // The connection is driven while the recorder takes the row: the request is written
        // now even when the recorder makes the worker wait, so `t_sent` stays the send time.
        driven(&mut conn.driver, ctx.recorder.event(sent)).await;

        let response = match driven(&mut conn.driver, response).await {
            Ok(r) => r,
            Err(e) => {
                let f = Failure::before_headers(&e);
                let nothing_back = conn.received_bytes() == received_before && !e.is_parse();
                return if nothing_back {
                    Attempt::Unanswered(f)
                } else {
                    Attempt::Final(Err(f))
                };
            }
        };
        conn.served += 1;
        ep.keep_alive.answered(conn.served);
        Attempt::Final(Self::read_response(&ctx, &mut self.events, &mut conn.driver, t, p, t_sent, response).await)
    }

    /// Reads and records the response, `driver` polled whenever it waits for more of it.
    async fn read_response(
        ctx: &WorkerContext,
        kept_events: &mut SseEvents,
        driver: &mut Option<Driver>,
        t: &Ticket,
        p: &mut Progress,
        t_sent: i64,
        response: http::Response<hyper::body::Incoming>,
    ) -> Result<(), Failure> {
        let status = response.status();
        let mut headers_row = EventRow::new(t.request_id, EventKind::Headers, ctx.clock.now_ns());
        let d = headers_row.details_mut();
        d.http_status = Some(status.as_u16());
        d.response_headers_json = Some(ctx.endpoint.headers_json(response.headers()));
        ctx.recorder.event(headers_row).await;
        p.server_request_id = ["x-request-id", "request-id"]
            .iter()
            .find_map(|n| response.headers().get(*n))
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());

        let is_sse = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("text/event-stream"));
        let mut dec = Decoder::for_encoding(
            response.headers().get(CONTENT_ENCODING),
            ctx.endpoint.max_response_bytes,
        )?;
        let mut body = response.into_body();

        if !status.is_success() {
            let mut kept = Vec::new();
            let mut read = 0usize;
            let mut whole = true;
            while let Some(frame) = driven(driver, body.frame()).await {
                let frame = frame.map_err(|e| Failure::in_body(&e))?;
                if let Ok(raw) = frame.into_data() {
                    p.body_bytes += raw.len() as u64;
                    read += raw.len();
                    let data = dec.push(&raw)?;
                    let room = ERROR_BODY_READ.saturating_sub(kept.len());
                    kept.extend_from_slice(&data[..data.len().min(room)]);
                    if read > ERROR_BODY_READ {
                        whole = false;
                        break;
                    }
                }
            }
            if whole {
                let tail = dec.finish()?;
                let room = ERROR_BODY_READ.saturating_sub(kept.len());
                kept.extend_from_slice(&tail[..tail.len().min(room)]);
            }
            let text = String::from_utf8_lossy(&kept);
            let mut cut = text.len().min(ERROR_BODY_KEEP);
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            let mut f = Failure::new(
                ErrorKind::HttpStatus,
                format!("HTTP {}: {}", status.as_u16(), text[..cut].trim()),
            );
            f.http_status = Some(status.as_u16());
            f.keep_connection = whole;
            f.raw = Some(text.into_owned());
            return Err(f);
        }

        let rid = t.request_id;
        if is_sse {
            let mut parser = SseParser::with_max_event_bytes(ctx.endpoint.max_event_bytes);
            // Taken for the stream, given back at its end (lost with a failed stream: a fresh
            // one is only slower).
            let mut events = std::mem::take(kept_events);
            while let Some(frame) = driven(driver, body.frame()).await {
                let frame = frame.map_err(|e| Failure::in_body(&e))?;
                let Ok(raw) = frame.into_data() else {
                    continue;
                };
                let now = ctx.clock.now_ns();
                p.body_bytes += raw.len() as u64;
                parser.feed(&dec.push(&raw)?, &mut events);
                ctx.recorder
                    .events(sse_rows(ctx, rid, &mut events, now, t_sent, p))
                    .await;
            }
            parser.feed(&dec.finish()?, &mut events);
            parser.finish(&mut events);
            let now = ctx.clock.now_ns();
            ctx.recorder
                .events(sse_rows(ctx, rid, &mut events, now, t_sent, p))
                .await;
            *kept_events = events;
            // The body ended cleanly; whether the answer did is what the server said in it.
            truthful_end(p)
        } else {
            let mut buf = Vec::new();
            while let Some(frame) = driven(driver, body.frame()).await {
                let frame = frame.map_err(|e| Failure::in_body(&e))?;
                if let Ok(raw) = frame.into_data() {
                    p.body_bytes += raw.len() as u64;
                    // The decoder refuses output past --max-response-bytes.
                    buf.extend_from_slice(&dec.push(&raw)?);
                }
            }
            buf.extend_from_slice(&dec.finish()?);
            let now = ctx.clock.now_ns();
            // The body becomes the row's `raw` without a copy.
            let text = String::from_utf8(buf).map_err(|e| {
                Failure::new(
                    ErrorKind::Protocol,
                    format!("response body is not UTF-8: {}", e.utf8_error()),
                )
            })?;
            let d = ctx.endpoint.shape.parse(&text, true).map_err(|e| {
                let head: String = text.chars().take(200).collect();
                Failure::new(
                    ErrorKind::Protocol,
                    format!("response body is not valid JSON: {e}; body starts {head:?}"),
                )
            })?;
            let mut row = EventRow::new(rid, EventKind::Sse, now);
            row.seq = Some(0);
            row.bytes = Some(u32::try_from(text.len()).unwrap_or(u32::MAX));
            p.seq = 1;
            if d.has_output() {
                ctx.stats.record_ttft(now - t_sent);
            }
            keep_answer(p, &d, &text);
            let d = d.owned(&text);
            fill(&mut row, d, p, &ctx.stats);
            if ctx.endpoint.keeps_raw(row.error_kind().is_some()) {
                row.raw = Some(text);
            }
            ctx.stats.sse_events.fetch_add(1, Relaxed);
            ctx.recorder.event(row).await;
            match p.server_error.take() {
                Some(m) => Err(server_error(m)),
                None => Ok(()),
            }
        }
    }
}

/// How a stream that ended cleanly really ended: a `server_error` if the server reported one
/// inside it, `incomplete` if it never said it was finished, else a success.
fn truthful_end(p: &mut Progress) -> Result<(), Failure> {
    if let Some(m) = p.server_error.take() {
        return Err(server_error(m));
    }
    if !p.finished {
        let mut f = Failure::new(
            ErrorKind::Incomplete,
            "the stream ended without a finish_reason or [DONE]: the answer may be cut short",
        );
        f.keep_connection = true;
        return Err(f);
    }
    Ok(())
}

/// The failure of a response the server reported an error in, after reading it to its end.
fn server_error(message: String) -> Failure {
    let mut f = Failure::new(
        ErrorKind::ServerError,
        format!("server reported an error in the response: {message}"),
    );
    f.keep_connection = true;
    f
}

/// The `requests` row of `t`, written once its outcome is known.
fn request_row(t: &Ticket, p: &Progress) -> RequestRow {
    RequestRow {
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
        connection_id: p.connection_id,
        planned_input_tokens: t.request.planned_input_tokens,
        prefix_group: t.request.prefix_group,
        session_id: t.request.session_id.clone(),
        turn: t.request.turn,
        client_request_id: p.client_request_id.clone(),
        server_request_id: p.server_request_id.clone(),
        input_json: t.request.input_json.clone(),
    }
}

/// Undoes `Content-Encoding` as bytes arrive, so SSE events are still recorded when they
/// arrive (gzip is flushed per chunk by servers that compress streams). Decoded bytes are
/// counted as they are produced: past the cap the decoder fails at once, so a small
/// compressed body that inflates to gigabytes (a decompression bomb) costs at most the cap.
struct Decoder {
    inner: Inflate,
    /// Decoded bytes so far.
    out: usize,
    cap: usize,
}

enum Inflate {
    Identity,
    Gzip(Box<flate2::write::GzDecoder<Capped>>),
    Deflate(Box<flate2::write::ZlibDecoder<Capped>>),
}

/// The decoders' output buffer: a write past `room` bytes fails, stopping inflation mid-way.
struct Capped {
    buf: Vec<u8>,
    room: usize,
}

impl std::io::Write for Capped {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if data.len() > self.room {
            return Err(std::io::Error::other(TOO_LARGE));
        }
        self.room -= data.len();
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

const TOO_LARGE: &str = "decoded response body over --max-response-bytes";

impl Decoder {
    fn for_encoding(value: Option<&HeaderValue>, cap: usize) -> Result<Self, Failure> {
        let enc = value
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim().to_ascii_lowercase())
            .unwrap_or_default();
        let capped = || Capped {
            buf: Vec::new(),
            room: cap,
        };
        let inner = match enc.as_str() {
            "" | "identity" => Inflate::Identity,
            "gzip" | "x-gzip" => Inflate::Gzip(Box::new(flate2::write::GzDecoder::new(capped()))),
            "deflate" => Inflate::Deflate(Box::new(flate2::write::ZlibDecoder::new(capped()))),
            other => {
                return Err(Failure::new(
                    ErrorKind::Protocol,
                    format!("unsupported Content-Encoding {other:?}"),
                ))
            }
        };
        Ok(Decoder { inner, out: 0, cap })
    }

    fn too_large(&self) -> Failure {
        Failure::new(
            ErrorKind::Protocol,
            format!("{TOO_LARGE} ({} bytes); the rest was not read", self.cap),
        )
    }

    fn decode_error(&self, e: std::io::Error, what: &str) -> Failure {
        if e.to_string() == TOO_LARGE {
            self.too_large()
        } else {
            Failure::new(ErrorKind::Protocol, format!("{what}: {e}"))
        }
    }

    fn push<'a>(&mut self, data: &'a [u8]) -> Result<std::borrow::Cow<'a, [u8]>, Failure> {
        use std::io::Write;
        let r = match &mut self.inner {
            Inflate::Identity => Ok(std::borrow::Cow::Borrowed(data)),
            Inflate::Gzip(d) => d
                .write_all(data)
                .and_then(|_| d.flush())
                .map(|_| std::borrow::Cow::Owned(std::mem::take(&mut d.get_mut().buf))),
            Inflate::Deflate(d) => d
                .write_all(data)
                .and_then(|_| d.flush())
                .map(|_| std::borrow::Cow::Owned(std::mem::take(&mut d.get_mut().buf))),
        };
        let out = r.map_err(|e| self.decode_error(e, "cannot decode the compressed body"))?;
        self.out += out.len();
        if self.out > self.cap {
            return Err(self.too_large());
        }
        Ok(out)
    }

    fn finish(&mut self) -> Result<Vec<u8>, Failure> {
        let r = match std::mem::replace(&mut self.inner, Inflate::Identity) {
            Inflate::Identity => Ok(Vec::new()),
            Inflate::Gzip(d) => d.finish().map(|c| c.buf),
            Inflate::Deflate(d) => d.finish().map(|c| c.buf),
        };
        let out = r.map_err(|e| self.decode_error(e, "compressed body ends early"))?;
        self.out += out.len();
        if self.out > self.cap {
            return Err(self.too_large());
        }
        Ok(out)
    }
}

/// Appends a delta's content to the answer being kept, if one is.
fn keep_answer(p: &mut Progress, d: &delta::Delta, json: &str) {
    if let (Some(answer), Some(c)) = (p.answer.as_mut(), d.content(json)) {
        answer.push_str(c);
    }
}

/// Moves a delta's fields into its row, and what it says about the request into `p`.
fn fill(row: &mut EventRow, d: delta::Delta, p: &mut Progress, stats: &Stats) {
    if let Some(n) = d.usage_completion_tokens {
        if n > p.usage_output_tokens {
            stats
                .usage_output_tokens
                .fetch_add(u64::from(n - p.usage_output_tokens), Relaxed);
            p.usage_output_tokens = n;
        }
    }
    if d.finish_reason.as_deref().is_some_and(|f| !f.is_empty()) {
        p.finished = true;
    }
    if p.server_request_id.is_none() {
        p.server_request_id = d.id;
    }
    row.content = d.content;
    row.reasoning = d.reasoning;
    row.tool_calls_json = d.tool_calls_json;
    row.choice_index = d.choice_index;
    // A token's chunk sets none of these: no details box then.
    if d.role.is_some()
        || d.finish_reason.is_some()
        || d.usage_prompt_tokens.is_some()
        || d.usage_completion_tokens.is_some()
        || d.usage_reasoning_tokens.is_some()
        || d.usage_cached_tokens.is_some()
        || d.timings.is_some()
    {
        let r = row.details_mut();
        r.role = d.role;
        r.finish_reason = d.finish_reason;
        r.usage_prompt_tokens = d.usage_prompt_tokens;
        r.usage_completion_tokens = d.usage_completion_tokens;
        r.usage_reasoning_tokens = d.usage_reasoning_tokens;
        r.usage_cached_tokens = d.usage_cached_tokens;
        if let Some(t) = d.timings {
            r.timings_prompt_ms = t.prompt_ms;
            r.timings_predicted_ms = t.predicted_ms;
            r.timings_prompt_n = t.prompt_n;
            r.timings_predicted_n = t.predicted_n;
        }
    }
    if let Some(m) = d.error_message {
        row.set_error(
            ErrorKind::ServerError,
            format!("server reported an error in the stream: {m}"),
        );
        p.server_error.get_or_insert(m);
    }
}

/// The `events` rows of the SSE events of one read (at `t_ns`), recorded in one send.
fn sse_rows(
    ctx: &WorkerContext,
    request_id: u64,
    events: &mut SseEvents,
    t_ns: i64,
    t_sent: i64,
    p: &mut Progress,
) -> EventBatch {
    // Every event's data is kept as its `raw`: the buffer that holds them back to back
    // becomes the batch's text, each `raw` (and a content read in place) a span of it,
    // nothing copied. Unless some data is not UTF-8: then each event's is checked apart.
    if let Some(data) = ctx.endpoint.keeps_raw(false).then(|| events.take_data()).flatten() {
        match String::from_utf8(data) {
            Ok(text) => {
                let mut rows = Vec::with_capacity(events.len());
                for (at, ev) in events.iter_in(text.as_bytes()) {
                    // Filled where it stays: a row is ~200 bytes, and each move a copy.
                    rows.push(EventRow::new(request_id, EventKind::Sse, t_ns));
                    let last = rows.len() - 1;
                    let row = &mut rows[last];
                    let data = text.get(at.clone());
                    let r = sse_row(ctx, ev, data, t_sent, p, row);
                    // Its texts named where they lie in the buffer; else owned: not kept, not
                    // the buffer's text (a lone event's data may cut a character the buffer as
                    // a whole holds: read as a protocol error, its text made valid), or past a
                    // span's reach.
                    let placed = r.keep_raw && data.is_some() && row.place(at, r.content_in.clone());
                    if !placed {
                        if let Some(c) = r.content_in {
                            row.content = r.text.get(c).map(str::to_owned);
                        }
                        if r.keep_raw {
                            row.raw = Some(r.text.into_owned());
                        }
                    }
                }
                events.clear();
                return EventBatch { rows, text };
            }
            Err(e) => events.put_back_data(e.into_bytes()),
        }
    }
    // Room for every event's data as `raw` and a little content each.
    let mut batch = EventBatch::with_capacity(events.len(), events.data_bytes() + 16 * events.len());
    for ev in events.iter() {
        let mut row = EventRow::new(request_id, EventKind::Sse, t_ns);
        let r = sse_row(ctx, ev, None, t_sent, p, &mut row);
        match r.content_in {
            Some(at) => batch.push_content_in(row, &r.text, at, r.keep_raw),
            None => batch.push(row, r.keep_raw.then_some(&*r.text)),
        }
    }
    events.clear();
    batch
}

/// What [`sse_row`] leaves to place: the event's data as text, whether it is kept as `raw`,
/// and where the content lies in it when read in place.
struct SseText<'a> {
    text: Cow<'a, str>,
    keep_raw: bool,
    content_in: Option<Range<usize>>,
}

/// Fills `row` (an `sse` row at the event's receive time) from one SSE event, the request's
/// progress updated; `checked` is its data when already known to be UTF-8.
fn sse_row<'a>(
    ctx: &WorkerContext,
    ev: SseEventRef<'a>,
    checked: Option<&'a str>,
    t_sent: i64,
    p: &mut Progress,
    row: &mut EventRow,
) -> SseText<'a> {
    let t_ns = row.t_ns;
    row.seq = Some(p.seq);
    row.bytes = Some(u32::try_from(ev.raw_bytes).unwrap_or(u32::MAX));
    p.seq += 1;
    ctx.stats.sse_events.fetch_add(1, Relaxed);
    row.sse_event = ev.name.map(|n| String::from_utf8_lossy(n).into_owned());
    let error_event = row.sse_event.as_deref() == Some("error");
    if ev.oversized {
        ctx.stats.malformed_events.fetch_add(1, Relaxed);
        row.set_error(
            ErrorKind::Protocol,
            format!(
                "SSE event of {} bytes is over --max-event-bytes {}; its data was not kept",
                ev.raw_bytes, ctx.endpoint.max_event_bytes
            ),
        );
        return SseText {
            text: Cow::Borrowed(""),
            keep_raw: false,
            content_in: None,
        };
    }
    let mut content_in = None;
    let text = match checked.map_or_else(|| std::str::from_utf8(ev.data), Ok) {
        Err(e) => {
            ctx.stats.malformed_events.fetch_add(1, Relaxed);
            row.set_error(ErrorKind::Protocol, format!("SSE data is not valid UTF-8: {e}"));
            // Kept as text with U+FFFD for the invalid bytes (the column is UTF-8).
            String::from_utf8_lossy(ev.data)
        }
        Ok(text) => {
            if text.trim() == "[DONE]" {
                row.done_marker = true;
                p.finished = true;
            } else {
                match ctx
                    .endpoint
                    .shape
                    .parse_event(text, p.server_request_id.is_none(), &mut p.memo)
                {
                    Ok(d) => {
                        if d.has_output() {
                            if !p.first_output {
                                p.first_output = true;
                                ctx.stats.record_ttft(t_ns - t_sent);
                            } else if ctx.stats.keep_gaps {
                                p.gaps_ns.push(t_ns - p.last_output_ns);
                            }
                            p.last_output_ns = t_ns;
                        }
                        keep_answer(p, &d, text);
                        content_in = d.content_in.clone();
                        fill(row, d, p, &ctx.stats);
                    }
                    Err(e) if !error_event => {
                        ctx.stats.malformed_events.fetch_add(1, Relaxed);
                        let head: String = text.chars().take(200).collect();
                        row.set_error(
                            ErrorKind::Protocol,
                            format!("malformed SSE event: {e}; data starts {head:?}"),
                        );
                    }
                    Err(_) => {}
                }
            }
            Cow::Borrowed(text)
        }
    };
    if error_event && row.error_kind() != Some(ErrorKind::ServerError) {
        // `event: error` names an error whatever its data holds.
        let head: String = text.chars().take(ERROR_BODY_KEEP).collect();
        row.set_error(ErrorKind::ServerError, format!("server sent an `event: error`: {head}"));
        p.server_error.get_or_insert(head);
    }
    let keep_raw = ctx.endpoint.keeps_raw(row.error_kind().is_some());
    SseText {
        text,
        keep_raw,
        content_in,
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keep_alive_is_given_up_only_without_proof_and_after_losses_right_after_a_first_answer() {
        let k = KeepAlive::default();
        k.lost(1);
        assert!(!k.stopped(), "one loss is not a pattern");
        k.lost(3);
        assert!(!k.stopped(), "a connection that answered three times was kept alive");
        k.lost(1);
        assert!(k.stopped(), "two connections closed after their first answer");

        let proven = KeepAlive::default();
        proven.answered(1);
        proven.answered(2);
        for _ in 0..10 {
            proven.lost(1);
        }
        assert!(!proven.stopped(), "a connection answered twice: the server keeps alive");
    }

    /// Repeated values joined in order, credentials and echoes of the user's own headers
    /// redacted, bytes that are not UTF-8 replaced: read back by serde_json.
    #[test]
    fn response_headers_become_one_json_object() {
        let mut mine = HeaderMap::new();
        mine.insert("x-tenant", HeaderValue::from_static("acme"));
        let opts = EndpointOptions {
            api: recap_schemas::Api::Chat,
            stream: true,
            timeout: Duration::from_secs(1),
            insecure: false,
            max_event_bytes: 1 << 20,
            max_response_bytes: 1 << 20,
            raw: RawMode::All,
        };
        let ep = Endpoint::new("http://127.0.0.1:9/v1/chat/completions", mine, opts).expect("endpoint");
        let mut got = HeaderMap::new();
        got.append("content-type", HeaderValue::from_static("text/event-stream"));
        got.append("vary", HeaderValue::from_static("origin"));
        got.append("vary", HeaderValue::from_static("accept \"x\""));
        got.append("vary", HeaderValue::from_static("cookie"));
        got.append("set-cookie", HeaderValue::from_static("s=1"));
        got.append("X-Api-Key", HeaderValue::from_static("sk-1"));
        got.append("x-tenant", HeaderValue::from_static("acme"));
        got.append("x-odd", HeaderValue::from_bytes(b"a\xffb").expect("opaque bytes"));
        let json: serde_json::Value = serde_json::from_str(&ep.headers_json(&got)).expect("JSON");
        let redacted = recap_schemas::manifest::REDACTED;
        assert_eq!(
            json,
            serde_json::json!({
                "content-type": "text/event-stream",
                "vary": "origin, accept \"x\", cookie",
                "set-cookie": redacted,
                "x-api-key": redacted,
                "x-tenant": redacted,
                "x-odd": "a\u{fffd}b",
            })
        );
    }
}
