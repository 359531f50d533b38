//! Per-request reassembly: the output text of each channel and the event times metrics need.
//!
//! Events are streamed from DataFusion (a projection of the `events` table, in any order) into
//! per-request accumulators, then each request's SSE rows are put in `seq` order and their
//! `content`, `reasoning` and tool-call argument pieces concatenated.

use std::collections::HashMap;

use arrow_array::cast::AsArray;
use arrow_array::types::{Int64Type, UInt16Type, UInt32Type, UInt64Type};
use arrow_array::{Array, RecordBatch};
use datafusion::prelude::SessionContext;

use crate::{Error, Result};

/// Everything about one request that the metrics are computed from.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RequestRecord {
    /// `request_id`.
    pub request_id: u64,
    /// `warmup` or `measure` (empty if the request row was lost in a crash).
    pub phase: String,
    /// `chat` or `completions`.
    pub api: String,
    /// Intended send time.
    pub scheduled_ns: Option<i64>,
    /// Completions prompt.
    pub prompt: Option<String>,
    /// Chat messages as JSON text.
    pub messages_json: Option<String>,
    /// `sent` time.
    pub sent_ns: Option<i64>,
    /// `headers` time.
    pub headers_ns: Option<i64>,
    /// HTTP status from `headers` (or the error row).
    pub http_status: Option<u16>,
    /// Terminal kind (`done`, `error`, `cancelled`); `None` if the run was killed first.
    pub terminal: Option<String>,
    /// Terminal time.
    pub end_ns: Option<i64>,
    /// Terminal `error_kind`.
    pub error_kind: Option<String>,
    /// Reassembled content.
    pub content: String,
    /// Reassembled reasoning.
    pub reasoning: String,
    /// Reassembled tool-call arguments (and function names).
    pub tool_args: String,
    /// Times of SSE events with output (non-empty content, reasoning or a tool call), in seq order.
    pub output_times_ns: Vec<i64>,
    /// Time of the first SSE event carrying a choice (vLLM's TTFT point).
    pub first_choice_ns: Option<i64>,
    /// Time of the first SSE event with non-empty content.
    pub first_content_ns: Option<i64>,
    /// Server-reported `usage.prompt_tokens` (last seen).
    pub usage_prompt_tokens: Option<u32>,
    /// Server-reported `usage.completion_tokens` (last seen).
    pub usage_completion_tokens: Option<u32>,
    /// SSE rows marked `protocol` (malformed or in-stream errors).
    pub protocol_events: u32,
    /// SSE rows.
    pub sse_events: u32,
}

struct SseRow {
    seq: u32,
    t_ns: i64,
    content: Option<String>,
    reasoning: Option<String>,
    tool_args: Option<String>,
    has_choice: bool,
}

#[derive(Default)]
struct Acc {
    rec: RequestRecord,
    sse: Vec<SseRow>,
}

fn df(e: datafusion::error::DataFusionError) -> Error {
    Error::Query(e.to_string())
}

/// Function names and argument pieces of a `tool_calls` delta, concatenated.
pub fn tool_call_text(json: &str) -> String {
    let Ok(serde_json::Value::Array(calls)) = serde_json::from_str::<serde_json::Value>(json) else {
        return String::new();
    };
    let mut out = String::new();
    for c in calls {
        if let Some(f) = c.get("function") {
            for k in ["name", "arguments"] {
                if let Some(s) = f.get(k).and_then(serde_json::Value::as_str) {
                    out.push_str(s);
                }
            }
        }
    }
    out
}

