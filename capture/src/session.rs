//! Multi-turn sessions: a dataset whose rows carry `session_id` and `turn` is sent as
//! conversations. A worker owns one session at a time and sends turn k+1 only after turn k
//! has been answered and its think time has passed, with the conversation so far (each
//! earlier turn's messages and the answer the server gave to it in this run, or the dataset's
//! `reference_output`) before the turn's own messages: the prefix-cache workload of chat and
//! agentic use.
//!
//! The dispatcher hands out a session's first turn like any request (closed loop: when a
//! worker is free; open loop: at the session arrival offsets) and the worker keeps a
//! [`Cursor`] for the turns that follow, so sessions run through the one dispatcher/worker
//! loop. A turn that fails ends its session: without an answer there is no next history.
//! So does a history that outgrows `--max-history-bytes`: memory per session is bounded,
//! and the run counts the sessions it cut short rather than sending a different workload.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use recap_schemas::{Api, SessionHistory};
use serde_json::{json, Value};

use crate::dataset::{Dataset, Prompt, Row};
use crate::request::{prepare, BodyOptions, PreparedRequest};

/// The pause between a turn's answer and the next turn of its session.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ThinkTime {
    /// The same pause before every later turn (zero: none).
    Fixed(Duration),
    /// Each later turn's own `think_time_ms`.
    FromDataset,
}

/// One conversation: its id and its dataset rows in turn order.
#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    /// The rows' `session_id`.
    pub id: Arc<str>,
    /// Dataset row indices, in turn order.
    pub rows: Vec<usize>,
}

/// The sessions of a dataset and how their turns are sent.
#[derive(Debug, Clone)]
pub struct Sessions {
    /// In order of first appearance in the dataset (they cycle like rows do).
    pub list: Vec<Session>,
    /// Which answers the history carries.
    pub history: SessionHistory,
    /// Pause before later turns.
    pub think: ThinkTime,
    /// A session whose history (messages' text, or the completions text) grows past this many
    /// bytes ends there (`--max-history-bytes`).
    pub max_history_bytes: usize,
    /// Sessions ended because their history reached `max_history_bytes`.
    pub capped: Arc<AtomicU64>,
}

/// Default of `--max-history-bytes`: 8 MiB of text, far past any model's context window.
pub const DEFAULT_MAX_HISTORY_BYTES: usize = 8 << 20;

/// Whether any row of `dataset` names a session: such a dataset is sent as sessions.
pub fn has_sessions(dataset: &Dataset) -> bool {
    dataset.rows.iter().any(|r| r.plan.session_id.is_some())
}

impl Sessions {
    /// Groups `dataset`'s rows into sessions and checks that every turn can be sent: every
    /// row names its session, turns are unique within it, and the options' inputs exist
    /// (`reference_output` before a later turn, `think_time_ms` on later turns, a session id
    /// that can be a header value). Errors name the dataset and the row (1-based).
    pub fn from_dataset(
        dataset: &Dataset,
        history: SessionHistory,
        think: ThinkTime,
        header: bool,
    ) -> Result<Sessions, String> {
        let mut index: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
        // Each session's id and its (turn, row) pairs, in order of first appearance.
        type Turns = Vec<(Option<u32>, usize)>;
        let mut list: Vec<(Arc<str>, Turns)> = Vec::new();
        let at = |i: usize| format!("dataset {} row {}", dataset.path, i + 1);
        for (i, row) in dataset.rows.iter().enumerate() {
            let Some(id) = row.plan.session_id.as_deref() else {
                return Err(format!(
                    "{}: has no `session_id` while other rows do; a session dataset needs one on every row",
                    at(i)
                ));
            };
            if header && http::HeaderValue::from_str(id).is_err() {
                return Err(format!(
                    "{}: `session_id` {id:?} cannot be sent in --session-header (not a valid header value)",
                    at(i)
                ));
            }
            let k = *index.entry(id).or_insert_with(|| {
                list.push((Arc::from(id), Vec::new()));
                list.len() - 1
            });
            list[k].1.push((row.plan.turn, i));
        }
        let mut sessions = Vec::with_capacity(list.len());
        for (id, mut turns) in list {
            // Numbered turns in their order; rows without a number keep file order after them.
            turns.sort_by_key(|(t, _)| t.unwrap_or(u32::MAX));
            for w in turns.windows(2) {
                if let ((Some(a), _), (Some(b), i)) = (w[0], w[1]) {
                    if a == b {
                        return Err(format!("{}: session {id:?} has turn {a} twice", at(i)));
                    }
                }
            }
            let rows: Vec<usize> = turns.into_iter().map(|(_, i)| i).collect();
            for (k, &i) in rows.iter().enumerate() {
                let plan = &dataset.rows[i].plan;
                let last = k + 1 == rows.len();
                if history == SessionHistory::Dataset && !last && plan.reference_output.is_none() {
                    return Err(format!(
                        "{}: --session-history dataset needs `reference_output` on every turn but a session's last",
                        at(i)
                    ));
                }
                if think == ThinkTime::FromDataset && k > 0 && plan.think_time_ms.is_none() {
                    return Err(format!(
                        "{}: --think-time from-dataset needs `think_time_ms` on every turn after a session's first",
                        at(i)
                    ));
                }
            }
            sessions.push(Session { id, rows });
        }
        Ok(Sessions {
            list: sessions,
            history,
            think,
            max_history_bytes: DEFAULT_MAX_HISTORY_BYTES,
            capped: Arc::default(),
        })
    }

