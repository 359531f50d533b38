//! End-to-end: the OpenAI Responses and Anthropic Messages APIs, the real `capture` against
//! `recap-sim`'s modes for them, streamed and whole. Expected texts and token counts come from
//! `sim`'s deterministic text, raw payloads from the simulator's own log (`--log-raw`), timing
//! floors from its script, input lengths from the `tokenizers` crate on a hand-rendered
//! template; never from capture or analyze.

use std::io::Read;
use std::path::{Path, PathBuf};

use recap_schemas::{Api, EventKind, RunStatus};
use recap_tests::harness::{run_bin, sorted_lines, SimProcess};
use recap_tests::runs::{key_of, metric_column, read_run, report, Run};
use recap_tests::sim::{self, sent_payloads, Payload};
use serde_json::{json, Value};

const APIS: [Api; 2] = [Api::Responses, Api::Messages];
const REQUESTS: usize = 16;
const MAX_TOKENS: u64 = 6;
const REASONING: u64 = 2;
const SYSTEM: &str = "You answer in exactly six words.";

fn qwen3() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/tokenizers/qwen3/tokenizer.json.gz")
}

/// Chat rows; every other one starts with a system message.
fn write_dataset(dir: &Path) -> PathBuf {
    let path = dir.join("chat.jsonl");
    let mut text = String::new();
    for i in 0..REQUESTS {
        let user = json!({"role": "user", "content": format!("question {i} about lighthouses and tides")});
        let messages = if i % 2 == 0 {
            json!([{"role": "system", "content": SYSTEM}, user])
        } else {
            json!([user])
        };
        text.push_str(&json!({ "messages": messages }).to_string());
        text.push('\n');
    }
    std::fs::write(&path, text).expect("write dataset");
    path
}

/// Captures the dataset through `api` from a simulator with a scripted TTFT and gap.
fn capture(api: Api, stream: bool, extra: &[&str]) -> (tempfile::TempDir, Run, PathBuf) {
    let dir = tempfile::tempdir().expect("tmp");
    let raw_log = dir.path().join("sent.jsonl");
    let sim = SimProcess::start(&[
        "--log-raw",
        raw_log.to_str().expect("utf8"),
        "--reasoning",
        "2",
        "--ttft",
        "15ms",
        "--itl",
        "2ms",
    ])
    .expect("start sim");
    let data = write_dataset(dir.path());
    let out = dir.path().join("run");
    let url = sim.url();
    let (n, m) = (REQUESTS.to_string(), MAX_TOKENS.to_string());
    let mut args = vec![
        "--url",
        url.as_str(),
        "--api",
        api.as_str(),
        "--dataset",
        data.to_str().expect("utf8"),
        "--out",
        out.to_str().expect("utf8"),
        "--requests",
        &n,
        "--concurrency",
        "4",
        "--max-tokens",
        &m,
        "--quiet",
    ];
    if !stream {
        args.push("--no-stream");
    }
    args.extend_from_slice(extra);
    let res = run_bin("capture", &args);
    assert!(
        res.status.success(),
        "capture: {}",
        String::from_utf8_lossy(&res.stderr)
    );
    drop(sim);
    let run = read_run(&out).expect("read run");
    (dir, run, raw_log)
}

/// The server's id for a response, from what the simulator sent first.
fn server_id(api: Api, first: &Payload) -> Option<String> {
    let v: Value = serde_json::from_str(&first.2).ok()?;
    let at = match (api, first.1.as_deref()) {
        (Api::Responses, Some(_)) => "/response/id",
        (Api::Messages, Some(_)) => "/message/id",
        _ => "/id",
    };
    v.pointer(at).and_then(Value::as_str).map(str::to_string)
}