/// Reads `requests` and `events` (registered under `prefix`) into one record per request,
/// ordered by `request_id`.
pub async fn reassemble(ctx: &SessionContext, prefix: &str) -> Result<Vec<RequestRecord>> {
    let mut accs: HashMap<u64, Acc> = HashMap::new();
    let reqs = ctx
        .sql(&format!(
            "SELECT request_id, phase, api, scheduled_ns, prompt, messages_json FROM {prefix}requests"
        ))
        .await
        .map_err(df)?
        .collect()
        .await
        .map_err(df)?;
    for b in &reqs {
        let id = b.column(0).as_primitive::<UInt64Type>();
        let phase = b.column(1).as_string::<i32>();
        let api = b.column(2).as_string::<i32>();
        let sched = b.column(3).as_primitive::<Int64Type>();
        let prompt = b.column(4).as_string::<i32>();
        let msgs = b.column(5).as_string::<i32>();
        for i in 0..b.num_rows() {
            let a = accs.entry(id.value(i)).or_default();
            a.rec.request_id = id.value(i);
            a.rec.phase = phase.value(i).to_string();
            a.rec.api = api.value(i).to_string();
            a.rec.scheduled_ns = Some(sched.value(i));
            a.rec.prompt = prompt.is_valid(i).then(|| prompt.value(i).to_string());
            a.rec.messages_json = msgs.is_valid(i).then(|| msgs.value(i).to_string());
        }
    }
    let mut stream = ctx
        .sql(&format!(
            "SELECT request_id, kind, t_ns, seq, content, reasoning, tool_calls_json, role, finish_reason, \
             usage_prompt_tokens, usage_completion_tokens, http_status, error_kind FROM {prefix}events"
        ))
        .await
        .map_err(df)?
        .execute_stream()
        .await
        .map_err(df)?;
    use futures_util::StreamExt;
    while let Some(batch) = stream.next().await {
        add_events(&mut accs, &batch.map_err(df)?);
    }
    let mut out: Vec<RequestRecord> = accs
        .into_iter()
        .map(|(id, mut a)| {
            a.rec.request_id = id;
            a.sse.sort_by_key(|s| (s.seq, s.t_ns));
            for s in &a.sse {
                let has_output = s.content.as_deref().is_some_and(|c| !c.is_empty())
                    || s.reasoning.as_deref().is_some_and(|c| !c.is_empty())
                    || s.tool_args.is_some();
                if has_output {
                    a.rec.output_times_ns.push(s.t_ns);
                }
                if s.has_choice && a.rec.first_choice_ns.is_none() {
                    a.rec.first_choice_ns = Some(s.t_ns);
                }
                if s.content.as_deref().is_some_and(|c| !c.is_empty()) && a.rec.first_content_ns.is_none() {
                    a.rec.first_content_ns = Some(s.t_ns);
                }
                if let Some(c) = &s.content {
                    a.rec.content.push_str(c);
                }
                if let Some(r) = &s.reasoning {
                    a.rec.reasoning.push_str(r);
                }
                if let Some(t) = &s.tool_args {
                    a.rec.tool_args.push_str(t);
                }
            }
            a.rec
        })
        .collect();
    out.sort_by_key(|r| r.request_id);
    Ok(out)
}

fn add_events(accs: &mut HashMap<u64, Acc>, b: &RecordBatch) {
    let id = b.column(0).as_primitive::<UInt64Type>();
    let kind = b.column(1).as_string::<i32>();
    let t = b.column(2).as_primitive::<Int64Type>();
    let seq = b.column(3).as_primitive::<UInt32Type>();
    let content = b.column(4).as_string::<i32>();
    let reasoning = b.column(5).as_string::<i32>();
    let tools = b.column(6).as_string::<i32>();
    let role = b.column(7).as_string::<i32>();
    let finish = b.column(8).as_string::<i32>();
    let up = b.column(9).as_primitive::<UInt32Type>();
    let uc = b.column(10).as_primitive::<UInt32Type>();
    let status = b.column(11).as_primitive::<UInt16Type>();
    let ek = b.column(12).as_string::<i32>();
    let s = |a: &arrow_array::StringArray, i: usize| a.is_valid(i).then(|| a.value(i).to_string());
    for i in 0..b.num_rows() {
        let a = accs.entry(id.value(i)).or_default();
        let r = &mut a.rec;
        let t_ns = t.value(i);
        match kind.value(i) {
            "sent" => r.sent_ns = Some(r.sent_ns.map_or(t_ns, |x| x.min(t_ns))),
            "headers" => {
                r.headers_ns = Some(t_ns);
                if status.is_valid(i) {
                    r.http_status = Some(status.value(i));
                }
            }
            "sse" => {
                r.sse_events += 1;
                if ek.is_valid(i) {
                    r.protocol_events += 1;
                }
                if up.is_valid(i) {
                    r.usage_prompt_tokens = Some(up.value(i));
                }
                if uc.is_valid(i) {
                    r.usage_completion_tokens = Some(uc.value(i));
                }
                let tool_args = tools.is_valid(i).then(|| tool_call_text(tools.value(i)));
                let has_choice = content.is_valid(i)
                    || reasoning.is_valid(i)
                    || tools.is_valid(i)
                    || role.is_valid(i)
                    || finish.is_valid(i);
                a.sse.push(SseRow {
                    seq: if seq.is_valid(i) { seq.value(i) } else { u32::MAX },
                    t_ns,
                    content: s(content, i),
                    reasoning: s(reasoning, i),
                    tool_args,
                    has_choice,
                });
            }
            k @ ("done" | "error" | "cancelled") => {
                r.terminal = Some(k.to_string());
                r.end_ns = Some(t_ns);
                r.error_kind = s(ek, i);
                if status.is_valid(i) {
                    r.http_status = Some(status.value(i));
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_call_pieces() {
        assert_eq!(
            tool_call_text(r#"[{"index":0,"function":{"name":"f","arguments":"{\"a\""}}]"#),
            "f{\"a\""
        );
        assert_eq!(tool_call_text("not json"), "");
    }
}
