//! The one writer thread: Arrow builders in, zstd Parquet segments out.
//!
//! Rows arrive over a bounded channel and are appended to per-table Arrow builders. Every
//! `flush_interval` (and every `max_segment_rows`) the open segment of each table is finished:
//! written as `part-NNNNN.parquet.partial`, footer and all, then renamed to
//! `part-NNNNN.parquet`. So every `*.parquet` in a run is complete and readable, a crash loses
//! at most the rows of the current interval, and memory holds at most one interval of rows.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arrow_array::builder::{
    ArrayBuilder, BooleanBuilder, Float64Builder, Int64Builder, StringBuilder, UInt16Builder, UInt32Builder,
    UInt64Builder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::SchemaRef;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;
use recap_schemas::{events, requests, scrapes, segment_file_name, segment_metadata, EventKind, PARTIAL_SUFFIX};
use tokio::sync::mpsc;

use crate::recorder::{ByteBudget, EventBatch, EventRow, Record, Recorder, RequestRow, ScrapeRow, Sent};
use crate::redact::Secrets;

/// Why the sink stopped writing.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// Creating, writing or renaming a segment failed (disk full, permissions).
    #[error("writing {path}")]
    Io {
        /// The segment file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Arrow or Parquet refused the data (a bug, or out of disk inside the encoder).
    #[error("encoding {path}: {message}")]
    Encode {
        /// The segment file.
        path: PathBuf,
        /// The library's message.
        message: String,
    },
}

/// How segments are cut and compressed.
#[derive(Debug, Clone)]
pub struct SinkConfig {
    /// The run folder (holding `requests/` and `events/`).
    pub run_dir: PathBuf,
    /// Written into every segment's metadata.
    pub run_id: String,
    /// Longest time a row waits before its segment is closed (the crash-loss bound).
    pub flush_interval: Duration,
    /// A segment is closed early when it reaches this many rows.
    pub max_segment_rows: usize,
    /// Rows the channel holds before senders wait.
    pub channel_capacity: usize,
    /// Bytes of rows the channel holds before senders wait.
    pub buffer_bytes: usize,
    /// zstd level (1-22). 1 by default: level 3 cost ~3 % more instructions per event row
    /// (B3) for ~10 % fewer bytes, and a recorder is judged by the CPU it takes from the run.
    pub zstd_level: i32,
    /// Replaced by `<redacted>` in every string written.
    pub secrets: Arc<Secrets>,
    /// Whether a `scrapes/` folder is made (`--scrape`).
    pub scrapes: bool,
}

impl SinkConfig {
    /// Defaults for `run_dir`: 1 s flush, 1M-row segments, 64k-row channel, zstd 3.
    pub fn new(run_dir: PathBuf, run_id: String) -> Self {
        SinkConfig {
            run_dir,
            run_id,
            flush_interval: Duration::from_secs(1),
            max_segment_rows: 1 << 20,
            channel_capacity: 1 << 16,
            buffer_bytes: crate::recorder::DEFAULT_BUFFER_BYTES,
            zstd_level: 1,
            secrets: Arc::default(),
            scrapes: false,
        }
    }
}

/// What the sink wrote.
#[derive(Debug, Clone, Default)]
pub struct SinkStats {
    /// Rows written to `requests`.
    pub request_rows: u64,
    /// Rows written to `events`.
    pub event_rows: u64,
    /// Rows of kind `sse` written.
    pub sse_rows: u64,
    /// Rows written to `scrapes`.
    pub scrape_rows: u64,
    /// Segments closed (both tables).
    pub segments: u64,
    /// Bytes of closed segments (both tables).
    pub bytes_written: u64,
    /// The first write error, after which rows were dropped.
    pub error: Option<String>,
    /// Rows dropped after an error.
    pub dropped_rows: u64,
}

/// Handle to the running writer thread.
pub struct Sink {
    thread: std::thread::JoinHandle<SinkStats>,
}

impl Sink {
    /// Creates the table folders and starts the writer thread. `on_error` is called once, from
    /// the writer thread, if writing fails; rows keep being drained (and dropped) afterwards
    /// so that senders never block on a dead sink.
    pub fn spawn(cfg: SinkConfig, on_error: Arc<dyn Fn(&str) + Send + Sync>) -> Result<(Sink, Recorder), SinkError> {
        for dir in [recap_schemas::REQUESTS_DIR, recap_schemas::EVENTS_DIR] {
            let path = cfg.run_dir.join(dir);
            std::fs::create_dir_all(&path).map_err(|source| SinkError::Io { path, source })?;
        }
        if cfg.scrapes {
            let path = cfg.run_dir.join(recap_schemas::SCRAPES_DIR);
            std::fs::create_dir_all(&path).map_err(|source| SinkError::Io { path, source })?;
        }
        let (tx, rx) = mpsc::channel(cfg.channel_capacity);
        let budget = Arc::new(ByteBudget::new(cfg.buffer_bytes));
        let recorder = Recorder::new(tx, budget.clone());
        let thread = std::thread::Builder::new()
            .name("recap-sink".into())
            .spawn(move || writer_loop(cfg, rx, &budget, on_error))
            .map_err(|source| SinkError::Io {
                path: PathBuf::from("<sink thread>"),
                source,
            })?;
        Ok((Sink { thread }, recorder))
    }

    /// Waits for the writer to drain the channel (all [`Recorder`]s must be dropped) and close
    /// its last segments.
    pub fn finish(self) -> SinkStats {
        self.thread.join().unwrap_or_else(|_| SinkStats {
            error: Some("sink thread panicked".into()),
            ..Default::default()
        })
    }
}

/// How long the writer sleeps between drains of the channel. Polling instead of waiting on
/// the channel means senders never have to wake the writer thread: at 100k+ rows/s a wake-up
/// per row cost more CPU than everything else the recorder does (measured with `perf`).
const DRAIN_PERIOD: Duration = Duration::from_millis(5);

/// Byte-budget permits the writer gives back at once while draining.
const RELEASE_BATCH: usize = 256 << 10;

/// While draining a backlog, the flush deadline is checked every this many rows.
const FLUSH_CHECK_ROWS: usize = 4096;

fn writer_loop(
    cfg: SinkConfig,
    mut rx: mpsc::Receiver<Sent>,
    budget: &ByteBudget,
    on_error: Arc<dyn Fn(&str) + Send + Sync>,
) -> SinkStats {
    let mut w = Writer::new(&cfg, on_error);
    let mut last_flush = std::time::Instant::now();
    let mut flush_due = |w: &mut Writer| {
        if last_flush.elapsed() >= cfg.flush_interval {
            w.flush();
            last_flush = std::time::Instant::now();
        }
    };
    let mut unreleased = 0usize;
    loop {
        let mut closed = false;
        let mut drained = 0usize;
        loop {
            match rx.try_recv() {
                Ok(sent) => {
                    // The writer's now (held, then in the builders, or dropped): its bytes
                    // count against the segment, not the channel. Given back in batches:
                    // each release takes the semaphore's lock.
                    unreleased += budget.permits(sent.budget_bytes());
                    w.push(sent.record, sent.text_bytes);
                    if unreleased >= RELEASE_BATCH {
                        budget.release_permits(std::mem::take(&mut unreleased));
                    }
                    w.roll_full();
                    drained += 1;
                    // Under a sustained backlog the channel is never empty: the flush
                    // deadline is still kept, so a crash loses at most one interval.
                    if drained.is_multiple_of(FLUSH_CHECK_ROWS) {
                        flush_due(&mut w);
                    }
                }
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    closed = true;
                    break;
                }
            }
        }
        w.events.builder.settle_if_grouped();
        // Before sleeping: a sender may be waiting for these.
        budget.release_permits(std::mem::take(&mut unreleased));
        if closed {
            break;
        }
        flush_due(&mut w);
        std::thread::sleep(DRAIN_PERIOD);
    }
    w.flush();
    w.stats
}

struct Writer {
    requests: Table<RequestsBuilder>,
    events: Table<EventsBuilder>,
    scrapes: Table<ScrapesBuilder>,
    max_segment_rows: usize,
    stats: SinkStats,
    on_error: Arc<dyn Fn(&str) + Send + Sync>,
    secrets: Arc<Secrets>,
}

