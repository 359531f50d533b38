//! Per-request reassembly, streamed: a run's rows in, each request's record out as soon as
//! its terminal event has been read.
//!
//! `requests` rows are read first ([`RequestFacts`]: small, their input texts counted and
//! dropped as they are read). Event segments are then read in write order; capture writes
//! every request's rows through one writer in the order it recorded them, so once a request's
//! terminal row has been read all its events have been too. Its SSE rows are put in `seq`
//! order, their `content`, `reasoning` and tool-call pieces concatenated, and the record is
//! handed on. Memory holds the requests in flight, not the run.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use arrow_array::RecordBatch;

use recap_schemas::events as ev;
use recap_schemas::requests as rq;
use recap_schemas::{Api, ErrorKind, EventKind, Phase};

use crate::columns::{at, f64_col, i64_col, str_col, u16_col, u32_col, u64_col};
use crate::input::{InputKind, InputRef};
use crate::keys::{text_hash, TextKey};
use crate::{Error, Result};

/// Maps by request id (ids are not attacker-chosen: a fast hash).
pub type IdMap<V> = HashMap<u64, V, ahash::RandomState>;
/// A set of request ids.
pub type IdSet = HashSet<u64, ahash::RandomState>;

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
    /// What was sent as input, by key (the text stays in the `requests` segments).
    pub input: Option<InputRef>,
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
    /// ([`crate::store::records`]), which keeps only their hashes.
    pub texts: Option<Texts>,
    /// [`text_hash`] of each output text: the token-count cache keys.
    pub hashes: TextHashes,
    /// Times of SSE events with output (non-empty content, reasoning or a tool call), in seq order.
    pub output_times_ns: Vec<i64>,
    /// For each of those events, the bytes of content and of reasoning delivered up to and
    /// including it: where per-token timing ([`crate::per_token`]) finds which event completed
    /// each token. Empty for a record read from the records cache (it keeps no texts).
    pub output_ends: Vec<(u32, u32)>,
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
    /// Server-reported `usage.prompt_tokens_details.cached_tokens` (last seen).
    pub usage_cached_tokens: Option<u32>,
    /// llama.cpp's `timings.prompt_ms` (last seen): the server's prefill time.
    pub server_prefill_ms: Option<f64>,
    /// llama.cpp's `timings.predicted_ms` (last seen): the server's decode time.
    pub server_decode_ms: Option<f64>,
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
    pub content: TextKey,
    /// Of [`Texts::reasoning`].
    pub reasoning: TextKey,
    /// Of [`Texts::tool_args`].
    pub tool_args: TextKey,
}

