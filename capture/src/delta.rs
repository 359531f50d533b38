//! Extracts the fields Recap's analysis reads fast from an OpenAI-compatible response JSON.
//!
//! Works for streaming chunks (`choices[k].delta`, `choices[k].text`) and whole non-streaming
//! bodies (`choices[k].message`), for chat and completions alike, taking the choice with
//! index 0 when an object carries several. Only the small fields are decoded (borrowed where
//! the JSON has no escapes); everything else is skipped here and kept whole in the `raw`
//! column. Tool-call deltas are kept as their raw JSON text so `analyze` can decide what to
//! count.

mod scan;

use std::borrow::Cow;
use std::ops::Range;

use serde::Deserialize;
use serde_json::value::RawValue;

/// What one response object said, ready to become an `events` row.
#[derive(Debug, Default, Clone, PartialEq)]
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
    /// `usage.prompt_tokens_details.cached_tokens`, else llama.cpp's `timings.cache_n`.
    pub usage_cached_tokens: Option<u32>,
    /// `index` of the choice the fields above come from.
    pub choice_index: Option<u32>,
    /// llama.cpp's `timings` (server-side prefill and decode).
    pub timings: Option<Timings>,
    /// The object's `id` (the server's name for the request), when non-empty and asked for
    /// ([`parse_with`]): copying it out of every chunk would cost an allocation per event.
    pub id: Option<String>,
    /// `error.message` (or the whole `error` value), or the `message` of an
    /// `"object": "error"` object: the server reported an error in the response.
    pub error_message: Option<String>,
    /// Where the content lies, verbatim, in the parsed text, in place of `content`: a stream's
    /// template ([`parse_in_stream`]) reads a content without escapes there and copies
    /// nothing, so the event's `raw` can hold it too ([`Delta::content`] reads either).
    pub content_in: Option<Range<usize>>,
}

/// llama.cpp's `timings` object, the fields analysis uses.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Timings {
    /// `prompt_ms`: prefill time.
    pub prompt_ms: Option<f64>,
    /// `predicted_ms`: decode time.
    pub predicted_ms: Option<f64>,
    /// `prompt_n`: prompt tokens processed (cache hits excluded).
    pub prompt_n: Option<u32>,
    /// `predicted_n`: tokens generated.
    pub predicted_n: Option<u32>,
}

impl Delta {
    /// The content of `json`, the text this was parsed from, wherever it is.
    pub fn content<'a>(&'a self, json: &'a str) -> Option<&'a str> {
        match &self.content_in {
            Some(at) => json.get(at.clone()),
            None => self.content.as_deref(),
        }
    }

    /// This with its content copied out of `json` (the text it was parsed from) into
    /// `content`: what [`parse_with`] gives for the same text.
    pub fn owned(mut self, json: &str) -> Delta {
        if let Some(at) = self.content_in.take() {
            self.content = json.get(at).map(str::to_owned);
        }
        self
    }

    /// Whether this carries generated output (non-empty content, reasoning or a tool call):
    /// the default definition of a "token event" for TTFT.
    pub fn has_output(&self) -> bool {
        self.content.as_deref().is_some_and(|s| !s.is_empty())
            || self.content_in.as_ref().is_some_and(|r| !r.is_empty())
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
    /// Only error objects have a top-level `message`: `object` is then read in a second pass,
    /// so ordinary chunks skip it (and `id`) at the cost of ignoring them.
    #[serde(borrow, default)]
    message: Option<&'a RawValue>,
    #[serde(default)]
    timings: Option<RawTimings>,
}

/// The fields read only when needed: the `id` once per request, `object` of an object with a
/// top-level `message`.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow, default)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    object: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct RawTimings {
    #[serde(default)]
    prompt_ms: Option<f64>,
    #[serde(default)]
    predicted_ms: Option<f64>,
    #[serde(default)]
    prompt_n: Option<u64>,
    #[serde(default)]
    predicted_n: Option<u64>,
    #[serde(default)]
    cache_n: Option<u64>,
}

