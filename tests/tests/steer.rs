//! End-to-end: live numbers steer a capture against `recap-sim`, whose TTFT rises with the
//! requests it is running by a known rule (`--ttft-per-running`): a capacity search finds the
//! knee that rule puts there, and `--stop-when` stops a run with its reason.

use std::path::Path;

use recap_tests::harness::{run_bin, SimProcess};
use serde_json::Value;

fn json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The sim's rule: at concurrency c (every worker busy), TTFT = BASE + (c - 1) x PER_RUNNING.
const BASE_MS: f64 = 2.0;
const PER_RUNNING_MS: f64 = 20.0;

/// `recap-sim` with the rule above (short answers, so a point takes little time).
fn knee_sim() -> SimProcess {
    SimProcess::start(&[
        "--ttft",
        "2ms",
        "--ttft-per-running",
        "20ms",
        "--itl",
        "1ms",
        "--output-tokens",
        "5",
    ])
    .expect("sim")
}

#[test]
fn a_capacity_search_finds_the_known_knee() {
    let sim = knee_sim();
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("search");
    // Halfway between two levels of the rule, so scheduling noise of a few ms cannot move it.
    let threshold_ms = BASE_MS + 12.5 * PER_RUNNING_MS;
    let until = format!("ttft_p90>{threshold_ms}ms");
    let o = run_bin(
        "capture",
        &[
            "--url",
            &sim.url(),
            "--out",
            out.to_str().expect("utf-8"),
            "--quiet",
            "--requests",
            "40",
            "--concurrency",
            "search:1..64",
            "--until",
            &until,
            "--stop-min-samples",
            "20",
            // Every point publishes through one address and leaves its final snapshot.
            "--live",
            "127.0.0.1:0",
        ],
    );
    assert!(o.status.success(), "capture: {}", String::from_utf8_lossy(&o.stderr));
    // The highest c with BASE + (c - 1) x PER_RUNNING below the threshold.
    let knee = ((threshold_ms - BASE_MS) / PER_RUNNING_MS).floor() as u64 + 1;
    assert_eq!(knee, 13);
    let plan = json(&out.join("plan.json"));
    let search = &plan["search"];
    assert_eq!(search["best"], format!("c{knee}"), "{search:#}");
    assert_eq!(search["best_level"], knee as f64);
    assert_eq!(search["until"], until);
    assert_eq!(plan["status"], "complete");
    let levels: Vec<f64> = search["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| s["level"].as_f64().expect("level"))
        .collect();
    // Doubling from 1 until the condition holds (16), then bisection: 12, 14, 13.
    assert_eq!(levels, vec![1.0, 2.0, 4.0, 8.0, 16.0, 12.0, 14.0, 13.0]);
    // The search's bound on its runs: doublings from 1 to 64, then bisections of 64 levels.
    let most_runs = (64f64.log2().ceil() + 1.0 + 63f64.log2().ceil()) as u64;
    for (i, step) in search["steps"].as_array().expect("steps").iter().enumerate() {
        let level = step["level"].as_f64().expect("level");
        let live = json(&out.join(step["dir"].as_str().expect("dir")).join("live.json"));
        assert_eq!(live["state"], "complete");
        assert_eq!(live["plan"]["point"], step["point"]);
        assert_eq!(live["plan"]["index"], i as u64 + 1);
        assert_eq!(live["plan"]["total"], most_runs);
        assert_eq!(live["ttft"]["count"], step["samples"], "{step}");
        assert_eq!(step["held"], level > knee as f64, "{step}");
        // Each point is a normal run folder, named in plan.json's runs too.
        let manifest = json(&out.join(step["dir"].as_str().expect("dir")).join("manifest.json"));
        assert_eq!(manifest["load"]["concurrency"], level as u64);
        assert_eq!(manifest["plan"]["point"], step["point"]);
        assert_eq!(live["counts"]["done"], manifest["counts"]["done"]);
        assert_eq!(live["counts"]["sent"], manifest["counts"]["requests"]);
        if step["status"] == "stopped" {
            let why = manifest["status_message"].as_str().expect("message");
            assert!(why.contains(&format!("--stop-when {until}")), "{why}");
            assert_eq!(step["held"], true);
        }
        // The recorded value sits on the rule's side of the threshold.
        let v = step["value_ms"].as_f64().expect("value");
        assert_eq!(v > threshold_ms, level > knee as f64, "{step}");
    }
    assert_eq!(plan["runs"].as_array().expect("runs").len(), levels.len());
}

#[test]
fn stop_when_ends_a_run_with_its_reason() {
    let sim = knee_sim();
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("run");
    // c = 8: TTFT settles at 2 + 7 x 20 = 142 ms, over the 100 ms condition.
    let o = run_bin(
        "capture",
        &[
            "--url",
            &sim.url(),
            "--out",
            out.to_str().expect("utf-8"),
            "--quiet",
            "--concurrency",
            "8",
            "--requests",
            "2000",
            "--stop-when",
            "e2e_p50>10s,ttft_p50>100ms",
            "--stop-min-samples",
            "16",
        ],
    );
    assert!(
        o.status.success(),
        "a stop condition is a finished measurement: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let m = json(&out.join("manifest.json"));
    assert_eq!(m["status"], "stopped");
    let why = m["status_message"].as_str().expect("message");
    assert!(
        why.contains("--stop-when ttft_p50>100ms") && why.contains("ttft_p50 was"),
        "{why}"
    );
    assert!(
        m["counts"]["requests"].as_u64().expect("requests") < 2000,
        "stopped early"
    );
}

#[test]
fn steering_flags_are_checked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("x");
    let out = out.to_str().expect("utf-8");
    for (args, says) in [
        (
            vec!["--concurrency", "4", "--until", "ttft_p99>1s"],
            "--until goes with a capacity search",
        ),
        (vec!["--concurrency", "search:1..64"], "needs --until"),
        (
            vec!["--concurrency", "search:1..64,128", "--until", "ttft_p99>1s"],
            "only value",
        ),
        (
            vec!["--concurrency", "search:8..4", "--until", "ttft_p99>1s"],
            "0 < LO < HI",
        ),
        (
            vec!["--concurrency", "search:1..64", "--until", "ttft_p99<1s"],
            "use `>`",
        ),
        (vec!["--stop-when", "tpot_p99>1s"], "unknown metric"),
        (vec!["--live", "256.0.0.1:1"], "--live 256.0.0.1:1"),
    ] {
        let mut a = vec!["--url", "http://127.0.0.1:9", "--out", out];
        a.extend(args.iter().copied());
        let o = run_bin("capture", &a);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?} should say {says:?}: {err}");
    }
}
