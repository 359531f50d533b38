//! `<run>/analysis/records.parquet`: the reassembled per-request table, cached.
//!
//! Reassembly reads every event of a run, which dominates re-analysis once token counts are
//! cached. This file keeps one row per request with everything metrics need except the output
//! texts, which are replaced by their hashes (the keys of the token-count cache). It does not
//! depend on the tokenizer, so every analysis of the run shares it. It is valid only for the
//! exact set of segments it was built from ([`fingerprint`]): a run that gained segments since
//! (it was still running) or lost one is reassembled again. Deleting it is always safe.

use std::path::Path;
use std::sync::Arc;

use arrow_array::builder::{
    FixedSizeBinaryBuilder, Int64Builder, ListBuilder, StringBuilder, UInt16Builder, UInt32Builder, UInt64Builder,
};
use arrow_array::cast::AsArray;
use arrow_array::types::{Int64Type, UInt16Type, UInt32Type, UInt64Type};
use arrow_array::{Array, ArrayRef, RecordBatch};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::reassemble::RequestRecord;
use crate::{Error, Result};

/// File name under `<run>/analysis/`.
pub const FILE: &str = recap_schemas::analysis::RECORDS_FILE;

/// Writes `records` (texts as hashes) to `path`, tagged with `fingerprint`.
pub fn save(path: &Path, fingerprint: &str, records: &[RequestRecord]) -> Result<()> {
    let mut id = UInt64Builder::new();
    let (mut phase, mut api) = (StringBuilder::new(), StringBuilder::new());
    let (mut prompt, mut msgs, mut terminal, mut error_kind) = (
        StringBuilder::new(),
        StringBuilder::new(),
        StringBuilder::new(),
        StringBuilder::new(),
    );
    let [mut sched, mut sent, mut headers, mut end, mut first_choice, mut first_content, mut connect] =
        std::array::from_fn(|_| Int64Builder::new());
    let mut status = UInt16Builder::new();
    let mut session = StringBuilder::new();
    let mut turn = UInt32Builder::new();
    let [mut h_content, mut h_reasoning, mut h_tools] = std::array::from_fn(|_| FixedSizeBinaryBuilder::new(16));
    let mut times = ListBuilder::new(Int64Builder::new());
    let [mut up, mut uc, mut protocol, mut sse, mut retries, mut max_tokens, mut planned, mut group] =
        std::array::from_fn(|_| UInt32Builder::new());
    for r in records {
        id.append_value(r.request_id);
        phase.append_option(r.phase.map(recap_schemas::Phase::as_str));
        api.append_option(r.api.map(recap_schemas::Api::as_str));
        sched.append_option(r.scheduled_ns);
        prompt.append_option(r.prompt.as_deref());
        msgs.append_option(r.messages_json.as_deref());
        sent.append_option(r.sent_ns);
        headers.append_option(r.headers_ns);
        status.append_option(r.http_status);
        terminal.append_option(r.terminal.map(recap_schemas::EventKind::as_str));
        end.append_option(r.end_ns);
        error_kind.append_option(r.error_kind.map(recap_schemas::ErrorKind::as_str));
        for (b, k) in [
            (&mut h_content, r.hashes.content),
            (&mut h_reasoning, r.hashes.reasoning),
            (&mut h_tools, r.hashes.tool_args),
        ] {
            b.append_value(crate::store::key_bytes(k))
                .map_err(|e| Error::Internal(e.to_string()))?;
        }
        times.values().append_slice(&r.output_times_ns);
        times.append(true);
        first_choice.append_option(r.first_choice_ns);
        first_content.append_option(r.first_content_ns);
        up.append_option(r.usage_prompt_tokens);
        uc.append_option(r.usage_completion_tokens);
        protocol.append_value(r.protocol_events);
        sse.append_value(r.sse_events);
        connect.append_option(r.connect_ns);
        retries.append_value(r.retries);
        max_tokens.append_option(r.max_tokens);
        planned.append_option(r.planned_input_tokens);
        group.append_option(r.prefix_group);
        session.append_option(r.session_id.as_deref());
        turn.append_option(r.turn);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(id.finish()),
        Arc::new(phase.finish()),
        Arc::new(api.finish()),
        Arc::new(sched.finish()),
        Arc::new(prompt.finish()),
        Arc::new(msgs.finish()),
        Arc::new(sent.finish()),
        Arc::new(headers.finish()),
        Arc::new(status.finish()),
        Arc::new(terminal.finish()),
        Arc::new(end.finish()),
        Arc::new(error_kind.finish()),
        Arc::new(h_content.finish()),
        Arc::new(h_reasoning.finish()),
        Arc::new(h_tools.finish()),
        Arc::new(times.finish()),
        Arc::new(first_choice.finish()),
        Arc::new(first_content.finish()),
        Arc::new(up.finish()),
        Arc::new(uc.finish()),
        Arc::new(protocol.finish()),
        Arc::new(sse.finish()),
        Arc::new(connect.finish()),
        Arc::new(retries.finish()),
        Arc::new(max_tokens.finish()),
        Arc::new(planned.finish()),
        Arc::new(group.finish()),
        Arc::new(session.finish()),
        Arc::new(turn.finish()),
    ];
    let batch = RecordBatch::try_new(recap_schemas::analysis::records::schema(), columns)
        .map_err(|e| Error::Internal(e.to_string()))?;
    crate::store::write_parquet(path, &batch, &[(crate::store::META_FINGERPRINT, fingerprint)])
}

