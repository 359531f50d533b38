//! `analyze report`: one run folder in, `<run>/analysis/<tokenizer-id>/` out.
//!
//! Load (DataFusion) -> reassemble -> tokenize (rayon, distinct texts once) -> per-request
//! metrics -> `metrics.parquet` + `summary.{json,csv,md}`. Re-scoring with another tokenizer
//! writes a sibling folder and leaves this one alone.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::prelude::SessionContext;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use serde_json::Value;

use crate::load::RunFolder;
use crate::metrics::{self, Definitions, IslMode, RequestMetrics, TokenCounts};
use crate::reassemble::{reassemble, RequestRecord};
use crate::summary::{summarize, Scoring, Slo, Summary, SummaryInput};
use crate::tokenize::Counter;
use crate::{Error, Result};

/// Options of one report.
#[derive(Debug, Clone)]
pub struct ReportOptions {
    /// Metric definitions.
    pub definitions: Definitions,
    /// Chat ISL mode.
    pub isl: IslMode,
    /// Goodput SLOs.
    pub slo: Slo,
    /// Show a progress bar (only honoured on a terminal).
    pub progress: bool,
}

/// What one report produced.
#[derive(Debug)]
pub struct Report {
    /// The summary.
    pub summary: Summary,
    /// Per-request metrics.
    pub rows: Vec<RequestMetrics>,
    /// The analysis folder written.
    pub dir: PathBuf,
}

/// The analysis folder of `run` for a tokenizer id.
pub fn analysis_dir(run: &Path, tokenizer_id: &str) -> PathBuf {
    run.join("analysis").join(tokenizer_id)
}

/// The texts to count for one request: (input, add_special_tokens) and the output channels.
fn input_text(r: &RequestRecord, counter: &Counter, isl: IslMode, warned: &std::sync::Once) -> Option<(String, bool)> {
    if let Some(p) = &r.prompt {
        // Completions prompts are encoded the way servers do: with the tokenizer's own
        // special tokens (BOS) added.
        return Some((p.clone(), true));
    }
    let msgs: Value = serde_json::from_str(r.messages_json.as_deref()?).ok()?;
    if isl == IslMode::Template {
        if let Some(t) = counter.chat_template() {
            match t.render(&msgs) {
                Ok(text) => return Some((text, false)),
                Err(e) => warned.call_once(|| tracing::warn!("{e}; counting raw message contents instead")),
            }
        }
    }
    let joined = msgs
        .as_array()?
        .iter()
        .filter_map(|m| m.get("content").and_then(Value::as_str))
        .collect::<Vec<_>>()
        .join("\n");
    Some((joined, false))
}

/// Analyzes one run folder with one tokenizer.
pub async fn report(run: &RunFolder, counter: &Counter, opts: &ReportOptions) -> Result<Report> {
    let ctx = SessionContext::new();
    run.register(&ctx, "")?;
    let records = reassemble(&ctx, "").await?;
    let dir = analysis_dir(&run.dir, counter.id());
    std::fs::create_dir_all(&dir).map_err(|source| Error::Io {
        path: dir.clone(),
        source,
    })?;
    let cache_path = dir.join("tokens.parquet");
    let mut cache = crate::tokenize::TokenCache::load(&cache_path);
    let known = cache.len();
    let counts = count_tokens(&records, counter, opts, &mut cache)?;
    if cache.len() != known {
        cache.save(&cache_path)?;
    }
    let rows: Vec<RequestMetrics> = records
        .iter()
        .zip(&counts)
        .map(|(r, t)| metrics::compute(r, t, &opts.definitions))
        .collect();
    let icl: Vec<Vec<i64>> = records.iter().map(|r| metrics::icl_gaps(r).collect()).collect();
    let protocol: Vec<u32> = records.iter().map(|r| r.protocol_events).collect();
    let isl_used = match (opts.isl, counter.chat_template().is_some()) {
        (IslMode::Template, true) => "template",
        _ => "raw",
    };
    let summary = summarize(SummaryInput {
        scoring: Scoring {
            run: run.dir.display().to_string(),
            run_id: run.manifest.run_id.clone(),
            status: run.manifest.status.to_string(),
            tokenizer_id: counter.id().to_string(),
            definitions: opts.definitions,
            isl: isl_used.into(),
        },
        slo: opts.slo,
        rows: &rows,
        icl_ns: &icl,
        protocol_events: &protocol,
    });
    write_outputs(&dir, &rows, &summary)?;
    write_gaps(&dir, &records, &icl)?;
    Ok(Report { summary, rows, dir })
}

