//! Rows as the hot path produces them, and the handle that hands them to the sink.
//!
//! Workers never touch Arrow or files: they build small [`EventRow`]s and send them through a
//! bounded channel ([`Recorder`]). The channel is bounded twice, in rows and in bytes (a row
//! carrying a raw payload may be megabytes): when either is full senders wait
//! (back-pressure) instead of growing memory.

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Instant;

use recap_schemas::{Api, ErrorKind, EventKind, Phase};
use tokio::sync::mpsc;

/// One `requests` row.
#[derive(Debug, Clone)]
pub struct RequestRow {
    /// `request_id`.
    pub request_id: u64,
    /// `phase`.
    pub phase: Phase,
    /// `dataset_row`.
    pub dataset_row: u64,
    /// `api`.
    pub api: Api,
    /// `scheduled_ns`.
    pub scheduled_ns: i64,
    /// `prompt`.
    pub prompt: Option<Arc<str>>,
    /// `messages_json`.
    pub messages_json: Option<Arc<str>>,
    /// `max_tokens`.
    pub max_tokens: Option<u32>,
    /// `params_json`.
    pub params_json: Arc<str>,
    /// `request_bytes`.
    pub request_bytes: u32,
    /// `connection_id`.
    pub connection_id: Option<u32>,
    /// `planned_input_tokens`.
    pub planned_input_tokens: Option<u32>,
    /// `prefix_group`.
    pub prefix_group: Option<u32>,
    /// `session_id`.
    pub session_id: Option<Arc<str>>,
    /// `turn`.
    pub turn: Option<u32>,
    /// `client_request_id`.
    pub client_request_id: Option<String>,
    /// `server_request_id`.
    pub server_request_id: Option<String>,
    /// `input_json`.
    pub input_json: Option<Arc<str>>,
}

/// One `events` row; see `recap_schemas::events` for each column's meaning. The columns a
/// token's row fills are fields; those few rows fill (a request's first and last chunks, its
/// headers, errors, llama.cpp's timings) are in [`EventDetails`], boxed: a row is built,
/// sent, appended and dropped once per event, and at ~400 bytes it was twice the cache lines.
#[derive(Debug, Clone, Default)]
pub struct EventRow {
    /// `request_id`.
    pub request_id: u64,
    /// `kind`.
    pub kind: Option<EventKind>,
    /// `t_ns`.
    pub t_ns: i64,
    /// `seq`.
    pub seq: Option<u32>,
    /// `bytes`.
    pub bytes: Option<u32>,
    /// `choice_index`.
    pub choice_index: Option<u32>,
    /// `done_marker` (true only for `[DONE]`).
    pub done_marker: bool,
    /// `content`.
    pub content: Option<String>,
    /// `reasoning`.
    pub reasoning: Option<String>,
    /// `tool_calls_json`.
    pub tool_calls_json: Option<String>,
    /// `sse_event`.
    pub sse_event: Option<String>,
    /// `raw`.
    pub raw: Option<String>,
    /// Where `content` lies in its [`EventBatch`]'s text, when it was put there.
    pub content_at: Option<Span>,
    /// Where `raw` lies in its [`EventBatch`]'s text, when it was put there.
    pub raw_at: Option<Span>,
    /// The rest of the columns, when any is set ([`EventRow::details_mut`]).
    pub details: Option<Box<EventDetails>>,
}

/// The `events` columns few rows fill; see [`EventRow`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventDetails {
    /// `role`.
    pub role: Option<String>,
    /// `finish_reason`.
    pub finish_reason: Option<String>,
    /// `usage_prompt_tokens`.
    pub usage_prompt_tokens: Option<u32>,
    /// `usage_completion_tokens`.
    pub usage_completion_tokens: Option<u32>,
    /// `usage_reasoning_tokens`.
    pub usage_reasoning_tokens: Option<u32>,
    /// `usage_cached_tokens`.
    pub usage_cached_tokens: Option<u32>,
    /// `http_status`.
    pub http_status: Option<u16>,
    /// `error_kind`.
    pub error_kind: Option<ErrorKind>,
    /// `error_message`.
    pub error_message: Option<String>,
    /// `timings_prompt_ms`.
    pub timings_prompt_ms: Option<f64>,
    /// `timings_predicted_ms`.
    pub timings_predicted_ms: Option<f64>,
    /// `timings_prompt_n`.
    pub timings_prompt_n: Option<u32>,
    /// `timings_predicted_n`.
    pub timings_predicted_n: Option<u32>,
    /// `response_headers_json`.
    pub response_headers_json: Option<String>,
}