impl Writer {
    fn new(cfg: &SinkConfig, on_error: Arc<dyn Fn(&str) + Send + Sync>) -> Self {
        let props = |table: &str| {
            let kv = segment_metadata(&cfg.run_id, table)
                .into_iter()
                .map(|(k, v)| KeyValue::new(k, v))
                .collect();
            let mut b = WriterProperties::builder()
                .set_compression(Compression::ZSTD(
                    ZstdLevel::try_new(cfg.zstd_level).unwrap_or_default(),
                ))
                .set_max_row_group_row_count(Some(cfg.max_segment_rows.max(1)))
                // Raw payloads are nearly all distinct: a dictionary would only cost.
                .set_column_dictionary_enabled(ColumnPath::from(events::RAW), false)
                .set_key_value_metadata(Some(kv))
                .set_created_by(format!("recap-capture {}", env!("CARGO_PKG_VERSION")));
            // Free text: no query filters on its min/max, so no statistics (comparing every
            // value against the page's bounds cost B3 ~80 instructions per row for `raw`).
            // Nor `kind`: nearly every row group holds `sent` and `sse` rows, so its bounds
            // prune nothing (B3: -2.2 % instructions).
            for column in [
                events::KIND,
                events::RAW,
                events::CONTENT,
                events::REASONING,
                events::TOOL_CALLS_JSON,
                events::ERROR_MESSAGE,
                events::RESPONSE_HEADERS_JSON,
            ] {
                b = b.set_column_statistics_enabled(ColumnPath::from(column), EnabledStatistics::None);
            }
            // No dictionary for the per-event numbers: it hashes every value (timestamps are
            // nearly all distinct), and plain values compress about as well under zstd.
            // Measured (B3, callgrind): -2.4 % instructions per row; bit-packed deltas for
            // them cost more to write than the dictionary saved. Nor for `content` (a token
            // per row): -1.7 % instructions, bytes within noise (B5 6.3-6.5 B per event).
            // Nor for `choice_index` and `kind` (one value in nearly every row, interned one
            // by one): -1.2 % and -2.3 % instructions, bytes within noise (measured with one
            // segment per run: an earlier +0.3 % for `kind` was segment-flush noise).
            for column in [
                events::T_NS,
                events::REQUEST_ID,
                events::SEQ,
                events::BYTES,
                events::CONTENT,
                events::CHOICE_INDEX,
                events::KIND,
            ] {
                b = b.set_column_dictionary_enabled(ColumnPath::from(column), false);
            }
            b.build()
        };
        Writer {
            requests: Table::new(
                cfg.run_dir.join(recap_schemas::REQUESTS_DIR),
                requests::schema(),
                props(requests::TABLE),
            ),
            events: Table::new(
                cfg.run_dir.join(recap_schemas::EVENTS_DIR),
                events::schema(),
                props(events::TABLE),
            ),
            scrapes: Table::new(
                cfg.run_dir.join(recap_schemas::SCRAPES_DIR),
                scrapes::schema(),
                props(scrapes::TABLE),
            ),
            max_segment_rows: cfg.max_segment_rows,
            stats: SinkStats::default(),
            on_error,
            secrets: cfg.secrets.clone(),
        }
    }

    fn failed(&self) -> bool {
        self.stats.error.is_some()
    }

    /// Appends `rec`, whose [`Record::text_bytes`] are `text`.
    fn push(&mut self, rec: Record, text: usize) {
        if self.failed() {
            self.stats.dropped_rows += rec.rows() as u64;
            return;
        }
        // What the row adds to the builders: its text, and a few bytes of fixed columns.
        let bytes = text + 64;
        match rec {
            Record::Request(mut r) => {
                if !self.secrets.is_empty() {
                    redact_request(&self.secrets, &mut r);
                }
                self.requests.builder.append(&r);
                self.requests.rows += 1;
                self.requests.bytes += bytes;
                let r = self.requests.maybe_encode();
                self.check(r);
            }
            Record::Events(mut batch) => {
                if !self.secrets.is_empty() {
                    // Redaction edits the texts in place: each row's own first.
                    batch.materialize();
                    for e in &mut batch.rows {
                        redact_event(&self.secrets, e);
                    }
                }
                self.stats.sse_rows += batch.rows.iter().filter(|e| e.kind == Some(EventKind::Sse)).count() as u64;
                let mut text = text;
                // A segment still closes at exactly `max_segment_rows`, wherever a batch ends.
                while !batch.rows.is_empty() {
                    if self.failed() {
                        self.stats.dropped_rows += batch.rows.len() as u64;
                        break;
                    }
                    let room = self.max_segment_rows.saturating_sub(self.events.segment_rows()).max(1);
                    let rest = batch.split_off(room);
                    let n = batch.rows.len();
                    self.events.builder.hold(batch);
                    self.events.rows += n;
                    self.events.bytes += std::mem::take(&mut text) + 64 * n;
                    let r = self.events.maybe_encode();
                    self.check(r);
                    if !rest.rows.is_empty() {
                        self.roll_full();
                    }
                    batch = rest;
                }
            }
            Record::Scrape(mut r) => {
                if !self.secrets.is_empty() {
                    redact_scrape(&self.secrets, &mut r);
                }
                self.scrapes.builder.append(&r);
                self.scrapes.rows += 1;
                self.scrapes.bytes += bytes;
                let r = self.scrapes.maybe_encode();
                self.check(r);
            }
        }
    }

