//! The simulated OpenAI-compatible endpoint behind `recap-sim`.
//!
//! A real hyper 1.x HTTP/1.1 server on 127.0.0.1 with scripted timing (TTFT, inter-chunk
//! gaps, tokens per chunk), deterministic text and deterministic faults. Text and faults are
//! pure functions of the request's prompt ([`request_key`]), so a test can recompute exactly
//! what each request should have received, whatever the order or concurrency.

use std::convert::Infallible;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Method, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// Words the deterministic output is made of.
const WORDS: &[&str] = &[
    "river", "stone", "light", "cloud", "north", "green", "quiet", "bright", "field", "water", "ember", "maple",
    "ocean", "silver", "forest", "amber", "valley", "thunder", "meadow", "harbor", "winter", "summer", "falcon",
    "garden", "little", "mountain", "orchard", "candle", "signal", "copper", "window", "marble", "planet", "shadow",
    "timber", "violet", "canyon", "lantern", "pebble", "breeze", "coral", "desert", "island", "jungle", "kettle",
    "ladder", "mirror", "needle", "paper", "quartz", "ribbon", "saddle", "tunnel", "velvet", "wander", "yellow",
    "zephyr", "anchor", "bridge", "cobalt", "dragon", "engine", "fossil", "glacier",
];

/// FNV-1a 64-bit hash: stable across Rust versions (unlike `DefaultHasher`).
pub fn key_hash(key: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn word(h: u64, i: u64) -> String {
    let idx = (h.wrapping_add(i.wrapping_mul(0x9E37_79B9_7F4A_7C15)) >> 7) % WORDS.len() as u64;
    format!("{} ", WORDS[idx as usize])
}

/// The text a request's output is derived from: chat message contents joined with `\n`, or
/// the completions prompt (an array of prompts joined with `\n`).
pub fn request_key(body: &Value) -> String {
    if let Some(msgs) = body.get("messages").and_then(Value::as_array) {
        return msgs
            .iter()
            .filter_map(|m| m.get("content").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n");
    }
    match body.get("prompt") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join("\n"),
        _ => String::new(),
    }
}

/// The `i`-th content token for a key hash (a word and a space).
pub fn token_text(hash: u64, i: u64) -> String {
    word(hash, i)
}

/// The `i`-th reasoning token for a key hash (differs from the content sequence).
pub fn reasoning_text(hash: u64, i: u64) -> String {
    word(hash ^ 0xA5A5_A5A5_A5A5_A5A5, i)
}

/// The whole content a request with this key receives for `n` tokens.
pub fn expected_content(key: &str, n: u64) -> String {
    let h = key_hash(key);
    (0..n).map(|i| token_text(h, i)).collect()
}

/// The whole reasoning text a request with this key receives for `n` reasoning tokens.
pub fn expected_reasoning(key: &str, n: u64) -> String {
    let h = key_hash(key);
    (0..n).map(|i| reasoning_text(h, i)).collect()
}

/// `usage.prompt_tokens` the simulator reports: whitespace-separated words of the key.
pub fn prompt_tokens(key: &str) -> u64 {
    key.split_whitespace().count() as u64
}

/// A fault the simulator injects into one response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// A normal response.
    None,
    /// An error status with a JSON body.
    Error,
    /// The connection is reset part-way through the body.
    Reset,
    /// One malformed SSE event in an otherwise normal stream.
    Malformed,
    /// The response stops sending and hangs.
    Stall,
}

impl Fault {
    fn name(self) -> &'static str {
        match self {
            Fault::None => "none",
            Fault::Error => "error",
            Fault::Reset => "reset",
            Fault::Malformed => "malformed",
            Fault::Stall => "stall",
        }
    }
}

/// Probabilities of each fault, drawn per prompt.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct FaultConfig {
    /// Share of prompts answered with an error status.
    pub error_rate: f64,
    /// Share of prompts whose response is reset mid-body.
    pub reset_rate: f64,
    /// Share of prompts whose stream holds one malformed event.
    pub malformed_rate: f64,
    /// Share of prompts whose response stalls.
    pub stall_rate: f64,
    /// Changes which prompts draw which fault.
    pub seed: u64,
}

