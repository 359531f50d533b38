//! What the charts draw, read from `analyze` outputs: a run's newest (or named) analysis
//! folder (`metrics.parquet`, `icl.parquet`, `summary.json`) or a sweep's `sweep.json`.

use std::fs::File;
use std::path::{Path, PathBuf};

use arrow_array::cast::AsArray;
use arrow_array::types::{Int64Type, UInt32Type, UInt64Type};
use arrow_array::{Array, RecordBatch};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use recap_schemas::analysis::{self, icl, metrics as m};
use recap_schemas::summary::Summary;
use recap_schemas::sweep::Sweep;
use recap_schemas::{ErrorKind, Manifest, Phase};

use crate::{Error, Result};

/// One request as the charts need it (times in seconds since the run start, latencies in ms).
#[derive(Debug, Clone)]
pub struct Row {
    /// Warmup or measure.
    pub phase: Phase,
    /// Succeeded.
    pub ok: bool,
    /// Why it failed.
    pub error_kind: Option<ErrorKind>,
    /// Turn within its session (multi-turn runs).
    pub turn: Option<u32>,
    /// TTFT (ms).
    pub ttft_ms: Option<f64>,
    /// TPOT (ms).
    pub tpot_ms: Option<f64>,
    /// E2E (ms).
    pub e2e_ms: Option<f64>,
    /// Input tokens.
    pub isl: Option<f64>,
    /// Output tokens.
    pub osl: Option<f64>,
    /// Output tokens by the tokenizer.
    pub tokenizer_out: Option<f64>,
    /// Output tokens by the server.
    pub server_out: Option<f64>,
    /// Send time (s).
    pub sent_s: Option<f64>,
    /// Terminal time (s).
    pub end_s: Option<f64>,
}

/// One analyzed run.
#[derive(Debug, Clone)]
pub struct RunData {
    /// Folder name (legend label).
    pub name: String,
    /// The analysis folder read.
    pub analysis: PathBuf,
    /// `summary.json`.
    pub summary: Summary,
    /// The run's `manifest.json`, when it reads (facts for the HTML report).
    pub manifest: Option<Manifest>,
    /// Every request.
    pub rows: Vec<Row>,
    /// ICL gaps (ms) of successful measure-phase requests.
    pub icl_ms: Vec<f64>,
    /// Per-token ITLs (ms) under the summary's `--itl` definition (`itl.parquet`), of the same
    /// requests; `None` when the analysis chose the chunk definition.
    pub itl_ms: Option<Vec<f64>>,
    /// The server's well-known series over the whole run, from `server_metrics.parquet`
    /// (`capture --scrape`); empty without.
    pub server: Vec<ServerLine>,
}

/// One well-known server series, scrape by scrape.
#[derive(Debug, Clone)]
pub struct ServerLine {
    /// Its key (`requests_running`).
    pub key: &'static str,
    /// What it is, with its unit.
    pub description: &'static str,
    /// (time since run start in s, value), one point per scrape round (targets combined).
    pub points: Vec<(f64, f64)>,
}

/// The well-known series of `server_metrics.parquet` at `path`: for each, the first name
/// servers expose it under that the file holds, each scrape's label sets and each round's
/// targets combined by the contract's rule (`recap_schemas::server`), as `analyze`
/// summarizes them.
fn server_lines(path: &Path) -> Result<Vec<ServerLine>> {
    use recap_schemas::server as srv;
    if !path.is_file() {
        return Ok(Vec::new());
    }
    // (name) -> (target, t_ns) -> values
    type ByScrape = std::collections::BTreeMap<(String, i64), Vec<f64>>;
    let mut by_name: std::collections::HashMap<String, ByScrape> = std::collections::HashMap::new();
    let wanted: std::collections::HashSet<&str> =
        srv::WELL_KNOWN.iter().flat_map(|w| w.names.iter().copied()).collect();
    for b in read_batches(path)? {
        let name = col(&b, srv::NAME, path)?.as_string::<i32>().clone();
        let target = col(&b, srv::TARGET, path)?.as_string::<i32>().clone();
        let t = col(&b, srv::T_NS, path)?.as_primitive::<Int64Type>().clone();
        let v = col(&b, srv::VALUE, path)?
            .as_primitive::<arrow_array::types::Float64Type>()
            .clone();
        for i in 0..b.num_rows() {
            if wanted.contains(name.value(i)) {
                by_name
                    .entry(name.value(i).to_string())
                    .or_default()
                    .entry((target.value(i).to_string(), t.value(i)))
                    .or_default()
                    .push(v.value(i));
            }
        }
    }
    Ok(srv::WELL_KNOWN
        .iter()
        .filter_map(|wk| {
            let scrapes = wk.names.iter().find_map(|n| by_name.get(*n))?;
            let per_scrape: Vec<(&str, i64, f64)> = scrapes
                .iter()
                .filter_map(|((target, t), v)| Some((target.as_str(), *t, wk.combine.apply(v)?)))
                .collect();
            let points: Vec<(f64, f64)> = srv::rounds(&per_scrape, wk.combine)
                .into_iter()
                .map(|(t, v)| (t as f64 / 1e9, v))
                .collect();
            Some(ServerLine {
                key: wk.key,
                description: wk.description,
                points,
            })
        })
        .collect())
}