    fn roll_full(&mut self) {
        if self.requests.segment_rows() >= self.max_segment_rows || self.events.segment_rows() >= self.max_segment_rows
        {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if self.failed() {
            return;
        }
        let r = self.requests.close_segment(&mut self.stats).and_then(|n| {
            self.stats.request_rows += n;
            let n = self.events.close_segment(&mut self.stats)?;
            self.stats.event_rows += n;
            self.scrapes.close_segment(&mut self.stats)
        });
        match r {
            Ok(n) => self.stats.scrape_rows += n,
            Err(e) => self.fail(e),
        }
    }

    fn check(&mut self, r: Result<(), SinkError>) {
        if let Err(e) = r {
            self.fail(e);
        }
    }

    /// Records the first write error and reports it once; later rows are drained and dropped.
    /// Both tables' unfinished segments are discarded: they can no longer be completed, and
    /// on a full disk their space is what lets the manifest record why the run stopped.
    fn fail(&mut self, e: SinkError) {
        if self.failed() {
            return;
        }
        self.requests.discard_open();
        self.events.discard_open();
        self.scrapes.discard_open();
        let msg = recap_schemas::error_chain(&e);
        tracing::error!("{msg}; capture stops scheduling, rows already closed stay readable");
        (self.on_error)(&msg);
        self.stats.error = Some(msg);
    }
}

/// Every string of an event row with the run's secrets replaced: whatever a server echoes
/// (an error body quoting the `Authorization` header, a payload field) is written redacted.
fn redact_event(secrets: &Secrets, e: &mut EventRow) {
    for field in [
        &mut e.content,
        &mut e.reasoning,
        &mut e.tool_calls_json,
        &mut e.sse_event,
        &mut e.raw,
    ] {
        secrets.apply_opt(field);
    }
    if let Some(d) = e.details.as_deref_mut() {
        for field in [
            &mut d.role,
            &mut d.finish_reason,
            &mut d.error_message,
            &mut d.response_headers_json,
        ] {
            secrets.apply_opt(field);
        }
    }
}

/// Every string of a request row with the run's secrets replaced (a key pasted into a
/// prompt or `--body-extra` is a secret too).
fn redact_request(secrets: &Secrets, r: &mut RequestRow) {
    let shared = |text: &mut std::sync::Arc<str>| {
        if let std::borrow::Cow::Owned(s) = secrets.redact(text) {
            *text = s.into();
        }
    };
    for t in [
        &mut r.prompt,
        &mut r.messages_json,
        &mut r.input_json,
        &mut r.session_id,
    ]
    .into_iter()
    .flatten()
    {
        shared(t);
    }
    shared(&mut r.params_json);
    secrets.apply_opt(&mut r.client_request_id);
    secrets.apply_opt(&mut r.server_request_id);
}

/// A scrape's strings with the run's secrets replaced: an exposition can carry a label
/// holding a key, and an error message the URL.
fn redact_scrape(secrets: &Secrets, r: &mut ScrapeRow) {
    if let std::borrow::Cow::Owned(t) = secrets.redact(&r.target) {
        r.target = t;
    }
    secrets.apply_opt(&mut r.content_type);
    secrets.apply_opt(&mut r.body);
    secrets.apply_opt(&mut r.error);
}

/// Builds a [`RecordBatch`] of the rows appended to a table's builders (each appends its own
/// row type its own way).
trait RowsBuilder {
    fn finish(&mut self, schema: &SchemaRef) -> Result<RecordBatch, arrow_schema::ArrowError>;
}

/// Rows buffered in Arrow builders before they are encoded into the open segment's row group.
/// Bounds the writer's memory whatever the event rate (a segment spans a whole flush
/// interval, which at 600k events/s is far more than this).
const ENCODE_ROWS: usize = 1 << 16;

/// Text bytes buffered before they are encoded, whatever the row count: rows with raw
/// payloads are several times larger than without, and unencoded rows are held twice while
/// they are encoded (builders, then uncompressed pages). Measured: 64k rows of a raw-carrying
/// stream held ~28 MB more at peak than without raw; this bound keeps it flat.
const ENCODE_BYTES: usize = 4 << 20;

/// Rows after which the open row group is written out. Batches are encoded into it as they
/// come (compressed pages, a few bytes per event row), but each row group costs parquet a
/// column writer and two zstd contexts per column, whose `cpuid` check a virtual machine
/// traps (B3 whole at ~1.2 M events/s: 7 % of the writer thread when every 4 MiB batch was
/// its own row group). Bounded because analyze decodes a few row groups per core at once.
const ROW_GROUP_ROWS: usize = 1 << 17;

/// The writer's bytes held for the open row group (encoded pages and the pages being filled)
/// after which it is written out, whatever its rows: payloads that compress badly, prompts.
const ROW_GROUP_MEMORY: usize = 8 << 20;

struct OpenSegment {
    writer: ArrowWriter<File>,
    partial: PathBuf,
    final_path: PathBuf,
    rows: usize,
}

struct Table<B> {
    dir: PathBuf,
    schema: SchemaRef,
    props: WriterProperties,
    builder: B,
    /// Rows in `builder`, not yet encoded.
    rows: usize,
    /// Their [`Record::text_bytes`] plus a fixed share per row.
    bytes: usize,
    open: Option<OpenSegment>,
    next_segment: u32,
}

fn parquet_error(path: &Path, e: parquet::errors::ParquetError) -> SinkError {
    match e {
        parquet::errors::ParquetError::External(inner) => match inner.downcast::<std::io::Error>() {
            Ok(ioe) => SinkError::Io {
                path: path.to_path_buf(),
                source: *ioe,
            },
            Err(other) => SinkError::Encode {
                path: path.to_path_buf(),
                message: other.to_string(),
            },
        },
        other => SinkError::Encode {
            path: path.to_path_buf(),
            message: other.to_string(),
        },
    }
}

impl<B: RowsBuilder + Default> Table<B> {
    fn new(dir: PathBuf, schema: SchemaRef, props: WriterProperties) -> Self {
        Table {
            dir,
            schema,
            props,
            builder: B::default(),
            rows: 0,
            bytes: 0,
            open: None,
            next_segment: 0,
        }
    }

    /// Rows in the current segment, encoded or not.
    fn segment_rows(&self) -> usize {
        self.rows + self.open.as_ref().map_or(0, |o| o.rows)
    }

    /// Encodes the buffered rows into the open segment's row group (opening a segment if
    /// needed), and writes the row group out once it is full.
    fn encode_buffered(&mut self) -> Result<(), SinkError> {
        if self.rows == 0 {
            return Ok(());
        }
        if self.open.is_none() {
            let name = segment_file_name(self.next_segment);
            let final_path = self.dir.join(&name);
            let partial = self.dir.join(name.replace(".parquet", PARTIAL_SUFFIX));
            let file = File::create(&partial).map_err(|source| SinkError::Io {
                path: partial.clone(),
                source,
            })?;
            let writer = ArrowWriter::try_new(file, self.schema.clone(), Some(self.props.clone()))
                .map_err(|e| parquet_error(&partial, e))?;
            self.open = Some(OpenSegment {
                writer,
                partial,
                final_path,
                rows: 0,
            });
        }
        let open = self.open.as_mut().expect("invariant: a segment was just opened");
        let batch = self.builder.finish(&self.schema).map_err(|e| SinkError::Encode {
            path: open.partial.clone(),
            message: e.to_string(),
        })?;
        open.writer.write(&batch).map_err(|e| parquet_error(&open.partial, e))?;
        if open.writer.in_progress_rows() >= ROW_GROUP_ROWS || open.writer.memory_size() >= ROW_GROUP_MEMORY {
            open.writer.flush().map_err(|e| parquet_error(&open.partial, e))?;
        }
        open.rows += self.rows;
        self.rows = 0;
        self.bytes = 0;
        Ok(())
    }

    /// Encodes the buffered rows once there are enough.
    fn maybe_encode(&mut self) -> Result<(), SinkError> {
        if self.rows >= ENCODE_ROWS || self.bytes >= ENCODE_BYTES {
            let r = self.encode_buffered();
            self.discard_on_error(r)?;
        }
        Ok(())
    }

    /// After a failed write the open segment can never be completed: its `.partial` file is
    /// removed so that the space it held (a full disk is the usual cause) lets the manifest
    /// still record why the run stopped.
    fn discard_on_error<T>(&mut self, r: Result<T, SinkError>) -> Result<T, SinkError> {
        if r.is_err() {
            self.discard_open();
        }
        r
    }

    /// Drops the open segment and deletes its `.partial` file.
    fn discard_open(&mut self) {
        if let Some(open) = self.open.take() {
            drop(open.writer);
            let _ = std::fs::remove_file(&open.partial);
        }
    }

