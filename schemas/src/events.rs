//! The `events` table: one row per timing event and per received server-sent event.
//!
//! Every SSE event is a row, including role-only, empty, usage-only and `[DONE]` events,
//! because metric definitions differ exactly on those (see `docs/metrics.md`). Each request
//! has exactly one terminal row (`done`, `error` or `cancelled`). The extracted columns are
//! for fast analysis; `raw` keeps what the server said, so nothing is lost to extraction.

use std::sync::{Arc, OnceLock};

use arrow_schema::{DataType, Field, Schema, SchemaRef};

/// Table name, as written in segment metadata and used by `analyze sql`.
pub const TABLE: &str = "events";

/// `u64`, never null: the request this event belongs to (`requests.request_id`).
pub const REQUEST_ID: &str = "request_id";
/// `utf8`, never null: one of [`crate::EventKind`]'s spellings.
pub const KIND: &str = "kind";
/// `i64` nanoseconds since run start on the monotonic clock, never null. Wall time is
/// `manifest.clock_anchor_unix_ns + t_ns`.
pub const T_NS: &str = "t_ns";
/// `u32`: index of the SSE event within its request, from 0; null for non-`sse` rows.
pub const SEQ: &str = "seq";
/// `u32` bytes: size of the raw SSE event (`data:` payloads and framing), of the response
/// body for non-streaming responses, of the request body for `sent`; null otherwise.
pub const BYTES: &str = "bytes";
/// `utf8`: `choices[0].delta.content` (chat) or `choices[0].text` (completions); null when
/// the event had no such field or it was JSON null, `""` when the server sent an empty string.
pub const CONTENT: &str = "content";
/// `utf8`: `delta.reasoning_content` or `delta.reasoning`; null when absent.
pub const REASONING: &str = "reasoning";
/// `utf8`: `delta.tool_calls` as raw JSON text; null when absent.
pub const TOOL_CALLS_JSON: &str = "tool_calls_json";
/// `utf8`: `delta.role`; null when absent.
pub const ROLE: &str = "role";
/// `utf8`: `choices[0].finish_reason`; null when absent or null.
pub const FINISH_REASON: &str = "finish_reason";
/// `u32` tokens: `usage.prompt_tokens` as the server sent it; null when absent.
pub const USAGE_PROMPT_TOKENS: &str = "usage_prompt_tokens";
/// `u32` tokens: `usage.completion_tokens` as the server sent it; null when absent.
pub const USAGE_COMPLETION_TOKENS: &str = "usage_completion_tokens";
/// `u32` tokens: `usage.completion_tokens_details.reasoning_tokens`; null when absent.
pub const USAGE_REASONING_TOKENS: &str = "usage_reasoning_tokens";
/// `bool`: true only for the `data: [DONE]` event; null on every other row.
pub const DONE_MARKER: &str = "done_marker";
/// `u16`: HTTP status on `headers` rows and on `error` rows of kind `http_status`; else null.
pub const HTTP_STATUS: &str = "http_status";
/// `utf8`: one of [`crate::ErrorKind`]'s spellings on `error` rows, on `cancelled` rows, and on
/// `sse` rows whose data could not be parsed (`protocol`); null otherwise.
pub const ERROR_KIND: &str = "error_kind";
/// `utf8`: human-readable detail for `error_kind` (an error body is cut to 4 KiB); else null.
pub const ERROR_MESSAGE: &str = "error_message";
/// `u32`: `choices[k].index` of the choice whose fields this row's delta columns hold (the one
/// with index 0 when the event carries several); null when the event had no choice. With
/// `n > 1` a server streams each choice's chunks separately: analysis reads index 0 only.
/// Added in version 3.
pub const CHOICE_INDEX: &str = "choice_index";
/// `utf8`: the SSE `event:` field of this event (e.g. `error`); null when it had none.
/// Added in version 3.
pub const SSE_EVENT: &str = "sse_event";
/// `utf8`: exactly what the server sent, as text: an `sse` row's `data` (multi-line data
/// joined with `\n`, as the SSE spec says), a non-streamed body whole, an HTTP error body on its
/// `error` row (up to 1 MiB); per `--raw`, and with known secrets replaced by `<redacted>`.
/// Added in version 3.
pub const RAW: &str = "raw";
/// `u32` tokens: `usage.prompt_tokens_details.cached_tokens` (prefix-cache hits), or
/// llama.cpp's `timings.cache_n`; null when absent. Added in version 3.
pub const USAGE_CACHED_TOKENS: &str = "usage_cached_tokens";
/// `f64` ms: llama.cpp's `timings.prompt_ms` (server-side prefill time). Added in version 3.
pub const TIMINGS_PROMPT_MS: &str = "timings_prompt_ms";
/// `f64` ms: llama.cpp's `timings.predicted_ms` (server-side decode time). Added in version 3.
pub const TIMINGS_PREDICTED_MS: &str = "timings_predicted_ms";
/// `u32` tokens: llama.cpp's `timings.prompt_n` (prompt tokens processed, cache hits excluded).
/// Added in version 3.
pub const TIMINGS_PROMPT_N: &str = "timings_prompt_n";
/// `u32` tokens: llama.cpp's `timings.predicted_n`. Added in version 3.
pub const TIMINGS_PREDICTED_N: &str = "timings_predicted_n";
/// `utf8`: on `headers` rows, the response headers as one JSON object (lower-case names;
/// a repeated header's values joined with `, `), credentials redacted. Added in version 3.
pub const RESPONSE_HEADERS_JSON: &str = "response_headers_json";

