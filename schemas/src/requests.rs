//! The `requests` table: one row per request sent, describing what was asked.
//!
//! A row is written when the request is handed to a connection, so an interrupted run has a
//! `requests` row for every request that has events.

use std::sync::{Arc, OnceLock};

use arrow_schema::{DataType, Field, Schema, SchemaRef};

/// Table name, as written in segment metadata and used by `analyze sql`.
pub const TABLE: &str = "requests";

/// `u64`, never null: unique within the run, in dispatch order from 0.
pub const REQUEST_ID: &str = "request_id";
/// `utf8`, never null: [`crate::Phase`] (`warmup` or `measure`).
pub const PHASE: &str = "phase";
/// `u64`, never null: 0-based row of the dataset the prompt came from (it cycles).
pub const DATASET_ROW: &str = "dataset_row";
/// `utf8`, never null: [`crate::Api`] (`chat`, `completions`, `responses`, `messages`,
/// `embeddings`, `rerank`).
pub const API: &str = "api";
/// `i64` nanoseconds since run start, never null: when the schedule intended the request to be
/// sent. `sent.t_ns - scheduled_ns` is client lag (open loop); in closed loop it is the moment
/// a worker became free for it.
pub const SCHEDULED_NS: &str = "scheduled_ns";
/// `utf8`: the prompt of a `completions` request; null for `chat`.
pub const PROMPT: &str = "prompt";
/// `utf8`: the `messages` array of a `chat` request as JSON text; null for `completions`.
pub const MESSAGES_JSON: &str = "messages_json";
/// `u32` tokens: the `max_tokens` sent (dataset row, else `--max-tokens`); null if none sent.
pub const MAX_TOKENS: &str = "max_tokens";
/// `utf8`, never null: the request body as JSON text without `prompt` / `messages`.
pub const PARAMS_JSON: &str = "params_json";
/// `u32` bytes, never null: size of the request body sent.
pub const REQUEST_BYTES: &str = "request_bytes";
/// `u32`: the client connection (worker) that sent it; null if it was never sent.
pub const CONNECTION_ID: &str = "connection_id";
/// `u32` tokens: the dataset row's `isl_tokens`, the input length it was generated for
/// (`analyze dataset`); null when the row has none. Added in version 2; older runs read null.
pub const PLANNED_INPUT_TOKENS: &str = "planned_input_tokens";
/// `u32`: the dataset row's `prefix_group`; null when the row has none.
pub const PREFIX_GROUP: &str = "prefix_group";
/// `utf8`: the multi-turn session the request is a turn of (the dataset row's `session_id`);
/// null outside sessions. Added within version 2; older runs read null.
pub const SESSION_ID: &str = "session_id";
/// `u32`: 0-based position of the request in its session (its turn index, whatever the
/// dataset numbered it); null outside sessions.
pub const TURN: &str = "turn";
/// `utf8`: the request id capture sent in its request-id header (`--request-id-header`,
/// default `x-request-id`): `<run_id>-<request_id>`; null with `--no-request-id`. Joins a run
/// with the server's logs. Added in version 3.
pub const CLIENT_REQUEST_ID: &str = "client_request_id";
/// `utf8`: the id the server gave the request: its `x-request-id` / `request-id` response
/// header, else the `id` of its first response object; null when it gave none. Added in
/// version 3.
pub const SERVER_REQUEST_ID: &str = "server_request_id";
/// `utf8`: the input of an `embeddings` request (`{"input": [texts]}`) or a `rerank` request
/// (`{"query": ..., "documents": [...]}`) as a JSON object, merged into the body as it is; null
/// for the generating APIs. Added within version 3; older runs have none.
pub const INPUT_JSON: &str = "input_json";

/// Every column name, in schema order.
pub const COLUMNS: &[&str] = &[
    REQUEST_ID,
    PHASE,
    DATASET_ROW,
    API,
    SCHEDULED_NS,
    PROMPT,
    MESSAGES_JSON,
    MAX_TOKENS,
    PARAMS_JSON,
    REQUEST_BYTES,
    CONNECTION_ID,
    PLANNED_INPUT_TOKENS,
    PREFIX_GROUP,
    SESSION_ID,
    TURN,
    CLIENT_REQUEST_ID,
    SERVER_REQUEST_ID,
    INPUT_JSON,
];

/// The Arrow schema of the `requests` table (without file metadata).
pub fn schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            Arc::new(Schema::new(vec![
                Field::new(REQUEST_ID, DataType::UInt64, false),
                Field::new(PHASE, DataType::Utf8, false),
                Field::new(DATASET_ROW, DataType::UInt64, false),
                Field::new(API, DataType::Utf8, false),
                Field::new(SCHEDULED_NS, DataType::Int64, false),
                Field::new(PROMPT, DataType::Utf8, true),
                Field::new(MESSAGES_JSON, DataType::Utf8, true),
                Field::new(MAX_TOKENS, DataType::UInt32, true),
                Field::new(PARAMS_JSON, DataType::Utf8, false),
                Field::new(REQUEST_BYTES, DataType::UInt32, false),
                Field::new(CONNECTION_ID, DataType::UInt32, true),
                Field::new(PLANNED_INPUT_TOKENS, DataType::UInt32, true),
                Field::new(PREFIX_GROUP, DataType::UInt32, true),
                Field::new(SESSION_ID, DataType::Utf8, true),
                Field::new(TURN, DataType::UInt32, true),
                Field::new(CLIENT_REQUEST_ID, DataType::Utf8, true),
                Field::new(SERVER_REQUEST_ID, DataType::Utf8, true),
                Field::new(INPUT_JSON, DataType::Utf8, true),
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