    /// Finishes the segment (footer, then rename to `.parquet`); returns how many rows it held.
    fn close_segment(&mut self, stats: &mut SinkStats) -> Result<u64, SinkError> {
        let r = self.encode_buffered();
        self.discard_on_error(r)?;
        let Some(open) = self.open.take() else { return Ok(0) };
        let file = match open.writer.into_inner() {
            Ok(f) => f,
            Err(e) => {
                let _ = std::fs::remove_file(&open.partial);
                return Err(parquet_error(&open.partial, e));
            }
        };
        // Flushed to the OS before the rename publishes it: a crash of this process (not of the
        // machine) can then never expose a half-written `.parquet`.
        let bytes = file
            .metadata()
            .map_err(|source| SinkError::Io {
                path: open.partial.clone(),
                source,
            })?
            .len();
        std::fs::rename(&open.partial, &open.final_path).map_err(|source| SinkError::Io {
            path: open.final_path.clone(),
            source,
        })?;
        // Ten-digit names hold every u32: past that the writer stops rather than write a name
        // that sorts before its predecessors.
        self.next_segment = self.next_segment.checked_add(1).ok_or_else(|| SinkError::Encode {
            path: self.dir.clone(),
            message: format!("more than {} segments in one table", u32::MAX),
        })?;
        stats.segments += 1;
        stats.bytes_written += bytes;
        Ok(open.rows as u64)
    }
}

#[derive(Default)]
struct RequestsBuilder {
    request_id: UInt64Builder,
    phase: StringBuilder,
    dataset_row: UInt64Builder,
    api: StringBuilder,
    scheduled_ns: Int64Builder,
    prompt: StringBuilder,
    messages_json: StringBuilder,
    max_tokens: UInt32Builder,
    params_json: StringBuilder,
    request_bytes: UInt32Builder,
    connection_id: UInt32Builder,
    planned_input_tokens: UInt32Builder,
    prefix_group: UInt32Builder,
    session_id: StringBuilder,
    turn: UInt32Builder,
    client_request_id: StringBuilder,
    server_request_id: StringBuilder,
    input_json: StringBuilder,
}

impl RequestsBuilder {
    fn append(&mut self, r: &RequestRow) {
        self.request_id.append_value(r.request_id);
        self.phase.append_value(r.phase.as_str());
        self.dataset_row.append_value(r.dataset_row);
        self.api.append_value(r.api.as_str());
        self.scheduled_ns.append_value(r.scheduled_ns);
        self.prompt.append_option(r.prompt.as_deref());
        self.messages_json.append_option(r.messages_json.as_deref());
        self.max_tokens.append_option(r.max_tokens);
        self.params_json.append_value(&*r.params_json);
        self.request_bytes.append_value(r.request_bytes);
        self.connection_id.append_option(r.connection_id);
        self.planned_input_tokens.append_option(r.planned_input_tokens);
        self.prefix_group.append_option(r.prefix_group);
        self.session_id.append_option(r.session_id.as_deref());
        self.turn.append_option(r.turn);
        self.client_request_id.append_option(r.client_request_id.as_deref());
        self.server_request_id.append_option(r.server_request_id.as_deref());
        self.input_json.append_option(r.input_json.as_deref());
    }
}

impl RowsBuilder for RequestsBuilder {
    fn finish(&mut self, schema: &SchemaRef) -> Result<RecordBatch, arrow_schema::ArrowError> {
        let cols: Vec<ArrayRef> = vec![
            Arc::new(self.request_id.finish()),
            Arc::new(self.phase.finish()),
            Arc::new(self.dataset_row.finish()),
            Arc::new(self.api.finish()),
            Arc::new(self.scheduled_ns.finish()),
            Arc::new(self.prompt.finish()),
            Arc::new(self.messages_json.finish()),
            Arc::new(self.max_tokens.finish()),
            Arc::new(self.params_json.finish()),
            Arc::new(self.request_bytes.finish()),
            Arc::new(self.connection_id.finish()),
            Arc::new(self.planned_input_tokens.finish()),
            Arc::new(self.prefix_group.finish()),
            Arc::new(self.session_id.finish()),
            Arc::new(self.turn.finish()),
            Arc::new(self.client_request_id.finish()),
            Arc::new(self.server_request_id.finish()),
            Arc::new(self.input_json.finish()),
        ];
        RecordBatch::try_new(schema.clone(), cols)
    }
}

#[derive(Default)]
struct ScrapesBuilder {
    target: StringBuilder,
    t_ns: Int64Builder,
    end_ns: Int64Builder,
    http_status: UInt16Builder,
    content_type: StringBuilder,
    body: StringBuilder,
    error: StringBuilder,
}

impl ScrapesBuilder {
    fn append(&mut self, r: &ScrapeRow) {
        self.target.append_value(&r.target);
        self.t_ns.append_value(r.t_ns);
        self.end_ns.append_value(r.end_ns);
        self.http_status.append_option(r.http_status);
        self.content_type.append_option(r.content_type.as_deref());
        self.body.append_option(r.body.as_deref());
        self.error.append_option(r.error.as_deref());
    }
}

impl RowsBuilder for ScrapesBuilder {
    fn finish(&mut self, schema: &SchemaRef) -> Result<RecordBatch, arrow_schema::ArrowError> {
        let cols: Vec<ArrayRef> = vec![
            Arc::new(self.target.finish()),
            Arc::new(self.t_ns.finish()),
            Arc::new(self.end_ns.finish()),
            Arc::new(self.http_status.finish()),
            Arc::new(self.content_type.finish()),
            Arc::new(self.body.finish()),
            Arc::new(self.error.finish()),
        ];
        RecordBatch::try_new(schema.clone(), cols)
    }
}

/// A column null on most rows (reasoning, usage, errors, timings, ...): only its values are
/// appended, at their row; the nulls before each, and after the last, in one call. Nothing is
/// done for a row that leaves it null. Measured with callgrind: per-row appends of the
/// mostly-null columns were a third of the writer's cost per row.
#[derive(Default)]
struct Sparse<B> {
    builder: B,
    /// Rows the builder holds, values and nulls.
    filled: usize,
}

/// What [`Sparse`] needs of a builder: appending a value, a run of nulls, and the array.
trait Column {
    type Value<'a>;
    fn value(&mut self, v: Self::Value<'_>);
    fn nulls(&mut self, n: usize);
    fn array(&mut self) -> ArrayRef;
}

impl Column for StringBuilder {
    type Value<'a> = &'a str;
    fn value(&mut self, v: &str) {
        self.append_value(v);
    }
    fn nulls(&mut self, n: usize) {
        self.append_nulls(n);
    }
    fn array(&mut self) -> ArrayRef {
        Arc::new(self.finish())
    }
}

impl Column for BooleanBuilder {
    type Value<'a> = bool;
    fn value(&mut self, v: bool) {
        self.append_value(v);
    }
    fn nulls(&mut self, n: usize) {
        self.append_nulls(n);
    }
    fn array(&mut self) -> ArrayRef {
        Arc::new(self.finish())
    }
}

impl<T: arrow_array::ArrowPrimitiveType> Column for arrow_array::builder::PrimitiveBuilder<T> {
    type Value<'a> = T::Native;
    fn value(&mut self, v: T::Native) {
        self.append_value(v);
    }
    fn nulls(&mut self, n: usize) {
        self.append_nulls(n);
    }
    fn array(&mut self) -> ArrayRef {
        Arc::new(self.finish())
    }
}

impl<B: Column> Sparse<B> {
    /// The builder filled with nulls up to row `row`.
    fn caught_up(&mut self, row: usize) -> &mut B {
        if row > self.filled {
            self.builder.nulls(row - self.filled);
            self.filled = row;
        }
        &mut self.builder
    }

    /// `v` at row `row` (at or after every row given before), if any.
    fn opt(&mut self, row: usize, v: Option<B::Value<'_>>) {
        if let Some(v) = v {
            self.caught_up(row).value(v);
            self.filled = row + 1;
        }
    }

