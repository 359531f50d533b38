//! `analyze dataset synthetic`: `count` prompts of exact input lengths (vLLM's `random`
//! dataset, AIPerf's ISL/OSL distributions), optionally sharing prefixes.

use std::collections::BTreeMap;

use rand::Rng;
use rayon::prelude::*;
use recap_schemas::dataset::{DatasetRow, RowPlan};

use super::compose::{Composer, Fit};
use super::lengths::LengthDist;
use super::{row_rng, Measure};
use crate::{Error, Result};

/// What to generate.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Rows.
    pub count: usize,
    /// Input tokens per row, as the server counts them.
    pub isl: LengthDist,
    /// Output budget per row (`max_tokens`).
    pub osl: LengthDist,
    /// Tokens of each shared prefix (`--shared-prefix`), 0 for none.
    pub shared_prefix: u32,
    /// Distinct shared prefixes (`--prefix-groups`).
    pub prefix_groups: u32,
    /// Write `ignore_eos: true` and `min_tokens = max_tokens`, so servers generate exactly
    /// the budget.
    pub ignore_eos: bool,
    /// Model context: input lengths are clipped so input + output fits.
    pub context: Option<u32>,
    /// Seed of every random choice; the same seed gives the same file.
    pub seed: u64,
}

/// Random streams (with [`row_rng`]).
const LENGTHS: u64 = 1;
const PREFIX: u64 = 2;
const TEXT: u64 = 3;
/// Draws of a row's text before giving up on keeping its shared prefix whole.
const BOUNDARY_TRIES: usize = 8;

