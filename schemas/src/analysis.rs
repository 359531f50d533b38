//! What `analyze` writes into a run folder (and into a sweep folder): the layout, the file
//! names, and the tables' columns. `docs/schema.md` ("Analysis folders") is the prose.
//!
//! ```text
//! <run>/analysis/records.parquet            per-request table (texts as hashes), a cache
//! <run>/analysis/texts.parquet              each distinct output text by its hash, a cache
//! <run>/analysis/<tokenizer-id>/tokens.parquet    token counts per text, a cache
//! <run>/analysis/<tokenizer-id>/icl.parquet       every inter-chunk gap
//! <run>/analysis/<tokenizer-id>/metrics.parquet   one row per request ([`metrics`])
//! <run>/analysis/<tokenizer-id>/summary.{json,csv,md}
//! <sweep-out>/sweep.{json,csv,parquet}
//! ```

use std::path::{Path, PathBuf};

/// Folder of a run holding every analysis.
pub const ANALYSIS_DIR: &str = "analysis";
/// The reassembled per-request table shared by every tokenizer's analysis (a cache).
pub const RECORDS_FILE: &str = "records.parquet";
/// Every distinct output text by its key, so another tokenizer's analysis needs no events
/// (a cache).
pub const TEXTS_FILE: &str = "texts.parquet";
/// Token counts per distinct text (a cache of one tokenizer's analysis).
pub const TOKENS_FILE: &str = "tokens.parquet";
/// Inter-chunk gaps ([`icl`]).
pub const ICL_FILE: &str = "icl.parquet";
/// Per-token inter-token latencies under the chosen `--itl` definition (same columns as
/// [`ICL_FILE`]), written only with a per-token definition.
pub const ITL_FILE: &str = "itl.parquet";
/// The run second by second ([`series`]).
pub const SERIES_FILE: &str = "series.parquet";
/// Per-request metrics ([`metrics`]).
pub const METRICS_FILE: &str = "metrics.parquet";
/// The run summary ([`crate::summary::Summary`]) as JSON.
pub const SUMMARY_JSON: &str = "summary.json";
/// The run summary flattened to `key,value` CSV.
pub const SUMMARY_CSV: &str = "summary.csv";
/// The run summary as Markdown.
pub const SUMMARY_MD: &str = "summary.md";
/// A sweep ([`crate::sweep::Sweep`]) as JSON.
pub const SWEEP_JSON: &str = "sweep.json";
/// A sweep's rows as CSV.
pub const SWEEP_CSV: &str = "sweep.csv";
/// A sweep's rows as Parquet.
pub const SWEEP_PARQUET: &str = "sweep.parquet";

/// `<run>/analysis`.
pub fn analysis_root(run: &Path) -> PathBuf {
    run.join(ANALYSIS_DIR)
}

/// `<run>/analysis/<tokenizer_id>`: one tokenizer's analysis.
pub fn analysis_dir(run: &Path, tokenizer_id: &str) -> PathBuf {
    analysis_root(run).join(tokenizer_id)
}

/// `<run>/analysis/records.parquet`.
pub fn records_path(run: &Path) -> PathBuf {
    analysis_root(run).join(RECORDS_FILE)
}

/// `<run>/analysis/texts.parquet`.
pub fn texts_path(run: &Path) -> PathBuf {
    analysis_root(run).join(TEXTS_FILE)
}

/// The analysis folder to read for `run`: the one of `tokenizer_id`, else the one whose
/// `metrics.parquet` was written last. `None` when there is none.
pub fn find_analysis(run: &Path, tokenizer_id: Option<&str>) -> Option<PathBuf> {
    if let Some(id) = tokenizer_id {
        let dir = analysis_dir(run, id);
        return dir.join(METRICS_FILE).exists().then_some(dir);
    }
    std::fs::read_dir(analysis_root(run))
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|d| d.join(METRICS_FILE).exists())
        .max_by_key(|d| std::fs::metadata(d.join(METRICS_FILE)).and_then(|m| m.modified()).ok())
}

/// Columns of `metrics.parquet`: one row per request, as `docs/metrics.md` defines them.
pub mod metrics {
    use std::sync::Arc;

    use arrow_schema::{DataType, Field, Schema, SchemaRef};

