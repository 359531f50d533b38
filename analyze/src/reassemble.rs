//! Per-request reassembly: the output text of each channel and the event times metrics need.
//!
//! Events are streamed from DataFusion (a projection of the `events` table, in any order) into
//! per-request accumulators, then each request's SSE rows are put in `seq` order and their
//! `content`, `reasoning` and tool-call argument pieces concatenated.

use std::collections::HashMap;

use arrow_array::cast::AsArray;
use arrow_array::types::{Int64Type, UInt16Type, UInt32Type, UInt64Type};
use arrow_array::{Array, RecordBatch};
use datafusion::prelude::SessionContext;

use recap_schemas::{Api, ErrorKind, EventKind, Phase};

use crate::{Error, Result};

/// Everything about one request that the metrics are computed from.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RequestRecord {
    /// `request_id`.
    pub request_id: u64,
    /// Warmup or measure (`None` if the request row was lost in a crash).
    pub phase: Option<Phase>,
    /// `chat` or `completions`.
    pub api: Option<Api>,
    /// Intended send time.
    pub scheduled_ns: Option<i64>,
    /// Completions prompt.
    pub prompt: Option<String>,
    /// Chat messages as JSON text.
    pub messages_json: Option<String>,
    /// `max_tokens` sent.
    pub max_tokens: Option<u32>,
    /// The input length the dataset row was generated for.
    pub planned_input_tokens: Option<u32>,
    /// The dataset row's shared-prefix group.
    pub prefix_group: Option<u32>,
    /// The multi-turn session the request is a turn of.
    pub session_id: Option<String>,
    /// 0-based turn within the session.
    pub turn: Option<u32>,
    /// `sent` time of the attempt that was answered (the last `sent`: an attempt retried
    /// after its reused connection failed unanswered does not count).
    pub sent_ns: Option<i64>,
    /// Start (`connect` row) of the connection the answered attempt opened; `None` when it
    /// reused a kept-alive connection.
    pub connect_ns: Option<i64>,
    /// Attempts sent again on a fresh connection (`retry` rows).
    pub retries: u32,
    /// `headers` time.
    pub headers_ns: Option<i64>,
    /// HTTP status from `headers` (or the error row).
    pub http_status: Option<u16>,
    /// Terminal kind (`done`, `error`, `cancelled`); `None` if the run was killed first.
    pub terminal: Option<EventKind>,
    /// Terminal time.
    pub end_ns: Option<i64>,
    /// Terminal `error_kind`.
    pub error_kind: Option<ErrorKind>,
    /// The reassembled output texts; `None` when the record was read from the records cache
    /// ([`crate::records`]), which keeps only their hashes.
    pub texts: Option<Texts>,
    /// [`crate::store::text_hash`] of each output text: the token-count cache keys.
    pub hashes: TextHashes,
    /// Times of SSE events with output (non-empty content, reasoning or a tool call), in seq order.
    pub output_times_ns: Vec<i64>,
    /// Time of the first SSE event carrying a choice (vLLM's TTFT point).
    pub first_choice_ns: Option<i64>,
    /// Time of the first SSE event with non-empty content.
    pub first_content_ns: Option<i64>,
    /// Server-reported `usage.prompt_tokens` (last seen).
    pub usage_prompt_tokens: Option<u32>,
    /// Server-reported `usage.completion_tokens` (last seen).
    pub usage_completion_tokens: Option<u32>,
    /// SSE rows marked `protocol` (malformed or in-stream errors).
    pub protocol_events: u32,
    /// SSE rows.
    pub sse_events: u32,
}

/// A request's output text, one string per channel.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Texts {
    /// Reassembled content.
    pub content: String,
    /// Reassembled reasoning.
    pub reasoning: String,
    /// Reassembled tool-call arguments (and function names).
    pub tool_args: String,
}

/// Hashes of a request's output texts, per channel.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TextHashes {
    /// Of [`Texts::content`].
    pub content: crate::store::TextKey,
    /// Of [`Texts::reasoning`].
    pub reasoning: crate::store::TextKey,
    /// Of [`Texts::tool_args`].
    pub tool_args: crate::store::TextKey,
}

