//! End-to-end: the real `capture` binary against the real `recap-sim` over loopback, and the
//! run folder read back through the Parquet reader.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use recap_schemas::{Api, ErrorKind, EventKind, Phase};
use recap_tests::harness::{
    catches_signal, closed_segments, complete_lines, mentions_flag, spawn_bin, wait_for_child, SimProcess,
};
use recap_tests::runs::{key_of, read_run, EventRow, Run};
use recap_tests::sim::{self, Fault, FaultConfig};

fn capture_bin() -> PathBuf {
    recap_tests::harness::workspace_bin("capture")
}

/// A JSONL dataset of `n` distinct prompts (half chat, half plain prompts).
fn write_dataset(dir: &Path, n: usize) -> PathBuf {
    let path = dir.join("prompts.jsonl");
    let mut text = String::new();
    for i in 0..n {
        let line = if i % 2 == 0 {
            serde_json::json!({"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": format!("question number {i} about rivers")}]})
        } else {
            serde_json::json!({"prompt": format!("prompt number {i} about mountains and lakes")})
        };
        text.push_str(&line.to_string());
        text.push('\n');
    }
    std::fs::write(&path, text).expect("write dataset");
    path
}

fn capture(args: &[&str]) -> Output {
    let out = Command::new(capture_bin())
        .args(args)
        .arg("--quiet")
        .output()
        .expect("run capture");
    if !out.status.success() && std::env::var_os("RECAP_TEST_VERBOSE").is_some() {
        eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    }
    out
}

fn assert_one_terminal_each(run: &Run) {
    for id in run.requests.keys() {
        let t = run.terminals(*id);
        assert_eq!(t.len(), 1, "request {id} terminals: {t:?}");
        let last = run.events[id].last().expect("events");
        assert_eq!(last.t_ns, t[0].t_ns, "terminal of {id} is not last in time");
    }
    for id in run.events.keys() {
        assert!(run.requests.contains_key(id), "events for unknown request {id}");
    }
}

#[test]
fn streaming_chat_records_every_event_and_the_exact_text() {
    let sim = SimProcess::start(&[
        "--ttft",
        "3ms",
        "--itl",
        "1ms",
        "--tokens-per-chunk",
        "2",
        "--reasoning",
        "3",
    ])
    .expect("start sim");
    let dir = tempfile::tempdir().expect("tmp");
    let data = write_dataset(dir.path(), 30);
    let out = dir.path().join("run");
    let res = capture(&[
        "--url",
        &sim.url(),
        "--model",
        "m",
        "--dataset",
        data.to_str().expect("utf8"),
        "--out",
        out.to_str().expect("utf8"),
        "--concurrency",
        "4",
        "--requests",
        "40",
        "--warmup-requests",
        "2",
        "--max-tokens",
        "9",
    ]);
    assert!(
        res.status.success(),
        "capture failed: {}",
        String::from_utf8_lossy(&res.stderr)
    );
    let run = read_run(&out).expect("read run");

    assert_eq!(run.manifest.status, recap_schemas::RunStatus::Complete);
    assert_eq!(run.requests.len(), 42);
    assert_eq!(run.requests.values().filter(|r| r.phase == Phase::Warmup).count(), 2);
    assert_eq!(
        run.requests.keys().copied().collect::<Vec<_>>(),
        (0..42).collect::<Vec<_>>()
    );
    let counts = run.manifest.counts.as_ref().expect("counts");
    assert_eq!((counts.requests, counts.done), (42, 42));
    let n_events: usize = run.events.values().map(Vec::len).sum();
    assert_eq!(counts.events as usize, n_events);
    for md in &run.segment_metadata {
        assert_eq!(
            md.get("recap.schema_version"),
            Some(&recap_schemas::SCHEMA_VERSION.to_string())
        );
        assert_eq!(md.get("recap.run_id"), Some(&run.manifest.run_id));
    }
    assert_one_terminal_each(&run);

    for id in run.requests.keys().copied() {
        let key = key_of(&run, id);
        assert_eq!(
            run.content(id),
            sim::expected_content(&key, 9),
            "content of request {id}"
        );
        assert_eq!(
            run.reasoning(id),
            sim::expected_reasoning(&key, 3),
            "reasoning of request {id}"
        );
        let ev = &run.events[&id];
        let kinds: Vec<EventKind> = ev.iter().map(|e| e.kind).collect();
        // Connection set-up rows (schema 2) come first where the request opened a connection.
        let after_setup: Vec<EventKind> = kinds
            .iter()
            .copied()
            .skip_while(|k| matches!(k, EventKind::Connect | EventKind::Connected | EventKind::TlsDone))
            .collect();
        assert_eq!(after_setup.first(), Some(&EventKind::Sent), "{kinds:?}");
        assert_eq!(kinds.iter().filter(|k| **k == EventKind::Sent).count(), 1, "{kinds:?}");
        assert_eq!(kinds.iter().filter(|k| **k == EventKind::Headers).count(), 1);
        assert_eq!(
            ev.iter()
                .find(|e| e.kind == EventKind::Headers)
                .and_then(|e| e.http_status),
            Some(200)
        );
        assert_eq!(kinds.last(), Some(&EventKind::Done));
        // role event, 2 reasoning chunks, 5 content chunks, finish, usage, [DONE]
        let sse = run.sse(id);
        assert_eq!(sse.len(), 1 + 2 + 5 + 1 + 1 + 1, "{sse:?}");
        assert_eq!(
            sse.iter().map(|e| e.seq.expect("seq")).collect::<Vec<_>>(),
            (0..11).collect::<Vec<u32>>()
        );
        assert_eq!(sse[0].role.as_deref(), Some("assistant"));
        assert_eq!(sse.iter().filter(|e| e.done_marker).count(), 1);
        assert!(sse.last().expect("sse").done_marker);
        assert_eq!(
            sse.iter()
                .filter_map(|e| e.finish_reason.as_deref())
                .collect::<Vec<_>>(),
            ["length"]
        );
        let usage: Vec<_> = sse.iter().filter(|e| e.usage_completion_tokens.is_some()).collect();
        assert_eq!(usage.len(), 1);
        assert_eq!(usage[0].usage_completion_tokens, Some(12));
        assert_eq!(usage[0].usage_prompt_tokens, Some(sim::prompt_tokens(&key) as u32));
        assert!(sse.iter().all(|e| e.bytes.unwrap_or(0) > 0 && e.error_kind.is_none()));
        assert!(ev.windows(2).all(|w| w[0].t_ns <= w[1].t_ns));
    }
}