impl Texts {
    /// The hashes of these texts.
    pub fn hashes(&self) -> TextHashes {
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
    /// An SSE row carried an error the server reported in its response.
    server_error: bool,
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

/// Orders one request's events by `seq` and concatenates each channel.
fn finish(id: u64, a: Acc) -> RequestRecord {
    let Acc {
        mut rec,
        sse,
        content,
        reasoning,
        tool_args,
        server_error: _,
    } = a;
    rec.request_id = id;
    let mut order: Vec<usize> = (0..sse.len()).collect();
    let in_arrival_order = sse.is_sorted_by_key(|m| (m.seq, m.t_ns));
    if !in_arrival_order {
        order.sort_by_key(|&i| (sse[i].seq, sse[i].t_ns));
    }
    let (mut content_end, mut reasoning_end) = (0_u32, 0_u32);
    for &i in &order {
        let s = &sse[i];
        content_end += s.content.map_or(0, |(_, len)| len);
        reasoning_end += s.reasoning.map_or(0, |(_, len)| len);
        if Channel::non_empty(s.content) || Channel::non_empty(s.reasoning) || s.tool_args.is_some() {
            rec.output_times_ns.push(s.t_ns);
            rec.output_ends.push((content_end, reasoning_end));
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

/// A column every segment has; its absence means the file is not what it claims to be.
fn required<'b, T>(name: &str, col: Option<&'b T>) -> Result<&'b T> {
    col.ok_or_else(|| Error::Input(format!("no `{name}` column of the expected type")))
}

/// The fields of one `requests` row that a record keeps (its input only by key).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RequestFacts {
    /// `phase`.
    pub phase: Option<Phase>,
    /// `api`.
    pub api: Option<Api>,
    /// `scheduled_ns`.
    pub scheduled_ns: Option<i64>,
    /// `max_tokens`.
    pub max_tokens: Option<u32>,
    /// `planned_input_tokens`.
    pub planned_input_tokens: Option<u32>,
    /// `prefix_group`.
    pub prefix_group: Option<u32>,
    /// `session_id`.
    pub session_id: Option<String>,
    /// `turn`.
    pub turn: Option<u32>,
    /// The input by key.
    pub input: Option<InputRef>,
}

impl RequestFacts {
    fn apply(self, r: &mut RequestRecord) {
        r.phase = self.phase;
        r.api = self.api;
        r.scheduled_ns = self.scheduled_ns;
        r.max_tokens = self.max_tokens;
        r.planned_input_tokens = self.planned_input_tokens;
        r.prefix_group = self.prefix_group;
        r.session_id = self.session_id;
        r.turn = self.turn;
        r.input = self.input;
    }
}

/// Columns of `requests` that [`request_rows`] reads.
pub const REQUEST_COLUMNS: &[&str] = &[
    rq::REQUEST_ID,
    rq::PHASE,
    rq::API,
    rq::SCHEDULED_NS,
    rq::PROMPT,
    rq::MESSAGES_JSON,
    rq::MAX_TOKENS,
    rq::PLANNED_INPUT_TOKENS,
    rq::PREFIX_GROUP,
    rq::SESSION_ID,
    rq::TURN,
];

/// Columns of `requests` that only some APIs' inputs need ([`needs_extra`]): read for those
/// parts alone, so a chat or completions run decodes none of them.
pub const EXTRA_REQUEST_COLUMNS: &[&str] = &[rq::PARAMS_JSON, rq::INPUT_JSON];

/// Whether a batch of [`REQUEST_COLUMNS`] has a request whose input needs
/// [`EXTRA_REQUEST_COLUMNS`]: a system prompt outside the messages (Messages, Responses), or
/// an input in `input_json` (embeddings, rerank).
pub fn needs_extra(b: &RecordBatch) -> bool {
    let Some(api) = str_col(b, rq::API) else {
        return false;
    };
    (0..b.num_rows()).any(|i| {
        at(Some(api), i, |a, i| a.value(i))
            .and_then(Api::parse)
            .is_some_and(|a| a.system_field().is_some() || !a.generates())
    })
}

/// A `requests` row: its id, its facts and its input text.
pub type RequestRow<'a> = (u64, RequestFacts, Option<Cow<'a, str>>);

/// One batch of `requests` rows: `(request_id, row, input text)`, with the same rows'
/// [`EXTRA_REQUEST_COLUMNS`] when [`needs_extra`]. The input text is a prompt, `messages_json`
/// or `input_json` borrowed from the batches (with a Messages or Responses system prompt put
/// back in front, [`crate::input::with_system`]), for the caller to count and drop.
pub fn request_rows<'b>(b: &'b RecordBatch, extra: Option<&'b RecordBatch>) -> Result<Vec<RequestRow<'b>>> {
    let id = required(rq::REQUEST_ID, u64_col(b, rq::REQUEST_ID))?;
    let (phase, api) = (str_col(b, rq::PHASE), str_col(b, rq::API));
    let (prompt, msgs) = (str_col(b, rq::PROMPT), str_col(b, rq::MESSAGES_JSON));
    let params = extra.and_then(|e| str_col(e, rq::PARAMS_JSON));
    let fields = extra.and_then(|e| str_col(e, rq::INPUT_JSON));
    let sched = i64_col(b, rq::SCHEDULED_NS);
    let (max_tokens, planned, group) = (
        u32_col(b, rq::MAX_TOKENS),
        u32_col(b, rq::PLANNED_INPUT_TOKENS),
        u32_col(b, rq::PREFIX_GROUP),
    );
    let (session, turn) = (str_col(b, rq::SESSION_ID), u32_col(b, rq::TURN));
    let mut out = Vec::with_capacity(b.num_rows());
    for i in 0..b.num_rows() {
        let prompt = at(prompt, i, |a, i| a.value(i));
        let msgs = at(msgs, i, |a, i| a.value(i));
        let api = at(api, i, |a, i| a.value(i)).and_then(Api::parse);
        let (input, text) = match (prompt, msgs) {
            (Some(p), _) => (Some(InputKind::Prompt), Some(Cow::Borrowed(p))),
            (None, Some(m)) => {
                let system = crate::input::with_system(api, at(params, i, |a, i| a.value(i)), m);
                (Some(InputKind::Chat), Some(system.map_or(Cow::Borrowed(m), Cow::Owned)))
            }
            (None, None) => match (api, at(fields, i, |a, i| a.value(i))) {
                (Some(Api::Rerank), Some(f)) => (Some(InputKind::Pairs), Some(Cow::Borrowed(f))),
                (_, Some(f)) => (Some(InputKind::Items), Some(Cow::Borrowed(f))),
                (_, None) => (None, None),
            },
        };
        let row = RequestFacts {
            phase: at(phase, i, |a, i| a.value(i)).and_then(Phase::parse),
            api,
            scheduled_ns: at(sched, i, |a, i| a.value(i)),
            max_tokens: at(max_tokens, i, |a, i| a.value(i)),
            planned_input_tokens: at(planned, i, |a, i| a.value(i)),
            prefix_group: at(group, i, |a, i| a.value(i)),
            session_id: at(session, i, |a, i| a.value(i).to_string()),
            turn: at(turn, i, |a, i| a.value(i)),
            input: input.zip(text.as_deref()).map(|(kind, t)| InputRef {
                kind,
                hash: text_hash(t),
            }),
        };
        out.push((id.value(i), row, text));
    }
    Ok(out)
}

/// Columns of `events` that [`Reassembler::add`] reads.
pub const EVENT_COLUMNS: &[&str] = &[
    ev::REQUEST_ID,
    ev::KIND,
    ev::T_NS,
    ev::SEQ,
    ev::CONTENT,
    ev::REASONING,
    ev::TOOL_CALLS_JSON,
    ev::ROLE,
    ev::FINISH_REASON,
    ev::USAGE_PROMPT_TOKENS,
    ev::USAGE_COMPLETION_TOKENS,
    ev::HTTP_STATUS,
    ev::ERROR_KIND,
    ev::ERROR_MESSAGE,
    ev::CHOICE_INDEX,
    ev::USAGE_CACHED_TOKENS,
    ev::TIMINGS_PROMPT_MS,
    ev::TIMINGS_PREDICTED_MS,
];

/// How a version-2 capture described an error object inside a 200 stream (an `sse` row of
/// kind `protocol`): such a request is re-scored as a `server_error`, as version 3 records it.
const V2_STREAM_ERROR: &str = "server reported an error in the stream";

/// A request whose terminal event has been read: [`Ended::finish`] makes its record (on any
/// thread: ordering and concatenating its text is independent work).
pub struct Ended {
    id: u64,
    acc: Acc,
    row: Option<RequestFacts>,
}

impl Ended {
    /// Its record, with texts, and the fields of its `requests` row (if it had one).
    pub fn finish(self) -> RequestRecord {
        let mut rec = finish(self.id, self.acc);
        if let Some(row) = self.row {
            row.apply(&mut rec);
        }
        rec
    }
}

/// Event rows in, [`Ended`] requests out; holds only the requests still in flight.
pub struct Reassembler {
    rows: IdMap<RequestFacts>,
    open: IdMap<Acc>,
    ended: IdSet,
    late: u64,
}

impl Reassembler {
    /// A reassembler joining events with these `requests` rows.
    pub fn new(rows: IdMap<RequestFacts>) -> Self {
        Reassembler {
            rows,
            open: IdMap::default(),
            ended: IdSet::default(),
            late: 0,
        }
    }

