//! `analyze dataset trace`: request traces into rows with the trace's timestamps and lengths.
//!
//! A trace format is one small module that turns a file into [`TraceRequest`]s; everything
//! else (prompt text, exact lengths, prefix blocks) is shared. Traces carry no text, so each
//! prefix block id becomes a block of exactly `block_tokens` tokens of composed text, the same
//! text wherever the id appears: prefix reuse in the trace is prefix reuse on the server.

pub mod burstgpt;
pub mod mooncake;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use rayon::prelude::*;
use recap_schemas::dataset::{DatasetRow, RowPlan};

use super::compose::{Composer, Fit};
use super::{row_rng, Measure};
#[cfg(test)]
use crate::tokenize::Counter;
use crate::{Error, Result};

/// Trace file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TraceFormat {
    /// Mooncake JSONL: `timestamp` (ms), `input_length`, `output_length`, `hash_ids`.
    Mooncake,
    /// BurstGPT CSV: `Timestamp` (s), `Request tokens`, `Response tokens`.
    Burstgpt,
}

/// One request of a trace, whatever its format.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceRequest {
    /// 1-based line in the trace file, for errors.
    pub line: u64,
    /// Offset from the trace's start.
    pub timestamp_ms: f64,
    /// Input tokens.
    pub input_length: u32,
    /// Output tokens.
    pub output_length: u32,
    /// Ids of the prompt's blocks of `block_tokens` tokens; equal ids are equal text. Empty
    /// when the format has none (each prompt is then its own text).
    pub hash_ids: Vec<u64>,
}

/// Reads a trace; returns its requests and how many lines the format skips.
pub fn read(format: TraceFormat, path: &Path) -> Result<(Vec<TraceRequest>, u64)> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::unreadable(path, source))?;
    let name = path.display().to_string();
    let (rows, skipped) = match format {
        TraceFormat::Mooncake => (mooncake::parse(&text, &name)?, 0),
        TraceFormat::Burstgpt => burstgpt::parse(&text, &name)?,
    };
    if rows.is_empty() {
        return Err(Error::Input(format!("{name}: no requests in the trace")));
    }
    Ok((rows, skipped))
}

/// How trace requests become rows.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Tokens per `hash_ids` block (Mooncake: 512).
    pub block_tokens: u32,
    /// Write `ignore_eos` and `min_tokens` so the server generates the trace's output length.
    pub ignore_eos: bool,
    /// Keep at most this many requests (the first ones).
    pub limit: Option<usize>,
    /// Seed of the composed text.
    pub seed: u64,
}

const BLOCK: u64 = 11;
const UNIQUE: u64 = 12;

