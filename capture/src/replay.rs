//! `--replay RUN`: a recorded run's requests sent again, the same bodies in the same order at
//! the same scheduled offsets, to another endpoint: A/B of two servers under identical
//! arrivals.
//!
//! Bodies are rebuilt from the source's `requests` table (`params_json` plus `prompt` or
//! `messages_json`), which is how capture serialized them, so they are byte-identical (unless
//! `--model` replaces the model). Offsets are the source's `scheduled_ns`, made non-decreasing
//! (closed-loop workers can stamp a few nanoseconds out of order), and sent through the same
//! open-loop `timestamps` load as a trace.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Int64Type, UInt32Type, UInt64Type};
use arrow_array::{Array, RecordBatch};
use bytes::Bytes;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use recap_schemas::{requests, Api, Manifest};
use serde_json::{Map, Value};

use crate::api::InputKind;
use crate::request::PreparedRequest;

/// A recorded run, ready to send again.
#[derive(Debug, Clone)]
pub struct Replay {
    /// The source run folder.
    pub source: PathBuf,
    /// The source's manifest (its dataset and load are the replay's).
    pub manifest: Manifest,
    /// Requests in the source's `request_id` order.
    pub requests: Vec<Arc<PreparedRequest>>,
    /// Send offsets (ns since start), non-decreasing, one per request.
    pub offsets_ns: Arc<[i64]>,
}

/// Reads run `dir`'s manifest and `requests` segments; `model` replaces the body's `model`.
pub fn load(dir: &Path, model: Option<&str>) -> Result<Replay, String> {
    let mpath = dir.join(recap_schemas::MANIFEST_FILE);
    let manifest: Manifest = std::fs::read(&mpath)
        .map_err(|e| format!("--replay {}: {e}", mpath.display()))
        .and_then(|b| {
            serde_json::from_slice(&b).map_err(|e| format!("--replay {}: not a Recap manifest: {e}", mpath.display()))
        })?;
    let seg_dir = dir.join(recap_schemas::REQUESTS_DIR);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&seg_dir)
        .map_err(|e| format!("--replay {}: {e}", seg_dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "parquet"))
        .collect();
    recap_schemas::sort_segments(&mut files);
    let mut rows: Vec<(u64, i64, PreparedRequest)> = Vec::new();
    for f in &files {
        let name = f.display().to_string();
        let reader = std::fs::File::open(f)
            .map_err(|e| e.to_string())
            .and_then(|file| ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| e.to_string()))
            .and_then(|b| b.build().map_err(|e| e.to_string()))
            .map_err(|e| format!("--replay {name}: {e}"))?;
        for batch in reader {
            let batch = batch.map_err(|e| format!("--replay {name}: {e}"))?;
            read_batch(&batch, model, &mut rows).map_err(|e| format!("--replay {name}: {e}"))?;
        }
    }
    if rows.is_empty() {
        return Err(format!("--replay {}: the run has no recorded requests", dir.display()));
    }
    rows.sort_by_key(|r| r.0);
    let mut last = 0i64;
    let offsets: Vec<i64> = rows
        .iter()
        .map(|r| {
            last = last.max(r.1);
            last
        })
        .collect();
    Ok(Replay {
        source: dir.to_path_buf(),
        manifest,
        requests: rows.into_iter().map(|r| Arc::new(r.2)).collect(),
        offsets_ns: offsets.into(),
    })
}

