//! `analyze report`: one run folder in, `<run>/analysis/<tokenizer-id>/` out.
//!
//! One streaming pass. `requests` rows are read first and their inputs counted as they are
//! read. Event segments are then read a few row groups at a time, decoded in parallel, in
//! write order ([`crate::reassemble`]); each request is finished as soon as its terminal event
//! has been read: its texts counted (rayon, each distinct text once), its metrics computed,
//! its gaps, record and texts appended to `icl.parquet`, `records.parquet` and
//! `texts.parquet`, and its texts dropped. Memory holds the requests in flight, one row of
//! metrics per request and the count cache, not the run's text, so a run of any length is
//! analyzed in bounded memory and in time linear in its size. A re-analysis reads the caches
//! instead of the events: with other SLOs or definitions nothing is tokenized; with another
//! tokenizer only tokenization is redone, from `texts.parquet`. Re-scoring writes a sibling
//! folder and leaves the others alone.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use rayon::prelude::*;

use crate::input::{self, Input};
use crate::keys::TextKey;
use crate::metrics::{self, Definitions, IslMode, ItlDefinition, RequestMetrics, TokenCounts};
use crate::reassemble::{Ended, IdMap, IdSet, Reassembler, RequestFacts, RequestRecord};
use crate::store::icl::GapsFile;
use crate::store::parquet::{write_parquet, Part};
use crate::store::{BackgroundWriters, Caches, RunFolder};
use crate::summary::{summarize, Scoring, Slo, Summary, SummaryInput, SummaryText};
use crate::template::ChatTemplate;
use crate::tokenize::{Counter, RunCheck, TokenCache};
use crate::{Error, Result};
use recap_schemas::manifest::Phases;

/// Options of one report.
#[derive(Debug, Clone)]
pub struct ReportOptions {
    /// Metric definitions.
    pub definitions: Definitions,
    /// Chat ISL mode.
    pub isl: IslMode,
    /// Goodput SLOs.
    pub slo: Slo,
    /// Windows reported besides the full one.
    pub window: crate::summary::Window,
    /// Latency bounds checked (`--constraint`, `--mlperf`).
    pub constraints: Option<crate::constraints::Spec>,
    /// Show a progress bar (only honoured on a terminal).
    pub progress: bool,
}

