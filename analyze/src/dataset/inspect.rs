//! `analyze dataset inspect`: what a dataset file asks of a server, counted with a tokenizer:
//! input and output lengths, whether the planned `isl_tokens` hold for this tokenizer, and how
//! much of the input a prefix cache could reuse.

use std::collections::BTreeSet;
use std::path::Path;

use rayon::prelude::*;
use recap_schemas::dataset::DatasetRow;
use serde_json::Value;

use super::{read_rows, Measure, Spread};
use crate::input::Input;
use crate::Result;

/// The statistics of one dataset file.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Inspection {
    /// The file.
    pub path: String,
    /// The tokenizer that counted (its id).
    pub tokenizer: String,
    /// Rows.
    pub rows: usize,
    /// Rows with `messages` (sent to chat).
    pub chat_rows: usize,
    /// Rows with `prompt` (sent to completions).
    pub completions_rows: usize,
    /// Input tokens as the server counts them, with this tokenizer.
    pub isl: Spread,
    /// Rows carrying `isl_tokens`.
    pub planned_rows: usize,
    /// Of those, rows whose `isl_tokens` equals the count here (another tokenizer or template
    /// than the generator's shows up as a difference).
    pub planned_equal: usize,
    /// `max_tokens` of rows that set it.
    pub max_tokens: Spread,
    /// `reference_output_tokens` of rows that have it.
    pub reference_output_tokens: Spread,
    /// Distinct `prefix_group`s.
    pub prefix_groups: usize,
    /// Input tokens in a prefix shared with at least one other row (the template's own
    /// head included), summed over rows: what an unbounded prefix cache could reuse, at most.
    pub shared_prefix_tokens: u64,
    /// `shared_prefix_tokens` over all input tokens.
    pub shared_prefix_share: f64,
    /// Rows with `timestamp_ms`, and the span they cover.
    pub timestamped_rows: usize,
    /// Last minus first `timestamp_ms`.
    pub timestamp_span_ms: u64,
    /// Distinct `session_id`s.
    pub sessions: usize,
}

impl Inspection {
    /// Lines for the console.
    pub fn to_console(&self) -> String {
        let mut s = format!(
            "{}: {} rows ({} chat, {} completions), counted with {}\n  input tokens:     {}\n",
            self.path,
            self.rows,
            self.chat_rows,
            self.completions_rows,
            self.tokenizer,
            self.isl.to_text()
        );
        if self.planned_rows > 0 {
            s.push_str(&format!(
                "  planned isl_tokens: {} of {} rows equal with this tokenizer\n",
                self.planned_equal, self.planned_rows
            ));
        }
        if self.max_tokens.max > 0 {
            s.push_str(&format!("  max_tokens:       {}\n", self.max_tokens.to_text()));
        }
        if self.reference_output_tokens.max > 0 {
            s.push_str(&format!(
                "  reference output: {}\n",
                self.reference_output_tokens.to_text()
            ));
        }
        s.push_str(&format!(
            "  shared prefixes:  {:.1}% of input tokens ({} tokens) start a prefix another row shares{}\n",
            100.0 * self.shared_prefix_share,
            self.shared_prefix_tokens,
            if self.prefix_groups > 0 {
                format!("; {} prefix groups", self.prefix_groups)
            } else {
                String::new()
            }
        ));
        if self.timestamped_rows > 0 {
            s.push_str(&format!(
                "  timestamps:       {} rows over {:.1} s ({:.2} req/s)\n",
                self.timestamped_rows,
                self.timestamp_span_ms as f64 / 1000.0,
                self.timestamped_rows as f64 / (self.timestamp_span_ms as f64 / 1000.0).max(1e-3)
            ));
        }
        if self.sessions > 0 {
            s.push_str(&format!("  sessions:         {}\n", self.sessions));
        }
        s
    }
}

