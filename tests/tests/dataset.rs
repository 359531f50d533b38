//! End-to-end: `analyze dataset` writes rows whose lengths hold when counted independently:
//! the `tokenizers` crate directly (not Recap's count-only path) on prompts rendered here by
//! hand the way the server's chat template renders one user message. Trace rows keep the
//! trace's timestamps and give equal hash ids byte-identical text; a generated dataset sent
//! through capture is reported 100 % planned-equal by analyze.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Output;

use recap_tests::harness::{run_bin, SimProcess};
use serde_json::Value;
use tokenizers::Tokenizer;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn fixture(rel: &str) -> String {
    root().join("fixtures").join(rel).display().to_string()
}

fn tokenizer_file(name: &str) -> String {
    fixture(&format!("tokenizers/{name}/tokenizer.json.gz"))
}

/// The tokenizer of a (possibly gzipped) file, loaded by the `tokenizers` crate alone.
fn load(path: &str) -> Tokenizer {
    recap_tests::sim::load_tokenizer(Path::new(path)).expect("tokenizer")
}

fn analyze(args: &[&str]) -> Output {
    run_bin("analyze", args)
}

fn ok(out: Output) -> Output {
    assert!(
        out.status.success(),
        "analyze failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn read_rows(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .expect("read dataset")
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON row"))
        .collect()
}

/// How a server renders one user message with Qwen3's template (and the ChatML fixture):
/// written out here, not through any template engine.
fn chatml(content: &str) -> String {
    format!("<|im_start|>user\n{content}<|im_end|>\n<|im_start|>assistant\n")
}

fn content(row: &Value) -> &str {
    match (row.get("messages"), row.get("input")) {
        (Some(m), _) => m[0]["content"].as_str().expect("content"),
        (None, Some(i)) => i[0].as_str().expect("input text"),
        (None, None) => row["prompt"].as_str().expect("prompt"),
    }
}

/// Input tokens of a row as the server counts them: chat through the template without added
/// special tokens, completions and embedded texts with the tokenizer's own.
fn server_isl(tok: &Tokenizer, row: &Value) -> u32 {
    let enc = if row.get("messages").is_some() {
        tok.encode(chatml(content(row)), false)
    } else {
        tok.encode(content(row), true)
    };
    enc.expect("encode").len() as u32
}

/// Generates with `args`, then requires every row's independent count to equal its
/// `isl_tokens` (and returns the rows).
fn generate_and_check(dir: &Path, name: &str, tokenizer: &str, args: &[&str]) -> Vec<Value> {
    let out = dir.join(format!("{name}.jsonl"));
    let out_s = out.display().to_string();
    let mut all = vec!["dataset", "synthetic", "--tokenizer", tokenizer, "--out", &out_s, "-q"];
    all.extend_from_slice(args);
    ok(analyze(&all));
    let rows = read_rows(&out);
    let tok = load(tokenizer);
    let wrong: Vec<(usize, u32, u64)> = rows
        .iter()
        .enumerate()
        .map(|(i, r)| (i, server_isl(&tok, r), r["isl_tokens"].as_u64().expect("isl_tokens")))
        .filter(|(_, got, planned)| u64::from(*got) != *planned)
        .collect();
    assert!(
        wrong.is_empty(),
        "{name}: rows whose input length is not the planned one: {wrong:?}"
    );
    rows
}

#[test]
fn synthetic_prompts_count_exactly_for_chat_and_completions_with_qwen3_and_gpt2() {
    let dir = tempfile::tempdir().expect("tmp");
    let qwen3 = tokenizer_file("qwen3");
    let gpt2 = tokenizer_file("gpt2");
    let chatml_template = fixture("templates/chatml.jinja");
    // Fixed lengths: every row is exactly the target.
    for (name, tok, extra) in [
        ("qwen3-chat", &qwen3, vec![]),
        ("qwen3-completions", &qwen3, vec!["--completions"]),
        ("gpt2-completions", &gpt2, vec!["--completions"]),
        ("gpt2-chat", &gpt2, vec!["--chat-template", chatml_template.as_str()]),
    ] {
        let mut args = vec!["--count", "40", "--isl", "257", "--osl", "32", "--seed", "5"];
        args.extend(extra);
        let rows = generate_and_check(dir.path(), name, tok, &args);
        assert_eq!(rows.len(), 40);
        assert!(
            rows.iter().all(|r| r["isl_tokens"] == 257 && r["max_tokens"] == 32),
            "{name}"
        );
        // Text that reads like text: words and sentences, not token ids.
        let c = content(&rows[0]);
        assert!(c.contains(". ") && c.split_whitespace().count() > 150, "{name}: {c}");
    }
    // Distributions: normal and uniform lengths, each row exact.
    let normal = generate_and_check(
        dir.path(),
        "normal",
        &qwen3,
        &[
            "--count",
            "60",
            "--isl",
            "300",
            "--isl-stddev",
            "80",
            "--osl",
            "uniform:1:9",
        ],
    );
    let isl: Vec<u64> = normal.iter().map(|r| r["isl_tokens"].as_u64().expect("isl")).collect();
    assert!(
        isl.iter().collect::<std::collections::BTreeSet<_>>().len() > 20,
        "{isl:?}"
    );
    assert!(normal
        .iter()
        .all(|r| (1..=9).contains(&r["max_tokens"].as_u64().expect("max_tokens"))));
    generate_and_check(
        dir.path(),
        "uniform-gpt2",
        &gpt2,
        &[
            "--count",
            "40",
            "--isl",
            "uniform:20:900",
            "--osl",
            "8",
            "--completions",
        ],
    );
}

#[test]
fn shared_prefixes_are_the_same_first_tokens_within_a_group() {
    let dir = tempfile::tempdir().expect("tmp");
    for (name, tokenizer, api) in [
        ("prefix-qwen3", tokenizer_file("qwen3"), "--chat"),
        ("prefix-gpt2", tokenizer_file("gpt2"), "--completions"),
    ] {
        let rows = generate_and_check(
            dir.path(),
            name,
            &tokenizer,
            &[
                "--count",
                "48",
                "--isl",
                "400",
                "--isl-stddev",
                "40",
                "--osl",
                "16",
                "--shared-prefix",
                "128",
                "--prefix-groups",
                "3",
                "--ignore-eos",
                api,
            ],
        );
        let tok = load(&tokenizer);
        let mut by_group: BTreeMap<u64, Vec<Vec<u32>>> = BTreeMap::new();
        for r in &rows {
            assert_eq!(r["ignore_eos"], true);
            assert_eq!(r["min_tokens"], r["max_tokens"]);
            let ids = tok.encode(content(r), false).expect("encode").get_ids().to_vec();
            by_group
                .entry(r["prefix_group"].as_u64().expect("prefix_group"))
                .or_default()
                .push(ids);
        }
        assert_eq!(by_group.len(), 3, "{name}: every group is drawn");
        let firsts: Vec<&[u32]> = by_group.values().map(|g| &g[0][..128]).collect();
        for (g, members) in &by_group {
            for ids in members {
                assert_eq!(
                    &ids[..128],
                    &members[0][..128],
                    "{name}: group {g} shares its first 128 tokens"
                );
            }
        }
        assert!(
            firsts[0] != firsts[1] && firsts[1] != firsts[2],
            "{name}: groups have distinct prefixes"
        );
        // inspect agrees: every plan holds with this tokenizer, three groups, and at least the
        // 128 prefix tokens of every row are shared with another row.
        let path = dir.path().join(format!("{name}.jsonl"));
        let out = ok(analyze(&[
            "dataset",
            "inspect",
            &path.display().to_string(),
            "--tokenizer",
            &tokenizer,
            "--json",
        ]));
        let ins: Value = serde_json::from_slice(&out.stdout).expect("json");
        assert_eq!(
            (ins["rows"].as_u64(), ins["planned_equal"].as_u64()),
            (Some(48), Some(48)),
            "{ins}"
        );
        assert_eq!(ins["prefix_groups"], 3);
        let total: u64 = rows.iter().map(|r| r["isl_tokens"].as_u64().expect("isl")).sum();
        let shared = ins["shared_prefix_tokens"].as_u64().expect("shared");
        assert!(shared >= 48 * 128 && shared < total, "{name}: {shared} of {total}");
    }
}

#[test]
fn any_byte_level_bpe_tokenizer_a_user_brings_counts_exactly() {
    // Two tokenizers no one ships: GPT-2 with only its first 6,000 merges (fewer whole
    // words), and GPT-2's vocabulary behind Llama-3's pre-tokenizer regex.
    let dir = tempfile::tempdir().expect("tmp");
    let raw = {
        let mut s = String::new();
        flate2::read::GzDecoder::new(std::fs::File::open(tokenizer_file("gpt2")).expect("open"))
            .read_to_string(&mut s)
            .expect("gunzip");
        s
    };
    let base: Value = serde_json::from_str(&raw).expect("json");
    let mut fewer = base.clone();
    let merges = fewer["model"]["merges"].as_array_mut().expect("merges");
    merges.truncate(6000);
    let mut llama3_split = base;
    llama3_split["pre_tokenizer"] = serde_json::json!({
        "type": "Sequence",
        "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}, "behavior": "Isolated", "invert": false},
            {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}
        ]
    });
    for (name, json) in [("fewer-merges", fewer), ("llama3-split", llama3_split)] {
        let folder = dir.path().join(name);
        std::fs::create_dir_all(&folder).expect("mkdir");
        let path = folder.join("tokenizer.json");
        std::fs::write(&path, serde_json::to_vec(&json).expect("json")).expect("write");
        let path = path.display().to_string();
        for api in ["--completions", "--chat"] {
            let mut args = vec![
                "--count",
                "30",
                "--isl",
                "uniform:50:700",
                "--osl",
                "4",
                "--seed",
                "9",
                api,
            ];
            let template = fixture("templates/chatml.jinja");
            if api == "--chat" {
                args.extend(["--chat-template", template.as_str()]);
            }
            generate_and_check(dir.path(), &format!("{name}{api}"), &path, &args);
        }
    }
}