    /// Requests in flight.
    pub fn in_flight(&self) -> usize {
        self.open.len()
    }

    /// Adds a batch of event rows (in write order); returns the requests it ended.
    pub fn add(&mut self, b: &RecordBatch) -> Result<Vec<Ended>> {
        let id = required(ev::REQUEST_ID, u64_col(b, ev::REQUEST_ID))?;
        let kind = required(ev::KIND, str_col(b, ev::KIND))?;
        let t = required(ev::T_NS, i64_col(b, ev::T_NS))?;
        let seq = u32_col(b, ev::SEQ);
        let content = str_col(b, ev::CONTENT);
        let reasoning = str_col(b, ev::REASONING);
        let tools = str_col(b, ev::TOOL_CALLS_JSON);
        let role = str_col(b, ev::ROLE);
        let finish_reason = str_col(b, ev::FINISH_REASON);
        let up = u32_col(b, ev::USAGE_PROMPT_TOKENS);
        let uc = u32_col(b, ev::USAGE_COMPLETION_TOKENS);
        let status = u16_col(b, ev::HTTP_STATUS);
        let ek = str_col(b, ev::ERROR_KIND);
        let em = str_col(b, ev::ERROR_MESSAGE);
        let choice = u32_col(b, ev::CHOICE_INDEX);
        let cached = u32_col(b, ev::USAGE_CACHED_TOKENS);
        let (prefill, decode) = (f64_col(b, ev::TIMINGS_PROMPT_MS), f64_col(b, ev::TIMINGS_PREDICTED_MS));
        let mut ended = Vec::new();
        for i in 0..b.num_rows() {
            let rid = id.value(i);
            // Kinds this analyze does not know (a newer capture's) are skipped.
            let Some(kind) = EventKind::parse(kind.value(i)) else {
                continue;
            };
            if self.ended.contains(&rid) {
                self.late += 1;
                continue;
            }
            let a = self.open.entry(rid).or_default();
            let t_ns = t.value(i);
            let r = &mut a.rec;
            match kind {
                EventKind::Sent => r.sent_ns = Some(r.sent_ns.map_or(t_ns, |x| x.max(t_ns))),
                EventKind::Connect => r.connect_ns = Some(r.connect_ns.map_or(t_ns, |x| x.max(t_ns))),
                EventKind::Retry => r.retries += 1,
                EventKind::Connected | EventKind::TlsDone => {}
                EventKind::Headers => {
                    r.headers_ns = Some(t_ns);
                    if let Some(s) = at(status, i, |a, i| a.value(i)) {
                        r.http_status = Some(s);
                    }
                }
                EventKind::Sse => {
                    r.sse_events += 1;
                    match at(ek, i, |a, i| a.value(i)).map(ErrorKind::parse) {
                        None => {}
                        Some(Some(ErrorKind::ServerError)) => a.server_error = true,
                        Some(k) => {
                            r.protocol_events += 1;
                            if k == Some(ErrorKind::Protocol)
                                && at(em, i, |a, i| a.value(i).starts_with(V2_STREAM_ERROR)) == Some(true)
                            {
                                a.server_error = true;
                            }
                        }
                    }
                    if let Some(v) = at(up, i, |a, i| a.value(i)) {
                        r.usage_prompt_tokens = Some(v);
                    }
                    if let Some(v) = at(uc, i, |a, i| a.value(i)) {
                        r.usage_completion_tokens = Some(v);
                    }
                    if let Some(v) = at(cached, i, |a, i| a.value(i)) {
                        r.usage_cached_tokens = Some(v);
                    }
                    if let Some(v) = at(prefill, i, |a, i| a.value(i)) {
                        r.server_prefill_ms = Some(v);
                    }
                    if let Some(v) = at(decode, i, |a, i| a.value(i)) {
                        r.server_decode_ms = Some(v);
                    }
                    // With `n > 1`, only choice 0 is this request's answer: another choice's
                    // row counts as an event but adds no text, time or choice.
                    let other_choice = at(choice, i, |a, i| a.value(i)).is_some_and(|k| k != 0);
                    fn field(col: Option<&arrow_array::StringArray>, i: usize, skip: bool) -> Option<&str> {
                        if skip {
                            None
                        } else {
                            at(col, i, |a, i| a.value(i))
                        }
                    }
                    let c = field(content, i, other_choice);
                    let rs = field(reasoning, i, other_choice);
                    let tool = field(tools, i, other_choice);
                    let has_choice = c.is_some()
                        || rs.is_some()
                        || tool.is_some()
                        || field(role, i, other_choice).is_some()
                        || field(finish_reason, i, other_choice).is_some();
                    let tool_text = tool.map(tool_call_text);
                    let meta = SseMeta {
                        seq: at(seq, i, |a, i| a.value(i)).unwrap_or(u32::MAX),
                        t_ns,
                        content: a.content.push(c),
                        reasoning: a.reasoning.push(rs),
                        tool_args: a.tool_args.push(tool_text.as_deref()),
                        has_choice,
                    };
                    a.sse.push(meta);
                }
                EventKind::Done | EventKind::Error | EventKind::Cancelled => {
                    r.terminal = Some(kind);
                    r.end_ns = Some(t_ns);
                    r.error_kind = at(ek, i, |a, i| a.value(i)).and_then(ErrorKind::parse);
                    if kind == EventKind::Done && a.server_error {
                        // A version-2 capture ended such a request `done`: it failed all the same.
                        r.error_kind = Some(ErrorKind::ServerError);
                    }
                    if let Some(s) = at(status, i, |a, i| a.value(i)) {
                        r.http_status = Some(s);
                    }
                }
            }
            if kind.is_terminal() {
                if let Some(acc) = self.open.remove(&rid) {
                    self.ended.insert(rid);
                    ended.push(Ended {
                        id: rid,
                        acc,
                        row: self.rows.remove(&rid),
                    });
                }
            }
        }
        Ok(ended)
    }

