//! Reads a run folder back into plain Rust rows, for assertions in end-to-end tests.
//!
//! Deliberately independent of `capture`'s writer code: it goes through the `parquet` reader
//! and the column names of `recap-schemas`, as any outside script would.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use arrow_array::cast::AsArray;
use arrow_array::types::{Int64Type, UInt16Type, UInt32Type, UInt64Type};
use arrow_array::{Array, RecordBatch};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use recap_schemas::{events, requests, Api, ErrorKind, EventKind, Manifest, Phase};

/// One `requests` row.
#[derive(Debug, Clone)]
pub struct RequestRow {
    /// `request_id`.
    pub request_id: u64,
    /// `phase`.
    pub phase: Phase,
    /// `api`.
    pub api: Api,
    /// `scheduled_ns`.
    pub scheduled_ns: i64,
    /// `prompt`.
    pub prompt: Option<String>,
    /// `messages_json`.
    pub messages_json: Option<String>,
    /// `params_json`.
    pub params_json: String,
    /// `input_json` (added within version 3).
    pub input_json: Option<String>,
    /// `max_tokens`.
    pub max_tokens: Option<u32>,
    /// `connection_id`.
    pub connection_id: Option<u32>,
    /// `session_id`.
    pub session_id: Option<String>,
    /// `turn`.
    pub turn: Option<u32>,
    /// `client_request_id` (version 3).
    pub client_request_id: Option<String>,
    /// `server_request_id` (version 3).
    pub server_request_id: Option<String>,
}

/// One `events` row (the columns tests look at).
#[derive(Debug, Clone)]
pub struct EventRow {
    /// `request_id`.
    pub request_id: u64,
    /// `kind`.
    pub kind: EventKind,
    /// `t_ns`.
    pub t_ns: i64,
    /// `seq`.
    pub seq: Option<u32>,
    /// `bytes`.
    pub bytes: Option<u32>,
    /// `content`.
    pub content: Option<String>,
    /// `reasoning`.
    pub reasoning: Option<String>,
    /// `role`.
    pub role: Option<String>,
    /// `finish_reason`.
    pub finish_reason: Option<String>,
    /// `usage_prompt_tokens`.
    pub usage_prompt_tokens: Option<u32>,
    /// `usage_completion_tokens`.
    pub usage_completion_tokens: Option<u32>,
    /// `done_marker`.
    pub done_marker: bool,
    /// `http_status`.
    pub http_status: Option<u16>,
    /// `error_kind`.
    pub error_kind: Option<ErrorKind>,
    /// `error_message`.
    pub error_message: Option<String>,
    /// `choice_index` (version 3).
    pub choice_index: Option<u32>,
    /// `sse_event` (version 3).
    pub sse_event: Option<String>,
    /// `raw` (version 3).
    pub raw: Option<String>,
    /// `usage_cached_tokens` (version 3).
    pub usage_cached_tokens: Option<u32>,
    /// `timings_prompt_ms` (version 3).
    pub timings_prompt_ms: Option<f64>,
    /// `timings_predicted_ms` (version 3).
    pub timings_predicted_ms: Option<f64>,
    /// `response_headers_json` (version 3).
    pub response_headers_json: Option<String>,
}

/// A whole run read back.
#[derive(Debug)]
pub struct Run {
    /// `manifest.json`.
    pub manifest: Manifest,
    /// All `requests` rows, by id.
    pub requests: BTreeMap<u64, RequestRow>,
    /// All `events` rows, grouped by request and ordered by `(t_ns, seq)` as written.
    pub events: BTreeMap<u64, Vec<EventRow>>,
    /// Key-value metadata of every segment read.
    pub segment_metadata: Vec<BTreeMap<String, String>>,
    /// Segment files read.
    pub segments: Vec<PathBuf>,
}

impl Run {
    /// The terminal rows of request `id`.
    pub fn terminals(&self, id: u64) -> Vec<&EventRow> {
        self.events
            .get(&id)
            .map(|v| v.iter().filter(|e| e.kind.is_terminal()).collect())
            .unwrap_or_default()
    }