#[test]
fn mooncake_trace_rows_keep_timestamps_and_equal_blocks_are_identical_text() {
    let dir = tempfile::tempdir().expect("tmp");
    let trace_path = fixture("traces/mooncake-sample.jsonl");
    let trace: Vec<Value> = std::fs::read_to_string(&trace_path)
        .expect("trace")
        .lines()
        .map(|l| serde_json::from_str(l).expect("trace line"))
        .collect();
    let qwen3 = tokenizer_file("qwen3");
    let out = dir.path().join("mooncake.jsonl");
    ok(analyze(&[
        "dataset",
        "trace",
        &trace_path,
        "--format",
        "mooncake",
        "--tokenizer",
        &qwen3,
        "--completions",
        "--out",
        &out.display().to_string(),
        "-q",
    ]));
    let rows = read_rows(&out);
    assert_eq!(rows.len(), trace.len());
    let tok = load(&qwen3);
    for (r, t) in rows.iter().zip(&trace) {
        assert_eq!(r["timestamp_ms"], t["timestamp"], "timestamps are the trace's");
        assert_eq!(r["max_tokens"], t["output_length"]);
        assert_eq!(u64::from(server_isl(&tok, r)), t["input_length"].as_u64().expect("len"));
    }
    // Rows whose hash_ids start alike start with byte-identical blocks: the text up to the
    // end of their k-th common 512-token block is the same, and the next block differs.
    let ids = |t: &Value| -> Vec<u64> {
        t["hash_ids"]
            .as_array()
            .expect("hash_ids")
            .iter()
            .map(|v| v.as_u64().expect("id"))
            .collect()
    };
    let mut pairs = 0;
    for i in 0..trace.len() {
        for j in i + 1..trace.len() {
            let (a, b) = (ids(&trace[i]), ids(&trace[j]));
            let common = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
            let (ta, tb) = (content(&rows[i]), content(&rows[j]));
            let enc_a = tok.encode(ta, false).expect("encode");
            // Only whole blocks both rows hold in full.
            let full = |t: &Value| (t["input_length"].as_u64().expect("len") / 512) as usize;
            let k = common.min(full(&trace[i])).min(full(&trace[j]));
            if k == 0 {
                continue;
            }
            let end = enc_a.get_offsets()[k * 512 - 1].1;
            assert_eq!(&ta[..end], &tb[..end], "rows {i} and {j} share {k} blocks");
            pairs += 1;
        }
    }
    assert!(pairs > 10, "the fixture has shared blocks to compare ({pairs})");
}

