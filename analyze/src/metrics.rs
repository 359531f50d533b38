//! Per-request metrics, exactly as `docs/metrics.md` defines them.
//!
//! Each named alternative of a definition is a [`Definitions`] field, so the same recorded
//! events can be scored the way vLLM, SGLang, AIPerf or GuideLLM would.

use arrow_array::RecordBatch;
pub use recap_schemas::analysis::metrics::schema;
pub use recap_schemas::summary::{Definitions, E2eEnd, IslMode, ItlDefinition, LatencyFrom, TokenSource, TtftOn};

use recap_schemas::{ErrorKind, EventKind, Phase};

use crate::reassemble::RequestRecord;

/// Token counts of one request from the tokenizer.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TokenCounts {
    /// Input tokens.
    pub isl: Option<u32>,
    /// Items of an embeddings or rerank request.
    pub items: Option<u32>,
    /// Output tokens in content.
    pub content: u32,
    /// Output tokens in reasoning.
    pub reasoning: u32,
    /// Output tokens in tool-call arguments.
    pub tool_calls: u32,
    /// With per-token timing: when the event completing the second output token arrived.
    pub second_token_ns: Option<i64>,
    /// With per-token timing: output tokens per token-completing event.
    pub tokens_per_chunk: Option<f64>,
}

/// One request's metrics (a `metrics.parquet` row).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct RequestMetrics {
    /// `request_id`.
    pub request_id: u64,
    /// Warmup or measure (`None`: the request row was lost in a crash).
    pub phase: Option<Phase>,
    /// Terminal `done` (HTTP 2xx, body complete).
    pub ok: bool,
    /// Terminal `error_kind`, `lost` when the run was killed before the request ended.
    pub error_kind: Option<ErrorKind>,
    /// Time to first token per [`TtftOn`].
    pub ttft_ns: Option<i64>,
    /// End-to-end latency per [`E2eEnd`].
    pub e2e_ns: Option<i64>,
    /// (t_last - t_first) / (N - 1), N > 1.
    pub tpot_ns: Option<i64>,
    /// Input tokens per [`TokenSource`].
    pub isl_tokens: Option<u32>,
    /// Output tokens per [`TokenSource`].
    pub osl_tokens: Option<u32>,
    /// Output tokens by the tokenizer (reasoning + content + tool calls).
    pub tokenizer_output_tokens: u32,
    /// Of which reasoning.
    pub reasoning_tokens: u32,
    /// Input tokens by the tokenizer.
    pub tokenizer_input_tokens: Option<u32>,
    /// `usage.prompt_tokens`.
    pub server_prompt_tokens: Option<u32>,
    /// `usage.completion_tokens`.
    pub server_completion_tokens: Option<u32>,
    /// sent - scheduled.
    pub client_lag_ns: Option<i64>,
    /// `sent` time.
    pub sent_ns: Option<i64>,
    /// First output event time.
    pub first_token_ns: Option<i64>,
    /// Last output event time.
    pub last_token_ns: Option<i64>,
    /// Terminal time.
    pub end_ns: Option<i64>,
    /// SSE events with output.
    pub output_events: u32,
    /// Start of the connection this request opened for its answered attempt (`None`: it
    /// reused one).
    pub connect_ns: Option<i64>,
    /// Times the request was sent again after its reused connection failed unanswered.
    pub retries: u32,
    /// `max_tokens` sent.
    pub max_tokens: Option<u32>,
    /// Input tokens the dataset row was generated for (`analyze dataset`).
    pub planned_input_tokens: Option<u32>,
    /// The dataset row's shared-prefix group.
    pub prefix_group: Option<u32>,
    /// The multi-turn session the request is a turn of.
    pub session_id: Option<String>,
    /// 0-based turn within the session.
    pub turn: Option<u32>,
    /// Prompt tokens served from the server's prefix cache.
    pub cached_prompt_tokens: Option<u32>,
    /// `cached_prompt_tokens / server_prompt_tokens`.
    pub prefix_cache_share: Option<f64>,
    /// The server's own prefill time (llama.cpp `timings.prompt_ms`).
    pub server_prefill_ms: Option<f64>,
    /// The server's own decode time (llama.cpp `timings.predicted_ms`).
    pub server_decode_ms: Option<f64>,
    /// From the start to the event completing the second output token (per-token `--itl`).
    pub time_to_second_token_ns: Option<i64>,
    /// Output tokens per token-completing event (per-token `--itl`).
    pub tokens_per_chunk: Option<f64>,
    /// Input tokens over TTFT in seconds: the prefill rate this request saw (queueing
    /// included).
    pub prefill_tokens_per_s: Option<f64>,
    /// From the start to the first answer content, when the request reasoned first.
    pub time_to_first_answer_ns: Option<i64>,
    /// Texts embedded or documents scored (embeddings, rerank).
    pub items: Option<u32>,
}