impl EventDetails {
    /// Bytes of the strings it owns.
    fn text_bytes(&self) -> usize {
        len(&self.role) + len(&self.finish_reason) + len(&self.error_message) + len(&self.response_headers_json)
    }
}

impl EventRow {
    /// Names its `raw` as `raw`, a range of its batch's text, and its content, when read in
    /// place, as `content` within that raw; `false`, and nothing set, when a span cannot
    /// reach them (a text over 4 GiB).
    pub fn place(&mut self, raw: Range<usize>, content: Option<Range<usize>>) -> bool {
        let content_at = match content {
            Some(c) => match Span::at(raw.start + c.start..raw.start + c.end) {
                Some(at) => Some(at),
                None => return false,
            },
            None => None,
        };
        let Some(raw_at) = Span::at(raw) else {
            return false;
        };
        self.raw_at = Some(raw_at);
        self.content_at = content_at;
        true
    }

    /// Its [`EventDetails`], boxed on first use.
    pub fn details_mut(&mut self) -> &mut EventDetails {
        self.details.get_or_insert_with(Box::default)
    }

    /// Its `error_kind`.
    pub fn error_kind(&self) -> Option<ErrorKind> {
        self.details.as_ref().and_then(|d| d.error_kind)
    }

    /// Sets `error_kind` and `error_message`.
    pub fn set_error(&mut self, kind: ErrorKind, message: String) {
        let d = self.details_mut();
        d.error_kind = Some(kind);
        d.error_message = Some(message);
    }

    /// A row of `kind` for `request_id` at `t_ns`, every optional column null.
    pub fn new(request_id: u64, kind: EventKind, t_ns: i64) -> Self {
        EventRow {
            request_id,
            kind: Some(kind),
            t_ns,
            ..Default::default()
        }
    }
}

/// A stretch of an [`EventBatch`]'s text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    start: u32,
    len: u32,
}

impl Span {
    /// The span of `range` of a batch's text, when its bounds fit a span's.
    fn at(range: Range<usize>) -> Option<Span> {
        let start = u32::try_from(range.start).ok()?;
        let len = u32::try_from(range.len()).ok()?;
        start.checked_add(len)?;
        Some(Span { start, len })
    }

    /// The text this span names in `text`.
    fn of(self, text: &str) -> Option<&str> {
        let start = self.start as usize;
        text.get(start..start + self.len as usize)
    }
}

/// `events` rows of one request, in recording order, and the text their spans name: the rows
/// of one read of a stream travel together, their `content` and `raw` back to back in one
/// string. One send and two allocations for a read's events instead of a send and three
/// allocations per event, each freed on the writer's thread (glibc's malloc and free cost
/// ~400 instructions per such pair). B3 whole: -1.5k instructions per row.
#[derive(Debug, Default)]
pub struct EventBatch {
    /// The rows.
    pub rows: Vec<EventRow>,
    /// What their `content_at` and `raw_at` name.
    pub text: String,
}

impl EventBatch {
    /// An empty batch with room for `rows` rows and `text` bytes of their texts.
    pub fn with_capacity(rows: usize, text: usize) -> Self {
        EventBatch {
            rows: Vec::with_capacity(rows),
            text: String::with_capacity(text),
        }
    }

    /// One row, its texts where they are.
    pub fn one(row: EventRow) -> Self {
        EventBatch {
            rows: vec![row],
            text: String::new(),
        }
    }