/// What one report produced.
#[derive(Debug)]
pub struct Report {
    /// The summary.
    pub summary: Summary,
    /// Per-request metrics, by `request_id`.
    pub rows: Vec<RequestMetrics>,
    /// The analysis folder written.
    pub dir: PathBuf,
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
    // Where the time goes, at -v (the B8/B9/B12 benchmarks read these lines).
    let mut stage = Instant::now();
    let mut lap = |what: &str| {
        tracing::info!("stage {what}: {:.3} s", stage.elapsed().as_secs_f64());
        stage = Instant::now();
    };
    let mut cache = TokenCache::load(&cache_path);
    if !counter.accepts(&cache) {
        tracing::info!("--exact: counting again with `tokenizers` instead of the cached counts");
        cache = TokenCache::default();
    }
    let known = cache.len();
    let caches = Caches::of(run, &dir);
    let template = match opts.isl {
        IslMode::Template => counter.chat_template(),
        IslMode::Raw => None,
    };
    // The gaps depend only on the recorded events: a file built from these segments is kept.
    let gaps = caches.gaps_writer()?;
    // Per-token ITL needs each event's bytes, which only the events have (the records cache
    // keeps no texts): such a scoring reads the events and writes `itl.parquet`.
    let per_token = !matches!(opts.definitions.itl, ItlDefinition::Chunk);
    let itl_file = if per_token {
        counter.ready()?;
        Some(caches.itl_writer()?)
    } else {
        None
    };
    let mut pass = Pass {
        counter,
        template,
        definitions: opts.definitions,
        phases: Phases::of(&run.manifest.load),
        cache,
        check: RunCheck::default(),
        isl: IdMap::default(),
        items: IdMap::default(),
        rows: Vec::new(),
        gaps,
        itl: itl_file,
        writers: None,
        counting: Duration::ZERO,
        progress: opts.progress,
    };
    let requests = pass.read_requests(run)?;
    lap("inputs");
    let from_caches = !per_token
        && caches.reusable(
            &mut pass,
            |p, k| p.cache.contains(&(k, false)),
            |p, texts| {
                let keys: Vec<(TextKey, bool)> = texts.iter().map(|(k, _)| (*k, false)).collect();
                p.count(&keys, &|i| Some(Cow::Borrowed(texts[i].1))).map(drop)
            },
        )?;
    if from_caches {
        drop(requests);
        caches.read_records(&mut |records| pass.score(records))?;
    } else {
        pass.writers = Some(caches.writers().in_background());
        pass.reassemble(run, requests)?;
    }
    // Counting overlaps reading; this is its share of the pass.
    tracing::info!(
        "stage tokens: {:.3} s (counting, within the pass)",
        pass.counting.as_secs_f64()
    );
    lap("records");
    let Pass {
        cache,
        mut rows,
        gaps,
        itl,
        writers,
        ..
    } = pass;
    if let Some(g) = gaps {
        g.finish()?;
    }
    if let Some(f) = itl {
        f.finish()?;
    }
    if let Some(w) = writers {
        w.finish();
    }
    if cache.len() != known {
        crate::store::cache_written("token count", &cache_path, cache.save(&cache_path));
    }
    lap("caches saved");
    rows.sort_by_key(|(m, _)| m.request_id);
    let (rows, protocol): (Vec<RequestMetrics>, Vec<u32>) = rows.into_iter().unzip();
    let counted: IdSet = rows
        .iter()
        .filter(|m| m.phase == Some(recap_schemas::Phase::Measure) && m.ok)
        .map(|m| m.request_id)
        .collect();
    let icl_ms = caches.icl_distribution(&|id| counted.contains(&id))?;
    let itl_ms = caches.itl_distribution(per_token, &|id| counted.contains(&id))?;
    let isl_used = match (opts.isl, counter.chat_template().is_some()) {
        (IslMode::Template, true) => IslMode::Template,
        _ => IslMode::Raw,
    };
    let mut summary = summarize(SummaryInput {
        scoring: Scoring {
            run: run.location.display().to_string(),
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
        itl_ms,
        protocol_events: &protocol,
        window: opts.window,
        constraints: opts.constraints.as_ref(),
    });
    if !run.scrapes.is_empty() {
        summary.server = Some(server_metrics(run, &rows)?);
    }
    summary.client = client_check(run);
    summary.shards = run.shards_summary();
    if let Some(sh) = &summary.shards {
        for w in &sh.warnings {
            tracing::warn!("{}: {w}", run.location.display());
        }
    }
    lap("metrics and summary");
    write_outputs(&dir, &rows, &summary)?;
    lap("outputs written");
    Ok(Report { summary, rows, dir })
}

/// Whether the client could have set the pace: the run's own check, or for a sharded run the
/// busiest shard's, with every shard's warnings.
fn client_check(run: &RunFolder) -> Option<recap_schemas::summary::ClientCheck> {
    let checks: Vec<(Option<u32>, recap_schemas::summary::ClientCheck)> = if run.shards.is_empty() {
        run.manifest
            .client
            .iter()
            .map(|h| (None, crate::summary::client_check(h, run.manifest.counts.as_ref())))
            .collect()
    } else {
        run.shards
            .iter()
            .filter_map(|s| {
                let h = s.manifest.client.as_ref()?;
                Some((
                    Some(s.index),
                    crate::summary::client_check(h, s.manifest.counts.as_ref()),
                ))
            })
            .collect()
    };
    let warnings: Vec<String> = checks
        .iter()
        .flat_map(|(i, c)| {
            c.warnings.iter().map(move |w| match i {
                Some(i) => format!("shard {i}: {w}"),
                None => w.clone(),
            })
        })
        .collect();
    for w in &warnings {
        tracing::warn!("{}: {w}", run.location.display());
    }
    let (_, busiest) = checks
        .into_iter()
        .max_by(|a, b| a.1.cpu_share.total_cmp(&b.1.cpu_share))?;
    Some(recap_schemas::summary::ClientCheck { warnings, ..busiest })
}

/// The run's scrapes parsed into `analysis/server_metrics.parquet` (shared by every
/// analysis of the run), and summarized over the measure window.
fn server_metrics(
    run: &RunFolder,
    rows: &[crate::metrics::RequestMetrics],
) -> Result<recap_schemas::summary::ServerSummary> {
    let scrapes = crate::server::read(&run.parts(&run.scrapes)?)?;
    let path = recap_schemas::analysis::analysis_root(&run.dir).join(recap_schemas::server::SERVER_METRICS_FILE);
    crate::server::write(&path, &scrapes)?;
    let (start, end) = crate::summary::measure_window(rows);
    let summary = crate::server::summarize(&scrapes, start.unwrap_or(i64::MIN), end.unwrap_or(i64::MAX));
    if summary.failed_scrapes > 0 {
        tracing::warn!(
            "{} of {} scrapes of the server's metrics in the measure window failed (analyze sql: SELECT error FROM scrapes)",
            summary.failed_scrapes,
            summary.scrapes
        );
    }
    Ok(summary)
}

/// The phase of a request whose `requests` row (with its phase and schedule time) was lost to
/// a kill, by capture's rule ([`Phases::phase`]): its schedule time is taken as the first
/// moment recorded of its last attempt (the connection it opened, else its `sent`), which is
/// at the schedule time or, by the client's lag (and any retry), after it.
fn phase_of_lost(phases: &Phases, r: &RequestRecord) -> recap_schemas::Phase {
    let t = [r.connect_ns, r.sent_ns].into_iter().flatten().min();
    match t {
        Some(t) => phases.phase(r.request_id, t),
        None if r.request_id < phases.warmup_requests => recap_schemas::Phase::Warmup,
        None => recap_schemas::Phase::Measure,
    }
}

/// The state of one report's pass over a run.
struct Pass<'a> {
    counter: &'a Counter,
    template: Option<&'a ChatTemplate>,
    definitions: Definitions,
    /// When each phase began (for records whose `requests` row is lost).
    phases: Phases,
    cache: TokenCache,
    check: RunCheck,
    /// Input tokens of each request with a `requests` row.
    isl: IdMap<Option<u32>>,
    /// Items of each embeddings or rerank request (texts embedded, documents scored).
    items: IdMap<u32>,
    /// Metrics and protocol events of each finished request.
    rows: Vec<(RequestMetrics, u32)>,
    gaps: Option<GapsFile>,
    /// `itl.parquet`, with a per-token `--itl`.
    itl: Option<GapsFile>,
    writers: Option<BackgroundWriters>,
    /// Time spent counting tokens.
    counting: Duration,
    progress: bool,
}