#[test]
fn responses_and_messages_are_recorded_whole_with_every_payload() {
    for api in APIS {
        for stream in [true, false] {
            let ctx = format!("{api}, {}", if stream { "streamed" } else { "whole" });
            let (_dir, run, log) = capture(api, stream, &[]);
            assert_eq!(run.manifest.status, RunStatus::Complete, "{ctx}");
            assert_eq!(run.manifest.endpoint.api, api, "{ctx}");
            let counts = run.manifest.counts.as_ref().expect("counts");
            assert_eq!(
                (counts.done, counts.cancelled),
                (REQUESTS as u64, 0),
                "{ctx}: {counts:?}"
            );
            assert!(counts.errors.values().all(|n| *n == 0), "{ctx}: {counts:?}");
            let sent = sent_payloads(&log);
            for (id, req) in &run.requests {
                assert_eq!(req.api, api, "{ctx}");
                let key = key_of(&run, *id);
                assert_eq!(
                    run.content(*id),
                    sim::expected_content(&key, MAX_TOKENS),
                    "{ctx}: request {id}"
                );
                assert_eq!(
                    run.reasoning(*id),
                    sim::expected_reasoning(&key, REASONING),
                    "{ctx}: request {id}"
                );
                let events = &run.events[id];
                assert!(
                    events.iter().all(|e| e.error_kind.is_none()),
                    "{ctx}: request {id}: {events:?}"
                );
                assert_eq!(events.last().map(|e| e.kind), Some(EventKind::Done), "{ctx}");
                // Usage as the simulator counts it: the prompt's words, every generated token.
                let sse = run.sse(*id);
                let last_usage =
                    |f: fn(&recap_tests::runs::EventRow) -> Option<u32>| sse.iter().rev().find_map(|e| f(e));
                assert_eq!(
                    (
                        last_usage(|e| e.usage_prompt_tokens),
                        last_usage(|e| e.usage_completion_tokens)
                    ),
                    (
                        Some(sim::prompt_tokens(&key) as u32),
                        Some((MAX_TOKENS + REASONING) as u32)
                    ),
                    "{ctx}: request {id}"
                );
                let finish: Vec<_> = sse.iter().filter_map(|e| e.finish_reason.clone()).collect();
                let budget = if api == Api::Responses {
                    "max_output_tokens"
                } else {
                    "max_tokens"
                };
                assert_eq!(finish, [budget], "{ctx}: request {id}");
                // Every payload byte for byte, with its `event:` name.
                let expected = &sent[req.client_request_id.as_ref().expect("request id")];
                let got: Vec<Payload> = sse
                    .iter()
                    .map(|e| (e.seq.map(u64::from), e.sse_event.clone(), e.raw.clone().expect("raw")))
                    .collect();
                assert_eq!(&got, expected, "{ctx}: request {id}");
                if stream {
                    assert!(got.iter().all(|p| p.1.is_some()), "{ctx}: every event is named");
                    assert!(sse.iter().all(|e| !e.done_marker), "{ctx}: no [DONE] in these APIs");
                }
                assert_eq!(
                    req.server_request_id,
                    server_id(api, &expected[0]),
                    "{ctx}: request {id}"
                );
                // Messages has no system role: the row's system message is the `system` field,
                // recorded with the parameters, and the body rebuilds from the two.
                let params: Value = serde_json::from_str(&req.params_json).expect("params");
                let messages: Value =
                    serde_json::from_str(req.messages_json.as_deref().expect("messages")).expect("json");
                let has_system = messages[0]["role"] == "system";
                match api {
                    Api::Messages => {
                        assert!(!has_system, "{ctx}: {messages}");
                        assert_eq!(params["system"] == SYSTEM, id % 2 == 0, "{ctx}: {params}");
                        assert_eq!(params["max_tokens"], MAX_TOKENS, "{ctx}");
                    }
                    _ => {
                        assert_eq!(has_system, id % 2 == 0, "{ctx}: {messages}");
                        assert_eq!(params["max_output_tokens"], MAX_TOKENS, "{ctx}");
                    }
                }
            }
        }
    }
}