impl Texts {
    /// The hashes of these texts.
    pub fn hashes(&self) -> TextHashes {
        use crate::store::text_hash;
        TextHashes {
            content: text_hash(&self.content),
            reasoning: text_hash(&self.reasoning),
            tool_args: text_hash(&self.tool_args),
        }
    }
}

/// Where one event's text sits in its request's channel buffer (`None`: the field was null).
type Span = Option<(u32, u32)>;

/// One SSE event's metadata; its text stays in the request's buffers, so reassembly allocates
/// per request, not per event.
struct SseMeta {
    seq: u32,
    t_ns: i64,
    content: Span,
    reasoning: Span,
    tool_args: Span,
    has_choice: bool,
}

/// A channel's text in arrival order, with each event's span.
#[derive(Default)]
struct Channel {
    buf: String,
}

impl Channel {
    fn push(&mut self, text: Option<&str>) -> Span {
        let t = text?;
        let start = self.buf.len() as u32;
        self.buf.push_str(t);
        Some((start, t.len() as u32))
    }

    fn non_empty(span: Span) -> bool {
        span.is_some_and(|(_, len)| len > 0)
    }

    /// The text in `order` (event indices); arrival order needs no copy.
    fn assemble(
        self,
        metas: &[SseMeta],
        order: &[usize],
        in_arrival_order: bool,
        pick: fn(&SseMeta) -> Span,
    ) -> String {
        if in_arrival_order {
            return self.buf;
        }
        let mut out = String::with_capacity(self.buf.len());
        for &i in order {
            if let Some((start, len)) = pick(&metas[i]) {
                out.push_str(&self.buf[start as usize..(start + len) as usize]);
            }
        }
        out
    }
}

#[derive(Default)]
struct Acc {
    rec: RequestRecord,
    sse: Vec<SseMeta>,
    content: Channel,
    reasoning: Channel,
    tool_args: Channel,
}

/// Accumulators by request, with the last one looked up remembered (rows of one request
/// mostly arrive together).
#[derive(Default)]
struct Accs {
    index: HashMap<u64, usize>,
    list: Vec<Acc>,
    last: Option<(u64, usize)>,
}

impl Accs {
    fn get(&mut self, id: u64) -> &mut Acc {
        let i = match self.last {
            Some((last_id, i)) if last_id == id => i,
            _ => {
                let list = &mut self.list;
                let i = *self.index.entry(id).or_insert_with(|| {
                    list.push(Acc::default());
                    list.len() - 1
                });
                self.last = Some((id, i));
                i
            }
        };
        &mut self.list[i]
    }
}

fn df(e: datafusion::error::DataFusionError) -> Error {
    Error::Query(e.to_string())
}

/// Function names and argument pieces of a `tool_calls` delta, concatenated.
pub fn tool_call_text(json: &str) -> String {
    let Ok(serde_json::Value::Array(calls)) = serde_json::from_str::<serde_json::Value>(json) else {
        return String::new();
    };
    let mut out = String::new();
    for c in calls {
        if let Some(f) = c.get("function") {
            for k in ["name", "arguments"] {
                if let Some(s) = f.get(k).and_then(serde_json::Value::as_str) {
                    out.push_str(s);
                }
            }
        }
    }
    out
}