    /// Concatenated `content` of request `id`'s SSE rows in `seq` order.
    pub fn content(&self, id: u64) -> String {
        self.sse(id).iter().filter_map(|e| e.content.clone()).collect()
    }

    /// Concatenated `reasoning` of request `id`'s SSE rows in `seq` order.
    pub fn reasoning(&self, id: u64) -> String {
        self.sse(id).iter().filter_map(|e| e.reasoning.clone()).collect()
    }

    /// Request `id`'s SSE rows in `seq` order.
    pub fn sse(&self, id: u64) -> Vec<&EventRow> {
        let mut v: Vec<&EventRow> = self
            .events
            .get(&id)
            .map(|v| v.iter().filter(|e| e.kind == EventKind::Sse).collect())
            .unwrap_or_default();
        v.sort_by_key(|e| e.seq);
        v
    }
}

/// A stored spelling parsed into its contract enum; an unknown one is an error naming the column.
fn parse_enum<T: std::str::FromStr<Err = String>>(text: &str, column: &str) -> Result<T> {
    text.parse().map_err(|e| anyhow::anyhow!("column `{column}`: {e}"))
}

/// Reads a run folder: the manifest and every closed segment of both tables.
pub fn read_run(dir: &Path) -> Result<Run> {
    let manifest_path = dir.join(recap_schemas::MANIFEST_FILE);
    let manifest: Manifest = serde_json::from_slice(
        &std::fs::read(&manifest_path).with_context(|| format!("reading {}", manifest_path.display()))?,
    )
    .with_context(|| format!("parsing {}", manifest_path.display()))?;
    let mut run = Run {
        manifest,
        requests: BTreeMap::new(),
        events: BTreeMap::new(),
        segment_metadata: Vec::new(),
        segments: Vec::new(),
    };
    for batch in read_table(&dir.join(recap_schemas::REQUESTS_DIR), &mut run)? {
        let col = |n: &str| batch.column_by_name(n).with_context(|| format!("requests column {n}"));
        let id = col(requests::REQUEST_ID)?.as_primitive::<UInt64Type>().clone();
        let phase = col(requests::PHASE)?.as_string::<i32>().clone();
        let api = col(requests::API)?.as_string::<i32>().clone();
        let sched = col(requests::SCHEDULED_NS)?.as_primitive::<Int64Type>().clone();
        let prompt = col(requests::PROMPT)?.as_string::<i32>().clone();
        let msgs = col(requests::MESSAGES_JSON)?.as_string::<i32>().clone();
        let maxt = col(requests::MAX_TOKENS)?.as_primitive::<UInt32Type>().clone();
        let conn = col(requests::CONNECTION_ID)?.as_primitive::<UInt32Type>().clone();
        // Added within version 2: older runs have neither.
        let session = batch
            .column_by_name(requests::SESSION_ID)
            .map(|c| c.as_string::<i32>().clone());
        let turn = batch
            .column_by_name(requests::TURN)
            .map(|c| c.as_primitive::<UInt32Type>().clone());
        let opt_str = |n: &str| batch.column_by_name(n).map(|c| c.as_string::<i32>().clone());
        let (client_id, server_id) = (
            opt_str(requests::CLIENT_REQUEST_ID),
            opt_str(requests::SERVER_REQUEST_ID),
        );
        let params = opt_str(requests::PARAMS_JSON);
        let input_json = opt_str(requests::INPUT_JSON);
        let at = |a: &Option<arrow_array::StringArray>, i: usize| {
            a.as_ref().filter(|a| a.is_valid(i)).map(|a| a.value(i).to_string())
        };
        for i in 0..batch.num_rows() {
            let row = RequestRow {
                request_id: id.value(i),
                phase: parse_enum(phase.value(i), requests::PHASE)?,
                api: parse_enum(api.value(i), requests::API)?,
                scheduled_ns: sched.value(i),
                prompt: prompt.is_valid(i).then(|| prompt.value(i).to_string()),
                messages_json: msgs.is_valid(i).then(|| msgs.value(i).to_string()),
                params_json: at(&params, i).unwrap_or_default(),
                input_json: at(&input_json, i),
                max_tokens: maxt.is_valid(i).then(|| maxt.value(i)),
                connection_id: conn.is_valid(i).then(|| conn.value(i)),
                session_id: session
                    .as_ref()
                    .filter(|a| a.is_valid(i))
                    .map(|a| a.value(i).to_string()),
                turn: turn.as_ref().filter(|a| a.is_valid(i)).map(|a| a.value(i)),
                client_request_id: at(&client_id, i),
                server_request_id: at(&server_id, i),
            };
            if run.requests.insert(row.request_id, row).is_some() {
                bail!("duplicate request_id {}", id.value(i));
            }
        }
    }
    for batch in read_table(&dir.join(recap_schemas::EVENTS_DIR), &mut run)? {
        let col = |n: &str| batch.column_by_name(n).with_context(|| format!("events column {n}"));
        let id = col(events::REQUEST_ID)?.as_primitive::<UInt64Type>().clone();
        let kind = col(events::KIND)?.as_string::<i32>().clone();
        let t = col(events::T_NS)?.as_primitive::<Int64Type>().clone();
        let seq = col(events::SEQ)?.as_primitive::<UInt32Type>().clone();
        let bytes = col(events::BYTES)?.as_primitive::<UInt32Type>().clone();
        let content = col(events::CONTENT)?.as_string::<i32>().clone();
        let reasoning = col(events::REASONING)?.as_string::<i32>().clone();
        let role = col(events::ROLE)?.as_string::<i32>().clone();
        let finish = col(events::FINISH_REASON)?.as_string::<i32>().clone();
        let up = col(events::USAGE_PROMPT_TOKENS)?.as_primitive::<UInt32Type>().clone();
        let uc = col(events::USAGE_COMPLETION_TOKENS)?
            .as_primitive::<UInt32Type>()
            .clone();
        let done = col(events::DONE_MARKER)?.as_boolean().clone();
        let status = col(events::HTTP_STATUS)?.as_primitive::<UInt16Type>().clone();
        let ek = col(events::ERROR_KIND)?.as_string::<i32>().clone();
        let em = col(events::ERROR_MESSAGE)?.as_string::<i32>().clone();
        let s = |a: &arrow_array::StringArray, i: usize| a.is_valid(i).then(|| a.value(i).to_string());
        // Added in version 3: absent (all null) in older runs.
        let opt_str = |n: &str| batch.column_by_name(n).map(|c| c.as_string::<i32>().clone());
        let opt_u32 = |n: &str| batch.column_by_name(n).map(|c| c.as_primitive::<UInt32Type>().clone());
        let opt_f64 = |n: &str| {
            batch
                .column_by_name(n)
                .map(|c| c.as_primitive::<arrow_array::types::Float64Type>().clone())
        };
        let (choice, sse_event, raw, headers) = (
            opt_u32(events::CHOICE_INDEX),
            opt_str(events::SSE_EVENT),
            opt_str(events::RAW),
            opt_str(events::RESPONSE_HEADERS_JSON),
        );
        let cached = opt_u32(events::USAGE_CACHED_TOKENS);
        let (prompt_ms, predicted_ms) = (
            opt_f64(events::TIMINGS_PROMPT_MS),
            opt_f64(events::TIMINGS_PREDICTED_MS),
        );
        let os = |a: &Option<arrow_array::StringArray>, i: usize| a.as_ref().and_then(|a| s(a, i));
        let ou =
            |a: &Option<arrow_array::UInt32Array>, i: usize| a.as_ref().filter(|a| a.is_valid(i)).map(|a| a.value(i));
        let of =
            |a: &Option<arrow_array::Float64Array>, i: usize| a.as_ref().filter(|a| a.is_valid(i)).map(|a| a.value(i));
        for i in 0..batch.num_rows() {
            let row = EventRow {
                request_id: id.value(i),
                kind: parse_enum(kind.value(i), events::KIND)?,
                t_ns: t.value(i),
                seq: seq.is_valid(i).then(|| seq.value(i)),
                bytes: bytes.is_valid(i).then(|| bytes.value(i)),
                content: s(&content, i),
                reasoning: s(&reasoning, i),
                role: s(&role, i),
                finish_reason: s(&finish, i),
                usage_prompt_tokens: up.is_valid(i).then(|| up.value(i)),
                usage_completion_tokens: uc.is_valid(i).then(|| uc.value(i)),
                done_marker: done.is_valid(i) && done.value(i),
                http_status: status.is_valid(i).then(|| status.value(i)),
                error_kind: s(&ek, i).map(|v| parse_enum(&v, events::ERROR_KIND)).transpose()?,
                error_message: s(&em, i),
                choice_index: ou(&choice, i),
                sse_event: os(&sse_event, i),
                raw: os(&raw, i),
                usage_cached_tokens: ou(&cached, i),
                timings_prompt_ms: of(&prompt_ms, i),
                timings_predicted_ms: of(&predicted_ms, i),
                response_headers_json: os(&headers, i),
            };
            run.events.entry(row.request_id).or_default().push(row);
        }
    }
    for v in run.events.values_mut() {
        v.sort_by_key(|e| (e.t_ns, e.seq));
    }
    Ok(run)
}

