//! The simulated OpenAI-compatible endpoint behind `recap-sim`.
//!
//! A real hyper 1.x HTTP/1.1 server on 127.0.0.1 with scripted timing (TTFT, inter-chunk
//! gaps, tokens per chunk), deterministic text and deterministic faults. Text and faults are
//! pure functions of the request's prompt ([`request_key`]), so a test can recompute exactly
//! what each request should have received, whatever the order or concurrency.
//!
//! It also reproduces what real servers do on the wire that clients trip over: the chunk
//! shapes of llama.cpp, vLLM, SGLang and TGI ([`Flavor`]), llama.cpp's habit of closing the
//! connection after every streamed response while advertising keep-alive
//! ([`SimConfig::close_after_stream`]), and `usage` counts from a real tokenizer
//! ([`UsageTokenizer`]).

use std::convert::Infallible;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use bytes::Bytes;
use http::{HeaderValue, Method, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Notify};

mod apis;
pub mod pooling;
use apis::{Open, Wire};

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

/// The text a request's output (and fault) is derived from: chat message contents joined with
/// `\n` (the `messages` of chat and Messages, the `input` of Responses; a Messages `system`
/// field is not part of it), the completions prompt (an array of prompts joined with `\n`),
/// the texts to embed, or a rerank query and its documents, joined with `\n`.
pub fn request_key(body: &Value) -> String {
    // Chat and Messages send `messages`; Responses sends them as `input` (or a text);
    // embeddings a list of texts as `input`; rerank a `query` and its `documents`.
    if let Some(q) = body.get("query").and_then(Value::as_str) {
        let docs = body.get("documents").and_then(Value::as_array).into_iter().flatten();
        return std::iter::once(q)
            .chain(docs.filter_map(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n");
    }
    let messages = body.get("messages").or_else(|| body.get("input"));
    if let Some(Value::String(s)) = messages {
        return s.clone();
    }
    if let Some(msgs) = messages.and_then(Value::as_array) {
        return msgs
            .iter()
            .filter_map(|m| m.as_str().or_else(|| m.get("content").and_then(Value::as_str)))
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

/// Mixed into a key hash for the reasoning sequence.
const REASONING_SALT: u64 = 0xA5A5_A5A5_A5A5_A5A5;

/// The `i`-th reasoning token for a key hash (differs from the content sequence).
pub fn reasoning_text(hash: u64, i: u64) -> String {
    word(hash ^ REASONING_SALT, i)
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

/// Whose OpenAI-compatible stream shapes the simulator sends. The text is the same in every
/// flavor ([`expected_content`]); only the envelope differs, as it does between real servers.
///
/// Where the shapes come from: llama.cpp from `llama-server` runs (`shared/realserver`); vLLM
/// from its `serving_chat.py`/`serving_completion.py`; SGLang from its `serving_chat.py`
/// (separate finish chunk, `choices: []` usage chunk) and the wire output quoted in
/// sgl-project/sglang#4550 (v0.4.4); TGI from `router/src/chat.rs` (`ChatState`) and its
/// integration-test snapshots (`test_chat_openai_usage.json`, and for completions
/// `test_flash_llama_completion_many_prompts_stream.json`, `finish_reason: String`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Flavor {
    /// OpenAI's own shapes: a role chunk (`content: ""`), one chunk per token, a finish chunk
    /// (`delta: {}`), then (with `include_usage`) a `choices: []` usage chunk. Completions
    /// carry `finish_reason` and usage on the last text chunk.
    #[default]
    Openai,
    /// llama.cpp's `llama-server`: role chunk with `content: null`, every chunk with a
    /// `system_fingerprint`, a finish chunk `delta: {}`, then (with `include_usage`) a
    /// `choices: []` chunk with `usage` (and `prompt_tokens_details.cached_tokens`); the last
    /// chunk carries a llama.cpp `timings` object. Completions end with a `text: ""` chunk
    /// holding `finish_reason`, `usage` (always) and `timings`.
    Llamacpp,
    /// vLLM: `logprobs: null` in every choice, `finish_reason` (and `stop_reason: null`) on the
    /// last token's chunk, a `choices: []` usage chunk with `include_usage`; with
    /// `stream_options.continuous_usage_stats` every chunk carries running `usage` counts.
    Vllm,
    /// SGLang (pydantic-serialized: every optional field present as `null`, `matched_stop`
    /// in each choice, `usage: null` on each chunk, a bare hex `id`): role chunk with
    /// `content: ""`, a separate finish chunk whose delta is all `null`, then a `choices: []`
    /// usage chunk. Honours `continuous_usage_stats` like vLLM.
    Sglang,
    /// Hugging Face TGI: no role-only chunk (every delta says `role: "assistant"`), `id: ""`,
    /// a `system_fingerprint` like `3.1.2-dev0-native`, `finish_reason` on the last token's
    /// chunk, then (with `include_usage`) a `choices: []` usage chunk. Completion chunks carry
    /// `finish_reason: ""` until the last one and never usage.
    Tgi,
}

/// `system_fingerprint` of the llama.cpp flavor (a llama.cpp build number and commit).
const LLAMACPP_FINGERPRINT: &str = "b6100-0f1d4a9";
/// `system_fingerprint` of the TGI flavor (TGI's version and backend).
const TGI_FINGERPRINT: &str = "3.1.2-dev0-native";

/// Counts `usage` the way a server with a real tokenizer does: output text with the
/// tokenizer, chat prompts rendered through the model's chat template first. The output is
/// made of words this tokenizer keeps as one token each, so a response of `max_tokens` tokens
/// is exactly `max_tokens` tokens of it ([`UsageTokenizer::output`]), as a real server's is.
///
/// Loaded with the `tokenizers` crate and minijinja directly (not through `analyze`), so the
/// counts the simulator reports are an independent reference for `analyze`'s own counter.
pub struct UsageTokenizer {
    tokenizer: tokenizers::Tokenizer,
    template: Option<ChatTemplate>,
    /// [`WORDS`] this tokenizer keeps as one token after other text (` river`): the output,
    /// one token each, so a response is exactly its `max_tokens` tokens (see [`Self::output`]).
    spaced: Vec<&'static str>,
    /// Those of them that are one token also at the start of a text (`river`): the first.
    first: Vec<&'static str>,
}

struct ChatTemplate {
    env: minijinja::Environment<'static>,
    bos_token: String,
    eos_token: String,
}

impl std::fmt::Debug for UsageTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UsageTokenizer")
            .field("chat_template", &self.template.is_some())
            .finish_non_exhaustive()
    }
}

fn special_token(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Object(o)) => o.get("content").and_then(Value::as_str).unwrap_or_default().to_string(),
        _ => String::new(),
    }
}

/// A `tokenizer.json` (or `.json.gz`) loaded by the `tokenizers` crate alone: what the
/// simulator counts usage with, and the independent count tests compare Recap against.
pub fn load_tokenizer(path: &Path) -> anyhow::Result<tokenizers::Tokenizer> {
    let raw = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let bytes = if path.extension().is_some_and(|e| e == "gz") {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .with_context(|| format!("{}: not a valid gzip file", path.display()))?;
        out
    } else {
        raw
    };
    tokenizers::Tokenizer::from_bytes(&bytes)
        .map_err(|e| anyhow::anyhow!("{}: not a valid tokenizer.json: {e}", path.display()))
}