#[test]
fn non_streaming_completions_record_one_body_event() {
    let sim = SimProcess::start(&["--ttft", "1ms"]).expect("start sim");
    let dir = tempfile::tempdir().expect("tmp");
    let data = write_dataset(dir.path(), 10);
    let out = dir.path().join("run");
    let res = capture(&[
        "--url",
        &format!("{}/v1", sim.url()),
        "--api",
        "completions",
        "--no-stream",
        "--dataset",
        data.to_str().expect("utf8"),
        "--out",
        out.to_str().expect("utf8"),
        "--concurrency",
        "2",
        "--requests",
        "10",
        "--max-tokens",
        "5",
    ]);
    assert!(
        res.status.success(),
        "capture failed: {}",
        String::from_utf8_lossy(&res.stderr)
    );
    let run = read_run(&out).expect("read run");
    assert_eq!(run.requests.len(), 10);
    assert_one_terminal_each(&run);
    for id in run.requests.keys().copied() {
        assert_eq!(run.requests[&id].api, Api::Completions);
        assert!(run.requests[&id].prompt.is_some());
        let sse = run.sse(id);
        assert_eq!(sse.len(), 1);
        assert_eq!(
            sse[0].content.as_deref(),
            Some(sim::expected_content(&key_of(&run, id), 5).as_str())
        );
        assert_eq!(sse[0].usage_completion_tokens, Some(5));
        assert_eq!(run.terminals(id)[0].kind, EventKind::Done);
    }
}

#[test]
fn injected_faults_become_typed_error_rows_and_the_run_goes_on() {
    let cfg = FaultConfig {
        error_rate: 0.12,
        reset_rate: 0.12,
        malformed_rate: 0.12,
        stall_rate: 0.1,
        stream_error_rate: 0.15,
        truncate_rate: 0.1,
        seed: 3,
    };
    let sim = SimProcess::start(&[
        "--itl",
        "1ms",
        "--error-rate",
        "0.12",
        "--reset-rate",
        "0.12",
        "--malformed-rate",
        "0.12",
        "--stall-rate",
        "0.1",
        "--stream-error-rate",
        "0.15",
        "--truncate-rate",
        "0.1",
        "--fault-seed",
        "3",
        "--error-status",
        "503",
    ])
    .expect("start sim");
    let dir = tempfile::tempdir().expect("tmp");
    let data = write_dataset(dir.path(), 90);
    let out = dir.path().join("run");
    let res = capture(&[
        "--url",
        &sim.url(),
        "--dataset",
        data.to_str().expect("utf8"),
        "--out",
        out.to_str().expect("utf8"),
        "--concurrency",
        "8",
        "--requests",
        "90",
        "--max-tokens",
        "6",
        "--timeout",
        "1500ms",
    ]);
    assert!(
        res.status.success(),
        "capture failed: {}",
        String::from_utf8_lossy(&res.stderr)
    );
    let run = read_run(&out).expect("read run");
    assert_eq!(run.requests.len(), 90);
    assert_one_terminal_each(&run);
    let mut seen = std::collections::BTreeMap::<String, usize>::new();
    for id in run.requests.keys().copied() {
        let key = key_of(&run, id);
        let term = run.terminals(id)[0];
        let fault = sim::fault_for(&key, &cfg);
        match fault {
            Fault::None => {
                assert_eq!(term.kind, EventKind::Done, "request {id}: {term:?}");
                assert_eq!(run.content(id), sim::expected_content(&key, 6));
            }
            Fault::Error => {
                assert_eq!(
                    (term.kind, term.error_kind, term.http_status),
                    (EventKind::Error, Some(ErrorKind::HttpStatus), Some(503))
                );
                assert!(
                    term.error_message
                        .as_deref()
                        .is_some_and(|m| m.contains("simulated failure")),
                    "{term:?}"
                );
            }
            Fault::Reset => {
                assert_eq!(
                    (term.kind, term.error_kind),
                    (EventKind::Error, Some(ErrorKind::StreamReset)),
                    "request {id}: {term:?}"
                );
                assert!(term.bytes.unwrap_or(0) > 0, "reset after some bytes: {term:?}");
            }
            Fault::Malformed => {
                assert_eq!(
                    term.kind,
                    EventKind::Done,
                    "malformed event does not end the request: {term:?}"
                );
                let bad: Vec<_> = run
                    .sse(id)
                    .into_iter()
                    .filter(|e| e.error_kind == Some(ErrorKind::Protocol))
                    .collect();
                assert_eq!(bad.len(), 1, "request {id}");
                assert_eq!(run.content(id), sim::expected_content(&key, 6));
            }
            Fault::Stall => {
                assert_eq!(
                    (term.kind, term.error_kind),
                    (EventKind::Error, Some(ErrorKind::Timeout)),
                    "request {id}: {term:?}"
                );
            }
            Fault::StreamError => {
                // An error inside a 200 stream is a failure, whatever the status said; what
                // came before it (the first half of the answer) stays recorded.
                assert_eq!(
                    (term.kind, term.error_kind, run.content(id)),
                    (
                        EventKind::Error,
                        Some(ErrorKind::ServerError),
                        sim::expected_content(&key, 3)
                    ),
                    "request {id}: {term:?}"
                );
                let flagged: Vec<_> = run
                    .sse(id)
                    .into_iter()
                    .filter(|e| e.error_kind == Some(ErrorKind::ServerError))
                    .collect();
                assert_eq!(flagged.len(), 1, "request {id}");
                assert!(
                    flagged[0]
                        .raw
                        .as_deref()
                        .is_some_and(|r| r.contains("KV cache exhaustion")),
                    "{:?}",
                    flagged[0]
                );
            }
            Fault::Truncated => {
                assert_eq!(
                    (term.kind, term.error_kind, run.content(id)),
                    (
                        EventKind::Error,
                        Some(ErrorKind::Incomplete),
                        sim::expected_content(&key, 3)
                    ),
                    "request {id}: {term:?}"
                );
            }
        }
        *seen.entry(format!("{fault:?}")).or_default() += 1;
    }
    for f in [
        "None",
        "Error",
        "Reset",
        "Malformed",
        "Stall",
        "StreamError",
        "Truncated",
    ] {
        assert!(
            seen.get(f).copied().unwrap_or(0) > 0,
            "no request drew fault {f}: {seen:?}"
        );
    }
    let errors = &run.manifest.counts.as_ref().expect("counts").errors;
    assert_eq!(
        errors.get(&recap_schemas::ErrorKind::HttpStatus).copied().unwrap_or(0) as usize,
        seen["Error"]
    );
    assert_eq!(
        errors.get(&recap_schemas::ErrorKind::Timeout).copied().unwrap_or(0) as usize,
        seen["Stall"]
    );
    assert_eq!(
        errors.get(&recap_schemas::ErrorKind::ServerError).copied().unwrap_or(0) as usize,
        seen["StreamError"]
    );
    assert_eq!(
        errors.get(&recap_schemas::ErrorKind::Incomplete).copied().unwrap_or(0) as usize,
        seen["Truncated"]
    );
}

