//! Anthropic Messages (`POST /v1/messages` with `messages`, the system prompt in `system`).
//!
//! A stream is `message_start` (id, role, input usage), then per content block
//! `content_block_start`, `content_block_delta`s (`text_delta`, `thinking_delta`,
//! `input_json_delta`) and `content_block_stop`, then `message_delta` (`stop_reason`, the
//! running output usage) and `message_stop`; `ping`s may come at any time and `error` ends a
//! failed stream. Text comes only from the deltas and from a block's start (which is empty in
//! practice), never from a repeat. A non-streamed body is the whole `message` object.

use std::borrow::Cow;

use recap_schemas::Api;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::{append, chat_tool_call, tool_calls_json, ApiShape, Input, InputKind, Text};
use crate::delta::{clamp_u32, error_text, Delta};

/// `--api messages`.
#[derive(Debug)]
pub struct Messages;

impl ApiShape for Messages {
    fn api(&self) -> Api {
        Api::Messages
    }

    fn path(&self) -> &'static str {
        "messages"
    }

    fn input_kind(&self) -> InputKind {
        InputKind::Messages
    }

    fn input_field(&self) -> &'static str {
        "messages"
    }

    fn key_header(&self, key: &str) -> (http::HeaderName, String) {
        (http::HeaderName::from_static("x-api-key"), key.to_string())
    }

    /// The API version the wire format below follows (Anthropic's only stable one).
    fn required_headers(&self) -> &'static [(&'static str, &'static str)] {
        &[("anthropic-version", "2023-06-01")]
    }

    /// Usage is always in a Messages stream (`message_start`, `message_delta`).
    fn ask_stream_usage(&self, _params: &mut Map<String, Value>) {}

    /// Messages has no `system` role: every system message becomes part of the `system` field
    /// (their texts joined by a blank line, in order; a list of content blocks gives its
    /// `text`s), replacing a `--body-extra` one as a row's own fields do.
    fn lift(&self, body: &mut Map<String, Value>, input: Input) -> Input {
        let Input::Messages(messages) = input else {
            return input;
        };
        let (system, rest): (Vec<Value>, Vec<Value>) = messages
            .into_iter()
            .partition(|m| m.get("role").and_then(Value::as_str) == Some("system"));
        if !system.is_empty() {
            let texts: Vec<String> = system.iter().map(|m| content_text(m.get("content"))).collect();
            body.insert("system".into(), Value::String(texts.join("\n\n")));
        }
        Input::Messages(rest)
    }

    fn parse(&self, data: &str, want_id: bool) -> Result<Delta, serde_json::Error> {
        parse(data, want_id)
    }
}

/// A message's text: its `content` string, or the `text` of its content blocks, joined.
fn content_text(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(blocks)) => blocks
            .iter()
            .filter_map(|b| b.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n\n"),
        Some(other) => other.to_string(),
        None => String::new(),
    }
}

/// One streamed event, or (`"type": "message"`) a whole message.
#[derive(Deserialize)]
struct Event<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Text<'a>,
    #[serde(default)]
    index: Option<u64>,
    /// `message_start`'s message; the text of an OpenAI-style error object's `message`.
    #[serde(borrow, default)]
    message: Option<&'a RawValue>,
    /// `"error"` on an OpenAI-style error object (vLLM's `ErrorResponse`).
    #[serde(borrow, default)]
    object: Text<'a>,
    #[serde(borrow, default)]
    content_block: Option<Block<'a>>,
    #[serde(borrow, default)]
    delta: Option<DeltaBody<'a>>,
    #[serde(default)]
    usage: Option<Usage>,
    #[serde(borrow, default)]
    error: Option<&'a RawValue>,
    // A whole message's fields (`"type": "message"`).
    #[serde(borrow, default)]
    id: Text<'a>,
    #[serde(borrow, default)]
    role: Text<'a>,
    #[serde(borrow, default)]
    content: Option<Vec<Block<'a>>>,
    #[serde(borrow, default)]
    stop_reason: Text<'a>,
}

#[derive(Deserialize)]
struct Message<'a> {
    #[serde(borrow, default)]
    id: Text<'a>,
    #[serde(borrow, default)]
    role: Text<'a>,
    #[serde(default)]
    usage: Option<Usage>,
}

#[derive(Deserialize)]
struct Block<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Text<'a>,
    #[serde(borrow, default)]
    text: Text<'a>,
    #[serde(borrow, default)]
    thinking: Text<'a>,
    #[serde(borrow, default)]
    id: Text<'a>,
    #[serde(borrow, default)]
    name: Text<'a>,
    #[serde(borrow, default)]
    input: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct DeltaBody<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Text<'a>,
    #[serde(borrow, default)]
    text: Text<'a>,
    #[serde(borrow, default)]
    thinking: Text<'a>,
    #[serde(borrow, default)]
    partial_json: Text<'a>,
    #[serde(borrow, default)]
    stop_reason: Text<'a>,
}

