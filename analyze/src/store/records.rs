//! `<run>/analysis/records.parquet` and `texts.parquet`: the reassembled run, cached.
//!
//! Reassembly reads every event of a run, which dominates re-analysis. `records.parquet` keeps
//! one row per request with everything metrics need except the texts, which are replaced by
//! their keys (those of the token-count cache); `texts.parquet` keeps each distinct output
//! text once, so an analysis with another tokenizer reads texts, not events. Neither depends
//! on the tokenizer, so every analysis of the run shares them. Both are written as requests
//! finish and are valid only for the exact set of segments they were built from
//! ([`super::fingerprint`]): a run that gained segments since (it was still running)
//! or lost one is reassembled again. Deleting them is always safe.

use std::path::Path;
use std::sync::Arc;

use arrow_array::builder::{
    FixedSizeBinaryBuilder, Float64Builder, Int64Builder, ListBuilder, StringBuilder, UInt16Builder, UInt32Builder,
    UInt64Builder,
};
use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{Array, ArrayRef, RecordBatch, StringArray};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::parquet::{each_batch, ParquetFile};
use crate::columns::{at, f64_col, i64_col, keys_col, str_col, u16_col, u32_col, u64_col};
use crate::input::{InputKind, InputRef};
use crate::keys::{key_bytes, key_from_bytes, TextKey};
use crate::reassemble::RequestRecord;
use crate::{Error, Result};
use recap_schemas::analysis::records as columns;

/// File name under `<run>/analysis/`.
pub const FILE: &str = recap_schemas::analysis::RECORDS_FILE;

/// `records.parquet` being written, tagged with the segments' fingerprint.
pub struct RecordsFile(ParquetFile);

impl RecordsFile {
    /// Starts `path`.
    pub fn create(path: &Path, fingerprint: &str) -> Result<Self> {
        ParquetFile::create(
            path,
            recap_schemas::analysis::records::schema(),
            &[(super::META_FINGERPRINT, fingerprint)],
        )
        .map(RecordsFile)
    }

    /// Appends `records` (texts as keys).
    pub fn write(&mut self, records: &[RequestRecord]) -> Result<()> {
        self.0.write(&to_batch(records)?)
    }

    /// Finishes the file.
    pub fn finish(self) -> Result<()> {
        self.0.finish()
    }
}

fn to_batch(records: &[RequestRecord]) -> Result<RecordBatch> {
    let mut id = UInt64Builder::new();
    let (mut phase, mut api) = (StringBuilder::new(), StringBuilder::new());
    let (mut input_kind, mut terminal, mut error_kind) =
        (StringBuilder::new(), StringBuilder::new(), StringBuilder::new());
    let mut input_hash = FixedSizeBinaryBuilder::new(16);
    let [mut sched, mut sent, mut headers, mut end, mut first_choice, mut first_content, mut connect] =
        std::array::from_fn(|_| Int64Builder::new());
    let mut status = UInt16Builder::new();
    let mut session = StringBuilder::new();
    let mut turn = UInt32Builder::new();
    let [mut h_content, mut h_reasoning, mut h_tools] = std::array::from_fn(|_| FixedSizeBinaryBuilder::new(16));
    let mut times = ListBuilder::new(Int64Builder::new());
    let [mut up, mut uc, mut protocol, mut sse, mut retries, mut max_tokens, mut planned, mut group, mut cached] =
        std::array::from_fn(|_| UInt32Builder::new());
    let [mut prefill, mut decode] = std::array::from_fn(|_| Float64Builder::new());
    for r in records {
        id.append_value(r.request_id);
        phase.append_option(r.phase.map(recap_schemas::Phase::as_str));
        api.append_option(r.api.map(recap_schemas::Api::as_str));
        sched.append_option(r.scheduled_ns);
        input_kind.append_option(r.input.map(|i| i.kind.as_str()));
        match r.input {
            Some(i) => input_hash.append_value(key_bytes(i.hash)).map_err(Error::from)?,
            None => input_hash.append_null(),
        }
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
            b.append_value(key_bytes(k)).map_err(Error::from)?;
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
        cached.append_option(r.usage_cached_tokens);
        prefill.append_option(r.server_prefill_ms);
        decode.append_option(r.server_decode_ms);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(id.finish()),
        Arc::new(phase.finish()),
        Arc::new(api.finish()),
        Arc::new(sched.finish()),
        Arc::new(input_kind.finish()),
        Arc::new(input_hash.finish()),
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
        Arc::new(cached.finish()),
        Arc::new(prefill.finish()),
        Arc::new(decode.finish()),
    ];
    RecordBatch::try_new(recap_schemas::analysis::records::schema(), columns).map_err(Error::from)
}