/// analyze's numbers for both APIs: output tokens and TTFT as for chat, and the input counted
/// through the chat template with the system prompt where the model sees it (Messages'
/// `system` field, Responses' `instructions`), checked against the `tokenizers` crate on the
/// Qwen3 template rendered by hand.
#[test]
fn analyze_counts_the_system_prompt_each_api_sends_outside_the_messages() {
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(qwen3()).expect("open tokenizer"))
        .read_to_end(&mut raw)
        .expect("gunzip");
    let tok = tokenizers::Tokenizer::from_bytes(&raw).expect("tokenizer");
    let count = |text: &str| tok.encode_fast(text, false).expect("encode").len() as f64;
    // Qwen3's template: every system message, then the user's, then the generation prompt.
    let render = |systems: &[&str], user: &str| {
        let mut t: String = systems
            .iter()
            .map(|s| format!("<|im_start|>system\n{s}<|im_end|>\n"))
            .collect();
        t.push_str(&format!("<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"));
        t
    };
    let instructions = "Cite the tide tables.";
    let extra = json!({ "instructions": instructions }).to_string();
    for (api, extra) in [(Api::Messages, None), (Api::Responses, Some(extra.as_str()))] {
        let flags: Vec<&str> = extra.map(|e| vec!["--body-extra", e]).unwrap_or_default();
        let (dir, run, _) = capture(api, true, &flags);
        let run_dir = dir.path().join("run");
        let s = report(&run_dir, &["--tokenizer", qwen3().to_str().expect("utf8")]);
        let tok_id = s["tokenizer_id"].as_str().expect("tokenizer id");
        let isl = metric_column(&run_dir, tok_id, "tokenizer_input_tokens");
        let osl = metric_column(&run_dir, tok_id, "tokenizer_output_tokens");
        let ttft = metric_column(&run_dir, tok_id, "ttft_ns");
        for id in run.requests.keys() {
            let user = format!("question {id} about lighthouses and tides");
            let row_system = (id % 2 == 0).then_some(SYSTEM);
            // Messages: the row's system message, sent as `system`. Responses: `instructions`
            // first, then the row's own system message, still in `input`.
            let systems: Vec<&str> = match api {
                Api::Messages => row_system.into_iter().collect(),
                _ => std::iter::once(instructions).chain(row_system).collect(),
            };
            let expected = render(&systems, &user);
            assert_eq!(isl[id], Some(count(&expected)), "{api}: request {id} ({expected:?})");
            let key = key_of(&run, *id);
            let want =
                count(&sim::expected_reasoning(&key, REASONING)) + count(&sim::expected_content(&key, MAX_TOKENS));
            assert_eq!(osl[id], Some(want), "{api}: request {id}");
            // The simulator waits 15 ms before the first token: no client sees it sooner.
            let t = ttft[id].expect("ttft");
            assert!(t >= 15e6, "{api}: request {id}: TTFT {t} ns under the scripted 15 ms");
        }
    }
}

/// `--api messages` sends the key as `x-api-key` (never `Authorization: Bearer`) with
/// `anthropic-version`, and a server that echoes it leaves no trace of it on disk.
#[test]
fn messages_sends_its_own_auth_headers_and_keeps_the_key_secret() {
    let sim = SimProcess::start(&["--echo-auth"]).expect("start sim");
    let dir = tempfile::tempdir().expect("tmp");
    let data = write_dataset(dir.path());
    let secret = "sk-ant-recap-test-51c0";
    let out = dir.path().join("run");
    let url = sim.url();
    let res = std::process::Command::new(recap_tests::harness::workspace_bin("capture"))
        .env("RECAP_TEST_ANTHROPIC_KEY", secret)
        .args([
            "--url",
            url.as_str(),
            "--api",
            "messages",
            "--api-key-env",
            "RECAP_TEST_ANTHROPIC_KEY",
            "--dataset",
            data.to_str().expect("utf8"),
            "--out",
            out.to_str().expect("utf8"),
            "--requests",
            "4",
            "--max-tokens",
            "4",
            "-vv",
        ])
        .output()
        .expect("run capture");
    // The simulator refuses a Messages request without `anthropic-version`: success says it
    // was sent.
    assert!(res.status.success(), "{}", String::from_utf8_lossy(&res.stderr));
    let mut haystack = res.stdout.clone();
    haystack.extend_from_slice(&res.stderr);
    let mut stack = vec![out.clone()];
    while let Some(p) = stack.pop() {
        if p.is_dir() {
            stack.extend(std::fs::read_dir(&p).expect("dir").map(|e| e.expect("entry").path()));
        } else {
            haystack.extend(std::fs::read(&p).expect("read"));
        }
    }
    assert!(
        !haystack.windows(secret.len()).any(|w| w == secret.as_bytes()),
        "the key leaked"
    );
    let run = read_run(&out).expect("read run");
    assert_eq!(run.manifest.counts.as_ref().map(|c| c.done), Some(4));
    for id in run.requests.keys() {
        // The echo is exactly the redacted key: it came in `x-api-key`, with no `Bearer`.
        let first = run.sse(*id)[0].raw.clone().expect("raw");
        let v: Value = serde_json::from_str(&first).expect("json");
        assert_eq!(v["echo"], "<redacted>", "request {id}: {first}");
    }
    let manifest = std::fs::read_to_string(out.join("manifest.json")).expect("manifest");
    assert!(
        manifest.contains("anthropic-version") && manifest.contains("2023-06-01"),
        "{manifest}"
    );
}