impl UsageTokenizer {
    /// Loads `tokenizer.json` (or `tokenizer.json.gz`); the `tokenizer_config.json` beside
    /// it, when there is one, provides the chat template (a string, or a list of
    /// `{name, template}` where `default` wins).
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let tokenizer = load_tokenizer(path)?;
        let config = path.with_file_name("tokenizer_config.json");
        let template = if config.exists() {
            Some(ChatTemplate::load(&config)?)
        } else {
            None
        };
        let count = |text: &str| tokenizer.encode_fast(text, false).map_or(0, |e| e.len());
        // A word is one token where it is used: after other text (`The river`), which a
        // SentencePiece tokenizer's `▁` normalizer counts differently from ` river` alone.
        let anchor = count("The");
        let spaced: Vec<&'static str> = WORDS
            .iter()
            .copied()
            .filter(|w| count(&format!("The {w}")) == anchor + 1)
            .collect();
        let first: Vec<&'static str> = spaced.iter().copied().filter(|w| count(w) == 1).collect();
        anyhow::ensure!(
            !first.is_empty(),
            "{}: keeps none of the simulator's {} words as one token",
            path.display(),
            WORDS.len()
        );
        Ok(UsageTokenizer {
            tokenizer,
            template,
            spaced,
            first,
        })
    }

    /// The `i`-th output token's text for a key hash, as a server decodes the token it
    /// generated: a word, space-led after the first. A response of `n` of them is `n` tokens
    /// of this tokenizer (each word is a pre-token of its own; [`Plan::new`] counts the whole
    /// text for `usage`, and the tests re-count it independently).
    pub fn output(&self, hash: u64, i: u64) -> String {
        let idx = hash.wrapping_add(i.wrapping_mul(0x9E37_79B9_7F4A_7C15)) >> 7;
        if i == 0 {
            self.first[(idx % self.first.len() as u64) as usize].to_string()
        } else {
            format!(" {}", self.spaced[(idx % self.spaced.len() as u64) as usize])
        }
    }

    /// The whole content a request with this key receives for `n` tokens.
    pub fn expected_content(&self, key: &str, n: u64) -> String {
        let h = key_hash(key);
        (0..n).map(|i| self.output(h, i)).collect()
    }

    /// The whole reasoning text a request with this key receives for `n` reasoning tokens.
    pub fn expected_reasoning(&self, key: &str, n: u64) -> String {
        let h = key_hash(key) ^ REASONING_SALT;
        (0..n).map(|i| self.output(h, i)).collect()
    }

    /// Tokens of a pair as a cross-encoder encodes it (`encode((a, b), true)`: both texts and
    /// the tokenizer's pair specials).
    pub fn count_pair(&self, a: &str, b: &str) -> u64 {
        self.tokenizer.encode_fast((a, b), true).map_or(0, |e| e.len() as u64)
    }

    /// Tokens in `text`; `add_special` adds the tokenizer's own specials (BOS), as servers
    /// do for a completions prompt.
    pub fn count(&self, text: &str, add_special: bool) -> u64 {
        self.tokenizer
            .encode_fast(text, add_special)
            .map_or(0, |e| e.len() as u64)
    }

    /// `usage.prompt_tokens` of a request body: chat messages rendered through the chat
    /// template with `add_generation_prompt` (their contents joined with `\n` without one, or
    /// if it fails), or the completions prompt with special tokens added.
    pub fn prompt_tokens(&self, body: &Value) -> u64 {
        match body
            .get("messages")
            .or_else(|| body.get("input").filter(|i| i.is_array()))
        {
            Some(messages) => {
                let rendered = self.template.as_ref().and_then(|t| t.render(messages).ok());
                match rendered {
                    Some(text) => self.count(&text, false),
                    None => self.count(&request_key(body), false),
                }
            }
            None => self.count(&request_key(body), true),
        }
    }
}

impl ChatTemplate {
    fn load(config: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(config).with_context(|| format!("reading {}", config.display()))?;
        let json: Value =
            serde_json::from_str(&text).with_context(|| format!("{}: not valid JSON", config.display()))?;
        let template = match json.get("chat_template") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Array(list)) => list
                .iter()
                .find(|t| t.get("name").and_then(Value::as_str) == Some("default"))
                .or_else(|| list.first())
                .and_then(|t| t.get("template").and_then(Value::as_str))
                .unwrap_or_default()
                .to_string(),
            _ => anyhow::bail!("{}: no `chat_template` field", config.display()),
        };
        let mut env = minijinja::Environment::new();
        minijinja_contrib::add_to_environment(&mut env);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function(
            "raise_exception",
            |msg: String| -> Result<minijinja::Value, minijinja::Error> {
                Err(minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, msg))
            },
        );
        env.add_template_owned("chat", template)
            .with_context(|| format!("{}: chat_template does not compile", config.display()))?;
        Ok(ChatTemplate {
            env,
            bos_token: special_token(json.get("bos_token")),
            eos_token: special_token(json.get("eos_token")),
        })
    }

    fn render(&self, messages: &Value) -> Result<String, minijinja::Error> {
        self.env.get_template("chat")?.render(minijinja::context! {
            messages => minijinja::Value::from_serialize(messages),
            add_generation_prompt => true,
            bos_token => self.bos_token.clone(),
            eos_token => self.eos_token.clone(),
        })
    }
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
    /// Half-way through a 200 stream the server reports an error inside it (then `[DONE]`),
    /// as vLLM and SGLang do on KV-cache exhaustion or an abort. The style rotates by prompt:
    /// `{"error": {...}}` (vLLM, SGLang), `{"object": "error", ...}` (older vLLM), and an SSE
    /// `event: error`.
    StreamError,
    /// The stream ends cleanly half-way: no reset, no `finish_reason`, no `[DONE]`.
    Truncated,
}

impl Fault {
    fn name(self) -> &'static str {
        match self {
            Fault::None => "none",
            Fault::Error => "error",
            Fault::Reset => "reset",
            Fault::Malformed => "malformed",
            Fault::Stall => "stall",
            Fault::StreamError => "stream_error",
            Fault::Truncated => "truncated",
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
    /// Share of prompts whose stream reports an error half-way ([`Fault::StreamError`]).
    pub stream_error_rate: f64,
    /// Share of prompts whose stream ends early and cleanly ([`Fault::Truncated`]).
    pub truncate_rate: f64,
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
    edge += cfg.stream_error_rate;
    if u < edge {
        return Fault::StreamError;
    }
    edge += cfg.truncate_rate;
    if u < edge {
        return Fault::Truncated;
    }
    Fault::None
}

/// One payload of `--log-raw`: its `seq` (none for an HTTP error body), SSE `event:` name and
/// data.
pub type Payload = (Option<u64>, Option<String>, String);

/// What the simulator sent (its `--log-raw` file), by the `x-request-id` it was sent with, in
/// order of `seq`.
pub fn sent_payloads(log: &Path) -> std::collections::BTreeMap<String, Vec<Payload>> {
    let mut out: std::collections::BTreeMap<String, Vec<_>> = Default::default();
    for line in std::fs::read_to_string(log).expect("raw log").lines() {
        let v: Value = serde_json::from_str(line).expect("log line");
        let id = v["request_id"]
            .as_str()
            .expect("every request carried x-request-id")
            .to_string();
        out.entry(id).or_default().push((
            v["seq"].as_u64(),
            v["event"].as_str().map(str::to_string),
            v["data"].as_str().expect("data").to_string(),
        ));
    }
    for v in out.values_mut() {
        v.sort_by_key(|p| p.0);
    }
    out
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
    /// Optional log of every request body, as received, one per line (bodies are one-line
    /// JSON): what a replay test compares byte for byte.
    pub body_log: Option<std::path::PathBuf>,
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
    /// With `prerender`: send each event in its own chunked frame, flushed on its own, instead
    /// of the whole body at once (what servers that flush per token cost a client).
    pub flush_each_event: bool,
    /// Added to `ttft` for every other request running when a request arrives: the latency
    /// rule a capacity search is tested against (closed loop at concurrency c: TTFT =
    /// ttft + (c - 1) x this, once all workers are busy).
    pub ttft_per_running: Duration,
    /// After every streamed (SSE) response, close the TCP connection once the whole body
    /// (terminating chunk included) is written, although every response advertises
    /// `Connection: keep-alive` and `Keep-Alive: timeout=5, max=100`: what llama.cpp's
    /// `llama-server` does. A client that reuses the connection writes into a closed socket.
    pub close_after_stream: bool,
    /// Whose chunk shapes to send.
    pub flavor: Flavor,
    /// Count `usage` with this tokenizer instead of one token per word.
    pub tokenizer: Option<Arc<UsageTokenizer>>,
    /// Answer with these texts instead of generated words (benchmarks of tokenization on real
    /// prose and code): the k-th response gets the k-th text (cycling, later rounds prefixed
    /// with `[round N] `), in 64-byte events.
    pub corpus: Option<Arc<Corpus>>,
    /// Share of each prompt reported as served from the prefix cache
    /// (`usage.prompt_tokens_details.cached_tokens`, and llama.cpp's `timings.cache_n`).
    pub cache_share: f64,
    /// Echo credentials back, as a careless server or proxy does: the request's
    /// `Authorization` / `x-api-key` and its URL query in an `x-echo` response header, in an
    /// `echo` field of the first response object, and in the body of injected errors.
    pub echo_auth: bool,
    /// Optional log of every payload sent, one JSON line each: `request_id` (the request's
    /// `x-request-id`), `seq`, `event` (the SSE `event:` name), `data` (the SSE data, or the
    /// whole body of a non-streamed or error response) and `status`.
    pub raw_log: Option<std::path::PathBuf>,
    /// Text served at `GET /metrics` before the simulator's own live series (a held-out
    /// exposition for parser tests).
    pub metrics_file: Option<std::path::PathBuf>,
    /// Delay before `/metrics` answers (a scrape that times out).
    pub metrics_delay: Duration,
}

/// What the simulator reads from a request besides its body.
#[derive(Debug, Clone, Default)]
pub struct RequestInfo {
    /// `x-session-id`.
    pub session_id: Option<String>,
    /// `x-request-id`.
    pub request_id: Option<String>,
    /// The credentials sent (`Authorization`, `x-api-key`) and the URL query, for `echo_auth`.
    pub echo: Option<String>,
}

/// Texts the simulator answers with, each once before any repeats; repeats are made distinct (`--corpus`).
#[derive(Debug, Default)]
pub struct Corpus {
    texts: Vec<String>,
    next: std::sync::atomic::AtomicU64,
}

impl Corpus {
    /// Reads JSONL rows with a `text` field.
    pub fn load(path: &Path) -> anyhow::Result<Corpus> {
        let data = std::fs::read_to_string(path)?;
        let mut texts = Vec::new();
        for (i, line) in data.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let v: Value =
                serde_json::from_str(line).map_err(|e| anyhow::anyhow!("{} line {}: {e}", path.display(), i + 1))?;
            let text = v["text"]
                .as_str()
                .ok_or_else(|| anyhow::anyhow!("{} line {}: no `text` string", path.display(), i + 1))?;
            texts.push(text.to_string());
        }
        anyhow::ensure!(!texts.is_empty(), "{}: no texts", path.display());
        Ok(Corpus {
            texts,
            next: Default::default(),
        })
    }