    /// The array of `rows` rows.
    fn finish(&mut self, rows: usize) -> ArrayRef {
        let array = self.caught_up(rows).array();
        self.filled = 0;
        array
    }
}

#[derive(Default)]
struct EventsBuilder {
    /// Rows as they arrived, in the batches they came through the channel in (each one
    /// request's), appended grouped by request when settled ([`Self::settle`]).
    held: Vec<EventBatch>,
    /// Each batch's request id, read without touching the rows.
    held_ids: Vec<u64>,
    /// Rows in `held`.
    held_rows: usize,
    /// The last encoded batch's size, for the next one's dense columns ([`Self::presize`]).
    last_group: Option<GroupSize>,
    request_id: UInt64Builder,
    kind: StringBuilder,
    t_ns: Int64Builder,
    seq: UInt32Builder,
    bytes: UInt32Builder,
    content: StringBuilder,
    reasoning: Sparse<StringBuilder>,
    tool_calls_json: Sparse<StringBuilder>,
    role: Sparse<StringBuilder>,
    finish_reason: Sparse<StringBuilder>,
    usage_prompt_tokens: Sparse<UInt32Builder>,
    usage_completion_tokens: Sparse<UInt32Builder>,
    usage_reasoning_tokens: Sparse<UInt32Builder>,
    done_marker: Sparse<BooleanBuilder>,
    http_status: Sparse<UInt16Builder>,
    error_kind: Sparse<StringBuilder>,
    error_message: Sparse<StringBuilder>,
    choice_index: UInt32Builder,
    sse_event: Sparse<StringBuilder>,
    raw: StringBuilder,
    usage_cached_tokens: Sparse<UInt32Builder>,
    timings_prompt_ms: Sparse<Float64Builder>,
    timings_predicted_ms: Sparse<Float64Builder>,
    timings_prompt_n: Sparse<UInt32Builder>,
    timings_predicted_n: Sparse<UInt32Builder>,
    response_headers_json: Sparse<StringBuilder>,
}

/// Rows held before they are grouped into the builders: enough for long runs of a request's
/// rows when every event comes in its own read (servers that flush per token: B3 flushed,
/// 8192 against one drain of the channel, ~5 ms, wrote 0.58x the bytes with 3.6 % fewer
/// instructions), few enough to bound what is held (~5 MB more peak RSS than 4096).
const GROUP_ROWS: usize = 8192;

/// Rows per held run (one request's rows of one read) from which what one drain brought is
/// appended at once: reads that bring many events each are grouped by request already, and
/// holding them on costs cache misses (B3 whole, 8192 rows held: 1.50 against 1.21 µs per row).
const GROUPED_RUN_ROWS: usize = 8;

/// Rows and text bytes of an encoded batch's dense columns.
#[derive(Clone, Copy)]
struct GroupSize {
    rows: usize,
    content: usize,
    raw: usize,
}

impl EventsBuilder {
    /// Sizes the columns every row fills for twice the last encoded batch (bounded by
    /// [`ENCODE_ROWS`] and [`ENCODE_BYTES`]), once its arrays are encoded and dropped:
    /// growing them from empty by doubling copied each byte about once more (B3 whole, ~200
    /// instructions per row in reallocations).
    fn presize(&mut self) {
        let Some(g) = self.last_group.take() else {
            return;
        };
        // Twice the last, so that a growing rate rarely regrows them; only what is written
        // becomes resident.
        let rows = (2 * g.rows).min(ENCODE_ROWS);
        self.request_id = UInt64Builder::with_capacity(rows);
        self.kind = StringBuilder::with_capacity(rows, rows * 8);
        self.t_ns = Int64Builder::with_capacity(rows);
        self.seq = UInt32Builder::with_capacity(rows);
        self.bytes = UInt32Builder::with_capacity(rows);
        self.content = StringBuilder::with_capacity(rows, (2 * g.content).min(ENCODE_BYTES));
        self.choice_index = UInt32Builder::with_capacity(rows);
        self.raw = StringBuilder::with_capacity(rows, (2 * g.raw).min(ENCODE_BYTES));
    }

    /// Takes rows in; they are appended to the builders in groups ([`Self::settle`]).
    fn hold(&mut self, mut batch: EventBatch) {
        self.presize();
        // A batch is one request's rows; should one mix requests, each run of one id is held
        // on its own so that grouping keeps every request's order.
        while let Some(first) = batch.rows.first() {
            let id = first.request_id;
            let run = batch.rows.iter().take_while(|e| e.request_id == id).count();
            let rest = batch.split_off(run);
            self.held_rows += batch.rows.len();
            self.held_ids.push(id);
            self.held.push(batch);
            batch = rest;
        }
        if self.held_rows >= GROUP_ROWS {
            self.settle();
        }
    }

    /// Settles now if the held runs are long already ([`GROUPED_RUN_ROWS`]); called after each
    /// drain of the channel.
    fn settle_if_grouped(&mut self) {
        if self.held_rows >= GROUPED_RUN_ROWS * self.held.len() {
            self.settle();
        }
    }

    /// Appends the held rows, each request's together in arrival order: rows of one request
    /// are near copies of each other (same id, model, framing), which zstd finds only when
    /// they are neighbours, and concurrent streams interleave them (B3 flushed: ~0.6x the
    /// bytes and instructions of zstd). The order inside a request, and between groups, stays
    /// the order rows were recorded. Rows wait here until [`GROUP_ROWS`] are held, their row
    /// group is encoded, or a drain finds them grouped already: no longer than they would wait
    /// in the builders (a crash loses the same rows).
    fn settle(&mut self) {
        let mut held = std::mem::take(&mut self.held);
        for i in grouped_order(&self.held_ids) {
            let batch = &held[i];
            for row in &batch.rows {
                self.append(row, batch);
            }
        }
        held.clear();
        self.held = held;
        self.held_ids.clear();
        self.held_rows = 0;
    }
}

/// The indices of `ids` grouped by id (ascending), in index order within an id: a stable sort
/// by id. Ids are dispatched in order, so the ids of a few thousand consecutive rows span a
/// stretch of the run a few times their count at most: counted into place then (two passes,
/// ~10 instructions per row, against ~240 for a comparison sort); a sort when a long-lived
/// request widens the span.
fn grouped_order(ids: &[u64]) -> Vec<usize> {
    let (Some(&lo), Some(&hi)) = (ids.iter().min(), ids.iter().max()) else {
        return Vec::new();
    };
    let span = usize::try_from(hi - lo).unwrap_or(usize::MAX);
    if span > ids.len().saturating_mul(8) {
        let mut keyed: Vec<(u64, usize)> = ids.iter().copied().zip(0..).collect();
        keyed.sort_unstable();
        return keyed.into_iter().map(|(_, i)| i).collect();
    }
    let slot = |id: u64| usize::try_from(id - lo).unwrap_or(0);
    // `next[k]`: where the next row of id `lo + k` goes.
    let mut next = vec![0usize; span + 1];
    for &id in ids {
        next[slot(id)] += 1;
    }
    let mut at = 0;
    for n in &mut next {
        let count = *n;
        *n = at;
        at += count;
    }
    let mut order = vec![0usize; ids.len()];
    for (i, &id) in ids.iter().enumerate() {
        let k = slot(id);
        order[next[k]] = i;
        next[k] += 1;
    }
    order
}

impl EventsBuilder {
    /// Appends `e`, a row of `batch`.
    fn append(&mut self, e: &EventRow, batch: &EventBatch) {
        let at = self.request_id.len();
        self.request_id.append_value(e.request_id);
        self.kind.append_value(e.kind.unwrap_or(EventKind::Error).as_str());
        self.t_ns.append_value(e.t_ns);
        self.seq.append_option(e.seq);
        self.bytes.append_option(e.bytes);
        self.content.append_option(batch.content(e));
        self.choice_index.append_option(e.choice_index);
        self.raw.append_option(batch.raw(e));
        self.reasoning.opt(at, e.reasoning.as_deref());
        self.tool_calls_json.opt(at, e.tool_calls_json.as_deref());
        self.done_marker.opt(at, e.done_marker.then_some(true));
        self.sse_event.opt(at, e.sse_event.as_deref());
        if let Some(d) = e.details.as_deref() {
            self.role.opt(at, d.role.as_deref());
            self.finish_reason.opt(at, d.finish_reason.as_deref());
            self.usage_prompt_tokens.opt(at, d.usage_prompt_tokens);
            self.usage_completion_tokens.opt(at, d.usage_completion_tokens);
            self.usage_reasoning_tokens.opt(at, d.usage_reasoning_tokens);
            self.http_status.opt(at, d.http_status);
            self.error_kind.opt(at, d.error_kind.map(|k| k.as_str()));
            self.error_message.opt(at, d.error_message.as_deref());
            self.usage_cached_tokens.opt(at, d.usage_cached_tokens);
            self.timings_prompt_ms.opt(at, d.timings_prompt_ms);
            self.timings_predicted_ms.opt(at, d.timings_predicted_ms);
            self.timings_prompt_n.opt(at, d.timings_prompt_n);
            self.timings_predicted_n.opt(at, d.timings_predicted_n);
            self.response_headers_json.opt(at, d.response_headers_json.as_deref());
        }
    }
}

impl RowsBuilder for EventsBuilder {
    fn finish(&mut self, schema: &SchemaRef) -> Result<RecordBatch, arrow_schema::ArrowError> {
        self.settle();
        self.last_group = Some(GroupSize {
            rows: self.request_id.len(),
            content: self.content.values_slice().len(),
            raw: self.raw.values_slice().len(),
        });
        let rows = self.request_id.len();
        let cols: Vec<ArrayRef> = vec![
            Arc::new(self.request_id.finish()),
            Arc::new(self.kind.finish()),
            Arc::new(self.t_ns.finish()),
            Arc::new(self.seq.finish()),
            Arc::new(self.bytes.finish()),
            Arc::new(self.content.finish()),
            self.reasoning.finish(rows),
            self.tool_calls_json.finish(rows),
            self.role.finish(rows),
            self.finish_reason.finish(rows),
            self.usage_prompt_tokens.finish(rows),
            self.usage_completion_tokens.finish(rows),
            self.usage_reasoning_tokens.finish(rows),
            self.done_marker.finish(rows),
            self.http_status.finish(rows),
            self.error_kind.finish(rows),
            self.error_message.finish(rows),
            Arc::new(self.choice_index.finish()),
            self.sse_event.finish(rows),
            Arc::new(self.raw.finish()),
            self.usage_cached_tokens.finish(rows),
            self.timings_prompt_ms.finish(rows),
            self.timings_predicted_ms.finish(rows),
            self.timings_prompt_n.finish(rows),
            self.timings_predicted_n.finish(rows),
            self.response_headers_json.finish(rows),
        ];
        RecordBatch::try_new(schema.clone(), cols)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use recap_schemas::{Api, Phase};

    /// The files of a table's folder, in write order.
    fn segment_paths(dir: &Path) -> Vec<PathBuf> {
        let mut names: Vec<_> = std::fs::read_dir(dir)
            .expect("dir")
            .map(|e| e.expect("entry").path())
            .collect();
        names.sort();
        names
    }

    /// A sink whose segment stays open for the whole test (an hour's flush interval), its
    /// folder, and a runtime to send from.
    fn one_segment_sink() -> (tempfile::TempDir, tokio::runtime::Runtime, Sink, Recorder) {
        let dir = tempfile::tempdir().expect("tmp");
        let mut cfg = SinkConfig::new(dir.path().to_path_buf(), "r".into());
        cfg.flush_interval = Duration::from_secs(3600);
        let rt = tokio::runtime::Builder::new_current_thread().build().expect("rt");
        let (sink, rec) = Sink::spawn(cfg, Arc::new(|_: &str| {})).expect("spawn");
        (dir, rt, sink, rec)
    }

    fn read_all(dir: &Path) -> (usize, Vec<(String, String)>) {
        let mut rows = 0;
        let mut md = Vec::new();
        for p in segment_paths(dir) {
            assert!(p.to_string_lossy().ends_with(".parquet"), "leftover {p:?}");
            let b = ParquetRecordBatchReaderBuilder::try_new(File::open(&p).expect("open")).expect("parquet");
            for kv in b.metadata().file_metadata().key_value_metadata().into_iter().flatten() {
                md.push((kv.key.clone(), kv.value.clone().unwrap_or_default()));
            }
            for batch in b.build().expect("reader") {
                rows += batch.expect("batch").num_rows();
            }
        }
        (rows, md)
    }

    /// Reading segments in write order meets every request's rows in the order they were
    /// recorded (what `analyze`'s reassembly relies on), however the writer grouped them.
    #[test]
    fn event_rows_keep_each_requests_recording_order() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut cfg = SinkConfig::new(dir.path().to_path_buf(), "run-1".into());
        cfg.max_segment_rows = 700;
        let rt = tokio::runtime::Builder::new_current_thread().build().expect("rt");
        let (sink, rec) = Sink::spawn(cfg, Arc::new(|_: &str| {})).expect("spawn");
        // Requests 9, 8, ..., 0 streaming at once, each row numbered by when it was recorded.
        let recorded: Vec<(u64, i64)> = (0..6000i64).map(|t| (9 - (t % 10) as u64, t)).collect();
        rt.block_on(async {
            for &(id, t) in &recorded {
                rec.event(EventRow::new(id, EventKind::Sse, t)).await;
            }
        });
        drop(rec);
        assert!(sink.finish().error.is_none());
        let mut read = Vec::new();
        for p in segment_paths(&dir.path().join("events")) {
            let b = ParquetRecordBatchReaderBuilder::try_new(File::open(&p).expect("open")).expect("parquet");
            for batch in b.build().expect("reader") {
                read.extend(id_and_time(&batch.expect("batch")));
            }
        }
        assert_eq!(read.len(), recorded.len());
        for id in 0..10 {
            let want: Vec<i64> = recorded.iter().filter(|r| r.0 == id).map(|r| r.1).collect();
            let got: Vec<i64> = read.iter().filter(|r| r.0 == id).map(|r| r.1).collect();
            assert_eq!(got, want, "request {id}");
        }
    }