/// The rows, and what had to be adjusted (sampled lengths clipped to a valid range).
pub fn generate(
    spec: &Spec,
    measure: &Measure<'_>,
    composer: &Composer,
) -> Result<(Vec<DatasetRow>, BTreeMap<String, u64>)> {
    let fit = Fit::new(composer);
    let overhead = measure.overhead(composer)?;
    // Shared prefixes: exact on their own, so every group's prompts start with the same N
    // tokens of content.
    let groups = if spec.shared_prefix > 0 {
        spec.prefix_groups.max(1)
    } else {
        0
    };
    let prefixes: Vec<String> = (0..groups)
        .into_par_iter()
        .map(|g| {
            let mut rng = row_rng(spec.seed, PREFIX, u64::from(g));
            let pieces = unspaced(composer.pieces(&mut rng, spec.shared_prefix as usize));
            let text = fit.fit(&mut rng, "", pieces, 1, spec.shared_prefix, &|t| measure.tokens(t))?;
            text.map(|t| t.0).ok_or_else(|| {
                Error::Input(format!(
                    "could not compose a shared prefix of exactly {} tokens with this tokenizer",
                    spec.shared_prefix
                ))
            })
        })
        .collect::<Result<_>>()?;
    let min_isl = overhead + spec.shared_prefix + 1;
    let rows: Vec<(DatasetRow, Option<&'static str>)> = (0..spec.count)
        .into_par_iter()
        .map(|i| {
            let mut rng = row_rng(spec.seed, LENGTHS, i as u64);
            let osl = spec.osl.sample(&mut rng).max(1);
            let sampled = spec.isl.sample(&mut rng);
            let mut isl = sampled.max(min_isl);
            let mut adjusted = (isl != sampled).then_some("input lengths raised to the shortest possible prompt");
            if let Some(ctx) = spec.context {
                let room = ctx.saturating_sub(osl).max(min_isl);
                if isl > room {
                    isl = room;
                    adjusted = Some("input lengths lowered to fit --context with their output");
                }
            }
            let group = (groups > 0).then(|| rng.random_range(0..groups));
            let head = group.map_or("", |g| prefixes[g as usize].as_str());
            let mut text_rng = row_rng(spec.seed, TEXT, i as u64);
            let head_tokens = if group.is_some() { spec.shared_prefix } else { 0 };
            let n = isl.saturating_sub(overhead + head_tokens) as usize;
            let keep = usize::from(group.is_none());
            let mut content = None;
            for _ in 0..BOUNDARY_TRIES {
                let tail = composer.pieces(&mut text_rng, n.max(1));
                // After a shared prefix the tail goes on with a space; a prompt's own first
                // word has none.
                let tail = if group.is_some() { tail } else { unspaced(tail) };
                let Some((text, _)) = fit.fit(&mut text_rng, head, tail, keep, isl, &|t| measure.isl(t))? else {
                    continue;
                };
                // The prefix must stay its own N tokens inside the prompt: the first N tokens
                // of the content end exactly where the prefix ends (the tail merged into none
                // of them), so every row of the group starts with the same token ids.
                if group.is_none() || measure.counter().truncate(&text, spec.shared_prefix)? == head {
                    content = Some(text);
                    break;
                }
            }
            let content = content.ok_or_else(|| {
                Error::Input(format!(
                    "row {i}: could not compose a prompt of exactly {isl} input tokens{}",
                    if group.is_some() {
                        format!(" starting with its {}-token shared prefix", spec.shared_prefix)
                    } else {
                        String::new()
                    }
                ))
            })?;
            let plan = RowPlan {
                max_tokens: Some(osl),
                min_tokens: spec.ignore_eos.then_some(osl),
                ignore_eos: spec.ignore_eos.then_some(true),
                isl_tokens: Some(isl),
                prefix_group: group,
                ..RowPlan::default()
            };
            Ok((measure.row(content, plan), adjusted))
        })
        .collect::<Result<_>>()?;
    let mut adjusted = BTreeMap::new();
    for why in rows.iter().filter_map(|r| r.1) {
        *adjusted.entry(why.to_string()).or_insert(0) += 1;
    }
    Ok((rows.into_iter().map(|r| r.0).collect(), adjusted))
}

/// Rerank rows (`--rerank-documents N`): a query of exactly `query_tokens` tokens and `N`
/// documents of `--isl` tokens each, every text counted without special tokens, as each side
/// of a pair is encoded. A row's `isl_tokens` is what a cross-encoder server counts over its
/// pairs: Σ over the documents of query + document + the tokenizer's pair specials
/// ([`crate::tokenize::Counter::pair_special_tokens`]), the rule `analyze report` counts by.
pub fn generate_rerank(
    spec: &Spec,
    measure: &Measure<'_>,
    composer: &Composer,
    documents: usize,
    query_tokens: u32,
) -> Result<Vec<DatasetRow>> {
    let fit = Fit::new(composer);
    let specials = measure.counter().pair_special_tokens()?;
    let compose = |rng: &mut rand::rngs::StdRng, n: u32, what: &str| -> Result<String> {
        let pieces = unspaced(composer.pieces(rng, n as usize));
        fit.fit(rng, "", pieces, 1, n, &|t| measure.tokens(t))?
            .map(|t| t.0)
            .ok_or_else(|| Error::Input(format!("{what}: could not compose exactly {n} tokens")))
    };
    (0..spec.count)
        .into_par_iter()
        .map(|i| {
            let mut rng = row_rng(spec.seed, LENGTHS, i as u64);
            let mut text_rng = row_rng(spec.seed, TEXT, i as u64);
            let q = query_tokens.max(1);
            let query = compose(&mut text_rng, q, &format!("row {i}'s query"))?;
            let mut docs = Vec::with_capacity(documents);
            let mut isl = 0u32;
            for j in 0..documents {
                let n = spec.isl.sample(&mut rng).max(1);
                docs.push(compose(&mut text_rng, n, &format!("row {i}'s document {j}"))?);
                isl += q + n + specials;
            }
            Ok(DatasetRow {
                query: Some(query),
                documents: Some(docs),
                plan: RowPlan {
                    isl_tokens: Some(isl),
                    ..RowPlan::default()
                },
                ..DatasetRow::default()
            })
        })
        .collect()
}

/// `pieces` with the first one's leading space removed (the start of a text).
fn unspaced(mut pieces: Vec<&str>) -> Vec<&str> {
    if let Some(first) = pieces.first_mut() {
        *first = first.strip_prefix(' ').unwrap_or(first);
    }
    pieces
}