/// Whether `path` holds records built from `fingerprint` in this version's columns.
pub fn valid(path: &Path, fingerprint: &str) -> bool {
    let Ok(file) = std::fs::File::open(path) else {
        return false;
    };
    let Ok(builder) = ParquetRecordBatchReaderBuilder::try_new(file) else {
        return false;
    };
    super::parquet::footer_value(builder.metadata().file_metadata(), super::META_FINGERPRINT) == Some(fingerprint)
        && builder.schema().fields() == recap_schemas::analysis::records::schema().fields()
}

/// Reads the records of a [`valid`] `path` a batch at a time into `each`.
pub fn read(path: &Path, each: &mut dyn FnMut(Vec<RequestRecord>) -> Result<()>) -> Result<()> {
    let bad = || {
        Error::Input(format!(
            "{}: unreadable; delete it and analyze again (it is rebuilt from the events)",
            path.display()
        ))
    };
    each_batch(path, &[], &mut |batch| {
        let mut out = Vec::with_capacity(batch.num_rows());
        read_batch(&batch, &mut out).ok_or_else(bad)?;
        each(out)
    })
}

/// Reads only the output-text keys of a [`valid`] `path` (reasoning, content, tool args of
/// each request), a batch at a time: what a new tokenizer must count, without the rest.
pub fn read_keys(path: &Path, each: &mut dyn FnMut(&[TextKey]) -> Result<()>) -> Result<()> {
    let columns = [columns::REASONING_HASH, columns::CONTENT_HASH, columns::TOOL_ARGS_HASH];
    let bad = || Error::Input(format!("{}: unreadable; delete it and analyze again", path.display()));
    each_batch(path, &columns, &mut |b| {
        let mut keys = Vec::with_capacity(3 * b.num_rows());
        for name in columns {
            let c = keys_col(&b, name).ok_or_else(bad)?;
            for i in 0..c.len() {
                keys.push(key_from_bytes(c.value(i)).ok_or_else(bad)?);
            }
        }
        each(&keys)
    })
}

/// `texts.parquet` being written: each distinct output text once, by key.
pub struct TextsFile {
    file: ParquetFile,
    written: std::collections::HashSet<TextKey, ahash::RandomState>,
}

impl TextsFile {
    /// Starts `path`.
    pub fn create(path: &Path, fingerprint: &str) -> Result<Self> {
        let file = ParquetFile::create(
            path,
            recap_schemas::analysis::texts::schema(),
            &[(super::META_FINGERPRINT, fingerprint)],
        )?;
        Ok(TextsFile {
            file,
            written: Default::default(),
        })
    }

    /// Appends the texts of these keys not written yet.
    pub fn write<'a>(&mut self, texts: impl IntoIterator<Item = (TextKey, &'a str)>) -> Result<()> {
        let mut keys = FixedSizeBinaryBuilder::new(16);
        let mut text = StringBuilder::new();
        for (k, t) in texts {
            if self.written.insert(k) {
                keys.append_value(key_bytes(k)).map_err(Error::from)?;
                text.append_value(t);
            }
        }
        let batch = RecordBatch::try_new(
            recap_schemas::analysis::texts::schema(),
            vec![Arc::new(keys.finish()), Arc::new(text.finish())],
        )
        .map_err(Error::from)?;
        self.file.write(&batch)
    }

    /// Finishes the file.
    pub fn finish(self) -> Result<()> {
        self.file.finish()
    }
}

