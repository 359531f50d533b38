//! End-to-end: load plans beyond one fixed concurrency or rate, against `recap-sim`.
//!
//! `--schedule timestamps` sends each dataset row at its own `timestamp_ms` offset (scaled):
//! the recorded `scheduled_ns` are those offsets, and the client lag behind them is measured.

use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use recap_schemas::{LoadMode, Phase};
use recap_tests::harness::{catches_signal, run_bin, sorted_lines, spawn_bin, wait_for_child, SimProcess};
use recap_tests::runs::read_run;

fn capture(args: &[&str]) -> std::process::Output {
    run_bin("capture", args)
}

/// 500 rows at 500 req/s (one every 2 ms), with a pause in the middle.
fn timestamped_dataset(path: &Path) -> Vec<u64> {
    let stamps: Vec<u64> = (0..500u64).map(|i| 2 * i + if i >= 250 { 100 } else { 0 }).collect();
    let text: String = stamps
        .iter()
        .map(|t| {
            format!(
                "{{\"prompt\": \"row at {t} ms\", \"max_tokens\": 2, \"timestamp_ms\": {}}}\n",
                1000 + t
            )
        })
        .collect();
    std::fs::write(path, text).expect("write dataset");
    stamps
}

#[test]
fn timestamp_schedule_sends_each_row_at_its_scaled_offset() {
    let dir = tempfile::tempdir().expect("tmp");
    let ds = dir.path().join("trace.jsonl");
    let stamps = timestamped_dataset(&ds);
    let sim = SimProcess::start(&["--ttft", "1ms", "--itl", "1ms"]).expect("recap-sim");
    for scale in [1.0, 0.5] {
        let out = dir.path().join(format!("run-{scale}"));
        let res = capture(&[
            "--url",
            &sim.url(),
            "--api",
            "completions",
            "--dataset",
            &ds.display().to_string(),
            "--schedule",
            "timestamps",
            "--time-scale",
            &scale.to_string(),
            "--warmup-requests",
            "10",
            "--out",
            &out.display().to_string(),
            "-q",
        ]);
        assert!(res.status.success(), "{}", String::from_utf8_lossy(&res.stderr));
        let run = read_run(&out).expect("run");
        assert_eq!(run.manifest.load.mode, LoadMode::Timestamps);
        assert_eq!(run.manifest.load.time_scale, Some(scale));
        assert_eq!(run.requests.len(), stamps.len(), "each row once");
        let mut lags = Vec::new();
        for (i, t) in stamps.iter().enumerate() {
            let r = &run.requests[&(i as u64)];
            let want = (*t as f64 * 1e6 * scale).round() as i64;
            assert!(
                (r.scheduled_ns - want).abs() < 1_000_000,
                "request {i}: scheduled {} ns, trace offset {want} ns",
                r.scheduled_ns
            );
            assert_eq!(r.phase, if i < 10 { Phase::Warmup } else { Phase::Measure });
            let sent = run.events[&(i as u64)]
                .iter()
                .find(|e| e.kind == recap_schemas::EventKind::Sent)
                .expect("sent");
            lags.push(sent.t_ns - r.scheduled_ns);
        }
        lags.sort_unstable();
        // Reported, not asserted: timing belongs to benchmarks.
        println!(
            "time-scale {scale}: client lag behind the trace p50 {} us, p99 {} us, max {} us",
            lags[lags.len() / 2] / 1000,
            lags[lags.len() * 99 / 100] / 1000,
            lags[lags.len() - 1] / 1000
        );
    }
}

