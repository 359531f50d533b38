//! Prompts to send: JSONL rows of the dataset contract ([`recap_schemas::dataset`]: `prompt` or
//! `messages`, and an optional plan such as `max_tokens` or `isl_tokens`) or ShareGPT JSON.
//!
//! The whole dataset is read and validated before the run starts, so a bad line fails fast
//! with its line number instead of mid-run. Rows are cycled when more requests are sent than
//! the dataset has.

use std::path::{Path, PathBuf};

use recap_schemas::dataset::{DatasetRow, RowPlan};
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The built-in dataset used when `--dataset` is not given (the quickstart's prompts).
pub const EMBEDDED: &str = include_str!("../../fixtures/datasets/default.jsonl");

/// One usable dataset row.
#[derive(Debug, Clone, PartialEq)]
pub enum Prompt {
    /// A plain prompt string.
    Text(String),
    /// A chat `messages` array (objects with at least `role` and `content`).
    Messages(Vec<Value>),
    /// Texts embedded in one request (`input`).
    Items(Vec<String>),
    /// A rerank request: a query and the documents scored against it.
    Rerank {
        /// `query`.
        query: String,
        /// `documents`.
        documents: Vec<String>,
    },
}

/// A dataset row: the prompt and its plan (per-row `max_tokens`, which overrides
/// `--max-tokens`, and what `analyze dataset` planned).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Row {
    /// What to ask.
    pub prompt: Prompt,
    /// The row's plan.
    pub plan: RowPlan,
}

impl Prompt {
    /// As chat messages: any other prompt is one user message with its text.
    pub fn messages(&self) -> Vec<Value> {
        match self {
            Prompt::Messages(m) => m.clone(),
            other => vec![serde_json::json!({"role": "user", "content": other.text()})],
        }
    }

    /// As a completions prompt: message contents (or texts, or a query and its documents)
    /// joined with `\n`.
    pub fn text(&self) -> String {
        self.texts().join("\n")
    }

    /// As texts to embed: each message's content, each item, or a query and its documents.
    pub fn texts(&self) -> Vec<String> {
        match self {
            Prompt::Text(t) => vec![t.clone()],
            Prompt::Messages(m) => m
                .iter()
                .filter_map(|x| x.get("content").and_then(Value::as_str))
                .map(str::to_string)
                .collect(),
            Prompt::Items(items) => items.clone(),
            Prompt::Rerank { query, documents } => std::iter::once(query).chain(documents).cloned().collect(),
        }
    }
}

impl Default for Prompt {
    fn default() -> Self {
        Prompt::Text(String::new())
    }
}

/// A loaded dataset and what identifies it in the manifest.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// Usable rows, in file order.
    pub rows: Vec<Row>,
    /// `jsonl` or `sharegpt`.
    pub format: &'static str,
    /// SHA-256 of the file's bytes, hex.
    pub sha256: String,
    /// Path as given, or `<embedded>`.
    pub path: String,
    /// Lines/items skipped by `--skip-invalid` (or ShareGPT items without a user turn).
    pub skipped: u64,
}

/// A dataset that cannot be used, naming the file and where.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    /// The file could not be read.
    #[error("reading dataset {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A line (JSONL) or item (ShareGPT, 1-based index) is invalid.
    #[error("dataset {path}, {unit} {line}: {message} (use --skip-invalid to skip such rows)")]
    Invalid {
        /// The file.
        path: String,
        /// `line` or `item`.
        unit: &'static str,
        /// 1-based line or item number.
        line: u64,
        /// What is wrong.
        message: String,
    },
    /// The file is not a JSON array and not JSONL.
    #[error("dataset {path}: {message}")]
    Format {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// No usable rows.
    #[error("dataset {path} has no usable rows")]
    Empty {
        /// The file.
        path: String,
    },
}

impl Dataset {
    /// Reads and validates the dataset at `path`; `skip_invalid` skips bad rows (counted in
    /// [`Dataset::skipped`]) instead of failing.
    pub fn load(path: &Path, skip_invalid: bool) -> Result<Self, DatasetError> {
        let bytes = std::fs::read(path).map_err(|source| DatasetError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&bytes, &path.display().to_string(), skip_invalid)
    }

    /// The built-in dataset.
    pub fn embedded() -> Self {
        Self::parse(EMBEDDED.as_bytes(), "<embedded>", false).expect("invariant: the embedded dataset is valid")
    }

