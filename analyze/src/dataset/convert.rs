//! `analyze dataset sharegpt`: conversations into rows, the reference answer's token length
//! kept as the output budget (vLLM's `sharegpt` dataset), over-long items dropped or truncated.
//!
//! Accepted input: a ShareGPT JSON array, ShareGPT items one per line, or JSONL rows with
//! `prompt` or `messages` and an optional answer field (`completion`, `response`, `output`,
//! `answer` or `reference`). The first user turn is the prompt, the reply after it the
//! reference answer.

use std::collections::BTreeMap;
use std::path::Path;

use rayon::prelude::*;
use recap_schemas::dataset::{DatasetRow, RowPlan};
use serde_json::Value;

use super::Measure;
use crate::input::Input;
use crate::{Error, Result};

/// What an over-long item becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OverContext {
    /// Left out (and counted).
    Drop,
    /// Its prompt cut, at a token boundary, to what fits.
    Truncate,
}

/// How items become rows.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Use the reference answer's length as `max_tokens` (else `fallback_osl`).
    pub reference_osl: bool,
    /// `max_tokens` of items without a reference answer, or of every item when
    /// `reference_osl` is off.
    pub fallback_osl: Option<u32>,
    /// Input + output must fit this (the model's context).
    pub context: Option<u32>,
    /// What happens to items over `context`.
    pub over_context: OverContext,
    /// Keep at most this many rows (the first usable ones).
    pub limit: Option<usize>,
    /// Write `ignore_eos` and `min_tokens` so the server generates the budget.
    pub ignore_eos: bool,
}

/// One conversation reduced to what a row needs.
struct Item {
    /// The prompt as the file gave it: messages (chat) or text.
    prompt: Prompt,
    answer: Option<String>,
}

enum Prompt {
    Text(String),
    Messages(Vec<Value>),
}

const ANSWER_FIELDS: &[&str] = &["completion", "response", "output", "answer", "reference"];

/// Reads the items of `path`; unusable ones are counted by reason.
fn read_items(path: &Path, skipped: &mut BTreeMap<String, u64>) -> Result<Vec<Item>> {
    let bytes = std::fs::read(path).map_err(|source| Error::unreadable(path, source))?;
    let name = path.display();
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    let values: Vec<(u64, Value)> = if first == Some(&b'[') {
        let items: Vec<Value> = serde_json::from_slice(&bytes)
            .map_err(|e| Error::Input(format!("{name}: starts with `[` but is not a JSON array: {e}")))?;
        items.into_iter().enumerate().map(|(i, v)| (i as u64 + 1, v)).collect()
    } else {
        let text = std::str::from_utf8(&bytes).map_err(|e| Error::Input(format!("{name}: not UTF-8: {e}")))?;
        text.lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| {
                serde_json::from_str(l)
                    .map(|v| (i as u64 + 1, v))
                    .map_err(|e| Error::Input(format!("{name} line {}: invalid JSON: {e}", i + 1)))
            })
            .collect::<Result<_>>()?
    };
    let mut skip = |why: &str| *skipped.entry(why.to_string()).or_insert(0) += 1;
    let mut items = Vec::with_capacity(values.len());
    for (_, v) in values {
        let turns = v
            .get("conversations")
            .or_else(|| v.get("conversation"))
            .and_then(Value::as_array);
        if let Some(turns) = turns {
            let role = |t: &Value| {
                t.get("from")
                    .or_else(|| t.get("role"))
                    .and_then(Value::as_str)
                    .map(str::to_string)
            };
            let text = |t: &Value| {
                t.get("value")
                    .or_else(|| t.get("content"))
                    .and_then(Value::as_str)
                    .map(str::to_string)
            };
            let Some(q) = turns
                .iter()
                .position(|t| matches!(role(t).as_deref(), Some("human" | "user")))
            else {
                skip("items without a user turn");
                continue;
            };
            let Some(prompt) = text(&turns[q]) else {
                skip("items without a user turn");
                continue;
            };
            let answer = turns
                .get(q + 1)
                .filter(|t| {
                    matches!(
                        role(t).as_deref(),
                        Some("gpt" | "assistant" | "chatgpt" | "bard" | "bing")
                    )
                })
                .and_then(text);
            items.push(Item {
                prompt: Prompt::Text(prompt),
                answer,
            });
            continue;
        }
        let answer = ANSWER_FIELDS
            .iter()
            .find_map(|f| v.get(*f).and_then(Value::as_str))
            .map(str::to_string);
        let prompt = match (v.get("prompt"), v.get("messages")) {
            (Some(Value::String(p)), None) => Prompt::Text(p.clone()),
            (None, Some(Value::Array(m))) if !m.is_empty() => Prompt::Messages(m.clone()),
            _ => {
                skip("items with neither `conversations`, a `prompt` string nor `messages`");
                continue;
            }
        };
        items.push(Item { prompt, answer });
    }
    Ok(items)
}