/// Every column name, in schema order.
pub const COLUMNS: &[&str] = &[
    REQUEST_ID,
    KIND,
    T_NS,
    SEQ,
    BYTES,
    CONTENT,
    REASONING,
    TOOL_CALLS_JSON,
    ROLE,
    FINISH_REASON,
    USAGE_PROMPT_TOKENS,
    USAGE_COMPLETION_TOKENS,
    USAGE_REASONING_TOKENS,
    DONE_MARKER,
    HTTP_STATUS,
    ERROR_KIND,
    ERROR_MESSAGE,
    CHOICE_INDEX,
    SSE_EVENT,
    RAW,
    USAGE_CACHED_TOKENS,
    TIMINGS_PROMPT_MS,
    TIMINGS_PREDICTED_MS,
    TIMINGS_PROMPT_N,
    TIMINGS_PREDICTED_N,
    RESPONSE_HEADERS_JSON,
];

/// The Arrow schema of the `events` table (without file metadata).
pub fn schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            Arc::new(Schema::new(vec![
                Field::new(REQUEST_ID, DataType::UInt64, false),
                Field::new(KIND, DataType::Utf8, false),
                Field::new(T_NS, DataType::Int64, false),
                Field::new(SEQ, DataType::UInt32, true),
                Field::new(BYTES, DataType::UInt32, true),
                Field::new(CONTENT, DataType::Utf8, true),
                Field::new(REASONING, DataType::Utf8, true),
                Field::new(TOOL_CALLS_JSON, DataType::Utf8, true),
                Field::new(ROLE, DataType::Utf8, true),
                Field::new(FINISH_REASON, DataType::Utf8, true),
                Field::new(USAGE_PROMPT_TOKENS, DataType::UInt32, true),
                Field::new(USAGE_COMPLETION_TOKENS, DataType::UInt32, true),
                Field::new(USAGE_REASONING_TOKENS, DataType::UInt32, true),
                Field::new(DONE_MARKER, DataType::Boolean, true),
                Field::new(HTTP_STATUS, DataType::UInt16, true),
                Field::new(ERROR_KIND, DataType::Utf8, true),
                Field::new(ERROR_MESSAGE, DataType::Utf8, true),
                Field::new(CHOICE_INDEX, DataType::UInt32, true),
                Field::new(SSE_EVENT, DataType::Utf8, true),
                Field::new(RAW, DataType::Utf8, true),
                Field::new(USAGE_CACHED_TOKENS, DataType::UInt32, true),
                Field::new(TIMINGS_PROMPT_MS, DataType::Float64, true),
                Field::new(TIMINGS_PREDICTED_MS, DataType::Float64, true),
                Field::new(TIMINGS_PROMPT_N, DataType::UInt32, true),
                Field::new(TIMINGS_PREDICTED_N, DataType::UInt32, true),
                Field::new(RESPONSE_HEADERS_JSON, DataType::Utf8, true),
            ]))
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_match_schema_order() {
        let s = schema();
        let names: Vec<&str> = s.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, COLUMNS);
    }
}