#[test]
fn a_trace_with_fractional_timestamps_keeps_sub_millisecond_offsets() {
    let dir = tempfile::tempdir().expect("tmp");
    let ds = dir.path().join("fractional.jsonl");
    // 0.0, 0.375, 0.75, ... 12.5 ...: most offsets are not whole milliseconds.
    let stamps: Vec<f64> = (0..40).map(|i| f64::from(i) * 0.375).collect();
    let text: String = stamps
        .iter()
        .map(|t| format!("{{\"prompt\": \"row at {t:?} ms\", \"max_tokens\": 2, \"timestamp_ms\": {t:?}}}\n"))
        .collect();
    assert!(text.starts_with("{\"prompt\": \"row at 0.0 ms\"") && text.contains("\"timestamp_ms\": 12.375}"));
    std::fs::write(&ds, text).expect("write dataset");
    let sim = SimProcess::start(&["--ttft", "1ms", "--itl", "1ms"]).expect("recap-sim");
    let out = dir.path().join("run");
    let res = capture(&[
        "--url",
        &sim.url(),
        "--api",
        "completions",
        "--dataset",
        &ds.display().to_string(),
        "--schedule",
        "timestamps",
        "--time-scale",
        "2",
        "--out",
        &out.display().to_string(),
        "-q",
    ]);
    assert!(res.status.success(), "{}", String::from_utf8_lossy(&res.stderr));
    let run = read_run(&out).expect("run");
    assert_eq!(run.requests.len(), stamps.len(), "each row once");
    for (i, t) in stamps.iter().enumerate() {
        // The schedule is the trace's, to the nanosecond: 0.375 ms at scale 2 is 750,000 ns.
        let want = (t * 2.0 * 1e6).round() as i64;
        assert_eq!(run.requests[&(i as u64)].scheduled_ns, want, "row {i} at {t} ms");
    }
}

#[test]
fn timestamp_schedule_refuses_rows_without_or_against_time() {
    let dir = tempfile::tempdir().expect("tmp");
    let ds = dir.path().join("bad.jsonl");
    for (text, why) in [
        (
            "{\"prompt\": \"a\", \"timestamp_ms\": 5}\n{\"prompt\": \"b\"}\n",
            "row 2 has no `timestamp_ms`",
        ),
        (
            "{\"prompt\": \"a\", \"timestamp_ms\": 5}\n{\"prompt\": \"b\", \"timestamp_ms\": 4}\n",
            "row 2",
        ),
        (
            "{\"prompt\": \"a\", \"timestamp_ms\": 5.25}\n{\"prompt\": \"b\", \"timestamp_ms\": 5.125}\n",
            "row 2",
        ),
        // Not a time at all: refused while reading the dataset, naming the file's line.
        (
            "{\"prompt\": \"a\", \"timestamp_ms\": 0.5}\n\n{\"prompt\": \"b\", \"timestamp_ms\": -2.5}\n",
            "line 3: field `timestamp_ms`",
        ),
        (
            "{\"prompt\": \"a\", \"timestamp_ms\": 0.5}\n{\"prompt\": \"b\", \"timestamp_ms\": \"7\"}\n",
            "line 2: field `timestamp_ms`",
        ),
    ] {
        std::fs::write(&ds, text).expect("write");
        let res = capture(&[
            "--url",
            "http://127.0.0.1:9",
            "--dataset",
            &ds.display().to_string(),
            "--schedule",
            "timestamps",
            "--out",
            &dir.path().join("o").display().to_string(),
        ]);
        let err = String::from_utf8_lossy(&res.stderr);
        assert_eq!(res.status.code(), Some(2), "{err}");
        assert!(err.contains(why) && err.contains("bad.jsonl"), "{err}");
    }
    let res = capture(&[
        "--url",
        "http://127.0.0.1:9",
        "--concurrency",
        "2",
        "--schedule",
        "timestamps",
        "--out",
        "x",
    ]);
    assert_eq!(res.status.code(), Some(2), "closed loop and a schedule conflict");
}

