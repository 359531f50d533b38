//! `analyze dataset`: workloads prepared with a real tokenizer, into the JSONL rows capture
//! sends ([`recap_schemas::dataset`]), and statistics of such files.
//!
//! Capture stays tokenizer-free, so every length a benchmark plans is made exact here:
//!
//! - [`synthetic`]: prompts of exact input lengths (fixed or from a [`lengths`] distribution),
//!   composed of vocabulary words ([`compose`]), optionally starting with one of K shared
//!   prefixes of exactly N tokens.
//! - [`convert`]: ShareGPT (and prompt/answer JSONL) with the reference answer's length as the
//!   output budget, over-long conversations dropped or truncated.
//! - [`trace`]: request traces (Mooncake, BurstGPT) with their timestamps, lengths and, where
//!   the trace has them, prefix blocks whose equal hash ids are identical text.
//! - [`inspect`]: ISL/OSL and prefix-sharing statistics of a dataset file.
//!
//! An input length is counted the way the server counts it and the way `analyze report`
//! counts it ([`crate::input::Input`]): a chat prompt through the chat template without added
//! special tokens, a completions prompt with the tokenizer's own (its BOS).

pub mod compose;
pub mod convert;
pub mod inspect;
pub mod lengths;
pub mod synthetic;
pub mod trace;

use std::io::Write;
use std::path::Path;

use rand::SeedableRng;
use recap_schemas::dataset::{DatasetRow, RowPlan};
use recap_schemas::Api;
use serde_json::{json, Value};

use crate::input::Input;
use crate::template::ChatTemplate;
use crate::tokenize::Counter;
use crate::{Error, Result};

/// How a prompt is sent and therefore counted.
pub struct Measure<'a> {
    counter: &'a Counter,
    template: Option<&'a ChatTemplate>,
    api: Api,
}

impl<'a> Measure<'a> {
    /// Prompts for `api`; the chat-like APIs need a template (the tokenizer's, or `template`).
    /// Rerank rows (a query and its documents) are not generated.
    pub fn new(counter: &'a Counter, template: Option<&'a ChatTemplate>, api: Api) -> Result<Self> {
        let template = template.or(counter.chat_template());
        if api == Api::Rerank {
            return Err(Error::Input(
                "analyze dataset writes no rerank rows (give capture rows with `query` and `documents`)".into(),
            ));
        }
        if !matches!(api, Api::Completions | Api::Embeddings) && template.is_none() {
            return Err(Error::Input(format!(
                "{}: no chat template (no tokenizer_config.json with `chat_template` beside it); give --chat-template FILE or --completions",
                counter.path().display()
            )));
        }
        counter.ready()?;
        Ok(Measure { counter, template, api })
    }

    /// The API the rows are for.
    pub fn api(&self) -> Api {
        self.api
    }

    /// The chat template (chat rows).
    pub fn template(&self) -> Option<&ChatTemplate> {
        self.template
    }

    /// The tokenizer.
    pub fn counter(&self) -> &Counter {
        self.counter
    }

    /// The request input of a user `content` (chat: one user message).
    pub fn input(&self, content: &str) -> Value {
        match self.api {
            Api::Chat | Api::Responses | Api::Messages => json!([{"role": "user", "content": content}]),
            Api::Completions => Value::String(content.to_string()),
            Api::Embeddings | Api::Rerank => json!([content]),
        }
    }

    /// Input tokens of one user `content`, as the server counts them.
    pub fn isl(&self, content: &str) -> Result<u32> {
        match self.api {
            Api::Chat | Api::Responses | Api::Messages => self.isl_of(&Input::Chat(self.input(content))),
            // An embedded text is counted as a prompt is, with the tokenizer's special tokens.
            Api::Completions | Api::Embeddings | Api::Rerank => self.isl_of(&Input::Prompt(content)),
        }
    }

    /// Input tokens of any request input.
    pub fn isl_of(&self, input: &Input<'_>) -> Result<u32> {
        let text = input.render(self.template)?;
        self.counter.count(&text, input.add_special_tokens())
    }

    /// Tokens of a text on its own (an answer, a shared prefix).
    pub fn tokens(&self, text: &str) -> Result<u32> {
        self.counter.count(text, false)
    }

    /// The dataset row sending `content`.
    pub fn row(&self, content: String, plan: RowPlan) -> DatasetRow {
        match self.api {
            Api::Chat | Api::Responses | Api::Messages => DatasetRow {
                messages: Some(vec![json!({"role": "user", "content": content})]),
                plan,
                ..DatasetRow::default()
            },
            Api::Completions => DatasetRow {
                prompt: Some(content),
                plan,
                ..DatasetRow::default()
            },
            // One text per row: `capture --batch-size N` sends N rows per request.
            Api::Embeddings | Api::Rerank => DatasetRow {
                input: Some(vec![content]),
                plan,
                ..DatasetRow::default()
            },
        }
    }

    /// Tokens every prompt has besides its content (template markers, BOS), assuming
    /// `composer`'s pieces add up; used only to size a first attempt that [`compose::Fit`]
    /// then makes exact.
    pub fn overhead(&self, composer: &compose::Composer) -> Result<u32> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(0);
        let probe = composer.pieces(&mut rng, 64).concat();
        Ok(self.isl(&probe)?.saturating_sub(64))
    }
}

/// The random stream of row `i` under `seed`: rows are independent of thread scheduling.
pub fn row_rng(seed: u64, stream: u64, i: u64) -> rand::rngs::StdRng {
    // splitmix64 of the three, so nearby seeds and rows give unrelated streams.
    let mut z = seed ^ stream.rotate_left(32) ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    rand::rngs::StdRng::seed_from_u64(z ^ (z >> 31))
}

