//! End-to-end: the record is lossless and truthful against servers that misbehave the way
//! real ones do. Every expectation comes from the simulator's own logs (`--log-raw`, `--log`)
//! or from `sim`'s deterministic text, never from capture or analyze.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;

use recap_schemas::{ErrorKind, EventKind};
use recap_tests::harness::{run_bin, SimProcess};
use recap_tests::runs::{key_of, metric_column, read_run, report, Run};
use recap_tests::sim::{self, sent_payloads, Payload};
use serde_json::{json, Value};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn tokenizer_path(name: &str) -> PathBuf {
    root().join("fixtures/tokenizers").join(name).join("tokenizer.json.gz")
}

/// `n` distinct prompts, half chat and half completions, each row in `prefix_group` i % 2.
fn write_dataset(dir: &Path, n: usize) -> PathBuf {
    let path = dir.join("prompts.jsonl");
    let mut text = String::new();
    for i in 0..n {
        let line = if i % 2 == 0 {
            json!({"messages": [{"role": "user", "content": format!("question {i} about the tides of the sea")}], "prefix_group": i % 2})
        } else {
            json!({"prompt": format!("prompt {i} about mountains"), "prefix_group": i % 2})
        };
        text.push_str(&line.to_string());
        text.push('\n');
    }
    std::fs::write(&path, text).expect("write dataset");
    path
}

fn ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Captures `requests` requests from a simulator started with `sim_args`, returning the
/// folder, the run and the simulator's raw-payload log.
fn capture_with_raw_log(
    sim_args: &[&str],
    capture_args: &[&str],
    requests: usize,
) -> (tempfile::TempDir, Run, PathBuf) {
    capture_expecting(sim_args, capture_args, requests, 0)
}

/// [`capture_with_raw_log`], where capture must exit with `code` (1: no request succeeded).
fn capture_expecting(
    sim_args: &[&str],
    capture_args: &[&str],
    requests: usize,
    code: i32,
) -> (tempfile::TempDir, Run, PathBuf) {
    let dir = tempfile::tempdir().expect("tmp");
    let raw_log = dir.path().join("sent.jsonl");
    let mut args = vec!["--log-raw", raw_log.to_str().expect("utf8")];
    args.extend_from_slice(sim_args);
    let sim = SimProcess::start(&args).expect("start sim");
    let data = write_dataset(dir.path(), requests);
    let out = dir.path().join("run");
    let url = sim.url();
    let n = requests.to_string();
    let mut cargs = vec![
        "--url",
        url.as_str(),
        "--dataset",
        data.to_str().expect("utf8"),
        "--out",
        out.to_str().expect("utf8"),
        "--requests",
        n.as_str(),
        "--concurrency",
        "3",
        "--quiet",
    ];
    cargs.extend_from_slice(capture_args);
    let res = run_bin("capture", &cargs);
    assert_eq!(
        res.status.code(),
        Some(code),
        "capture: {}",
        String::from_utf8_lossy(&res.stderr)
    );
    drop(sim);
    let run = read_run(&out).expect("read run");
    (dir, run, raw_log)
}

#[test]
fn every_raw_payload_is_what_the_server_sent_byte_for_byte() {
    let cases: [(&str, &[&str], &[&str]); 5] = [
        (
            "vllm continuous usage",
            &["--flavor", "vllm"],
            &[
                "--body-extra",
                r#"{"stream_options": {"continuous_usage_stats": true}}"#,
            ],
        ),
        (
            "llama.cpp gzip",
            &["--flavor", "llamacpp", "--gzip", "--cache-share", "0.5"],
            &[],
        ),
        (
            "sglang malformed",
            &["--flavor", "sglang", "--malformed-rate", "0.4"],
            &[],
        ),
        (
            "errors in the stream",
            &[
                "--stream-error-rate",
                "0.5",
                "--error-rate",
                "0.2",
                "--error-status",
                "503",
            ],
            &[],
        ),
        ("whole bodies", &["--flavor", "llamacpp"], &["--no-stream"]),
    ];
    for (name, sim_args, capture_args) in cases {
        let (_dir, run, log) = capture_with_raw_log(sim_args, capture_args, 12);
        let sent = sent_payloads(&log);
        assert_eq!(run.manifest.endpoint.request_id_header.as_deref(), Some("x-request-id"));
        let mut compared = 0;
        for (id, req) in &run.requests {
            let client_id = req.client_request_id.clone().expect("a request id was sent");
            assert_eq!(client_id, format!("{}-{id}", run.manifest.run_id), "{name}");
            let expected = sent
                .get(&client_id)
                .unwrap_or_else(|| panic!("{name}: the sim never saw {client_id}"));
            let events = &run.events[id];
            // An HTTP error body is the terminal row's raw; every other payload an sse row's.
            let got: Vec<Payload> = events
                .iter()
                .filter(|e| e.kind == EventKind::Sse || (e.kind == EventKind::Error && e.http_status.is_some()))
                .map(|e| {
                    (
                        e.seq.map(u64::from),
                        e.sse_event.clone(),
                        e.raw
                            .clone()
                            .unwrap_or_else(|| panic!("{name}: request {id} row without raw: {e:?}")),
                    )
                })
                .collect();
            assert_eq!(&got, expected, "{name}: request {id}");
            compared += got.len();
            // The server's id: its first object's `id` (llama.cpp, vLLM and SGLang send none in a header).
            if let Some((_, _, first)) = expected.first().filter(|p| p.0.is_some()) {
                let server_id = serde_json::from_str::<Value>(first)
                    .ok()
                    .and_then(|v| v["id"].as_str().filter(|s| !s.is_empty()).map(str::to_string));
                if server_id.is_some() {
                    assert_eq!(req.server_request_id, server_id, "{name}: request {id}");
                }
            }
            let headers = events
                .iter()
                .find(|e| e.kind == EventKind::Headers)
                .and_then(|e| e.response_headers_json.clone())
                .expect("headers row with the response headers");
            let headers: Value = serde_json::from_str(&headers).expect("headers json");
            assert!(headers["content-type"].is_string(), "{name}: {headers}");
        }
        assert!(compared >= 12, "{name}: only {compared} payloads compared");
    }
}