    /// Parses dataset bytes; `name` is used in errors and the manifest.
    pub fn parse(bytes: &[u8], name: &str, skip_invalid: bool) -> Result<Self, DatasetError> {
        let sha256 = hex(&Sha256::digest(bytes));
        let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
        let (rows, format, skipped) = if first == Some(&b'[') {
            let (rows, skipped) = parse_sharegpt(bytes, name, skip_invalid)?;
            (rows, "sharegpt", skipped)
        } else {
            let (rows, skipped) = parse_jsonl(bytes, name, skip_invalid)?;
            (rows, "jsonl", skipped)
        };
        if rows.is_empty() {
            return Err(DatasetError::Empty { path: name.to_string() });
        }
        Ok(Dataset {
            rows,
            format,
            sha256,
            path: name.to_string(),
            skipped,
        })
    }

    /// The dataset with every `n` consecutive rows sent as one embeddings batch (`--batch-size`):
    /// row k is the texts of rows `k n .. k n + n` (the last batch may be shorter), with the plan
    /// of its first row and, when every row planned one, the sum of their `isl_tokens`.
    pub fn batched(&self, n: usize) -> Dataset {
        let rows = self
            .rows
            .chunks(n.max(1))
            .map(|chunk| {
                let mut plan = chunk[0].plan.clone();
                // A sum of texts' planned lengths; a chat or rerank row's length was counted
                // another way, so a batch holding one has no plan.
                plan.isl_tokens = chunk
                    .iter()
                    .map(|r| {
                        matches!(r.prompt, Prompt::Text(_) | Prompt::Items(_))
                            .then_some(r.plan.isl_tokens)
                            .flatten()
                    })
                    .sum();
                Row {
                    prompt: Prompt::Items(chunk.iter().flat_map(|r| r.prompt.texts()).collect()),
                    plan,
                }
            })
            .collect();
        Dataset { rows, ..self.clone() }
    }