#[derive(Deserialize)]
struct Usage {
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
    #[serde(default)]
    cache_read_input_tokens: Option<u64>,
    #[serde(default)]
    cache_creation_input_tokens: Option<u64>,
}

/// Anthropic's `input_tokens` leaves out the prompt tokens read from or written to the cache:
/// the prompt, as the other APIs count it, is their sum.
fn usage(d: &mut Delta, u: Usage) {
    if u.input_tokens.is_some() || u.cache_read_input_tokens.is_some() {
        let parts = [u.input_tokens, u.cache_read_input_tokens, u.cache_creation_input_tokens];
        d.usage_prompt_tokens = clamp_u32(Some(parts.iter().flatten().sum()));
        d.usage_cached_tokens = clamp_u32(u.cache_read_input_tokens);
    }
    d.usage_completion_tokens = clamp_u32(u.output_tokens);
}

/// A content block's output: text and thinking into `d`, a tool call (in chat's shape) into
/// `calls`.
fn block(d: &mut Delta, calls: &mut Vec<Value>, index: u64, b: Block<'_>, whole: bool) {
    match b.kind.as_deref() {
        Some("text") => {
            if let Some(t) = b.text {
                append(&mut d.content, &t);
            }
        }
        Some("thinking") => {
            if let Some(t) = b.thinking {
                append(&mut d.reasoning, &t);
            }
        }
        Some("tool_use") => {
            // A stream's start has `input: {}` and the arguments follow as JSON pieces; a whole
            // message has them all in `input`.
            let args = if whole { b.input.map_or("", RawValue::get) } else { "" };
            calls.push(chat_tool_call(index, b.id.as_deref(), b.name.as_deref(), args));
        }
        _ => {}
    }
}