fn read_table(dir: &Path, run: &mut Run) -> Result<Vec<RecordBatch>> {
    let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd.filter_map(|e| e.ok().map(|e| e.path())).collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e).with_context(|| format!("listing {}", dir.display())),
    };
    files.retain(|p| p.extension().is_some_and(|x| x == "parquet"));
    recap_schemas::sort_segments(&mut files);
    let mut out = Vec::new();
    for f in files {
        let file = File::open(&f).with_context(|| format!("opening {}", f.display()))?;
        let builder =
            ParquetRecordBatchReaderBuilder::try_new(file).with_context(|| format!("reading {}", f.display()))?;
        let md = builder
            .metadata()
            .file_metadata()
            .key_value_metadata()
            .map(|kv| {
                kv.iter()
                    .map(|k| (k.key.clone(), k.value.clone().unwrap_or_default()))
                    .collect()
            })
            .unwrap_or_default();
        run.segment_metadata.push(md);
        for b in builder.build().with_context(|| format!("decoding {}", f.display()))? {
            out.push(b.with_context(|| format!("decoding {}", f.display()))?);
        }
        run.segments.push(f);
    }
    Ok(out)
}

/// The key `recap-sim` derives a request's text from, recomputed from what capture recorded
/// (so tests can compare the recorded text with [`crate::sim::expected_content`]).
pub fn key_of(run: &Run, id: u64) -> String {
    let r = &run.requests[&id];
    let body = match (&r.messages_json, &r.prompt) {
        (Some(m), _) => serde_json::json!({
            "messages": serde_json::from_str::<serde_json::Value>(m).expect("messages json")
        }),
        (None, Some(p)) => serde_json::json!({"prompt": p}),
        (None, None) => panic!("request {id} has neither prompt nor messages"),
    };
    crate::sim::request_key(&body)
}