    /// The rest, at the end of the events: requests without a terminal event (the run was
    /// killed) and requests with a `requests` row but no events. Also says how many events
    /// came after their request's terminal row (none from a Recap capture; they are ignored).
    pub fn drain(mut self) -> (Vec<Ended>, u64) {
        let mut out: Vec<Ended> = Vec::with_capacity(self.open.len() + self.rows.len());
        for (id, acc) in self.open.drain() {
            let row = self.rows.remove(&id);
            out.push(Ended { id, acc, row });
        }
        for (id, row) in self.rows.drain() {
            if !self.ended.contains(&id) {
                out.push(Ended {
                    id,
                    acc: Acc::default(),
                    row: Some(row),
                });
            }
        }
        (out, self.late)
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

    /// `(request_id, kind, t_ns, seq, content)`.
    type Row<'a> = (u64, &'a str, i64, Option<u32>, Option<&'a str>);

    /// Event rows with only the columns every segment has, plus `seq` and `content` (the
    /// others absent, as in a segment older than them).
    fn events(rows: &[Row<'_>]) -> RecordBatch {
        use arrow_array::{Int64Array, StringArray, UInt32Array, UInt64Array};
        use std::sync::Arc;
        RecordBatch::try_from_iter([
            (
                "request_id",
                Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.0))) as arrow_array::ArrayRef,
            ),
            (
                "kind",
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1))),
            ),
            ("t_ns", Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.2)))),
            ("seq", Arc::new(UInt32Array::from_iter(rows.iter().map(|r| r.3)))),
            ("content", Arc::new(StringArray::from_iter(rows.iter().map(|r| r.4)))),
        ])
        .expect("batch")
    }

    #[test]
    fn requests_end_at_their_terminal_row_across_batches() {
        let mut rows = IdMap::default();
        rows.insert(
            1,
            RequestFacts {
                phase: Some(Phase::Measure),
                ..RequestFacts::default()
            },
        );
        rows.insert(9, RequestFacts::default());
        let mut re = Reassembler::new(rows);
        let first = re
            .add(&events(&[
                (1, "sent", 1, None, None),
                (2, "sent", 2, None, None),
                (1, "sse", 3, Some(0), Some("he")),
                (2, "sse", 4, Some(0), Some("x")),
            ]))
            .expect("add");
        assert!(first.is_empty());
        assert_eq!(re.in_flight(), 2);
        let second = re
            .add(&events(&[
                (1, "sse", 5, Some(1), Some("llo")),
                (1, "done", 6, None, None),
                (1, "sse", 7, Some(2), Some("late")),
            ]))
            .expect("add");
        let done: Vec<RequestRecord> = second.into_iter().map(Ended::finish).collect();
        assert_eq!(done.len(), 1);
        let r = &done[0];
        assert_eq!(r.request_id, 1);
        assert_eq!(r.texts.as_ref().map(|t| t.content.as_str()), Some("hello"));
        assert_eq!((r.phase, r.sent_ns, r.end_ns), (Some(Phase::Measure), Some(1), Some(6)));
        assert_eq!(r.output_times_ns, [3, 5]);
        assert_eq!(re.in_flight(), 1, "only request 2 is still open");
        let (rest, late) = re.drain();
        assert_eq!(late, 1, "the row after request 1's terminal row");
        let mut rest: Vec<RequestRecord> = rest.into_iter().map(Ended::finish).collect();
        rest.sort_by_key(|r| r.request_id);
        assert_eq!(rest.iter().map(|r| r.request_id).collect::<Vec<_>>(), [2, 9]);
        assert_eq!(rest[0].terminal, None, "killed before its end");
        assert_eq!(rest[1].sse_events, 0, "a request row without events");
    }

    #[test]
    fn a_batch_without_the_columns_every_segment_has_is_refused() {
        use std::sync::Arc;
        let b = RecordBatch::try_from_iter([(
            "request_id",
            Arc::new(arrow_array::UInt64Array::from(vec![1_u64])) as arrow_array::ArrayRef,
        )])
        .expect("batch");
        let e = Reassembler::new(IdMap::default()).add(&b).err().map(|e| e.to_string());
        assert_eq!(e.as_deref(), Some("no `kind` column of the expected type"));
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
