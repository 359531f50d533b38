//! OpenAI Responses (`POST /v1/responses` with `input`).
//!
//! A stream is a sequence of typed events (`event: response.output_text.delta` and a `type`
//! field in the data saying the same). Only the `*.delta` events carry new output: the
//! `*.done` events, `response.output_item.done` and `response.completed` repeat the whole text,
//! so taking text from them would count it twice. Usage, the status and the server's id come
//! from the events that carry the whole `response` object. A non-streamed body is that object.

use std::borrow::Cow;

use recap_schemas::Api;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::{append, chat_tool_call, tool_calls_json, ApiShape, InputKind, Text};
use crate::delta::{clamp_u32, error_text, Delta};

/// `--api responses`.
#[derive(Debug)]
pub struct Responses;

impl ApiShape for Responses {
    fn api(&self) -> Api {
        Api::Responses
    }

    fn path(&self) -> &'static str {
        "responses"
    }

    fn input_kind(&self) -> InputKind {
        InputKind::Messages
    }

    fn input_field(&self) -> &'static str {
        "input"
    }

    fn max_tokens_field(&self) -> &'static str {
        "max_output_tokens"
    }

    /// Usage always ends a Responses stream (in `response.completed`): nothing to ask.
    fn ask_stream_usage(&self, _params: &mut Map<String, Value>) {}

    fn parse(&self, data: &str, want_id: bool) -> Result<Delta, serde_json::Error> {
        parse(data, want_id)
    }
}

/// One streamed event, or (no `type`) a whole response object.
#[derive(Deserialize)]
struct Event<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Text<'a>,
    /// A string in the events read here; an object in some older or other events, which
    /// carry no text this maps.
    #[serde(borrow, default)]
    delta: Option<&'a RawValue>,
    #[serde(default)]
    output_index: Option<u64>,
    #[serde(borrow, default)]
    item: Option<Item<'a>>,
    #[serde(borrow, default)]
    response: Option<Response<'a>>,
    /// The `error` event's own message.
    #[serde(borrow, default)]
    message: Option<&'a RawValue>,
    // A whole (non-streamed) response object's fields, read as a [`Response`] (not
    // `#[serde(flatten)]`: a flattened struct cannot borrow a `RawValue`).
    #[serde(borrow, default)]
    id: Text<'a>,
    #[serde(borrow, default)]
    object: Text<'a>,
    #[serde(borrow, default)]
    status: Text<'a>,
    #[serde(borrow, default)]
    output: Option<&'a RawValue>,
    #[serde(default)]
    usage: Option<Usage>,
    #[serde(borrow, default)]
    error: Option<&'a RawValue>,
    #[serde(borrow, default)]
    incomplete_details: Option<Incomplete<'a>>,
}

impl<'a> Event<'a> {
    /// The object itself as a response (a non-streamed body).
    fn whole(self) -> Response<'a> {
        Response {
            id: self.id,
            status: self.status,
            output: self.output,
            usage: self.usage,
            error: self.error,
            incomplete_details: self.incomplete_details,
        }
    }
}

#[derive(Deserialize)]
struct Response<'a> {
    #[serde(borrow, default)]
    id: Text<'a>,
    #[serde(borrow, default)]
    status: Text<'a>,
    /// Read only for a whole (non-streamed) body: a stream's last event repeats what the
    /// deltas said, and an item of a shape not known here must not make it unreadable.
    #[serde(borrow, default)]
    output: Option<&'a RawValue>,
    #[serde(default)]
    usage: Option<Usage>,
    #[serde(borrow, default)]
    error: Option<&'a RawValue>,
    #[serde(borrow, default)]
    incomplete_details: Option<Incomplete<'a>>,
}

#[derive(Deserialize)]
struct Item<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Text<'a>,
    #[serde(borrow, default)]
    role: Text<'a>,
    #[serde(borrow, default)]
    content: Option<Vec<Part<'a>>>,
    #[serde(borrow, default)]
    summary: Option<Vec<Part<'a>>>,
    #[serde(borrow, default)]
    call_id: Text<'a>,
    #[serde(borrow, default)]
    name: Text<'a>,
    #[serde(borrow, default)]
    arguments: Text<'a>,
}