    /// Turns of the `n`-th session started (sessions cycle).
    pub fn turns_of(&self, n: u64) -> usize {
        self.list[(n % self.list.len() as u64) as usize].rows.len()
    }

    /// A cursor at the first turn of the `n`-th session started (sessions cycle), which sends
    /// at most `max_turns` of its turns (what `--requests` leaves for it).
    pub fn start(&self, n: u64, api: Api, max_turns: usize) -> Cursor {
        let session = (n % self.list.len() as u64) as usize;
        Cursor {
            session,
            turns: max_turns.min(self.list[session].rows.len()),
            next: 0,
            history: match crate::api::of(api).input_kind() {
                crate::api::InputKind::Messages => History::Chat(Vec::new()),
                // Embeddings and rerank have no sessions (`capture` refuses them).
                crate::api::InputKind::Text | crate::api::InputKind::Fields => History::Text(String::new()),
            },
            ready_at_ns: 0,
        }
    }

    /// The request of the cursor's next turn: the history so far, then the turn's own prompt.
    /// Returns the dataset row and the request; the turn's prompt joins the history.
    pub fn next_request(&self, c: &mut Cursor, dataset: &Dataset, opts: &BodyOptions) -> (u64, PreparedRequest) {
        let s = &self.list[c.session];
        let i = s.rows[c.next];
        let row = &dataset.rows[i];
        let prompt = match &mut c.history {
            History::Chat(h) => {
                h.extend(row.prompt.messages());
                Prompt::Messages(h.clone())
            }
            History::Text(h) => {
                h.push_str(&row.prompt.text());
                Prompt::Text(h.clone())
            }
        };
        let mut plan = row.plan.clone();
        if c.next > 0 || !crate::api::of(opts.api).is_own_shape(&row.prompt) {
            // The row's planned length describes its own messages in its own shape, not them
            // after a history or converted.
            plan.isl_tokens = None;
        }
        let mut req = prepare(&Row { prompt, plan }, opts);
        req.session_id = Some(s.id.clone());
        req.turn = Some(c.next as u32);
        (i as u64, req)
    }

    /// After a turn ended at `now_ns` with `answer` (`None`: it failed): whether the session
    /// goes on. If it does, the answer joins the history and the cursor's next turn is due
    /// after its think time.
    pub fn answered(&self, c: &mut Cursor, answer: Option<String>, dataset: &Dataset, now_ns: i64) -> bool {
        let Some(answer) = answer else {
            return false;
        };
        let s = &self.list[c.session];
        let answered_row = &dataset.rows[s.rows[c.next]];
        let text = match self.history {
            SessionHistory::Recorded => answer,
            SessionHistory::Dataset => answered_row.plan.reference_output.clone().unwrap_or_default(),
        };
        match &mut c.history {
            History::Chat(h) => h.push(json!({"role": "assistant", "content": text})),
            History::Text(h) => h.push_str(&text),
        }
        c.next += 1;
        if c.next >= c.turns {
            return false;
        }
        if c.history.bytes() > self.max_history_bytes {
            if self.capped.fetch_add(1, Relaxed) == 0 {
                tracing::warn!(
                    "a session's history passed --max-history-bytes {}: it ends here (counted in the manifest)",
                    self.max_history_bytes
                );
            }
            return false;
        }
        let think = match self.think {
            ThinkTime::Fixed(d) => d,
            ThinkTime::FromDataset => {
                Duration::from_millis(dataset.rows[s.rows[c.next]].plan.think_time_ms.unwrap_or(0))
            }
        };
        c.ready_at_ns = now_ns.saturating_add(i64::try_from(think.as_nanos()).unwrap_or(i64::MAX));
        true
    }
}