#[test]
fn a_sweep_with_repeats_makes_a_folder_per_run_and_analyze_groups_repeats_by_point() {
    let dir = tempfile::tempdir().expect("tmp");
    let sim = SimProcess::start(&["--ttft", "1ms", "--itl", "1ms"]).expect("recap-sim");
    let out = dir.path().join("sweep");
    let res = capture(&[
        "--url",
        &sim.url(),
        "--concurrency",
        "1,2,4",
        "--repeat",
        "2",
        "--requests",
        "6",
        "--max-tokens",
        "4",
        "--pause",
        "10ms",
        "--out",
        &out.display().to_string(),
        "-q",
    ]);
    assert!(res.status.success(), "{}", String::from_utf8_lossy(&res.stderr));
    let plan: recap_schemas::plan::Plan =
        serde_json::from_slice(&std::fs::read(out.join("plan.json")).expect("plan.json")).expect("a plan");
    let dirs: Vec<&str> = plan.runs.iter().map(|r| r.dir.as_str()).collect();
    assert_eq!(dirs, ["c1-r1", "c1-r2", "c2-r1", "c2-r2", "c4-r1", "c4-r2"]);
    assert!(
        plan.runs
            .iter()
            .all(|r| r.status == recap_schemas::PlanRunStatus::Complete),
        "{plan:?}"
    );
    let mut runs = Vec::new();
    for r in &plan.runs {
        let run = read_run(&out.join(&r.dir)).expect("a run folder");
        let p = run.manifest.plan.as_ref().expect("manifest names its plan point");
        assert_eq!(
            (p.plan_id.as_str(), p.point.as_str(), p.repeat),
            (plan.plan_id.as_str(), r.point.as_str(), r.repeat)
        );
        assert_eq!(run.requests.len(), 6);
        runs.push(out.join(&r.dir).display().to_string());
    }
    let tokenizer = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/tokenizers/gpt2/tokenizer.json.gz");
    let sweep_out = dir.path().join("report");
    let mut args = vec!["sweep".to_string()];
    args.extend(runs.iter().cloned());
    args.extend(
        [
            "--tokenizer",
            &tokenizer.display().to_string(),
            "--out",
            &sweep_out.display().to_string(),
            "--json",
        ]
        .map(String::from),
    );
    let res = run_bin("analyze", &args);
    assert!(res.status.success(), "{}", String::from_utf8_lossy(&res.stderr));
    let sweep: serde_json::Value = serde_json::from_slice(&res.stdout).expect("json");
    let groups = sweep["groups"].as_array().expect("groups");
    let labels: Vec<(&str, u64)> = groups
        .iter()
        .map(|g| (g["label"].as_str().expect("label"), g["runs"].as_u64().expect("runs")))
        .collect();
    assert_eq!(labels, [("c1", 2), ("c2", 2), ("c4", 2)]);

    // A run whose workload differs is refused as a repeat of the same point.
    let odd = dir.path().join("odd");
    std::fs::create_dir_all(&odd).expect("mkdir");
    for part in ["requests", "events"] {
        std::fs::create_dir_all(odd.join(part)).expect("mkdir");
        for f in std::fs::read_dir(out.join("c1-r2").join(part)).expect("read") {
            let f = f.expect("entry").path();
            std::fs::copy(&f, odd.join(part).join(f.file_name().expect("name"))).expect("copy");
        }
    }
    let mut m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("c1-r2/manifest.json")).expect("read")).expect("json");
    m["endpoint"]["model"] = "another-model".into();
    std::fs::write(odd.join("manifest.json"), m.to_string()).expect("write");
    let res = run_bin(
        "analyze",
        &[
            "sweep",
            &runs[0],
            &odd.display().to_string(),
            "--tokenizer",
            &tokenizer.display().to_string(),
            "--out",
            &dir.path().join("report2").display().to_string(),
        ],
    );
    let err = String::from_utf8_lossy(&res.stderr);
    assert_eq!(res.status.code(), Some(2), "{err}");
    assert!(err.contains("workloads differ") && err.contains("model"), "{err}");
}