/// Reads `path` if it was built from `fingerprint`; `None` when it is missing, stale or
/// unreadable (it is only an accelerator: the caller reassembles from the events instead).
pub fn load(path: &Path, fingerprint: &str) -> Option<Vec<RequestRecord>> {
    let file = std::fs::File::open(path).ok()?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).ok()?;
    let tagged = crate::store::footer_value(builder.metadata().file_metadata(), crate::store::META_FINGERPRINT)
        == Some(fingerprint);
    if !tagged || builder.schema().fields() != recap_schemas::analysis::records::schema().fields() {
        return None;
    }
    let mut out = Vec::new();
    for batch in builder.build().ok()? {
        match read_batch(&batch.ok()?, &mut out) {
            Some(()) => {}
            None => {
                tracing::warn!("ignoring unreadable {}", path.display());
                return None;
            }
        }
    }
    Some(out)
}

fn read_batch(b: &RecordBatch, out: &mut Vec<RequestRecord>) -> Option<()> {
    let col = |name: &str| b.column_by_name(name);
    let u64s = |name: &str| col(name).and_then(|c| c.as_primitive_opt::<UInt64Type>().cloned());
    let u32s = |name: &str| col(name).and_then(|c| c.as_primitive_opt::<UInt32Type>().cloned());
    let i64s = |name: &str| col(name).and_then(|c| c.as_primitive_opt::<Int64Type>().cloned());
    let strs = |name: &str| col(name).and_then(|c| c.as_string_opt::<i32>().cloned());
    let (id, phase, api) = (u64s("request_id")?, strs("phase")?, strs("api")?);
    let (sched, prompt, msgs) = (i64s("scheduled_ns")?, strs("prompt")?, strs("messages_json")?);
    let (sent, headers, end) = (i64s("sent_ns")?, i64s("headers_ns")?, i64s("end_ns")?);
    let status = col("http_status")?.as_primitive_opt::<UInt16Type>()?.clone();
    let (terminal, error_kind) = (strs("terminal")?, strs("error_kind")?);
    let keys = |name: &str| col(name).and_then(|c| c.as_fixed_size_binary_opt().cloned());
    let (hc, hr, ht) = (keys("content_hash")?, keys("reasoning_hash")?, keys("tool_args_hash")?);
    let times = col("output_times_ns")?.as_list_opt::<i32>()?.clone();
    let (fc, fco) = (i64s("first_choice_ns")?, i64s("first_content_ns")?);
    let (up, uc) = (u32s("usage_prompt_tokens")?, u32s("usage_completion_tokens")?);
    let (protocol, sse) = (u32s("protocol_events")?, u32s("sse_events")?);
    let (connect, retries) = (i64s("connect_ns")?, u32s("retries")?);
    let (max_tokens, planned, group) = (
        u32s("max_tokens")?,
        u32s("planned_input_tokens")?,
        u32s("prefix_group")?,
    );
    let (session, turn) = (strs("session_id")?, u32s("turn")?);
    let i64_at = |a: &arrow_array::Int64Array, i: usize| a.is_valid(i).then(|| a.value(i));
    let u32_at = |a: &arrow_array::UInt32Array, i: usize| a.is_valid(i).then(|| a.value(i));
    let str_at = |a: &arrow_array::StringArray, i: usize| a.is_valid(i).then(|| a.value(i).to_string());
    for i in 0..b.num_rows() {
        let t = times.value(i);
        let t = t.as_primitive_opt::<Int64Type>()?;
        out.push(RequestRecord {
            request_id: id.value(i),
            phase: str_at(&phase, i).and_then(|v| recap_schemas::Phase::parse(&v)),
            api: str_at(&api, i).and_then(|v| recap_schemas::Api::parse(&v)),
            scheduled_ns: i64_at(&sched, i),
            prompt: str_at(&prompt, i),
            messages_json: str_at(&msgs, i),
            sent_ns: i64_at(&sent, i),
            headers_ns: i64_at(&headers, i),
            http_status: status.is_valid(i).then(|| status.value(i)),
            terminal: str_at(&terminal, i).and_then(|v| recap_schemas::EventKind::parse(&v)),
            end_ns: i64_at(&end, i),
            error_kind: str_at(&error_kind, i).and_then(|v| recap_schemas::ErrorKind::parse(&v)),
            texts: None,
            hashes: crate::reassemble::TextHashes {
                content: crate::store::key_from_bytes(hc.value(i))?,
                reasoning: crate::store::key_from_bytes(hr.value(i))?,
                tool_args: crate::store::key_from_bytes(ht.value(i))?,
            },
            output_times_ns: t.values().to_vec(),
            first_choice_ns: i64_at(&fc, i),
            first_content_ns: i64_at(&fco, i),
            usage_prompt_tokens: u32_at(&up, i),
            usage_completion_tokens: u32_at(&uc, i),
            protocol_events: protocol.value(i),
            sse_events: sse.value(i),
            connect_ns: i64_at(&connect, i),
            retries: retries.value(i),
            max_tokens: u32_at(&max_tokens, i),
            planned_input_tokens: u32_at(&planned, i),
            prefix_group: u32_at(&group, i),
            session_id: str_at(&session, i),
            turn: u32_at(&turn, i),
        });
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reassemble::Texts;

    fn record(id: u64, times: Vec<i64>, content: &str) -> RequestRecord {
        let texts = Texts {
            content: content.into(),
            reasoning: String::new(),
            tool_args: "f{}".into(),
        };
        RequestRecord {
            request_id: id,
            phase: Some(recap_schemas::Phase::Measure),
            api: Some(recap_schemas::Api::Chat),
            scheduled_ns: Some(5),
            messages_json: Some("[]".into()),
            sent_ns: Some(10),
            http_status: Some(200),
            terminal: Some(recap_schemas::EventKind::Done),
            end_ns: Some(99),
            hashes: texts.hashes(),
            texts: Some(texts),
            output_times_ns: times,
            first_content_ns: Some(20),
            usage_completion_tokens: Some(3),
            protocol_events: 1,
            sse_events: 4,
            session_id: Some("s-1".into()),
            turn: Some(2),
            ..RequestRecord::default()
        }
    }

    #[test]
    fn round_trips_without_texts_and_refuses_another_fingerprint() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join(FILE);
        let records = vec![record(1, vec![20, 30, 45], "abc"), record(2, vec![], "")];
        save(&path, "fp-1", &records).expect("save");
        let loaded = load(&path, "fp-1").expect("same fingerprint loads");
        let expected: Vec<RequestRecord> = records
            .into_iter()
            .map(|mut r| {
                r.texts = None;
                r
            })
            .collect();
        assert_eq!(loaded, expected);
        assert!(load(&path, "fp-2").is_none(), "a stale cache must not be used");
        std::fs::write(&path, b"not parquet").expect("write");
        assert!(load(&path, "fp-1").is_none());
    }
}