/// A cross-encoder's tokenizer in miniature: lower-cased whitespace words (each one token, an
/// unknown word `[UNK]`), `[CLS] a [SEP]` around a text and `[CLS] a [SEP] b [SEP]` around a
/// pair, as BERT-style rerankers and embedders have. A real `tokenizer.json` that the sim
/// (through the `tokenizers` crate) and analyze both load.
fn write_pair_tokenizer(dir: &Path) -> PathBuf {
    let special = |id: u32, content: &str| {
        json!({"id": id, "content": content, "single_word": false, "lstrip": false, "rstrip": false,
            "normalized": false, "special": true})
    };
    let tok = |t: &str, type_id: u32| json!({"SpecialToken": {"id": t, "type_id": type_id}});
    let seq = |s: &str, type_id: u32| json!({"Sequence": {"id": s, "type_id": type_id}});
    let file = json!({
        "version": "1.0", "truncation": null, "padding": null,
        "added_tokens": [special(0, "[UNK]"), special(1, "[CLS]"), special(2, "[SEP]")],
        "normalizer": {"type": "Lowercase"},
        "pre_tokenizer": {"type": "Whitespace"},
        "post_processor": {"type": "TemplateProcessing",
            "single": [tok("[CLS]", 0), seq("A", 0), tok("[SEP]", 0)],
            "pair": [tok("[CLS]", 0), seq("A", 0), tok("[SEP]", 0), seq("B", 1), tok("[SEP]", 1)],
            "special_tokens": {
                "[CLS]": {"id": "[CLS]", "ids": [1], "tokens": ["[CLS]"]},
                "[SEP]": {"id": "[SEP]", "ids": [2], "tokens": ["[SEP]"]}}},
        "decoder": null,
        "model": {"type": "WordLevel", "vocab": {"[UNK]": 0, "[CLS]": 1, "[SEP]": 2, "tide": 3, "harbor": 4},
            "unk_token": "[UNK]"}
    });
    let folder = dir.join("pairwise");
    std::fs::create_dir_all(&folder).expect("mkdir");
    let path = folder.join("tokenizer.json");
    std::fs::write(&path, file.to_string()).expect("write tokenizer");
    path
}

/// Captures `dataset` through `api` (embeddings or rerank) from a simulator counting usage
/// with `tokenizer`, answering after 6 ms plus 1 ms per item.
fn capture_pooling(api: Api, dir: &Path, dataset: &Path, tokenizer: &Path, extra: &[&str]) -> (Run, PathBuf) {
    let raw_log = dir.join(format!("{api}-sent.jsonl"));
    let sim = SimProcess::start(&[
        "--log-raw",
        raw_log.to_str().expect("utf8"),
        "--tokenizer",
        tokenizer.to_str().expect("utf8"),
        "--ttft",
        "6ms",
        "--itl",
        "1ms",
    ])
    .expect("start sim");
    let out = dir.join(format!("{api}-run"));
    let url = sim.url();
    let mut args = vec![
        "--url",
        url.as_str(),
        "--api",
        api.as_str(),
        "--dataset",
        dataset.to_str().expect("utf8"),
        "--out",
        out.to_str().expect("utf8"),
        "--requests",
        "4",
        "--concurrency",
        "2",
        "--quiet",
    ];
    args.extend_from_slice(extra);
    let res = run_bin("capture", &args);
    assert!(
        res.status.success(),
        "capture: {}",
        String::from_utf8_lossy(&res.stderr)
    );
    drop(sim);
    (read_run(&out).expect("read run"), raw_log)
}