#[test]
fn burstgpt_and_sharegpt_convert_with_their_lengths_and_counted_drops() {
    let dir = tempfile::tempdir().expect("tmp");
    let qwen3 = tokenizer_file("qwen3");
    let tok = load(&qwen3);
    let out = dir.path().join("burst.jsonl");
    let json = ok(analyze(&[
        "dataset",
        "trace",
        &fixture("traces/burstgpt-sample.csv"),
        "--format",
        "burstgpt",
        "--tokenizer",
        &qwen3,
        "--out",
        &out.display().to_string(),
        "--json",
    ]));
    let report: Value = serde_json::from_slice(&json.stdout).expect("json");
    assert_eq!(report["adjusted"]["trace lines skipped (no output tokens)"], 2);
    let csv = std::fs::read_to_string(fixture("traces/burstgpt-sample.csv")).expect("csv");
    let kept: Vec<Vec<&str>> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect::<Vec<_>>())
        .filter(|c| c[3] != "0")
        .collect();
    let rows = read_rows(&out);
    assert_eq!(rows.len(), kept.len());
    for (r, c) in rows.iter().zip(&kept) {
        let ms = (c[0].parse::<f64>().expect("ts") * 1000.0).round() as u64;
        assert_eq!(r["timestamp_ms"].as_u64(), Some(ms));
        assert_eq!(r["max_tokens"].as_u64(), c[3].parse::<u64>().ok());
        assert_eq!(Some(u64::from(server_isl(&tok, r))), c[2].parse::<u64>().ok());
    }

    let sg = fixture("datasets/sharegpt-sample.json");
    let items: Value = serde_json::from_str(&std::fs::read_to_string(&sg).expect("read")).expect("json");
    let out = dir.path().join("sg.jsonl");
    let json = ok(analyze(&[
        "dataset",
        "sharegpt",
        &sg,
        "--tokenizer",
        &qwen3,
        "--context",
        "300",
        "--out",
        &out.display().to_string(),
        "--json",
    ]));
    let report: Value = serde_json::from_slice(&json.stdout).expect("json");
    assert_eq!(report["adjusted"]["items without a user turn"], 1);
    assert_eq!(report["adjusted"]["items over --context (dropped)"], 1);
    let rows = read_rows(&out);
    // Items with a user turn and an answer, under the context: their reference answers.
    let answers: Vec<&str> = items
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|it| {
            let turns = it["conversations"].as_array()?;
            let q = turns.iter().position(|t| t["from"] == "human")?;
            turns.get(q + 1)?["value"].as_str()
        })
        .filter(|a| !a.starts_with("Caching avoids"))
        .collect();
    assert_eq!(rows.len(), answers.len());
    for (r, a) in rows.iter().zip(&answers) {
        let n = tok.encode(*a, false).expect("encode").len() as u64;
        assert_eq!(r["reference_output_tokens"].as_u64(), Some(n));
        assert_eq!(r["max_tokens"].as_u64(), Some(n));
        assert_eq!(r["isl_tokens"].as_u64(), Some(u64::from(server_isl(&tok, r))));
        assert!(server_isl(&tok, r) as u64 + n <= 300);
    }
    // Truncation keeps the long item, cut to fit.
    let out = dir.path().join("sg-cut.jsonl");
    ok(analyze(&[
        "dataset",
        "sharegpt",
        &sg,
        "--tokenizer",
        &qwen3,
        "--context",
        "300",
        "--over-context",
        "truncate",
        "--out",
        &out.display().to_string(),
        "-q",
    ]));
    let cut = read_rows(&out);
    assert_eq!(cut.len(), answers.len() + 1);
    assert!(cut
        .iter()
        .all(|r| u64::from(server_isl(&tok, r)) + r["max_tokens"].as_u64().expect("max") <= 300));
}

