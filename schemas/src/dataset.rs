//! Dataset rows: the JSONL lines `analyze dataset` writes and `capture --dataset` reads.
//!
//! A row is one request to send: `prompt` (completions) or `messages` (chat), plus the plan
//! that made it. Capture sends `max_tokens`, `min_tokens` and `ignore_eos` in the body and
//! records `isl_tokens` and `prefix_group` per request, so analyze can set what was planned
//! beside what the server saw. The other fields are read by load plans (`timestamp_ms`,
//! `session_id`, `turn`, `think_time_ms`, `reference_output`) or kept for reports. Unknown fields are ignored, so a user's JSONL
//! with extra ids is a valid dataset. `docs/datasets.md` is the prose reference.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One dataset row as written on disk (one JSON object per line).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DatasetRow {
    /// Completions prompt. Exactly one of `prompt`, `messages`, `input` and `query` (with
    /// `documents`) is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// Chat messages (`[{"role": ..., "content": ...}, ...]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages: Option<Vec<Value>>,
    /// Texts embedded in one request (`--api embeddings`): the row is its batch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<Vec<String>>,
    /// The query of a rerank request (with `documents`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// The documents a rerank request scores against `query`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub documents: Option<Vec<String>>,
    /// Everything else: the row's plan.
    #[serde(flatten)]
    pub plan: RowPlan,
}

/// What a dataset row plans beyond its prompt. Every field is optional.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RowPlan {
    /// Output budget sent as the body's `max_tokens` (overrides `capture --max-tokens`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// Sent as the body's `min_tokens` (vLLM, SGLang): with `ignore_eos`, the server generates
    /// exactly `max_tokens` tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_tokens: Option<u32>,
    /// Sent as the body's `ignore_eos` (vLLM, SGLang, llama.cpp, TensorRT-LLM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignore_eos: Option<bool>,
    /// Input tokens as generated: counted the way the server counts them (through the chat
    /// template for `messages`, with the tokenizer's BOS for `prompt`) by the tokenizer named
    /// in the generator's report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isl_tokens: Option<u32>,
    /// Token length of the reference answer (ShareGPT's first reply), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference_output_tokens: Option<u32>,
    /// Which shared prefix the prompt starts with (0-based), for prefix-cache studies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix_group: Option<u32>,
    /// When to send the row (`--schedule timestamps`), in ms from any origin: capture sends
    /// each row at its offset from the first row's. Any non-negative finite number: traces are
    /// often fractional (sub-millisecond precision is kept). Whole values are written as JSON
    /// integers, so files written before fractions were allowed read and write the same.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "millis::deserialize",
        serialize_with = "millis::serialize"
    )]
    pub timestamp_ms: Option<f64>,
    /// The multi-turn session the row belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// 0-based turn within `session_id`: capture sends a session's turns in this order, each
    /// with the conversation so far (earlier turns and their answers) before its own messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub turn: Option<u32>,
    /// Pause between the previous turn's answer and this turn
    /// (`capture --think-time from-dataset`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub think_time_ms: Option<u64>,
    /// The dataset's own answer to this turn (ShareGPT's reply): the history later turns
    /// carry with `capture --session-history dataset` instead of the answer recorded live.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference_output: Option<String>,
}

/// `timestamp_ms`: a non-negative finite number on disk, an integer when it is whole.
mod millis {
    use serde::{Deserialize, Deserializer, Serializer};

    /// Largest f64 below which every whole value is exact as an integer (2^53).
    const EXACT: f64 = 9_007_199_254_740_992.0;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
        match Option::<f64>::deserialize(d)? {
            Some(x) if !(x.is_finite() && x >= 0.0) => Err(serde::de::Error::custom(format!(
                "expected a non-negative number of milliseconds, got {x}"
            ))),
            // -0.0 is 0.
            v => Ok(v.map(|x| x + 0.0)),
        }
    }

    pub fn serialize<S: Serializer>(v: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
        match *v {
            Some(x) if x.fract() == 0.0 && (0.0..EXACT).contains(&x) => s.serialize_u64(x as u64),
            Some(x) => s.serialize_f64(x),
            None => s.serialize_none(),
        }
    }
}