/// The fault a prompt draws: deterministic per key, independent of order and concurrency.
pub fn fault_for(key: &str, cfg: &FaultConfig) -> Fault {
    let u = (splitmix64(key_hash(key) ^ cfg.seed) >> 11) as f64 / (1u64 << 53) as f64;
    let mut edge = cfg.error_rate;
    if u < edge {
        return Fault::Error;
    }
    edge += cfg.reset_rate;
    if u < edge {
        return Fault::Reset;
    }
    edge += cfg.malformed_rate;
    if u < edge {
        return Fault::Malformed;
    }
    edge += cfg.stall_rate;
    if u < edge {
        return Fault::Stall;
    }
    Fault::None
}

/// How the simulator behaves.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Delay before the first token.
    pub ttft: Duration,
    /// Delay between consecutive content chunks.
    pub itl: Duration,
    /// Tokens per response (else the request's `max_completion_tokens` / `max_tokens`, else 16).
    pub output_tokens: Option<u64>,
    /// Tokens per SSE chunk.
    pub tokens_per_chunk: u64,
    /// Reasoning tokens streamed before the content (chat only).
    pub reasoning: u64,
    /// Never send usage.
    pub no_usage: bool,
    /// Fault probabilities.
    pub faults: FaultConfig,
    /// Status of injected errors.
    pub error_status: u16,
    /// Optional per-request JSONL log.
    pub log: Option<std::path::PathBuf>,
    /// Compress every response body with gzip (`Content-Encoding: gzip`), flushed per event.
    pub gzip: bool,
    /// Every N-th response (server-wide) carries `Connection: close`; 0 = never.
    pub close_every: u64,
    /// Bytes of one extra `x...` content event sent before the first token (0 = none).
    pub huge_event_bytes: usize,
    /// Malformed events carry invalid UTF-8 instead of invalid JSON.
    pub malformed_utf8: bool,
    /// Serve https with a freshly generated self-signed certificate.
    pub tls_self_signed: bool,
    /// With zero TTFT and ITL, render each fault-free stream whole and send it at once (still
    /// one token per SSE event): a server that is never the bottleneck, for benchmarks.
    pub prerender: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            ttft: Duration::ZERO,
            itl: Duration::ZERO,
            output_tokens: None,
            tokens_per_chunk: 1,
            reasoning: 0,
            no_usage: false,
            faults: FaultConfig::default(),
            error_status: 500,
            log: None,
            gzip: false,
            close_every: 0,
            huge_event_bytes: 0,
            malformed_utf8: false,
            tls_self_signed: false,
            prerender: false,
        }
    }
}

type Body = BoxBody<Bytes, std::io::Error>;

struct Shared {
    cfg: SimConfig,
    responses: std::sync::atomic::AtomicU64,
    log: Option<Mutex<std::io::BufWriter<std::fs::File>>>,
}

impl Shared {
    fn log(&self, hash: u64, fault: Fault, stream: bool, first_token_unix_ns: Option<i64>) {
        if let Some(l) = &self.log {
            let line = json!({"key_hash": hash, "fault": fault.name(), "stream": stream, "first_token_unix_ns": first_token_unix_ns});
            if let Ok(mut w) = l.lock() {
                let _ = writeln!(w, "{line}");
                let _ = w.flush();
            }
        }
    }
}

fn unix_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

fn full(status: StatusCode, body: Value) -> Response<Body> {
    full_bytes(status, Bytes::from(body.to_string()))
}

fn full_bytes(status: StatusCode, body: Bytes) -> Response<Body> {
    let mut r = Response::new(Full::new(body).map_err(|never| match never {}).boxed());
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

fn error_body(status: StatusCode, message: &str, kind: &str) -> Response<Body> {
    full(
        status,
        json!({"error": {"message": message, "type": kind, "code": status.as_u16()}}),
    )
}

/// Binds 127.0.0.1:`port` (0 = any) and returns the listener and its address. The accept
/// backlog is deep enough for thousands of clients connecting at once (the kernel caps it at
/// `net.core.somaxconn`).
pub async fn bind(port: u16) -> std::io::Result<(TcpListener, SocketAddr)> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(SocketAddr::from(([127, 0, 0, 1], port)))?;
    let l = socket.listen(16 * 1024)?;
    let a = l.local_addr()?;
    Ok((l, a))
}