    /// `u64`: the request.
    pub const REQUEST_ID: &str = "request_id";
    /// `utf8`: [`crate::Phase`]; null when the request row was lost (capture killed).
    pub const PHASE: &str = "phase";
    /// `bool`: terminal `done` with a 2xx status.
    pub const OK: &str = "ok";
    /// `utf8`: terminal [`crate::ErrorKind`] (`lost`: no terminal event); null when ok.
    pub const ERROR_KIND: &str = "error_kind";
    /// `i64` ns.
    pub const TTFT_NS: &str = "ttft_ns";
    /// `i64` ns.
    pub const E2E_NS: &str = "e2e_ns";
    /// `i64` ns.
    pub const TPOT_NS: &str = "tpot_ns";
    /// `u32` tokens.
    pub const ISL_TOKENS: &str = "isl_tokens";
    /// `u32` tokens.
    pub const OSL_TOKENS: &str = "osl_tokens";
    /// `u32` tokens.
    pub const TOKENIZER_OUTPUT_TOKENS: &str = "tokenizer_output_tokens";
    /// `u32` tokens.
    pub const REASONING_TOKENS: &str = "reasoning_tokens";
    /// `u32` tokens.
    pub const TOKENIZER_INPUT_TOKENS: &str = "tokenizer_input_tokens";
    /// `u32` tokens.
    pub const SERVER_PROMPT_TOKENS: &str = "server_prompt_tokens";
    /// `u32` tokens.
    pub const SERVER_COMPLETION_TOKENS: &str = "server_completion_tokens";
    /// `i64` ns.
    pub const CLIENT_LAG_NS: &str = "client_lag_ns";
    /// `i64` ns since run start.
    pub const SENT_NS: &str = "sent_ns";
    /// `i64` ns since run start.
    pub const FIRST_TOKEN_NS: &str = "first_token_ns";
    /// `i64` ns since run start.
    pub const LAST_TOKEN_NS: &str = "last_token_ns";
    /// `i64` ns since run start.
    pub const END_NS: &str = "end_ns";
    /// `u32`.
    pub const OUTPUT_EVENTS: &str = "output_events";
    /// `i64` ns since run start.
    pub const CONNECT_NS: &str = "connect_ns";
    /// `u32`.
    pub const RETRIES: &str = "retries";
    /// `u32` tokens: the `max_tokens` sent.
    pub const MAX_TOKENS: &str = "max_tokens";
    /// `u32` tokens: the input length the dataset row was generated for (`isl_tokens`).
    pub const PLANNED_INPUT_TOKENS: &str = "planned_input_tokens";
    /// `u32`: the dataset row's shared-prefix group.
    pub const PREFIX_GROUP: &str = "prefix_group";
    /// `utf8`: the multi-turn session the request belongs to.
    pub const SESSION_ID: &str = "session_id";
    /// `u32`: 0-based turn within the session.
    pub const TURN: &str = "turn";
    /// `u32` tokens: prompt tokens the server served from its prefix cache
    /// (`usage.prompt_tokens_details.cached_tokens`, or llama.cpp's `timings.cache_n`).
    pub const CACHED_PROMPT_TOKENS: &str = "cached_prompt_tokens";
    /// `f64`: `cached_prompt_tokens / usage.prompt_tokens`, the request's prefix-cache hit share.
    pub const PREFIX_CACHE_SHARE: &str = "prefix_cache_share";
    /// `f64` ms: the server's own prefill time (llama.cpp `timings.prompt_ms`).
    pub const SERVER_PREFILL_MS: &str = "server_prefill_ms";
    /// `f64` ms: the server's own decode time (llama.cpp `timings.predicted_ms`).
    pub const SERVER_DECODE_MS: &str = "server_decode_ms";
    /// `i64` ns: from the start to the event that delivered the second output token's last
    /// byte (with a per-token `--itl`).
    pub const TIME_TO_SECOND_TOKEN_NS: &str = "time_to_second_token_ns";
    /// `f64`: output tokens per output event that completed at least one token (with a
    /// per-token `--itl`): the speculative-decoding acceptance proxy.
    pub const TOKENS_PER_CHUNK: &str = "tokens_per_chunk";
    /// `f64`: `isl_tokens` over TTFT in seconds.
    pub const PREFILL_TOKENS_PER_S: &str = "prefill_tokens_per_s";
    /// `i64` ns: from the start to the first event with answer content, for a request that
    /// reasoned first (null otherwise): when the answer a reasoning model's user waits for
    /// begins.
    pub const TIME_TO_FIRST_ANSWER_NS: &str = "time_to_first_answer_ns";
    /// `u32`: texts embedded (`embeddings`) or documents scored (`rerank`) by the request;
    /// null for the generating APIs.
    pub const ITEMS: &str = "items";