/// Embeddings (rows batched three to a request) and rerank (a query and three documents per
/// row): every body as the simulator sent it, the inputs as the dataset gave them, the server's
/// usage and analyze's input tokens equal to the `tokenizers` crate's own count (each text with
/// its specials; each pair as a cross-encoder encodes it), items per request, latency that
/// ends with the answer and is never shorter than the simulator's scripted wait, and the
/// summary's items/s.
#[test]
fn embeddings_and_rerank_are_measured_by_latency_items_and_input_tokens() {
    let dir = tempfile::tempdir().expect("tmp");
    let tokenizer = write_pair_tokenizer(dir.path());
    let tok = sim::load_tokenizer(&tokenizer).expect("tokenizer");
    let single = |t: &str| tok.encode(t, true).expect("encode").len() as f64;
    let pair = |q: &str, d: &str| tok.encode((q, d), true).expect("encode").len() as f64;

    // Embeddings: 12 one-text rows, sent three per request.
    let texts: Vec<String> = (0..12)
        .map(|i| format!("Tide table {i} for the harbor, page {}", i * 7))
        .collect();
    let embed_rows = dir.path().join("embed.jsonl");
    let lines: Vec<String> = texts.iter().map(|t| json!({ "prompt": t }).to_string()).collect();
    std::fs::write(&embed_rows, lines.join("\n")).expect("write");
    // Rerank: four queries with three documents each.
    let queries: Vec<(String, Vec<String>)> = (0..4)
        .map(|i| {
            (
                format!("when is high tide {i}?"),
                (0..3)
                    .map(|j| format!("Harbor notice {i}.{j}: the tide turns at {j} o'clock"))
                    .collect(),
            )
        })
        .collect();
    let rerank_rows = dir.path().join("rerank.jsonl");
    let lines: Vec<String> = queries
        .iter()
        .map(|(q, d)| json!({"query": q, "documents": d}).to_string())
        .collect();
    std::fs::write(&rerank_rows, lines.join("\n")).expect("write");

    for api in [Api::Embeddings, Api::Rerank] {
        let (dataset, extra): (&Path, &[&str]) = match api {
            Api::Embeddings => (&embed_rows, &["--batch-size", "3"]),
            _ => (&rerank_rows, &[]),
        };
        let (run, log) = capture_pooling(api, dir.path(), dataset, &tokenizer, extra);
        let sent = sent_payloads(&log);
        let counts = run.manifest.counts.as_ref().expect("counts");
        assert_eq!((counts.done, counts.requests), (4, 4), "{api}: {counts:?}");
        let mut want_isl = std::collections::BTreeMap::new();
        for (id, req) in &run.requests {
            let k = *id as usize;
            let input: Value = serde_json::from_str(req.input_json.as_deref().expect("input_json")).expect("json");
            let (expected_input, isl) = match api {
                Api::Embeddings => {
                    let batch = &texts[3 * k..3 * k + 3];
                    (json!({ "input": batch }), batch.iter().map(|t| single(t)).sum::<f64>())
                }
                _ => {
                    let (q, docs) = &queries[k];
                    (
                        json!({"query": q, "documents": docs}),
                        docs.iter().map(|d| pair(q, d)).sum::<f64>(),
                    )
                }
            };
            assert_eq!(input, expected_input, "{api}: request {id}");
            assert!(req.messages_json.is_none() && req.prompt.is_none(), "{api}");
            let params: Value = serde_json::from_str(&req.params_json).expect("params");
            assert!(
                params.get("stream").is_none() && params.get("max_tokens").is_none(),
                "{api}: {params}"
            );
            // The whole body, byte for byte, and the server's usage: the independent count.
            let sse = run.sse(*id);
            let expected = &sent[req.client_request_id.as_ref().expect("request id")];
            let got: Vec<Payload> = sse
                .iter()
                .map(|e| (e.seq.map(u64::from), e.sse_event.clone(), e.raw.clone().expect("raw")))
                .collect();
            assert_eq!(&got, expected, "{api}: request {id}");
            assert_eq!(
                sse[0].usage_prompt_tokens.map(f64::from),
                Some(isl),
                "{api}: request {id}"
            );
            want_isl.insert(*id, isl);
        }
        let run_dir = dir.path().join(format!("{api}-run"));
        let s = report(&run_dir, &["--tokenizer", tokenizer.to_str().expect("utf8")]);
        let tok_id = s["tokenizer_id"].as_str().expect("tokenizer id");
        let isl = metric_column(&run_dir, tok_id, "tokenizer_input_tokens");
        let items = metric_column(&run_dir, tok_id, "items");
        let e2e = metric_column(&run_dir, tok_id, "e2e_ns");
        let ttft = metric_column(&run_dir, tok_id, "ttft_ns");
        for (id, want) in &want_isl {
            assert_eq!(isl[id], Some(*want), "{api}: request {id}");
            assert_eq!(items[id], Some(3.0), "{api}: request {id}");
            assert_eq!(ttft[id], None, "{api}: nothing is generated, so no first token");
            // 6 ms, then 1 ms per item: no client sees the answer sooner.
            let e = e2e[id].expect("e2e");
            assert!(e >= 9e6, "{api}: request {id}: E2E {e} ns under the scripted 9 ms");
        }
        assert_eq!(s["requests"]["ok"], 4, "{api}");
        let window = s["window_s"].as_f64().expect("window");
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * b.abs().max(1.0);
        assert!(
            close(s["items_per_s"].as_f64().expect("items/s"), 12.0 / window),
            "{api}: {s}"
        );
        let isl_sum: f64 = want_isl.values().sum();
        assert!(
            close(s["input_tokens_per_s"].as_f64().expect("input tok/s"), isl_sum / window),
            "{api}"
        );
    }
}