/// Writes rows as JSONL to `path`, through a temporary file renamed at the end, so a failed
/// run never leaves half a dataset under the final name.
pub fn write_rows(path: &Path, rows: &[DatasetRow]) -> Result<()> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let tmp = path.with_extension("jsonl.partial");
    let file = std::fs::File::create(&tmp).map_err(|source| Error::Io {
        path: tmp.clone(),
        source,
    })?;
    let mut w = std::io::BufWriter::new(file);
    for r in rows {
        serde_json::to_writer(&mut w, r).map_err(|e| Error::Internal(e.to_string()))?;
        w.write_all(b"\n").map_err(io)?;
    }
    w.into_inner().map_err(|e| io(e.into_error()))?.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// Reads dataset rows (the contract's JSONL), naming the file and line of a bad one.
pub fn read_rows(path: &Path) -> Result<Vec<DatasetRow>> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::unreadable(path, source))?;
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let row: DatasetRow =
            serde_json::from_str(line).map_err(|e| Error::Input(format!("{} line {}: {e}", path.display(), i + 1)))?;
        if row.prompt.is_some() == row.messages.is_some() {
            return Err(Error::Input(format!(
                "{} line {}: give exactly one of `prompt` and `messages`",
                path.display(),
                i + 1
            )));
        }
        rows.push(row);
    }
    if rows.is_empty() {
        return Err(Error::Input(format!("{}: no dataset rows", path.display())));
    }
    Ok(rows)
}

/// Minimum, mean and maximum of some lengths, for reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct Spread {
    /// Smallest.
    pub min: u32,
    /// Mean.
    pub mean: f64,
    /// 50th percentile.
    pub p50: u32,
    /// 99th percentile.
    pub p99: u32,
    /// Largest.
    pub max: u32,
}

impl Spread {
    /// Of `xs` (zeros when empty).
    pub fn of(xs: impl IntoIterator<Item = u32>) -> Spread {
        let mut v: Vec<u32> = xs.into_iter().collect();
        if v.is_empty() {
            return Spread::default();
        }
        v.sort_unstable();
        let at = |q: f64| v[((q * (v.len() - 1) as f64).round() as usize).min(v.len() - 1)];
        Spread {
            min: v[0],
            mean: v.iter().map(|x| f64::from(*x)).sum::<f64>() / v.len() as f64,
            p50: at(0.5),
            p99: at(0.99),
            max: v[v.len() - 1],
        }
    }

    /// `min 1 · mean 2.0 · p50 2 · p99 3 · max 3`.
    pub fn to_text(&self) -> String {
        format!(
            "min {} · mean {:.1} · p50 {} · p99 {} · max {}",
            self.min, self.mean, self.p50, self.p99, self.max
        )
    }
}

/// What a dataset command wrote, for the console and `--json`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Written {
    /// The subcommand (`synthetic`, `sharegpt`, `trace`).
    pub command: &'static str,
    /// The file written.
    pub out: String,
    /// Rows written.
    pub rows: usize,
    /// The tokenizer that counted (its id).
    pub tokenizer: String,
    /// `chat` or `completions`.
    pub api: Api,
    /// Input tokens per row, as counted for `isl_tokens`.
    pub isl: Spread,
    /// `max_tokens` per row.
    pub osl: Spread,
    /// Rows whose counted input length equals the planned one (all of them, or the command
    /// fails).
    pub exact_rows: usize,
    /// Source items or sampled lengths that could not be used as they were, by reason.
    pub adjusted: std::collections::BTreeMap<String, u64>,
    /// Seconds spent.
    pub seconds: f64,
    /// Rows generated per second.
    pub rows_per_s: f64,
}

impl Written {
    /// A few lines for the console.
    pub fn to_console(&self) -> String {
        let mut s = format!(
            "{} rows ({}) written to {} in {:.2} s ({:.0} rows/s), counted with {}\n  input tokens:  {}\n  max_tokens:    {}\n  exact input length: {} of {} rows\n",
            self.rows,
            self.api,
            self.out,
            self.seconds,
            self.rows_per_s,
            self.tokenizer,
            self.isl.to_text(),
            self.osl.to_text(),
            self.exact_rows,
            self.rows
        );
        for (why, n) in &self.adjusted {
            s.push_str(&format!("  {why}: {n}\n"));
        }
        s
    }
}

impl Written {
    /// The report of `rows`, counted by tokenizer `tokenizer` for `api`. Every row's input
    /// length was checked exact as it was made, so `exact_rows` is all of them.
    pub fn new(
        command: &'static str,
        out: &Path,
        rows: &[DatasetRow],
        (tokenizer, api): (String, Api),
        started: std::time::Instant,
        adjusted: std::collections::BTreeMap<String, u64>,
    ) -> Written {
        let seconds = started.elapsed().as_secs_f64();
        Written {
            command,
            out: out.display().to_string(),
            rows: rows.len(),
            tokenizer,
            api,
            isl: Spread::of(rows.iter().filter_map(|r| r.plan.isl_tokens)),
            osl: Spread::of(rows.iter().filter_map(|r| r.plan.max_tokens)),
            exact_rows: rows.iter().filter(|r| r.plan.isl_tokens.is_some()).count(),
            adjusted,
            seconds,
            rows_per_s: rows.len() as f64 / seconds.max(1e-9),
        }
    }
}