#[test]
fn bad_trace_and_dataset_input_names_file_and_line_with_exit_2() {
    let dir = tempfile::tempdir().expect("tmp");
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(
        &bad,
        "{\"timestamp\": 0, \"input_length\": 5, \"output_length\": 1}\n{\"timestamp\": \"x\"}\n",
    )
    .expect("write");
    let out = analyze(&[
        "dataset",
        "trace",
        &bad.display().to_string(),
        "--format",
        "mooncake",
        "--tokenizer",
        &tokenizer_file("gpt2"),
        "--completions",
        "--out",
        &dir.path().join("o.jsonl").display().to_string(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("bad.jsonl line 2"), "{err}");
    assert!(!dir.path().join("o.jsonl").exists(), "nothing is written on bad input");
    let out = analyze(&[
        "dataset",
        "synthetic",
        "--tokenizer",
        &tokenizer_file("gpt2"),
        "--count",
        "3",
        "--isl",
        "10",
        "--osl",
        "2",
        "--out",
        &dir.path().join("o.jsonl").display().to_string(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("chat template") && err.contains("--completions"), "{err}");
}

#[test]
fn planned_lengths_are_reported_beside_measured_ones_after_a_capture() {
    let dir = tempfile::tempdir().expect("tmp");
    let qwen3 = tokenizer_file("qwen3");
    let ds = dir.path().join("ds.jsonl");
    generate_and_check(
        dir.path(),
        "ds",
        &qwen3,
        &[
            "--count",
            "30",
            "--isl",
            "120",
            "--isl-stddev",
            "20",
            "--osl",
            "12",
            "--shared-prefix",
            "40",
            "--prefix-groups",
            "2",
        ],
    );
    let sim = SimProcess::start(&["--ttft", "2ms", "--itl", "1ms", "--tokenizer", &qwen3]).expect("recap-sim");
    let run = dir.path().join("run");
    let cap = run_bin(
        "capture",
        &[
            "--url",
            &sim.url(),
            "--model",
            "m",
            "--dataset",
            &ds.display().to_string(),
            "--requests",
            "30",
            "--concurrency",
            "4",
            "--out",
            &run.display().to_string(),
            "-q",
        ],
    );
    assert!(cap.status.success(), "{}", String::from_utf8_lossy(&cap.stderr));
    let out = ok(analyze(&[
        "report",
        &run.display().to_string(),
        "--tokenizer",
        &qwen3,
        "--json",
    ]));
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    let s = &v[0];
    assert_eq!(s["planned_isl"]["compared"], 30);
    assert_eq!(s["planned_isl"]["share_equal"], 1.0, "{}", s["planned_isl"]);
    // The server's own count agrees too: the sim counts usage with the same tokenizer.
    assert_eq!(s["isl_agreement"]["share_equal"], 1.0);
    assert_eq!(s["planned_osl"]["compared"], 30);
    let q = ok(analyze(&[
        "sql",
        &run.display().to_string(),
        "SELECT count(*) AS n FROM metrics WHERE prefix_group IS NOT NULL AND planned_input_tokens = isl_tokens",
        "--format",
        "json",
    ]));
    let text = String::from_utf8_lossy(&q.stdout);
    assert!(text.contains("30"), "{text}");
}

/// `--embeddings` rows are one text each, of exactly the planned length as embedded (with the
/// tokenizer's specials); `capture --batch-size 4` sends four per request and plans their sum,
/// which analyze and the server (the simulator counting with the same tokenizer) both find.
#[test]
fn embeddings_rows_batch_into_requests_of_exactly_the_planned_length() {
    let dir = tempfile::tempdir().expect("tmp");
    for (name, tok) in [("qwen3", tokenizer_file("qwen3")), ("gpt2", tokenizer_file("gpt2"))] {
        let rows = generate_and_check(
            dir.path(),
            &format!("embed-{name}"),
            &tok,
            &[
                "--embeddings",
                "--count",
                "12",
                "--isl",
                "uniform:20:60",
                "--osl",
                "1",
                "--seed",
                "3",
            ],
        );
        assert!(
            rows.iter()
                .all(|r| r["input"].as_array().map(Vec::len) == Some(1) && r.get("messages").is_none()),
            "{name}"
        );
        let sim = SimProcess::start(&["--tokenizer", &tok]).expect("recap-sim");
        let run = dir.path().join(format!("run-{name}"));
        let ds = dir.path().join(format!("embed-{name}.jsonl"));
        let cap = run_bin(
            "capture",
            &[
                "--url",
                &sim.url(),
                "--api",
                "embeddings",
                "--batch-size",
                "4",
                "--dataset",
                &ds.display().to_string(),
                "--requests",
                "3",
                "--out",
                &run.display().to_string(),
                "-q",
            ],
        );
        assert!(cap.status.success(), "{}", String::from_utf8_lossy(&cap.stderr));
        let out = ok(analyze(&[
            "report",
            &run.display().to_string(),
            "--tokenizer",
            &tok,
            "--json",
        ]));
        let v: Value = serde_json::from_slice(&out.stdout).expect("json");
        let s = &v[0];
        assert_eq!(s["planned_isl"]["compared"], 3, "{name}: {}", s["planned_isl"]);
        assert_eq!(s["planned_isl"]["share_equal"], 1.0, "{name}: {}", s["planned_isl"]);
        assert_eq!(s["isl_agreement"]["share_equal"], 1.0, "{name}: {}", s["isl_agreement"]);
        let planned: u64 = rows.iter().map(|r| r["isl_tokens"].as_u64().expect("isl")).sum();
        let q = ok(analyze(&[
            "sql",
            &run.display().to_string(),
            "SELECT sum(isl_tokens) AS isl, sum(items) AS items FROM metrics",
            "--format",
            "json",
        ]));
        let got: Value = serde_json::from_slice(&q.stdout).expect("json");
        assert_eq!(got[0]["isl"].as_u64(), Some(planned), "{name}: {got}");
        assert_eq!(got[0]["items"].as_u64(), Some(12), "{name}: {got}");
    }
}

/// The quickstart's setup: `recap-sim --tokenizer` answers `max_tokens` tokens of that
/// tokenizer, as a real server does, so analyze finds every output equal to its budget. The
/// count here is independent of the simulator and of analyze: the `tokenizers` crate
/// re-encodes the text the capture recorded.
#[test]
fn simulator_with_a_tokenizer_answers_exactly_max_tokens_of_it() {
    let dir = tempfile::tempdir().expect("tmp");
    let qwen3 = tokenizer_file("qwen3");
    let tok = load(&qwen3);
    let sim = SimProcess::start(&["--tokenizer", &qwen3]).expect("recap-sim");
    for api in ["chat", "completions"] {
        let run = dir.path().join(api);
        let run_s = run.display().to_string();
        let cap = run_bin(
            "capture",
            &[
                "--url",
                &sim.url(),
                "--model",
                "m",
                "--api",
                api,
                "--requests",
                "40",
                "--concurrency",
                "4",
                "--max-tokens",
                "64",
                "--out",
                &run_s,
                "-q",
            ],
        );
        assert!(cap.status.success(), "{}", String::from_utf8_lossy(&cap.stderr));
        let recorded = recap_tests::runs::read_run(&run).expect("read run");
        let counts: Vec<usize> = recorded
            .requests
            .keys()
            .map(|&id| tok.encode(recorded.content(id), false).expect("encode").len())
            .collect();
        assert_eq!(counts.len(), 40, "{api}");
        assert!(counts.iter().all(|&n| n == 64), "{api}: output tokens {counts:?}");
        let out = ok(analyze(&["report", &run_s, "--tokenizer", &qwen3, "--json"]));
        let v: Value = serde_json::from_slice(&out.stdout).expect("json");
        let planned = &v[0]["planned_osl"];
        assert_eq!(planned["compared"], 40, "{api}: {planned}");
        assert_eq!(planned["share_equal"], 1.0, "{api}: {planned}");
        assert_eq!(
            v[0]["osl_agreement"]["share_equal"], 1.0,
            "{api}: {}",
            v[0]["osl_agreement"]
        );
    }
}