    /// The next text, cut into events of at most 64 bytes (on character boundaries). Once
    /// every text has been sent, later rounds start each text with `[round N] `, so no two
    /// responses are equal (a cache keyed by text cannot hide the tokenization of a long run).
    fn next_pieces(&self) -> Vec<String> {
        let k = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) as usize;
        let (round, text) = (k / self.texts.len(), &self.texts[k % self.texts.len()]);
        let text = if round == 0 {
            std::borrow::Cow::Borrowed(text.as_str())
        } else {
            std::borrow::Cow::Owned(format!("[round {round}] {text}"))
        };
        let mut out = Vec::new();
        let mut start = 0;
        while start < text.len() {
            let mut end = (start + 64).min(text.len());
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            out.push(text[start..end].to_string());
            start = end;
        }
        out
    }
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
            body_log: None,
            gzip: false,
            close_every: 0,
            huge_event_bytes: 0,
            malformed_utf8: false,
            tls_self_signed: false,
            prerender: false,
            flush_each_event: false,
            ttft_per_running: Duration::ZERO,
            close_after_stream: false,
            flavor: Flavor::Openai,
            tokenizer: None,
            corpus: None,
            cache_share: 0.0,
            echo_auth: false,
            raw_log: None,
            metrics_file: None,
            metrics_delay: Duration::ZERO,
        }
    }
}

type Body = BoxBody<Bytes, std::io::Error>;

struct Shared {
    cfg: SimConfig,
    responses: std::sync::atomic::AtomicU64,
    /// What `/metrics` reports, vLLM's way: chat/completions requests being answered, and the
    /// prompt tokens asked for and served from the (simulated) prefix cache so far.
    running: AtomicU64,
    prompt_tokens: AtomicU64,
    cached_tokens: AtomicU64,
    log: Option<Mutex<std::io::BufWriter<std::fs::File>>>,
    body_log: Option<Mutex<std::io::BufWriter<std::fs::File>>>,
    raw_log: Option<Mutex<std::io::BufWriter<std::fs::File>>>,
}

impl Shared {
    /// One `raw_log` line: a payload exactly as sent (`data` lossy only for the deliberately
    /// invalid UTF-8 of `--malformed-utf8`).
    fn raw(&self, request_id: Option<&str>, seq: Option<usize>, event: Option<&str>, data: &[u8], status: u16) {
        if let Some(l) = &self.raw_log {
            let line = json!({"request_id": request_id, "seq": seq, "event": event,
                "data": String::from_utf8_lossy(data), "status": status});
            if let Ok(mut w) = l.lock() {
                let _ = writeln!(w, "{line}");
                let _ = w.flush();
            }
        }
    }