/// A batch of `texts.parquet`: `(key, text)` pairs.
pub type KeyedTexts<'a> = [(TextKey, &'a str)];

/// Reads `texts.parquet` a batch at a time into `each`.
pub fn read_texts(path: &Path, each: &mut dyn FnMut(&KeyedTexts<'_>) -> Result<()>) -> Result<()> {
    let bad = || Error::Input(format!("{}: not a texts.parquet; delete it", path.display()));
    each_batch(path, &[], &mut |b| {
        let keys = keys_col(&b, recap_schemas::analysis::texts::TEXT_HASH).ok_or_else(bad)?;
        let texts = str_col(&b, recap_schemas::analysis::texts::TEXT).ok_or_else(bad)?;
        let pairs = (0..b.num_rows())
            .map(|i| Some((key_from_bytes(keys.value(i))?, texts.value(i))))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(bad)?;
        each(&pairs)
    })
}

fn read_batch(b: &RecordBatch, out: &mut Vec<RequestRecord>) -> Option<()> {
    // Every column is required: a cache of another shape is rebuilt, never half read.
    let (u64s, u32s, i64s, f64s) = (
        |n: &str| u64_col(b, n),
        |n: &str| u32_col(b, n),
        |n: &str| i64_col(b, n),
        |n: &str| f64_col(b, n),
    );
    let (strs, keys) = (|n: &str| str_col(b, n), |n: &str| keys_col(b, n));
    let (id, phase, api) = (u64s(columns::REQUEST_ID)?, strs(columns::PHASE)?, strs(columns::API)?);
    let sched = i64s(columns::SCHEDULED_NS)?;
    let input_kind = strs(columns::INPUT_KIND)?;
    let (sent, headers, end) = (
        i64s(columns::SENT_NS)?,
        i64s(columns::HEADERS_NS)?,
        i64s(columns::END_NS)?,
    );
    let status = u16_col(b, columns::HTTP_STATUS)?;
    let (terminal, error_kind) = (strs(columns::TERMINAL)?, strs(columns::ERROR_KIND)?);
    let (hc, hr, ht) = (
        keys(columns::CONTENT_HASH)?,
        keys(columns::REASONING_HASH)?,
        keys(columns::TOOL_ARGS_HASH)?,
    );
    let input_hash = keys(columns::INPUT_HASH)?;
    let times = b.column_by_name(columns::OUTPUT_TIMES_NS)?.as_list_opt::<i32>()?;
    let (fc, fco) = (i64s(columns::FIRST_CHOICE_NS)?, i64s(columns::FIRST_CONTENT_NS)?);
    let (up, uc) = (
        u32s(columns::USAGE_PROMPT_TOKENS)?,
        u32s(columns::USAGE_COMPLETION_TOKENS)?,
    );
    let (protocol, sse) = (u32s(columns::PROTOCOL_EVENTS)?, u32s(columns::SSE_EVENTS)?);
    let (connect, retries) = (i64s(columns::CONNECT_NS)?, u32s(columns::RETRIES)?);
    let (max_tokens, planned, group) = (
        u32s(columns::MAX_TOKENS)?,
        u32s(columns::PLANNED_INPUT_TOKENS)?,
        u32s(columns::PREFIX_GROUP)?,
    );
    let (session, turn) = (strs(columns::SESSION_ID)?, u32s(columns::TURN)?);
    let cached = u32s(columns::USAGE_CACHED_TOKENS)?;
    let (prefill, decode) = (f64s(columns::SERVER_PREFILL_MS)?, f64s(columns::SERVER_DECODE_MS)?);
    let v = |a, i| at(Some(a), i, |a: &StringArray, i| a.value(i));
    for i in 0..b.num_rows() {
        let t = times.value(i);
        let t = t.as_primitive_opt::<Int64Type>()?;
        out.push(RequestRecord {
            request_id: id.value(i),
            phase: v(phase, i).and_then(recap_schemas::Phase::parse),
            api: v(api, i).and_then(recap_schemas::Api::parse),
            scheduled_ns: at(Some(sched), i, |a, i| a.value(i)),
            input: match (v(input_kind, i), input_hash.is_valid(i)) {
                (Some(kind), true) => Some(InputRef {
                    kind: InputKind::parse(kind)?,
                    hash: key_from_bytes(input_hash.value(i))?,
                }),
                _ => None,
            },
            sent_ns: at(Some(sent), i, |a, i| a.value(i)),
            headers_ns: at(Some(headers), i, |a, i| a.value(i)),
            http_status: at(Some(status), i, |a, i| a.value(i)),
            terminal: v(terminal, i).and_then(recap_schemas::EventKind::parse),
            end_ns: at(Some(end), i, |a, i| a.value(i)),
            error_kind: v(error_kind, i).and_then(recap_schemas::ErrorKind::parse),
            texts: None,
            hashes: crate::reassemble::TextHashes {
                content: key_from_bytes(hc.value(i))?,
                reasoning: key_from_bytes(hr.value(i))?,
                tool_args: key_from_bytes(ht.value(i))?,
            },
            output_times_ns: t.values().to_vec(),
            output_ends: Vec::new(),
            first_choice_ns: at(Some(fc), i, |a, i| a.value(i)),
            first_content_ns: at(Some(fco), i, |a, i| a.value(i)),
            usage_prompt_tokens: at(Some(up), i, |a, i| a.value(i)),
            usage_completion_tokens: at(Some(uc), i, |a, i| a.value(i)),
            protocol_events: protocol.value(i),
            sse_events: sse.value(i),
            connect_ns: at(Some(connect), i, |a, i| a.value(i)),
            retries: retries.value(i),
            max_tokens: at(Some(max_tokens), i, |a, i| a.value(i)),
            planned_input_tokens: at(Some(planned), i, |a, i| a.value(i)),
            prefix_group: at(Some(group), i, |a, i| a.value(i)),
            session_id: at(Some(session), i, |a, i| a.value(i).to_string()),
            turn: at(Some(turn), i, |a, i| a.value(i)),
            usage_cached_tokens: at(Some(cached), i, |a, i| a.value(i)),
            server_prefill_ms: at(Some(prefill), i, |a, i| a.value(i)),
            server_decode_ms: at(Some(decode), i, |a, i| a.value(i)),
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
            input: Some(InputRef {
                kind: InputKind::Chat,
                hash: crate::keys::text_hash("[]"),
            }),
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
        let mut f = RecordsFile::create(&path, "fp-1").expect("create");
        f.write(&records[..1]).expect("write");
        f.write(&records[1..]).expect("write");
        f.finish().expect("finish");
        assert!(valid(&path, "fp-1"), "same fingerprint loads");
        let mut loaded = Vec::new();
        read(&path, &mut |mut b| {
            loaded.append(&mut b);
            Ok(())
        })
        .expect("read");
        let expected: Vec<RequestRecord> = records
            .into_iter()
            .map(|mut r| {
                r.texts = None;
                r
            })
            .collect();
        assert_eq!(loaded, expected);
        assert!(!valid(&path, "fp-2"), "a stale cache must not be used");
        std::fs::write(&path, b"not parquet").expect("write");
        assert!(!valid(&path, "fp-1"));
    }

    #[test]
    fn texts_are_written_once_per_key_and_read_back() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join(recap_schemas::analysis::TEXTS_FILE);
        let key = crate::keys::text_hash;
        let mut f = TextsFile::create(&path, "fp").expect("create");
        f.write([(key("a"), "a"), (key("b"), "b"), (key("a"), "a")])
            .expect("write");
        f.write([(key("b"), "b"), (key("c"), "c")]).expect("write");
        f.finish().expect("finish");
        let mut back = Vec::new();
        read_texts(&path, &mut |pairs| {
            back.extend(pairs.iter().map(|(k, t)| (*k, t.to_string())));
            Ok(())
        })
        .expect("read");
        let want: Vec<_> = ["a", "b", "c"].iter().map(|t| (key(t), t.to_string())).collect();
        assert_eq!(back, want);
    }
}
