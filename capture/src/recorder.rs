//! Rows as the hot path produces them, and the handle that hands them to the sink.
//!
//! Workers never touch Arrow or files: they build small [`EventRow`]s and send them through a
//! bounded channel ([`Recorder`]). A full channel makes senders wait (back-pressure) instead
//! of growing memory.

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
}

/// One `events` row; see `recap_schemas::events` for each column's meaning.
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
    /// `content`.
    pub content: Option<String>,
    /// `reasoning`.
    pub reasoning: Option<String>,
    /// `tool_calls_json`.
    pub tool_calls_json: Option<String>,
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
    /// `done_marker` (true only for `[DONE]`).
    pub done_marker: bool,
    /// `http_status`.
    pub http_status: Option<u16>,
    /// `error_kind`.
    pub error_kind: Option<ErrorKind>,
    /// `error_message`.
    pub error_message: Option<String>,
}

impl EventRow {
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

/// What travels from workers to the sink thread.
#[derive(Debug)]
pub enum Record {
    /// A `requests` row.
    Request(Box<RequestRow>),
    /// An `events` row.
    Event(Box<EventRow>),
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
    tx: mpsc::Sender<Record>,
    waits: Arc<WaitStats>,
}

impl Recorder {
    /// Wraps the sending half of the sink channel.
    pub fn new(tx: mpsc::Sender<Record>) -> Self {
        Recorder {
            tx,
            waits: Arc::default(),
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
        self.send(Record::Event(Box::new(row))).await;
    }

    async fn send(&self, rec: Record) {
        // A closed channel means the sink already failed and stopped the run; the run's
        // failure is reported from there, so the row is dropped quietly here.
        match self.tx.try_send(rec) {
            Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => {}
            Err(mpsc::error::TrySendError::Full(rec)) => {
                let t0 = Instant::now();
                let _ = self.tx.send(rec).await;
                self.waits.waits.fetch_add(1, Relaxed);
                self.waits
                    .wait_ns
                    .fetch_add(u64::try_from(t0.elapsed().as_nanos()).unwrap_or(u64::MAX), Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_channel_is_measured_as_back_pressure() {
        let (tx, mut rx) = mpsc::channel(1);
        let rec = Recorder::new(tx);
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