    /// One line per response: its key hash, fault, the content it answered (null for a
    /// fault) and the `x-session-id` header it came with, if any.
    fn log(&self, plan: &Plan, stream: bool, first_token_unix_ns: Option<i64>) {
        if let Some(l) = &self.log {
            let content = (plan.fault == Fault::None).then(|| plan.content());
            // What a stream that stopped early (an error in it, or a clean cut) did send.
            let sent_content = matches!(plan.fault, Fault::StreamError | Fault::Truncated).then(|| {
                plan.chunks[..plan.cut()]
                    .iter()
                    .filter(|c| !c.reasoning)
                    .map(|c| c.text.as_str())
                    .collect::<String>()
            });
            let line = json!({"key_hash": plan.hash, "fault": plan.fault.name(), "stream": stream,
                "first_token_unix_ns": first_token_unix_ns, "content": content, "session_id": plan.info.session_id,
                "request_id": plan.info.request_id, "sent_content": sent_content});
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
    let open_log = |p: &Option<std::path::PathBuf>| -> std::io::Result<_> {
        Ok(match p {
            Some(p) => Some(Mutex::new(std::io::BufWriter::new(
                std::fs::OpenOptions::new().create(true).append(true).open(p)?,
            ))),
            None => None,
        })
    };
    let (log, body_log, raw_log) = (open_log(&cfg.log)?, open_log(&cfg.body_log)?, open_log(&cfg.raw_log)?);
    let tls = if cfg.tls_self_signed {
        Some(self_signed_acceptor()?)
    } else {
        None
    };
    let shared = Arc::new(Shared {
        cfg,
        log,
        body_log,
        raw_log,
        responses: std::sync::atomic::AtomicU64::new(0),
        running: AtomicU64::new(0),
        prompt_tokens: AtomicU64::new(0),
        cached_tokens: AtomicU64::new(0),
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
            match tls {
                None => serve_connection(TokioIo::new(stream), shared).await,
                Some(acceptor) => {
                    if let Ok(s) = acceptor.accept(stream).await {
                        serve_connection(TokioIo::new(s), shared).await;
                    }
                }
            }
        });
    }
}

/// Serves one connection until the client or the server closes it. With
/// `--close-after-stream`, a streamed response's body tells (through `closer`) when its last
/// frame has been handed to hyper; the connection then stops keeping alive, so hyper writes
/// what is left of the response, flushes, shuts the socket down and drops it.
async fn serve_connection<I>(io: I, shared: Arc<Shared>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let closer = Arc::new(Notify::new());
    let svc = {
        let closer = closer.clone();
        service_fn(move |req| handle(shared.clone(), closer.clone(), req))
    };
    let conn = hyper::server::conn::http1::Builder::new().serve_connection(io, svc);
    tokio::pin!(conn);
    loop {
        tokio::select! {
            biased;
            () = closer.notified() => conn.as_mut().graceful_shutdown(),
            _ = conn.as_mut() => return,
        }
    }
}

/// A response body that signals `done` once its last frame has been handed to hyper (the end
/// of the stream, or a frame after which the body says it has ended).
struct SignalEnd {
    inner: Body,
    done: Option<Arc<Notify>>,
}

impl hyper::body::Body for SignalEnd {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        let ended = match &polled {
            Poll::Ready(None) => true,
            Poll::Ready(Some(Ok(_))) => this.inner.is_end_stream(),
            _ => false,
        };
        if ended {
            if let Some(done) = this.done.take() {
                done.notify_one();
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Headers a flavor's real server sends on every response.
fn flavor_headers(flavor: Flavor, headers: &mut http::HeaderMap) {
    let server = match flavor {
        Flavor::Openai => return,
        Flavor::Llamacpp => "llama.cpp",
        Flavor::Vllm | Flavor::Sglang => "uvicorn",
        Flavor::Tgi => {
            headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
            return;
        }
    };
    headers.insert(http::header::SERVER, HeaderValue::from_static(server));
}

async fn handle(
    shared: Arc<Shared>,
    closer: Arc<Notify>,
    req: hyper::Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let mut resp = route(&shared, req).await;
    flavor_headers(shared.cfg.flavor, resp.headers_mut());
    let n = shared.responses.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
    if shared.cfg.close_every > 0 && n.is_multiple_of(shared.cfg.close_every) {
        resp.headers_mut()
            .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    } else if shared.cfg.close_after_stream {
        // What llama-server (cpp-httplib) advertises, including on the responses after which
        // it closes the connection.
        resp.headers_mut()
            .insert(http::header::CONNECTION, HeaderValue::from_static("keep-alive"));
        resp.headers_mut()
            .insert("keep-alive", HeaderValue::from_static("timeout=5, max=100"));
        let streamed = resp
            .headers()
            .get(http::header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
        if streamed {
            resp = resp.map(|inner| {
                SignalEnd {
                    inner,
                    done: Some(closer),
                }
                .boxed()
            });
        }
    }
    Ok(resp)
}

async fn route(shared: &Arc<Shared>, req: hyper::Request<Incoming>) -> Response<Body> {
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let echo: Vec<String> = ["authorization", "x-api-key"]
        .iter()
        .filter_map(|n| header(n))
        .chain(req.uri().query().map(str::to_string))
        .collect();
    let info = RequestInfo {
        session_id: header("x-session-id"),
        request_id: header("x-request-id"),
        echo: (shared.cfg.echo_auth && !echo.is_empty()).then(|| echo.join(" ")),
    };
    let pooling = match (&method, path.as_str()) {
        (&Method::POST, "/v1/embeddings") => Some(pooling::Pooling::Embeddings),
        (&Method::POST, "/v1/rerank") => Some(pooling::Pooling::Rerank),
        _ => None,
    };
    let (chat, wire) = match (&method, path.as_str()) {
        _ if pooling.is_some() => (false, Wire::Openai),
        (&Method::GET, "/health") => return full(StatusCode::OK, json!({"status": "ok"})),
        (&Method::GET, "/metrics") => return metrics(shared).await,
        (&Method::GET, "/v1/models") => {
            return full(
                StatusCode::OK,
                json!({"object": "list", "data": [{"id": "recap-sim", "object": "model"}]}),
            )
        }
        (&Method::POST, "/v1/chat/completions") => (true, Wire::Openai),
        (&Method::POST, "/v1/completions") => (false, Wire::Openai),
        (&Method::POST, "/v1/responses") => (true, Wire::Responses),
        (&Method::POST, "/v1/messages") => (true, Wire::Messages),
        _ => return error_body(StatusCode::NOT_FOUND, &format!("no route {method} {path}"), "not_found"),
    };
    if wire == Wire::Messages && header("anthropic-version").is_none() {
        // What Anthropic answers a request without the version its wire format follows.
        return full(
            StatusCode::BAD_REQUEST,
            json!({"type": "error", "error": {"type": "invalid_request_error",
                "message": "anthropic-version: header is required"}}),
        );
    }
    let bytes = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return error_body(
                StatusCode::BAD_REQUEST,
                &format!("reading body: {e}"),
                "invalid_request_error",
            )
        }
    };
    if let Some(l) = &shared.body_log {
        if let Ok(mut w) = l.lock() {
            let _ = w.write_all(&bytes);
            let _ = w.write_all(b"\n");
            let _ = w.flush();
        }
    }
    let body: Value = match serde_json::from_slice(&bytes) {
        Ok(v @ Value::Object(_)) => v,
        Ok(_) => {
            return error_body(
                StatusCode::BAD_REQUEST,
                "body must be a JSON object",
                "invalid_request_error",
            )
        }
        Err(e) => {
            return error_body(
                StatusCode::BAD_REQUEST,
                &format!("invalid JSON: {e}"),
                "invalid_request_error",
            )
        }
    };
    match pooling {
        Some(kind) => pooling::respond(shared.clone(), kind, &body, info).await,
        None => respond(shared.clone(), chat, wire, &body, info).await,
    }
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
    /// `--prerender --flush-each-event`: the events are collected here one by one instead.
    frames: Option<Vec<Bytes>>,
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
        match (&self.tx, &mut self.frames) {
            (Some(tx), _) => tx.send(Ok(Frame::data(b))).await.is_ok(),
            (None, Some(frames)) => {
                frames.push(b);
                true
            }
            (None, None) => {
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
            frames: None,
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
                match (&self.tx, &mut self.frames) {
                    (Some(tx), _) => {
                        let _ = tx.send(Ok(Frame::data(Bytes::from(tail)))).await;
                    }
                    (None, Some(frames)) => frames.push(Bytes::from(tail)),
                    (None, None) => self.collected.extend_from_slice(&tail),
                }
            }
        }
    }
}

/// A request being answered, for `/metrics`' running gauge: counted while it lives.
struct Running(Arc<Shared>);

impl Running {
    fn new(shared: Arc<Shared>) -> Self {
        shared.running.fetch_add(1, Relaxed);
        Running(shared)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Relaxed);
    }
}

/// `GET /metrics`: the `--metrics-file` text (if any), then live series named as vLLM names
/// them: requests running, none waiting, KV-cache usage of 1 % per running request, and the
/// prefix-cache hit and query counters (prompt tokens), after `--metrics-delay`.
async fn metrics(shared: &Arc<Shared>) -> Response<Body> {
    if !shared.cfg.metrics_delay.is_zero() {
        tokio::time::sleep(shared.cfg.metrics_delay).await;
    }
    let mut text = match &shared.cfg.metrics_file {
        Some(p) => std::fs::read_to_string(p).unwrap_or_default(),
        None => String::new(),
    };
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    let running = shared.running.load(Relaxed);
    let m = r#"model_name="recap-sim""#;
    text.push_str(&format!(
        "# HELP vllm:num_requests_running Number of requests in model execution batches.\n\
         # TYPE vllm:num_requests_running gauge\n\
         vllm:num_requests_running{{{m}}} {running}.0\n\
         # TYPE vllm:num_requests_waiting gauge\n\
         vllm:num_requests_waiting{{{m}}} 0.0\n\
         # TYPE vllm:kv_cache_usage_perc gauge\n\
         vllm:kv_cache_usage_perc{{{m}}} {}\n\
         # TYPE vllm:prefix_cache_queries_total counter\n\
         vllm:prefix_cache_queries_total{{{m}}} {}.0\n\
         # TYPE vllm:prefix_cache_hits_total counter\n\
         vllm:prefix_cache_hits_total{{{m}}} {}.0\n",
        (running as f64 / 100.0).min(1.0),
        shared.prompt_tokens.load(Relaxed),
        shared.cached_tokens.load(Relaxed),
    ));
    let mut r = full_bytes(StatusCode::OK, Bytes::from(text));
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r
}

/// One SSE chunk's worth of generated text.
struct Chunk {
    reasoning: bool,
    text: String,
    /// Completion tokens generated through the end of this chunk (running `usage`).
    tokens_through: u64,
}

/// Everything one response says, decided before the first byte is sent.
struct Plan {
    chat: bool,
    /// Whose API's events and bodies to send.
    wire: Wire,
    /// The output is as long as the request's budget allowed (Responses `incomplete`, Messages
    /// `max_tokens`), not the simulator's own `--output-tokens`.
    budget_hit: bool,
    /// The extra content event's size (`--huge-event-bytes`), part of a whole body.
    huge_event_bytes: usize,
    flavor: Flavor,
    model: String,
    id: String,
    hash: u64,
    prompt_tokens: u64,
    completion_tokens: u64,
    /// Send `usage` (where this flavor puts it for this request).
    usage: bool,
    /// Running `usage` on every chunk (`stream_options.continuous_usage_stats`).
    continuous: bool,
    fault: Fault,
    chunks: Vec<Chunk>,
    ttft: Duration,
    itl: Duration,
    /// What the request's headers and URL said (session id, request id, echoed credentials).
    info: RequestInfo,
    /// Choices per response (the request's `n`).
    n: u64,
    /// Prompt tokens reported as prefix-cache hits.
    cached_tokens: u64,
}

/// The field a delta's text goes in.
fn delta_field(reasoning: bool) -> &'static str {
    if reasoning {
        "reasoning_content"
    } else {
        "content"
    }
}