    /// The Arrow schema of `metrics.parquet`.
    pub fn schema() -> SchemaRef {
        let i = |n: &str| Field::new(n, DataType::Int64, true);
        let u = |n: &str| Field::new(n, DataType::UInt32, true);
        Arc::new(Schema::new(vec![
            Field::new(REQUEST_ID, DataType::UInt64, false),
            Field::new(PHASE, DataType::Utf8, true),
            Field::new(OK, DataType::Boolean, false),
            Field::new(ERROR_KIND, DataType::Utf8, true),
            i(TTFT_NS),
            i(E2E_NS),
            i(TPOT_NS),
            u(ISL_TOKENS),
            u(OSL_TOKENS),
            Field::new(TOKENIZER_OUTPUT_TOKENS, DataType::UInt32, false),
            Field::new(REASONING_TOKENS, DataType::UInt32, false),
            u(TOKENIZER_INPUT_TOKENS),
            u(SERVER_PROMPT_TOKENS),
            u(SERVER_COMPLETION_TOKENS),
            i(CLIENT_LAG_NS),
            i(SENT_NS),
            i(FIRST_TOKEN_NS),
            i(LAST_TOKEN_NS),
            i(END_NS),
            Field::new(OUTPUT_EVENTS, DataType::UInt32, false),
            i(CONNECT_NS),
            Field::new(RETRIES, DataType::UInt32, false),
            u(MAX_TOKENS),
            u(PLANNED_INPUT_TOKENS),
            u(PREFIX_GROUP),
            Field::new(SESSION_ID, DataType::Utf8, true),
            u(TURN),
            u(CACHED_PROMPT_TOKENS),
            Field::new(PREFIX_CACHE_SHARE, DataType::Float64, true),
            Field::new(SERVER_PREFILL_MS, DataType::Float64, true),
            Field::new(SERVER_DECODE_MS, DataType::Float64, true),
            i(TIME_TO_SECOND_TOKEN_NS),
            Field::new(TOKENS_PER_CHUNK, DataType::Float64, true),
            Field::new(PREFILL_TOKENS_PER_S, DataType::Float64, true),
            i(TIME_TO_FIRST_ANSWER_NS),
            u(ITEMS),
        ]))
    }
}

/// Columns of `series.parquet`: the run second by second (measure-phase requests).
pub mod series {
    use std::sync::Arc;

    use arrow_schema::{DataType, Field, Schema, SchemaRef};

    /// `f64` s: the bin's start, from the window's start (the first measured `sent`).
    pub const T_S: &str = "t_s";
    /// `u32`: successful requests whose terminal event fell in the bin.
    pub const REQUESTS_DONE: &str = "requests_done";
    /// `u32`: failed requests whose terminal event fell in the bin.
    pub const ERRORS: &str = "errors";
    /// `f64`: output tokens of the requests done in the bin, per second.
    pub const OUTPUT_TOKENS_PER_S: &str = "output_tokens_per_s";
    /// `u32`: requests in flight at the bin's middle (sent, not yet ended).
    pub const IN_FLIGHT: &str = "in_flight";
    /// `f64` ms: mean TTFT of the successful requests whose first output fell in the bin.
    pub const TTFT_MS_MEAN: &str = "ttft_ms_mean";

    /// The Arrow schema of `series.parquet`.
    pub fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new(T_S, DataType::Float64, false),
            Field::new(REQUESTS_DONE, DataType::UInt32, false),
            Field::new(ERRORS, DataType::UInt32, false),
            Field::new(OUTPUT_TOKENS_PER_S, DataType::Float64, false),
            Field::new(IN_FLIGHT, DataType::UInt32, false),
            Field::new(TTFT_MS_MEAN, DataType::Float64, true),
        ]))
    }
}