#[derive(Deserialize)]
struct Choice<'a> {
    #[serde(default)]
    index: Option<u64>,
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
    #[serde(default)]
    prompt_tokens_details: Option<PromptDetails>,
}

#[derive(Deserialize)]
struct UsageDetails {
    #[serde(default)]
    reasoning_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct PromptDetails {
    #[serde(default)]
    cached_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct ErrorBody<'a> {
    #[serde(borrow, default)]
    message: Option<Cow<'a, str>>,
}

pub(crate) fn clamp_u32(v: Option<u64>) -> Option<u32> {
    v.map(|x| u32::try_from(x).unwrap_or(u32::MAX))
}

/// The message of an error value: its `message` field, the string itself, else its JSON text.
pub(crate) fn error_text(json: &str) -> String {
    match serde_json::from_str::<ErrorBody<'_>>(json) {
        Ok(ErrorBody { message: Some(m) }) => m.into_owned(),
        _ => match serde_json::from_str::<Cow<'_, str>>(json) {
            Ok(m) => m.into_owned(),
            Err(_) => json.to_owned(),
        },
    }
}

/// Parses one response object. Errors are JSON errors, with serde's line/column detail.
pub fn parse(json: &str) -> Result<Delta, serde_json::Error> {
    parse_with(json, true)
}

/// [`parse`], with the object's `id` copied out only when `want_id`.
pub fn parse_with(json: &str, want_id: bool) -> Result<Delta, serde_json::Error> {
    match scan::parse(json, want_id) {
        Some((d, _)) => Ok(d),
        None => parse_serde(json, want_id),
    }
}

/// A stream's latest scanned chunk, kept as a template for the next. The chunks of one answer
/// nearly always differ only in their content string (vLLM, SGLang and llama.cpp repeat the
/// same `id`, `created`, `model` around it), so the next chunk is read by comparing the text
/// around that string with the template's and scanning only the string: ~0.7k instead of
/// ~3.1k instructions per event (B3). Replacing one string token by another leaves every other
/// token, and so every other extracted field, as it was; anything else takes the full path.
#[derive(Debug, Default)]
pub struct StreamMemo {
    /// The template chunk's text.
    text: String,
    /// Its content string token, quotes included.
    hole: Range<usize>,
    /// What it was read as, `content` left out.
    delta: Delta,
    want_id: bool,
    armed: bool,
    /// Templates in a row that the next chunk did not fit: a server whose chunks differ in
    /// more than their content (a per-chunk counter or timestamp) stops paying for copies.
    misses: u8,
}

/// Templates that may miss in a row before a stream stops keeping them.
const MEMO_MISSES: u8 = 4;

impl StreamMemo {
    /// The content of `json`, when `json` is the template with another string in its
    /// content's place (then the template's reading is `json`'s, that content apart): where
    /// it lies in `json` when it holds no escape, else decoded.
    #[inline]
    fn fit(&self, json: &str, want_id: bool) -> Option<Result<Range<usize>, String>> {
        if !self.armed || self.want_id != want_id {
            return None;
        }
        let (head, tail) = (&self.text[..self.hole.start], &self.text[self.hole.end..]);
        if json.len() < head.len() + 2 + tail.len() || !json.starts_with(head) || !json.ends_with(tail) {
            return None;
        }
        scan::string_at(json, head.len(), json.len() - tail.len())
    }

    /// Makes `json`, read as `d`, the template.
    fn keep(&mut self, json: &str, hole: Range<usize>, d: &mut Delta, want_id: bool) {
        self.text.clear();
        self.text.push_str(json);
        self.hole = hole;
        let content = d.content.take();
        self.delta.clone_from(d);
        d.content = content;
        self.want_id = want_id;
        self.armed = true;
    }
}

