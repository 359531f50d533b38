//! `analyze report`: one run folder in, `<run>/analysis/<tokenizer-id>/` out.
//!
//! Load (DataFusion) -> reassemble -> tokenize (rayon, distinct texts once) -> per-request
//! metrics -> `metrics.parquet` + `summary.{json,csv,md}`. Re-scoring with another tokenizer
//! writes a sibling folder and leaves this one alone.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use datafusion::prelude::SessionContext;

use crate::input::Input;
use crate::load::RunFolder;
use crate::metrics::{self, Definitions, IslMode, RequestMetrics, TokenCounts};
use crate::reassemble::{reassemble, RequestRecord};
use crate::store::text_hash;
use crate::store::{self, write_parquet};
use crate::summary::{summarize, Scoring, Slo, Summary, SummaryInput, SummaryText};
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

/// Reads a run's segments and reassembles one record per request (with texts).
async fn reassemble_run(run: &RunFolder) -> Result<Vec<RequestRecord>> {
    let ctx = SessionContext::new();
    run.register(&ctx, "")?;
    let mut records = reassemble(&ctx, "").await?;
    // A request still in flight when capture was killed has events but no `requests` row
    // (it is written when the request ends). Its phase is still known: the dispatcher hands
    // out ids in order and the first `warmup_requests` ids are the warmup.
    let warmup = run.manifest.load.warmup_requests;
    for r in records.iter_mut().filter(|r| r.phase.is_none()) {
        r.phase = Some(if r.request_id < warmup {
            recap_schemas::Phase::Warmup
        } else {
            recap_schemas::Phase::Measure
        });
    }
    Ok(records)
}

/// Analyzes one run folder with one tokenizer.
pub async fn report(run: &RunFolder, counter: &Counter, opts: &ReportOptions) -> Result<Report> {
    let dir = recap_schemas::analysis::analysis_dir(&run.dir, counter.id());
    let cache_path = dir.join(recap_schemas::analysis::TOKENS_FILE);
    if !cache_path.exists() {
        // A first analysis with this tokenizer: an invalid file should fail now, not after
        // the events are read.
        counter.ready()?;
    }
    std::fs::create_dir_all(&dir).map_err(|source| Error::Io {
        path: dir.clone(),
        source,
    })?;
    // Where the time goes, at -v (the B8/B9 benchmarks read these lines).
    let mut stage = std::time::Instant::now();
    let mut lap = |what: &str| {
        tracing::info!("{what}: {:.3} s", stage.elapsed().as_secs_f64());
        stage = std::time::Instant::now();
    };
    // Reassembled records are shared by every analysis of the run and cached without their
    // texts; token counts are cached per tokenizer. A re-analysis with other SLOs or
    // definitions needs neither the events nor the tokenizer's time.
    let records_path = recap_schemas::analysis::records_path(&run.dir);
    let fingerprint = store::fingerprint(run.requests.iter().chain(&run.events));
    let cached = crate::records::load(&records_path, &fingerprint);
    let from_cache = cached.is_some();
    let mut records = match cached {
        Some(r) => {
            tracing::info!("reusing reassembled records from {}", records_path.display());
            r
        }
        None => reassemble_run(run).await?,
    };
    lap("stage records");
    let mut cache = crate::tokenize::TokenCache::load(&cache_path);
    if !counter.accepts(&cache) {
        tracing::info!("--exact: counting again with `tokenizers` instead of the cached counts");
        cache = crate::tokenize::TokenCache::default();
    }
    let known = cache.len();
    let counts = match count_tokens(&records, counter, opts, &mut cache)? {
        Some(c) => c,
        None => {
            // Texts this tokenizer has not counted yet: only the events have them.
            tracing::info!("new texts to count: reassembling from the events");
            lap("stage token cache lookup");
            records = reassemble_run(run).await?;
            lap("stage records");
            count_tokens(&records, counter, opts, &mut cache)?
                .ok_or_else(|| Error::Internal("reassembled records lack their texts".into()))?
        }
    };
    lap("stage tokens");
    if cache.len() != known {
        store::cache_written("token count", &cache_path, cache.save(&cache_path));
    }
    if !from_cache {
        store::cache_written(
            "reassembled records",
            &records_path,
            crate::records::save(&records_path, &fingerprint, &records),
        );
    }
    lap("stage caches saved");
    let rows: Vec<RequestMetrics> = records
        .iter()
        .zip(&counts)
        .map(|(r, t)| metrics::compute(r, t, &opts.definitions))
        .collect();
    // The ICL distribution depends only on the recorded events: `icl.parquet` keeps it (with
    // the gaps) for the segments it was built from, which spares a re-analysis every gap.
    let gaps_path = dir.join(recap_schemas::analysis::ICL_FILE);
    let icl_ms = match store::cached_icl_ms(&gaps_path, &fingerprint) {
        Some(d) => d,
        None => {
            let icl: Vec<Vec<i64>> = records.iter().map(|r| metrics::icl_gaps(r).collect()).collect();
            let ids: Vec<u64> = records.iter().map(|r| r.request_id).collect();
            let d = crate::summary::icl_distribution(&rows, &icl);
            store::cache_written(
                "inter-chunk gaps",
                &gaps_path,
                store::write_gaps(&gaps_path, &ids, &icl, &fingerprint, &d),
            );
            d
        }
    };
    let protocol: Vec<u32> = records.iter().map(|r| r.protocol_events).collect();
    let isl_used = match (opts.isl, counter.chat_template().is_some()) {
        (IslMode::Template, true) => IslMode::Template,
        _ => IslMode::Raw,
    };
    let summary = summarize(SummaryInput {
        scoring: Scoring {
            run: run.dir.display().to_string(),
            run_id: run.manifest.run_id.clone(),
            status: run.manifest.status,
            tokenizer_id: counter.id().to_string(),
            tokenizer_engine: cache.engine.clone(),
            definitions: opts.definitions,
            isl: isl_used,
        },
        slo: opts.slo,
        rows: &rows,
        icl_ms,
        protocol_events: &protocol,
    });
    lap("stage metrics and summary");
    write_outputs(&dir, &rows, &summary)?;
    lap("stage outputs written");
    Ok(Report { summary, rows, dir })
}

