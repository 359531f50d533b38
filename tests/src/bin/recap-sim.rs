//! `recap-sim`: a simulated OpenAI-compatible endpoint on 127.0.0.1 for tests and benchmarks.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use recap_tests::sim::{self, FaultConfig, Flavor, SimConfig, UsageTokenizer};

/// Simulated OpenAI-compatible LLM endpoint: deterministic text, scripted timing, injected faults.
#[derive(Debug, Parser)]
#[command(name = "recap-sim", version)]
struct Args {
    /// Port on 127.0.0.1 (0 = any free port); the first stdout line says which.
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Runtime worker threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Delay before the first token.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "0ms")]
    ttft: Duration,
    /// Added to --ttft for every other request running when a request arrives (latency that
    /// rises with concurrency by a known rule).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "0ms")]
    ttft_per_running: Duration,
    /// Delay between consecutive chunks.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "0ms")]
    itl: Duration,
    /// Tokens per response (default: the request's max_tokens, else 16).
    #[arg(long)]
    output_tokens: Option<u64>,
    /// Tokens per SSE chunk.
    #[arg(long, default_value_t = 1)]
    tokens_per_chunk: u64,
    /// Reasoning tokens streamed before the content (chat only).
    #[arg(long, default_value_t = 0)]
    reasoning: u64,
    /// Never send usage.
    #[arg(long)]
    no_usage: bool,
    /// Share of prompts answered with `--error-status`.
    #[arg(long, default_value_t = 0.0)]
    error_rate: f64,
    /// Status code of injected errors.
    #[arg(long, default_value_t = 500)]
    error_status: u16,
    /// Share of prompts whose response is reset mid-body.
    #[arg(long, default_value_t = 0.0)]
    reset_rate: f64,
    /// Share of prompts whose stream holds one malformed event.
    #[arg(long, default_value_t = 0.0)]
    malformed_rate: f64,
    /// Share of prompts whose response stalls until the client gives up.
    #[arg(long, default_value_t = 0.0)]
    stall_rate: f64,
    /// Share of prompts whose 200 stream reports an error half-way (`{"error": ...}`,
    /// `{"object": "error", ...}` or `event: error`, rotating by prompt), as vLLM and SGLang do.
    #[arg(long, default_value_t = 0.0)]
    stream_error_rate: f64,
    /// Share of prompts whose stream ends cleanly half-way, with no finish_reason or [DONE].
    #[arg(long, default_value_t = 0.0)]
    truncate_rate: f64,
    /// Changes which prompts draw which fault.
    #[arg(long, default_value_t = 0)]
    fault_seed: u64,
    /// Append one JSON line per request (fault, first-token wall time) to this file.
    #[arg(long)]
    log: Option<PathBuf>,
    /// Append every request body, as received, one per line, to this file.
    #[arg(long, value_name = "FILE")]
    log_bodies: Option<PathBuf>,
    /// Append every payload sent (SSE data, whole and error bodies), one JSON line each with
    /// the request's x-request-id, to this file.
    #[arg(long, value_name = "FILE")]
    log_raw: Option<PathBuf>,
    /// Share of each prompt reported as prefix-cache hits (`cached_tokens`, llama.cpp `cache_n`).
    #[arg(long, default_value_t = 0.0)]
    cache_share: f64,
    /// Echo the request's credentials (Authorization, x-api-key, URL query) back in a
    /// response header, the first response object and injected error bodies.
    #[arg(long)]
    echo_auth: bool,
    /// Serve this exposition text at `GET /metrics`, before the live series the simulator
    /// always serves there (requests running, KV-cache usage, prefix-cache counters).
    #[arg(long, value_name = "FILE")]
    metrics_file: Option<std::path::PathBuf>,
    /// Wait this long before answering `/metrics` (a scrape that times out).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "0ms")]
    metrics_delay: Duration,
    /// Compress response bodies with gzip (streams flushed per event).
    #[arg(long)]
    gzip: bool,
    /// Send `Connection: close` on every N-th response (0 = never).
    #[arg(long, default_value_t = 0)]
    close_every: u64,
    /// Send one extra content event of this many bytes ("xxx...") before the first token.
    #[arg(long, default_value_t = 0)]
    huge_event_bytes: usize,
    /// Malformed events carry invalid UTF-8 instead of invalid JSON.
    #[arg(long)]
    malformed_utf8: bool,
    /// Serve https with a freshly generated self-signed certificate.
    #[arg(long)]
    tls_self_signed: bool,
    /// With zero --ttft and --itl, send each fault-free stream whole at once (benchmarks).
    #[arg(long)]
    prerender: bool,
    /// With --prerender: send each pre-rendered event in its own chunked frame, written and
    /// flushed on its own (as servers that flush per token do), instead of the body at once.
    #[arg(long, requires = "prerender")]
    flush_each_event: bool,
    /// After every streamed (SSE) response, close the TCP connection, although every response
    /// says `Connection: keep-alive` and `Keep-Alive: timeout=5, max=100` (llama.cpp's
    /// llama-server does this). The whole body, terminating chunk included, is written first;
    /// a client that reuses the connection writes its next request into a closed socket.
    #[arg(long)]
    close_after_stream: bool,
    /// Whose chunk shapes to send (the same text in every flavor).
    #[arg(long, value_enum, default_value = "openai")]
    flavor: Flavor,
    /// Answer and count `usage` as a server running this Hugging Face tokenizer's model
    /// (`tokenizer.json` or `tokenizer.json.gz`): each output token is a word this tokenizer
    /// keeps as one token (` river`), so a response is exactly its `max_tokens` (or
    /// `--output-tokens`) tokens of it, and completion tokens are the content (+ reasoning)
    /// text's tokens; a chat prompt is rendered through the chat template of the
    /// `tokenizer_config.json` beside it (with the generation prompt), a completions prompt
    /// counted with the tokenizer's special tokens. Loaded before the `listening on` line.
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// Answer with the texts of this JSONL file (`{"text": ...}` rows) instead of generated
    /// words: the k-th response streams the k-th text in 64-byte events (for tokenization
    /// benchmarks on real prose and code).
    #[arg(long, value_name = "FILE")]
    corpus: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    for (name, p) in [
        ("error", a.error_rate),
        ("reset", a.reset_rate),
        ("malformed", a.malformed_rate),
        ("stall", a.stall_rate),
        ("stream-error", a.stream_error_rate),
        ("truncate", a.truncate_rate),
    ] {
        anyhow::ensure!((0.0..=1.0).contains(&p), "--{name}-rate must be within [0, 1], got {p}");
    }
    let tokenizer = match &a.tokenizer {
        Some(p) => Some(std::sync::Arc::new(
            UsageTokenizer::load(p).with_context(|| format!("--tokenizer {}", p.display()))?,
        )),
        None => None,
    };
    let cfg = SimConfig {
        ttft: a.ttft,
        itl: a.itl,
        output_tokens: a.output_tokens,
        tokens_per_chunk: a.tokens_per_chunk,
        reasoning: a.reasoning,
        no_usage: a.no_usage,
        faults: FaultConfig {
            error_rate: a.error_rate,
            reset_rate: a.reset_rate,
            malformed_rate: a.malformed_rate,
            stall_rate: a.stall_rate,
            stream_error_rate: a.stream_error_rate,
            truncate_rate: a.truncate_rate,
            seed: a.fault_seed,
        },
        error_status: a.error_status,
        log: a.log,
        body_log: a.log_bodies,
        gzip: a.gzip,
        close_every: a.close_every,
        huge_event_bytes: a.huge_event_bytes,
        malformed_utf8: a.malformed_utf8,
        tls_self_signed: a.tls_self_signed,
        prerender: a.prerender,
        flush_each_event: a.flush_each_event,
        ttft_per_running: a.ttft_per_running,
        close_after_stream: a.close_after_stream,
        flavor: a.flavor,
        tokenizer,
        corpus: match &a.corpus {
            Some(p) => Some(std::sync::Arc::new(
                sim::Corpus::load(p).with_context(|| format!("--corpus {}", p.display()))?,
            )),
            None => None,
        },
        cache_share: a.cache_share,
        echo_auth: a.echo_auth,
        raw_log: a.log_raw,
        metrics_file: a.metrics_file,
        metrics_delay: a.metrics_delay,
    };
    // One descriptor per client connection: take whatever the hard limit allows, so a load
    // test with thousands of connections is limited by the client, not by this process.
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(a.threads.max(1))
        .enable_all()
        .build()
        .context("starting the runtime")?;
    rt.block_on(async move {
        let (listener, addr) = sim::bind(a.port)
            .await
            .with_context(|| format!("binding 127.0.0.1:{}", a.port))?;
        {
            let mut out = std::io::stdout().lock();
            writeln!(out, "listening on {addr}")?;
            out.flush()?;
        }
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = sim::serve(listener, cfg) => r.context("serving")?,
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        Ok(())
    })
}