/// [`parse_with`] for one event of a stream, reading it against the stream's previous event
/// (`memo`) where it fits; the same `Delta` either way.
#[inline]
pub fn parse_in_stream(json: &str, want_id: bool, memo: &mut StreamMemo) -> Result<Delta, serde_json::Error> {
    if let Some(content) = memo.fit(json, want_id) {
        memo.misses = 0;
        // Built where it is returned, field by field: a `Delta` is ~300 bytes, and each move
        // a copy (a derived `clone()` the compiler does not inline is built apart and then
        // copied: +68 instructions per event, B3).
        let (content, content_in) = match content {
            Ok(at) => (None, Some(at)),
            Err(decoded) => (Some(decoded), None),
        };
        let t = &memo.delta;
        return Ok(Delta {
            content,
            reasoning: t.reasoning.clone(),
            tool_calls_json: t.tool_calls_json.clone(),
            role: t.role.clone(),
            finish_reason: t.finish_reason.clone(),
            usage_prompt_tokens: t.usage_prompt_tokens,
            usage_completion_tokens: t.usage_completion_tokens,
            usage_reasoning_tokens: t.usage_reasoning_tokens,
            usage_cached_tokens: t.usage_cached_tokens,
            choice_index: t.choice_index,
            timings: t.timings,
            id: t.id.clone(),
            error_message: t.error_message.clone(),
            content_in,
        });
    }
    if memo.armed {
        memo.misses = memo.misses.saturating_add(1);
    }
    match scan::parse(json, want_id) {
        Some((mut d, hole)) => {
            match hole {
                Some(hole) if memo.misses < MEMO_MISSES => memo.keep(json, hole, &mut d, want_id),
                _ => memo.armed = false,
            }
            Ok(d)
        }
        None => {
            memo.armed = false;
            parse_serde(json, want_id)
        }
    }
}