#[test]
fn connection_refused_is_recorded_per_request() {
    // Bind then drop a listener to get a port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path().join("run");
    let res = capture(&[
        "--url",
        &format!("http://127.0.0.1:{port}"),
        "--out",
        out.to_str().expect("utf8"),
        "--requests",
        "5",
    ]);
    // Nothing listens: the run is recorded, and the exit status says it measured nothing.
    assert_eq!(res.status.code(), Some(1), "{}", String::from_utf8_lossy(&res.stderr));
    assert!(String::from_utf8_lossy(&res.stderr)
        .contains("no request succeeded: 5 ended in errors, most often `connect` (5)"));
    let run = read_run(&out).expect("read run");
    assert_eq!(run.requests.len(), 5);
    assert_one_terminal_each(&run);
    for id in 0..5 {
        let t = run.terminals(id)[0];
        assert_eq!((t.kind, t.error_kind), (EventKind::Error, Some(ErrorKind::Connect)));
        assert_eq!(run.requests[&id].connection_id, None);
    }
}

#[test]
fn open_loop_constant_rate_schedules_exactly() {
    let sim = SimProcess::start(&[]).expect("start sim");
    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path().join("run");
    let res = capture(&[
        "--url",
        &sim.url(),
        "--out",
        out.to_str().expect("utf8"),
        "--rate",
        "200",
        "--arrival",
        "constant",
        "--requests",
        "40",
        "--max-tokens",
        "2",
    ]);
    assert!(res.status.success(), "{}", String::from_utf8_lossy(&res.stderr));
    let run = read_run(&out).expect("read run");
    assert_eq!(run.manifest.load.mode, recap_schemas::LoadMode::Rate);
    for (id, r) in &run.requests {
        assert_eq!(r.scheduled_ns, *id as i64 * 5_000_000, "request {id}");
        let sent = run.events[id].iter().find(|e| e.kind == EventKind::Sent).expect("sent");
        assert!(sent.t_ns >= r.scheduled_ns, "sent before its schedule: {id}");
    }
    assert_one_terminal_each(&run);
}

#[test]
fn sigint_stops_scheduling_and_leaves_a_readable_interrupted_run() {
    signal_stops_scheduling_and_leaves_a_readable_interrupted_run("-INT");
}

#[test]
fn sigterm_stops_scheduling_and_leaves_a_readable_interrupted_run() {
    signal_stops_scheduling_and_leaves_a_readable_interrupted_run("-TERM");
}

fn signal_stops_scheduling_and_leaves_a_readable_interrupted_run(signal: &str) {
    // Each request takes ~20 s, so whenever the readiness below is reached (the first flush,
    // ~1 s in) all 4 workers have a request in flight that cannot finish within the grace.
    let sim = SimProcess::start(&["--itl", "20ms", "--output-tokens", "1000"]).expect("start sim");
    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path().join("run");
    let mut child = spawn_bin(
        "capture",
        &[
            "--url",
            &sim.url(),
            "--out",
            out.to_str().expect("utf8"),
            "--concurrency",
            "4",
            "--requests",
            "1000",
            "--grace",
            "300ms",
            "--quiet",
        ],
    );
    let signo = if signal == "-INT" { 2 } else { 15 };
    let pid = child.id();
    // Ready when capture catches the signal (its handler is installed, so the signal tests the
    // handling and not the default action) and a closed segment shows 4 requests sent.
    wait_for_child(
        &mut child,
        &format!("capture to catch {signal} and record 4 sent requests in a closed segment"),
        || {
            if !catches_signal(pid, signo) || closed_segments(&out, "events").is_empty() {
                return None;
            }
            let run = read_run(&out).ok()?;
            let sent = run
                .events
                .values()
                .flatten()
                .filter(|e| e.kind == EventKind::Sent)
                .count();
            (sent >= 4).then_some(())
        },
    );
    let status = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "capture did not stop after {signal}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(130));
    let run = read_run(&out).expect("read run");
    assert_eq!(run.manifest.status, recap_schemas::RunStatus::Interrupted);
    assert!(
        run.requests.len() >= 4 && run.requests.len() < 1000,
        "{}",
        run.requests.len()
    );
    assert_one_terminal_each(&run);
    let cancelled = run
        .requests
        .keys()
        .filter(|id| run.terminals(**id)[0].kind == EventKind::Cancelled)
        .count();
    assert!(
        cancelled >= 1,
        "in-flight requests should be cancelled after the grace period"
    );
}