/// Maps one Messages event (or a whole message) into the extracted columns.
pub fn parse(data: &str, want_id: bool) -> Result<Delta, serde_json::Error> {
    let ev: Event<'_> = serde_json::from_str(data)?;
    let mut d = Delta::default();
    match ev.kind.as_deref() {
        Some("message_start") => {
            let message = ev
                .message
                .map(|m| serde_json::from_str::<Message<'_>>(m.get()))
                .transpose()?;
            if let Some(m) = message {
                d.id = m.id.map(Cow::into_owned);
                d.role = m.role.map(Cow::into_owned);
                if let Some(u) = m.usage {
                    usage(&mut d, u);
                }
            }
        }
        Some("content_block_start") => {
            if let Some(b) = ev.content_block {
                let mut calls = Vec::new();
                block(&mut d, &mut calls, ev.index.unwrap_or(0), b, false);
                d.tool_calls_json = tool_calls_json(calls);
            }
        }
        Some("content_block_delta") => {
            if let Some(x) = ev.delta {
                match x.kind.as_deref() {
                    Some("text_delta") => d.content = x.text.map(Cow::into_owned),
                    Some("thinking_delta") => d.reasoning = x.thinking.map(Cow::into_owned),
                    Some("input_json_delta") => {
                        d.tool_calls_json = tool_calls_json(vec![chat_tool_call(
                            ev.index.unwrap_or(0),
                            None,
                            None,
                            x.partial_json.as_deref().unwrap_or(""),
                        )]);
                    }
                    _ => {}
                }
            }
        }
        Some("message_delta") => {
            d.finish_reason = ev.delta.and_then(|x| x.stop_reason).map(Cow::into_owned);
            if let Some(u) = ev.usage {
                usage(&mut d, u);
            }
        }
        Some("message") => {
            d.id = ev.id.map(Cow::into_owned);
            d.role = ev.role.map(Cow::into_owned);
            let mut calls = Vec::new();
            for (i, b) in ev.content.into_iter().flatten().enumerate() {
                block(&mut d, &mut calls, i as u64, b, true);
            }
            d.tool_calls_json = tool_calls_json(calls);
            d.finish_reason = ev.stop_reason.map(Cow::into_owned);
            if let Some(u) = ev.usage {
                usage(&mut d, u);
            }
        }
        _ => {}
    }
    if let Some(e) = ev.error.filter(|e| e.get() != "null") {
        d.error_message = Some(error_text(e.get()));
    } else if let (Some("error"), Some(m)) = (ev.object.as_deref(), ev.message) {
        // vLLM's older `{"object": "error", "message": ..., "type": "BadRequestError"}`.
        d.error_message = Some(error_text(m.get()));
    }
    if !want_id {
        d.id = None;
    }
    d.id = d.id.filter(|i| !i.is_empty());
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_maps_event_by_event() {
        let start = parse(
            r#"{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","content":[],"model":"m","stop_reason":null,"usage":{"input_tokens":5,"cache_read_input_tokens":3,"cache_creation_input_tokens":0,"output_tokens":1}}}"#,
            true,
        )
        .expect("json");
        assert_eq!(start.id.as_deref(), Some("msg_1"));
        assert_eq!(start.role.as_deref(), Some("assistant"));
        assert_eq!(
            (start.usage_prompt_tokens, start.usage_cached_tokens),
            (Some(8), Some(3))
        );
        assert!(!start.has_output());
        let block = parse(
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
            false,
        )
        .expect("json");
        assert!(!block.has_output(), "an empty block start is no output");
        let text = parse(
            r#"{"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"Hi"}}"#,
            false,
        )
        .expect("json");
        assert_eq!(text.content.as_deref(), Some("Hi"));
        let think = parse(
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"hmm"}}"#,
            false,
        )
        .expect("json");
        assert_eq!(think.reasoning.as_deref(), Some("hmm"));
        let sig = parse(
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"EqQB"}}"#,
            false,
        )
        .expect("json");
        assert!(!sig.has_output());
        let end = parse(
            r#"{"type":"message_delta","delta":{"stop_reason":"max_tokens","stop_sequence":null},"usage":{"output_tokens":15}}"#,
            false,
        )
        .expect("json");
        assert_eq!(end.finish_reason.as_deref(), Some("max_tokens"));
        assert_eq!((end.usage_completion_tokens, end.usage_prompt_tokens), (Some(15), None));
        for quiet in [
            r#"{"type":"ping"}"#,
            r#"{"type":"message_stop"}"#,
            r#"{"type":"content_block_stop","index":1}"#,
        ] {
            assert_eq!(parse(quiet, true).expect("json"), Delta::default(), "{quiet}");
        }
    }

    #[test]
    fn tool_use_takes_chats_shape_and_errors_are_found() {
        let start = parse(
            r#"{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_1","name":"get_weather","input":{}}}"#,
            false,
        )
        .expect("json");
        let call: Value = serde_json::from_str(start.tool_calls_json.as_deref().expect("call")).expect("json");
        assert_eq!(
            (
                call[0]["function"]["name"].as_str(),
                call[0]["function"]["arguments"].as_str()
            ),
            (Some("get_weather"), Some(""))
        );
        let piece = parse(
            r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"city\": "}}"#,
            false,
        )
        .expect("json");
        let call: Value = serde_json::from_str(piece.tool_calls_json.as_deref().expect("piece")).expect("json");
        assert_eq!(call[0]["function"]["arguments"], "{\"city\": ");
        let err = parse(
            r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
            false,
        )
        .expect("json");
        assert_eq!(err.error_message.as_deref(), Some("Overloaded"));
    }

    #[test]
    fn a_whole_message_and_the_system_prompt() {
        let d = parse(
            r#"{"id":"msg_2","type":"message","role":"assistant","content":[{"type":"thinking","thinking":"t","signature":"s"},{"type":"text","text":"a"},{"type":"tool_use","id":"tu","name":"f","input":{"x":1}}],"stop_reason":"end_turn","usage":{"input_tokens":4,"output_tokens":6}}"#,
            true,
        )
        .expect("json");
        assert_eq!((d.content.as_deref(), d.reasoning.as_deref()), (Some("a"), Some("t")));
        assert_eq!(d.finish_reason.as_deref(), Some("end_turn"));
        assert_eq!((d.usage_prompt_tokens, d.usage_completion_tokens), (Some(4), Some(6)));
        let call: Value = serde_json::from_str(d.tool_calls_json.as_deref().expect("call")).expect("json");
        assert_eq!(call[0]["function"]["arguments"], "{\"x\":1}");

        let mut body = Map::new();
        body.insert("system".into(), Value::String("from --body-extra".into()));
        let input = Input::Messages(vec![
            serde_json::json!({"role": "system", "content": "be brief"}),
            serde_json::json!({"role": "system", "content": "be kind"}),
            serde_json::json!({"role": "user", "content": "hi"}),
        ]);
        let left = Messages.lift(&mut body, input);
        assert_eq!(body["system"], "be brief\n\nbe kind");
        assert_eq!(
            left,
            Input::Messages(vec![serde_json::json!({"role": "user", "content": "hi"})])
        );
        // A later system message and content blocks: all of it is `system`, as text.
        let input = Input::Messages(vec![
            serde_json::json!({"role": "user", "content": "hi"}),
            serde_json::json!({"role": "system", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}),
        ]);
        let left = Messages.lift(&mut body, input);
        assert_eq!(body["system"], "a\n\nb");
        assert_eq!(
            left,
            Input::Messages(vec![serde_json::json!({"role": "user", "content": "hi"})])
        );
        let e = parse(
            r#"{"object":"error","message":"max_tokens is required","type":"BadRequestError","code":400}"#,
            false,
        )
        .expect("json");
        assert_eq!(e.error_message.as_deref(), Some("max_tokens is required"));
    }
}
