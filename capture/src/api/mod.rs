//! What differs between the APIs capture speaks, behind one trait: the registry pattern, so
//! adding an API is one module here and one line in [`of`].
//!
//! An [`ApiShape`] says where requests go (the path after `/v1/`), how a dataset row becomes
//! the body's input (and which `requests` column records it), what a stream is asked for
//! (usage), how a session's history grows, and how a response object maps into the contract's
//! extracted columns ([`crate::delta::Delta`]). The run, the client and the recorder never
//! name an API; they ask its shape.

use recap_schemas::Api;
use serde_json::{Map, Value};

use crate::dataset::Prompt;
use crate::delta::{Delta, StreamMemo};

mod chat;
mod completions;
mod embeddings;
mod messages;
mod rerank;
mod responses;

/// The shape of the body's input, and the `requests` column it is recorded in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputKind {
    /// A list of messages (`requests.messages_json`).
    Messages,
    /// One text (`requests.prompt`).
    Text,
    /// Body fields of a batch of items (`requests.input_json`): embeddings' `input`,
    /// rerank's `query` and `documents`.
    Fields,
}

/// A request's input, in its API's shape.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// Chat messages.
    Messages(Vec<Value>),
    /// A prompt text.
    Text(String),
    /// Body fields, merged into the body as they are.
    Fields(Map<String, Value>),
}

/// One API capture speaks.
pub trait ApiShape: Sync + Send + std::fmt::Debug {
    /// Which API this is (the manifest's and the `requests` table's `api`).
    fn api(&self) -> Api;

    /// The path a base URL gets after `/v1/` (`chat/completions`).
    fn path(&self) -> &'static str;

    /// The input's shape, and so the `requests` column that records it.
    fn input_kind(&self) -> InputKind;

    /// The body field the input goes in (`messages`, `prompt`, `input`).
    fn input_field(&self) -> &'static str;

    /// The body field the output budget goes in (`max_tokens`; Responses: `max_output_tokens`).
    fn max_tokens_field(&self) -> &'static str {
        "max_tokens"
    }

    /// Moves what the API takes outside the message list into the body (Messages: leading
    /// `system` messages into `system`); returns the input left to send.
    fn lift(&self, _body: &mut Map<String, Value>, input: Input) -> Input {
        input
    }

    /// Streaming options merged into a streamed body: usage in the stream, keeping whatever
    /// `--body-extra` put there (vLLM's `continuous_usage_stats`, for one).
    fn ask_stream_usage(&self, params: &mut Map<String, Value>);

    /// How `--api-key-env`'s key is sent: `Authorization: Bearer KEY` (Messages: `x-api-key`).
    fn key_header(&self, key: &str) -> (http::HeaderName, String) {
        (http::header::AUTHORIZATION, format!("Bearer {key}"))
    }

    /// Headers the API requires, sent unless the user gives them (`--header`).
    fn required_headers(&self) -> &'static [(&'static str, &'static str)] {
        &[]
    }

    /// Maps one streamed event's data, or a whole non-streamed body, into the extracted
    /// columns; the server's `id` only when `want_id` (copying it out of every chunk would
    /// cost an allocation per event).
    fn parse(&self, data: &str, want_id: bool) -> Result<Delta, serde_json::Error>;

    /// [`parse`](Self::parse) for one streamed event, given what the stream's earlier events
    /// left in `memo` (the OpenAI shapes read a chunk against the previous one).
    fn parse_event(&self, data: &str, want_id: bool, memo: &mut StreamMemo) -> Result<Delta, serde_json::Error> {
        let _ = memo;
        self.parse(data, want_id)
    }

    /// A dataset row's prompt in this API's shape.
    fn input(&self, prompt: &Prompt) -> Input {
        match self.input_kind() {
            InputKind::Messages => Input::Messages(prompt.messages()),
            InputKind::Text => Input::Text(prompt.text()),
            InputKind::Fields => {
                let mut m = Map::new();
                m.insert(self.input_field().into(), prompt.texts().into());
                Input::Fields(m)
            }
        }
    }

    /// Whether the row is in this API's own shape: only then does a planned length describe
    /// what is sent.
    fn is_own_shape(&self, prompt: &Prompt) -> bool {
        matches!(
            (self.input_kind(), prompt),
            (InputKind::Messages, Prompt::Messages(_))
                | (InputKind::Text, Prompt::Text(_))
                | (InputKind::Fields, Prompt::Items(_))
        )
    }
}