#[test]
fn secrets_never_reach_the_run_folder_or_the_logs() {
    // A server that echoes every credential back: in a response header, in its first
    // response object, and in the body of its 401s (half of the requests).
    let sim = SimProcess::start(&["--echo-auth", "--error-rate", "0.5", "--error-status", "401"]).expect("start sim");
    let dir = tempfile::tempdir().expect("tmp");
    let secret = "sk-recap-test-7f3a9c1e5b";
    let header_secret = "hdr-secret-42e1";
    let query_secret = "qry-secret-9d0b";
    let url = format!("{}/v1?api_key={query_secret}&tenant=visible-tenant", sim.url());
    // Two flag orders: the secrets' flags first, and last.
    for (k, order) in ["first", "last"].iter().enumerate() {
        let out = dir.path().join(format!("run{k}"));
        let out_s = out.to_str().expect("utf8").to_string();
        let secret_flags = vec![
            "--api-key-env".to_string(),
            "RECAP_TEST_API_KEY".to_string(),
            format!("--header=X-Api-Key: {header_secret}"),
            "--url".to_string(),
            url.clone(),
        ];
        let other_flags = vec![
            "--out".to_string(),
            out_s,
            "--requests".to_string(),
            "6".to_string(),
            "--header".to_string(),
            "X-Trace: visible".to_string(),
            "-vv".to_string(),
            "--json".to_string(),
        ];
        let args: Vec<String> = if *order == "first" {
            secret_flags.into_iter().chain(other_flags).collect()
        } else {
            other_flags.into_iter().chain(secret_flags).collect()
        };
        let res = Command::new(capture_bin())
            .env("RECAP_TEST_API_KEY", secret)
            .args(&args)
            .output()
            .expect("run capture");
        assert!(res.status.success(), "{}", String::from_utf8_lossy(&res.stderr));
        let mut haystack = res.stdout.clone();
        haystack.extend_from_slice(&res.stderr);
        for entry in walk(&out) {
            haystack.extend(std::fs::read(&entry).expect("read output file"));
        }
        for s in [secret, header_secret, query_secret] {
            assert!(
                !haystack.windows(s.len()).any(|w| w == s.as_bytes()),
                "{s} leaked ({order})"
            );
        }
        let manifest = std::fs::read_to_string(out.join("manifest.json")).expect("manifest");
        assert!(
            manifest.contains("RECAP_TEST_API_KEY")
                && manifest.contains("visible")
                && manifest.contains("visible-tenant")
                && manifest.contains("<redacted>"),
            "{manifest}"
        );
        // The server did echo them: every place it did holds `<redacted>` instead.
        let run = read_run(&out).expect("read run");
        let (mut in_401, mut in_payload, mut in_header) = (0, 0, 0);
        for events in run.events.values() {
            for e in events {
                let redacted = |t: &Option<String>| t.as_deref().is_some_and(|t| t.contains("<redacted>"));
                if e.kind == EventKind::Error && e.http_status == Some(401) {
                    assert!(redacted(&e.error_message) && redacted(&e.raw), "{e:?}");
                    in_401 += 1;
                }
                if e.kind == EventKind::Sse && redacted(&e.raw) {
                    in_payload += 1;
                }
                if redacted(&e.response_headers_json) {
                    in_header += 1;
                }
            }
        }
        assert!(
            in_401 > 0 && in_payload > 0 && in_header > 0,
            "{in_401} {in_payload} {in_header}"
        );
    }
}

#[test]
fn refuses_to_overwrite_a_run_without_force() {
    let sim = SimProcess::start(&[]).expect("start sim");
    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path().join("run");
    let args = [
        "--url",
        &sim.url(),
        "--out",
        out.to_str().expect("utf8"),
        "--requests",
        "2",
    ];
    assert!(capture(&args).status.success());
    let again = capture(&args);
    assert_eq!(again.status.code(), Some(2));
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(mentions_flag(&err, "--force"), "{err}");
    let mut forced = args.to_vec();
    forced.push("--force");
    assert!(capture(&forced).status.success());
}