    /// Appends `row`, its `content` and `raw` (or `raw` given apart) copied into the batch's
    /// text.
    pub fn push(&mut self, mut row: EventRow, raw: Option<&str>) {
        self.keep(&mut row.content, &mut row.content_at);
        match raw {
            Some(r) => self.copy_in(r, &mut row.raw, &mut row.raw_at),
            None => self.keep(&mut row.raw, &mut row.raw_at),
        }
        self.rows.push(row);
    }

    /// Appends `row`, whose content is `data[content]`: copied into the batch's text with
    /// the rest of `data` as `raw` when `keep_raw` (the content's span then lies inside
    /// raw's), else alone.
    #[inline]
    pub fn push_content_in(&mut self, mut row: EventRow, data: &str, content: Range<usize>, keep_raw: bool) {
        let Some(text) = data.get(content.clone()) else {
            return self.push(row, keep_raw.then_some(data));
        };
        let start = self.text.len();
        if keep_raw && row.place(start..start + data.len(), Some(content)) {
            self.text.push_str(data);
        } else {
            if keep_raw {
                row.raw = Some(data.to_owned());
            }
            self.copy_in(text, &mut row.content, &mut row.content_at);
        }
        self.rows.push(row);
    }

    /// Moves `owned` into the text and sets `at` to it; leaves it where it is if it does
    /// not fit ([`Self::put`]).
    fn keep(&mut self, owned: &mut Option<String>, at: &mut Option<Span>) {
        if let Some(s) = owned.as_deref() {
            *at = self.put(s);
            if at.is_some() {
                *owned = None;
            }
        }
    }

    /// Copies `s` into the text and sets `at` to it; into `owned` instead if it does not fit
    /// ([`Self::put`]).
    fn copy_in(&mut self, s: &str, owned: &mut Option<String>, at: &mut Option<Span>) {
        *at = self.put(s);
        if at.is_none() {
            *owned = Some(s.to_owned());
        }
    }

    /// Copies `s` into the text, unless the text would pass `u32::MAX` bytes.
    fn put(&mut self, s: &str) -> Option<Span> {
        let at = Span::at(self.text.len()..self.text.len() + s.len())?;
        self.text.push_str(s);
        Some(at)
    }

    /// `row`'s `content`, wherever it is.
    pub fn content<'a>(&'a self, row: &'a EventRow) -> Option<&'a str> {
        row.content
            .as_deref()
            .or_else(|| row.content_at.and_then(|s| s.of(&self.text)))
    }

    /// `row`'s `raw`, wherever it is.
    pub fn raw<'a>(&'a self, row: &'a EventRow) -> Option<&'a str> {
        row.raw.as_deref().or_else(|| row.raw_at.and_then(|s| s.of(&self.text)))
    }

    /// Moves every row's texts back into the row (before it is edited, or split from the
    /// others).
    pub fn materialize(&mut self) {
        for row in &mut self.rows {
            if let Some(c) = row.content_at.take().and_then(|s| s.of(&self.text)) {
                row.content = Some(c.to_owned());
            }
            if let Some(r) = row.raw_at.take().and_then(|s| s.of(&self.text)) {
                row.raw = Some(r.to_owned());
            }
        }
        self.text = String::new();
    }

    /// The rows from `at` on, as a batch of their own (empty, and nothing moved, when `at`
    /// is at or past the end).
    pub fn split_off(&mut self, at: usize) -> EventBatch {
        if at >= self.rows.len() {
            return EventBatch::default();
        }
        self.materialize();
        EventBatch {
            rows: self.rows.split_off(at),
            text: String::new(),
        }
    }

    /// Bytes of the strings the batch owns.
    fn text_bytes(&self) -> usize {
        self.text.len()
            + self
                .rows
                .iter()
                .map(|e| {
                    len(&e.content)
                        + len(&e.reasoning)
                        + len(&e.tool_calls_json)
                        + len(&e.sse_event)
                        + len(&e.raw)
                        + e.details
                            .as_ref()
                            .map_or(0, |d| std::mem::size_of::<EventDetails>() + d.text_bytes())
                })
                .sum::<usize>()
    }
}