/// Inspects `path`. `chat` and `completions` measure the rows of each shape.
pub fn inspect(path: &Path, chat: Option<&Measure<'_>>, completions: &Measure<'_>) -> Result<Inspection> {
    let rows = read_rows(path)?;
    if let Some(i) = rows.iter().position(|r| r.input.is_some() || r.query.is_some()) {
        return Err(crate::Error::Input(format!(
            "{} row {}: an embeddings or rerank row; inspect reads chat and completions rows (`analyze report` counts captured embeddings and rerank inputs)",
            path.display(),
            i + 1
        )));
    }
    let measure_of = |r: &DatasetRow| -> Result<&Measure<'_>> {
        match (&r.messages, chat) {
            (None, _) => Ok(completions),
            (Some(_), Some(m)) => Ok(m),
            (Some(_), None) => Err(crate::Error::Input(format!(
                "{}: has chat rows and the tokenizer has no chat template; give --chat-template FILE",
                path.display()
            ))),
        }
    };
    // Rendered inputs, their counts, then the prefix each shares with its sorted neighbours.
    let texts: Vec<(String, bool)> = rows
        .par_iter()
        .map(|r| {
            let inp = input(r);
            let m = measure_of(r)?;
            let text = inp.render(m.template())?.into_owned();
            Ok((text, inp.add_special_tokens()))
        })
        .collect::<Result<_>>()?;
    let counter = completions.counter();
    let isl: Vec<u32> = texts
        .par_iter()
        .map(|(t, special)| counter.count(t, *special))
        .collect::<Result<_>>()?;
    let mut order: Vec<usize> = (0..texts.len()).collect();
    order.par_sort_unstable_by(|a, b| texts[*a].0.cmp(&texts[*b].0));
    let lcp = |a: &str, b: &str| {
        let mut n = a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count();
        while !a.is_char_boundary(n) {
            n -= 1;
        }
        n
    };
    let mut shared = vec![0usize; texts.len()];
    for w in order.windows(2) {
        let n = lcp(&texts[w[0]].0, &texts[w[1]].0);
        shared[w[0]] = shared[w[0]].max(n);
        shared[w[1]] = shared[w[1]].max(n);
    }
    let shared_tokens: u64 = shared
        .par_iter()
        .zip(texts.par_iter())
        .zip(isl.par_iter())
        .map(|((n, (t, special)), total)| {
            if *n == 0 {
                return Ok(0);
            }
            // A cut inside a token counts that token as not shared.
            Ok(u64::from(
                counter.count(&t[..*n], *special)?.saturating_sub(1).min(*total),
            ))
        })
        .sum::<Result<u64>>()?;
    let total: u64 = isl.iter().map(|x| u64::from(*x)).sum();
    let planned: Vec<(u32, u32)> = rows
        .iter()
        .zip(&isl)
        .filter_map(|(r, n)| r.plan.isl_tokens.map(|p| (p, *n)))
        .collect();
    let stamps: Vec<f64> = rows.iter().filter_map(|r| r.plan.timestamp_ms).collect();
    Ok(Inspection {
        path: path.display().to_string(),
        tokenizer: counter.id().to_string(),
        rows: rows.len(),
        chat_rows: rows.iter().filter(|r| r.messages.is_some()).count(),
        completions_rows: rows.iter().filter(|r| r.prompt.is_some()).count(),
        isl: Spread::of(isl.iter().copied()),
        planned_rows: planned.len(),
        planned_equal: planned.iter().filter(|(p, n)| p == n).count(),
        max_tokens: Spread::of(rows.iter().filter_map(|r| r.plan.max_tokens)),
        reference_output_tokens: Spread::of(rows.iter().filter_map(|r| r.plan.reference_output_tokens)),
        prefix_groups: rows
            .iter()
            .filter_map(|r| r.plan.prefix_group)
            .collect::<BTreeSet<_>>()
            .len(),
        shared_prefix_tokens: shared_tokens,
        shared_prefix_share: if total == 0 {
            0.0
        } else {
            shared_tokens as f64 / total as f64
        },
        timestamped_rows: stamps.len(),
        timestamp_span_ms: (stamps.iter().copied().fold(0.0, f64::max)
            - stamps.iter().copied().reduce(f64::min).unwrap_or(0.0))
        .round() as u64,
        sessions: rows
            .iter()
            .filter_map(|r| r.plan.session_id.as_deref())
            .collect::<BTreeSet<_>>()
            .len(),
    })
}

/// The request input of a dataset row.
fn input(r: &DatasetRow) -> Input<'_> {
    match (&r.messages, &r.prompt) {
        (Some(m), _) => Input::Chat(Value::Array(m.clone())),
        (None, p) => Input::Prompt(p.as_deref().unwrap_or_default()),
    }
}
