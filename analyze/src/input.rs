//! A request's input and how it is counted: the one rule `analyze report` (measured ISL) and
//! `analyze dataset` (planned ISL) share, so planned and measured lengths mean the same thing.
//!
//! A completions prompt is encoded the way servers encode it, with the tokenizer's own special
//! tokens (its BOS) added. A chat input is the messages rendered through the chat template
//! (which writes the BOS itself when the model wants one) and encoded without added special
//! tokens, as vLLM and SGLang do; without a template (`--isl raw`) it is the message contents
//! joined by newlines.

use std::borrow::Cow;

use serde_json::Value;

use crate::keys::{derived_key, text_hash, TextKey};
use crate::template::ChatTemplate;
use crate::Result;

/// How a request's input was sent: the one closed set [`InputRef::kind`] takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputKind {
    /// A completions `prompt`.
    Prompt,
    /// A chat `messages` array.
    Chat,
    /// Texts to embed (`input_json`'s `input`): counted in parts ([`Parts`]).
    Items,
    /// A rerank query and its documents (`input_json`): counted in parts ([`Parts`]).
    Pairs,
}

impl InputKind {
    /// Its spelling in `records.parquet`.
    pub fn as_str(self) -> &'static str {
        match self {
            InputKind::Prompt => "prompt",
            InputKind::Chat => "chat",
            InputKind::Items => "items",
            InputKind::Pairs => "pairs",
        }
    }

    /// The kind spelled `s`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "prompt" => Some(InputKind::Prompt),
            "chat" => Some(InputKind::Chat),
            "items" => Some(InputKind::Items),
            "pairs" => Some(InputKind::Pairs),
            _ => None,
        }
    }
}

/// An embeddings or rerank input, counted in parts: the texts to count (each with or without
/// the tokenizer's special tokens), and the pairs whose specials are added on top. Embeddings:
/// each text as the server encodes it, with its special tokens. Rerank: each query-document
/// pair as a cross-encoder encodes it, the query's and the document's tokens plus the
/// tokenizer's pair specials ([`crate::tokenize::Counter::pair_special_tokens`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Parts {
    /// Texts to count, with `add_special_tokens`.
    pub texts: Vec<(String, bool)>,
    /// Query-document pairs (rerank), each adding the pair specials.
    pub pairs: u32,
    /// Items the request carried: texts embedded, or documents scored.
    pub items: u32,
}

impl Parts {
    /// The parts of an `input_json` of `kind`; `None` for another kind or a malformed input.
    pub fn of(kind: InputKind, input_json: &str) -> Option<Parts> {
        let v: Value = serde_json::from_str(input_json).ok()?;
        let strings = |v: Option<&Value>| -> Option<Vec<String>> {
            match v? {
                Value::String(s) => Some(vec![s.clone()]),
                Value::Array(a) => a.iter().map(|x| x.as_str().map(str::to_string)).collect(),
                _ => None,
            }
        };
        match kind {
            InputKind::Items => {
                let items = strings(v.get("input"))?;
                Some(Parts {
                    items: items.len() as u32,
                    texts: items.into_iter().map(|t| (t, true)).collect(),
                    pairs: 0,
                })
            }
            InputKind::Pairs => {
                let query = v.get("query")?.as_str()?;
                let docs = strings(v.get("documents"))?;
                let n = docs.len() as u32;
                let mut texts: Vec<(String, bool)> = docs.iter().map(|_| (query.to_string(), false)).collect();
                texts.extend(docs.into_iter().map(|d| (d, false)));
                Some(Parts {
                    texts,
                    pairs: n,
                    items: n,
                })
            }
            InputKind::Prompt | InputKind::Chat => None,
        }
    }
}

/// A request's input by key: the prompt's [`crate::keys::text_hash`], or that of the
/// `messages_json` text. Token-count keys derive from it ([`key`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InputRef {
    /// Prompt or chat.
    pub kind: InputKind,
    /// The hash of the text sent.
    pub hash: TextKey,
}