/// Rows of row groups decoded at once per core: the window keeps every core busy while the
/// previous one is counted, and its memory does not depend on how large capture made its row
/// groups (up to 131,072 rows each since 2026-12-06, 65,536 before).
const WINDOW_ROWS_PER_THREAD: u64 = 2 << 16;

/// `parts` cut into windows in order: up to two row groups per core, fewer once they hold
/// [`WINDOW_ROWS_PER_THREAD`] rows per core (always at least one).
fn windows(parts: &[Part], threads: usize) -> impl Iterator<Item = &[Part]> {
    let threads = threads.max(1);
    let (max_parts, max_rows) = (2 * threads, WINDOW_ROWS_PER_THREAD * threads as u64);
    let mut rest = parts;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut rows = 0u64;
        let n = rest
            .iter()
            .take(max_parts)
            .take_while(|p| {
                let fits = rows == 0 || rows + p.rows <= max_rows;
                rows += p.rows;
                fits
            })
            .count()
            .max(1);
        let (window, tail) = rest.split_at(n);
        rest = tail;
        Some(window)
    })
}

/// Decodes `parts` in parallel, keeping their order.
fn decode(parts: &[Part], columns: &[&str]) -> Result<Vec<Vec<RecordBatch>>> {
    parts
        .par_iter()
        .map(|p| crate::store::parquet::read_part(p, columns))
        .collect()
}

