//! End-to-end: `capture --scrape` reads the server's metrics endpoints during a run against
//! `recap-sim`, a failing endpoint costs rows of its own and nothing else, and `analyze`
//! parses every sample with its labels and summarizes the well-known series.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type};
use arrow_array::{Array, RecordBatch};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use recap_tests::harness::{run_bin, SimProcess};
use recap_tests::runs::read_run;
use serde_json::Value;

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

fn batches(files: impl IntoIterator<Item = PathBuf>) -> Vec<RecordBatch> {
    files
        .into_iter()
        .flat_map(|f| {
            ParquetRecordBatchReaderBuilder::try_new(File::open(&f).expect("open"))
                .expect("parquet")
                .build()
                .expect("reader")
                .map(|b| b.expect("batch"))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// One `scrapes` row as the test reads it.
struct Scrape {
    target: String,
    t_ns: i64,
    status: Option<u16>,
    body: Option<String>,
    error: Option<String>,
}

fn scrapes(run: &Path) -> Vec<Scrape> {
    let files: Vec<PathBuf> = std::fs::read_dir(run.join("scrapes"))
        .expect("scrapes folder")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "parquet"))
        .collect();
    let mut out = Vec::new();
    for b in batches(files) {
        let s = |n: &str| b.column_by_name(n).expect(n).as_string::<i32>().clone();
        let (target, body, error) = (s("target"), s("body"), s("error"));
        let t = b
            .column_by_name("t_ns")
            .expect("t_ns")
            .as_primitive::<Int64Type>()
            .clone();
        let status = b
            .column_by_name("http_status")
            .expect("http_status")
            .as_primitive::<arrow_array::types::UInt16Type>()
            .clone();
        for i in 0..b.num_rows() {
            let opt = |a: &arrow_array::StringArray| a.is_valid(i).then(|| a.value(i).to_string());
            out.push(Scrape {
                target: target.value(i).to_string(),
                t_ns: t.value(i),
                status: status.is_valid(i).then(|| status.value(i)),
                body: opt(&body),
                error: opt(&error),
            });
        }
    }
    out
}

#[test]
fn scrapes_land_with_their_labels_and_a_failing_endpoint_costs_nothing_else() {
    let exposition = fixture("fixtures/metrics/exposition.prom");
    let held_out = std::fs::read_to_string(&exposition).expect("fixture");
    let server = SimProcess::start(&[
        "--ttft",
        "5ms",
        "--itl",
        "5ms",
        "--output-tokens",
        "20",
        "--cache-share",
        "0.5",
        "--metrics-file",
        exposition.to_str().expect("utf8"),
    ])
    .expect("sim");
    // An exporter that answers too late, and a port where nothing listens.
    let slow = SimProcess::start(&["--metrics-delay", "5s"]).expect("slow sim");
    let (good, late, dead) = (
        format!("{}/metrics", server.url()),
        format!("{}/metrics", slow.url()),
        "http://127.0.0.1:9/metrics".to_string(),
    );
    let dir = tempfile::tempdir().expect("tmp");
    let run = dir.path().join("run");
    let out = run_bin(
        "capture",
        &[
            "--url",
            &server.url(),
            "--out",
            run.to_str().expect("utf8"),
            "--concurrency",
            "4",
            "--requests",
            "120",
            "--warmup-requests",
            "4",
            "--scrape",
            &format!("{good},{late},{dead}"),
            "--scrape-interval",
            "100ms",
            "--scrape-timeout",
            "300ms",
            "--quiet",
        ],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // The requests are untouched: every one sent was answered.
    let r = read_run(&run).expect("read run");
    assert_eq!(r.requests.len(), 124);
    let counts = r.manifest.counts.clone().expect("counts");
    assert_eq!((counts.requests, counts.done), (124, 124), "{counts:?}");

    // Every scrape is a row; the failures say why.
    let rows = scrapes(&run);
    assert_eq!(counts.scrapes, rows.len() as u64);
    let of = |t: &str| rows.iter().filter(|s| s.target == t).collect::<Vec<_>>();
    let (good_rows, late_rows, dead_rows) = (of(&good), of(&late), of(&dead));
    assert!(good_rows.len() >= 3, "{} good scrapes", good_rows.len());
    for s in &good_rows {
        assert_eq!((s.status, s.error.as_deref()), (Some(200), None));
        let body = s.body.as_deref().expect("body");
        assert!(body.starts_with(&held_out), "the exposition is kept as served");
    }
    // One last read after the last request ended, so counters cover the whole run.
    let last_end = r.events.values().flatten().map(|e| e.t_ns).max().expect("events");
    assert!(
        good_rows.iter().map(|s| s.t_ns).max() > Some(last_end),
        "no scrape after the last event at {last_end} ns"
    );
    assert!(!late_rows.is_empty() && !dead_rows.is_empty());
    for s in &late_rows {
        assert_eq!(s.error.as_deref(), Some("timed out after 300ms"), "late: {:?}", s.error);
        assert_eq!((s.status, s.body.as_deref()), (None, None));
    }
    for s in &dead_rows {
        assert!(
            s.error.as_deref().is_some_and(|e| e.starts_with("connect")),
            "{:?}",
            s.error
        );
    }

    let tok = fixture("fixtures/tokenizers/gpt2/tokenizer.json.gz");
    let out = run_bin(
        "analyze",
        &[
            "report",
            run.to_str().expect("utf8"),
            "--tokenizer",
            tok.to_str().expect("utf8"),
            "-q",
        ],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // Every sample line of the held-out text lands in server_metrics, once per good scrape,
    // with its labels (the escaped ones unescaped), beside the simulator's 5 live series.
    let lines = held_out
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .count();
    assert_eq!(lines, 23, "sample lines in the fixture, counted by hand");
    let sm = batches([run.join("analysis/server_metrics.parquet")]);
    let mut per_scrape: BTreeMap<i64, usize> = BTreeMap::new();
    let mut labels_of: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut values: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for b in &sm {
        let s = |n: &str| b.column_by_name(n).expect(n).as_string::<i32>().clone();
        let (target, name, labels, kind) = (s("target"), s("name"), s("labels_json"), s("type"));
        let t = b
            .column_by_name("t_ns")
            .expect("t_ns")
            .as_primitive::<Int64Type>()
            .clone();
        let v = b
            .column_by_name("value")
            .expect("value")
            .as_primitive::<Float64Type>()
            .clone();
        for i in 0..b.num_rows() {
            assert_eq!(target.value(i), good, "only the good target has samples");
            *per_scrape.entry(t.value(i)).or_default() += 1;
            labels_of
                .entry(name.value(i).to_string())
                .or_default()
                .push(serde_json::from_str(labels.value(i)).expect("labels json"));
            types.insert(name.value(i).to_string(), kind.value(i).to_string());
            values.entry(name.value(i).to_string()).or_default().push(v.value(i));
        }
    }
    assert_eq!(per_scrape.len(), good_rows.len(), "every good scrape has samples");
    assert!(per_scrape.values().all(|n| *n == lines + 5), "{per_scrape:?}");
    let msdos = &labels_of["msdos_file_access_time_seconds"][0];
    assert_eq!(msdos["path"], r"C:\DIR\FILE.TXT");
    assert_eq!(msdos["error"], "Cannot find file:\n\"FILE.TXT\"");
    assert_eq!(labels_of["rpc_duration_seconds"][0]["service"], "a \"quoted\" name");
    let bucket = &labels_of["vllm:e2e_request_latency_seconds_bucket"];
    assert_eq!(bucket.len(), 4 * good_rows.len());
    assert_eq!(bucket[3]["le"], "+Inf");
    assert_eq!(bucket[3]["model_name"], "Qwen/Qwen3-0.6B");
    for (name, kind) in [
        ("vllm:e2e_request_latency_seconds_bucket", "histogram"),
        ("vllm:request_success_total", "counter"),
        ("rpc_duration_seconds_sum", "summary"),
        ("DCGM_FI_DEV_GPU_UTIL", "gauge"),
        ("http_requests_total", "untyped"),
    ] {
        assert_eq!(types[name], kind, "{name}");
    }
    assert_eq!(values["something_weird"][0], f64::INFINITY);
    assert_eq!(values["negative_infinity"][0], f64::NEG_INFINITY);
    assert!(values["not_a_number"][0].is_nan());

    // The summary's well-known series, against hand sums of the fixture and the client's
    // own concurrency.
    let analysis = std::fs::read_dir(run.join("analysis"))
        .expect("analysis")
        .flatten()
        .map(|e| e.path())
        .find(|p| p.join("summary.json").is_file())
        .expect("an analysis");
    let summary: Value =
        serde_json::from_slice(&std::fs::read(analysis.join("summary.json")).expect("summary")).expect("json");
    let server = &summary["server"];
    let series = &server["series"];
    assert_eq!(series["gpu_power_w"]["mean"], 1011.0, "512.25 + 498.75 W");
    assert_eq!(series["gpu_utilization_pct"]["mean"], 90.0, "(87 + 93) / 2 %");
    let running = &series["requests_running"];
    let max = running["max"].as_f64().expect("max");
    assert!(
        (1.0..=4.0).contains(&max),
        "never more running than the client's 4: {running}"
    );
    assert_eq!(series["requests_waiting"]["max"], 0.0);
    assert!(server["failed_scrapes"].as_u64().expect("failed") >= 2, "{server}");
    // The server's hit counters against what it said in each answer's usage.
    let (mut cached, mut prompt) = (0.0, 0.0);
    for events in r.events.values() {
        for e in events {
            if let (Some(c), Some(p)) = (e.usage_cached_tokens, e.usage_prompt_tokens) {
                cached += f64::from(c);
                prompt += f64::from(p);
            }
        }
    }
    let share = server["prefix_cache_hit_share"].as_f64().expect("hit share");
    assert!(
        (share - cached / prompt).abs() < 0.03,
        "hit share {share} vs usage {:.4}",
        cached / prompt
    );

    // plot draws the server's series under the client timeline: a vertex per good scrape.
    let charts = dir.path().join("charts");
    let out = run_bin(
        "plot",
        &[
            run.to_str().expect("utf8"),
            "--out",
            charts.to_str().expect("utf8"),
            "--format",
            "svg",
        ],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let svg = std::fs::read_to_string(charts.join("timeline.svg")).expect("timeline.svg");
    assert!(svg.contains("Server metrics (scraped from its endpoint)"));
    let lines: Vec<usize> = svg
        .split("<polyline")
        .skip(1)
        .filter_map(|p| {
            let points = p
                .split('>')
                .next()?
                .split_once(r##"stroke="#0072B2" stroke-width="2" points=""##)?
                .1
                .split('"')
                .next()?;
            Some(points.split_whitespace().count())
        })
        .collect();
    assert!(
        lines.contains(&good_rows.len()),
        "requests running: one vertex per good scrape ({}): {lines:?}",
        good_rows.len()
    );

    // SQL sees both tables.
    let out = run_bin(
        "analyze",
        &[
            "sql",
            run.to_str().expect("utf8"),
            "SELECT (SELECT count(*) FROM scrapes WHERE error IS NOT NULL) AS failed, \
             (SELECT count(*) FROM server_metrics WHERE name = 'go_goroutines') AS goroutines",
            "--format",
            "json",
        ],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let got: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(got[0]["failed"], (late_rows.len() + dead_rows.len()) as u64);
    assert_eq!(got[0]["goroutines"], good_rows.len() as u64);
}

#[test]
fn scrape_flags_are_checked() {
    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path().join("run").display().to_string();
    for (args, says) in [
        (vec!["--scrape", "https://127.0.0.1:9/metrics"], "http://"),
        (vec!["--scrape", "not a url"], "--scrape"),
        (
            vec!["--scrape", "http://127.0.0.1:9/metrics", "--scrape-interval", "0s"],
            "positive",
        ),
    ] {
        let mut all = vec!["--url", "http://127.0.0.1:9", "--out", &out];
        all.extend(args.iter().copied());
        let res = run_bin("capture", &all);
        let err = String::from_utf8_lossy(&res.stderr);
        assert_eq!(res.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
        assert!(
            !err.contains("hunter2"),
            "a password in a --scrape URL is never echoed: {err}"
        );
    }
}