#[test]
fn errors_inside_a_200_stream_and_clean_cuts_are_not_successes() {
    let (dir, run, _) = capture_with_raw_log(
        &[
            "--stream-error-rate",
            "0.4",
            "--truncate-rate",
            "0.3",
            "--fault-seed",
            "5",
        ],
        &["--max-tokens", "8"],
        20,
    );
    let cfg = sim::FaultConfig {
        stream_error_rate: 0.4,
        truncate_rate: 0.3,
        seed: 5,
        ..Default::default()
    };
    let mut expected: BTreeMap<ErrorKind, u64> = BTreeMap::new();
    for id in run.requests.keys() {
        match sim::fault_for(&key_of(&run, *id), &cfg) {
            sim::Fault::StreamError => *expected.entry(ErrorKind::ServerError).or_default() += 1,
            sim::Fault::Truncated => *expected.entry(ErrorKind::Incomplete).or_default() += 1,
            _ => {}
        }
    }
    assert!(expected.len() == 2, "both faults drawn: {expected:?}");
    let s = report(
        &dir.path().join("run"),
        &["--tokenizer", tokenizer_path("gpt2").to_str().expect("utf8")],
    );
    let errors: BTreeMap<ErrorKind, u64> = serde_json::from_value(s["requests"]["errors"].clone()).expect("errors");
    assert_eq!(errors, expected);
    let failed: u64 = expected.values().sum();
    assert_eq!(s["requests"]["ok"].as_u64(), Some(20 - failed));
    // The partial output's size stays known: half of the 8 tokens were sent before the cut.
    let tok_id = s["tokenizer_id"].as_str().expect("id");
    let out_tokens = metric_column(&dir.path().join("run"), tok_id, "tokenizer_output_tokens");
    let tok = sim::load_tokenizer(&tokenizer_path("gpt2")).expect("tokenizer");
    for id in run.requests.keys() {
        let key = key_of(&run, *id);
        if matches!(
            sim::fault_for(&key, &cfg),
            sim::Fault::StreamError | sim::Fault::Truncated
        ) {
            let half = sim::expected_content(&key, 4);
            let n = tok.encode(half.as_str(), false).expect("encode").len() as f64;
            assert_eq!(out_tokens[id], Some(n), "request {id}");
        }
    }
}

#[test]
fn a_run_recorded_by_an_older_capture_is_rescored_with_its_stream_errors() {
    // The committed fixture predates `server_error`: a version-2 capture recorded an error
    // object inside a 200 stream as a `protocol` sse row and ended the request `done`. Build
    // one such run by rewriting a fresh capture's rows the way that capture wrote them.
    let (dir, run, _) = capture_with_raw_log(
        &["--stream-error-rate", "0.5", "--fault-seed", "2"],
        &["--max-tokens", "6"],
        10,
    );
    let cfg = sim::FaultConfig {
        stream_error_rate: 0.5,
        seed: 2,
        ..Default::default()
    };
    let faulty = run
        .requests
        .keys()
        .filter(|id| sim::fault_for(&key_of(&run, **id), &cfg) == sim::Fault::StreamError)
        .count() as u64;
    assert!(faulty > 0);
    let run_dir = dir.path().join("run");
    recap_tests::runs::rewrite_events(&run_dir, |kind, error_kind, _| match (kind, error_kind) {
        ("sse", Some("server_error")) => Some((
            "sse",
            Some("protocol"),
            Some("server reported an error in the stream: simulated".to_string()),
        )),
        ("error", Some("server_error")) => Some(("done", None, None)),
        _ => None,
    })
    .expect("rewrite");
    let s = report(
        &run_dir,
        &["--tokenizer", tokenizer_path("gpt2").to_str().expect("utf8")],
    );
    assert_eq!(
        s["requests"]["errors"]["server_error"].as_u64(),
        Some(faulty),
        "{}",
        s["requests"]
    );
}