/// What [`rewrite_events`] puts in a row: its `kind`, `error_kind` and `error_message`.
pub type Rewritten = (&'static str, Option<&'static str>, Option<String>);

/// Rewrites every `events` segment of a run in place, row by row: `f` gets a row's `kind`,
/// `error_kind` and `error_message` and returns new values, or `None` to keep the row. Segment
/// metadata is kept. For tests that need a run as an older capture wrote it.
pub fn rewrite_events(dir: &Path, f: impl Fn(&str, Option<&str>, Option<&str>) -> Option<Rewritten>) -> Result<()> {
    use arrow_array::builder::StringBuilder;
    use std::sync::Arc;
    for path in crate::harness::closed_segments(dir, recap_schemas::EVENTS_DIR) {
        let builder = ParquetRecordBatchReaderBuilder::try_new(File::open(&path)?)?;
        let kv = builder.metadata().file_metadata().key_value_metadata().cloned();
        let schema = builder.schema().clone();
        let batches: Vec<RecordBatch> = builder.build()?.collect::<std::result::Result<_, _>>()?;
        let props = parquet::file::properties::WriterProperties::builder()
            .set_key_value_metadata(kv)
            .build();
        let tmp = path.with_extension("rewrite");
        let mut w = parquet::arrow::ArrowWriter::try_new(File::create(&tmp)?, schema.clone(), Some(props))?;
        for b in batches {
            let (kind, ek, em) = (
                b.column_by_name(events::KIND)
                    .context("kind")?
                    .as_string::<i32>()
                    .clone(),
                b.column_by_name(events::ERROR_KIND)
                    .context("error_kind")?
                    .as_string::<i32>()
                    .clone(),
                b.column_by_name(events::ERROR_MESSAGE)
                    .context("error_message")?
                    .as_string::<i32>()
                    .clone(),
            );
            let (mut k2, mut ek2, mut em2) = (StringBuilder::new(), StringBuilder::new(), StringBuilder::new());
            fn s(a: &arrow_array::StringArray, i: usize) -> Option<&str> {
                a.is_valid(i).then(|| a.value(i))
            }
            for i in 0..b.num_rows() {
                match f(kind.value(i), s(&ek, i), s(&em, i)) {
                    Some((k, e, m)) => {
                        k2.append_value(k);
                        ek2.append_option(e);
                        em2.append_option(m);
                    }
                    None => {
                        k2.append_value(kind.value(i));
                        ek2.append_option(s(&ek, i));
                        em2.append_option(s(&em, i));
                    }
                }
            }
            let mut cols = b.columns().to_vec();
            for (name, mut col) in [
                (events::KIND, k2),
                (events::ERROR_KIND, ek2),
                (events::ERROR_MESSAGE, em2),
            ] {
                let at = schema.index_of(name)?;
                cols[at] = Arc::new(col.finish());
            }
            w.write(&RecordBatch::try_new(schema.clone(), cols)?)?;
        }
        w.close()?;
        std::fs::rename(&tmp, &path)?;
    }
    Ok(())
}