#[test]
fn ramp_warmup_and_cooldown_phases_are_recorded_per_request_by_schedule_time() {
    let dir = tempfile::tempdir().expect("tmp");
    let sim = SimProcess::start(&["--ttft", "5ms", "--itl", "1ms"]).expect("recap-sim");
    let ms = 1_000_000i64;
    let url = sim.url();
    // Closed loop: 4 workers joining over a 400 ms ramp; open loop: 200 req/s ramped over 400 ms.
    for (name, load) in [
        ("closed", vec!["--concurrency", "4"]),
        ("open", vec!["--rate", "200", "--arrival", "constant"]),
    ] {
        let out = dir.path().join(name);
        let mut args = vec![
            "--url",
            &url,
            "--max-tokens",
            "3",
            "--duration",
            "1500ms",
            "--ramp-up",
            "400ms",
            "--warmup",
            "600ms",
            "--cooldown",
            "300ms",
            "--out",
        ];
        let out_s = out.display().to_string();
        args.push(&out_s);
        args.push("-q");
        args.extend(load.iter().copied());
        let res = capture(&args);
        assert!(res.status.success(), "{name}: {}", String::from_utf8_lossy(&res.stderr));
        let run = read_run(&out).expect("run");
        assert_eq!(run.manifest.load.ramp_up_s, Some(0.4));
        let mut seen = std::collections::BTreeSet::new();
        for r in run.requests.values() {
            let want = match r.scheduled_ns {
                t if t < 400 * ms => Phase::Ramp,
                t if t < 600 * ms => Phase::Warmup,
                t if t >= 1200 * ms => Phase::Cooldown,
                _ => Phase::Measure,
            };
            assert_eq!(
                r.phase, want,
                "{name}: request {} scheduled at {} ns",
                r.request_id, r.scheduled_ns
            );
            seen.insert(r.phase);
        }
        assert_eq!(seen.len(), 4, "{name}: every phase appears: {seen:?}");
        let ramp: Vec<i64> = run
            .requests
            .values()
            .filter(|r| r.phase == Phase::Ramp)
            .map(|r| r.scheduled_ns)
            .collect();
        if name == "open" {
            // The rate grows linearly: a quarter of the ramp's 40 requests in its first half.
            let first_half = ramp.iter().filter(|t| **t < 200 * ms).count();
            assert!(
                (8..=12).contains(&first_half) && (36..=44).contains(&ramp.len()),
                "{first_half} of {}",
                ramp.len()
            );
        } else {
            // Worker k joins at k/4 of the ramp: nothing in flight on a 4th connection before 300 ms.
            let conns_before_100ms = run
                .requests
                .values()
                .filter(|r| r.scheduled_ns < 100 * ms)
                .filter_map(|r| r.connection_id)
                .collect::<std::collections::BTreeSet<_>>();
            assert_eq!(
                conns_before_100ms.len(),
                1,
                "one worker during the first quarter of the ramp"
            );
        }
    }
}