/// The definition [`parse_with`] answers by: serde over the fields above. The hot path
/// scans instead and comes here whenever it is not sure; tests compare the two.
#[doc(hidden)]
pub fn parse_serde(json: &str, want_id: bool) -> Result<Delta, serde_json::Error> {
    let chunk: Chunk<'_> = serde_json::from_str(json)?;
    let mut d = Delta::default();
    let choice = chunk.choices.and_then(|mut c| {
        // With `n > 1` an object may carry several choices: choice 0's fields are extracted
        // (never a concatenation of two), the rest stay in `raw`.
        let at = c.iter().position(|x| x.index.unwrap_or(0) == 0).unwrap_or(0);
        (at < c.len()).then(|| c.swap_remove(at))
    });
    if let Some(choice) = choice {
        d.choice_index = Some(clamp_u32(choice.index).unwrap_or(0));
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
        d.usage_cached_tokens = clamp_u32(u.prompt_tokens_details.and_then(|x| x.cached_tokens));
    }
    if let Some(t) = chunk.timings {
        d.usage_cached_tokens = d.usage_cached_tokens.or(clamp_u32(t.cache_n));
        d.timings = Some(Timings {
            prompt_ms: t.prompt_ms,
            predicted_ms: t.predicted_ms,
            prompt_n: clamp_u32(t.prompt_n),
            predicted_n: clamp_u32(t.predicted_n),
        });
    }
    let envelope = if want_id || chunk.message.is_some() {
        serde_json::from_str::<Envelope<'_>>(json).ok()
    } else {
        None
    };
    let object = envelope.as_ref().and_then(|e| e.object.as_deref());
    d.error_message = match (chunk.error, object, chunk.message) {
        (Some(err), _, _) if err.get() != "null" => Some(error_text(err.get())),
        // vLLM's older `ErrorResponse`: `{"object": "error", "message": ..., "type": ...}`.
        (_, Some("error"), Some(m)) => Some(error_text(m.get())),
        _ => None,
    };
    if want_id {
        d.id = envelope
            .and_then(|e| e.id)
            .filter(|i| !i.is_empty())
            .map(Cow::into_owned);
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The chunks of one answer that differ only in content are read against the template;
    /// one that differs elsewhere, or asks for the id when the template did not, is not.
    #[test]
    fn a_stream_reads_each_chunk_against_the_one_before() {
        let chunk = |content: &str, finish: &str| {
            format!(
                r#"{{"choices":[{{"delta":{{"content":"{content}"}},"finish_reason":{finish},"index":0}}],"created":0,"id":"cmpl-1","model":"m","object":"chat.completion.chunk"}}"#
            )
        };
        let mut memo = StreamMemo::default();
        assert!(parse_in_stream(&chunk("a", "null"), false, &mut memo).is_ok());
        for content in ["b", "a longer piece", "", r"\n\u00e9"] {
            let text = chunk(content, "null");
            assert!(memo.fit(&text, false).is_some(), "{text}");
            assert!(memo.fit(&text, true).is_none(), "{text}");
            let d = parse_in_stream(&text, false, &mut memo).expect("valid");
            // Read in place unless it holds an escape, which is decoded.
            assert_eq!(d.content_in.is_some(), !content.contains('\\'), "{text}");
            assert_eq!(d.content_in.is_some(), d.content.is_none(), "{text}");
            let want = parse_serde(&text, false).expect("valid");
            assert_eq!(d.content(&text), want.content.as_deref(), "{text}");
            assert_eq!(d.has_output(), want.has_output(), "{text}");
            assert_eq!(d.owned(&text), want, "{text}");
        }
        let last = chunk("", r#""stop""#);
        assert!(memo.fit(&last, false).is_none());
        let d = parse_in_stream(&last, false, &mut memo).expect("valid");
        assert_eq!(d.finish_reason.as_deref(), Some("stop"));
    }

    /// A server whose every chunk differs around the content stops being templated.
    #[test]
    fn a_stream_that_never_fits_stops_keeping_templates() {
        let mut memo = StreamMemo::default();
        for n in 0..10 {
            let text = format!(r#"{{"choices":[{{"delta":{{"content":"x"}}}}],"created":{n}}}"#);
            assert!(parse_in_stream(&text, false, &mut memo).is_ok());
        }
        assert!(!memo.armed);
        assert_eq!(memo.misses, MEMO_MISSES);
    }

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
    fn old_vllm_error_object_and_null_error() {
        let e = parse(
            r#"{"object":"error","message":"KV cache is full","type":"InternalServerError","param":null,"code":500}"#,
        )
        .expect("valid");
        assert_eq!(e.error_message.as_deref(), Some("KV cache is full"));
        let ok = parse(r#"{"choices":[{"index":0,"delta":{"content":"a"}}],"error":null}"#).expect("valid");
        assert_eq!(ok.error_message, None);
    }

    #[test]
    fn choice_zero_is_taken_whatever_its_place() {
        let d = parse(
            r#"{"id":"c-1","choices":[{"index":1,"delta":{"content":"B"}},{"index":0,"delta":{"content":"A"}}]}"#,
        )
        .expect("valid");
        assert_eq!((d.content.as_deref(), d.choice_index), (Some("A"), Some(0)));
        let d = parse(r#"{"choices":[{"index":1,"delta":{"content":"B"}}]}"#).expect("valid");
        assert_eq!((d.content.as_deref(), d.choice_index), (Some("B"), Some(1)));
        assert_eq!(
            parse(r#"{"id":"c-1","choices":[]}"#).expect("valid").id.as_deref(),
            Some("c-1")
        );
    }

    #[test]
    fn cached_tokens_and_llamacpp_timings() {
        let d = parse(
            r#"{"choices":[],"usage":{"prompt_tokens":100,"completion_tokens":5,"prompt_tokens_details":{"cached_tokens":64}},
               "timings":{"cache_n":60,"prompt_n":36,"prompt_ms":12.5,"predicted_n":5,"predicted_ms":40.25}}"#,
        )
        .expect("valid");
        assert_eq!(d.usage_cached_tokens, Some(64), "usage wins over cache_n");
        let t = d.timings.expect("timings");
        assert_eq!(
            (t.prompt_ms, t.predicted_ms, t.prompt_n, t.predicted_n),
            (Some(12.5), Some(40.25), Some(36), Some(5))
        );
        let only_timings = parse(r#"{"choices":[],"timings":{"cache_n":7}}"#).expect("valid");
        assert_eq!(only_timings.usage_cached_tokens, Some(7));
    }

    #[test]
    fn malformed_json_is_an_error() {
        assert!(parse(r#"{"choices": [ {"delta": "#).is_err());
        assert!(parse("[DONE]").is_err());
    }
}
