//! End-to-end: multi-turn sessions against `recap-sim`.
//!
//! Each later turn must carry the conversation so far with the *exact* answers the server
//! gave: checked on the server's side, from the simulator's own logs (what it answered to
//! each prompt, and every body it received), not from what capture recorded.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use recap_schemas::EventKind;
use recap_tests::harness::{run_bin, SimProcess};
use recap_tests::runs::{read_run, Run};
use recap_tests::sim::{key_hash, request_key};
use serde_json::{json, Value};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn sessions_dataset() -> String {
    root().join("fixtures/datasets/sessions.jsonl").display().to_string()
}

/// The dataset's rows by (session, turn).
fn dataset_rows() -> BTreeMap<(String, u32), Value> {
    std::fs::read_to_string(sessions_dataset())
        .expect("dataset")
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("json");
            let key = (
                v["session_id"].as_str().expect("session").to_string(),
                v["turn"].as_u64().expect("turn") as u32,
            );
            (key, v)
        })
        .collect()
}

/// What the simulator answered, by prompt key hash, and the `x-session-id` it saw.
fn sim_answers(log: &Path) -> HashMap<u64, (String, Option<String>)> {
    std::fs::read_to_string(log)
        .expect("sim log")
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("json");
            (
                v["key_hash"].as_u64().expect("hash"),
                (
                    v["content"].as_str().expect("a fault-free answer").to_string(),
                    v["session_id"].as_str().map(String::from),
                ),
            )
        })
        .collect()
}

fn messages(run: &Run, id: u64) -> Vec<Value> {
    let text = run.requests[&id].messages_json.as_deref().expect("chat");
    serde_json::from_str(text).expect("messages json")
}

/// Request ids by (session, turn), each pair sent exactly once.
fn by_turn(run: &Run) -> BTreeMap<(String, u32), u64> {
    let mut out = BTreeMap::new();
    for r in run.requests.values() {
        let key = (
            r.session_id.clone().expect("every request is a session turn"),
            r.turn.expect("and has its turn"),
        );
        assert!(out.insert(key.clone(), r.request_id).is_none(), "{key:?} sent twice");
    }
    out
}

fn terminal_ns(run: &Run, id: u64) -> i64 {
    let t = run.terminals(id);
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].kind, EventKind::Done, "request {id}: {:?}", t[0].error_message);
    t[0].t_ns
}