/// What cannot be sent is refused before any request, naming the file, the row and the flag.
#[test]
fn embeddings_and_rerank_refuse_what_they_cannot_send() {
    let dir = tempfile::tempdir().expect("tmp");
    let data = write_dataset(dir.path());
    let out = dir.path().join("run");
    let base = [
        "--url",
        "http://127.0.0.1:9",
        "--dataset",
        data.to_str().expect("utf8"),
        "--out",
        out.to_str().expect("utf8"),
        "--requests",
        "1",
    ];
    for (extra, says) in [
        (
            &["--api", "rerank"][..],
            "row 1: --api rerank sends rows with `query` and `documents`",
        ),
        (
            &["--api", "chat", "--batch-size", "4"][..],
            "--batch-size goes with --api embeddings",
        ),
        (
            &["--api", "embeddings", "--batch-size", "0"][..],
            "--batch-size must be at least 1",
        ),
    ] {
        let mut args: Vec<&str> = base.to_vec();
        args.extend_from_slice(extra);
        let res = run_bin("capture", &args);
        let err = String::from_utf8_lossy(&res.stderr);
        assert_eq!(res.status.code(), Some(2), "{extra:?}: {err}");
        assert!(err.contains(says), "{extra:?}: {err}");
        assert!(!out.exists(), "{extra:?}: nothing is written");
    }
}

/// Multi-turn sessions through Responses and Messages: a later turn sends the whole history,
/// with each earlier answer as the assistant message the server gave (the simulator's own
/// text for that turn's prompt), in `input` or `messages`.
#[test]
fn sessions_carry_the_recorded_answers_in_each_apis_history() {
    let dataset = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/datasets/sessions.jsonl");
    for api in APIS {
        let sim = SimProcess::start(&[]).expect("start sim");
        let dir = tempfile::tempdir().expect("tmp");
        let out = dir.path().join("run");
        let url = sim.url();
        let res = run_bin(
            "capture",
            &[
                "--url",
                url.as_str(),
                "--api",
                api.as_str(),
                "--dataset",
                dataset.to_str().expect("utf8"),
                "--sessions",
                "2",
                "--max-tokens",
                "5",
                "--out",
                out.to_str().expect("utf8"),
                "-q",
            ],
        );
        assert!(res.status.success(), "{api}: {}", String::from_utf8_lossy(&res.stderr));
        let run = read_run(&out).expect("read run");
        let mut checked = 0;
        for (id, req) in &run.requests {
            let Some(turn) = req.turn.filter(|t| *t > 0) else {
                continue;
            };
            let messages: Value = serde_json::from_str(req.messages_json.as_deref().expect("messages")).expect("json");
            let earlier = run
                .requests
                .iter()
                .find(|(_, r)| r.session_id == req.session_id && r.turn == Some(turn - 1))
                .map(|(i, _)| *i)
                .expect("the earlier turn was sent");
            // The row's own budget (the dataset's `max_tokens`) wins over `--max-tokens`.
            let budget = run.requests[&earlier].max_tokens.expect("a budget");
            let answer = sim::expected_content(&key_of(&run, earlier), u64::from(budget));
            let assistant: Vec<&Value> = messages
                .as_array()
                .expect("a list")
                .iter()
                .filter(|m| m["role"] == "assistant")
                .collect();
            assert_eq!(assistant.len(), turn as usize, "{api}: request {id}: {messages}");
            assert_eq!(
                assistant.last().map(|m| m["content"].clone()),
                Some(json!(answer)),
                "{api}: request {id}"
            );
            checked += 1;
        }
        assert!(checked >= 4, "{api}: only {checked} later turns");
    }
}

