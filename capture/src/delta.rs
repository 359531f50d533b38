//! Extracts the few fields Recap records from an OpenAI-compatible response JSON.
//!
//! Works for streaming chunks (`choices[0].delta`, `choices[0].text`) and whole non-streaming
//! bodies (`choices[0].message`), for chat and completions alike. Only the small fields are
//! decoded (borrowed where the JSON has no escapes); everything else in the object is skipped.
//! Tool-call deltas are kept as their raw JSON text so `analyze` can decide what to count.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

/// What one response object said, ready to become an `events` row.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Delta {
    /// Content text (`delta.content`, `message.content` or `text`).
    pub content: Option<String>,
    /// Reasoning text (`reasoning_content` or `reasoning`).
    pub reasoning: Option<String>,
    /// `tool_calls` as raw JSON.
    pub tool_calls_json: Option<String>,
    /// `role`.
    pub role: Option<String>,
    /// `finish_reason`.
    pub finish_reason: Option<String>,
    /// `usage.prompt_tokens`.
    pub usage_prompt_tokens: Option<u32>,
    /// `usage.completion_tokens`.
    pub usage_completion_tokens: Option<u32>,
    /// `usage.completion_tokens_details.reasoning_tokens`.
    pub usage_reasoning_tokens: Option<u32>,
    /// `error.message` (or the whole `error` value) when the server put an error in the stream.
    pub error_message: Option<String>,
}

impl Delta {
    /// Whether this carries generated output (non-empty content, reasoning or a tool call):
    /// the default definition of a "token event" for TTFT.
    pub fn has_output(&self) -> bool {
        self.content.as_deref().is_some_and(|s| !s.is_empty())
            || self.reasoning.as_deref().is_some_and(|s| !s.is_empty())
            || self.tool_calls_json.is_some()
    }
}

#[derive(Deserialize)]
struct Chunk<'a> {
    #[serde(borrow, default)]
    choices: Option<Vec<Choice<'a>>>,
    #[serde(default)]
    usage: Option<Usage>,
    #[serde(borrow, default)]
    error: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Choice<'a> {
    #[serde(borrow, default)]
    delta: Option<Message<'a>>,
    #[serde(borrow, default)]
    message: Option<Message<'a>>,
    #[serde(borrow, default)]
    text: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    finish_reason: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Message<'a> {
    #[serde(borrow, default)]
    content: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    reasoning_content: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    reasoning: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    role: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    tool_calls: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Usage {
    #[serde(default)]
    prompt_tokens: Option<u64>,
    #[serde(default)]
    completion_tokens: Option<u64>,
    #[serde(default)]
    completion_tokens_details: Option<UsageDetails>,
}

#[derive(Deserialize)]
struct UsageDetails {
    #[serde(default)]
    reasoning_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct ErrorBody<'a> {
    #[serde(borrow, default)]
    message: Option<Cow<'a, str>>,
}

fn clamp_u32(v: Option<u64>) -> Option<u32> {
    v.map(|x| u32::try_from(x).unwrap_or(u32::MAX))
}

