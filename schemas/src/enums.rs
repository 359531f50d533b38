//! Closed sets of string values stored in the tables and the manifest.
//!
//! They are stored as plain UTF-8 strings (Parquet dictionary-encodes them), which every reader
//! understands; these enums are the one place their spellings live.

use serde::{Deserialize, Serialize};

/// Defines a closed set of stored spellings: the enum, `ALL`, `as_str`, `parse`, `Display`
/// and serde using exactly those spellings.
macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $text)] $variant),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The spelling stored in files.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }

            /// Parses the stored spelling; `None` for anything else.
            pub fn parse(text: &str) -> Option<Self> {
                match text {
                    $($text => Some($name::$variant),)+
                    _ => None,
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = String;

            fn from_str(text: &str) -> Result<Self, String> {
                $name::parse(text).ok_or_else(|| {
                    let all: Vec<&str> = $name::ALL.iter().map(|v| v.as_str()).collect();
                    format!("{text:?} is not one of {}", all.join(", "))
                })
            }
        }
    };
}
pub(crate) use string_enum;

string_enum! {
    /// Which part of the run a request belongs to; summaries use `measure` only.
    Phase {
        /// Sent before measurement starts (`--warmup-requests`, or scheduled within `--warmup`).
        Warmup => "warmup",
        /// Counted in summaries.
        Measure => "measure",
        /// Scheduled while the load was still ramping up (`--ramp-up`).
        Ramp => "ramp",
        /// Scheduled in the last `--cooldown` of the run's `--duration`.
        Cooldown => "cooldown",
    }
}

string_enum! {
    /// The API a request targets.
    Api {
        /// `POST /v1/chat/completions` with `messages`.
        Chat => "chat",
        /// `POST /v1/completions` with `prompt`.
        Completions => "completions",
        /// OpenAI Responses: `POST /v1/responses` with `input` (a message list).
        Responses => "responses",
        /// Anthropic Messages: `POST /v1/messages` with `messages` (system prompt in `system`).
        Messages => "messages",
        /// Embeddings: `POST /v1/embeddings` with `input`, a batch of texts; not streamed.
        Embeddings => "embeddings",
        /// Rerank (the Jina/Cohere shape vLLM and SGLang serve): `POST /v1/rerank` with
        /// `query` and `documents`; not streamed.
        Rerank => "rerank",
    }
}

impl Api {
    /// The body field that carries the system prompt outside the message list (Messages'
    /// `system`, Responses' `instructions`): recorded in `requests.params_json`, and rendered
    /// as a leading system message when the input is counted, as the server's template sees it.
    pub fn system_field(self) -> Option<&'static str> {
        match self {
            Api::Messages => Some("system"),
            Api::Responses => Some("instructions"),
            Api::Chat | Api::Completions | Api::Embeddings | Api::Rerank => None,
        }
    }

    /// Whether the API generates tokens (streamed, with an output budget): not embeddings or
    /// rerank, which answer once per batch of items and are measured by latency and items/s.
    pub fn generates(self) -> bool {
        !matches!(self, Api::Embeddings | Api::Rerank)
    }
}

string_enum! {
    /// What an `events` row records.
    EventKind {
        /// A new connection was started for this request (TCP connect begins, after name
        /// resolution). Requests that reuse a kept-alive connection have none.
        Connect => "connect",
        /// The TCP connection is established (the end of `connect`).
        Connected => "connected",
        /// The TLS handshake finished (https only; it started at `connected`).
        TlsDone => "tls_done",
        /// An attempt failed on a reused connection before any response byte arrived (the
        /// server had closed it); the request is sent again once on a fresh connection.
        /// `error_kind`/`error_message` say what the failed attempt saw. Not terminal.
        Retry => "retry",
        /// The request's bytes were handed to the connection (once per attempt: metrics use
        /// the last one, the attempt that was answered).
        Sent => "sent",
        /// Response status line and headers arrived.
        Headers => "headers",
        /// One server-sent event (or, without streaming, the whole body).
        Sse => "sse",
        /// Terminal: the response ended normally.
        Done => "done",
        /// Terminal: the request failed (see `error_kind`).
        Error => "error",
        /// Terminal: the run stopped before the request finished.
        Cancelled => "cancelled",
    }
}

impl EventKind {
    /// Whether this kind ends a request; each request has exactly one terminal row.
    pub fn is_terminal(self) -> bool {
        matches!(self, EventKind::Done | EventKind::Error | EventKind::Cancelled)
    }
}