/// A request's input: the completions prompt, or the chat messages.
pub enum Input<'a> {
    /// A completions prompt.
    Prompt(&'a str),
    /// A chat `messages` array.
    Chat(Value),
}

/// The token-cache key of an input: a prompt by its text's key; a chat input by its messages'
/// key and how they are turned into text (which template, or raw), so a re-analysis need not
/// render the template again (or read the messages) to find its count.
pub fn key(input: InputRef, template: Option<&ChatTemplate>) -> (TextKey, bool) {
    match input.kind {
        // Parts are counted by their own texts' keys; this key names the whole input only.
        InputKind::Prompt | InputKind::Items | InputKind::Pairs => (input.hash, true),
        InputKind::Chat => {
            let seed = template.map_or_else(|| text_hash("raw messages\0"), |t| t.digest());
            (derived_key(seed, input.hash), false)
        }
    }
}

impl<'a> Input<'a> {
    /// The input sent as `text` (a prompt, or `messages_json`); `None` for messages that are
    /// not a JSON array, and for inputs counted in parts.
    pub fn of(kind: InputKind, text: &'a str) -> Option<Input<'a>> {
        match kind {
            InputKind::Prompt => Some(Input::Prompt(text)),
            // Counted in parts ([`Parts`]), not as one text.
            InputKind::Items | InputKind::Pairs => None,
            InputKind::Chat => {
                let msgs: Value = serde_json::from_str(text).ok()?;
                msgs.is_array().then_some(Input::Chat(msgs))
            }
        }
    }

    /// Whether the tokenizer adds its special tokens when this input is encoded.
    pub fn add_special_tokens(&self) -> bool {
        matches!(self, Input::Prompt(_))
    }

    /// Its text through `template`; a template that fails to render is an error.
    pub fn render(&self, template: Option<&ChatTemplate>) -> Result<Cow<'_, str>> {
        match (self, template) {
            (Input::Prompt(p), _) => Ok(Cow::Borrowed(p)),
            (Input::Chat(m), Some(t)) => t.render(m).map(Cow::Owned),
            (Input::Chat(m), None) => Ok(Cow::Owned(joined_contents(m))),
        }
    }

    /// Its text through `template`, falling back to the joined message contents (with one
    /// warning) when the template cannot render it: a report goes on.
    pub fn text(&self, template: Option<&ChatTemplate>, warned: &std::sync::Once) -> Cow<'_, str> {
        match self.render(template) {
            Ok(t) => t,
            Err(e) => {
                warned.call_once(|| tracing::warn!("{e}; counting raw message contents instead"));
                match self {
                    Input::Chat(m) => Cow::Owned(joined_contents(m)),
                    Input::Prompt(p) => Cow::Borrowed(p),
                }
            }
        }
    }
}

/// The messages a Messages or Responses request's model sees: its system prompt, sent outside
/// the list (`system`, `instructions`, recorded in `params_json`), put back as a leading system
/// message, so the chat template renders it as the server does. `None` when there is none to
/// add (the recorded `messages_json` is then counted as it is).
pub fn with_system(api: Option<recap_schemas::Api>, params_json: Option<&str>, messages_json: &str) -> Option<String> {
    let field = api?.system_field()?;
    let params: Value = serde_json::from_str(params_json?).ok()?;
    let system = match params.get(field)? {
        Value::String(s) => s.clone(),
        // Anthropic's list of text blocks.
        Value::Array(blocks) => blocks
            .iter()
            .filter_map(|b| b.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n\n"),
        _ => return None,
    };
    let Ok(Value::Array(mut messages)) = serde_json::from_str::<Value>(messages_json) else {
        return None;
    };
    messages.insert(0, serde_json::json!({"role": "system", "content": system}));
    Some(Value::Array(messages).to_string())
}

/// Message contents joined by newlines (`--isl raw`).
fn joined_contents(msgs: &Value) -> String {
    msgs.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|m| m.get("content").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}