/// A TLS acceptor with a certificate for `localhost` / `127.0.0.1`, generated now and signed
/// by nobody: clients that verify certificates must refuse it.
fn self_signed_acceptor() -> std::io::Result<tokio_rustls::TlsAcceptor> {
    let bad = |e: String| std::io::Error::other(e);
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .map_err(|e| bad(e.to_string()))?;
    let cert = ck.cert.der().clone();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(ck.signing_key.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .map_err(|e| bad(e.to_string()))?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// Serves connections forever (until the task is dropped).
pub async fn serve(listener: TcpListener, cfg: SimConfig) -> std::io::Result<()> {
    let log = match &cfg.log {
        Some(p) => Some(Mutex::new(std::io::BufWriter::new(
            std::fs::OpenOptions::new().create(true).append(true).open(p)?,
        ))),
        None => None,
    };
    let tls = if cfg.tls_self_signed {
        Some(self_signed_acceptor()?)
    } else {
        None
    };
    let shared = Arc::new(Shared {
        cfg,
        log,
        responses: std::sync::atomic::AtomicU64::new(0),
    });
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("recap-sim: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| handle(shared.clone(), req));
            let http = hyper::server::conn::http1::Builder::new();
            match tls {
                None => {
                    let _ = http.serve_connection(TokioIo::new(stream), svc).await;
                }
                Some(acceptor) => {
                    if let Ok(s) = acceptor.accept(stream).await {
                        let _ = http.serve_connection(TokioIo::new(s), svc).await;
                    }
                }
            }
        });
    }
}

async fn handle(shared: Arc<Shared>, req: hyper::Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    let chat = match (&method, path.as_str()) {
        (&Method::GET, "/health") => return Ok(full(StatusCode::OK, json!({"status": "ok"}))),
        (&Method::GET, "/v1/models") => {
            return Ok(full(
                StatusCode::OK,
                json!({"object": "list", "data": [{"id": "recap-sim", "object": "model"}]}),
            ))
        }
        (&Method::POST, "/v1/chat/completions") => true,
        (&Method::POST, "/v1/completions") => false,
        _ => {
            return Ok(error_body(
                StatusCode::NOT_FOUND,
                &format!("no route {method} {path}"),
                "not_found",
            ))
        }
    };
    let bytes = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return Ok(error_body(
                StatusCode::BAD_REQUEST,
                &format!("reading body: {e}"),
                "invalid_request_error",
            ))
        }
    };
    let body: Value = match serde_json::from_slice(&bytes) {
        Ok(v @ Value::Object(_)) => v,
        Ok(_) => {
            return Ok(error_body(
                StatusCode::BAD_REQUEST,
                "body must be a JSON object",
                "invalid_request_error",
            ))
        }
        Err(e) => {
            return Ok(error_body(
                StatusCode::BAD_REQUEST,
                &format!("invalid JSON: {e}"),
                "invalid_request_error",
            ))
        }
    };
    let mut resp = respond(shared.clone(), chat, &body).await;
    let n = shared.responses.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
    if shared.cfg.close_every > 0 && n.is_multiple_of(shared.cfg.close_every) {
        resp.headers_mut()
            .insert(http::header::CONNECTION, http::HeaderValue::from_static("close"));
    }
    Ok(resp)
}

fn malformed_event(utf8: bool) -> Bytes {
    if utf8 {
        Bytes::from_static(b"data: {\"choices\": [{\"delta\": {\"content\": \"\xff\xfe\"}}]}\n\n")
    } else {
        Bytes::from_static(b"data: {\"choices\": [ {\"delta\": \n\n")
    }
}

fn gzip_all(data: &[u8]) -> Bytes {
    use std::io::Write as _;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let _ = e.write_all(data);
    Bytes::from(e.finish().unwrap_or_default())
}

/// The streaming body's sender, compressing (gzip, flushed per event) when configured.
struct Out {
    tx: Option<mpsc::Sender<Result<Frame<Bytes>, std::io::Error>>>,
    gz: Option<flate2::write::GzEncoder<Vec<u8>>>,
    /// `--prerender`: the whole body is collected here instead of sent event by event.
    collected: Vec<u8>,
}