/// Computes one request's metrics from its record and token counts.
pub fn compute(r: &RequestRecord, t: &TokenCounts, defs: &Definitions) -> RequestMetrics {
    // A `done` request the server reported an error in (a version-2 capture's record of a
    // mid-stream error, re-scored) carries that `error_kind`: not a success.
    let ok = r.terminal == Some(EventKind::Done)
        && r.error_kind.is_none()
        && r.http_status.is_none_or(|s| (200..300).contains(&s));
    let first_out = r.output_times_ns.first().copied();
    let last_out = r.output_times_ns.last().copied();
    let tokenizer_out = t.content + t.reasoning + t.tool_calls;
    // Embeddings and rerank generate nothing: their output is 0 tokens, known.
    let generates = r.api.is_none_or(|a| a.generates());
    let (isl, osl) = match defs.tokens {
        TokenSource::Tokenizer => (t.isl, Some(tokenizer_out)),
        TokenSource::Server if !generates => (r.usage_prompt_tokens, Some(0)),
        TokenSource::Server => (r.usage_prompt_tokens, r.usage_completion_tokens),
    };
    let start = match defs.latency_from {
        LatencyFrom::Sent => r.sent_ns,
        LatencyFrom::Connect => r.connect_ns.or(r.sent_ns),
        LatencyFrom::Scheduled => r.scheduled_ns,
    };
    let since_sent = |x: Option<i64>| Some(x? - start?);
    let ttft = since_sent(match defs.ttft_on {
        TtftOn::Output => first_out,
        TtftOn::Any => r.first_choice_ns,
        TtftOn::Content => r.first_content_ns,
    });
    let done = r.end_ns.filter(|_| r.terminal == Some(EventKind::Done));
    // Their latency ends with the answer.
    let e2e = since_sent(match defs.e2e_end {
        E2eEnd::LastToken if generates => last_out,
        _ => done,
    });
    let tpot = match (first_out, last_out, osl) {
        (Some(f), Some(l), Some(n)) if n > 1 => Some((l - f) / i64::from(n - 1)),
        _ => None,
    };
    let error_kind = match r.terminal {
        None => Some(ErrorKind::Lost),
        Some(_) => r.error_kind,
    };
    RequestMetrics {
        request_id: r.request_id,
        phase: r.phase,
        ok,
        error_kind,
        ttft_ns: ttft,
        e2e_ns: e2e,
        tpot_ns: tpot,
        isl_tokens: isl,
        osl_tokens: osl,
        tokenizer_output_tokens: tokenizer_out,
        reasoning_tokens: t.reasoning,
        tokenizer_input_tokens: t.isl,
        server_prompt_tokens: r.usage_prompt_tokens,
        server_completion_tokens: r.usage_completion_tokens,
        client_lag_ns: match (r.sent_ns, r.scheduled_ns) {
            (Some(s), Some(p)) => Some(s - p),
            _ => None,
        },
        sent_ns: r.sent_ns,
        first_token_ns: first_out,
        last_token_ns: last_out,
        end_ns: r.end_ns,
        output_events: r.output_times_ns.len() as u32,
        connect_ns: r.connect_ns,
        retries: r.retries,
        max_tokens: r.max_tokens,
        planned_input_tokens: r.planned_input_tokens,
        prefix_group: r.prefix_group,
        session_id: r.session_id.clone(),
        turn: r.turn,
        cached_prompt_tokens: r.usage_cached_tokens,
        prefix_cache_share: match (r.usage_cached_tokens, r.usage_prompt_tokens) {
            (Some(c), Some(p)) if p > 0 => Some(f64::from(c) / f64::from(p)),
            _ => None,
        },
        server_prefill_ms: r.server_prefill_ms,
        server_decode_ms: r.server_decode_ms,
        time_to_second_token_ns: since_sent(t.second_token_ns),
        tokens_per_chunk: t.tokens_per_chunk,
        prefill_tokens_per_s: match (isl, ttft) {
            (Some(n), Some(ns)) if ns > 0 => Some(f64::from(n) / (ns as f64 / 1e9)),
            _ => None,
        },
        time_to_first_answer_ns: since_sent(r.first_content_ns).filter(|_| t.reasoning > 0),
        items: t.items,
    }
}