/// Token counts of every request (`None` if some text is neither cached nor at hand).
fn count_tokens(
    records: &[RequestRecord],
    counter: &Counter,
    opts: &ReportOptions,
    cache: &mut crate::tokenize::TokenCache,
) -> Result<Option<Vec<TokenCounts>>> {
    let warned = std::sync::Once::new();
    let template = match opts.isl {
        IslMode::Template => counter.chat_template(),
        IslMode::Raw => None,
    };
    let inputs: Vec<Option<Input<'_>>> = records.iter().map(Input::of).collect();
    // One flat work list: input, reasoning, content, tool args of every request.
    let mut keys: Vec<(crate::store::TextKey, bool)> = Vec::with_capacity(records.len() * 4);
    for (r, inp) in records.iter().zip(&inputs) {
        keys.push(inp.as_ref().map_or((text_hash(""), false), |i| i.key(r, template)));
        keys.push((r.hashes.reasoning, false));
        keys.push((r.hashes.content, false));
        keys.push((r.hashes.tool_args, false));
    }
    let text = |k: usize| -> Option<Cow<'_, str>> {
        let (i, channel) = (k / 4, k % 4);
        if channel == 0 {
            return Some(
                inputs[i]
                    .as_ref()
                    .map_or(Cow::Borrowed(""), |inp| inp.text(template, &warned)),
            );
        }
        let t = records[i].texts.as_ref()?;
        Some(Cow::Borrowed(match channel {
            1 => &t.reasoning,
            2 => &t.content,
            _ => &t.tool_args,
        }))
    };
    let bar = crate::progress::bar(keys.len() as u64, "tokenizing", opts.progress);
    let n = counter.count_keyed(&keys, &text, cache, &|k| bar.inc(k))?;
    bar.finish_and_clear();
    Ok(n.map(|n| {
        inputs
            .iter()
            .enumerate()
            .map(|(i, inp)| TokenCounts {
                isl: inp.as_ref().map(|_| n[4 * i]),
                reasoning: n[4 * i + 1],
                content: n[4 * i + 2],
                tool_calls: n[4 * i + 3],
            })
            .collect()
    }))
}

/// What an earlier analysis in the same folder was scored with, when it differs from
/// `summary`'s definitions, chat ISL mode or SLOs (one folder per tokenizer: a re-score with
/// other choices replaces it, and says so).
fn replaced_scoring(path: &Path, summary: &Summary) -> Option<String> {
    let old: Summary = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    let (o, n) = (&old.scoring, &summary.scoring);
    let mut diffs = Vec::new();
    if o.definitions != n.definitions {
        diffs.push(format!("definitions {:?}", o.definitions));
    }
    if o.isl != n.isl {
        diffs.push(format!("--isl {}", o.isl));
    }
    if old.goodput.slo != summary.goodput.slo {
        diffs.push(format!("SLOs {:?}", old.goodput.slo));
    }
    (!diffs.is_empty()).then(|| diffs.join(", "))
}

fn write_outputs(dir: &Path, rows: &[RequestMetrics], summary: &Summary) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|source| Error::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    if let Some(what) = replaced_scoring(&dir.join(recap_schemas::analysis::SUMMARY_JSON), summary) {
        tracing::warn!(
            "replacing the analysis in {} made with {what}; keep it by copying the folder first",
            dir.display()
        );
    }
    let batch = metrics::to_batch(rows).map_err(|e| Error::Internal(e.to_string()))?;
    write_parquet(&dir.join(recap_schemas::analysis::METRICS_FILE), &batch, &[])?;
    let write = |name: &str, text: String| {
        let p = dir.join(name);
        std::fs::write(&p, text).map_err(|source| Error::Io { path: p, source })
    };
    write(
        recap_schemas::analysis::SUMMARY_JSON,
        serde_json::to_string_pretty(summary).map_err(|e| Error::Internal(e.to_string()))? + "\n",
    )?;
    write(recap_schemas::analysis::SUMMARY_CSV, summary.to_csv()?)?;
    write(recap_schemas::analysis::SUMMARY_MD, summary.to_markdown())?;
    Ok(())
}