#[test]
fn later_turns_carry_the_answers_the_server_gave() {
    let dir = tempfile::tempdir().expect("tmp");
    let (log, bodies) = (dir.path().join("sim.jsonl"), dir.path().join("bodies.jsonl"));
    let sim = SimProcess::start(&[
        "--ttft",
        "2ms",
        "--itl",
        "1ms",
        "--log",
        &log.display().to_string(),
        "--log-bodies",
        &bodies.display().to_string(),
    ])
    .expect("recap-sim");
    let out = dir.path().join("run");
    let res = run_bin(
        "capture",
        &[
            "--url",
            &sim.url(),
            "--dataset",
            &sessions_dataset(),
            "--sessions",
            "2",
            "--think-time",
            "40ms",
            "--session-header",
            "x-session-id",
            "--out",
            &out.display().to_string(),
            "-q",
        ],
    );
    assert!(res.status.success(), "{}", String::from_utf8_lossy(&res.stderr));
    let run = read_run(&out).expect("run");
    let spec = run
        .manifest
        .load
        .sessions
        .as_ref()
        .expect("manifest records the sessions");
    assert_eq!((spec.sessions, spec.think_time_s), (4, Some(0.04)));
    assert_eq!(spec.header.as_deref(), Some("x-session-id"));
    assert_eq!(run.manifest.load.concurrency, Some(2));

    let turns = by_turn(&run);
    assert_eq!(turns.len(), 12, "4 sessions x 3 turns, each once");
    let rows = dataset_rows();
    let answers = sim_answers(&log);
    for ((session, turn), id) in &turns {
        let msgs = messages(&run, *id);
        let key = request_key(&json!({ "messages": msgs }));
        let (answer, header) = &answers[&key_hash(&key)];
        assert_eq!(header.as_deref(), Some(session.as_str()), "the sticky header");
        assert_eq!(&run.content(*id), answer, "recorded what the server answered");
        // The body: each earlier turn's messages, then the server's answer to it, then ours.
        let mut want = Vec::new();
        for k in 0..*turn {
            want.extend(
                rows[&(session.clone(), k)]["messages"]
                    .as_array()
                    .expect("msgs")
                    .clone(),
            );
            let earlier = turns[&(session.clone(), k)];
            want.push(json!({"role": "assistant", "content": run.content(earlier)}));
        }
        want.extend(
            rows[&(session.clone(), *turn)]["messages"]
                .as_array()
                .expect("msgs")
                .clone(),
        );
        assert_eq!(msgs, want, "{session} turn {turn}");
        if *turn > 0 {
            // Sent after the previous turn's answer plus the think time, never before.
            let prev = turns[&(session.clone(), turn - 1)];
            let gap = run.requests[id].scheduled_ns - terminal_ns(&run, prev);
            assert!(
                gap >= 40_000_000,
                "{session} turn {turn}: due {gap} ns after the answer"
            );
        }
    }
    // Server side only: every assistant message any body carried is exactly what the server
    // answered to the conversation before it.
    let mut checked = 0;
    for line in std::fs::read_to_string(&bodies).expect("bodies").lines() {
        let body: Value = serde_json::from_str(line).expect("json");
        let msgs = body["messages"].as_array().expect("chat");
        for (j, m) in msgs.iter().enumerate() {
            if m["role"] == "assistant" {
                let key = request_key(&json!({ "messages": msgs[..j] }));
                assert_eq!(
                    m["content"].as_str(),
                    Some(answers[&key_hash(&key)].0.as_str()),
                    "an assistant message the server never said"
                );
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 4 * (1 + 2), "turn 1 carries one answer, turn 2 two");

    // analyze reports metrics per turn index.
    let report = run_bin(
        "analyze",
        &[
            "report",
            &out.display().to_string(),
            "--tokenizer",
            &root()
                .join("fixtures/tokenizers/gpt2/tokenizer.json.gz")
                .display()
                .to_string(),
            "--json",
            "-q",
        ],
    );
    assert!(report.status.success(), "{}", String::from_utf8_lossy(&report.stderr));
    let v: Value = serde_json::from_slice(&report.stdout).expect("json");
    let by = v[0]["by_turn"].as_array().expect("by_turn");
    let got: Vec<(u64, u64, u64)> = by
        .iter()
        .map(|t| {
            (
                t["turn"].as_u64().expect("turn"),
                t["requests"].as_u64().expect("n"),
                t["metrics"]["ttft_ms"]["count"].as_u64().expect("count"),
            )
        })
        .collect();
    assert_eq!(got, [(0, 4, 4), (1, 4, 4), (2, 4, 4)]);
    // Input grows with the history: turn 2's ISL is above turn 0's in every session.
    let isl = |t: usize| by[t]["metrics"]["isl_tokens"]["min"].as_f64().expect("isl");
    assert!(isl(2) > isl(0), "turn 2 min ISL {} vs turn 0 {}", isl(2), isl(0));
}

#[test]
fn open_loop_sessions_with_the_datasets_answers() {
    let dir = tempfile::tempdir().expect("tmp");
    let bodies = dir.path().join("bodies.jsonl");
    // llama.cpp's way: the connection closes after every stream although kept alive.
    let sim = SimProcess::start(&[
        "--ttft",
        "1ms",
        "--itl",
        "1ms",
        "--flavor",
        "llamacpp",
        "--close-after-stream",
        "--log-bodies",
        &bodies.display().to_string(),
    ])
    .expect("recap-sim");
    let out = dir.path().join("run");
    let res = run_bin(
        "capture",
        &[
            "--url",
            &sim.url(),
            "--dataset",
            &sessions_dataset(),
            "--rate",
            "50",
            "--arrival",
            "constant",
            "--session-history",
            "dataset",
            "--think-time",
            "from-dataset",
            "--out",
            &out.display().to_string(),
            "-q",
        ],
    );
    assert!(res.status.success(), "{}", String::from_utf8_lossy(&res.stderr));
    let run = read_run(&out).expect("run");
    let turns = by_turn(&run);
    assert_eq!(turns.len(), 12);
    let rows = dataset_rows();
    let mut firsts = Vec::new();
    for ((session, turn), id) in &turns {
        let msgs = messages(&run, *id);
        let mut want = Vec::new();
        for k in 0..*turn {
            let row = &rows[&(session.clone(), k)];
            want.extend(row["messages"].as_array().expect("msgs").clone());
            want.push(json!({"role": "assistant", "content": row["reference_output"]}));
        }
        want.extend(
            rows[&(session.clone(), *turn)]["messages"]
                .as_array()
                .expect("msgs")
                .clone(),
        );
        assert_eq!(msgs, want, "{session} turn {turn}: the dataset's answers");
        let sched = run.requests[id].scheduled_ns;
        if *turn == 0 {
            firsts.push(sched);
        } else {
            let think = rows[&(session.clone(), *turn)]["think_time_ms"]
                .as_i64()
                .expect("think")
                * 1_000_000;
            let prev = turns[&(session.clone(), turn - 1)];
            assert!(sched - terminal_ns(&run, prev) >= think, "{session} turn {turn}");
        }
    }
    // Sessions start at the rate: 20 ms apart.
    firsts.sort_unstable();
    assert_eq!(firsts, [0, 20_000_000, 40_000_000, 60_000_000]);
    let received = std::fs::read_to_string(&bodies).expect("bodies");
    assert_eq!(received.lines().count(), 12, "no retries: nothing sent twice");
    assert!(received.contains("Reference answer 1 about lanterns."));
}

#[test]
fn session_flags_and_datasets_are_checked() {
    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path().join("run").display().to_string();
    let url = "http://127.0.0.1:9";
    let refused = |args: &[&str], says: &str| {
        let res = run_bin("capture", args);
        let err = String::from_utf8_lossy(&res.stderr).to_string();
        assert_eq!(res.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    };
    refused(&["--url", url, "--out", &out, "--sessions", "2"], "session_id");
    let ds = sessions_dataset();
    refused(
        &["--url", url, "--out", &out, "--dataset", &ds, "--concurrency", "2"],
        "--sessions",
    );
    refused(
        &["--url", url, "--out", &out, "--dataset", &ds, "--think-time", "soon"],
        "--think-time",
    );
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(
        &bad,
        "{\"session_id\":\"a\",\"turn\":0,\"prompt\":\"x\"}\n{\"session_id\":\"a\",\"turn\":1,\"prompt\":\"y\"}\n",
    )
    .expect("write");
    refused(
        &[
            "--url",
            url,
            "--out",
            &out,
            "--dataset",
            &bad.display().to_string(),
            "--session-history",
            "dataset",
        ],
        "row 1",
    );
    assert!(!Path::new(&out).exists(), "nothing written for refused flags");
}