/// The metrics as one Arrow batch of the contract's `metrics.parquet` schema (serde_arrow
/// maps the fields by name; the schema test below keeps the two in step).
pub fn to_batch(rows: &[RequestMetrics]) -> Result<RecordBatch, serde_arrow::Error> {
    serde_arrow::to_record_batch(schema().fields(), &rows)
}

/// Inter-chunk gaps (ns) of one request: differences between consecutive output events.
pub fn icl_gaps(r: &RequestRecord) -> impl Iterator<Item = i64> + '_ {
    r.output_times_ns.windows(2).map(|w| w[1] - w[0])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec() -> RequestRecord {
        RequestRecord {
            request_id: 7,
            phase: Some(Phase::Measure),
            scheduled_ns: Some(900),
            sent_ns: Some(1_000),
            http_status: Some(200),
            terminal: Some(EventKind::Done),
            end_ns: Some(9_000),
            first_choice_ns: Some(1_500),
            first_content_ns: Some(3_000),
            output_times_ns: vec![2_000, 3_000, 5_000, 8_000],
            usage_prompt_tokens: Some(11),
            usage_completion_tokens: Some(6),
            ..Default::default()
        }
    }

    #[test]
    fn default_definitions_by_hand() {
        let t = TokenCounts {
            isl: Some(10),
            items: None,
            content: 4,
            reasoning: 2,
            tool_calls: 0,
            ..Default::default()
        };
        let m = compute(&rec(), &t, &Definitions::default());
        assert!(m.ok);
        assert_eq!(m.ttft_ns, Some(1_000)); // 2000 - 1000
        assert_eq!(m.e2e_ns, Some(7_000)); // 8000 - 1000
        assert_eq!(m.tpot_ns, Some(1_200)); // (8000 - 2000) / (6 - 1)
        assert_eq!((m.isl_tokens, m.osl_tokens), (Some(10), Some(6)));
        assert_eq!(m.client_lag_ns, Some(100));
        // 10 input tokens in a TTFT of 1000 ns: 1e7 tokens/s.
        assert_eq!(m.prefill_tokens_per_s, Some(1e7));
        assert_eq!(icl_gaps(&rec()).collect::<Vec<_>>(), [1_000, 2_000, 3_000]);
    }

    #[test]
    fn alternatives_by_hand() {
        let t = TokenCounts {
            isl: Some(10),
            items: None,
            content: 4,
            reasoning: 2,
            tool_calls: 0,
            ..Default::default()
        };
        let d = Definitions {
            latency_from: LatencyFrom::Sent,
            ttft_on: TtftOn::Any,
            e2e_end: E2eEnd::Done,
            tokens: TokenSource::Server,
            itl: ItlDefinition::Chunk,
        };
        let m = compute(&rec(), &t, &d);
        assert_eq!(m.ttft_ns, Some(500));
        assert_eq!(m.e2e_ns, Some(8_000));
        assert_eq!((m.isl_tokens, m.osl_tokens), (Some(11), Some(6)));
        let c = compute(
            &rec(),
            &t,
            &Definitions {
                ttft_on: TtftOn::Content,
                ..Default::default()
            },
        );
        assert_eq!(c.ttft_ns, Some(2_000));
        // From connect: 400 ns of connection set-up before `sent` at 1000 count too.
        let mut opened = rec();
        opened.connect_ns = Some(600);
        let from_connect = Definitions {
            latency_from: LatencyFrom::Connect,
            ..Default::default()
        };
        let m = compute(&opened, &t, &from_connect);
        assert_eq!((m.ttft_ns, m.e2e_ns), (Some(1_400), Some(7_400)));
        // A reused connection has no connect time: the same as from `sent`.
        let m = compute(&rec(), &t, &from_connect);
        assert_eq!((m.ttft_ns, m.e2e_ns), (Some(1_000), Some(7_000)));
        // From the schedule (900): the 100 ns the client was late count too.
        let from_schedule = Definitions {
            latency_from: LatencyFrom::Scheduled,
            ..Default::default()
        };
        let m = compute(&rec(), &t, &from_schedule);
        assert_eq!((m.ttft_ns, m.e2e_ns), (Some(1_100), Some(7_100)));
        let mut lost = rec();
        lost.scheduled_ns = None;
        let m = compute(&lost, &t, &from_schedule);
        assert_eq!((m.ttft_ns, m.e2e_ns), (None, None), "no schedule time, no latency");
    }

    #[test]
    fn single_token_has_no_tpot_and_lost_requests_are_named() {
        let mut r = rec();
        r.output_times_ns = vec![2_000];
        let m = compute(
            &r,
            &TokenCounts {
                isl: None,
                items: None,
                content: 1,
                ..Default::default()
            },
            &Definitions::default(),
        );
        assert_eq!(m.tpot_ns, None);
        r.terminal = None;
        let m = compute(&r, &TokenCounts::default(), &Definitions::default());
        assert!(!m.ok);
        assert_eq!(m.error_kind, Some(ErrorKind::Lost));
    }

    #[test]
    fn a_done_request_with_a_server_error_is_an_error_and_keeps_its_partial_output() {
        let mut r = rec();
        r.error_kind = Some(ErrorKind::ServerError);
        let t = TokenCounts {
            isl: Some(10),
            items: None,
            content: 3,
            ..Default::default()
        };
        let m = compute(&r, &t, &Definitions::default());
        assert!(!m.ok);
        assert_eq!(m.error_kind, Some(ErrorKind::ServerError));
        assert_eq!(m.tokenizer_output_tokens, 3, "the partial output's size stays known");
    }

    #[test]
    fn cache_share_and_server_times_by_hand() {
        let mut r = rec();
        r.usage_cached_tokens = Some(4);
        r.server_prefill_ms = Some(12.5);
        let m = compute(&r, &TokenCounts::default(), &Definitions::default());
        assert_eq!(m.prefix_cache_share, Some(4.0 / 11.0));
        assert_eq!(
            (m.cached_prompt_tokens, m.server_prefill_ms, m.server_decode_ms),
            (Some(4), Some(12.5), None)
        );
    }

    #[test]
    fn batch_has_the_schema() {
        let b = to_batch(&[compute(&rec(), &TokenCounts::default(), &Definitions::default())]).expect("batch");
        assert_eq!(b.num_rows(), 1);
        assert_eq!(b.schema(), schema());
    }
}
