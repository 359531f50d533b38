//! Request bodies, serialized once per dataset row before the run starts.
//!
//! The hot loop only clones a refcounted [`bytes::Bytes`]; the `requests` table columns
//! (`prompt` / `messages_json` / `params_json`) are rendered at the same time so recording a
//! request costs a few refcount bumps.

use std::sync::Arc;

use bytes::Bytes;
use recap_schemas::Api;
use serde_json::{json, Map, Value};

#[cfg(test)]
use crate::dataset::Prompt;
use crate::dataset::{Dataset, Row};
#[cfg(test)]
use recap_schemas::dataset::RowPlan;

/// Body-shaping options shared by every request of a run.
#[derive(Debug, Clone)]
pub struct BodyOptions {
    /// Which API shape to send.
    pub api: Api,
    /// The `model` field.
    pub model: String,
    /// Ask for SSE streaming (and, for chat and completions, usage in the stream).
    pub stream: bool,
    /// The output budget when the dataset row has none (sent as the API's own field).
    pub max_tokens: Option<u32>,
    /// Extra top-level fields merged into every body (`--body-extra`), e.g. `ignore_eos`.
    pub extra: Map<String, Value>,
}

/// One dataset row's request, ready to send and to record.
#[derive(Debug, Clone)]
pub struct PreparedRequest {
    /// The API shape the body has.
    pub api: Api,
    /// The JSON body.
    pub body: Bytes,
    /// `requests.prompt` (completions).
    pub prompt: Option<Arc<str>>,
    /// `requests.messages_json` (chat).
    pub messages_json: Option<Arc<str>>,
    /// `requests.input_json` (embeddings, rerank).
    pub input_json: Option<Arc<str>>,
    /// `requests.params_json`: the body without its input (`prompt`, `messages`, `input`).
    pub params_json: Arc<str>,
    /// `max_tokens` sent, if any.
    pub max_tokens: Option<u32>,
    /// `requests.planned_input_tokens`: the row's `isl_tokens`, kept only when the row's shape
    /// is the API's (`messages` for chat, `prompt` for completions): another shape is rendered
    /// differently, so the plan would not describe what is sent.
    pub planned_input_tokens: Option<u32>,
    /// `requests.prefix_group`.
    pub prefix_group: Option<u32>,
    /// `requests.session_id`: set for the turns of a multi-turn session.
    pub session_id: Option<Arc<str>>,
    /// `requests.turn`: 0-based turn within `session_id`.
    pub turn: Option<u32>,
}

/// Renders every dataset row's request.
pub fn prepare_all(dataset: &Dataset, opts: &BodyOptions) -> Vec<Arc<PreparedRequest>> {
    dataset.rows.iter().map(|r| Arc::new(prepare(r, opts))).collect()
}

/// Renders one row's request.
pub fn prepare(row: &Row, opts: &BodyOptions) -> PreparedRequest {
    let mut params = opts.extra.clone();
    params.insert("model".into(), Value::String(opts.model.clone()));
    // Embeddings and rerank answer once, with no output budget: neither is sent.
    let generates = opts.api.generates();
    let max_tokens = row.plan.max_tokens.or(opts.max_tokens).filter(|_| generates);
    let shape = crate::api::of(opts.api);
    if generates {
        params.insert("stream".into(), Value::Bool(opts.stream));
        if opts.stream {
            shape.ask_stream_usage(&mut params);
        }
        if let Some(n) = max_tokens {
            params.insert(shape.max_tokens_field().into(), json!(n));
        }
        // The row's own generation controls win over `--body-extra`'s.
        if let Some(n) = row.plan.min_tokens {
            params.insert("min_tokens".into(), json!(n));
        }
        if let Some(b) = row.plan.ignore_eos {
            params.insert("ignore_eos".into(), json!(b));
        }
    }
    let input = shape.lift(&mut params, shape.input(&row.prompt));
    let params_json: Arc<str> = Value::Object(params.clone()).to_string().into();
    let mut body = params;
    let (prompt, messages_json, input_json) = put_input(&mut body, shape, input);
    let same_shape = shape.is_own_shape(&row.prompt);
    PreparedRequest {
        api: opts.api,
        body: Bytes::from(Value::Object(body).to_string()),
        prompt,
        messages_json,
        input_json,
        params_json,
        max_tokens,
        planned_input_tokens: row.plan.isl_tokens.filter(|_| same_shape),
        prefix_group: row.plan.prefix_group,
        session_id: None,
        turn: None,
    }
}

/// The `requests` columns an input is recorded in: `prompt`, `messages_json`, `input_json`
/// (the one its kind records).
pub type RecordedInput = (Option<Arc<str>>, Option<Arc<str>>, Option<Arc<str>>);