/// Every field name a dataset row may carry, in documentation order.
pub const FIELDS: &[&str] = &[
    "prompt",
    "messages",
    "input",
    "query",
    "documents",
    "max_tokens",
    "min_tokens",
    "ignore_eos",
    "isl_tokens",
    "reference_output_tokens",
    "prefix_group",
    "timestamp_ms",
    "session_id",
    "turn",
    "think_time_ms",
    "reference_output",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_may_be_fractional_but_not_negative_and_whole_ones_stay_integers() {
        let row = |t: &str| serde_json::from_str::<DatasetRow>(&format!(r#"{{"prompt":"a","timestamp_ms":{t}}}"#));
        for (text, want) in [
            ("0", 0.0),
            ("0.0", 0.0),
            ("12.5", 12.5),
            ("1700000000123.25", 1_700_000_000_123.25),
        ] {
            let r = row(text).expect(text);
            assert_eq!(r.plan.timestamp_ms, Some(want), "{text}");
        }
        for bad in ["-1", "-0.5", "\"5\"", "true", "[]"] {
            let err = row(bad).expect_err(bad).to_string();
            assert!(err.contains("milliseconds") || err.contains("f64"), "{bad}: {err}");
        }
        assert_eq!(row("null").expect("null").plan.timestamp_ms, None);
        let text = |t: f64| {
            let r = DatasetRow {
                prompt: Some("a".into()),
                plan: RowPlan {
                    timestamp_ms: Some(t),
                    ..RowPlan::default()
                },
                ..DatasetRow::default()
            };
            serde_json::to_string(&r).expect("serializes")
        };
        assert_eq!(
            text(150.0),
            r#"{"prompt":"a","timestamp_ms":150}"#,
            "as before fractions"
        );
        assert_eq!(text(12.5), r#"{"prompt":"a","timestamp_ms":12.5}"#);
    }

    #[test]
    fn round_trips_and_omits_absent_fields() {
        let row = DatasetRow {
            prompt: Some("hi".into()),
            plan: RowPlan {
                max_tokens: Some(8),
                isl_tokens: Some(3),
                prefix_group: Some(1),
                ..RowPlan::default()
            },
            ..DatasetRow::default()
        };
        let text = serde_json::to_string(&row).expect("serializes");
        assert_eq!(
            text,
            r#"{"prompt":"hi","max_tokens":8,"isl_tokens":3,"prefix_group":1}"#
        );
        let back: DatasetRow = serde_json::from_str(&text).expect("parses");
        assert_eq!(back, row);
    }

    #[test]
    fn unknown_fields_are_ignored_and_every_field_is_listed() {
        let row: DatasetRow = serde_json::from_str(r#"{"prompt":"a","id":"x-1"}"#).expect("parses");
        assert_eq!(row.prompt.as_deref(), Some("a"));
        let full = DatasetRow {
            prompt: Some(String::new()),
            messages: Some(vec![]),
            input: Some(vec![]),
            query: Some(String::new()),
            documents: Some(vec![]),
            plan: RowPlan {
                max_tokens: Some(1),
                min_tokens: Some(1),
                ignore_eos: Some(true),
                isl_tokens: Some(1),
                reference_output_tokens: Some(1),
                prefix_group: Some(1),
                timestamp_ms: Some(1.0),
                session_id: Some("s".into()),
                turn: Some(0),
                think_time_ms: Some(1),
                reference_output: Some("a".into()),
            },
        };
        let v = serde_json::to_value(&full).expect("serializes");
        let keys: Vec<&str> = v.as_object().expect("object").keys().map(String::as_str).collect();
        let mut listed = FIELDS.to_vec();
        listed.sort_unstable();
        let mut keys = keys;
        keys.sort_unstable();
        assert_eq!(keys, listed);
    }
}
