//! The simulator's OpenAI Responses and Anthropic Messages wire formats: the same text, usage
//! and faults as chat ([`super::Plan`]), in each API's own events, after the public API
//! references (OpenAI "Streaming events" of `POST /v1/responses`; Anthropic "Streaming
//! Messages", API version 2023-06-01). Each event is sent with an `event:` line naming its
//! `type`, as both APIs do.

use serde_json::{json, Value};

use super::Plan;

/// Which API's wire format a response has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    /// `chat/completions` and `completions`, in the shapes of [`super::Flavor`].
    Openai,
    /// `POST /v1/responses`.
    Responses,
    /// `POST /v1/messages`.
    Messages,
}

/// A named event (the `event:` line) and its data.
pub type Named = (Option<&'static str>, Value);

/// Which output block a stream has open, and the text sent in it.
#[derive(Debug, Default)]
pub struct Open {
    /// `Some(true)`: reasoning (a `reasoning` item, a `thinking` block); `Some(false)`: text.
    kind: Option<bool>,
    /// Index of the open item (Responses `output_index`, Messages block `index`).
    index: u64,
    text: String,
}

fn named(kind: &'static str, mut v: Value) -> Named {
    v["type"] = json!(kind);
    (Some(kind), v)
}

impl Plan {
    fn item_id(&self, reasoning: bool) -> String {
        format!("{}_{:016x}", if reasoning { "rs" } else { "msg" }, self.hash)
    }

    /// Responses' `usage` object.
    fn responses_usage(&self) -> Value {
        let (p, c) = (self.prompt_tokens, self.completion_tokens);
        let reasoning = self.chunks.iter().filter(|c| c.reasoning).count() as u64;
        json!({"input_tokens": p, "input_tokens_details": {"cached_tokens": self.cached_tokens},
            "output_tokens": c, "output_tokens_details": {"reasoning_tokens": reasoning}, "total_tokens": p + c})
    }

    /// Messages' `usage`: `input_tokens` leaves out the tokens read from the cache.
    fn messages_usage(&self, output: u64) -> Value {
        json!({"input_tokens": self.prompt_tokens - self.cached_tokens, "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": self.cached_tokens, "output_tokens": output})
    }

    /// The whole response object (Responses), `status` given.
    fn response_object(&self, status: &str, output: Vec<Value>) -> Value {
        let mut v = json!({"id": self.id, "object": "response", "created_at": 0, "status": status,
            "model": self.model, "output": output, "usage": Value::Null});
        if status != "in_progress" && self.usage {
            v["usage"] = self.responses_usage();
        }
        if status == "incomplete" {
            v["incomplete_details"] = json!({"reason": "max_output_tokens"});
        }
        v
    }

    /// The item holding `text` once done (Responses).
    fn done_item(&self, reasoning: bool, text: &str) -> Value {
        if reasoning {
            json!({"id": self.item_id(true), "type": "reasoning", "summary": [],
                "content": [{"type": "reasoning_text", "text": text}]})
        } else {
            json!({"id": self.item_id(false), "type": "message", "status": "completed", "role": "assistant",
                "content": [{"type": "output_text", "text": text, "annotations": []}]})
        }
    }

    /// The events before the first token (sent before the TTFT wait, as chat's role chunk).
    pub(super) fn wire_head(&self) -> Vec<Named> {
        match self.wire {
            Wire::Openai => self.role_event().map(|v| (None, v)).into_iter().collect(),
            Wire::Responses => vec![
                named(
                    "response.created",
                    json!({"response": self.response_object("in_progress", vec![])}),
                ),
                named(
                    "response.in_progress",
                    json!({"response": self.response_object("in_progress", vec![])}),
                ),
            ],
            Wire::Messages => vec![
                named(
                    "message_start",
                    json!({"message": {"id": self.id, "type": "message", "role": "assistant", "content": [],
                        "model": self.model, "stop_reason": null, "stop_sequence": null,
                        "usage": self.messages_usage(1)}}),
                ),
                named("ping", json!({})),
            ],
        }
    }

    /// The events that close the open block.
    fn close(&self, open: &Open) -> Vec<Named> {
        let Some(reasoning) = open.kind else {
            return Vec::new();
        };
        let (i, text) = (open.index, open.text.as_str());
        match (self.wire, reasoning) {
            (Wire::Responses, true) => vec![
                named(
                    "response.reasoning_text.done",
                    json!({"item_id": self.item_id(true), "output_index": i, "content_index": 0, "text": text}),
                ),
                named(
                    "response.output_item.done",
                    json!({"output_index": i, "item": self.done_item(true, text)}),
                ),
            ],
            (Wire::Responses, false) => vec![
                named(
                    "response.output_text.done",
                    json!({"item_id": self.item_id(false), "output_index": i, "content_index": 0, "text": text,
                        "logprobs": []}),
                ),
                named(
                    "response.content_part.done",
                    json!({"item_id": self.item_id(false), "output_index": i, "content_index": 0,
                        "part": {"type": "output_text", "text": text, "annotations": []}}),
                ),
                named(
                    "response.output_item.done",
                    json!({"output_index": i, "item": self.done_item(false, text)}),
                ),
            ],
            (Wire::Messages, true) => vec![
                named(
                    "content_block_delta",
                    json!({"index": i, "delta": {"type": "signature_delta", "signature": format!("sig{:08x}", self.hash as u32)}}),
                ),
                named("content_block_stop", json!({"index": i})),
            ],
            (Wire::Messages, false) => vec![named("content_block_stop", json!({"index": i}))],
            (Wire::Openai, _) => Vec::new(),
        }
    }

    /// The events carrying one chunk of `text` (opening its block first when needed).
    pub(super) fn wire_token(
        &self,
        open: &mut Open,
        reasoning: bool,
        text: &str,
        last: bool,
        through: u64,
    ) -> Vec<Named> {
        if self.wire == Wire::Openai {
            return vec![(None, self.token_event(reasoning, text, last, through))];
        }
        let mut out = Vec::new();
        if open.kind != Some(reasoning) {
            out.extend(self.close(open));
            if open.kind.is_some() {
                open.index += 1;
            }
            open.kind = Some(reasoning);
            open.text.clear();
            let i = open.index;
            match (self.wire, reasoning) {
                (Wire::Responses, true) => out.push(named(
                    "response.output_item.added",
                    json!({"output_index": i, "item": {"id": self.item_id(true), "type": "reasoning",
                        "summary": [], "content": []}}),
                )),
                (Wire::Responses, false) => {
                    out.push(named(
                        "response.output_item.added",
                        json!({"output_index": i, "item": {"id": self.item_id(false), "type": "message",
                            "status": "in_progress", "role": "assistant", "content": []}}),
                    ));
                    out.push(named(
                        "response.content_part.added",
                        json!({"item_id": self.item_id(false), "output_index": i, "content_index": 0,
                            "part": {"type": "output_text", "text": "", "annotations": []}}),
                    ));
                }
                (Wire::Messages, true) => out.push(named(
                    "content_block_start",
                    json!({"index": i, "content_block": {"type": "thinking", "thinking": "", "signature": ""}}),
                )),
                (Wire::Messages, false) => out.push(named(
                    "content_block_start",
                    json!({"index": i, "content_block": {"type": "text", "text": ""}}),
                )),
                (Wire::Openai, _) => {}
            }
        }
        open.text.push_str(text);
        let i = open.index;
        out.push(match (self.wire, reasoning) {
            (Wire::Responses, true) => named(
                "response.reasoning_text.delta",
                json!({"item_id": self.item_id(true), "output_index": i, "content_index": 0, "delta": text}),
            ),
            (Wire::Responses, _) => named(
                "response.output_text.delta",
                json!({"item_id": self.item_id(false), "output_index": i, "content_index": 0, "delta": text,
                    "logprobs": []}),
            ),
            (_, true) => named(
                "content_block_delta",
                json!({"index": i, "delta": {"type": "thinking_delta", "thinking": text}}),
            ),
            (_, false) => named(
                "content_block_delta",
                json!({"index": i, "delta": {"type": "text_delta", "text": text}}),
            ),
        });
        out
    }

    /// The events after the last token: the open block closed, then the end with usage.
    pub(super) fn wire_tail(&self, open: &Open) -> Vec<Named> {
        let mut out = self.close(open);
        match self.wire {
            Wire::Openai => out.extend(self.tail_events().into_iter().map(|v| (None, v))),
            Wire::Responses => {
                let output = self.whole_output();
                let (kind, status) = if self.budget_hit {
                    ("response.incomplete", "incomplete")
                } else {
                    ("response.completed", "completed")
                };
                out.push(named(kind, json!({"response": self.response_object(status, output)})));
            }
            Wire::Messages => {
                let mut end = json!({"delta": {"stop_reason": self.stop_reason(), "stop_sequence": null}});
                if self.usage {
                    end["usage"] = json!({"output_tokens": self.completion_tokens});
                }
                out.push(named("message_delta", end));
                out.push(named("message_stop", json!({})));
            }
        }
        out
    }

    fn stop_reason(&self) -> &'static str {
        if self.budget_hit {
            "max_tokens"
        } else {
            "end_turn"
        }
    }

    /// Reasoning and content, whole, in order.
    fn whole_texts(&self, huge_event_bytes: usize) -> (String, String) {
        let mut content = "x".repeat(huge_event_bytes);
        let mut reasoning = String::new();
        for c in &self.chunks {
            if c.reasoning {
                reasoning.push_str(&c.text);
            } else {
                content.push_str(&c.text);
            }
        }
        (reasoning, content)
    }

    /// The output items of a finished response (Responses).
    fn whole_output(&self) -> Vec<Value> {
        let (reasoning, content) = self.whole_texts(self.huge_event_bytes);
        let mut output = Vec::new();
        if !reasoning.is_empty() {
            output.push(self.done_item(true, &reasoning));
        }
        output.push(self.done_item(false, &content));
        output
    }

    /// The whole non-streamed body of a Responses or Messages request.
    pub(super) fn wire_whole(&self) -> Value {
        match self.wire {
            Wire::Openai => self.whole_body(self.huge_event_bytes),
            Wire::Responses => {
                let status = if self.budget_hit { "incomplete" } else { "completed" };
                self.response_object(status, self.whole_output())
            }
            Wire::Messages => {
                let (reasoning, content) = self.whole_texts(self.huge_event_bytes);
                let mut blocks = Vec::new();
                if !reasoning.is_empty() {
                    blocks.push(json!({"type": "thinking", "thinking": reasoning,
                        "signature": format!("sig{:08x}", self.hash as u32)}));
                }
                blocks.push(json!({"type": "text", "text": content}));
                let mut v = json!({"id": self.id, "type": "message", "role": "assistant", "model": self.model,
                    "content": blocks, "stop_reason": self.stop_reason(), "stop_sequence": null});
                if self.usage {
                    v["usage"] = self.messages_usage(self.completion_tokens);
                }
                v
            }
        }
    }

    /// The error a [`super::Fault::StreamError`] sends in this API's words (`None`: chat's).
    pub(super) fn wire_error(&self, message: &str) -> Option<Named> {
        match self.wire {
            Wire::Openai => None,
            Wire::Responses => Some(named(
                "error",
                json!({"code": "server_error", "message": message, "param": null}),
            )),
            Wire::Messages => Some(named(
                "error",
                json!({"error": {"type": "overloaded_error", "message": message}}),
            )),
        }
    }
}