fn count_tokens(
    records: &[RequestRecord],
    counter: &Counter,
    opts: &ReportOptions,
    cache: &mut crate::tokenize::TokenCache,
) -> Result<Vec<TokenCounts>> {
    let warned = std::sync::Once::new();
    let inputs: Vec<Option<(String, bool)>> = records
        .iter()
        .map(|r| input_text(r, counter, opts.isl, &warned))
        .collect();
    // One flat work list: input, reasoning, content, tool args of every request.
    let mut texts: Vec<(&str, bool)> = Vec::with_capacity(records.len() * 4);
    for (r, inp) in records.iter().zip(&inputs) {
        texts.push(inp.as_ref().map_or(("", false), |(t, s)| (t.as_str(), *s)));
        texts.push((r.reasoning.as_str(), false));
        texts.push((r.content.as_str(), false));
        texts.push((r.tool_args.as_str(), false));
    }
    let bar = crate::progress::bar(texts.len() as u64, "tokenizing", opts.progress);
    let n = counter.count_all_cached(&texts, cache, &|k| bar.inc(k))?;
    bar.finish_and_clear();
    Ok(records
        .iter()
        .zip(&inputs)
        .enumerate()
        .map(|(i, (_, inp))| TokenCounts {
            isl: inp.as_ref().map(|_| n[4 * i]),
            reasoning: n[4 * i + 1],
            content: n[4 * i + 2],
            tool_calls: n[4 * i + 3],
        })
        .collect())
}

fn write_outputs(dir: &Path, rows: &[RequestMetrics], summary: &Summary) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|source| Error::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let batch = metrics::to_batch(rows).map_err(|e| Error::Internal(e.to_string()))?;
    write_parquet(&dir.join("metrics.parquet"), &batch)?;
    let write = |name: &str, text: String| {
        let p = dir.join(name);
        std::fs::write(&p, text).map_err(|source| Error::Io { path: p, source })
    };
    write(
        "summary.json",
        serde_json::to_string_pretty(summary).map_err(|e| Error::Internal(e.to_string()))? + "\n",
    )?;
    write("summary.csv", summary.to_csv())?;
    write("summary.md", summary.to_markdown())?;
    Ok(())
}

/// `icl.parquet`: every inter-chunk gap (`request_id`, `gap_ns`), for plots of the ICL
/// distribution (the per-request table only has one row per request).
fn write_gaps(dir: &Path, records: &[RequestRecord], icl: &[Vec<i64>]) -> Result<()> {
    use arrow_array::builder::{Int64Builder, UInt64Builder};
    let mut id = UInt64Builder::new();
    let mut gap = Int64Builder::new();
    for (r, gaps) in records.iter().zip(icl) {
        for g in gaps {
            id.append_value(r.request_id);
            gap.append_value(*g);
        }
    }
    let schema = Arc::new(arrow_schema::Schema::new(vec![
        arrow_schema::Field::new("request_id", arrow_schema::DataType::UInt64, false),
        arrow_schema::Field::new("gap_ns", arrow_schema::DataType::Int64, false),
    ]));
    let batch = arrow_array::RecordBatch::try_new(schema, vec![Arc::new(id.finish()), Arc::new(gap.finish())])
        .map_err(|e| Error::Internal(e.to_string()))?;
    write_parquet(&dir.join("icl.parquet"), &batch)
}

/// Writes one batch as a zstd Parquet file (analysis outputs are small and written once).
pub(crate) fn write_parquet(path: &Path, batch: &arrow_array::RecordBatch) -> Result<()> {
    let file = std::fs::File::create(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let enc = |e: parquet::errors::ParquetError| Error::Internal(format!("writing {}: {e}", path.display()));
    // Mostly numbers with few repeats: dictionary encoding costs more than it saves here.
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_dictionary_enabled(false)
        .build();
    let mut w = ArrowWriter::try_new(file, batch.schema(), Some(props)).map_err(enc)?;
    w.write(batch).map_err(enc)?;
    w.close().map_err(enc)?;
    Ok(())
}