/// Reads `requests` and `events` (registered under `prefix`) into one record per request,
/// ordered by `request_id`.
pub async fn reassemble(ctx: &SessionContext, prefix: &str) -> Result<Vec<RequestRecord>> {
    let mut accs = Accs::default();
    let reqs = ctx
        .sql(&format!(
            "SELECT request_id, phase, api, scheduled_ns, prompt, messages_json, max_tokens, planned_input_tokens, prefix_group, session_id, turn FROM {prefix}requests"
        ))
        .await
        .map_err(df)?
        .collect()
        .await
        .map_err(df)?;
    for b in &reqs {
        let id = b.column(0).as_primitive::<UInt64Type>();
        let phase = b.column(1).as_string::<i32>();
        let api = b.column(2).as_string::<i32>();
        let sched = b.column(3).as_primitive::<Int64Type>();
        let prompt = b.column(4).as_string::<i32>();
        let msgs = b.column(5).as_string::<i32>();
        let [max_tokens, planned, group] = [6, 7, 8].map(|c| b.column(c).as_primitive::<UInt32Type>());
        let session = b.column(9).as_string::<i32>();
        let turn = b.column(10).as_primitive::<UInt32Type>();
        let u32_at = |a: &arrow_array::UInt32Array, i: usize| a.is_valid(i).then(|| a.value(i));
        for i in 0..b.num_rows() {
            let a = accs.get(id.value(i));
            a.rec.request_id = id.value(i);
            a.rec.phase = Phase::parse(phase.value(i));
            a.rec.api = Api::parse(api.value(i));
            a.rec.scheduled_ns = Some(sched.value(i));
            a.rec.prompt = prompt.is_valid(i).then(|| prompt.value(i).to_string());
            a.rec.messages_json = msgs.is_valid(i).then(|| msgs.value(i).to_string());
            a.rec.max_tokens = u32_at(max_tokens, i);
            a.rec.planned_input_tokens = u32_at(planned, i);
            a.rec.prefix_group = u32_at(group, i);
            a.rec.session_id = session.is_valid(i).then(|| session.value(i).to_string());
            a.rec.turn = u32_at(turn, i);
        }
    }
    let mut stream = ctx
        .sql(&format!(
            "SELECT request_id, kind, t_ns, seq, content, reasoning, tool_calls_json, role, finish_reason, \
             usage_prompt_tokens, usage_completion_tokens, http_status, error_kind FROM {prefix}events"
        ))
        .await
        .map_err(df)?
        .execute_stream()
        .await
        .map_err(df)?;
    use futures_util::StreamExt;
    while let Some(batch) = stream.next().await {
        add_events(&mut accs, &batch.map_err(df)?);
    }
    let taken: Vec<(u64, Acc)> = accs
        .index
        .into_iter()
        .map(|(id, i)| (id, std::mem::take(&mut accs.list[i])))
        .collect();
    // Ordering, concatenating and hashing each request's text is independent work.
    use rayon::prelude::*;
    let mut out: Vec<RequestRecord> = taken.into_par_iter().map(|(id, a)| finish(id, a)).collect();
    out.sort_by_key(|r| r.request_id);
    Ok(out)
}

/// Orders one request's events by `seq` and concatenates each channel.
fn finish(id: u64, a: Acc) -> RequestRecord {
    let Acc {
        mut rec,
        sse,
        content,
        reasoning,
        tool_args,
    } = a;
    rec.request_id = id;
    let mut order: Vec<usize> = (0..sse.len()).collect();
    let in_arrival_order = sse.is_sorted_by_key(|m| (m.seq, m.t_ns));
    if !in_arrival_order {
        order.sort_by_key(|&i| (sse[i].seq, sse[i].t_ns));
    }
    for &i in &order {
        let s = &sse[i];
        if Channel::non_empty(s.content) || Channel::non_empty(s.reasoning) || s.tool_args.is_some() {
            rec.output_times_ns.push(s.t_ns);
        }
        if s.has_choice && rec.first_choice_ns.is_none() {
            rec.first_choice_ns = Some(s.t_ns);
        }
        if Channel::non_empty(s.content) && rec.first_content_ns.is_none() {
            rec.first_content_ns = Some(s.t_ns);
        }
    }
    let texts = Texts {
        content: content.assemble(&sse, &order, in_arrival_order, |m| m.content),
        reasoning: reasoning.assemble(&sse, &order, in_arrival_order, |m| m.reasoning),
        tool_args: tool_args.assemble(&sse, &order, in_arrival_order, |m| m.tool_args),
    };
    rec.hashes = texts.hashes();
    rec.texts = Some(texts);
    rec
}