    /// Rows sent in batches, their texts in the batch's shared string, read back whole: across
    /// a segment boundary inside a batch, a batch that mixes requests, and with redaction
    /// (which edits each row's own copy).
    #[test]
    fn batched_rows_keep_their_texts_across_splits_and_redaction() {
        for secret in [false, true] {
            let dir = tempfile::tempdir().expect("tmp");
            let mut cfg = SinkConfig::new(dir.path().to_path_buf(), "r".into());
            cfg.max_segment_rows = 3;
            if secret {
                cfg.secrets = Arc::new(Secrets::new(["sk-live-123".to_string()]));
            }
            let (sink, rec) = Sink::spawn(cfg, Arc::new(|_: &str| {})).expect("spawn");
            let rt = tokio::runtime::Builder::new_current_thread().build().expect("rt");
            // (request, t, content, raw): request 1 in one batch of 5, then 2, 2, 3, 2 in one.
            let rows: Vec<(u64, i64, String, String)> = [1, 1, 1, 1, 1, 2, 2, 3, 2]
                .iter()
                .enumerate()
                .map(|(t, &id)| {
                    (
                        id,
                        t as i64,
                        format!("c{t}é"),
                        format!(r#"{{"t":{t},"k":"sk-live-123"}}"#),
                    )
                })
                .collect();
            rt.block_on(async {
                for part in [&rows[..5], &rows[5..]] {
                    let mut batch = EventBatch::default();
                    for (id, t, content, raw) in part {
                        let mut e = EventRow::new(*id, EventKind::Sse, *t);
                        e.content = Some(content.clone());
                        batch.push(e, Some(raw));
                    }
                    assert!(batch.rows.iter().all(|e| e.content.is_none() && e.raw.is_none()));
                    rec.events(batch).await;
                }
            });
            drop(rec);
            let stats = sink.finish();
            assert!(stats.error.is_none(), "{stats:?}");
            let mut got = Vec::new();
            for p in &segment_paths(&dir.path().join("events")) {
                let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(p).expect("open"))
                    .expect("parquet")
                    .build()
                    .expect("reader");
                let mut in_segment = 0;
                for b in reader {
                    let b = b.expect("batch");
                    in_segment += b.num_rows();
                    let text = |name: &str| {
                        let c = b.column_by_name(name).expect("column");
                        let a = c.as_any().downcast_ref::<arrow_array::StringArray>().expect("utf8");
                        a.iter().map(|v| v.unwrap_or("<null>").to_string()).collect::<Vec<_>>()
                    };
                    for (((id, t), c), r) in id_and_time(&b)
                        .into_iter()
                        .zip(text(events::CONTENT))
                        .zip(text(events::RAW))
                    {
                        got.push((id, t, c, r));
                    }
                }
                assert!(in_segment <= 3, "{p:?} holds {in_segment} rows");
            }
            let mut want = rows.clone();
            if secret {
                for r in &mut want {
                    r.3 = r.3.replace("sk-live-123", "<redacted>");
                }
            }
            // Each request's rows in recording order; requests may be grouped.
            got.sort_by_key(|r| (r.0, r.1));
            want.sort_by_key(|r| (r.0, r.1));
            assert_eq!(got, want, "secret: {secret}");
        }
    }

    /// `(request_id, t_ns)` of each row of an events batch.
    fn id_and_time(batch: &RecordBatch) -> Vec<(u64, i64)> {
        let col = |name: &str| batch.column_by_name(name).expect("column").clone();
        let ids = col(events::REQUEST_ID);
        let ids = ids.as_any().downcast_ref::<arrow_array::UInt64Array>().expect("u64");
        let ts = col(events::T_NS);
        let ts = ts.as_any().downcast_ref::<arrow_array::Int64Array>().expect("i64");
        ids.iter()
            .zip(ts.iter())
            .map(|(i, t)| (i.unwrap_or(0), t.unwrap_or(0)))
            .collect()
    }