#[test]
fn bad_dataset_line_fails_before_any_request_naming_file_and_line() {
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("bad.jsonl");
    std::fs::write(&data, "{\"prompt\": \"ok\"}\n{\"prompt\": 5}\n").expect("write");
    let out = dir.path().join("run");
    let res = capture(&[
        "--url",
        "http://127.0.0.1:9",
        "--dataset",
        data.to_str().expect("utf8"),
        "--out",
        out.to_str().expect("utf8"),
    ]);
    assert_eq!(res.status.code(), Some(2));
    let err = String::from_utf8_lossy(&res.stderr);
    assert!(err.contains("bad.jsonl") && err.contains("line 2"), "{err}");
    assert!(!out.join("manifest.json").exists());
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).expect("read_dir") {
        let p = e.expect("entry").path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn sigkill_at_random_moments_leaves_every_closed_segment_readable_and_loses_about_a_second() {
    // Trials at spread-out kill moments (deterministic, so a failure can be replayed); more
    // with RECAP_KILL_TRIALS=N (the long, opt-in variant). A moment is something observed, not
    // a sleep: even trials kill right after the K-th closed events segment appears (K in 1..=3),
    // odd trials after the simulator has finished N more responses (N in 1..=300, ~0-4 s in
    // at ~80 responses/s), which lands anywhere within a flush interval.
    let trials: usize = std::env::var("RECAP_KILL_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6);
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    for trial in 0..trials {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let dir = tempfile::tempdir().expect("tmp");
        let out = dir.path().join("run");
        // A simulator per trial, so every line of its log is a response to this trial's run.
        let sim_log = dir.path().join("sim.jsonl");
        let sim = SimProcess::start(&[
            "--itl",
            "2ms",
            "--output-tokens",
            "50",
            "--log",
            sim_log.to_str().expect("utf8"),
        ])
        .expect("start sim");
        let mut child = spawn_bin(
            "capture",
            &[
                "--url",
                &sim.url(),
                "--out",
                out.to_str().expect("utf8"),
                "--concurrency",
                "8",
                "--requests",
                "100000",
                "--quiet",
            ],
        );
        let moment = if trial % 2 == 0 {
            let k = 1 + (state % 3) as usize;
            wait_for_child(&mut child, &format!("closed events segment #{k}"), || {
                (closed_segments(&out, "events").len() >= k).then_some(())
            });
            format!("after closed segment #{k}")
        } else {
            let n = 1 + (state % 300) as usize;
            wait_for_child(&mut child, &format!("{n} responses in the sim log"), || {
                (complete_lines(&sim_log) >= n).then_some(())
            });
            format!("after {n} responses")
        };
        let closed_before = closed_segments(&out, "events");
        child.kill().expect("SIGKILL");
        let killed_unix_ns = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock after 1970")
            .as_nanos() as i64;
        child.wait().expect("reap");
        let ctx = format!("trial {trial}, killed {moment}");
        let run = read_run(&out).unwrap_or_else(|e| panic!("{ctx}: a closed segment does not read back: {e:#}"));
        assert_eq!(run.manifest.status, recap_schemas::RunStatus::Running, "{ctx}");
        for seg in &closed_before {
            assert!(
                run.segments.contains(seg),
                "{ctx}: {} was closed before the kill and is not read back",
                seg.display()
            );
        }
        // Rows reach a closed segment within one flush interval (1 s); allow encoding and
        // scheduling noise on top, but far less than the run's length. Measured on the wall
        // clock from the manifest's anchor, so process start-up does not count.
        let last_t = run.events.values().flatten().map(|e| e.t_ns).max().unwrap_or(0);
        let lost = (killed_unix_ns - run.manifest.clock_anchor_unix_ns - last_t) as f64 / 1e9;
        assert!(lost < 2.0, "{ctx}: last recorded event {lost:.2}s before the kill");
        // Whatever was closed is consistent: a request's row is written with its terminal row
        // (schema 2), so every closed terminal row has its request row, and no request has
        // two terminal rows. (Requests still in flight at the kill have events only.)
        for (id, ev) in &run.events {
            let terminals = run.terminals(*id).len();
            assert!(terminals <= 1, "{ctx}: {:?}", ev);
            assert!(
                terminals == 0 || run.requests.contains_key(id),
                "{ctx}: request {id} ended without its request row"
            );
        }
    }
}

/// Runs capture against a sim started with `sim_args` and returns the run read back.
fn capture_run(sim_args: &[&str], capture_args: &[&str]) -> (tempfile::TempDir, Run) {
    let sim = SimProcess::start(sim_args).expect("start sim");
    let dir = tempfile::tempdir().expect("tmp");
    let data = write_dataset(dir.path(), 12);
    let out = dir.path().join("run");
    let url = sim.url();
    let mut args = vec![
        "--url",
        url.as_str(),
        "--dataset",
        data.to_str().expect("utf8"),
        "--out",
        out.to_str().expect("utf8"),
    ];
    args.extend_from_slice(capture_args);
    let res = capture(&args);
    assert!(
        res.status.success(),
        "capture failed: {}",
        String::from_utf8_lossy(&res.stderr)
    );
    let run = read_run(&out).expect("read run");
    assert_one_terminal_each(&run);
    (dir, run)
}

#[test]
fn gzip_encoded_streams_and_bodies_are_decoded() {
    for stream in [true, false] {
        let mut extra = vec!["--concurrency", "2", "--requests", "12", "--max-tokens", "7"];
        if !stream {
            extra.push("--no-stream");
        }
        let (_dir, run) = capture_run(&["--gzip", "--itl", "1ms"], &extra);
        for id in run.requests.keys().copied() {
            assert_eq!(
                run.terminals(id)[0].kind,
                EventKind::Done,
                "stream={stream} request {id}"
            );
            assert_eq!(
                run.content(id),
                sim::expected_content(&key_of(&run, id), 7),
                "stream={stream} request {id}"
            );
        }
    }
}

#[test]
fn server_closing_keep_alive_connections_between_requests_loses_nothing() {
    let (_dir, run) = capture_run(
        &["--close-every", "3"],
        &["--concurrency", "2", "--requests", "30", "--max-tokens", "3"],
    );
    assert_eq!(run.requests.len(), 30);
    for id in run.requests.keys().copied() {
        assert_eq!(
            run.terminals(id)[0].kind,
            EventKind::Done,
            "request {id}: {:?}",
            run.terminals(id)[0]
        );
    }
    let conns: std::collections::BTreeSet<u32> = run.requests.values().filter_map(|r| r.connection_id).collect();
    assert!(
        conns.len() >= 10,
        "closed connections were replaced: {} distinct",
        conns.len()
    );
}

#[test]
fn a_ten_megabyte_event_is_recorded_whole() {
    let n = 10 * 1024 * 1024;
    let (_dir, run) = capture_run(
        &["--huge-event-bytes", &n.to_string()],
        &["--requests", "2", "--max-tokens", "3"],
    );
    for id in run.requests.keys().copied() {
        let content = run.content(id);
        assert_eq!(content.len(), n + sim::expected_content(&key_of(&run, id), 3).len());
        assert!(content.ends_with(&sim::expected_content(&key_of(&run, id), 3)));
        assert!(run.sse(id).iter().any(|e| e.bytes.unwrap_or(0) as usize > n));
    }
}

#[test]
fn non_utf8_event_data_is_a_protocol_row_and_the_stream_goes_on() {
    let (_dir, run) = capture_run(
        &["--malformed-rate", "1", "--malformed-utf8"],
        &["--requests", "4", "--max-tokens", "4"],
    );
    for id in run.requests.keys().copied() {
        let bad: Vec<_> = run
            .sse(id)
            .into_iter()
            .filter(|e| e.error_kind == Some(ErrorKind::Protocol))
            .collect();
        assert_eq!(bad.len(), 1, "request {id}");
        assert!(
            bad[0].error_message.as_deref().is_some_and(|m| m.contains("UTF-8")),
            "{:?}",
            bad[0]
        );
        assert_eq!(run.terminals(id)[0].kind, EventKind::Done);
        assert_eq!(run.content(id), sim::expected_content(&key_of(&run, id), 4));
    }
}

/// `--raw errors` keeps the data of the rows with an error only, `--raw none` of no row; the
/// extracted content is whole either way (it is then copied apart from the data it was
/// read in, `--raw all` keeping it as a span of its `raw`).
#[test]
fn raw_errors_and_none_keep_only_what_they_say_and_every_content() {
    for (mode, error_raw) in [("errors", true), ("none", false), ("all", true)] {
        let (_dir, run) = capture_run(
            &["--malformed-rate", "1"],
            &["--requests", "4", "--max-tokens", "5", "--raw", mode],
        );
        for id in run.requests.keys().copied() {
            assert_eq!(
                run.content(id),
                sim::expected_content(&key_of(&run, id), 5),
                "--raw {mode}"
            );
            let sse = run.sse(id);
            let (bad, ok): (Vec<&EventRow>, Vec<&EventRow>) =
                sse.into_iter().partition(|e| e.error_kind == Some(ErrorKind::Protocol));
            assert_eq!(bad.len(), 1, "--raw {mode}, request {id}");
            assert_eq!(bad[0].raw.is_some(), error_raw, "--raw {mode}: {:?}", bad[0]);
            assert!(
                ok.iter().all(|e| e.raw.is_some() == (mode == "all")),
                "--raw {mode}: {ok:?}"
            );
        }
    }
}

#[test]
fn self_signed_https_fails_clearly_unless_insecure() {
    let sim = SimProcess::start(&["--tls-self-signed"]).expect("start sim");
    let url = format!("https://127.0.0.1:{}", sim.port());
    let dir = tempfile::tempdir().expect("tmp");
    let strict = dir.path().join("strict");
    let res = capture(&[
        "--url",
        &url,
        "--out",
        strict.to_str().expect("utf8"),
        "--requests",
        "2",
        "--max-tokens",
        "3",
    ]);
    // Every request fails verification: recorded, and exit 1 (nothing was measured).
    assert_eq!(res.status.code(), Some(1), "{}", String::from_utf8_lossy(&res.stderr));
    let run = read_run(&strict).expect("read run");
    assert_one_terminal_each(&run);
    for id in run.requests.keys().copied() {
        let t = run.terminals(id)[0];
        assert_eq!(
            (t.kind, t.error_kind),
            (EventKind::Error, Some(ErrorKind::Connect)),
            "{t:?}"
        );
        assert!(
            t.error_message
                .as_deref()
                .is_some_and(|m| m.to_lowercase().contains("certificate")),
            "{t:?}"
        );
    }
    let insecure = dir.path().join("insecure");
    let res = capture(&[
        "--url",
        &url,
        "--out",
        insecure.to_str().expect("utf8"),
        "--requests",
        "2",
        "--max-tokens",
        "3",
        "--insecure",
    ]);
    assert!(res.status.success(), "{}", String::from_utf8_lossy(&res.stderr));
    let run = read_run(&insecure).expect("read run");
    for id in run.requests.keys().copied() {
        assert_eq!(run.terminals(id)[0].kind, EventKind::Done);
        assert_eq!(run.content(id), sim::expected_content(&key_of(&run, id), 3));
    }
}

#[test]
fn prerendered_streams_are_recorded_event_by_event() {
    let (_dir, run) = capture_run(
        &["--prerender"],
        &["--concurrency", "4", "--requests", "12", "--max-tokens", "9"],
    );
    for id in run.requests.keys().copied() {
        assert_eq!(run.content(id), sim::expected_content(&key_of(&run, id), 9));
        // role, 9 content events, finish, usage, [DONE]: one token per event even when sent at once.
        assert_eq!(run.sse(id).len(), 13, "request {id}");
    }
}

/// How [`raw_server`] answers each connection.
#[derive(Clone, Copy, PartialEq)]
enum RawReply {
    /// Streams SSE without `Content-Length` or chunked encoding and ends the body by closing
    /// the connection.
    CloseDelimited,
    /// Waits for the whole request and closes with it unread, which makes the kernel send a
    /// TCP reset before any response byte.
    ResetBeforeHeaders,
    /// Like `CloseDelimited`, but all in one write, with two events whose data cut one
    /// character between them (`é`'s first byte ends one, its second starts the next): the
    /// two data are valid UTF-8 only back to back.
    SplitCharacter,
}

/// A one-response-per-connection HTTP/1.1 server on 127.0.0.1 that answers `connections`
/// connections as `reply` says.
fn raw_server(connections: usize, reply: RawReply) -> (u16, std::thread::JoinHandle<()>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let handle = std::thread::spawn(move || {
        for _ in 0..connections {
            let Ok((mut s, _)) = listener.accept() else { return };
            let mut buf = [0u8; 8192];
            if reply == RawReply::ResetBeforeHeaders {
                // Wait (by peeking, reading nothing) until the whole request is in the socket's
                // receive buffer; closing with it unread then makes the kernel send a reset,
                // whatever the timing. (Closing earlier could send a FIN instead.)
                let mut peeked = vec![0u8; 1 << 16];
                loop {
                    let n = s.peek(&mut peeked).unwrap_or(0);
                    if n == 0 || request_len(&peeked[..n]).is_some_and(|len| n >= len) {
                        break;
                    }
                    // Polling for more of the request to arrive.
                    std::thread::sleep(Duration::from_millis(1));
                }
                continue;
            }
            let mut req = Vec::new();
            // Read the request head and its JSON body (Content-Length bytes).
            loop {
                let n = s.read(&mut buf).unwrap_or(0);
                if n == 0 {
                    break;
                }
                req.extend_from_slice(&buf[..n]);
                if request_len(&req).is_some_and(|len| req.len() >= len) {
                    break;
                }
            }
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n");
            if reply == RawReply::SplitCharacter {
                let _ = s.write_all(
                    b"data: {\"choices\":[{\"delta\":{\"content\":\"alpha \"}}]}\n\n\
                      data: {\"x\":\"\xc3\n\ndata: \xa9\"}\n\n\
                      data: {\"choices\":[{\"delta\":{\"content\":\"beta\"}}]}\n\ndata: [DONE]\n\n",
                );
                continue;
            }
            // The 5 ms pauses only make the events likely to arrive in separate reads; every
            // assertion on this reply holds however the bytes are split or delayed.
            for word in ["alpha ", "beta ", "gamma "] {
                let _ = s.write_all(
                    format!("data: {{\"choices\":[{{\"delta\":{{\"content\":\"{word}\"}}}}]}}\n\n").as_bytes(),
                );
                let _ = s.flush();
                std::thread::sleep(Duration::from_millis(5));
            }
            let _ = s.write_all(b"data: [DONE]\n\n");
            // Dropping the socket ends the body.
        }
    });
    (port, handle)
}

/// Length of the HTTP/1.1 request (head and `Content-Length` body) at the start of `bytes`,
/// once its head is complete.
fn request_len(bytes: &[u8]) -> Option<usize> {
    let text = String::from_utf8_lossy(bytes);
    let head_end = text.find("\r\n\r\n")?;
    let body = text[..head_end]
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().to_string())
        })
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0);
    Some(head_end + 4 + body)
}