fn read_batch(b: &RecordBatch, model: Option<&str>, out: &mut Vec<(u64, i64, PreparedRequest)>) -> Result<(), String> {
    let col = |n: &str| b.column_by_name(n).ok_or_else(|| format!("no `{n}` column"));
    let id = col(requests::REQUEST_ID)?
        .as_primitive_opt::<UInt64Type>()
        .ok_or("`request_id` is not u64")?;
    let api = col(requests::API)?.as_string_opt::<i32>().ok_or("`api` is not utf8")?;
    let sched = col(requests::SCHEDULED_NS)?
        .as_primitive_opt::<Int64Type>()
        .ok_or("`scheduled_ns` is not i64")?;
    let prompt = col(requests::PROMPT)?
        .as_string_opt::<i32>()
        .ok_or("`prompt` is not utf8")?;
    let msgs = col(requests::MESSAGES_JSON)?
        .as_string_opt::<i32>()
        .ok_or("`messages_json` is not utf8")?;
    let params = col(requests::PARAMS_JSON)?
        .as_string_opt::<i32>()
        .ok_or("`params_json` is not utf8")?;
    let max_tokens = col(requests::MAX_TOKENS)?.as_primitive_opt::<UInt32Type>();
    // Added within version 2: older runs have neither.
    let planned = b
        .column_by_name(requests::PLANNED_INPUT_TOKENS)
        .and_then(|c| c.as_primitive_opt::<UInt32Type>());
    let group = b
        .column_by_name(requests::PREFIX_GROUP)
        .and_then(|c| c.as_primitive_opt::<UInt32Type>());
    let session = b
        .column_by_name(requests::SESSION_ID)
        .and_then(|c| c.as_string_opt::<i32>());
    let turn = b
        .column_by_name(requests::TURN)
        .and_then(|c| c.as_primitive_opt::<UInt32Type>());
    // Added within version 3: older runs have none (and no embeddings or rerank requests).
    let input_json = b
        .column_by_name(requests::INPUT_JSON)
        .and_then(|c| c.as_string_opt::<i32>());
    let u32_at = |a: Option<&arrow_array::UInt32Array>, i: usize| a.filter(|a| a.is_valid(i)).map(|a| a.value(i));
    for i in 0..b.num_rows() {
        let request_id = id.value(i);
        let api = Api::parse(api.value(i)).ok_or_else(|| format!("request {request_id}: unknown api"))?;
        let mut body: Map<String, Value> = serde_json::from_str(params.value(i))
            .map_err(|e| format!("request {request_id}: `params_json` is not a JSON object: {e}"))?;
        if let Some(m) = model {
            body.insert("model".into(), Value::String(m.to_string()));
        }
        let params_json: Arc<str> = Value::Object(body.clone()).to_string().into();
        let shape = crate::api::of(api);
        let (prompt_text, messages_json, input_text) = match shape.input_kind() {
            InputKind::Messages => {
                let text = msgs
                    .is_valid(i)
                    .then(|| msgs.value(i))
                    .ok_or_else(|| format!("request {request_id}: a {api} request without `messages_json`"))?;
                let messages: Value = serde_json::from_str(text)
                    .map_err(|e| format!("request {request_id}: `messages_json` is not JSON: {e}"))?;
                // Inserted as parsed, not re-rendered: the body is byte-identical to the source's.
                body.insert(shape.input_field().into(), messages);
                (None, Some(Arc::<str>::from(text)), None)
            }
            InputKind::Fields => {
                let text = input_json
                    .filter(|a| a.is_valid(i))
                    .map(|a| a.value(i))
                    .ok_or_else(|| format!("request {request_id}: a {api} request without `input_json`"))?;
                let fields: Map<String, Value> = serde_json::from_str(text)
                    .map_err(|e| format!("request {request_id}: `input_json` is not a JSON object: {e}"))?;
                body.extend(fields);
                (None, None, Some(Arc::<str>::from(text)))
            }
            InputKind::Text => {
                let text = prompt
                    .is_valid(i)
                    .then(|| prompt.value(i))
                    .ok_or_else(|| format!("request {request_id}: a {api} request without `prompt`"))?;
                body.insert(shape.input_field().into(), Value::String(text.to_string()));
                (Some(Arc::<str>::from(text)), None, None)
            }
        };
        out.push((
            request_id,
            sched.value(i),
            PreparedRequest {
                api,
                body: Bytes::from(Value::Object(body).to_string()),
                prompt: prompt_text,
                messages_json,
                input_json: input_text,
                params_json,
                max_tokens: u32_at(max_tokens, i),
                planned_input_tokens: u32_at(planned, i),
                prefix_group: u32_at(group, i),
                // The source's turns keep their session labels (analyze's by-turn table);
                // their bodies already carry the history the source sent.
                session_id: session.filter(|a| a.is_valid(i)).map(|a| Arc::<str>::from(a.value(i))),
                turn: u32_at(turn, i),
            },
        ));
    }
    Ok(())
}