impl Pass<'_> {
    /// Counts with the run's cache and check, timing it.
    fn count<'t>(
        &mut self,
        keys: &[(TextKey, bool)],
        text: &(dyn Fn(usize) -> Option<Cow<'t, str>> + Sync),
    ) -> Result<Option<Vec<u32>>> {
        let start = Instant::now();
        let n = self
            .counter
            .count_keyed(keys, text, &mut self.cache, &self.check, &|_| {});
        self.counting += start.elapsed();
        n
    }

    /// Reads every `requests` row and counts its input; returns the rows by id.
    fn read_requests(&mut self, run: &RunFolder) -> Result<IdMap<RequestFacts>> {
        let parts = run.parts(&run.requests)?;
        let mut out = IdMap::default();
        let warned = std::sync::Once::new();
        for window in windows(&parts, rayon::current_num_threads()) {
            for (part, batches) in window.iter().zip(decode(window, crate::reassemble::REQUEST_COLUMNS)?) {
                // The same row group read again, in the same batches, for the APIs that need it.
                let extra = if batches.iter().any(crate::reassemble::needs_extra) {
                    crate::store::parquet::read_part(part, crate::reassemble::EXTRA_REQUEST_COLUMNS)?
                } else {
                    Vec::new()
                };
                for (k, b) in batches.iter().enumerate() {
                    let rows =
                        crate::reassemble::request_rows(b, extra.get(k)).map_err(|e| Error::within(&part.path, e))?;
                    let inputs: Vec<Option<Input<'_>>> = rows
                        .par_iter()
                        .map(|(_, row, text)| {
                            let (i, t) = row.input.zip(text.as_deref())?;
                            Input::of(i.kind, t)
                        })
                        .collect();
                    let counted: Vec<usize> = (0..rows.len()).filter(|i| inputs[*i].is_some()).collect();
                    let keys: Vec<(TextKey, bool)> = counted
                        .iter()
                        .filter_map(|i| rows[*i].1.input.map(|inp| input::key(inp, self.template)))
                        .collect();
                    let template = self.template;
                    let text = |k: usize| inputs[counted[k]].as_ref().map(|inp| inp.text(template, &warned));
                    let n = self
                        .count(&keys, &text)?
                        .ok_or_else(|| Error::Internal("an input text went missing".into()))?;
                    let mut isl = vec![None; rows.len()];
                    for (i, n) in counted.iter().zip(n) {
                        isl[*i] = Some(n);
                    }
                    self.count_parts(&rows, &mut isl)?;
                    for ((id, row, _), isl) in rows.into_iter().zip(isl) {
                        self.isl.insert(id, isl);
                        out.insert(id, row);
                    }
                }
            }
        }
        Ok(out)
    }

    /// Counts the embeddings and rerank inputs of `rows` in parts ([`input::Parts`]): each
    /// distinct text once, the sum (plus the pair specials) into `isl`, the items noted.
    fn count_parts(&mut self, rows: &[crate::reassemble::RequestRow<'_>], isl: &mut [Option<u32>]) -> Result<()> {
        let parted: Vec<(usize, input::Parts)> = rows
            .iter()
            .enumerate()
            .filter_map(|(i, (_, row, text))| Some((i, input::Parts::of(row.input?.kind, text.as_deref()?)?)))
            .collect();
        if parted.is_empty() {
            return Ok(());
        }
        let texts: Vec<(&str, bool)> = parted
            .iter()
            .flat_map(|(_, p)| p.texts.iter().map(|(t, s)| (t.as_str(), *s)))
            .collect();
        let keys: Vec<(TextKey, bool)> = texts.iter().map(|(t, s)| (crate::keys::text_hash(t), *s)).collect();
        let n = self
            .count(&keys, &|k| Some(Cow::Borrowed(texts[k].0)))?
            .ok_or_else(|| Error::Internal("an input part went missing".into()))?;
        let specials = if parted.iter().any(|(_, p)| p.pairs > 0) {
            self.counter.pair_special_tokens()?
        } else {
            0
        };
        let mut at = 0;
        for (i, p) in &parted {
            let sum: u32 = n[at..at + p.texts.len()].iter().sum();
            at += p.texts.len();
            isl[*i] = Some(sum + p.pairs * specials);
            self.items.insert(rows[*i].0, p.items);
        }
        Ok(())
    }

    /// The full pass: events read in order, each request scored when it ends.
    fn reassemble(&mut self, run: &RunFolder, requests: IdMap<RequestFacts>) -> Result<()> {
        tracing::info!("reassembling from the events");
        let parts = run.parts(&run.events)?;
        let bar = crate::progress::bar(parts.len() as u64, "reading events", self.progress);
        let mut re = Reassembler::new(requests);
        // Decodes a window of row groups and reassembles it: the requests that ended in it.
        let read = |window: &[Part], re: &mut Reassembler| -> Result<Vec<Ended>> {
            let mut ended = Vec::new();
            for (part, batches) in window.iter().zip(decode(window, crate::reassemble::EVENT_COLUMNS)?) {
                for b in &batches {
                    ended.extend(re.add(b).map_err(|e| Error::within(&part.path, e))?);
                }
            }
            bar.inc(window.len() as u64);
            Ok(ended)
        };
        let mut queue = windows(&parts, rayon::current_num_threads());
        let mut ended = match queue.next() {
            Some(w) => read(w, &mut re)?,
            None => Vec::new(),
        };
        // The next window is read and reassembled (one thread) while this one's requests are
        // counted and scored (the others).
        for w in queue {
            let (next, scored) = rayon::join(|| read(w, &mut re), || self.score_ended(ended));
            scored?;
            ended = next?;
        }
        self.score_ended(ended)?;
        bar.finish_and_clear();
        let (rest, late) = re.drain();
        if late > 0 {
            tracing::warn!("{late} events came after their request's terminal event and were ignored");
        }
        self.score_ended(rest)
    }

    fn score_ended(&mut self, ended: Vec<Ended>) -> Result<()> {
        let phases = self.phases;
        let records: Vec<RequestRecord> = ended
            .into_par_iter()
            .map(|e| {
                let mut r = e.finish();
                // A request still in flight when capture was killed has events but no
                // `requests` row (it is written when the request ends): its phase is decided
                // again, as capture decided it.
                if r.phase.is_none() {
                    r.phase = Some(phase_of_lost(&phases, &r));
                }
                r
            })
            .collect();
        self.score(records)
    }

    /// Counts, measures and writes finished records (with their texts, or with every count
    /// already cached).
    fn score(&mut self, records: Vec<RequestRecord>) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let mut keys: Vec<(TextKey, bool)> = Vec::with_capacity(records.len() * 3);
        for r in &records {
            keys.extend([r.hashes.reasoning, r.hashes.content, r.hashes.tool_args].map(|k| (k, false)));
        }
        let text = |k: usize| -> Option<Cow<'_, str>> {
            let t = records[k / 3].texts.as_ref()?;
            Some(Cow::Borrowed(match k % 3 {
                0 => &t.reasoning,
                1 => &t.content,
                _ => &t.tool_args,
            }))
        };
        let n = self
            .count(&keys, &text)?
            .ok_or_else(|| Error::Internal("an output text is neither cached nor at hand".into()))?;
        let definitions = self.definitions;
        let (isl, items) = (&self.isl, &self.items);
        let counter = self.counter;
        let per_token = self.itl.is_some();
        let scored: Vec<((RequestMetrics, u32), Vec<i64>)> = records
            .par_iter()
            .enumerate()
            .map(|(i, r)| {
                let timing = if per_token { token_timing(counter, r)? } else { None };
                let counts = TokenCounts {
                    isl: isl.get(&r.request_id).copied().flatten(),
                    items: items.get(&r.request_id).copied(),
                    reasoning: n[3 * i],
                    content: n[3 * i + 1],
                    tool_calls: n[3 * i + 2],
                    second_token_ns: timing
                        .as_ref()
                        .and_then(|per| crate::per_token::second_token_ns(&r.output_times_ns, per)),
                    tokens_per_chunk: timing.as_deref().and_then(crate::per_token::tokens_per_chunk),
                };
                let itl = timing.map_or_else(Vec::new, |per| {
                    crate::per_token::itl_samples(&r.output_times_ns, &per, definitions.itl)
                });
                Ok(((metrics::compute(r, &counts, &definitions), r.protocol_events), itl))
            })
            .collect::<Result<_>>()?;
        let mut itl = Vec::new();
        for ((row, protocol), samples) in scored {
            itl.extend(samples.into_iter().map(|g| (row.request_id, g)));
            self.rows.push((row, protocol));
        }
        if let Some(f) = &mut self.itl {
            f.write(itl)?;
        }
        if let Some(g) = &mut self.gaps {
            g.write(
                records
                    .iter()
                    .flat_map(|r| metrics::icl_gaps(r).map(|gap| (r.request_id, gap))),
            )?;
        }
        if let Some(w) = &self.writers {
            w.write(records);
        }
        Ok(())
    }
}

