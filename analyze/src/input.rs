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
}

impl InputKind {
    /// Its spelling in `records.parquet`.
    pub fn as_str(self) -> &'static str {
        match self {
            InputKind::Prompt => "prompt",
            InputKind::Chat => "chat",
        }
    }

    /// The kind spelled `s`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "prompt" => Some(InputKind::Prompt),
            "chat" => Some(InputKind::Chat),
            _ => None,
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
        InputKind::Prompt => (input.hash, true),
        InputKind::Chat => {
            let seed = template.map_or_else(|| text_hash("raw messages\0"), |t| t.digest());
            (derived_key(seed, input.hash), false)
        }
    }
}

impl<'a> Input<'a> {
    /// The input sent as `text` (a prompt, or `messages_json`); `None` for messages that are
    /// not a JSON array.
    pub fn of(kind: InputKind, text: &'a str) -> Option<Input<'a>> {
        match kind {
            InputKind::Prompt => Some(Input::Prompt(text)),
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