/// The rows of `path`, and what was dropped or changed, by reason.
pub fn generate(path: &Path, spec: &Spec, measure: &Measure<'_>) -> Result<(Vec<DatasetRow>, BTreeMap<String, u64>)> {
    let mut notes = BTreeMap::new();
    let items = read_items(path, &mut notes)?;
    let rows: Vec<Outcome> = items
        .par_iter()
        .map(|item| one(item, spec, measure))
        .collect::<Result<_>>()?;
    let mut out = Vec::new();
    for (row, note) in rows {
        if row.is_some() && spec.limit.is_some_and(|n| out.len() >= n) {
            break;
        }
        if let Some(why) = note {
            *notes.entry(why.to_string()).or_insert(0) += 1;
        }
        out.extend(row);
    }
    if out.is_empty() {
        return Err(Error::Input(format!("{}: no usable conversation", path.display())));
    }
    Ok((out, notes))
}

/// An item's row (if it has one) and what happened to it (if anything).
type Outcome = (Option<DatasetRow>, Option<&'static str>);

/// One item's row, or why it has none.
fn one(item: &Item, spec: &Spec, measure: &Measure<'_>) -> Result<Outcome> {
    let none = |why| Ok((None, Some(why)));
    let reference = item.answer.as_deref().map(|a| measure.tokens(a)).transpose()?;
    let osl = match (spec.reference_osl, reference, spec.fallback_osl) {
        (true, Some(n), _) if n > 0 => n,
        (_, _, Some(n)) => n,
        (true, _, None) => return none("items without a reference answer (give --osl to keep them)"),
        (false, _, None) => return none("items without an output budget"),
    };
    let (mut messages, mut prompt) = match &item.prompt {
        Prompt::Messages(m) => (Some(m.clone()), None),
        Prompt::Text(t) => match measure.api() {
            recap_schemas::Api::Chat | recap_schemas::Api::Responses | recap_schemas::Api::Messages => {
                (Some(vec![serde_json::json!({"role": "user", "content": t})]), None)
            }
            recap_schemas::Api::Completions | recap_schemas::Api::Embeddings | recap_schemas::Api::Rerank => {
                (None, Some(t.clone()))
            }
        },
    };
    let isl_of = |messages: &Option<Vec<Value>>, prompt: &Option<String>| -> Result<u32> {
        match (messages, prompt) {
            (Some(m), _) => measure.isl_of(&Input::Chat(Value::Array(m.clone()))),
            (None, Some(p)) => measure.isl_of(&Input::Prompt(p)),
            (None, None) => Ok(0),
        }
    };
    let mut isl = isl_of(&messages, &prompt)?;
    let mut note = None;
    if let Some(ctx) = spec.context {
        if isl + osl > ctx {
            if spec.over_context == OverContext::Drop || osl >= ctx {
                return none("items over --context (dropped)");
            }
            // Cut the last message's (or the prompt's) text at a token boundary until the
            // whole input fits; each round removes what the last count was over by.
            let budget = ctx - osl;
            let mut rounds = 0;
            while isl > budget {
                rounds += 1;
                let text: &mut String = match (&mut messages, &mut prompt) {
                    (Some(m), _) => match m.last_mut().and_then(|x| x.get_mut("content")) {
                        Some(Value::String(s)) => s,
                        _ => return none("items over --context whose last message cannot be cut"),
                    },
                    (None, Some(p)) => p,
                    (None, None) => return none("items over --context whose last message cannot be cut"),
                };
                let own = measure.tokens(text)?;
                let keep = own.saturating_sub(isl - budget);
                if keep == 0 || rounds > 8 {
                    return none("items over --context that cannot be cut to fit");
                }
                *text = measure.counter().truncate(text, keep)?;
                isl = isl_of(&messages, &prompt)?;
                note = Some("items over --context truncated to fit");
            }
        }
    }
    let plan = RowPlan {
        max_tokens: Some(osl),
        min_tokens: spec.ignore_eos.then_some(osl),
        ignore_eos: spec.ignore_eos.then_some(true),
        isl_tokens: Some(isl),
        reference_output_tokens: reference,
        ..RowPlan::default()
    };
    let row = match (measure.api(), prompt) {
        // An embedded text is a one-item batch.
        (recap_schemas::Api::Embeddings, Some(p)) => DatasetRow {
            input: Some(vec![p]),
            plan,
            ..DatasetRow::default()
        },
        (_, prompt) => DatasetRow {
            prompt,
            messages,
            plan,
            ..DatasetRow::default()
        },
    };
    Ok((Some(row), note))
}