impl Out {
    async fn send(&mut self, b: Bytes) -> bool {
        use std::io::Write as _;
        let b = match &mut self.gz {
            None => b,
            Some(e) => {
                if e.write_all(&b).and_then(|_| e.flush()).is_err() {
                    return false;
                }
                Bytes::from(std::mem::take(e.get_mut()))
            }
        };
        match &self.tx {
            Some(tx) => tx.send(Ok(Frame::data(b))).await.is_ok(),
            None => {
                self.collected.extend_from_slice(&b);
                true
            }
        }
    }

    fn new(tx: Option<mpsc::Sender<Result<Frame<Bytes>, std::io::Error>>>, gzip: bool) -> Self {
        let gz = gzip.then(|| flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()));
        Out {
            tx,
            gz,
            collected: Vec::new(),
        }
    }

    /// Ends the body with a reset (the client sees the connection drop mid-response).
    async fn reset(&self) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(Err(simulated_reset())).await;
        }
    }

    /// Resolves when the client has gone away.
    async fn closed(&self) {
        match &self.tx {
            Some(tx) => tx.closed().await,
            None => std::future::pending().await,
        }
    }

    async fn finish(&mut self) {
        if let Some(e) = self.gz.take() {
            if let Ok(tail) = e.finish() {
                match &self.tx {
                    Some(tx) => {
                        let _ = tx.send(Ok(Frame::data(Bytes::from(tail)))).await;
                    }
                    None => self.collected.extend_from_slice(&tail),
                }
            }
        }
    }
}

struct Plan {
    chat: bool,
    model: String,
    id: String,
    hash: u64,
    prompt_tokens: u64,
    n: u64,
    reasoning: u64,
    per_chunk: u64,
    usage: bool,
    fault: Fault,
}

impl Plan {
    /// Chunks of (is_reasoning, text).
    fn chunks(&self) -> Vec<(bool, String)> {
        let mut out = Vec::new();
        let mut push = |reasoning: bool, n: u64, f: &dyn Fn(u64) -> String| {
            let mut i = 0;
            while i < n {
                let end = (i + self.per_chunk).min(n);
                out.push((reasoning, (i..end).map(f).collect::<String>()));
                i = end;
            }
        };
        push(true, self.reasoning, &|i| reasoning_text(self.hash, i));
        push(false, self.n, &|i| token_text(self.hash, i));
        out
    }

    fn usage(&self) -> Value {
        let c = self.n + self.reasoning;
        json!({"prompt_tokens": self.prompt_tokens, "completion_tokens": c, "total_tokens": self.prompt_tokens + c})
    }