/// What travels from workers to the sink thread.
#[derive(Debug)]
pub enum Record {
    /// A `requests` row.
    Request(Box<RequestRow>),
    /// `events` rows, all of one request, in recording order.
    Events(EventBatch),
    /// A `scrapes` row (`--scrape`).
    Scrape(Box<ScrapeRow>),
}

/// One read of a server's metrics endpoint, as the `scrapes` table stores it.
#[derive(Debug, Clone, Default)]
pub struct ScrapeRow {
    /// The URL read, credentials removed.
    pub target: String,
    /// Sent (ns since run start).
    pub t_ns: i64,
    /// Body read or failure (ns since run start).
    pub end_ns: i64,
    /// HTTP status, when a response came.
    pub http_status: Option<u16>,
    /// `Content-Type` of the response.
    pub content_type: Option<String>,
    /// The exposition text.
    pub body: Option<String>,
    /// Why the scrape failed.
    pub error: Option<String>,
}

fn len(s: &Option<String>) -> usize {
    s.as_ref().map_or(0, String::len)
}

impl Record {
    /// Bytes of the strings this record owns (prompts are shared with the prepared request
    /// and not counted).
    pub fn text_bytes(&self) -> usize {
        match self {
            Record::Request(r) => len(&r.client_request_id) + len(&r.server_request_id),
            Record::Events(batch) => batch.text_bytes(),
            Record::Scrape(r) => r.target.len() + len(&r.content_type) + len(&r.body) + len(&r.error),
        }
    }

    /// How many rows this record carries.
    pub fn rows(&self) -> usize {
        match self {
            Record::Events(batch) => batch.rows.len(),
            Record::Request(_) | Record::Scrape(_) => 1,
        }
    }

    /// The size of the row structs themselves.
    pub fn row_bytes(&self) -> usize {
        match self {
            Record::Request(_) => std::mem::size_of::<RequestRow>(),
            Record::Events(batch) => batch.rows.len() * std::mem::size_of::<EventRow>(),
            Record::Scrape(_) => std::mem::size_of::<ScrapeRow>(),
        }
    }
}

/// A record on its way to the sink with its [`Record::text_bytes`], counted once, by the
/// sender, while its rows are still in that core's cache: counted again on the writer's
/// thread, the walk over every row was that thread's first touch of them (B3 whole: 1.3 % of
/// capture's cycles, `perf`).
#[derive(Debug)]
pub struct Sent {
    /// The record.
    pub record: Record,
    /// Its [`Record::text_bytes`].
    pub text_bytes: usize,
}

impl Sent {
    /// `record`, its text bytes counted.
    pub fn new(record: Record) -> Self {
        Sent {
            text_bytes: record.text_bytes(),
            record,
        }
    }

    /// The memory the record holds while it waits in the channel ([`Record::row_bytes`] and
    /// its text bytes), in the units of the byte budget: the same for the sender and the
    /// sink, which gives it back.
    pub fn budget_bytes(&self) -> usize {
        self.record.row_bytes() + self.text_bytes
    }
}

/// Default of `--record-buffer-bytes`: the most bytes of rows waiting for the writer.
pub const DEFAULT_BUFFER_BYTES: usize = 256 << 20;

/// The channel's bound in bytes: senders take permits for a record's
/// [`Sent::budget_bytes`], the sink gives them back once the row is in its builders.
#[derive(Debug)]
pub struct ByteBudget {
    sem: tokio::sync::Semaphore,
    cap: u32,
}

impl ByteBudget {
    /// A budget of `cap` bytes (at most `u32::MAX`).
    pub fn new(cap: usize) -> Self {
        let cap = u32::try_from(cap.max(1)).unwrap_or(u32::MAX);
        ByteBudget {
            sem: tokio::sync::Semaphore::new(cap as usize),
            cap,
        }
    }