string_enum! {
    /// Why a request (or one of its events) went wrong.
    ErrorKind {
        /// TCP connect or TLS handshake failed.
        Connect => "connect",
        /// `--timeout` elapsed before the response ended.
        Timeout => "timeout",
        /// The server answered with a non-2xx status.
        HttpStatus => "http_status",
        /// The response broke the protocol: malformed SSE event, bad JSON, non-UTF-8 data.
        Protocol => "protocol",
        /// The connection closed or reset before the response ended.
        StreamReset => "stream_reset",
        /// The request was cut short because the run was stopped.
        Cancelled => "cancelled",
        /// The server reported an error inside a response it had started as a success (an
        /// `error` object, an `"object": "error"` object or an SSE `event: error` in a 200
        /// stream, as vLLM and SGLang send on KV-cache exhaustion or an abort). The output
        /// received before it stays recorded; the request is not a success.
        ServerError => "server_error",
        /// A stream ended cleanly (no reset) with neither a `finish_reason` nor `[DONE]`: the
        /// answer may be cut short, so it is not counted as a success.
        Incomplete => "incomplete",
        /// Analysis only (never recorded by capture): the request has no terminal event
        /// because the capture process was killed first.
        Lost => "lost",
    }
}

string_enum! {
    /// Which raw payloads capture keeps in the `events.raw` column (`--raw`).
    RawMode {
        /// None.
        None => "none",
        /// Only on rows with an `error_kind` (malformed or error events, HTTP error bodies).
        Errors => "errors",
        /// Every SSE event's data, every non-streamed body and every error body (default).
        All => "all",
    }
}

string_enum! {
    /// Which answers a multi-turn session's later turns carry in their history
    /// (`manifest.load.sessions.history`).
    SessionHistory {
        /// The answers the server gave earlier in this run (default).
        Recorded => "recorded",
        /// The dataset rows' `reference_output`.
        Dataset => "dataset",
    }
}

string_enum! {
    /// The load shape of a run (`manifest.load.mode`).
    LoadMode {
        /// Closed loop: a fixed number of requests in flight.
        Concurrency => "concurrency",
        /// Open loop: requests sent at a rate, on an arrival process.
        Rate => "rate",
        /// Everything due at t = 0.
        Burst => "burst",
        /// Open loop at the dataset rows' own `timestamp_ms` offsets (a trace replayed).
        Timestamps => "timestamps",
    }
}

string_enum! {
    /// The arrival process of an open-loop run (`manifest.load.arrival`).
    Arrival {
        /// Evenly spaced.
        Constant => "constant",
        /// Exponential gaps.
        Poisson => "poisson",
        /// Gamma gaps (shape in `manifest.load.burstiness`).
        Gamma => "gamma",
    }
}

string_enum! {
    /// Lifecycle of a run, as `manifest.json` reports it.
    RunStatus {
        /// Capture is running, or was killed without a chance to update the manifest.
        Running => "running",
        /// Every scheduled request finished.
        Complete => "complete",
        /// Stopped by SIGINT/SIGTERM; what was recorded is consistent.
        Interrupted => "interrupted",
        /// Capture hit an unrecoverable error (e.g. the disk filled); see the manifest message.
        Failed => "failed",
        /// A stop condition ended scheduling early (`--max-error-rate`); what was recorded is
        /// consistent, and the manifest message says which condition.
        Stopped => "stopped",
    }
}

string_enum! {
    /// Where one run of a plan stands, as `plan.json` lists it: not started, running, or its
    /// run's final [`RunStatus`].
    PlanRunStatus {
        /// Not started (yet, or ever: the plan ended first).
        Pending => "pending",
        /// Running, or killed without a chance to update `plan.json`.
        Running => "running",
        /// See [`RunStatus::Complete`].
        Complete => "complete",
        /// See [`RunStatus::Interrupted`].
        Interrupted => "interrupted",
        /// See [`RunStatus::Failed`].
        Failed => "failed",
        /// See [`RunStatus::Stopped`].
        Stopped => "stopped",
    }
}

impl From<RunStatus> for PlanRunStatus {
    fn from(s: RunStatus) -> Self {
        match s {
            RunStatus::Running => PlanRunStatus::Running,
            RunStatus::Complete => PlanRunStatus::Complete,
            RunStatus::Interrupted => PlanRunStatus::Interrupted,
            RunStatus::Failed => PlanRunStatus::Failed,
            RunStatus::Stopped => PlanRunStatus::Stopped,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_round_trip() {
        for k in EventKind::ALL {
            assert_eq!(EventKind::parse(k.as_str()), Some(*k));
        }
        for k in ErrorKind::ALL {
            assert_eq!(ErrorKind::parse(k.as_str()), Some(*k));
        }
        assert_eq!(Phase::parse("nope"), None);
    }

    #[test]
    fn serde_uses_the_stored_spelling() {
        assert_eq!(
            serde_json::to_string(&ErrorKind::HttpStatus).ok().as_deref(),
            Some("\"http_status\"")
        );
        assert_eq!(
            serde_json::to_string(&RunStatus::Interrupted).ok().as_deref(),
            Some("\"interrupted\"")
        );
    }

    #[test]
    fn exactly_three_terminal_kinds() {
        let n = EventKind::ALL.iter().filter(|k| k.is_terminal()).count();
        assert_eq!(n, 3);
        assert!(!EventKind::Retry.is_terminal());
    }
}