impl Plan {
    /// The content this response carries (reasoning excluded).
    fn content(&self) -> String {
        self.chunks
            .iter()
            .filter(|c| !c.reasoning)
            .map(|c| c.text.as_str())
            .collect()
    }

    fn new(cfg: &SimConfig, chat: bool, wire: Wire, body: &Value, stream: bool) -> Plan {
        let key = request_key(body);
        let hash = key_hash(&key);
        let requested = ["max_completion_tokens", "max_tokens", "max_output_tokens"]
            .iter()
            .find_map(|f| body.get(*f).and_then(Value::as_u64));
        let option = |name: &str| {
            body.pointer(&format!("/stream_options/{name}"))
                .and_then(Value::as_bool)
                .unwrap_or(false)
        };
        let flavor = cfg.flavor;
        let usage = !cfg.no_usage
            && (!stream
                || wire != Wire::Openai
                || match (flavor, chat) {
                    // llama.cpp always ends a completions stream with usage; TGI never sends it there.
                    (Flavor::Llamacpp, false) => true,
                    (Flavor::Tgi, false) => false,
                    _ => option("include_usage"),
                });
        let continuous = stream
            && usage
            && wire == Wire::Openai
            && option("continuous_usage_stats")
            && matches!(flavor, Flavor::Vllm | Flavor::Sglang);
        let choices = body.get("n").and_then(Value::as_u64).unwrap_or(1).clamp(1, 16);
        let n = cfg.output_tokens.or(requested).unwrap_or(16);
        let reasoning = if chat { cfg.reasoning } else { 0 };
        let per_chunk = cfg.tokens_per_chunk.max(1);
        let tok = cfg.tokenizer.as_deref();

        let mut chunks = Vec::new();
        let (mut reasoning_so_far, mut content_so_far) = (String::new(), "x".repeat(cfg.huge_event_bytes));
        let mut tokens = 0;
        let corpus = cfg.corpus.as_ref().map(|c| c.next_pieces());
        for (is_reasoning, total) in [(true, reasoning), (false, n)] {
            if let (false, Some(pieces)) = (is_reasoning, &corpus) {
                for text in pieces {
                    tokens += 1;
                    chunks.push(Chunk {
                        reasoning: false,
                        text: text.clone(),
                        tokens_through: tokens,
                    });
                }
                continue;
            }
            let mut i = 0;
            while i < total {
                let end = (i + per_chunk).min(total);
                let text: String = (i..end)
                    .map(|j| match (tok, is_reasoning) {
                        (Some(t), true) => t.output(hash ^ REASONING_SALT, j),
                        (Some(t), false) => t.output(hash, j),
                        (None, true) => reasoning_text(hash, j),
                        (None, false) => token_text(hash, j),
                    })
                    .collect();
                tokens += end - i;
                let tokens_through = match tok {
                    Some(t) if continuous => {
                        if is_reasoning {
                            reasoning_so_far.push_str(&text);
                        } else {
                            content_so_far.push_str(&text);
                        }
                        t.count(&reasoning_so_far, false) + t.count(&content_so_far, false)
                    }
                    _ => tokens,
                };
                chunks.push(Chunk {
                    reasoning: is_reasoning,
                    text,
                    tokens_through,
                });
                i = end;
            }
        }
        let (prompt_tokens, completion_tokens) = match tok {
            None if corpus.is_some() => (prompt_tokens(&key), tokens),
            None => (prompt_tokens(&key), n + reasoning),
            Some(t) => {
                let mut content = "x".repeat(cfg.huge_event_bytes);
                let mut reasoning_all = String::new();
                for c in &chunks {
                    if c.reasoning {
                        reasoning_all.push_str(&c.text);
                    } else {
                        content.push_str(&c.text);
                    }
                }
                (
                    t.prompt_tokens(body),
                    t.count(&reasoning_all, false) + t.count(&content, false),
                )
            }
        };
        let id = match (wire, flavor) {
            (Wire::Responses, _) => format!("resp_{hash:016x}"),
            (Wire::Messages, _) => format!("msg_{hash:016x}"),
            (_, flavor) => Plan::openai_id(flavor, chat, hash),
        };
        Plan {
            chat,
            wire,
            budget_hit: cfg.output_tokens.is_none() && requested.is_some(),
            huge_event_bytes: cfg.huge_event_bytes,
            flavor,
            model: body
                .get("model")
                .and_then(Value::as_str)
                .unwrap_or("recap-sim")
                .to_string(),
            id,
            hash,
            prompt_tokens,
            completion_tokens,
            usage,
            continuous,
            fault: match fault_for(&key, &cfg.faults) {
                // A whole body cannot stop half-way cleanly: without streaming it is a normal one.
                Fault::Truncated if !stream => Fault::None,
                f => f,
            },
            chunks,
            info: RequestInfo::default(),
            ttft: cfg.ttft,
            itl: cfg.itl,
            n: choices,
            cached_tokens: (prompt_tokens as f64 * cfg.cache_share.clamp(0.0, 1.0)).floor() as u64,
        }
    }

    /// The `id` each OpenAI-compatible server gives a response.
    fn openai_id(flavor: Flavor, chat: bool, hash: u64) -> String {
        match flavor {
            Flavor::Openai => format!("cmpl-{hash:016x}"),
            Flavor::Llamacpp | Flavor::Vllm if chat => format!("chatcmpl-{hash:016x}"),
            Flavor::Llamacpp | Flavor::Vllm => format!("cmpl-{hash:016x}"),
            Flavor::Sglang => format!("{hash:016x}{:016x}", splitmix64(hash)),
            Flavor::Tgi => String::new(),
        }
    }

    /// Chunks sent before a [`Fault::StreamError`] or [`Fault::Truncated`] stops the stream.
    fn cut(&self) -> usize {
        (self.chunks.len() / 2).max(1).min(self.chunks.len())
    }

    /// `v` as choice `k` of `n > 1` would send it: each choice's `index` set to `k` and its
    /// text marked `[k]`, so no two choices' texts are equal. `None` for an object without a
    /// choice (a usage chunk), which is sent once.
    fn for_choice(v: &Value, k: u64) -> Option<Value> {
        let mut v = v.clone();
        let choices = v.get_mut("choices")?.as_array_mut()?;
        if choices.is_empty() {
            return None;
        }
        for c in choices.iter_mut() {
            c["index"] = json!(k);
            for holder in ["delta", "message"] {
                if let Some(m) = c.get_mut(holder) {
                    for f in ["content", "reasoning_content"] {
                        if let Some(Value::String(s)) = m.get_mut(f) {
                            if !s.is_empty() {
                                *s = format!("[{k}]{s}");
                            }
                        }
                    }
                }
            }
            if let Some(Value::String(s)) = c.get_mut("text") {
                if !s.is_empty() {
                    *s = format!("[{k}]{s}");
                }
            }
        }
        Some(v)
    }

    /// The error object a [`Fault::StreamError`] sends, in the style this prompt draws, with
    /// its SSE `event:` name if the style has one.
    fn stream_error(&self) -> (Option<&'static str>, Value) {
        let message = "simulated KV cache exhaustion: request aborted";
        if let Some(named) = self.wire_error(message) {
            return named;
        }
        match self.hash % 3 {
            0 => (
                None,
                json!({"error": {"message": message, "type": "InternalServerError", "param": null, "code": 500}}),
            ),
            1 => (
                None,
                json!({"object": "error", "message": message, "type": "InternalServerError", "param": null, "code": 500}),
            ),
            _ => (
                Some("error"),
                json!({"type": "error", "error": {"type": "overloaded_error", "message": message}}),
            ),
        }
    }