    /// The permits a record of `bytes` takes: a record larger than the whole budget takes
    /// all of it (it then travels alone).
    pub fn permits(&self, bytes: usize) -> usize {
        u32::try_from(bytes).unwrap_or(u32::MAX).min(self.cap) as usize
    }

    /// Gives back `n` permits at once (the sink sums [`ByteBudget::permits`] of the records
    /// it took out).
    pub fn release_permits(&self, n: usize) {
        if n > 0 {
            self.sem.add_permits(n);
        }
    }

    /// Bytes currently held by records in flight.
    pub fn held(&self) -> usize {
        self.cap as usize - self.sem.available_permits()
    }
}

/// How long senders waited on a full channel: the run's back-pressure, reported in the
/// summary and the manifest because while workers wait, the client sets the pace.
#[derive(Debug, Default)]
pub struct WaitStats {
    /// Sends that found the channel full.
    pub waits: AtomicU64,
    /// Nanoseconds spent in those sends.
    pub wait_ns: AtomicU64,
}

/// Cloneable handle to the sink's channel.
#[derive(Debug, Clone)]
pub struct Recorder {
    tx: mpsc::Sender<Sent>,
    waits: Arc<WaitStats>,
    budget: Arc<ByteBudget>,
}

impl Recorder {
    /// Wraps the sending half of the sink channel and its byte budget.
    pub fn new(tx: mpsc::Sender<Sent>, budget: Arc<ByteBudget>) -> Self {
        Recorder {
            tx,
            waits: Arc::default(),
            budget,
        }
    }

    /// A recorder on the same channel whose waits are counted apart: the scraper's, so a wait
    /// of its own is never reported as the workers'.
    pub fn with_own_waits(&self) -> Recorder {
        Recorder {
            tx: self.tx.clone(),
            waits: Arc::default(),
            budget: self.budget.clone(),
        }
    }

    /// The back-pressure counters shared by every clone of this recorder.
    pub fn wait_stats(&self) -> Arc<WaitStats> {
        self.waits.clone()
    }

    /// Records a request row (waits while the sink is behind).
    pub async fn request(&self, row: RequestRow) {
        self.send(Record::Request(Box::new(row))).await;
    }

    /// Records an event row (waits while the sink is behind).
    pub async fn event(&self, row: EventRow) {
        self.send(Record::Events(EventBatch::one(row))).await;
    }

    /// Records event rows of one request, in recording order, in one send (waits while the
    /// sink is behind). Nothing is sent for none.
    pub async fn events(&self, batch: EventBatch) {
        if !batch.rows.is_empty() {
            self.send(Record::Events(batch)).await;
        }
    }

    /// Records a scrape row (waits while the sink is behind; only the scraper's task does).
    pub async fn scrape(&self, row: ScrapeRow) {
        self.send(Record::Scrape(Box::new(row))).await;
    }

