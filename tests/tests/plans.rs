//! End-to-end: load plans beyond one fixed concurrency or rate, against `recap-sim`.
//!
//! `--schedule timestamps` sends each dataset row at its own `timestamp_ms` offset (scaled):
//! the recorded `scheduled_ns` are those offsets, and the client lag behind them is measured.

use std::path::Path;
use std::process::Command;

use recap_schemas::{LoadMode, Phase};
use recap_tests::harness::{workspace_bin, SimProcess};
use recap_tests::runs::read_run;

fn capture(args: &[&str]) -> std::process::Output {
    Command::new(workspace_bin("capture"))
        .args(args)
        .output()
        .expect("run capture")
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