/// Tokens completed by each output event of `r` (content and reasoning), when its texts are
/// at hand ([`crate::per_token`]).
fn token_timing(counter: &Counter, r: &RequestRecord) -> Result<Option<Vec<u32>>> {
    let Some(t) = &r.texts else { return Ok(None) };
    if r.output_ends.len() != r.output_times_ns.len() {
        return Ok(None);
    }
    let (content, reasoning) = (counter.token_ends(&t.content)?, counter.token_ends(&t.reasoning)?);
    Ok(Some(crate::per_token::tokens_per_event(
        &r.output_ends,
        &content,
        &reasoning,
    )))
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
    write_parquet(
        &dir.join(recap_schemas::analysis::SERIES_FILE),
        &crate::series::series(rows)?,
        &[],
    )?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn sizes(rows: &[u64], threads: usize) -> Vec<usize> {
        let parts: Vec<Part> = rows
            .iter()
            .enumerate()
            .map(|(row_group, &rows)| Part {
                path: PathBuf::from("events/part-0.parquet"),
                row_group,
                rows,
                shift_ns: 0,
            })
            .collect();
        windows(&parts, threads).map(<[Part]>::len).collect()
    }

    #[test]
    fn a_window_holds_two_row_groups_per_core_or_its_rows_whichever_is_fewer() {
        // Two threads: up to 4 row groups and 262,144 rows a window (hand-derived).
        assert_eq!(sizes(&[18_000; 10], 2), [4, 4, 2]);
        assert_eq!(sizes(&[131_072; 5], 2), [2, 2, 1]);
        assert_eq!(sizes(&[100_000, 100_000, 70_000, 10], 2), [2, 2]);
        // A row group over the bound is a window of its own, never skipped.
        assert_eq!(sizes(&[1_000_000, 10, 10], 2), [1, 2]);
        assert_eq!(sizes(&[131_072; 40], 16), [16, 16, 8]);
        assert!(sizes(&[], 2).is_empty());
    }
}