/// `analyze dataset synthetic --rerank-documents 3`: each row's planned length is what the
/// `tokenizers` crate's pair encoding counts over its pairs, the query exactly `--query-isl`
/// tokens; captured through `--api rerank`, analyze and the server find the same lengths.
#[test]
fn rerank_datasets_plan_exactly_what_the_pairs_count() {
    let dir = tempfile::tempdir().expect("tmp");
    let tokenizer = write_pair_tokenizer(dir.path());
    let tok = sim::load_tokenizer(&tokenizer).expect("tokenizer");
    let ds = dir.path().join("rerank.jsonl");
    let out = run_bin(
        "analyze",
        &[
            "dataset",
            "synthetic",
            "--tokenizer",
            tokenizer.to_str().expect("utf8"),
            "--count",
            "4",
            "--isl",
            "uniform:10:30",
            "--osl",
            "1",
            "--rerank-documents",
            "3",
            "--query-isl",
            "7",
            "--seed",
            "9",
            "--out",
            ds.to_str().expect("utf8"),
            "-q",
        ],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rows: Vec<Value> = std::fs::read_to_string(&ds)
        .expect("dataset")
        .lines()
        .map(|l| serde_json::from_str(l).expect("row"))
        .collect();
    assert_eq!(rows.len(), 4);
    for r in &rows {
        let q = r["query"].as_str().expect("query");
        assert_eq!(tok.encode(q, false).expect("encode").len(), 7, "{r}");
        let docs = r["documents"].as_array().expect("documents");
        assert_eq!(docs.len(), 3);
        let pairs: usize = docs
            .iter()
            .map(|d| tok.encode((q, d.as_str().expect("text")), true).expect("encode").len())
            .sum();
        assert_eq!(r["isl_tokens"].as_u64(), Some(pairs as u64), "{r}");
    }
    let (_run, _) = capture_pooling(Api::Rerank, dir.path(), &ds, &tokenizer, &[]);
    let s = report(
        &dir.path().join("rerank-run"),
        &["--tokenizer", tokenizer.to_str().expect("utf8")],
    );
    assert_eq!(s["planned_isl"]["compared"], 4, "{}", s["planned_isl"]);
    assert_eq!(s["planned_isl"]["share_equal"], 1.0, "{}", s["planned_isl"]);
    assert_eq!(s["isl_agreement"]["share_equal"], 1.0, "{}", s["isl_agreement"]);
}

/// `--replay` of a Messages run (system prompts lifted into `system`) and of a rerank run
/// (input in `input_json`): the second server receives the first one's bodies byte for byte.
#[test]
fn replays_of_messages_and_rerank_send_the_same_bytes() {
    let dir = tempfile::tempdir().expect("tmp");
    let tokenizer = write_pair_tokenizer(dir.path());
    let rerank = dir.path().join("rerank.jsonl");
    let rows: Vec<String> = (0..3)
        .map(|i| json!({"query": format!("tide {i}?"), "documents": ["harbor a", format!("harbor {i}")]}).to_string())
        .collect();
    std::fs::write(&rerank, rows.join("\n")).expect("write");
    let chat = write_dataset(dir.path());
    for (api, data) in [(Api::Messages, &chat), (Api::Rerank, &rerank)] {
        let (log_a, log_b) = (
            dir.path().join(format!("{api}-a.jsonl")),
            dir.path().join(format!("{api}-b.jsonl")),
        );
        let tok = tokenizer.to_str().expect("utf8");
        let sim_a =
            SimProcess::start(&["--log-bodies", log_a.to_str().expect("utf8"), "--tokenizer", tok]).expect("sim a");
        let sim_b =
            SimProcess::start(&["--log-bodies", log_b.to_str().expect("utf8"), "--tokenizer", tok]).expect("sim b");
        let (run_a, run_b) = (dir.path().join(format!("{api}-a")), dir.path().join(format!("{api}-b")));
        let (url_a, url_b) = (sim_a.url(), sim_b.url());
        let res = run_bin(
            "capture",
            &[
                "--url",
                &url_a,
                "--api",
                api.as_str(),
                "--dataset",
                data.to_str().expect("utf8"),
                "--requests",
                "6",
                "--max-tokens",
                "3",
                "--out",
                run_a.to_str().expect("utf8"),
                "-q",
            ],
        );
        assert!(res.status.success(), "{api}: {}", String::from_utf8_lossy(&res.stderr));
        let res = run_bin(
            "capture",
            &[
                "--replay",
                run_a.to_str().expect("utf8"),
                "--url",
                &url_b,
                "--out",
                run_b.to_str().expect("utf8"),
                "-q",
            ],
        );
        assert!(res.status.success(), "{api}: {}", String::from_utf8_lossy(&res.stderr));
        let (a, b) = (sorted_lines(&log_a), sorted_lines(&log_b));
        assert_eq!(a.len(), 6, "{api}");
        assert_eq!(a, b, "{api}: the replay's bodies are the source's, byte for byte");
        assert_eq!(read_run(&run_b).expect("run b").manifest.endpoint.api, api);
    }
}

/// A natural end (the simulator's own length under the budget: `response.completed`,
/// `end_turn`), an error inside the stream (the API's `event: error`) and a clean cut (no
/// terminal event) through both APIs: each request ends as the fault the simulator drew for its
/// prompt says, and the good ones carry exactly their text.
#[test]
fn natural_ends_stream_errors_and_cuts_are_told_apart_in_both_apis() {
    let cfg = sim::FaultConfig {
        stream_error_rate: 0.3,
        truncate_rate: 0.3,
        seed: 2,
        ..Default::default()
    };
    for api in APIS {
        let dir = tempfile::tempdir().expect("tmp");
        let sim = SimProcess::start(&[
            "--output-tokens",
            "4",
            "--stream-error-rate",
            "0.3",
            "--truncate-rate",
            "0.3",
            "--fault-seed",
            "2",
        ])
        .expect("start sim");
        let data = write_dataset(dir.path());
        let out = dir.path().join("run");
        let url = sim.url();
        let res = run_bin(
            "capture",
            &[
                "--url",
                url.as_str(),
                "--api",
                api.as_str(),
                "--dataset",
                data.to_str().expect("utf8"),
                "--requests",
                "16",
                "--concurrency",
                "4",
                "--max-tokens",
                "6",
                "--out",
                out.to_str().expect("utf8"),
                "-q",
            ],
        );
        assert!(res.status.success(), "{api}: {}", String::from_utf8_lossy(&res.stderr));
        let run = read_run(&out).expect("read run");
        let mut seen = std::collections::BTreeSet::new();
        for id in run.requests.keys() {
            let key = key_of(&run, *id);
            let fault = sim::fault_for(&key, &cfg);
            let terminal = run.terminals(*id)[0].clone();
            let want = match fault {
                sim::Fault::StreamError => Some(recap_schemas::ErrorKind::ServerError),
                sim::Fault::Truncated => Some(recap_schemas::ErrorKind::Incomplete),
                _ => None,
            };
            assert_eq!(
                terminal.error_kind, want,
                "{api}: request {id} drew {fault:?}: {terminal:?}"
            );
            if want.is_none() {
                assert_eq!(terminal.kind, EventKind::Done, "{api}: request {id}");
                assert_eq!(run.content(*id), sim::expected_content(&key, 4), "{api}: request {id}");
                let finish: Vec<_> = run.sse(*id).iter().filter_map(|e| e.finish_reason.clone()).collect();
                let natural = if api == Api::Responses { "completed" } else { "end_turn" };
                assert_eq!(finish, [natural], "{api}: request {id}");
            }
            seen.insert(format!("{fault:?}"));
        }
        assert_eq!(seen.len(), 3, "{api}: every outcome drawn: {seen:?}");
    }
}