#[derive(Deserialize)]
struct Part<'a> {
    #[serde(borrow, default)]
    text: Text<'a>,
    #[serde(borrow, default)]
    refusal: Text<'a>,
}

#[derive(Deserialize)]
struct Incomplete<'a> {
    #[serde(borrow, default)]
    reason: Text<'a>,
}

#[derive(Deserialize)]
struct Usage {
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
    #[serde(default)]
    input_tokens_details: Option<InputDetails>,
    #[serde(default)]
    output_tokens_details: Option<OutputDetails>,
}

#[derive(Deserialize)]
struct InputDetails {
    #[serde(default)]
    cached_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct OutputDetails {
    #[serde(default)]
    reasoning_tokens: Option<u64>,
}

/// What a whole response object says: its id, status, usage and error (and, for a
/// non-streamed body, its output).
fn response_fields(d: &mut Delta, r: Response<'_>, with_output: bool) -> Result<(), serde_json::Error> {
    d.id = r.id.filter(|i| !i.is_empty()).map(Cow::into_owned);
    if let Some(u) = r.usage {
        d.usage_prompt_tokens = clamp_u32(u.input_tokens);
        d.usage_completion_tokens = clamp_u32(u.output_tokens);
        d.usage_cached_tokens = clamp_u32(u.input_tokens_details.and_then(|x| x.cached_tokens));
        d.usage_reasoning_tokens = clamp_u32(u.output_tokens_details.and_then(|x| x.reasoning_tokens));
    }
    if let Some(e) = r.error.filter(|e| e.get() != "null") {
        d.error_message = Some(error_text(e.get()));
    } else if r.status.as_deref() == Some("failed") {
        d.error_message = Some("the response failed (`status: failed`, no error given)".into());
    }
    // `completed`, else why it stopped early (`max_output_tokens`); `in_progress` and
    // `queued` are no end.
    d.finish_reason = match r.status.as_deref() {
        Some("incomplete") => Some(
            r.incomplete_details
                .and_then(|i| i.reason)
                .map_or_else(|| "incomplete".to_string(), Cow::into_owned),
        ),
        Some(s @ ("completed" | "cancelled")) => Some(s.to_string()),
        _ => None,
    };
    if !with_output {
        return Ok(());
    }
    // Item by item: one of a shape not known here (a web search call) carries no text this
    // maps, and must not lose the others'; an `output` that is not a list is malformed.
    let raw: Vec<&RawValue> = match r.output {
        Some(o) => serde_json::from_str(o.get())?,
        None => Vec::new(),
    };
    let output = raw
        .iter()
        .filter_map(|i| serde_json::from_str::<Item<'_>>(i.get()).ok());
    let mut calls = Vec::new();
    for (index, item) in output.into_iter().enumerate() {
        match item.kind.as_deref() {
            Some("message") => {
                d.role = item.role.map(Cow::into_owned);
                for p in item.content.into_iter().flatten() {
                    if let Some(t) = p.text.or(p.refusal) {
                        append(&mut d.content, &t);
                    }
                }
            }
            Some("reasoning") => {
                let parts = item.content.filter(|c| !c.is_empty()).or(item.summary);
                for p in parts.into_iter().flatten() {
                    if let Some(t) = p.text {
                        append(&mut d.reasoning, &t);
                    }
                }
            }
            Some("function_call") => {
                calls.push(chat_tool_call(
                    index as u64,
                    item.call_id.as_deref(),
                    item.name.as_deref(),
                    item.arguments.as_deref().unwrap_or(""),
                ));
            }
            _ => {}
        }
    }
    d.tool_calls_json = tool_calls_json(calls);
    Ok(())
}

/// Maps one Responses event (or a whole response object) into the extracted columns.
pub fn parse(data: &str, want_id: bool) -> Result<Delta, serde_json::Error> {
    let ev: Event<'_> = serde_json::from_str(data)?;
    let mut d = Delta::default();
    let delta: Option<Cow<'_, str>> = ev
        .delta
        .filter(|r| r.get().starts_with('"'))
        .map(|r| serde_json::from_str(r.get()))
        .transpose()?;
    let delta = delta.as_deref();
    match ev.kind.as_deref() {
        Some("response.output_text.delta" | "response.refusal.delta") => d.content = delta.map(str::to_owned),
        Some(
            "response.reasoning_text.delta" | "response.reasoning_summary_text.delta" | "response.reasoning.delta",
        ) => d.reasoning = delta.map(str::to_owned),
        Some("response.function_call_arguments.delta") => {
            d.tool_calls_json =
                delta.and_then(|a| tool_calls_json(vec![chat_tool_call(ev.output_index.unwrap_or(0), None, None, a)]));
        }
        Some("response.output_item.added") => match ev.item {
            Some(item) if item.kind.as_deref() == Some("function_call") => {
                d.tool_calls_json = tool_calls_json(vec![chat_tool_call(
                    ev.output_index.unwrap_or(0),
                    item.call_id.as_deref(),
                    item.name.as_deref(),
                    item.arguments.as_deref().unwrap_or(""),
                )]);
            }
            Some(item) => d.role = item.role.map(Cow::into_owned),
            None => {}
        },
        Some("error") => {
            d.error_message = Some(match (ev.message, ev.error) {
                (Some(m), _) => error_text(m.get()),
                (None, Some(e)) => error_text(e.get()),
                (None, None) => data.to_owned(),
            });
        }
        Some(_) if ev.object.as_deref() == Some("error") => {
            // vLLM's older `{"object": "error", "message": ..., "type": "BadRequestError"}`.
            d.error_message = ev.message.map(|m| error_text(m.get()));
        }
        Some(_) => {
            if let Some(r) = ev.response {
                response_fields(&mut d, r, false)?;
            }
        }
        // No `type`: a whole (non-streamed) response object, or an error body.
        None if ev.object.as_deref() == Some("response") => response_fields(&mut d, ev.whole(), true)?,
        None => {
            if let Some(e) = ev.error.filter(|e| e.get() != "null") {
                d.error_message = Some(error_text(e.get()));
            }
        }
    }
    if !want_id {
        d.id = None;
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deltas_carry_the_output_and_done_events_repeat_nothing() {
        let d = parse(
            r#"{"type":"response.output_text.delta","item_id":"msg_1","output_index":1,"content_index":0,"delta":"Hi ","logprobs":[],"sequence_number":5}"#,
            true,
        )
        .expect("json");
        assert_eq!(d.content.as_deref(), Some("Hi "));
        let d = parse(
            r#"{"type":"response.reasoning_text.delta","delta":"think","output_index":0}"#,
            false,
        )
        .expect("json");
        assert_eq!(d.reasoning.as_deref(), Some("think"));
        for done in [
            r#"{"type":"response.output_text.done","text":"Hi there","output_index":1}"#,
            r#"{"type":"response.output_item.done","item":{"type":"message","role":"assistant","content":[{"type":"output_text","text":"Hi there"}]}}"#,
        ] {
            let d = parse(done, false).expect("json");
            assert!(!d.has_output(), "{done}");
        }
    }

    #[test]
    fn completed_ends_the_stream_with_usage_and_id() {
        let d = parse(
            r#"{"type":"response.completed","sequence_number":9,"response":{"id":"resp_9","object":"response","status":"completed","output":[{"type":"message","content":[{"type":"output_text","text":"all"}]}],"usage":{"input_tokens":7,"input_tokens_details":{"cached_tokens":2},"output_tokens":5,"output_tokens_details":{"reasoning_tokens":3},"total_tokens":12}}}"#,
            true,
        )
        .expect("json");
        assert_eq!(d.finish_reason.as_deref(), Some("completed"));
        assert_eq!(
            (
                d.usage_prompt_tokens,
                d.usage_completion_tokens,
                d.usage_cached_tokens,
                d.usage_reasoning_tokens
            ),
            (Some(7), Some(5), Some(2), Some(3))
        );
        assert_eq!(d.id.as_deref(), Some("resp_9"));
        assert!(d.content.is_none(), "the completed event's output repeats the deltas");
        let d = parse(
            r#"{"type":"response.incomplete","response":{"status":"incomplete","incomplete_details":{"reason":"max_output_tokens"}}}"#,
            false,
        )
        .expect("json");
        assert_eq!(d.finish_reason.as_deref(), Some("max_output_tokens"));
        let d = parse(
            r#"{"type":"response.in_progress","response":{"id":"resp_9","status":"in_progress"}}"#,
            false,
        )
        .expect("json");
        assert!(d.finish_reason.is_none() && d.id.is_none());
    }

    #[test]
    fn errors_in_the_stream_are_found() {
        let d = parse(
            r#"{"type":"error","code":"server_error","message":"KV cache full","param":null,"sequence_number":3}"#,
            false,
        )
        .expect("json");
        assert_eq!(d.error_message.as_deref(), Some("KV cache full"));
        let d = parse(
            r#"{"type":"response.failed","response":{"status":"failed","error":{"code":"server_error","message":"boom"}}}"#,
            false,
        )
        .expect("json");
        assert_eq!(d.error_message.as_deref(), Some("boom"));
        assert!(d.finish_reason.is_none());
    }

    #[test]
    fn tool_calls_take_chats_shape() {
        let d = parse(
            r#"{"type":"response.output_item.added","output_index":2,"item":{"type":"function_call","id":"fc_1","call_id":"call_1","name":"get_weather","arguments":""}}"#,
            false,
        )
        .expect("json");
        let added: Value = serde_json::from_str(d.tool_calls_json.as_deref().expect("call")).expect("json");
        assert_eq!(added[0]["function"]["name"], "get_weather");
        assert_eq!(added[0]["id"], "call_1");
        let d = parse(
            r#"{"type":"response.function_call_arguments.delta","output_index":2,"delta":"{\"city\":"}"#,
            false,
        )
        .expect("json");
        let piece: Value = serde_json::from_str(d.tool_calls_json.as_deref().expect("args")).expect("json");
        assert_eq!(piece[0]["function"]["arguments"], "{\"city\":");
        assert_eq!(piece[0]["index"], 2);
    }

    #[test]
    fn a_whole_response_object_gives_every_text() {
        let d = parse(
            r#"{"id":"resp_1","object":"response","status":"completed","output":[{"type":"reasoning","content":[{"type":"reasoning_text","text":"hmm "}],"summary":[]},{"type":"message","role":"assistant","content":[{"type":"output_text","text":"a"},{"type":"output_text","text":"b"}]},{"type":"function_call","call_id":"c1","name":"f","arguments":"{}"},{"type":"function_call","call_id":"c2","name":"g","arguments":"[]"}],"usage":{"input_tokens":3,"output_tokens":4}}"#,
            true,
        )
        .expect("json");
        assert_eq!(d.content.as_deref(), Some("ab"));
        assert_eq!(d.reasoning.as_deref(), Some("hmm "));
        assert_eq!(d.role.as_deref(), Some("assistant"));
        assert_eq!(d.finish_reason.as_deref(), Some("completed"));
        let calls: Value = serde_json::from_str(d.tool_calls_json.as_deref().expect("calls")).expect("json");
        assert_eq!(calls.as_array().map(Vec::len), Some(2));
        assert_eq!(calls[1]["function"]["name"], "g");
        let e = parse(
            r#"{"error":{"message":"no such model","type":"invalid_request_error"}}"#,
            false,
        )
        .expect("json");
        assert_eq!(e.error_message.as_deref(), Some("no such model"));
        let e = parse(
            r#"{"object":"error","message":"bad input","type":"BadRequestError","code":400}"#,
            false,
        )
        .expect("json");
        assert_eq!(e.error_message.as_deref(), Some("bad input"));
        let f = parse(
            r#"{"type":"response.failed","response":{"status":"failed","error":null}}"#,
            false,
        )
        .expect("json");
        assert!(
            f.error_message.is_some(),
            "a failed response is an error even without one given"
        );
        let odd = parse(r#"{"type":"response.reasoning.delta","delta":{"text":"x"}}"#, false)
            .expect("an object delta parses");
        assert!(!odd.has_output());
        let whole = parse(
            r#"{"object":"response","status":"completed","output":[{"type":"web_search_call","id":7,"role":5},{"type":"message","content":[{"type":"output_text","text":"kept"}]}]}"#,
            false,
        )
        .expect("json");
        assert_eq!(
            whole.content.as_deref(),
            Some("kept"),
            "an unknown item loses no other text"
        );
        let end = parse(
            r#"{"type":"response.completed","response":{"status":"completed","output":[{"type":"web_search_call","id":7}]}}"#,
            false,
        )
        .expect("an unknown item shape does not make the end unreadable");
        assert_eq!(end.finish_reason.as_deref(), Some("completed"));
    }
}