#[test]
fn max_error_rate_stops_a_run_and_its_plan_early() {
    let dir = tempfile::tempdir().expect("tmp");
    // Every prompt draws an injected 503.
    let sim = SimProcess::start(&["--ttft", "1ms", "--itl", "1ms", "--error-rate", "1.0"]).expect("recap-sim");
    let out = dir.path().join("plan");
    let stopped_early = |sim: &SimProcess, concurrency: &str, out: &Path| {
        capture(&[
            "--url",
            &sim.url(),
            "--concurrency",
            concurrency,
            "--requests",
            "5000",
            "--max-tokens",
            "2",
            "--max-error-rate",
            "0.5",
            "--out",
            &out.display().to_string(),
            "-q",
        ])
    };
    let res = stopped_early(&sim, "2,4", &out);
    // Stopped, and nothing succeeded: the plan exits 1 and says which run measured nothing.
    let stderr = String::from_utf8_lossy(&res.stderr);
    assert_eq!(res.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("capture: error: c2-r1: no request succeeded: ") && stderr.contains("most often `http_status`"),
        "{stderr}"
    );
    let run = read_run(&out.join("c2-r1")).expect("run");
    assert_eq!(run.manifest.status, recap_schemas::RunStatus::Stopped);
    let msg = run.manifest.status_message.clone().unwrap_or_default();
    assert!(msg.contains("--max-error-rate 0.5"), "{msg}");
    assert!(
        run.requests.len() < 5000,
        "stopped early: {} requests",
        run.requests.len()
    );
    assert!(run.requests.len() >= 20, "judged only from the 20th ended request");
    let plan: recap_schemas::plan::Plan =
        serde_json::from_slice(&std::fs::read(out.join("plan.json")).expect("plan.json")).expect("plan");
    let status: Vec<&str> = plan.runs.iter().map(|r| r.status.as_str()).collect();
    assert_eq!(status, ["stopped", "pending"], "the plan stops at the saturated point");

    // Past the knee but measuring: a stop condition that held is a finished measurement.
    let sim = SimProcess::start(&["--ttft", "1ms", "--itl", "1ms", "--error-rate", "0.8"]).expect("recap-sim");
    let out = dir.path().join("knee");
    let res = stopped_early(&sim, "2", &out);
    assert!(res.status.success(), "{}", String::from_utf8_lossy(&res.stderr));
    let run = read_run(&out).expect("run");
    assert_eq!(run.manifest.status, recap_schemas::RunStatus::Stopped);
    let counts = run.manifest.counts.expect("counts");
    assert!(counts.done > 0 && run.requests.len() < 5000, "{counts:?}");
}

#[test]
fn a_replay_sends_byte_identical_bodies_at_the_recorded_offsets() {
    let dir = tempfile::tempdir().expect("tmp");
    let (log_a, log_b) = (dir.path().join("a.bodies"), dir.path().join("b.bodies"));
    let sim_a = SimProcess::start(&[
        "--ttft",
        "1ms",
        "--itl",
        "1ms",
        "--log-bodies",
        &log_a.display().to_string(),
    ])
    .expect("recap-sim a");
    let sim_b = SimProcess::start(&[
        "--ttft",
        "1ms",
        "--itl",
        "1ms",
        "--log-bodies",
        &log_b.display().to_string(),
    ])
    .expect("recap-sim b");
    let (run_a, run_b) = (dir.path().join("a"), dir.path().join("b"));
    let res = capture(&[
        "--url",
        &sim_a.url(),
        "--model",
        "model-a",
        "--rate",
        "100",
        "--requests",
        "40",
        "--warmup-requests",
        "3",
        "--max-tokens",
        "3",
        "--body-extra",
        r#"{"temperature": 0.7, "top_p": 0.95}"#,
        "--out",
        &run_a.display().to_string(),
        "-q",
    ]);
    assert!(res.status.success(), "{}", String::from_utf8_lossy(&res.stderr));
    let res = capture(&[
        "--replay",
        &run_a.display().to_string(),
        "--url",
        &sim_b.url(),
        "--out",
        &run_b.display().to_string(),
        "-q",
    ]);
    assert!(res.status.success(), "{}", String::from_utf8_lossy(&res.stderr));
    let (a, b) = (read_run(&run_a).expect("a"), read_run(&run_b).expect("b"));
    let link = b.manifest.replay_of.as_ref().expect("the manifest links its source");
    assert_eq!(link.run_id, a.manifest.run_id);
    assert_eq!(b.manifest.dataset, a.manifest.dataset, "same workload");
    assert_eq!(b.manifest.endpoint.model, "model-a");
    assert_eq!(b.requests.len(), a.requests.len());
    for (ra, rb) in a.requests.values().zip(b.requests.values()) {
        assert_eq!((ra.request_id, ra.phase), (rb.request_id, rb.phase));
        assert_eq!((&ra.prompt, &ra.messages_json), (&rb.prompt, &rb.messages_json));
        assert!(
            (ra.scheduled_ns - rb.scheduled_ns).abs() < 1_000,
            "request {}: offset kept",
            ra.request_id
        );
    }
    // What the two servers received, byte for byte.
    let (got_a, got_b) = (sorted_lines(&log_a), sorted_lines(&log_b));
    assert_eq!(got_a.len(), 43);
    assert_eq!(got_a, got_b, "the replay's bodies are the source's, byte for byte");

    // Another model: only the model differs.
    let run_c = dir.path().join("c");
    let res = capture(&[
        "--replay",
        &run_a.display().to_string(),
        "--url",
        &sim_b.url(),
        "--model",
        "model-b",
        "--out",
        &run_c.display().to_string(),
        "-q",
    ]);
    assert!(res.status.success(), "{}", String::from_utf8_lossy(&res.stderr));
    let all_b = std::fs::read_to_string(&log_b).expect("bodies");
    let with_b: Vec<&str> = all_b.lines().filter(|l| l.contains("\"model-b\"")).collect();
    assert_eq!(with_b.len(), 43);
    let mut swapped: Vec<String> = with_b.iter().map(|l| l.replace("\"model-b\"", "\"model-a\"")).collect();
    swapped.sort();
    assert_eq!(swapped, got_a);
}