    /// Held rows of interleaved streams are appended one request after another, each in the
    /// order it was recorded, a window of at most `GROUP_ROWS` rows at a time.
    #[test]
    fn held_rows_are_appended_grouped_by_request() {
        let n = GROUP_ROWS + 900;
        let recorded: Vec<(u64, i64)> = (0..n as i64).map(|t| (9 - (t % 10) as u64, t)).collect();
        let mut b = EventsBuilder::default();
        for &(id, t) in &recorded {
            b.hold(EventBatch::one(EventRow::new(id, EventKind::Sse, t)));
        }
        let rows = id_and_time(&b.finish(&events::schema()).expect("batch"));
        let mut want = recorded.clone();
        want[..GROUP_ROWS].sort_by_key(|r| r.0);
        want[GROUP_ROWS..].sort_by_key(|r| r.0);
        assert_eq!(rows, want);
    }

    /// After a drain, one-event reads of interleaved streams stay held (so that more of each
    /// request's rows meet), while reads that brought many events each are appended at once,
    /// grouped; either way every row comes out once, each request's in recorded order.
    #[test]
    fn a_drain_appends_held_rows_only_when_their_reads_were_long() {
        let mut b = EventsBuilder::default();
        let mut recorded = Vec::new();
        for t in 0..30i64 {
            let id = 3 - (t % 3) as u64;
            recorded.push((id, t));
            b.hold(EventBatch::one(EventRow::new(id, EventKind::Sse, t)));
        }
        b.settle_if_grouped();
        assert_eq!((b.request_id.len(), b.held_rows), (0, 30), "one-row reads are held on");

        let mut long = EventBatch::one(EventRow::new(7, EventKind::Sse, 100));
        recorded.push((7, 100));
        for t in 101..400i64 {
            long.rows.push(EventRow::new(7, EventKind::Sse, t));
            recorded.push((7, t));
        }
        b.hold(long);
        b.settle_if_grouped();
        assert_eq!(
            (b.request_id.len(), b.held_rows),
            (330, 0),
            "a long read settles the window"
        );

        let rows = id_and_time(&b.finish(&events::schema()).expect("batch"));
        recorded.sort_by_key(|r| r.0);
        assert_eq!(rows, recorded);
    }

    /// Against a stable sort of the indices by id (the definition), on ids spread narrowly
    /// (counted into place) and widely (sorted).
    #[test]
    fn grouped_order_is_a_stable_sort_by_id() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for (len, spread) in [(0, 1), (1, 1), (1000, 16), (1000, 4000), (1000, 1 << 40), (5000, 70)] {
            let base = next() >> 2;
            let ids: Vec<u64> = (0..len).map(|_| base + next() % spread).collect();
            let mut want: Vec<usize> = (0..len).collect();
            want.sort_by_key(|&i| ids[i]);
            assert_eq!(grouped_order(&ids), want, "{len} ids spread over {spread}");
        }
    }

    #[test]
    fn writes_readable_segments_with_metadata() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut cfg = SinkConfig::new(dir.path().to_path_buf(), "run-1".into());
        cfg.max_segment_rows = 1000;
        cfg.channel_capacity = 16;
        let rt = tokio::runtime::Builder::new_current_thread().build().expect("rt");
        let (sink, rec) = Sink::spawn(cfg, Arc::new(|_: &str| {})).expect("spawn");
        rt.block_on(async {
            for i in 0..2500u64 {
                rec.request(RequestRow {
                    request_id: i,
                    phase: Phase::Measure,
                    dataset_row: 0,
                    api: Api::Chat,
                    scheduled_ns: 0,
                    prompt: None,
                    messages_json: Some("[]".into()),
                    max_tokens: Some(1),
                    params_json: "{}".into(),
                    request_bytes: 2,
                    connection_id: Some(0),
                    planned_input_tokens: None,
                    prefix_group: None,
                    session_id: None,
                    turn: None,
                    client_request_id: None,
                    server_request_id: None,
                    input_json: None,
                })
                .await;
                let mut e = EventRow::new(i, EventKind::Sse, i as i64);
                e.content = Some(format!("t{i}"));
                rec.event(e).await;
            }
        });
        drop(rec);
        let stats = sink.finish();
        assert_eq!(
            (stats.request_rows, stats.event_rows, stats.sse_rows),
            (2500, 2500, 2500)
        );
        assert!(stats.segments >= 6, "segments {}", stats.segments);
        assert!(stats.error.is_none());
        let (rows, md) = read_all(&dir.path().join("events"));
        assert_eq!(rows, 2500);
        assert!(md.contains(&("recap.run_id".into(), "run-1".into())));
        assert!(md.contains(&("recap.table".into(), "events".into())));
        assert_eq!(read_all(&dir.path().join("requests")).0, 2500);
        // Per-event numbers, `kind` and the per-token `content` are written plain, other strings
        // with a dictionary (docs/schema.md).
        let path = dir.path().join("events").join(segment_file_name(0));
        let b = ParquetRecordBatchReaderBuilder::try_new(File::open(&path).expect("open")).expect("parquet");
        let rg = b.metadata().row_group(0);
        let column = |name: &str| {
            rg.columns()
                .iter()
                .find(|c| c.column_path().string() == name)
                .expect("column")
        };
        let dictionary = |name: &str| column(name).dictionary_page_offset().is_some();
        assert!(!dictionary(events::T_NS) && !dictionary(events::REQUEST_ID) && !dictionary(events::CONTENT));
        assert!(!dictionary(events::KIND) && dictionary(events::ROLE));
        // Bounds where a query can prune on them; none for free text and `kind`.
        let bounds = |name: &str| column(name).statistics().is_some_and(|s| s.min_bytes_opt().is_some());
        assert!(bounds(events::T_NS) && bounds(events::REQUEST_ID));
        assert!(!bounds(events::KIND) && !bounds(events::RAW) && !bounds(events::CONTENT));
    }

    #[test]
    fn a_large_segment_is_encoded_as_rows_arrive_into_row_groups_of_several_batches() {
        let (dir, rt, sink, rec) = one_segment_sink();
        let n = ROW_GROUP_ROWS + ENCODE_ROWS + 10;
        rt.block_on(async {
            for i in 0..n as u64 {
                rec.event(EventRow::new(i, EventKind::Sse, i as i64)).await;
            }
        });
        drop(rec);
        let stats = sink.finish();
        assert_eq!((stats.event_rows, stats.segments), (n as u64, 1));
        let path = dir.path().join("events").join(segment_file_name(0));
        let b = ParquetRecordBatchReaderBuilder::try_new(File::open(&path).expect("open")).expect("parquet");
        let rows: Vec<i64> = b.metadata().row_groups().iter().map(|g| g.num_rows()).collect();
        assert_eq!(
            rows,
            [ROW_GROUP_ROWS as i64, (n - ROW_GROUP_ROWS) as i64],
            "row groups of whole batches"
        );
        assert_eq!(read_all(&dir.path().join("events")).0, n);
    }