#[test]
fn n_choices_are_never_concatenated() {
    let (dir, run, _) = capture_with_raw_log(
        &["--flavor", "vllm"],
        &["--body-extra", r#"{"n": 2}"#, "--max-tokens", "6"],
        8,
    );
    let tok = sim::load_tokenizer(&tokenizer_path("gpt2")).expect("tokenizer");
    for id in run.requests.keys() {
        let sse = run.sse(*id);
        assert!(
            sse.iter().any(|e| e.choice_index == Some(1)),
            "request {id}: choice 1 streamed"
        );
    }
    let s = report(
        &dir.path().join("run"),
        &["--tokenizer", tokenizer_path("gpt2").to_str().expect("utf8")],
    );
    assert_eq!(s["requests"]["ok"].as_u64(), Some(8));
    let out_tokens = metric_column(
        &dir.path().join("run"),
        s["tokenizer_id"].as_str().expect("id"),
        "tokenizer_output_tokens",
    );
    for id in run.requests.keys() {
        let expected = sim::expected_content(&key_of(&run, *id), 6);
        let n = tok.encode(expected.as_str(), false).expect("encode").len() as f64;
        assert_eq!(out_tokens[id], Some(n), "request {id}: choice 0 alone");
    }
}

#[test]
fn without_usage_an_slo_on_tpot_is_never_met_and_token_rates_say_incomplete() {
    for no_usage in [true, false] {
        let sim_args: &[&str] = if no_usage { &["--no-usage"] } else { &[] };
        let (dir, _run, _) = capture_with_raw_log(sim_args, &["--max-tokens", "5"], 10);
        let s = report(
            &dir.path().join("run"),
            &[
                "--tokenizer",
                tokenizer_path("gpt2").to_str().expect("utf8"),
                "--tokens",
                "server",
                "--slo",
                "tpot=10s",
            ],
        );
        assert_eq!(s["requests"]["ok"].as_u64(), Some(10));
        let (good, unknown, complete) = (
            s["goodput"]["good_requests"].as_u64(),
            s["requests"]["osl_unknown"].as_u64(),
            s["token_throughput_complete"].as_bool(),
        );
        if no_usage {
            assert_eq!((good, unknown, complete), (Some(0), Some(10), Some(false)), "{s}");
        } else {
            assert_eq!((good, unknown, complete), (Some(10), Some(0), Some(true)), "{s}");
        }
    }
}

#[test]
fn cached_tokens_and_server_timings_reach_the_metrics_and_the_summary() {
    let (dir, run, _) = capture_with_raw_log(
        &[
            "--flavor",
            "llamacpp",
            "--cache-share",
            "0.5",
            "--ttft",
            "30ms",
            "--itl",
            "2ms",
        ],
        &["--max-tokens", "5"],
        8,
    );
    let run_dir = dir.path().join("run");
    let s = report(
        &run_dir,
        &["--tokenizer", tokenizer_path("gpt2").to_str().expect("utf8")],
    );
    let tok_id = s["tokenizer_id"].as_str().expect("id");
    // The sim's timings: prompt_ms = its TTFT; predicted_ms = ITL x (chunks - 1).
    assert_eq!(
        s["metrics"]["server_prefill_ms"]["mean"].as_f64(),
        Some(30.0),
        "{}",
        s["metrics"]
    );
    assert_eq!(s["metrics"]["server_decode_ms"]["mean"].as_f64(), Some(8.0));
    let share = metric_column(&run_dir, tok_id, "prefix_cache_share");
    let cached = metric_column(&run_dir, tok_id, "cached_prompt_tokens");
    for id in run.requests.keys() {
        let p = sim::prompt_tokens(&key_of(&run, *id));
        let c = (p as f64 * 0.5).floor();
        assert_eq!(cached[id], Some(c), "request {id}");
        assert_eq!(share[id], Some(c / p as f64), "request {id}");
    }
    // The same server times, extracted from the raw payloads with SQL (docs/schema.md's example).
    let q = run_bin(
        "analyze",
        &[
            "sql",
            run_dir.to_str().expect("utf8"),
            "SELECT count(*) AS n, min(json_get_float(raw, 'timings', 'predicted_ms')) AS lo, \
             max(json_get_float(raw, 'timings', 'predicted_ms')) AS hi FROM events WHERE raw LIKE '%\"timings\"%'",
            "--format",
            "json",
        ],
    );
    ok(&q, "analyze sql");
    let rows: Value = serde_json::from_slice(&q.stdout).expect("json rows");
    assert_eq!(rows[0]["n"].as_u64(), Some(8), "one timings object per request: {rows}");
    assert_eq!(
        (rows[0]["lo"].as_f64(), rows[0]["hi"].as_f64()),
        (Some(8.0), Some(8.0)),
        "{rows}"
    );
    let csv = std::fs::read_to_string(run_dir.join("analysis").join(tok_id).join("summary.csv")).expect("csv");
    assert!(csv.contains("prefix_group1.prefix_cache_share.mean,"), "{csv}");
    let groups = s["by_prefix_group"].as_array().expect("by prefix group");
    assert_eq!(groups.len(), 2);
    for g in groups {
        assert_eq!(g["requests"].as_u64(), Some(4));
        assert!(g["metrics"]["prefix_cache_share"]["mean"].as_f64().is_some(), "{g}");
    }
}

#[test]
fn a_decompression_bomb_is_an_error_row_and_the_run_goes_on() {
    // 3 MB of one byte compress to a few KB; capture may decode at most 1 MB of a response.
    for stream in [true, false] {
        let mut cargs = vec!["--max-response-bytes", "1000000", "--max-tokens", "3"];
        if !stream {
            cargs.push("--no-stream");
        }
        let (_dir, run, _) = capture_expecting(&["--gzip", "--huge-event-bytes", "3000000"], &cargs, 6, 1);
        for id in run.requests.keys() {
            let t = run.terminals(*id)[0];
            assert_eq!(
                (t.kind, t.error_kind),
                (EventKind::Error, Some(ErrorKind::Protocol)),
                "{t:?}"
            );
            assert!(
                t.error_message
                    .as_deref()
                    .is_some_and(|m| m.contains("--max-response-bytes")),
                "{t:?}"
            );
            // Received bytes are the compressed ones: a few KB, not the inflated 3 MB.
            assert!(t.bytes.unwrap_or(u32::MAX) < 1_000_000, "{t:?}");
        }
    }
}

#[test]
fn segments_past_100000_are_read_in_write_order() {
    let (dir, run, _) = capture_with_raw_log(
        &["--itl", "3ms"],
        &["--flush-interval", "5ms", "--max-tokens", "12"],
        16,
    );
    let run_dir = dir.path().join("run");
    let segments = recap_tests::harness::closed_segments(&run_dir, "events");
    assert!(segments.len() >= 6, "requests span segments: {}", segments.len());
    let gpt2 = tokenizer_path("gpt2");
    let args = ["--tokenizer", gpt2.to_str().expect("utf8")];
    let before = report(&run_dir, &args);
    // Rename every segment as a version-2 capture numbered them near 100,000: as text,
    // `part-100000` sorts before `part-99998`, which would put terminal rows before the
    // events of their requests.
    let copy = dir.path().join("renamed");
    for table in ["requests", "events"] {
        std::fs::create_dir_all(copy.join(table)).expect("mkdir");
        for (k, seg) in recap_tests::harness::closed_segments(&run_dir, table)
            .iter()
            .enumerate()
        {
            std::fs::copy(seg, copy.join(table).join(format!("part-{:05}.parquet", 99_998 + k))).expect("copy");
        }
    }
    std::fs::copy(run_dir.join("manifest.json"), copy.join("manifest.json")).expect("manifest");
    let mut names: Vec<String> = std::fs::read_dir(copy.join("events"))
        .expect("dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert!(
        names[0].starts_with("part-1000"),
        "text order differs from write order: {names:?}"
    );
    let out = run_bin(
        "analyze",
        &["report", copy.to_str().expect("utf8"), args[0], args[1], "--json", "-v"],
    );
    ok(&out, "analyze the renamed run");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(!log.contains("after their request's terminal event"), "{log}");
    let after: Value = serde_json::from_slice::<Value>(&out.stdout).expect("json")[0].clone();
    for field in ["requests", "metrics", "osl_agreement"] {
        assert_eq!(before[field], after[field], "{field}");
    }
    assert_eq!(before["requests"]["ok"].as_u64(), Some(run.requests.len() as u64));
}