    fn chunk_event(&self, reasoning: bool, text: &str, finish: Option<&str>) -> Value {
        if self.chat {
            let delta = if reasoning {
                json!({"reasoning_content": text})
            } else {
                json!({"content": text})
            };
            json!({"id": self.id, "object": "chat.completion.chunk", "created": 0, "model": self.model,
                   "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
        } else {
            json!({"id": self.id, "object": "text_completion", "created": 0, "model": self.model,
                   "choices": [{"index": 0, "text": text, "finish_reason": finish}]})
        }
    }
}

fn sse(v: &Value) -> Bytes {
    Bytes::from(format!("data: {v}\n\n"))
}

async fn respond(shared: Arc<Shared>, chat: bool, body: &Value) -> Response<Body> {
    let cfg = &shared.cfg;
    let key = request_key(body);
    let hash = key_hash(&key);
    let requested = body
        .get("max_completion_tokens")
        .and_then(Value::as_u64)
        .or_else(|| body.get("max_tokens").and_then(Value::as_u64));
    let stream = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let include_usage = body
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let plan = Plan {
        chat,
        model: body
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or("recap-sim")
            .to_string(),
        id: format!("cmpl-{hash:016x}"),
        hash,
        prompt_tokens: prompt_tokens(&key),
        n: cfg.output_tokens.or(requested).unwrap_or(16),
        reasoning: if chat { cfg.reasoning } else { 0 },
        per_chunk: cfg.tokens_per_chunk.max(1),
        usage: !cfg.no_usage && (!stream || include_usage),
        fault: fault_for(&key, &cfg.faults),
    };
    if plan.fault == Fault::Error {
        shared.log(hash, plan.fault, stream, None);
        let status = StatusCode::from_u16(cfg.error_status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return error_body(status, "simulated failure", "server_error");
    }
    if stream {
        let body = if cfg.prerender && plan.fault == Fault::None && cfg.ttft.is_zero() && cfg.itl.is_zero() {
            let mut out = Out::new(None, cfg.gzip);
            stream_body(shared.clone(), plan, &mut out).await;
            Full::new(Bytes::from(out.collected))
                .map_err(|never| match never {})
                .boxed()
        } else {
            let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(16);
            let mut out = Out::new(Some(tx), cfg.gzip);
            let shared = shared.clone();
            tokio::spawn(async move { stream_body(shared, plan, &mut out).await });
            StreamBody::new(ReceiverStream(rx)).boxed()
        };
        let mut r = Response::new(body);
        r.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/event-stream"),
        );
        r.headers_mut()
            .insert(http::header::CACHE_CONTROL, http::HeaderValue::from_static("no-cache"));
        if cfg.gzip {
            r.headers_mut()
                .insert(http::header::CONTENT_ENCODING, http::HeaderValue::from_static("gzip"));
        }
        return r;
    }
    // Non-streaming: the whole generation time, then one body.
    let chunks = plan.chunks();
    match plan.fault {
        Fault::Stall => {
            shared.log(hash, plan.fault, false, None);
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        Fault::Reset => {
            shared.log(hash, plan.fault, false, None);
            tokio::time::sleep(cfg.ttft).await;
            let body = futures_once_error();
            return Response::new(body);
        }
        _ => {}
    }
    tokio::time::sleep(cfg.ttft + cfg.itl * (chunks.len().saturating_sub(1) as u32)).await;
    shared.log(hash, plan.fault, false, Some(unix_ns()));
    if plan.fault == Fault::Malformed {
        return full_raw(StatusCode::OK, "{\"choices\": [");
    }
    let mut content = "x".repeat(cfg.huge_event_bytes);
    content.extend(chunks.iter().filter(|(r, _)| !r).map(|(_, t)| t.as_str()));
    let reasoning: String = chunks.iter().filter(|(r, _)| *r).map(|(_, t)| t.as_str()).collect();
    let mut v = if chat {
        let mut message = json!({"role": "assistant", "content": content});
        if !reasoning.is_empty() {
            message["reasoning_content"] = json!(reasoning);
        }
        json!({"id": plan.id, "object": "chat.completion", "created": 0, "model": plan.model,
               "choices": [{"index": 0, "message": message, "finish_reason": "length"}]})
    } else {
        json!({"id": plan.id, "object": "text_completion", "created": 0, "model": plan.model,
               "choices": [{"index": 0, "text": content, "finish_reason": "length"}]})
    };
    if plan.usage {
        v["usage"] = plan.usage();
    }
    if cfg.gzip {
        let mut r = full_bytes(StatusCode::OK, gzip_all(v.to_string().as_bytes()));
        r.headers_mut()
            .insert(http::header::CONTENT_ENCODING, http::HeaderValue::from_static("gzip"));
        return r;
    }
    full(StatusCode::OK, v)
}

fn full_raw(status: StatusCode, text: &'static str) -> Response<Body> {
    full_bytes(status, Bytes::from_static(text.as_bytes()))
}

/// The error a body yields to make hyper abort the connection mid-response.
fn simulated_reset() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::ConnectionReset, "simulated reset")
}

/// A body that fails at once: hyper then aborts the connection without a complete response.
fn futures_once_error() -> Body {
    let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(1);
    let _ = tx.try_send(Err(simulated_reset()));
    StreamBody::new(ReceiverStream(rx)).boxed()
}

async fn stream_body(shared: Arc<Shared>, plan: Plan, out: &mut Out) {
    let cfg = &shared.cfg;
    if plan.chat {
        let role = json!({"id": plan.id, "object": "chat.completion.chunk", "created": 0, "model": plan.model,
                          "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": null}]});
        if !out.send(sse(&role)).await {
            return;
        }
    }
    if !cfg.ttft.is_zero() {
        tokio::time::sleep(cfg.ttft).await;
    }
    let chunks = plan.chunks();
    let n_chunks = chunks.len();
    let reset_at = n_chunks / 2;
    let mut first_token_ns = None;
    let mut huge_sent = false;
    for (i, (reasoning, text)) in chunks.iter().enumerate() {
        if i > 0 && !cfg.itl.is_zero() {
            tokio::time::sleep(cfg.itl).await;
        }
        if plan.fault == Fault::Reset && i == reset_at.max(1).min(n_chunks) && i > 0 {
            shared.log(plan.hash, plan.fault, true, first_token_ns);
            out.reset().await;
            return;
        }
        if !*reasoning && !huge_sent && cfg.huge_event_bytes > 0 {
            huge_sent = true;
            if !out
                .send(sse(&plan.chunk_event(false, &"x".repeat(cfg.huge_event_bytes), None)))
                .await
            {
                return;
            }
        }
        let last = i + 1 == n_chunks;
        // Completions carry finish_reason (and usage) on the last content chunk, llama.cpp style.
        let mut ev = plan.chunk_event(*reasoning, text, (!plan.chat && last).then_some("length"));
        if !plan.chat && last && plan.usage {
            ev["usage"] = plan.usage();
        }
        if first_token_ns.is_none() {
            first_token_ns = Some(unix_ns());
        }
        if !out.send(sse(&ev)).await {
            return;
        }
        if i == 0 {
            match plan.fault {
                Fault::Malformed if !out.send(malformed_event(cfg.malformed_utf8)).await => {
                    return;
                }
                Fault::Stall => {
                    shared.log(plan.hash, plan.fault, true, first_token_ns);
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(3600)) => {}
                        _ = out.closed() => {}
                    }
                    return;
                }
                _ => {}
            }
        }
    }
    if plan.fault == Fault::Reset && n_chunks <= 1 {
        shared.log(plan.hash, plan.fault, true, first_token_ns);
        out.reset().await;
        return;
    }
    if plan.chat {
        let fin = json!({"id": plan.id, "object": "chat.completion.chunk", "created": 0, "model": plan.model,
                         "choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]});
        if !out.send(sse(&fin)).await {
            return;
        }
        if plan.usage {
            let u = json!({"id": plan.id, "object": "chat.completion.chunk", "created": 0, "model": plan.model,
                           "choices": [], "usage": plan.usage()});
            if !out.send(sse(&u)).await {
                return;
            }
        }
    }
    let _ = out.send(Bytes::from_static(b"data: [DONE]\n\n")).await;
    out.finish().await;
    shared.log(plan.hash, plan.fault, true, first_token_ns);
}

/// Adapts an mpsc receiver to `futures_core::Stream` for `StreamBody`.
struct ReceiverStream<T>(mpsc::Receiver<T>);

impl<T> futures_core::Stream for ReceiverStream<T> {
    type Item = T;
    fn poll_next(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Option<T>> {
        self.0.poll_recv(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_hashes_and_tokens_are_deterministic() {
        assert_eq!(key_hash(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(key_hash("a"), 0xaf63_dc4c_8601_ec8c);
        let k =
            request_key(&json!({"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]}));
        assert_eq!(k, "s\nu");
        assert_eq!(request_key(&json!({"prompt": "p"})), "p");
        assert_eq!(expected_content("x", 7).split_whitespace().count(), 7);
        assert_eq!(expected_content("x", 7), expected_content("x", 7));
        assert_ne!(expected_content("x", 7), expected_reasoning("x", 7));
        assert_eq!(prompt_tokens("a b  c\nd"), 4);
    }

    #[test]
    fn fault_shares_follow_the_rates() {
        let cfg = FaultConfig {
            error_rate: 0.1,
            reset_rate: 0.2,
            malformed_rate: 0.05,
            stall_rate: 0.15,
            seed: 9,
        };
        let mut n = [0usize; 5];
        for i in 0..10_000 {
            let f = fault_for(&format!("prompt {i}"), &cfg);
            n[[Fault::None, Fault::Error, Fault::Reset, Fault::Malformed, Fault::Stall]
                .iter()
                .position(|x| *x == f)
                .unwrap_or(0)] += 1;
        }
        let share = |k: usize| n[k] as f64 / 10_000.0;
        assert!((share(1) - 0.1).abs() < 0.02, "{n:?}");
        assert!((share(2) - 0.2).abs() < 0.02, "{n:?}");
        assert!((share(3) - 0.05).abs() < 0.02, "{n:?}");
        assert!((share(4) - 0.15).abs() < 0.02, "{n:?}");
        assert_eq!(fault_for("k", &FaultConfig::default()), Fault::None);
    }
}