/// The shape of `api`: the registry.
pub fn of(api: Api) -> &'static dyn ApiShape {
    match api {
        Api::Chat => &chat::Chat,
        Api::Completions => &completions::Completions,
        Api::Responses => &responses::Responses,
        Api::Messages => &messages::Messages,
        Api::Embeddings => &embeddings::Embeddings,
        Api::Rerank => &rerank::Rerank,
    }
}

/// A text field of a response object: borrowed where the JSON has no escapes.
pub(crate) type Text<'a> = Option<std::borrow::Cow<'a, str>>;

/// One tool-call piece in chat's `tool_calls` shape (`{index, id, type, function: {name,
/// arguments}}`), so that analyze counts a tool call's tokens one way whatever the API.
pub(crate) fn chat_tool_call(index: u64, id: Option<&str>, name: Option<&str>, arguments: &str) -> Value {
    let mut call = serde_json::json!({"index": index, "function": {"arguments": arguments}});
    if let Some(id) = id {
        call["id"] = Value::String(id.to_string());
        call["type"] = Value::String("function".into());
    }
    if let Some(name) = name {
        call["function"]["name"] = Value::String(name.to_string());
    }
    call
}

/// The `tool_calls_json` column of an object's calls: one JSON array, as chat sends them;
/// none without calls.
pub(crate) fn tool_calls_json(calls: Vec<Value>) -> Option<String> {
    (!calls.is_empty()).then(|| Value::Array(calls).to_string())
}

/// Appends `text` to a text column gathered from several parts of one object.
pub(crate) fn append(into: &mut Option<String>, text: &str) {
    into.get_or_insert_with(String::new).push_str(text);
}

/// `stream_options.include_usage`, merged (the OpenAI-compatible APIs' way to get usage in a
/// stream): a non-object `stream_options` is the user's call and kept.
pub(crate) fn openai_stream_usage(params: &mut Map<String, Value>) {
    match params.get_mut("stream_options") {
        Some(Value::Object(so)) => {
            so.entry("include_usage").or_insert(Value::Bool(true));
        }
        Some(_) => {}
        None => {
            params.insert("stream_options".into(), serde_json::json!({"include_usage": true}));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_api_has_its_shape() {
        for api in Api::ALL {
            assert_eq!(of(*api).api(), *api, "the registry maps {api} to its own shape");
        }
        assert_eq!(of(Api::Chat).path(), "chat/completions");
        assert_eq!(of(Api::Completions).path(), "completions");
        let row = Prompt::Messages(vec![serde_json::json!({"role": "user", "content": "hi"})]);
        assert!(of(Api::Chat).is_own_shape(&row) && !of(Api::Completions).is_own_shape(&row));
        assert_eq!(of(Api::Completions).input(&row), Input::Text("hi".into()));
        assert_eq!(of(Api::Responses).path(), "responses");
        assert_eq!(of(Api::Responses).max_tokens_field(), "max_output_tokens");
        assert_eq!(of(Api::Messages).path(), "messages");
        let rerank = Prompt::Rerank {
            query: "q".into(),
            documents: vec!["a".into(), "b".into()],
        };
        let Input::Fields(f) = of(Api::Rerank).input(&rerank) else {
            panic!("rerank input is body fields");
        };
        assert_eq!(
            Value::Object(f),
            serde_json::json!({"query": "q", "documents": ["a", "b"]})
        );
        let Input::Fields(f) = of(Api::Embeddings).input(&row) else {
            panic!("embeddings input is body fields");
        };
        assert_eq!(Value::Object(f), serde_json::json!({"input": ["hi"]}));
        assert!(of(Api::Embeddings).is_own_shape(&Prompt::Items(vec!["x".into()])));
    }
}