fn read_batches(path: &Path) -> Result<Vec<RecordBatch>> {
    let file = File::open(path).map_err(|source| Error::Unreadable {
        path: path.to_path_buf(),
        source,
    })?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|b| b.build())
        .map_err(|e| Error::Input(format!("{}: {e}", path.display())))?;
    reader
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::Input(format!("{}: {e}", path.display())))
}

fn col<'a>(b: &'a RecordBatch, name: &str, path: &Path) -> Result<&'a arrow_array::ArrayRef> {
    b.column_by_name(name)
        .ok_or_else(|| Error::Input(format!("{}: no column `{name}`", path.display())))
}

impl RunData {
    /// Reads the run's analysis (`tokenizer_id` names one; default the newest).
    pub fn load(run: &Path, tokenizer_id: Option<&str>) -> Result<Self> {
        let analysis = analysis::find_analysis(run, tokenizer_id).ok_or_else(|| {
            Error::Input(format!(
                "{}: no analysis found{}; run `analyze report {} --tokenizer ...` first",
                run.display(),
                tokenizer_id.map_or(String::new(), |t| format!(" for tokenizer id {t}")),
                run.display()
            ))
        })?;
        let metrics = analysis.join(analysis::METRICS_FILE);
        let summary: Summary = read_json(&analysis.join(analysis::SUMMARY_JSON))?;
        let mut rows = Vec::new();
        let mut ok_ids = std::collections::HashSet::new();
        for b in read_batches(&metrics)? {
            let id = col(&b, m::REQUEST_ID, &metrics)?.as_primitive::<UInt64Type>().clone();
            let phase = col(&b, m::PHASE, &metrics)?.as_string::<i32>().clone();
            let ok = col(&b, m::OK, &metrics)?.as_boolean().clone();
            let kind = col(&b, m::ERROR_KIND, &metrics)?.as_string::<i32>().clone();
            let turn = col(&b, m::TURN, &metrics)?.as_primitive::<UInt32Type>().clone();
            let ns = |n: &str| -> Result<Vec<Option<f64>>> {
                let a = col(&b, n, &metrics)?.as_primitive::<Int64Type>();
                Ok((0..a.len()).map(|i| a.is_valid(i).then(|| a.value(i) as f64)).collect())
            };
            let tok = |n: &str| -> Result<Vec<Option<f64>>> {
                let a = col(&b, n, &metrics)?.as_primitive::<UInt32Type>();
                Ok((0..a.len())
                    .map(|i| a.is_valid(i).then(|| f64::from(a.value(i))))
                    .collect())
            };
            let (ttft, tpot, e2e, sent, end) = (
                ns(m::TTFT_NS)?,
                ns(m::TPOT_NS)?,
                ns(m::E2E_NS)?,
                ns(m::SENT_NS)?,
                ns(m::END_NS)?,
            );
            let (isl, osl, tout, sout) = (
                tok(m::ISL_TOKENS)?,
                tok(m::OSL_TOKENS)?,
                tok(m::TOKENIZER_OUTPUT_TOKENS)?,
                tok(m::SERVER_COMPLETION_TOKENS)?,
            );
            for i in 0..b.num_rows() {
                let ms = |v: Option<f64>| v.map(|x| x / 1e6);
                let s = |v: Option<f64>| v.map(|x| x / 1e9);
                let phase = phase
                    .value(i)
                    .parse::<Phase>()
                    .map_err(|e| Error::Input(format!("{}: column `{}`: {e}", metrics.display(), m::PHASE)))?;
                let error_kind =
                    if kind.is_valid(i) {
                        Some(kind.value(i).parse::<ErrorKind>().map_err(|e| {
                            Error::Input(format!("{}: column `{}`: {e}", metrics.display(), m::ERROR_KIND))
                        })?)
                    } else {
                        None
                    };
                let r = Row {
                    phase,
                    ok: ok.value(i),
                    error_kind,
                    turn: turn.is_valid(i).then(|| turn.value(i)),
                    ttft_ms: ms(ttft[i]),
                    tpot_ms: ms(tpot[i]),
                    e2e_ms: ms(e2e[i]),
                    isl: isl[i],
                    osl: osl[i],
                    tokenizer_out: tout[i],
                    server_out: sout[i],
                    sent_s: s(sent[i]),
                    end_s: s(end[i]),
                };
                if r.ok && r.phase == Phase::Measure {
                    ok_ids.insert(id.value(i));
                }
                rows.push(r);
            }
        }
        let gaps = |file: &str| -> Result<Option<Vec<f64>>> {
            let path = analysis.join(file);
            if !path.exists() {
                return Ok(None);
            }
            let mut out = Vec::new();
            for b in read_batches(&path)? {
                let id = col(&b, icl::REQUEST_ID, &path)?.as_primitive::<UInt64Type>().clone();
                let g = col(&b, icl::GAP_NS, &path)?.as_primitive::<Int64Type>().clone();
                out.extend(
                    (0..b.num_rows())
                        .filter(|i| ok_ids.contains(&id.value(*i)))
                        .map(|i| g.value(i) as f64 / 1e6),
                );
            }
            Ok(Some(out))
        };
        let icl_ms = gaps(analysis::ICL_FILE)?.unwrap_or_default();
        let itl_ms = gaps(analysis::ITL_FILE)?;
        let server = server_lines(&analysis::analysis_root(run).join(recap_schemas::server::SERVER_METRICS_FILE))?;
        let manifest = match std::fs::read(run.join(recap_schemas::MANIFEST_FILE)) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| {
                    tracing::warn!(
                        "{}: {e}; the report leaves out the run's facts",
                        run.join(recap_schemas::MANIFEST_FILE).display()
                    )
                })
                .ok(),
            Err(_) => None,
        };
        let name = run
            .file_name()
            .map_or_else(|| run.display().to_string(), |n| n.to_string_lossy().into_owned());
        Ok(RunData {
            name,
            analysis,
            summary,
            manifest,
            rows,
            icl_ms,
            itl_ms,
            server,
        })
    }

    /// Successful measure-phase rows.
    pub fn measured_ok(&self) -> impl Iterator<Item = &Row> {
        self.rows.iter().filter(|r| r.ok && r.phase == Phase::Measure)
    }

    /// Values of one latency metric (`ttft`, `tpot`, `icl`, `e2e`) over successful measured requests.
    pub fn latency(&self, metric: &str) -> Vec<f64> {
        match metric {
            "icl" => self.icl_ms.clone(),
            m => self
                .measured_ok()
                .filter_map(|r| match m {
                    "ttft" => r.ttft_ms,
                    "tpot" => r.tpot_ms,
                    _ => r.e2e_ms,
                })
                .collect(),
        }
    }

    /// Refuses runs with too little data for distributions, with a message saying why.
    pub fn require_samples(&self, min: usize) -> Result<()> {
        let n = self.measured_ok().count();
        if n < min {
            return Err(Error::Input(format!(
                "run {} has {n} successful measured request{}; at least {min} are needed to draw distributions",
                self.name,
                if n == 1 { "" } else { "s" }
            )));
        }
        Ok(())
    }
}

/// Reads a JSON file Recap wrote into its contract type; a missing or renamed field is an
/// error naming the file and the field.
fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let bytes = std::fs::read(path).map_err(|source| Error::Unreadable {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_slice(&bytes).map_err(|e| {
        Error::Input(format!(
            "{}: {e}; it was not written by this version of `analyze report`/`sweep`: re-run it",
            path.display()
        ))
    })
}

/// A sweep's `sweep.json`.
pub fn load_sweep(dir: &Path) -> Result<Sweep> {
    let p = dir.join(analysis::SWEEP_JSON);
    let sweep: Sweep = read_json(&p)?;
    if sweep.rows.is_empty() {
        return Err(Error::Input(format!("{}: the sweep has no runs", p.display())));
    }
    Ok(sweep)
}

/// `analyze compare --format json`'s output, saved to a file.
pub fn load_comparison(path: &Path) -> Result<recap_schemas::compare::Comparison> {
    let c: recap_schemas::compare::Comparison = read_json(path)?;
    if c.runs.is_empty() {
        return Err(Error::Input(format!("{}: the comparison has no runs", path.display())));
    }
    Ok(c)
}