/// Captures 3 requests against a [`raw_server`] answering as `reply`: the run read back, each
/// request checked for exactly one terminal row.
/// A capture of 3 requests against a raw server answering `reply`; `code`: its exit status
/// (1 when no request succeeded).
fn capture_raw(reply: RawReply, code: i32) -> Run {
    let (port, server) = raw_server(3, reply);
    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path().join("run");
    let res = capture(&[
        "--url",
        &format!("http://127.0.0.1:{port}"),
        "--out",
        out.to_str().expect("utf8"),
        "--requests",
        "3",
    ]);
    assert_eq!(
        res.status.code(),
        Some(code),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
    server.join().expect("server thread");
    let run = read_run(&out).expect("read run");
    assert_one_terminal_each(&run);
    run
}

#[test]
fn a_response_ended_by_closing_the_connection_is_complete() {
    let run = capture_raw(RawReply::CloseDelimited, 0);
    for id in run.requests.keys().copied() {
        assert_eq!(run.terminals(id)[0].kind, EventKind::Done, "{:?}", run.terminals(id));
        assert_eq!(run.content(id), "alpha beta gamma ");
        assert!(run.sse(id).last().is_some_and(|e| e.done_marker));
    }
}

/// Each event's data is checked as UTF-8 on its own, however the read that brought them
/// holds them: two events that cut a character between them are two protocol errors, each
/// keeping its data (invalid bytes as U+FFFD) as `raw`; the events around them are whole.
#[test]
fn an_event_cut_inside_a_character_is_a_protocol_error_with_its_raw() {
    let run = capture_raw(RawReply::SplitCharacter, 0);
    for id in run.requests.keys().copied() {
        assert_eq!(run.content(id), "alpha beta");
        let sse = run.sse(id);
        let raws: Vec<Option<&str>> = sse.iter().map(|e| e.raw.as_deref()).collect();
        assert_eq!(
            raws,
            [
                Some(r#"{"choices":[{"delta":{"content":"alpha "}}]}"#),
                Some("{\"x\":\"\u{fffd}"),
                Some("\u{fffd}\"}"),
                Some(r#"{"choices":[{"delta":{"content":"beta"}}]}"#),
                Some("[DONE]"),
            ],
            "request {id}"
        );
        let errors: Vec<Option<ErrorKind>> = sse.iter().map(|e| e.error_kind).collect();
        assert_eq!(
            errors,
            [None, Some(ErrorKind::Protocol), Some(ErrorKind::Protocol), None, None],
            "request {id}"
        );
    }
}

#[test]
fn a_reset_before_headers_is_a_stream_reset_and_the_run_goes_on() {
    let run = capture_raw(RawReply::ResetBeforeHeaders, 1);
    assert_eq!(run.requests.len(), 3);
    for id in run.requests.keys().copied() {
        let t = run.terminals(id)[0];
        assert_eq!(
            (t.kind, t.error_kind),
            (EventKind::Error, Some(ErrorKind::StreamReset)),
            "{t:?}"
        );
        let kinds: Vec<EventKind> = run.events[&id].iter().map(|e| e.kind).collect();
        assert!(
            !kinds.contains(&EventKind::Headers),
            "no response byte was sent: {kinds:?}"
        );
    }
    let counts = run.manifest.counts.as_ref().expect("counts");
    assert_eq!(
        counts.errors.get(&ErrorKind::StreamReset).copied(),
        Some(3),
        "{counts:?}"
    );
}

/// A small tmpfs mounted for one test, unmounted when dropped.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    /// Mounts a tmpfs of `size` (e.g. "2m"), panicking with `mount`'s own message if it
    /// cannot: the test only runs where `tests/build.rs` found the facts that allow it (root's
    /// `CAP_SYS_ADMIN`, a `mount` binary) or `RECAP_TEST_TMPFS=1` said so, and this mount is
    /// the real check.
    fn mount(size: &str) -> SmallDisk {
        let dir = tempfile::tempdir().expect("tmp");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .stdout(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("running mount: {e}"));
        assert!(
            out.status.success(),
            "mounting a tmpfs failed ({}): {}; tests/build.rs found CAP_SYS_ADMIN and a `mount` \
             binary (or RECAP_TEST_TMPFS=1), so mounting was expected to work here (a seccomp \
             filter or LSM may veto it, or the machine changed since the build): \
             `RECAP_TEST_TMPFS=0` skips this test",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
        SmallDisk { dir }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

#[test]
#[cfg_attr(
    not(recap_tmpfs),
    ignore = "needs to mount a tmpfs (CAP_SYS_ADMIN and a `mount` binary on PATH); tests/build.rs found them missing here, or RECAP_TEST_TMPFS=0"
)]
fn a_full_disk_stops_scheduling_says_why_and_keeps_what_was_written() {
    let disk = SmallDisk::mount("1m");
    let sim = SimProcess::start(&["--output-tokens", "300", "--prerender"]).expect("start sim");
    let out = disk.dir.path().join("run");
    let started = Instant::now();
    let res = Command::new(capture_bin())
        .args([
            "--url",
            &sim.url(),
            "--out",
            out.to_str().expect("utf8"),
            "--concurrency",
            "16",
            "--duration",
            "60s",
            "--flush-interval",
            "200ms",
            "--quiet",
        ])
        .output()
        .expect("run capture");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "capture kept running on a full disk"
    );
    assert_eq!(res.status.code(), Some(1), "{}", String::from_utf8_lossy(&res.stderr));
    let stderr = String::from_utf8_lossy(&res.stderr);
    assert!(
        stderr.contains("No space left") || stderr.contains("os error 28"),
        "says why: {stderr}"
    );
    let run = read_run(&out).expect("closed segments still read back");
    assert_eq!(run.manifest.status, recap_schemas::RunStatus::Failed);
    let msg = run.manifest.status_message.clone().unwrap_or_default();
    assert!(msg.contains("No space left") || msg.contains("os error 28"), "{msg}");
    assert!(
        !run.segments.is_empty(),
        "segments closed before the disk filled are kept"
    );
}

/// The client's health in the manifest against what the OS says of the same process:
/// Python's `resource.getrusage(RUSAGE_CHILDREN)` around the capture it runs.
#[test]
fn the_manifest_records_the_clients_own_cpu_and_timer_lag() {
    let sim = SimProcess::start(&["--ttft", "0ms", "--itl", "0ms", "--prerender"]).expect("sim");
    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path().join("run");
    let script = "import resource, subprocess, sys\n\
                  r = subprocess.run(sys.argv[1:])\n\
                  u = resource.getrusage(resource.RUSAGE_CHILDREN)\n\
                  print(r.returncode, u.ru_utime + u.ru_stime)";
    let res = Command::new("python3")
        .args(["-c", script])
        .arg(capture_bin())
        .args(["--url", &sim.url(), "--out"])
        .arg(&out)
        .args([
            "--concurrency",
            "16",
            "--requests",
            "3000",
            "--max-tokens",
            "32",
            "--quiet",
        ])
        .output()
        .expect("python3 runs capture");
    let said = String::from_utf8_lossy(&res.stdout);
    let mut words = said.split_whitespace();
    assert_eq!(
        words.next(),
        Some("0"),
        "capture failed: {}",
        String::from_utf8_lossy(&res.stderr)
    );
    let os_cpu: f64 = words.next().and_then(|w| w.parse().ok()).expect("cpu seconds");
    let run = read_run(&out).expect("read run");
    let h = run.manifest.client.clone().expect("manifest.client");
    let cpu = h.cpu_user_s + h.cpu_sys_s;
    // The manifest counts from the run's start (after the dataset and flags), in 10 ms ticks.
    assert!(cpu <= os_cpu + 0.02, "manifest {cpu} s > the OS's {os_cpu} s");
    assert!(
        cpu >= 0.6 * os_cpu && cpu > 0.0,
        "manifest {cpu} s of the OS's {os_cpu} s"
    );
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
    assert_eq!(h.cores, cores);
    // A 10 ms probe: one wake-up per 10 ms at most, fewer by the time it spent late (each
    // cycle is 10 ms plus its lag, which a loaded 2-core debug build can double).
    let expected = h.elapsed_s * 100.0;
    assert!(
        (h.timer_lag_samples as f64) <= expected + 2.0 && (h.timer_lag_samples as f64) >= 0.25 * expected,
        "{} wake-ups in {} s",
        h.timer_lag_samples,
        h.elapsed_s
    );
    assert!(h.timer_lag_p50_us <= h.timer_lag_p99_us && h.timer_lag_p99_us <= h.timer_lag_max_us);

    // analyze carries it into the summary, with the CPU share computed from those numbers.
    let tok = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/tokenizers/gpt2/tokenizer.json.gz");
    let res = Command::new(recap_tests::harness::workspace_bin("analyze"))
        .args(["report"])
        .arg(&out)
        .arg("--tokenizer")
        .arg(&tok)
        .arg("--json")
        .output()
        .expect("analyze");
    assert!(res.status.success(), "{}", String::from_utf8_lossy(&res.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&res.stdout).expect("summary json");
    let c = &summary[0]["client"];
    let share = cpu / (h.elapsed_s * f64::from(cores));
    assert!((c["cpu_share"].as_f64().expect("share") - share).abs() < 1e-9, "{c}");
    assert_eq!(c["timer_lag_p99_ms"].as_f64(), Some(h.timer_lag_p99_us as f64 / 1000.0));
}