    async fn send(&self, rec: Record) {
        let mut waited: Option<Instant> = None;
        let rec = Sent::new(rec);
        // At most `cap`, a u32.
        let n = self.budget.permits(rec.budget_bytes()) as u32;
        match self.budget.sem.try_acquire_many(n) {
            Ok(permit) => permit.forget(),
            Err(_) => {
                waited = Some(Instant::now());
                // The semaphore is never closed: an error cannot happen.
                if let Ok(permit) = self.budget.sem.acquire_many(n).await {
                    permit.forget();
                }
            }
        }
        // A closed channel means the sink already failed and stopped the run; the run's
        // failure is reported from there, so the row is dropped quietly here.
        match self.tx.try_send(rec) {
            Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => {}
            Err(mpsc::error::TrySendError::Full(rec)) => {
                waited.get_or_insert_with(Instant::now);
                let _ = self.tx.send(rec).await;
            }
        }
        if let Some(t0) = waited {
            self.waits.waits.fetch_add(1, Relaxed);
            self.waits
                .wait_ns
                .fetch_add(u64::try_from(t0.elapsed().as_nanos()).unwrap_or(u64::MAX), Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_byte_budget_makes_senders_wait_until_the_sink_releases() {
        let (tx, mut rx) = mpsc::channel(1000);
        let row_bytes = Sent::new(Record::Events(EventBatch::one(EventRow::new(
            0,
            recap_schemas::EventKind::Sent,
            0,
        ))))
        .budget_bytes();
        let budget = Arc::new(ByteBudget::new(row_bytes + 1000));
        let rec = Recorder::new(tx, budget.clone());
        let waits = rec.wait_stats();
        let mut big = EventRow::new(1, recap_schemas::EventKind::Sse, 0);
        big.raw = Some("x".repeat(900));
        rec.event(big).await;
        assert_eq!(waits.waits.load(Relaxed), 0);
        let mut second = EventRow::new(2, recap_schemas::EventKind::Sse, 0);
        second.raw = Some("y".repeat(900));
        let pending = tokio::spawn({
            let rec = rec.clone();
            async move { rec.event(second).await }
        });
        tokio::task::yield_now().await;
        assert!(!pending.is_finished(), "the budget holds one big row, not two");
        let first = rx.recv().await.expect("first row");
        budget.release_permits(budget.permits(first.budget_bytes()));
        pending.await.expect("second send");
        assert_eq!(waits.waits.load(Relaxed), 1);
        let second = rx.recv().await.expect("second row");
        assert_eq!(budget.held(), second.budget_bytes());
    }

    /// A content read in place in its event's data is a span inside the row's `raw`, or a
    /// copy of its own when `raw` is not kept; either way both read back as given, before
    /// and after the batch is split.
    #[test]
    fn content_in_the_data_reads_back_with_and_without_raw() {
        let data = r#"{"choices":[{"delta":{"content":"héllo"}}]}"#;
        let at = data.find("héllo").expect("content");
        let content = at..at + "héllo".len();
        let mut batch = EventBatch::default();
        for keep_raw in [true, false, true] {
            let row = EventRow::new(7, recap_schemas::EventKind::Sse, 0);
            batch.push_content_in(row, data, content.clone(), keep_raw);
        }
        assert_eq!(
            batch.text.len(),
            2 * data.len() + "héllo".len(),
            "each text copied once"
        );
        for (row, keep_raw) in batch.rows.iter().zip([true, false, true]) {
            assert_eq!(batch.content(row), Some("héllo"));
            assert_eq!(batch.raw(row), keep_raw.then_some(data));
        }
        let tail = batch.split_off(1);
        assert_eq!(batch.content(&batch.rows[0]), Some("héllo"));
        assert_eq!(batch.raw(&batch.rows[0]), Some(data));
        for (row, keep_raw) in tail.rows.iter().zip([false, true]) {
            assert_eq!(tail.content(row), Some("héllo"));
            assert_eq!(tail.raw(row), keep_raw.then_some(data));
        }
    }

    #[tokio::test]
    async fn a_full_channel_is_measured_as_back_pressure() {
        let (tx, mut rx) = mpsc::channel(1);
        let rec = Recorder::new(tx, Arc::new(ByteBudget::new(DEFAULT_BUFFER_BYTES)));
        let waits = rec.wait_stats();
        rec.event(EventRow::new(0, recap_schemas::EventKind::Sent, 0)).await;
        assert_eq!(waits.waits.load(Relaxed), 0, "room in the channel: no wait");
        let second = tokio::spawn({
            let rec = rec.clone();
            async move { rec.event(EventRow::new(1, recap_schemas::EventKind::Sent, 0)).await }
        });
        // Let the second send run (single-threaded test runtime) and find the channel full;
        // it can only finish once a row is taken out.
        tokio::task::yield_now().await;
        assert!(!second.is_finished());
        assert!(rx.recv().await.is_some());
        second.await.expect("second send");
        assert!(rx.recv().await.is_some());
        assert_eq!(waits.waits.load(Relaxed), 1);
    }
}