    /// The row for the `i`-th request (cycling) and its 0-based index in the dataset.
    pub fn row_for(&self, i: u64) -> (u64, &Row) {
        let n = self.rows.len() as u64;
        let idx = i % n;
        (idx, &self.rows[idx as usize])
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn parse_jsonl(bytes: &[u8], name: &str, skip_invalid: bool) -> Result<(Vec<Row>, u64), DatasetError> {
    let mut rows = Vec::new();
    let mut skipped = 0;
    for (i, line) in bytes.split(|&b| b == b'\n').enumerate() {
        let line_no = i as u64 + 1;
        let trimmed = line.trim_ascii();
        if trimmed.is_empty() {
            continue;
        }
        let parsed = std::str::from_utf8(trimmed)
            .map_err(|e| format!("not valid UTF-8 ({e})"))
            .and_then(|s| serde_json::from_str::<Value>(s).map_err(|e| format!("invalid JSON: {e}")))
            .and_then(|v| row_from_object(&v));
        match parsed {
            Ok(row) => rows.push(row),
            Err(_) if skip_invalid => skipped += 1,
            Err(message) => {
                return Err(DatasetError::Invalid {
                    path: name.to_string(),
                    unit: "line",
                    line: line_no,
                    message,
                })
            }
        }
    }
    Ok((rows, skipped))
}

fn row_from_object(v: &Value) -> Result<Row, String> {
    if !v.is_object() {
        return Err("expected a JSON object".into());
    }
    let row = DatasetRow::deserialize(v).map_err(|e| {
        // serde says what was expected, not where: find the field that fails on its own.
        let field = recap_schemas::dataset::FIELDS.iter().find(|f| {
            v.get(**f)
                .is_some_and(|x| DatasetRow::deserialize(&serde_json::json!({ **f: x })).is_err())
        });
        match field {
            Some(f) => format!("field `{f}`: {e}"),
            None => e.to_string(),
        }
    })?;
    let given = [
        row.prompt.is_some(),
        row.messages.is_some(),
        row.input.is_some(),
        row.query.is_some(),
    ];
    if (row.input.is_some() || row.query.is_some()) && given.iter().filter(|g| **g).count() > 1 {
        return Err("give one of `prompt`, `messages`, `input` and `query` (with `documents`)".into());
    }
    if row.query.is_some() != row.documents.is_some() {
        return Err("`query` and `documents` go together (a rerank row)".into());
    }
    if let Some(items) = row.input {
        if items.is_empty() {
            return Err("field `input` is empty".into());
        }
        return Ok(Row {
            prompt: Prompt::Items(items),
            plan: row.plan,
        });
    }
    if let (Some(query), Some(documents)) = (row.query, row.documents) {
        if documents.is_empty() {
            return Err("field `documents` is empty".into());
        }
        return Ok(Row {
            prompt: Prompt::Rerank { query, documents },
            plan: row.plan,
        });
    }
    let prompt = match (row.prompt, row.messages) {
        (Some(s), None) => Prompt::Text(s),
        (None, Some(msgs)) => {
            if msgs.is_empty() {
                return Err("field `messages` is empty".into());
            }
            for (j, m) in msgs.iter().enumerate() {
                let ok = m.get("role").is_some_and(Value::is_string) && m.get("content").is_some();
                if !ok {
                    return Err(format!("field `messages[{j}]` needs `role` (string) and `content`"));
                }
            }
            Prompt::Messages(msgs)
        }
        (Some(_), Some(_)) => return Err("has both `prompt` and `messages`; give one".into()),
        (None, None) => return Err("missing field `prompt`, `messages`, `input` or `query`".into()),
    };
    Ok(Row { prompt, plan: row.plan })
}

fn parse_sharegpt(bytes: &[u8], name: &str, skip_invalid: bool) -> Result<(Vec<Row>, u64), DatasetError> {
    let items: Vec<Value> = serde_json::from_slice(bytes).map_err(|e| DatasetError::Format {
        path: name.to_string(),
        message: format!("starts with `[` but is not a JSON array of ShareGPT items: {e}"),
    })?;
    let mut rows = Vec::new();
    let mut skipped = 0;
    for (i, item) in items.iter().enumerate() {
        let turns = item
            .get("conversations")
            .or_else(|| item.get("conversation"))
            .and_then(Value::as_array);
        let Some(turns) = turns else {
            if skip_invalid {
                skipped += 1;
                continue;
            }
            return Err(DatasetError::Invalid {
                path: name.to_string(),
                unit: "item",
                line: i as u64 + 1,
                message: "missing `conversations` array".into(),
            });
        };
        // The first human turn is the prompt; conversations without one carry no request.
        let first_human = turns
            .iter()
            .find(|t| matches!(t.get("from").and_then(Value::as_str), Some("human" | "user")));
        match first_human.and_then(|t| t.get("value")).and_then(Value::as_str) {
            Some(text) => rows.push(Row {
                prompt: Prompt::Messages(vec![serde_json::json!({"role": "user", "content": text})]),
                plan: RowPlan::default(),
            }),
            None => skipped += 1,
        }
    }
    Ok((rows, skipped))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonl_prompt_messages_and_max_tokens() {
        let d = Dataset::parse(
            b"{\"prompt\":\"hi\",\"max_tokens\":7}\n\n{\"messages\":[{\"role\":\"user\",\"content\":\"yo\"}],\"id\":3}\n",
            "t",
            false,
        )
        .expect("valid");
        assert_eq!(d.format, "jsonl");
        assert_eq!(d.rows.len(), 2);
        assert_eq!(
            d.rows[0],
            Row {
                prompt: Prompt::Text("hi".into()),
                plan: RowPlan {
                    max_tokens: Some(7),
                    ..RowPlan::default()
                }
            }
        );
        assert!(matches!(d.rows[1].prompt, Prompt::Messages(ref m) if m.len() == 1));
        assert_eq!(d.sha256.len(), 64);
    }

    #[test]
    fn bad_line_names_file_and_line() {
        let err = Dataset::parse(b"{\"prompt\":\"a\"}\n{\"prompt\": 3}\n", "data.jsonl", false).expect_err("invalid");
        let msg = err.to_string();
        assert!(
            msg.contains("data.jsonl") && msg.contains("line 2") && msg.contains("prompt"),
            "{msg}"
        );
        let err = Dataset::parse(b"{\"prompt\":\"a\"}\n{oops\n", "d", false).expect_err("invalid");
        assert!(err.to_string().contains("line 2"), "{err}");
        let err = Dataset::parse(b"{\"text\":\"a\"}\n", "d", false).expect_err("invalid");
        assert!(err.to_string().contains("missing field"), "{err}");
        let err = Dataset::parse(b"{\"prompt\":\"a\",\"isl_tokens\":\"8\"}\n", "d", false).expect_err("invalid");
        assert!(
            err.to_string().contains("line 1") && err.to_string().contains("u32"),
            "{err}"
        );
    }

    #[test]
    fn plan_fields_are_read() {
        let d = Dataset::parse(
            br#"{"prompt":"a","max_tokens":4,"min_tokens":4,"ignore_eos":true,"isl_tokens":9,"prefix_group":2,"timestamp_ms":150}"#,
            "d",
            false,
        )
        .expect("valid");
        let plan = &d.rows[0].plan;
        assert_eq!(
            (plan.max_tokens, plan.min_tokens, plan.ignore_eos),
            (Some(4), Some(4), Some(true))
        );
        assert_eq!(
            (plan.isl_tokens, plan.prefix_group, plan.timestamp_ms),
            (Some(9), Some(2), Some(150.0))
        );
    }

    #[test]
    fn timestamps_may_be_fractional_but_not_negative_or_text() {
        let d = Dataset::parse(
            b"{\"prompt\":\"a\",\"timestamp_ms\":0.0}\n{\"prompt\":\"b\",\"timestamp_ms\":12.5}\n",
            "d",
            false,
        )
        .expect("fractional timestamps are valid");
        let t: Vec<Option<f64>> = d.rows.iter().map(|r| r.plan.timestamp_ms).collect();
        assert_eq!(t, [Some(0.0), Some(12.5)]);
        for bad in ["-1", "-0.25", "\"12\"", "true"] {
            let text =
                format!("{{\"prompt\":\"a\",\"timestamp_ms\":1}}\n{{\"prompt\":\"b\",\"timestamp_ms\":{bad}}}\n");
            let err = Dataset::parse(text.as_bytes(), "trace.jsonl", false)
                .expect_err(bad)
                .to_string();
            assert!(
                err.contains("trace.jsonl") && err.contains("line 2") && err.contains("timestamp_ms"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn skip_invalid_counts_and_goes_on() {
        let d = Dataset::parse(b"{\"prompt\":\"a\"}\nnot json\n{\"prompt\":\"b\"}\n", "d", true).expect("valid");
        assert_eq!((d.rows.len(), d.skipped), (2, 1));
    }

    #[test]
    fn empty_dataset_is_an_error() {
        assert!(matches!(
            Dataset::parse(b"\n\n", "d", false),
            Err(DatasetError::Empty { .. })
        ));
    }

    #[test]
    fn sharegpt_takes_first_human_turn() {
        let d = Dataset::parse(
            br#"[{"id":"a","conversations":[{"from":"human","value":"Q1"},{"from":"gpt","value":"A1"}]},
                {"id":"b","conversations":[{"from":"gpt","value":"only"}]}]"#,
            "sg.json",
            false,
        )
        .expect("valid");
        assert_eq!(d.format, "sharegpt");
        assert_eq!((d.rows.len(), d.skipped), (1, 1));
        match &d.rows[0].prompt {
            Prompt::Messages(m) => assert_eq!(m[0]["content"], "Q1"),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn embeddings_and_rerank_rows_and_batches() {
        let d = Dataset::parse(
            br#"{"input":["a","b"],"isl_tokens":4}
{"query":"q","documents":["d1","d2"]}
{"prompt":"p","isl_tokens":2}
"#,
            "e.jsonl",
            false,
        )
        .expect("valid");
        assert_eq!(d.rows[0].prompt, Prompt::Items(vec!["a".into(), "b".into()]));
        assert_eq!(d.rows[1].prompt.texts(), ["q", "d1", "d2"]);
        let b = d.batched(2);
        assert_eq!(b.rows.len(), 2);
        assert_eq!(
            b.rows[0].prompt,
            Prompt::Items(vec!["a".into(), "b".into(), "q".into(), "d1".into(), "d2".into()])
        );
        assert_eq!(
            b.rows[0].plan.isl_tokens, None,
            "a row without a plan leaves the sum unknown"
        );
        assert_eq!(b.rows[1].plan.isl_tokens, Some(2));
        for (bad, why) in [
            (r#"{"input":[]}"#, "`input` is empty"),
            (r#"{"query":"q"}"#, "go together"),
            (r#"{"prompt":"p","input":["a"]}"#, "give one of"),
            (r#"{"query":"q","documents":[]}"#, "`documents` is empty"),
        ] {
            let e = Dataset::parse(bad.as_bytes(), "bad.jsonl", false)
                .expect_err(bad)
                .to_string();
            assert!(e.contains(why) && e.contains("bad.jsonl"), "{bad}: {e}");
        }
    }

    #[test]
    fn rows_cycle() {
        let d = Dataset::parse(b"{\"prompt\":\"a\"}\n{\"prompt\":\"b\"}\n", "d", false).expect("valid");
        assert_eq!(d.row_for(0).0, 0);
        assert_eq!(d.row_for(3).0, 1);
    }

    #[test]
    fn embedded_dataset_loads() {
        assert!(Dataset::embedded().rows.len() >= 8);
    }
}