/// A child process SIGKILLed (by its PID) and reaped if the test ends before it exits.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

#[test]
fn ctrl_c_during_the_pause_between_runs_ends_the_plan_and_plan_json_says_so() {
    let dir = tempfile::tempdir().expect("tmp");
    let sim = SimProcess::start(&["--ttft", "1ms", "--itl", "1ms"]).expect("recap-sim");
    let out = dir.path().join("plan");
    let url = sim.url();
    let out_s = out.display().to_string();
    let mut child = Reaped(spawn_bin(
        "capture",
        &[
            "--url",
            &url,
            "--concurrency",
            "1,2,4",
            "--requests",
            "4",
            "--max-tokens",
            "2",
            "--pause",
            "1h",
            "--out",
            &out_s,
            "-q",
        ],
    ));
    let pid = child.0.id();
    // Ready: the first run is recorded complete in plan.json (so the plan is in its pause) and
    // capture handles SIGINT (so the signal tests that, not the default action).
    let plan_json = out.join("plan.json");
    wait_for_child(
        &mut child.0,
        "the first run complete in plan.json, SIGINT caught",
        || {
            let plan: serde_json::Value = serde_json::from_slice(&std::fs::read(&plan_json).ok()?).ok()?;
            (plan["runs"][0]["status"] == "complete" && catches_signal(pid, 2)).then_some(())
        },
    );
    let kill = Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(kill.success());
    // Generous: the pause is an hour, so anything that waits for it never exits here.
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.0.try_wait().expect("wait") {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "capture did not end the plan after SIGINT during --pause"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(130), "interrupted");
    let plan: serde_json::Value = serde_json::from_slice(&std::fs::read(&plan_json).expect("plan.json")).expect("json");
    assert_eq!(plan["status"], "interrupted", "{plan:#}");
    let msg = plan["status_message"].as_str().unwrap_or_default();
    assert!(msg.contains("SIGINT") && msg.contains("c2-r1"), "{msg}");
    let runs: Vec<(&str, &str)> = plan["runs"]
        .as_array()
        .expect("runs")
        .iter()
        .map(|r| (r["dir"].as_str().expect("dir"), r["status"].as_str().expect("status")))
        .collect();
    assert_eq!(
        runs,
        [("c1-r1", "complete"), ("c2-r1", "pending"), ("c4-r1", "pending")],
        "the runs not started are not claimed"
    );
    assert!(!out.join("c2-r1").exists(), "the next run never started");
    let first = read_run(&out.join("c1-r1")).expect("the first run");
    assert_eq!(first.manifest.status, recap_schemas::RunStatus::Complete);
    assert_eq!(first.requests.len(), 4);
    // Still a plan: its runs read as before.
    let typed: recap_schemas::plan::Plan = serde_json::from_value(plan).expect("a plan");
    assert_eq!(typed.runs.len(), 3);
}