/// Columns of `icl.parquet`: every gap between consecutive output events of a request.
pub mod icl {
    use std::sync::Arc;

    use arrow_schema::{DataType, Field, Schema, SchemaRef};

    /// `u64`: the request.
    pub const REQUEST_ID: &str = "request_id";
    /// `i64` ns: one gap.
    pub const GAP_NS: &str = "gap_ns";

    /// The Arrow schema of `icl.parquet`.
    pub fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new(REQUEST_ID, DataType::UInt64, false),
            Field::new(GAP_NS, DataType::Int64, false),
        ]))
    }
}

/// Columns of `records.parquet`: the reassembled per-request table every analysis of a run
/// shares (a cache: texts are kept as their hashes, the keys of [`tokens`]).
pub mod records {
    use std::sync::Arc;

    use arrow_schema::{DataType, Field, Schema, SchemaRef};

    /// `request_id`.
    pub const REQUEST_ID: &str = "request_id";
    /// `phase`.
    pub const PHASE: &str = "phase";
    /// `api`.
    pub const API: &str = "api";
    /// `scheduled_ns`.
    pub const SCHEDULED_NS: &str = "scheduled_ns";
    /// `input_kind`.
    pub const INPUT_KIND: &str = "input_kind";
    /// `input_hash`.
    pub const INPUT_HASH: &str = "input_hash";
    /// `sent_ns`.
    pub const SENT_NS: &str = "sent_ns";
    /// `headers_ns`.
    pub const HEADERS_NS: &str = "headers_ns";
    /// `http_status`.
    pub const HTTP_STATUS: &str = "http_status";
    /// `terminal`.
    pub const TERMINAL: &str = "terminal";
    /// `end_ns`.
    pub const END_NS: &str = "end_ns";
    /// `error_kind`.
    pub const ERROR_KIND: &str = "error_kind";
    /// `content_hash`.
    pub const CONTENT_HASH: &str = "content_hash";
    /// `reasoning_hash`.
    pub const REASONING_HASH: &str = "reasoning_hash";
    /// `tool_args_hash`.
    pub const TOOL_ARGS_HASH: &str = "tool_args_hash";
    /// `output_times_ns`.
    pub const OUTPUT_TIMES_NS: &str = "output_times_ns";
    /// `first_choice_ns`.
    pub const FIRST_CHOICE_NS: &str = "first_choice_ns";
    /// `first_content_ns`.
    pub const FIRST_CONTENT_NS: &str = "first_content_ns";
    /// `usage_prompt_tokens`.
    pub const USAGE_PROMPT_TOKENS: &str = "usage_prompt_tokens";
    /// `usage_completion_tokens`.
    pub const USAGE_COMPLETION_TOKENS: &str = "usage_completion_tokens";
    /// `protocol_events`.
    pub const PROTOCOL_EVENTS: &str = "protocol_events";
    /// `sse_events`.
    pub const SSE_EVENTS: &str = "sse_events";
    /// `connect_ns`.
    pub const CONNECT_NS: &str = "connect_ns";
    /// `retries`.
    pub const RETRIES: &str = "retries";
    /// `max_tokens`.
    pub const MAX_TOKENS: &str = "max_tokens";
    /// `planned_input_tokens`.
    pub const PLANNED_INPUT_TOKENS: &str = "planned_input_tokens";
    /// `prefix_group`.
    pub const PREFIX_GROUP: &str = "prefix_group";
    /// `session_id`.
    pub const SESSION_ID: &str = "session_id";
    /// `turn`.
    pub const TURN: &str = "turn";
    /// `usage_cached_tokens`.
    pub const USAGE_CACHED_TOKENS: &str = "usage_cached_tokens";
    /// `server_prefill_ms`.
    pub const SERVER_PREFILL_MS: &str = "server_prefill_ms";
    /// `server_decode_ms`.
    pub const SERVER_DECODE_MS: &str = "server_decode_ms";
    /// `i64` ns: from the start to the event that delivered the second output token's last
    /// byte (with a per-token `--itl`).
    pub const TIME_TO_SECOND_TOKEN_NS: &str = "time_to_second_token_ns";
    /// `f64`: output tokens per output event that completed at least one token (with a
    /// per-token `--itl`): the speculative-decoding acceptance proxy.
    pub const TOKENS_PER_CHUNK: &str = "tokens_per_chunk";
    /// `f64`: `isl_tokens` over TTFT in seconds.
    pub const PREFILL_TOKENS_PER_S: &str = "prefill_tokens_per_s";