/// Parses one response object. Errors are JSON errors, with serde's line/column detail.
pub fn parse(json: &str) -> Result<Delta, serde_json::Error> {
    let chunk: Chunk<'_> = serde_json::from_str(json)?;
    let mut d = Delta::default();
    if let Some(choice) = chunk.choices.and_then(|c| c.into_iter().next()) {
        let msg = choice.delta.or(choice.message);
        if let Some(m) = msg {
            d.content = m.content.map(Cow::into_owned);
            d.reasoning = m.reasoning_content.or(m.reasoning).map(Cow::into_owned);
            d.role = m.role.map(Cow::into_owned);
            d.tool_calls_json = m.tool_calls.filter(|r| r.get() != "null").map(|r| r.get().to_owned());
        }
        if d.content.is_none() {
            d.content = choice.text.map(Cow::into_owned);
        }
        d.finish_reason = choice.finish_reason.map(Cow::into_owned);
    }
    if let Some(u) = chunk.usage {
        d.usage_prompt_tokens = clamp_u32(u.prompt_tokens);
        d.usage_completion_tokens = clamp_u32(u.completion_tokens);
        d.usage_reasoning_tokens = clamp_u32(u.completion_tokens_details.and_then(|x| x.reasoning_tokens));
    }
    if let Some(err) = chunk.error {
        let text = err.get();
        d.error_message = match serde_json::from_str::<ErrorBody<'_>>(text) {
            Ok(ErrorBody { message: Some(m) }) => Some(m.into_owned()),
            _ => Some(text.to_owned()),
        };
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_role_only_event() {
        let d = parse(r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}"#)
            .expect("valid");
        assert_eq!(d.role.as_deref(), Some("assistant"));
        assert_eq!(d.content.as_deref(), Some(""));
        assert!(!d.has_output());
    }

    #[test]
    fn chat_content_with_escapes() {
        let d = parse(r#"{"choices":[{"delta":{"content":"a\n\"b\" \u00e9"}}]}"#).expect("valid");
        assert_eq!(d.content.as_deref(), Some("a\n\"b\" é"));
        assert!(d.has_output());
    }

    #[test]
    fn null_content_is_none() {
        let d = parse(r#"{"choices":[{"delta":{"role":"assistant","content":null}}]}"#).expect("valid");
        assert_eq!(d.content, None);
    }

    #[test]
    fn reasoning_both_spellings() {
        let a = parse(r#"{"choices":[{"delta":{"reasoning_content":"think"}}]}"#).expect("valid");
        let b = parse(r#"{"choices":[{"delta":{"reasoning":"think"}}]}"#).expect("valid");
        assert_eq!(a.reasoning.as_deref(), Some("think"));
        assert_eq!(a, b);
        assert!(a.has_output());
    }

    #[test]
    fn tool_call_delta_kept_raw() {
        let d = parse(r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"x\""}}]}}]}"#)
            .expect("valid");
        assert_eq!(
            d.tool_calls_json.as_deref(),
            Some(r#"[{"index":0,"function":{"arguments":"{\"x\""}}]"#)
        );
        assert!(d.has_output());
    }

    #[test]
    fn finish_and_usage_only() {
        let f = parse(r#"{"choices":[{"delta":{},"finish_reason":"stop"}]}"#).expect("valid");
        assert_eq!(f.finish_reason.as_deref(), Some("stop"));
        let u = parse(
            r#"{"choices":[],"usage":{"prompt_tokens":12,"completion_tokens":34,"total_tokens":46,
               "completion_tokens_details":{"reasoning_tokens":5}}}"#,
        )
        .expect("valid");
        assert_eq!(
            (
                u.usage_prompt_tokens,
                u.usage_completion_tokens,
                u.usage_reasoning_tokens
            ),
            (Some(12), Some(34), Some(5))
        );
        assert_eq!(u.content, None);
    }

    #[test]
    fn completions_text_and_non_streaming_message() {
        let c = parse(r#"{"choices":[{"text":"hi","finish_reason":null}]}"#).expect("valid");
        assert_eq!(c.content.as_deref(), Some("hi"));
        let m = parse(r#"{"choices":[{"message":{"role":"assistant","content":"whole"},"finish_reason":"length"}],"usage":{"prompt_tokens":1,"completion_tokens":2}}"#)
            .expect("valid");
        assert_eq!(m.content.as_deref(), Some("whole"));
        assert_eq!(m.usage_completion_tokens, Some(2));
    }

    #[test]
    fn in_stream_error_object() {
        let e = parse(r#"{"error":{"message":"overloaded","code":503}}"#).expect("valid");
        assert_eq!(e.error_message.as_deref(), Some("overloaded"));
    }

    #[test]
    fn malformed_json_is_an_error() {
        assert!(parse(r#"{"choices": [ {"delta": "#).is_err());
        assert!(parse("[DONE]").is_err());
    }
}