    fn object(&self) -> &'static str {
        if self.chat {
            "chat.completion.chunk"
        } else {
            "text_completion"
        }
    }

    /// A `usage` object with `completion` tokens generated so far.
    fn usage_value(&self, completion: u64) -> Value {
        let p = self.prompt_tokens;
        // With `n > 1` servers count the tokens of every choice.
        let completion = completion * self.n;
        let mut u = json!({"prompt_tokens": p, "completion_tokens": completion, "total_tokens": p + completion});
        match self.flavor {
            Flavor::Llamacpp => u["prompt_tokens_details"] = json!({"cached_tokens": self.cached_tokens}),
            Flavor::Sglang if self.cached_tokens == 0 => u["prompt_tokens_details"] = Value::Null,
            _ if self.cached_tokens > 0 => u["prompt_tokens_details"] = json!({"cached_tokens": self.cached_tokens}),
            _ => {}
        }
        u
    }

    /// llama.cpp's `timings` object, from the scripted delays.
    fn timings(&self) -> Value {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let per_s = |n: u64, ms: f64| if ms > 0.0 { n as f64 * 1000.0 / ms } else { 0.0 };
        let per_token = |n: u64, ms: f64| if n > 0 { ms / n as f64 } else { 0.0 };
        let (p, c) = (self.prompt_tokens, self.completion_tokens);
        let prompt_ms = ms(self.ttft);
        let predicted_ms = ms(self.itl) * self.chunks.len().saturating_sub(1) as f64;
        json!({"cache_n": self.cached_tokens, "prompt_n": p - self.cached_tokens, "prompt_ms": prompt_ms,
               "prompt_per_token_ms": per_token(p, prompt_ms), "prompt_per_second": per_s(p, prompt_ms),
               "predicted_n": c, "predicted_ms": predicted_ms,
               "predicted_per_token_ms": per_token(c, predicted_ms), "predicted_per_second": per_s(c, predicted_ms)})
    }

    /// The chunk sent before the first token (chat only; TGI sends none).
    fn role_event(&self) -> Option<Value> {
        if !self.chat {
            return None;
        }
        let (id, model, object) = (&self.id, &self.model, self.object());
        Some(match self.flavor {
            Flavor::Openai => json!({"id": id, "object": object, "created": 0, "model": model,
                "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": null}]}),
            Flavor::Llamacpp => json!({"choices": [{"finish_reason": null, "index": 0,
                    "delta": {"role": "assistant", "content": null}}],
                "created": 0, "id": id, "model": model, "system_fingerprint": LLAMACPP_FINGERPRINT, "object": object}),
            Flavor::Vllm => {
                let mut v = json!({"id": id, "object": object, "created": 0, "model": model,
                    "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                 "logprobs": null, "finish_reason": null}]});
                if self.continuous {
                    v["usage"] = self.usage_value(0);
                }
                v
            }
            Flavor::Sglang => json!({"id": id, "object": object, "created": 0, "model": model,
                "choices": [{"index": 0,
                    "delta": {"role": "assistant", "content": "", "reasoning_content": null, "tool_calls": null},
                    "logprobs": null, "finish_reason": null, "matched_stop": null}],
                "usage": null}),
            Flavor::Tgi => return None,
        })
    }

    /// The data of a token event of an OpenAI-flavored chat stream, serialized without building
    /// a `Value`: the bytes [`Self::token_event`] gives (a `Value` keeps its keys sorted, as
    /// these fields are), at a fraction of the cost. Building and dropping that `Value` was
    /// half of what B2's simulator spent, and the simulator, not the client, set B2's pace.
    /// `None` for every other flavor and wire.
    fn plain_token_data(&self, reasoning: bool, text: &str) -> Option<Vec<u8>> {
        #[derive(serde::Serialize)]
        struct Event<'a> {
            choices: [Choice<'a>; 1],
            created: u8,
            id: &'a str,
            model: &'a str,
            object: &'a str,
        }
        #[derive(serde::Serialize)]
        struct Choice<'a> {
            delta: Delta<'a>,
            finish_reason: Option<&'a str>,
            index: u8,
        }
        #[derive(serde::Serialize)]
        struct Delta<'a> {
            #[serde(skip_serializing_if = "Option::is_none")]
            content: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            reasoning_content: Option<&'a str>,
        }
        if (self.flavor, self.chat, self.wire) != (Flavor::Openai, true, Wire::Openai) {
            return None;
        }
        let event = Event {
            choices: [Choice {
                delta: Delta {
                    content: (!reasoning).then_some(text),
                    reasoning_content: reasoning.then_some(text),
                },
                finish_reason: None,
                index: 0,
            }],
            created: 0,
            id: &self.id,
            model: &self.model,
            object: self.object(),
        };
        serde_json::to_vec(&event).ok()
    }

    /// The chunk carrying `text`; `last` is the last token chunk, `through` the completion
    /// tokens generated once it is out (running usage).
    fn token_event(&self, reasoning: bool, text: &str, last: bool, through: u64) -> Value {
        let (id, model, object) = (&self.id, &self.model, self.object());
        let field = delta_field(reasoning);
        let finish = last.then_some("length");
        let running = || {
            if self.continuous {
                self.usage_value(through)
            } else {
                Value::Null
            }
        };
        match (self.flavor, self.chat) {
            (Flavor::Openai, true) => json!({"id": id, "object": object, "created": 0, "model": model,
                "choices": [{"index": 0, "delta": {field: text}, "finish_reason": null}]}),
            (Flavor::Openai, false) => {
                let mut v = json!({"id": id, "object": object, "created": 0, "model": model,
                    "choices": [{"index": 0, "text": text, "finish_reason": finish}]});
                if last && self.usage {
                    v["usage"] = self.usage_value(self.completion_tokens);
                }
                v
            }
            (Flavor::Llamacpp, true) => {
                json!({"choices": [{"finish_reason": null, "index": 0, "delta": {field: text}}],
                "created": 0, "id": id, "model": model, "system_fingerprint": LLAMACPP_FINGERPRINT, "object": object})
            }
            (Flavor::Llamacpp, false) => json!({
                "choices": [{"text": text, "index": 0, "logprobs": null, "finish_reason": null}],
                "created": 0, "id": id, "model": model, "system_fingerprint": LLAMACPP_FINGERPRINT, "object": object}),
            (Flavor::Vllm, chat) => {
                let mut choice = if chat {
                    json!({"index": 0, "delta": {field: text}, "logprobs": null, "finish_reason": finish})
                } else {
                    json!({"index": 0, "text": text, "logprobs": null, "finish_reason": finish, "stop_reason": null})
                };
                if last {
                    choice["stop_reason"] = Value::Null;
                }
                let mut v = json!({"id": id, "object": object, "created": 0, "model": model, "choices": [choice]});
                if self.continuous {
                    v["usage"] = running();
                }
                v
            }
            (Flavor::Sglang, true) => {
                let mut delta = json!({"role": null, "content": null, "reasoning_content": null, "tool_calls": null});
                delta[field] = json!(text);
                json!({"id": id, "object": object, "created": 0, "model": model,
                    "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": null, "matched_stop": null}],
                    "usage": running()})
            }
            (Flavor::Sglang, false) => json!({"id": id, "object": object, "created": 0, "model": model,
                "choices": [{"index": 0, "text": text, "logprobs": null, "finish_reason": finish, "matched_stop": null}],
                "usage": running()}),
            (Flavor::Tgi, true) => json!({"object": object, "id": "", "created": 0, "model": model,
                "system_fingerprint": TGI_FINGERPRINT,
                "choices": [{"index": 0, "delta": {"role": "assistant", field: text}, "logprobs": null, "finish_reason": finish}],
                "usage": null}),
            (Flavor::Tgi, false) => json!({"id": "", "object": object, "created": 0, "model": model,
                "system_fingerprint": TGI_FINGERPRINT,
                "choices": [{"index": 0, "text": text, "logprobs": null, "finish_reason": finish.unwrap_or("")}]}),
        }
    }

    /// The chunks after the last token chunk, before `[DONE]`.
    fn tail_events(&self) -> Vec<Value> {
        let (id, model, object) = (&self.id, &self.model, self.object());
        let usage = self.usage_value(self.completion_tokens);
        let mut out = Vec::new();
        match (self.flavor, self.chat) {
            (Flavor::Openai, true) => {
                out.push(json!({"id": id, "object": object, "created": 0, "model": model,
                    "choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]}));
                if self.usage {
                    out.push(json!({"id": id, "object": object, "created": 0, "model": model,
                        "choices": [], "usage": usage}));
                }
            }
            (Flavor::Openai, false) | (Flavor::Tgi, false) => {}
            (Flavor::Llamacpp, true) => {
                out.push(
                    json!({"choices": [{"finish_reason": "length", "index": 0, "delta": {}}],
                    "created": 0, "id": id, "model": model, "system_fingerprint": LLAMACPP_FINGERPRINT,
                    "object": object}),
                );
                if self.usage {
                    out.push(json!({"choices": [], "created": 0, "id": id, "model": model,
                        "system_fingerprint": LLAMACPP_FINGERPRINT, "object": object, "usage": usage}));
                }
                if let Some(last) = out.last_mut() {
                    last["timings"] = self.timings();
                }
            }
            (Flavor::Llamacpp, false) => {
                // "In stream mode, content is already in the last partial chunk": the final
                // chunk has empty text and carries finish_reason, usage and timings.
                let mut v = json!({"choices": [{"text": "", "index": 0, "logprobs": null, "finish_reason": "length"}],
                    "created": 0, "id": id, "model": model, "system_fingerprint": LLAMACPP_FINGERPRINT,
                    "object": object});
                if self.usage {
                    v["usage"] = usage;
                }
                v["timings"] = self.timings();
                out.push(v);
            }
            (Flavor::Vllm, _) => {
                if self.usage {
                    out.push(json!({"id": id, "object": object, "created": 0, "model": model,
                        "choices": [], "usage": usage}));
                }
            }
            (Flavor::Sglang, chat) => {
                if chat {
                    out.push(json!({"id": id, "object": object, "created": 0, "model": model,
                        "choices": [{"index": 0,
                            "delta": {"role": null, "content": null, "reasoning_content": null, "tool_calls": null},
                            "logprobs": null, "finish_reason": "length", "matched_stop": null}],
                        "usage": null}));
                }
                if self.usage {
                    out.push(json!({"id": id, "object": object, "created": 0, "model": model,
                        "choices": [], "usage": usage}));
                }
            }
            (Flavor::Tgi, true) => {
                if self.usage {
                    out.push(json!({"object": object, "id": "", "created": 0, "model": model,
                        "system_fingerprint": TGI_FINGERPRINT, "choices": [], "usage": usage}));
                }
            }
        }
        out
    }

    /// The whole non-streamed body.
    fn whole_body(&self, huge_event_bytes: usize) -> Value {
        let mut content = "x".repeat(huge_event_bytes);
        content.extend(self.chunks.iter().filter(|c| !c.reasoning).map(|c| c.text.as_str()));
        let reasoning: String = self
            .chunks
            .iter()
            .filter(|c| c.reasoning)
            .map(|c| c.text.as_str())
            .collect();
        let (object, choice) = if self.chat {
            let mut message = json!({"role": "assistant", "content": content});
            if !reasoning.is_empty() {
                message["reasoning_content"] = json!(reasoning);
            }
            (
                "chat.completion",
                json!({"index": 0, "message": message, "finish_reason": "length"}),
            )
        } else {
            (
                "text_completion",
                json!({"index": 0, "text": content, "finish_reason": "length"}),
            )
        };
        let mut choices = vec![choice.clone()];
        let wrapped = json!({"choices": [choice]});
        for k in 1..self.n {
            if let Some(c) = Plan::for_choice(&wrapped, k) {
                choices.push(c["choices"][0].clone());
            }
        }
        let mut v = json!({"id": self.id, "object": object, "created": 0, "model": self.model, "choices": choices});
        if let Some(e) = &self.info.echo {
            v["echo"] = json!(e);
        }
        match self.flavor {
            Flavor::Llamacpp => {
                v["system_fingerprint"] = json!(LLAMACPP_FINGERPRINT);
                v["timings"] = self.timings();
            }
            Flavor::Tgi => v["system_fingerprint"] = json!(TGI_FINGERPRINT),
            _ => {}
        }
        if self.usage {
            v["usage"] = self.usage_value(self.completion_tokens);
        }
        v
    }
}

async fn respond(shared: Arc<Shared>, chat: bool, wire: Wire, body: &Value, info: RequestInfo) -> Response<Body> {
    let stream = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let mut plan = Plan::new(&shared.cfg, chat, wire, body, stream);
    plan.info = info;
    respond_plan(&shared, plan, stream).await
}

async fn respond_plan(shared: &Arc<Shared>, plan: Plan, stream: bool) -> Response<Body> {
    let cfg = &shared.cfg;
    let rid = plan.info.request_id.clone();
    shared.prompt_tokens.fetch_add(plan.prompt_tokens, Relaxed);
    shared.cached_tokens.fetch_add(plan.cached_tokens, Relaxed);
    // Running until the response body is dropped (streamed) or the function returns.
    let running = Running::new(shared.clone());
    let mut plan = plan;
    let others = shared.running.load(Relaxed).saturating_sub(1);
    plan.ttft = cfg.ttft + cfg.ttft_per_running * u32::try_from(others).unwrap_or(u32::MAX);
    if plan.fault == Fault::Error {
        shared.log(&plan, stream, None);
        let status = StatusCode::from_u16(cfg.error_status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let message = match &plan.info.echo {
            // What a careless server or proxy says back on a 401.
            Some(e) => format!("simulated failure; the request came with: {e}"),
            None => "simulated failure".to_string(),
        };
        let body = json!({"error": {"message": message, "type": "server_error", "code": status.as_u16()}}).to_string();
        shared.raw(rid.as_deref(), None, None, body.as_bytes(), status.as_u16());
        let mut r = full_bytes(status, Bytes::from(body));
        echo_header(&plan, &mut r);
        return r;
    }
    if stream {
        let echo = plan.info.echo.clone();
        let prerendered = cfg.prerender && plan.fault == Fault::None && plan.ttft.is_zero() && cfg.itl.is_zero();
        let body = if prerendered {
            let mut out = Out::new(None, cfg.gzip);
            out.frames = cfg.flush_each_event.then(Vec::new);
            stream_body(shared.clone(), plan, &mut out).await;
            match out.frames.take() {
                // Capacity 1 and a yield after each send: hyper finds the body pending after
                // every event, so it writes (and flushes) each in its own chunked frame, as a
                // server that flushes per token does.
                Some(frames) => {
                    let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(1);
                    tokio::spawn(async move {
                        for f in frames {
                            if tx.send(Ok(Frame::data(f))).await.is_err() {
                                break;
                            }
                            tokio::task::yield_now().await;
                        }
                        drop(running);
                    });
                    StreamBody::new(ReceiverStream(rx)).boxed()
                }
                None => Full::new(Bytes::from(out.collected))
                    .map_err(|never| match never {})
                    .boxed(),
            }
        } else {
            let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(16);
            let mut out = Out::new(Some(tx), cfg.gzip);
            let shared = shared.clone();
            tokio::spawn(async move {
                stream_body(shared, plan, &mut out).await;
                // The stream is written: no longer running.
                drop(running);
            });
            StreamBody::new(ReceiverStream(rx)).boxed()
        };
        let mut r = Response::new(body);
        r.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        );
        r.headers_mut()
            .insert(http::header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        if let Some(e) = echo.as_deref().and_then(|e| HeaderValue::from_str(e).ok()) {
            r.headers_mut().insert("x-echo", e);
        }
        if cfg.gzip {
            r.headers_mut()
                .insert(http::header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        }
        return r;
    }
    // Non-streaming: the whole generation time, then one body.
    match plan.fault {
        Fault::Stall => {
            shared.log(&plan, false, None);
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        Fault::Reset => {
            shared.log(&plan, false, None);
            tokio::time::sleep(plan.ttft).await;
            let body = futures_once_error();
            return Response::new(body);
        }
        _ => {}
    }
    tokio::time::sleep(plan.ttft + cfg.itl * (plan.chunks.len().saturating_sub(1) as u32)).await;
    shared.log(&plan, false, Some(unix_ns()));
    let text = match plan.fault {
        Fault::Malformed => "{\"choices\": [".to_string(),
        // A 200 whose body is an error object.
        Fault::StreamError => plan.stream_error().1.to_string(),
        _ => plan.wire_whole().to_string(),
    };
    shared.raw(rid.as_deref(), Some(0), None, text.as_bytes(), 200);
    let mut r = if cfg.gzip {
        let mut r = full_bytes(StatusCode::OK, gzip_all(text.as_bytes()));
        r.headers_mut()
            .insert(http::header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        r
    } else {
        full_bytes(StatusCode::OK, Bytes::from(text))
    };
    echo_header(&plan, &mut r);
    r
}

/// `echo_auth`: the request's credentials in an `x-echo` response header.
fn echo_header(plan: &Plan, r: &mut Response<Body>) {
    if let Some(e) = plan.info.echo.as_deref().and_then(|e| HeaderValue::from_str(e).ok()) {
        r.headers_mut().insert("x-echo", e);
    }
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

/// Sends stream events, numbering and logging each one (`raw_log`) exactly as sent.
struct Emitter<'a> {
    shared: &'a Shared,
    seq: usize,
}

impl Emitter<'_> {
    /// Sends one event with `data` (and an `event:` line when named); false once the client
    /// has gone.
    async fn send(&mut self, plan: &Plan, out: &mut Out, event: Option<&str>, data: &[u8]) -> bool {
        self.send_with(plan, out, event, data.len(), |b| b.extend_from_slice(data))
            .await
    }

    /// [`Self::send`] with a JSON value as data, serialized straight into the frame (through
    /// `Display` and a copy it cost B2's simulator a third of its time: the simulator, not
    /// the client, set B2's pace).
    async fn send_value(&mut self, plan: &Plan, out: &mut Out, event: Option<&str>, v: &Value) -> bool {
        self.send_with(plan, out, event, 256, |b| {
            // Into a Vec, a Value cannot fail to serialize.
            let _ = serde_json::to_writer(b, v);
        })
        .await
    }

    async fn send_with(
        &mut self,
        plan: &Plan,
        out: &mut Out,
        event: Option<&str>,
        room: usize,
        data: impl FnOnce(&mut Vec<u8>),
    ) -> bool {
        let mut bytes = Vec::with_capacity(room + 24);
        if let Some(e) = event {
            bytes.extend_from_slice(format!("event: {e}\n").as_bytes());
        }
        bytes.extend_from_slice(b"data: ");
        let start = bytes.len();
        data(&mut bytes);
        let end = bytes.len();
        bytes.extend_from_slice(b"\n\n");
        self.shared.raw(
            plan.info.request_id.as_deref(),
            Some(self.seq),
            event,
            &bytes[start..end],
            200,
        );
        self.seq += 1;
        out.send(Bytes::from(bytes)).await
    }

    /// Sends a response object (with its `event:` name, if any), then its copies for the other
    /// choices when `n > 1`; the first object of a response carries the echoed credentials
    /// (`echo_auth`), each Responses event its `sequence_number`.
    async fn object(&mut self, plan: &Plan, out: &mut Out, event: Option<&str>, v: &Value) -> bool {
        let mut v = std::borrow::Cow::Borrowed(v);
        if let (0, Some(e)) = (self.seq, &plan.info.echo) {
            v.to_mut()["echo"] = json!(e);
        }
        if plan.wire == Wire::Responses {
            v.to_mut()["sequence_number"] = json!(self.seq);
        }
        if !self.send_value(plan, out, event, &v).await {
            return false;
        }
        for k in 1..plan.n {
            if let Some(copy) = Plan::for_choice(&v, k) {
                if !self.send_value(plan, out, None, &copy).await {
                    return false;
                }
            }
        }
        true
    }
}

async fn stream_body(shared: Arc<Shared>, plan: Plan, out: &mut Out) {
    let cfg = &shared.cfg;
    let mut em = Emitter {
        shared: &shared,
        seq: 0,
    };
    for (name, v) in plan.wire_head() {
        if !em.object(&plan, out, name, &v).await {
            return;
        }
    }
    let mut open = Open::default();
    if !plan.ttft.is_zero() {
        tokio::time::sleep(plan.ttft).await;
    }
    let n_chunks = plan.chunks.len();
    let reset_at = n_chunks / 2;
    let cut = plan.cut();
    let mut first_token_ns = None;
    let mut huge_sent = false;
    let mut through = 0;
    for (i, chunk) in plan.chunks.iter().enumerate() {
        if i > 0 && !cfg.itl.is_zero() {
            tokio::time::sleep(cfg.itl).await;
        }
        if plan.fault == Fault::Reset && i == reset_at.max(1).min(n_chunks) && i > 0 {
            shared.log(&plan, true, first_token_ns);
            out.reset().await;
            return;
        }
        if i == cut && matches!(plan.fault, Fault::StreamError | Fault::Truncated) {
            break;
        }
        if !chunk.reasoning && !huge_sent && cfg.huge_event_bytes > 0 {
            huge_sent = true;
            let huge = "x".repeat(cfg.huge_event_bytes);
            for (name, v) in plan.wire_token(&mut open, false, &huge, false, through) {
                if !em.object(&plan, out, name, &v).await {
                    return;
                }
            }
        }
        // Unless the object is edited on its way (echoed credentials on the first, copies for
        // other choices), a plain token's data is written without a `Value`.
        let plain = (em.seq > 0 || plan.info.echo.is_none()) && plan.n == 1;
        let data = plain
            .then(|| plan.plain_token_data(chunk.reasoning, &chunk.text))
            .flatten();
        let events = match data {
            Some(_) => Vec::new(),
            None => plan.wire_token(
                &mut open,
                chunk.reasoning,
                &chunk.text,
                i + 1 == n_chunks,
                chunk.tokens_through,
            ),
        };
        through = chunk.tokens_through;
        if first_token_ns.is_none() {
            first_token_ns = Some(unix_ns());
        }
        if let Some(d) = data {
            if !em.send(&plan, out, None, &d).await {
                return;
            }
        }
        for (name, v) in events {
            if !em.object(&plan, out, name, &v).await {
                return;
            }
        }
        if i == 0 {
            match plan.fault {
                Fault::Malformed => {
                    let bad = malformed_event(cfg.malformed_utf8);
                    let data = bad
                        .strip_prefix(b"data: ")
                        .and_then(|d| d.strip_suffix(b"\n\n"))
                        .unwrap_or(&bad);
                    if !em.send(&plan, out, None, data).await {
                        return;
                    }
                }
                Fault::Stall => {
                    shared.log(&plan, true, first_token_ns);
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
        shared.log(&plan, true, first_token_ns);
        out.reset().await;
        return;
    }
    match plan.fault {
        Fault::StreamError => {
            // The error object, then (vLLM, SGLang) `[DONE]`; the named `event: error` style
            // ends the stream with the event itself.
            let (name, v) = plan.stream_error();
            if !em.object(&plan, out, name, &v).await {
                return;
            }
            if name.is_none() {
                let _ = em.send(&plan, out, None, b"[DONE]").await;
            }
        }
        Fault::Truncated => {}
        _ => {
            for (name, v) in plan.wire_tail(&open) {
                if !em.object(&plan, out, name, &v).await {
                    return;
                }
            }
            // Responses and Messages end with their own last event.
            if plan.wire == Wire::Openai {
                let _ = em.send(&plan, out, None, b"[DONE]").await;
            }
        }
    }
    out.finish().await;
    shared.log(&plan, true, first_token_ns);
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

    /// The plain path writes exactly the bytes the `Value` path does, escapes included.
    #[test]
    fn a_plain_chat_token_is_written_as_its_value_would_be() {
        let cfg = SimConfig::default();
        let body = json!({"model": "m \"q\" \u{e9}", "messages": [{"role": "user", "content": "hi"}]});
        let plan = Plan::new(&cfg, true, Wire::Openai, &body, true);
        for reasoning in [false, true] {
            for text in ["", "violet ", "a\"b\\c\n\u{1}\u{e9}\u{1f642}"] {
                let plain = plan.plain_token_data(reasoning, text).expect("an OpenAI chat token");
                let value = plan.token_event(reasoning, text, false, 1).to_string();
                assert_eq!(String::from_utf8_lossy(&plain), value);
            }
        }
        let completions = Plan::new(&cfg, false, Wire::Openai, &json!({"prompt": "hi"}), true);
        assert!(completions.plain_token_data(false, "x").is_none());
    }

    #[test]
    fn fault_shares_follow_the_rates() {
        let cfg = FaultConfig {
            error_rate: 0.1,
            reset_rate: 0.2,
            malformed_rate: 0.05,
            stall_rate: 0.15,
            stream_error_rate: 0.0,
            truncate_rate: 0.0,
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