    /// Rows whose payloads compress badly close their row group on the writer's memory, long
    /// before its row count.
    #[test]
    fn a_row_group_of_incompressible_rows_is_written_out_at_its_memory_bound() {
        let (dir, rt, sink, rec) = one_segment_sink();
        // 600 rows of 64 KiB of pseudo-random letters (xorshift): ~6 bits of entropy a byte.
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let n = 600usize;
        rt.block_on(async {
            for i in 0..n as u64 {
                let raw: String = (0..64 << 10)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        ALPHABET[(x & 63) as usize] as char
                    })
                    .collect();
                let mut e = EventRow::new(i, EventKind::Sse, i as i64);
                e.raw = Some(raw);
                rec.event(e).await;
            }
        });
        drop(rec);
        assert_eq!(sink.finish().event_rows, n as u64);
        let path = dir.path().join("events").join(segment_file_name(0));
        let b = ParquetRecordBatchReaderBuilder::try_new(File::open(&path).expect("open")).expect("parquet");
        let groups = b.metadata().row_groups();
        assert!(
            groups.len() >= 3,
            "{} row groups for ~29 MB of compressed payloads",
            groups.len()
        );
        for g in groups {
            // Below the bound before the last batch was encoded into it.
            assert!(
                g.compressed_size() < (ROW_GROUP_MEMORY + 2 * ENCODE_BYTES) as i64,
                "{}",
                g.compressed_size()
            );
        }
        assert_eq!(read_all(&dir.path().join("events")).0, n);
    }

    /// The mostly-null columns hold each value at its own row, in every batch and row group:
    /// values on a few rows chosen by their index (first, last, every thousandth, and both
    /// sides of 65,536 and 131,072 rows), nulls elsewhere, read back row by row. The rows' text
    /// makes the byte bound end each batch a little before 65,536 rows, so the edges fall
    /// between marks: a value moved at any edge shows in the thousandths after it.
    #[test]
    fn sparse_columns_keep_each_value_at_its_row_across_batches_and_row_groups() {
        use arrow_array::cast::AsArray;
        use arrow_array::types::{UInt16Type, UInt32Type};
        use arrow_array::Array;
        let (dir, rt, sink, rec) = one_segment_sink();
        // Past two row groups whatever the batches' byte bound makes of them.
        let n = 2 * ROW_GROUP_ROWS + 7;
        let edge = |i: usize, end: usize| i + 1 == end || i == end;
        let marked =
            |i: usize| i == 0 || i % 1000 == 7 || edge(i, ENCODE_ROWS) || edge(i, ROW_GROUP_ROWS) || i + 1 == n;
        rt.block_on(async {
            for i in 0..n {
                let mut e = EventRow::new(i as u64, EventKind::Sse, i as i64);
                if marked(i) {
                    let d = e.details_mut();
                    d.role = Some(format!("r{i}"));
                    d.http_status = Some((i % 600) as u16);
                    d.usage_completion_tokens = Some(i as u32);
                }
                if i.is_multiple_of(3) {
                    e.reasoning = Some(format!("t{i}"));
                }
                rec.event(e).await;
            }
        });
        drop(rec);
        assert_eq!(sink.finish().event_rows, n as u64);
        let path = dir.path().join("events").join(segment_file_name(0));
        let b = ParquetRecordBatchReaderBuilder::try_new(File::open(&path).expect("open")).expect("parquet");
        assert!(
            b.metadata().num_row_groups() >= 2,
            "{} row groups",
            b.metadata().num_row_groups()
        );
        let mut i = 0usize;
        for batch in b.build().expect("reader") {
            let batch = batch.expect("batch");
            let col = |name: &str| batch.column_by_name(name).expect("column").clone();
            let (role, status, tokens, reasoning) = (
                col(events::ROLE),
                col(events::HTTP_STATUS),
                col(events::USAGE_COMPLETION_TOKENS),
                col(events::REASONING),
            );
            let (role, status, tokens, reasoning) = (
                role.as_string::<i32>(),
                status.as_primitive::<UInt16Type>(),
                tokens.as_primitive::<UInt32Type>(),
                reasoning.as_string::<i32>(),
            );
            for k in 0..batch.num_rows() {
                let got = (
                    role.is_valid(k).then(|| role.value(k).to_string()),
                    status.is_valid(k).then(|| status.value(k)),
                    tokens.is_valid(k).then(|| tokens.value(k)),
                    reasoning.is_valid(k).then(|| reasoning.value(k).to_string()),
                );
                let want = (
                    marked(i).then(|| format!("r{i}")),
                    marked(i).then_some((i % 600) as u16),
                    marked(i).then_some(i as u32),
                    i.is_multiple_of(3).then(|| format!("t{i}")),
                );
                assert_eq!(got, want, "row {i}");
                i += 1;
            }
        }
        assert_eq!(i, n);
    }

    #[test]
    fn secrets_are_redacted_in_every_string_written_and_raw_is_kept() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut cfg = SinkConfig::new(dir.path().to_path_buf(), "r".into());
        cfg.secrets = Arc::new(Secrets::new(["Bearer sk-live-123".to_string()]));
        let (sink, rec) = Sink::spawn(cfg, Arc::new(|_: &str| {})).expect("spawn");
        let rt = tokio::runtime::Builder::new_current_thread().build().expect("rt");
        rt.block_on(async {
            let mut e = EventRow::new(0, EventKind::Error, 1);
            e.details_mut().error_message = Some("HTTP 401: bad key Bearer sk-live-123".into());
            e.raw = Some(r#"{"error":{"message":"bad key sk-live-123"}}"#.into());
            e.details_mut().response_headers_json = Some(r#"{"x-echo":"sk-live-123"}"#.into());
            rec.event(e).await;
        });
        drop(rec);
        sink.finish();
        let path = dir.path().join("events").join(segment_file_name(0));
        assert!(path.ends_with("part-0000000000.parquet"), "{path:?}");
        let bytes = std::fs::read(&path).expect("segment");
        assert!(
            !bytes.windows(b"sk-live".len()).any(|w| w == b"sk-live"),
            "the key reached the file"
        );
        let b = ParquetRecordBatchReaderBuilder::try_new(File::open(&path).expect("open"))
            .expect("parquet")
            .build()
            .expect("reader")
            .next()
            .expect("a batch")
            .expect("batch");
        let col = |name: &str| {
            b.column_by_name(name)
                .and_then(|c| c.as_any().downcast_ref::<arrow_array::StringArray>())
                .map(|a| a.value(0).to_string())
                .expect("column")
        };
        assert_eq!(col(events::ERROR_MESSAGE), "HTTP 401: bad key <redacted>");
        assert_eq!(col(events::RAW), r#"{"error":{"message":"bad key <redacted>"}}"#);
        assert_eq!(col(events::RESPONSE_HEADERS_JSON), r#"{"x-echo":"<redacted>"}"#);
    }

    #[test]
    fn the_flush_deadline_holds_while_a_backlog_never_empties_the_channel() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut cfg = SinkConfig::new(dir.path().to_path_buf(), "r".into());
        cfg.flush_interval = Duration::from_nanos(1);
        std::fs::create_dir_all(dir.path().join("events")).expect("events dir");
        std::fs::create_dir_all(dir.path().join("requests")).expect("requests dir");
        // The whole backlog is queued before the writer runs: its drain loop never sees an
        // empty channel, so only the in-loop deadline check can close segments.
        let n = FLUSH_CHECK_ROWS * 3 + 5;
        let (tx, rx) = mpsc::channel(n);
        for i in 0..n as u64 {
            tx.try_send(Sent::new(Record::Events(EventBatch::one(EventRow::new(
                i,
                EventKind::Sse,
                i as i64,
            )))))
            .expect("room for the backlog");
        }
        drop(tx);
        let stats = writer_loop(cfg, rx, &ByteBudget::new(usize::MAX), Arc::new(|_: &str| {}));
        assert_eq!(stats.event_rows, n as u64);
        assert!(
            stats.segments >= 3,
            "segments closed during the backlog: {}",
            stats.segments
        );
        assert_eq!(read_all(&dir.path().join("events")).0, n);
    }

    #[test]
    fn write_failure_is_reported_and_rows_are_drained() {
        let dir = tempfile::tempdir().expect("tmp");
        let cfg = SinkConfig::new(dir.path().to_path_buf(), "r".into());
        let seen = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let seen2 = seen.clone();
        let (sink, rec) = Sink::spawn(
            cfg,
            Arc::new(move |m: &str| seen2.lock().expect("lock").push(m.to_string())),
        )
        .expect("spawn");
        // Make the events folder unusable: segments cannot be created there.
        std::fs::remove_dir_all(dir.path().join("events")).expect("rm");
        std::fs::write(dir.path().join("events"), b"not a dir").expect("write");
        let rt = tokio::runtime::Builder::new_current_thread().build().expect("rt");
        rt.block_on(async {
            for i in 0..10 {
                rec.event(EventRow::new(i, EventKind::Sent, 0)).await;
            }
        });
        drop(rec);
        let stats = sink.finish();
        let msg = stats.error.expect("error reported");
        assert!(msg.contains("events"), "{msg}");
        assert_eq!(seen.lock().expect("lock").len(), 1);
    }
}