/// `analyze report RUN --json --quiet` with the given flags: the one summary (panics with
/// analyze's stderr if it fails).
pub fn report(run: &Path, args: &[&str]) -> serde_json::Value {
    let mut a = vec!["report", run.to_str().expect("utf8")];
    a.extend_from_slice(args);
    a.extend_from_slice(&["--json", "--quiet"]);
    let out = crate::harness::run_bin("analyze", &a);
    assert!(
        out.status.success(),
        "analyze report failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    v[0].clone()
}

/// `metrics.parquet` of a run's analysis with `tokenizer_id`: `(request_id, column)` for a
/// u32, i64 or f64 column.
pub fn metric_column(run: &Path, tokenizer_id: &str, column: &str) -> BTreeMap<u64, Option<f64>> {
    use arrow_array::types::Float64Type;
    let path = run.join("analysis").join(tokenizer_id).join("metrics.parquet");
    let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(&path).expect("metrics"))
        .expect("parquet")
        .build()
        .expect("reader");
    let mut out = BTreeMap::new();
    for b in reader {
        let b = b.expect("batch");
        let ids = b
            .column_by_name("request_id")
            .expect("id")
            .as_primitive::<UInt64Type>()
            .clone();
        let col = b.column_by_name(column).expect("column");
        for i in 0..b.num_rows() {
            let v = if col.is_null(i) {
                None
            } else if let Some(a) = col.as_primitive_opt::<UInt32Type>() {
                Some(f64::from(a.value(i)))
            } else if let Some(a) = col.as_primitive_opt::<Int64Type>() {
                Some(a.value(i) as f64)
            } else {
                Some(col.as_primitive::<Float64Type>().value(i))
            };
            out.insert(ids.value(i), v);
        }
    }
    out
}