    /// The Arrow schema of `records.parquet` (`docs/schema.md` describes each column).
    pub fn schema() -> SchemaRef {
        let opt = |n: &str, t: DataType| Field::new(n, t, true);
        let req = |n: &str, t: DataType| Field::new(n, t, false);
        Arc::new(Schema::new(vec![
            req(REQUEST_ID, DataType::UInt64),
            opt(PHASE, DataType::Utf8),
            opt(API, DataType::Utf8),
            opt(SCHEDULED_NS, DataType::Int64),
            opt(INPUT_KIND, DataType::Utf8),
            opt(INPUT_HASH, DataType::FixedSizeBinary(16)),
            opt(SENT_NS, DataType::Int64),
            opt(HEADERS_NS, DataType::Int64),
            opt(HTTP_STATUS, DataType::UInt16),
            opt(TERMINAL, DataType::Utf8),
            opt(END_NS, DataType::Int64),
            opt(ERROR_KIND, DataType::Utf8),
            req(CONTENT_HASH, DataType::FixedSizeBinary(16)),
            req(REASONING_HASH, DataType::FixedSizeBinary(16)),
            req(TOOL_ARGS_HASH, DataType::FixedSizeBinary(16)),
            req(
                OUTPUT_TIMES_NS,
                DataType::List(Arc::new(Field::new("item", DataType::Int64, true))),
            ),
            opt(FIRST_CHOICE_NS, DataType::Int64),
            opt(FIRST_CONTENT_NS, DataType::Int64),
            opt(USAGE_PROMPT_TOKENS, DataType::UInt32),
            opt(USAGE_COMPLETION_TOKENS, DataType::UInt32),
            req(PROTOCOL_EVENTS, DataType::UInt32),
            req(SSE_EVENTS, DataType::UInt32),
            opt(CONNECT_NS, DataType::Int64),
            req(RETRIES, DataType::UInt32),
            opt(MAX_TOKENS, DataType::UInt32),
            opt(PLANNED_INPUT_TOKENS, DataType::UInt32),
            opt(PREFIX_GROUP, DataType::UInt32),
            opt(SESSION_ID, DataType::Utf8),
            opt(TURN, DataType::UInt32),
            opt(USAGE_CACHED_TOKENS, DataType::UInt32),
            opt(SERVER_PREFILL_MS, DataType::Float64),
            opt(SERVER_DECODE_MS, DataType::Float64),
        ]))
    }
}

/// Columns of `texts.parquet`: each distinct output text of a run once (a cache).
pub mod texts {
    use std::sync::Arc;

    use arrow_schema::{DataType, Field, Schema, SchemaRef};

    /// `fixed_size_binary(16)`: the text's key, as in `tokens.parquet`.
    pub const TEXT_HASH: &str = "text_hash";
    /// `utf8`: the text.
    pub const TEXT: &str = "text";

    /// The Arrow schema of `texts.parquet`.
    pub fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new(TEXT_HASH, DataType::FixedSizeBinary(16), false),
            Field::new(TEXT, DataType::Utf8, false),
        ]))
    }
}

/// Columns of `tokens.parquet`: one tokenizer's token count of each distinct text (a cache).
pub mod tokens {
    use std::sync::Arc;

    use arrow_schema::{DataType, Field, Schema, SchemaRef};

    /// `fixed_size_binary(16)`: the text's key (XXH3-128, little-endian; see `docs/schema.md`).
    pub const TEXT_HASH: &str = "text_hash";
    /// `bool`: counted with the tokenizer's added special tokens (completions prompts).
    pub const ADD_SPECIAL_TOKENS: &str = "add_special_tokens";
    /// `u32`: the count.
    pub const TOKENS: &str = "tokens";

    /// The Arrow schema of `tokens.parquet`.
    pub fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new(TEXT_HASH, DataType::FixedSizeBinary(16), false),
            Field::new(ADD_SPECIAL_TOKENS, DataType::Boolean, false),
            Field::new(TOKENS, DataType::UInt32, false),
        ]))
    }
}