/// The rows of `trace`, and what had to be adjusted.
pub fn generate(
    trace: &[TraceRequest],
    spec: &Spec,
    measure: &Measure<'_>,
    composer: &Composer,
) -> Result<(Vec<DatasetRow>, BTreeMap<String, u64>)> {
    let trace = &trace[..spec.limit.unwrap_or(trace.len()).min(trace.len())];
    let fit = Fit::new(composer);
    let overhead = measure.overhead(composer)?;
    let bs = spec.block_tokens.max(1);
    // Every distinct block, exact on its own; it starts with a space, so blocks concatenate
    // on token boundaries.
    let mut ids: Vec<u64> = trace.iter().flat_map(|t| t.hash_ids.iter().copied()).collect();
    ids.sort_unstable();
    ids.dedup();
    let blocks: HashMap<u64, Vec<&str>> = ids
        .par_iter()
        .map(|&h| {
            let mut rng = row_rng(spec.seed, BLOCK, h);
            let pieces = composer.pieces(&mut rng, bs as usize);
            let (_, pieces) = fit
                .fit(&mut rng, "", pieces, 0, bs, &|t| measure.tokens(t))?
                .ok_or_else(|| Error::Input(format!("could not compose block {h} of exactly {bs} tokens")))?;
            Ok((h, pieces))
        })
        .collect::<Result<_>>()?;
    let rows: Vec<(DatasetRow, Vec<&'static str>)> = trace
        .par_iter()
        .enumerate()
        .map(|(i, t)| {
            let mut notes = Vec::new();
            let min = overhead + 1;
            let isl = if t.input_length < min {
                notes.push("input lengths raised to the shortest possible prompt");
                min
            } else {
                t.input_length
            };
            let content_tokens = isl - overhead;
            let mut pieces: Vec<&str> = Vec::with_capacity(content_tokens as usize);
            let mut rng = row_rng(spec.seed, UNIQUE, i as u64);
            // Whole blocks while the input length holds them, then part of the next one.
            let (mut left, mut keep) = (content_tokens, 0);
            for h in &t.hash_ids {
                if left == 0 {
                    notes.push("rows with more hash_ids than their input length holds (extra ids dropped)");
                    break;
                }
                let block = &blocks[h];
                if left >= bs {
                    pieces.extend_from_slice(block);
                    left = left.saturating_sub(bs);
                    keep = pieces.len();
                } else {
                    pieces.extend_from_slice(&block[..(left as usize).min(block.len())]);
                    left = 0;
                }
            }
            let left = left as usize;
            if left > 0 {
                if !t.hash_ids.is_empty() {
                    notes.push("rows with fewer hash_ids than their input length needs (the rest is their own text)");
                }
                pieces.extend(composer.pieces(&mut rng, left));
            }
            let content = fit
                .fit(&mut rng, "", pieces, keep, isl, &|c| measure.isl(c))?
                .map(|t| t.0)
                .ok_or_else(|| {
                    Error::Input(format!(
                        "trace line {}: could not compose a prompt of exactly {isl} input tokens",
                        t.line
                    ))
                })?;
            let plan = RowPlan {
                max_tokens: Some(t.output_length.max(1)),
                min_tokens: spec.ignore_eos.then_some(t.output_length.max(1)),
                ignore_eos: spec.ignore_eos.then_some(true),
                isl_tokens: Some(isl),
                timestamp_ms: Some(t.timestamp_ms),
                ..RowPlan::default()
            };
            Ok((measure.row(content, plan), notes))
        })
        .collect::<Result<_>>()?;
    let mut adjusted = BTreeMap::new();
    for why in rows.iter().flat_map(|r| r.1.iter()) {
        *adjusted.entry(why.to_string()).or_insert(0) += 1;
    }
    Ok((rows.into_iter().map(|r| r.0).collect(), adjusted))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn qwen3() -> Counter {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/tokenizers/qwen3/tokenizer.json.gz");
        Counter::load(&p, crate::tokenize::SpecialText::Special).expect("qwen3 loads")
    }

    #[test]
    fn blocks_are_shared_text_and_lengths_exact() {
        let counter = qwen3();
        let measure = Measure::new(&counter, None, recap_schemas::Api::Chat).expect("template");
        let composer = Composer::new(&|t| measure.tokens(t)).expect("words");
        let trace = vec![
            TraceRequest {
                line: 1,
                timestamp_ms: 0.0,
                input_length: 405,
                output_length: 3,
                hash_ids: vec![0],
            },
            TraceRequest {
                line: 2,
                timestamp_ms: 5.0,
                input_length: 1100,
                output_length: 3,
                hash_ids: vec![0, 1, 2],
            },
        ];
        let spec = Spec {
            block_tokens: 512,
            ignore_eos: false,
            limit: None,
            seed: 0,
        };
        let (rows, notes) = generate(&trace, &spec, &measure, &composer).expect("generates");
        assert!(notes.is_empty(), "{notes:?}");
        assert_eq!(rows[1].plan.timestamp_ms, Some(5.0));
        let content = |r: &DatasetRow| {
            r.messages.as_ref().expect("chat")[0]["content"]
                .as_str()
                .expect("text")
                .to_string()
        };
        let (a, b) = (content(&rows[0]), content(&rows[1]));
        assert!(
            b.starts_with(&a),
            "the first row's partial block is the start of the second's full block"
        );
    }
}