/// The conversation so far, in the API's shape.
#[derive(Debug, Clone)]
enum History {
    /// Chat messages: every earlier turn's messages and an `assistant` message with its answer.
    Chat(Vec<Value>),
    /// Completions: every earlier prompt followed directly by its answer (the answer continues
    /// the prompt it completed; a next prompt carries its own separator).
    Text(String),
}

impl History {
    /// The text it holds, in bytes (message contents, not their JSON framing).
    fn bytes(&self) -> usize {
        match self {
            History::Chat(h) => h
                .iter()
                .map(|m| match m.get("content") {
                    Some(Value::String(s)) => s.len(),
                    Some(other) => other.to_string().len(),
                    None => 0,
                })
                .sum(),
            History::Text(h) => h.len(),
        }
    }
}

/// A worker's place in the session it is running.
#[derive(Debug, Clone)]
pub struct Cursor {
    session: usize,
    /// Turns this run sends of the session.
    turns: usize,
    next: usize,
    history: History,
    /// When the next turn is due (ns since run start): the previous answer plus think time.
    pub ready_at_ns: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dataset(lines: &str) -> Dataset {
        Dataset::parse(lines.as_bytes(), "s.jsonl", false).expect("valid")
    }

    fn opts(api: Api) -> BodyOptions {
        BodyOptions {
            api,
            model: "m".into(),
            stream: false,
            max_tokens: None,
            extra: serde_json::Map::new(),
        }
    }

    const TWO: &str = r#"{"session_id":"a","turn":1,"prompt":"a1","think_time_ms":5,"reference_output":"R1"}
{"session_id":"b","turn":0,"messages":[{"role":"system","content":"sys"},{"role":"user","content":"b0"}],"reference_output":"Rb"}
{"session_id":"a","turn":0,"prompt":"a0","reference_output":"R0","isl_tokens":3}
{"session_id":"a","turn":2,"prompt":"a2","think_time_ms":7}
"#;

    #[test]
    fn groups_by_session_in_turn_order() {
        let d = dataset(TWO);
        let s = Sessions::from_dataset(&d, SessionHistory::Recorded, ThinkTime::Fixed(Duration::ZERO), true)
            .expect("valid");
        assert_eq!(
            s.list,
            [
                Session {
                    id: "a".into(),
                    rows: vec![2, 0, 3]
                },
                Session {
                    id: "b".into(),
                    rows: vec![1]
                }
            ]
        );
    }