/// Puts `input` into `body` as `shape` wants it; returns the columns that record it.
pub fn put_input(
    body: &mut Map<String, Value>,
    shape: &dyn crate::api::ApiShape,
    input: crate::api::Input,
) -> RecordedInput {
    match input {
        crate::api::Input::Messages(m) => {
            let messages = Value::Array(m);
            let text: Arc<str> = messages.to_string().into();
            body.insert(shape.input_field().into(), messages);
            (None, Some(text), None)
        }
        crate::api::Input::Text(t) => {
            let text: Arc<str> = Arc::from(t.as_str());
            body.insert(shape.input_field().into(), Value::String(t));
            (Some(text), None, None)
        }
        crate::api::Input::Fields(fields) => {
            let text: Arc<str> = Value::Object(fields.clone()).to_string().into();
            body.extend(fields);
            (None, None, Some(text))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(api: Api, stream: bool) -> BodyOptions {
        BodyOptions {
            api,
            model: "m".into(),
            stream,
            max_tokens: Some(8),
            extra: Map::new(),
        }
    }

    #[test]
    fn chat_streaming_asks_for_usage() {
        let row = Row {
            prompt: Prompt::Text("hi".into()),
            plan: RowPlan::default(),
        };
        let p = prepare(&row, &opts(Api::Chat, true));
        let body: Value = serde_json::from_slice(&p.body).expect("json");
        assert_eq!(body["messages"][0]["content"], "hi");
        assert_eq!(body["stream_options"]["include_usage"], true);
        assert_eq!(body["max_tokens"], 8);
        let mut o = opts(Api::Chat, true);
        o.extra = serde_json::from_str(r#"{"stream_options": {"continuous_usage_stats": true}}"#).expect("json");
        let body: Value = serde_json::from_slice(&prepare(&row, &o).body).expect("json");
        assert_eq!(
            body["stream_options"],
            json!({"continuous_usage_stats": true, "include_usage": true}),
            "--body-extra's stream_options are merged, not replaced"
        );
        assert!(p.prompt.is_none() && p.messages_json.is_some());
        let params: Value = serde_json::from_str(&p.params_json).expect("json");
        assert!(params.get("messages").is_none());
    }

    #[test]
    fn completions_joins_messages_and_row_budget_wins() {
        let row = Row {
            prompt: Prompt::Messages(vec![
                json!({"role":"system","content":"a"}),
                json!({"role":"user","content":"b"}),
            ]),
            plan: RowPlan {
                max_tokens: Some(3),
                min_tokens: Some(3),
                ignore_eos: Some(false),
                isl_tokens: Some(5),
                prefix_group: Some(1),
                ..RowPlan::default()
            },
        };
        let mut o = opts(Api::Completions, false);
        o.extra.insert("ignore_eos".into(), Value::Bool(true));
        let p = prepare(&row, &o);
        let body: Value = serde_json::from_slice(&p.body).expect("json");
        assert_eq!(body["prompt"], "a\nb");
        assert_eq!(body["max_tokens"], 3);
        assert_eq!(body["min_tokens"], 3);
        assert_eq!(body["ignore_eos"], false, "the row's ignore_eos wins over --body-extra");
        assert_eq!(
            p.planned_input_tokens, None,
            "a chat row's plan does not describe a completions prompt"
        );
        assert_eq!(p.prefix_group, Some(1));
        let chat = prepare(&row, &opts(Api::Chat, false));
        assert_eq!(chat.planned_input_tokens, Some(5));
        assert!(body.get("stream_options").is_none());
        assert_eq!(p.prompt.as_deref(), Some("a\nb"));
    }

    #[test]
    fn responses_and_messages_bodies() {
        let row = Row {
            prompt: Prompt::Messages(vec![
                json!({"role":"system","content":"sys"}),
                json!({"role":"user","content":"q"}),
            ]),
            plan: RowPlan::default(),
        };
        let r = prepare(&row, &opts(Api::Responses, true));
        let body: Value = serde_json::from_slice(&r.body).expect("json");
        assert_eq!(body["input"][1]["content"], "q");
        assert_eq!(body["max_output_tokens"], 8);
        assert!(body.get("max_tokens").is_none() && body.get("stream_options").is_none());
        let m = prepare(&row, &opts(Api::Messages, true));
        let body: Value = serde_json::from_slice(&m.body).expect("json");
        assert_eq!(body["system"], "sys");
        assert_eq!(body["messages"], json!([{"role":"user","content":"q"}]));
        assert_eq!(body["max_tokens"], 8);
        // What is recorded rebuilds the body: params (with `system`) plus the messages sent.
        let mut rebuilt: Map<String, Value> = serde_json::from_str(&m.params_json).expect("json");
        rebuilt.insert(
            "messages".into(),
            serde_json::from_str(m.messages_json.as_deref().expect("messages")).expect("json"),
        );
        assert_eq!(Value::Object(rebuilt).to_string().as_bytes(), &m.body[..]);
    }

    #[test]
    fn embeddings_and_rerank_send_no_stream_and_no_budget() {
        let row = Row {
            prompt: Prompt::Rerank {
                query: "q".into(),
                documents: vec!["a".into()],
            },
            plan: RowPlan {
                max_tokens: Some(4),
                ignore_eos: Some(true),
                ..RowPlan::default()
            },
        };
        for api in [Api::Embeddings, Api::Rerank] {
            let p = prepare(&row, &opts(api, true));
            let body: Value = serde_json::from_slice(&p.body).expect("json");
            for absent in ["stream", "stream_options", "max_tokens", "ignore_eos"] {
                assert!(body.get(absent).is_none(), "{api}: {absent} in {body}");
            }
            assert_eq!(p.max_tokens, None);
            let mut rebuilt: Map<String, Value> = serde_json::from_str(&p.params_json).expect("json");
            let Value::Object(input) =
                serde_json::from_str(p.input_json.as_deref().expect("input_json")).expect("json")
            else {
                panic!("input_json is an object");
            };
            rebuilt.extend(input);
            assert_eq!(Value::Object(rebuilt).to_string().as_bytes(), &p.body[..], "{api}");
        }
        let e = prepare(&row, &opts(Api::Embeddings, false));
        assert_eq!(e.input_json.as_deref(), Some(r#"{"input":["q","a"]}"#));
    }
}