fn add_events(accs: &mut Accs, b: &RecordBatch) {
    let id = b.column(0).as_primitive::<UInt64Type>();
    let kind = b.column(1).as_string::<i32>();
    let t = b.column(2).as_primitive::<Int64Type>();
    let seq = b.column(3).as_primitive::<UInt32Type>();
    let content = b.column(4).as_string::<i32>();
    let reasoning = b.column(5).as_string::<i32>();
    let tools = b.column(6).as_string::<i32>();
    let role = b.column(7).as_string::<i32>();
    let finish = b.column(8).as_string::<i32>();
    let up = b.column(9).as_primitive::<UInt32Type>();
    let uc = b.column(10).as_primitive::<UInt32Type>();
    let status = b.column(11).as_primitive::<UInt16Type>();
    let ek = b.column(12).as_string::<i32>();
    for i in 0..b.num_rows() {
        let a = accs.get(id.value(i));
        let r = &mut a.rec;
        let t_ns = t.value(i);
        // Kinds this analyze does not know (a newer capture's) are skipped.
        let Some(kind) = EventKind::parse(kind.value(i)) else {
            continue;
        };
        match kind {
            EventKind::Sent => r.sent_ns = Some(r.sent_ns.map_or(t_ns, |x| x.max(t_ns))),
            EventKind::Connect => r.connect_ns = Some(r.connect_ns.map_or(t_ns, |x| x.max(t_ns))),
            EventKind::Retry => r.retries += 1,
            EventKind::Connected | EventKind::TlsDone => {}
            EventKind::Headers => {
                r.headers_ns = Some(t_ns);
                if status.is_valid(i) {
                    r.http_status = Some(status.value(i));
                }
            }
            EventKind::Sse => {
                r.sse_events += 1;
                if ek.is_valid(i) {
                    r.protocol_events += 1;
                }
                if up.is_valid(i) {
                    r.usage_prompt_tokens = Some(up.value(i));
                }
                if uc.is_valid(i) {
                    r.usage_completion_tokens = Some(uc.value(i));
                }
                let tool_text = tools.is_valid(i).then(|| tool_call_text(tools.value(i)));
                let has_choice = content.is_valid(i)
                    || reasoning.is_valid(i)
                    || tools.is_valid(i)
                    || role.is_valid(i)
                    || finish.is_valid(i);
                let meta = SseMeta {
                    seq: if seq.is_valid(i) { seq.value(i) } else { u32::MAX },
                    t_ns,
                    content: a.content.push(content.is_valid(i).then(|| content.value(i))),
                    reasoning: a.reasoning.push(reasoning.is_valid(i).then(|| reasoning.value(i))),
                    tool_args: a.tool_args.push(tool_text.as_deref()),
                    has_choice,
                };
                a.sse.push(meta);
            }
            EventKind::Done | EventKind::Error | EventKind::Cancelled => {
                r.terminal = Some(kind);
                r.end_ns = Some(t_ns);
                r.error_kind = ek.is_valid(i).then(|| ErrorKind::parse(ek.value(i))).flatten();
                if status.is_valid(i) {
                    r.http_status = Some(status.value(i));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(a: &mut Acc, seq: u32, t_ns: i64, content: Option<&str>, reasoning: Option<&str>) {
        let meta = SseMeta {
            seq,
            t_ns,
            content: a.content.push(content),
            reasoning: a.reasoning.push(reasoning),
            tool_args: None,
            has_choice: content.is_some() || reasoning.is_some(),
        };
        a.sse.push(meta);
    }

    #[test]
    fn events_arriving_out_of_seq_order_are_reordered() {
        let mut a = Acc::default();
        event(&mut a, 2, 30, Some("c"), None);
        event(&mut a, 0, 10, Some(""), None);
        event(&mut a, 1, 20, Some("ab"), Some("r"));
        event(&mut a, 3, 40, None, None);
        let r = finish(7, a);
        let t = r.texts.clone().unwrap_or_default();
        assert_eq!((t.content.as_str(), t.reasoning.as_str()), ("abc", "r"));
        assert_eq!(r.hashes, t.hashes());
        assert_eq!(r.output_times_ns, [20, 30]);
        assert_eq!((r.first_choice_ns, r.first_content_ns), (Some(10), Some(20)));
    }

    #[test]
    fn events_in_order_keep_their_buffers() {
        let mut a = Acc::default();
        event(&mut a, 0, 10, Some("x"), None);
        event(&mut a, 1, 20, Some("y"), None);
        let r = finish(1, a);
        assert_eq!(r.texts.map(|t| t.content).as_deref(), Some("xy"));
        assert_eq!(r.output_times_ns, [10, 20]);
    }

    #[test]
    fn tool_call_pieces() {
        assert_eq!(
            tool_call_text(r#"[{"index":0,"function":{"name":"f","arguments":"{\"a\""}}]"#),
            "f{\"a\""
        );
        assert_eq!(tool_call_text("not json"), "");
    }
}