    #[test]
    fn later_turns_carry_the_recorded_answers() {
        let d = dataset(TWO);
        let s = Sessions::from_dataset(&d, SessionHistory::Recorded, ThinkTime::FromDataset, false).expect("valid");
        let o = opts(Api::Chat);
        let mut c = s.start(0, Api::Chat, 3);
        let (row, r0) = s.next_request(&mut c, &d, &o);
        assert_eq!((row, r0.turn, r0.session_id.as_deref()), (2, Some(0), Some("a")));
        assert_eq!(
            r0.planned_input_tokens, None,
            "a text row's plan does not describe chat"
        );
        assert!(s.answered(&mut c, Some("first answer".into()), &d, 1_000));
        assert_eq!(c.ready_at_ns, 1_000 + 5_000_000, "turn 1's think_time_ms");
        let (_, r1) = s.next_request(&mut c, &d, &o);
        let body: Value = serde_json::from_slice(&r1.body).expect("json");
        assert_eq!(
            body["messages"],
            json!([
                {"role": "user", "content": "a0"},
                {"role": "assistant", "content": "first answer"},
                {"role": "user", "content": "a1"},
            ])
        );
        assert!(s.answered(&mut c, Some("second".into()), &d, 2_000));
        let (_, r2) = s.next_request(&mut c, &d, &o);
        assert_eq!(r2.turn, Some(2));
        assert!(r2.messages_json.as_deref().is_some_and(|m| m.contains("second")));
        assert!(
            !s.answered(&mut c, Some("third".into()), &d, 3_000),
            "the last turn ends it"
        );
        let mut c = s.start(0, Api::Chat, 3);
        let _ = s.next_request(&mut c, &d, &o);
        assert!(!s.answered(&mut c, None, &d, 1), "a failed turn ends its session");
        assert_eq!(s.start(3, Api::Chat, 9).session, 1, "sessions cycle");
        let mut c = s.start(0, Api::Chat, 1);
        let _ = s.next_request(&mut c, &d, &o);
        assert!(
            !s.answered(&mut c, Some("a".into()), &d, 1),
            "cut to the turns --requests leaves"
        );
        // History bound: "a0" (2 bytes) + a 20-byte answer passes a 16-byte cap.
        let mut capped = s.clone();
        capped.max_history_bytes = 16;
        let mut c = capped.start(0, Api::Chat, 3);
        let _ = capped.next_request(&mut c, &d, &o);
        assert!(
            !capped.answered(&mut c, Some("x".repeat(20)), &d, 1),
            "over the cap: ends"
        );
        assert_eq!(capped.capped.load(Relaxed), 1);
        let mut c = capped.start(0, Api::Chat, 3);
        let _ = capped.next_request(&mut c, &d, &o);
        assert!(
            capped.answered(&mut c, Some("short".into()), &d, 1),
            "under the cap: goes on"
        );
    }

    #[test]
    fn dataset_history_and_completions_text() {
        let d = dataset(TWO);
        let s = Sessions::from_dataset(
            &d,
            SessionHistory::Dataset,
            ThinkTime::Fixed(Duration::from_millis(2)),
            false,
        )
        .expect("valid");
        let o = opts(Api::Completions);
        let mut c = s.start(0, Api::Completions, 3);
        let _ = s.next_request(&mut c, &d, &o);
        assert!(s.answered(&mut c, Some("ignored".into()), &d, 0));
        assert_eq!(c.ready_at_ns, 2_000_000);
        let (_, r1) = s.next_request(&mut c, &d, &o);
        assert_eq!(r1.prompt.as_deref(), Some("a0R0a1"));
    }

    #[test]
    fn bad_session_datasets_name_the_row() {
        let err = |text: &str, h: SessionHistory, t: ThinkTime| {
            Sessions::from_dataset(&dataset(text), h, t, true).expect_err("invalid")
        };
        let fixed = ThinkTime::Fixed(Duration::ZERO);
        let e = err(
            "{\"session_id\":\"a\",\"prompt\":\"x\"}\n{\"prompt\":\"y\"}\n",
            SessionHistory::Recorded,
            fixed,
        );
        assert!(e.contains("row 2") && e.contains("session_id"), "{e}");
        let e = err(
            "{\"session_id\":\"a\",\"turn\":0,\"prompt\":\"x\"}\n{\"session_id\":\"a\",\"turn\":0,\"prompt\":\"y\"}\n",
            SessionHistory::Recorded,
            fixed,
        );
        assert!(e.contains("turn 0 twice"), "{e}");
        let e = err(
            "{\"session_id\":\"a\",\"turn\":0,\"prompt\":\"x\"}\n{\"session_id\":\"a\",\"turn\":1,\"prompt\":\"y\"}\n",
            SessionHistory::Dataset,
            fixed,
        );
        assert!(e.contains("row 1") && e.contains("reference_output"), "{e}");
        let e = err(
            "{\"session_id\":\"a\",\"turn\":0,\"prompt\":\"x\"}\n{\"session_id\":\"a\",\"turn\":1,\"prompt\":\"y\"}\n",
            SessionHistory::Recorded,
            ThinkTime::FromDataset,
        );
        assert!(e.contains("row 2") && e.contains("think_time_ms"), "{e}");
        let e = err(
            "{\"session_id\":\"a\\nb\",\"prompt\":\"x\"}\n",
            SessionHistory::Recorded,
            fixed,
        );
        assert!(e.contains("header"), "{e}");
    }
}
