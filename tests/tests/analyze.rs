//! End-to-end: the real `analyze` binary on committed and fresh captures, every metric
//! recomputed here by hand from the raw events (read through the Parquet reader) and a
//! tokenizer loaded independently with the `tokenizers` crate.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use arrow_array::cast::AsArray;
use arrow_array::types::{Int64Type, UInt32Type, UInt64Type};
use arrow_array::Array;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use recap_schemas::{EventKind, Phase};
use recap_tests::harness::{closed_segments, pareto_skyline, spawn_bin, wait_for_child, workspace_bin, SimProcess};
use recap_tests::runs::read_run;
use serde_json::Value;

/// The one summary of `analyze report --json` for one run: the output is always an array.
fn one_summary(stdout: &[u8]) -> Value {
    let v: Value = serde_json::from_slice(stdout).expect("json on stdout");
    let all = v.as_array().expect("--json prints an array, also for one run");
    assert_eq!(all.len(), 1, "one run, one summary");
    all[0].clone()
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn tokenizer_path(name: &str) -> PathBuf {
    root().join("fixtures/tokenizers").join(name).join("tokenizer.json.gz")
}

/// A private copy of a committed capture (analysis writes into the run folder).
fn copy_fixture(name: &str, into: &Path) -> PathBuf {
    fn copy_dir(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).expect("mkdir");
        for e in std::fs::read_dir(from).expect("read_dir") {
            let p = e.expect("entry").path();
            let dest = to.join(p.file_name().expect("name"));
            if p.is_dir() {
                if p.file_name().is_some_and(|n| n == "analysis") {
                    continue;
                }
                copy_dir(&p, &dest);
            } else {
                std::fs::copy(&p, &dest).expect("copy");
            }
        }
    }
    let dest = into.join(name);
    copy_dir(&root().join("fixtures/captures").join(name), &dest);
    dest
}

fn analyze(args: &[&str]) -> Output {
    recap_tests::harness::run_bin("analyze", args)
}

/// Captures from `sim` into `out` (quietly) with these load flags; panics unless it succeeds.
fn capture_into(sim: &SimProcess, out: &Path, flags: &[&str]) {
    let res = Command::new(workspace_bin("capture"))
        .args(["--url", &sim.url(), "--out", out.to_str().expect("utf8"), "-q"])
        .args(flags)
        .output()
        .expect("capture");
    assert!(res.status.success(), "{}", String::from_utf8_lossy(&res.stderr));
}

fn load_tokenizer(name: &str) -> tokenizers::Tokenizer {
    recap_tests::sim::load_tokenizer(&tokenizer_path(name)).expect("tokenizer")
}

#[derive(Debug, Default, Clone)]
struct MetricRow {
    ok: bool,
    error_kind: Option<String>,
    ttft_ns: Option<i64>,
    e2e_ns: Option<i64>,
    tpot_ns: Option<i64>,
    isl: Option<u32>,
    osl: Option<u32>,
}

fn read_metrics(path: &Path) -> BTreeMap<u64, MetricRow> {
    let mut out = BTreeMap::new();
    let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(path).expect("open metrics")).expect("parquet");
    for b in reader.build().expect("reader") {
        let b = b.expect("batch");
        let c = |n: &str| {
            b.column_by_name(n)
                .unwrap_or_else(|| panic!("metrics column {n}"))
                .clone()
        };
        let id = c("request_id");
        let id = id.as_primitive::<UInt64Type>();
        let ok = c("ok");
        let ok = ok.as_boolean();
        let ek = c("error_kind");
        let ek = ek.as_string::<i32>();
        let i64s: Vec<_> = ["ttft_ns", "e2e_ns", "tpot_ns"].iter().map(|n| c(n)).collect();
        let u32s: Vec<_> = ["isl_tokens", "osl_tokens"].iter().map(|n| c(n)).collect();
        let gi = |k: usize, i: usize| {
            let a = i64s[k].as_primitive::<Int64Type>();
            a.is_valid(i).then(|| a.value(i))
        };
        let gu = |k: usize, i: usize| {
            let a = u32s[k].as_primitive::<UInt32Type>();
            a.is_valid(i).then(|| a.value(i))
        };
        for i in 0..b.num_rows() {
            out.insert(
                id.value(i),
                MetricRow {
                    ok: ok.value(i),
                    error_kind: ek.is_valid(i).then(|| ek.value(i).to_string()),
                    ttft_ns: gi(0, i),
                    e2e_ns: gi(1, i),
                    tpot_ns: gi(2, i),
                    isl: gu(0, i),
                    osl: gu(1, i),
                },
            );
        }
    }
    out
}

/// numpy's default percentile, written independently of analyze's `stats` module.
fn numpy_percentile(values: &[f64], q: f64) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).expect("finite"));
    let virtual_index = q / 100.0 * (v.len() as f64 - 1.0);
    let below = virtual_index.floor() as usize;
    let above = virtual_index.ceil() as usize;
    let frac = virtual_index - below as f64;
    v[below] * (1.0 - frac) + v[above] * frac
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

#[test]
fn every_metric_matches_a_hand_computation_on_the_committed_capture() {
    let dir = tempfile::tempdir().expect("tmp");
    let run_dir = copy_fixture("small", dir.path());
    let out = analyze(&[
        "report",
        run_dir.to_str().expect("utf8"),
        "--tokenizer",
        tokenizer_path("gpt2").to_str().expect("utf8"),
        "--slo",
        "ttft=8ms,e2e=60ms",
        "--json",
        "--quiet",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let summary: Value = one_summary(&out.stdout);
    let tok_id = summary["tokenizer_id"].as_str().expect("id").to_string();
    assert!(tok_id.starts_with("gpt2-"));
    let engine = summary["tokenizer_engine"].as_str().expect("the engine is named");
    assert!(engine.starts_with("fast path (byte-level BPE"), "{engine}");
    let adir = run_dir.join("analysis").join(&tok_id);
    for f in [
        "metrics.parquet",
        "summary.json",
        "summary.csv",
        "summary.md",
        "icl.parquet",
        "tokens.parquet",
    ] {
        assert!(adir.join(f).exists(), "{f} missing");
    }
    let metrics = read_metrics(&adir.join("metrics.parquet"));
    // Re-analysis with other SLOs reuses the token-count cache and gives the same metrics.
    let again = analyze(&[
        "report",
        run_dir.to_str().expect("utf8"),
        "--tokenizer",
        tokenizer_path("gpt2").to_str().expect("utf8"),
        "--slo",
        "ttft=1s",
        "-q",
    ]);
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));
    let rescored = read_metrics(&adir.join("metrics.parquet"));
    for (id, m) in &metrics {
        assert_eq!(
            (m.osl, m.isl, m.ttft_ns),
            (rescored[id].osl, rescored[id].isl, rescored[id].ttft_ns)
        );
    }
    // `--exact` counts again with `tokenizers` itself (not from the fast path's cache): the
    // same counts, and the summary says which engine counted.
    let exact = analyze(&[
        "report",
        run_dir.to_str().expect("utf8"),
        "--tokenizer",
        tokenizer_path("gpt2").to_str().expect("utf8"),
        "--exact",
        "--json",
        "-q",
    ]);
    assert!(exact.status.success(), "{}", String::from_utf8_lossy(&exact.stderr));
    assert_eq!(one_summary(&exact.stdout)["tokenizer_engine"], "tokenizers (--exact)");
    let exact_metrics = read_metrics(&adir.join("metrics.parquet"));
    for (id, m) in &metrics {
        assert_eq!((m.osl, m.isl), (exact_metrics[id].osl, exact_metrics[id].isl));
    }
    let run = read_run(&run_dir).expect("read run");
    let tok = load_tokenizer("gpt2");
    let count = |t: &str, special: bool| tok.encode_fast(t, special).expect("encode").len() as u32;
    assert_eq!(metrics.len(), run.requests.len());

    let (mut ttfts, mut e2es, mut gaps) = (Vec::new(), Vec::new(), Vec::new());
    let (mut first_sent, mut last_end, mut osl_sum, mut isl_sum, mut ok_n, mut good) =
        (i64::MAX, i64::MIN, 0u64, 0u64, 0u64, 0u64);
    let mut errors = BTreeMap::<String, u64>::new();
    for (id, req) in &run.requests {
        let m = &metrics[id];
        let ev = &run.events[id];
        let term = run.terminals(*id)[0];
        let sent = ev.iter().find(|e| e.kind == EventKind::Sent).map(|e| e.t_ns);
        let sse = run.sse(*id);
        let outputs: Vec<_> = sse
            .iter()
            .filter(|e| {
                e.content.as_deref().is_some_and(|c| !c.is_empty())
                    || e.reasoning.as_deref().is_some_and(|c| !c.is_empty())
            })
            .collect();
        let ok = term.kind == EventKind::Done;
        assert_eq!(m.ok, ok, "request {id}");
        assert_eq!(
            m.error_kind,
            if ok {
                None
            } else {
                term.error_kind.map(|k| k.as_str().to_string())
            },
            "request {id}"
        );
        let content: String = sse.iter().filter_map(|e| e.content.clone()).collect();
        let reasoning: String = sse.iter().filter_map(|e| e.reasoning.clone()).collect();
        let n = count(&reasoning, false) + count(&content, false);
        assert_eq!(m.osl, Some(n), "osl of {id}");
        let isl = match (&req.prompt, &req.messages_json) {
            (Some(p), _) => count(p, true),
            (None, Some(mj)) => {
                let msgs: Value = serde_json::from_str(mj).expect("json");
                let joined: Vec<&str> = msgs
                    .as_array()
                    .expect("array")
                    .iter()
                    .filter_map(|m| m["content"].as_str())
                    .collect();
                count(&joined.join("\n"), false)
            }
            _ => unreachable!(),
        };
        assert_eq!(m.isl, Some(isl), "isl of {id}");
        let ttft = outputs.first().and_then(|f| Some(f.t_ns - sent?));
        let e2e = outputs.last().and_then(|l| Some(l.t_ns - sent?));
        assert_eq!(m.ttft_ns, ttft, "ttft of {id}");
        assert_eq!(m.e2e_ns, e2e, "e2e of {id}");
        let tpot = match (outputs.first(), outputs.last()) {
            (Some(f), Some(l)) if n > 1 => Some((l.t_ns - f.t_ns) / i64::from(n - 1)),
            _ => None,
        };
        assert_eq!(m.tpot_ns, tpot, "tpot of {id}");
        if req.phase != Phase::Measure {
            continue;
        }
        first_sent = first_sent.min(sent.expect("sent"));
        last_end = last_end.max(term.t_ns);
        if ok {
            ok_n += 1;
            osl_sum += u64::from(n);
            isl_sum += u64::from(isl);
            let (t, e) = (ttft.expect("ttft") as f64 / 1e6, e2e.expect("e2e") as f64 / 1e6);
            ttfts.push(t);
            e2es.push(e);
            if t <= 8.0 && e <= 60.0 {
                good += 1;
            }
            gaps.extend(outputs.windows(2).map(|w| (w[1].t_ns - w[0].t_ns) as f64 / 1e6));
        } else {
            *errors
                .entry(term.error_kind.expect("kind").as_str().to_string())
                .or_default() += 1;
        }
    }
    let window = (last_end - first_sent) as f64 / 1e9;
    let num = |p: &str| {
        summary
            .pointer(p)
            .and_then(Value::as_f64)
            .unwrap_or_else(|| panic!("summary lacks {p}"))
    };
    assert!(close(num("/window_s"), window));
    assert!(close(num("/requests_per_s"), ok_n as f64 / window));
    assert!(close(num("/output_tokens_per_s"), osl_sum as f64 / window));
    assert!(close(num("/total_tokens_per_s"), (osl_sum + isl_sum) as f64 / window));
    assert!(close(num("/goodput/requests_per_s"), good as f64 / window));
    assert_eq!(num("/requests/ok") as u64, ok_n);
    for (k, n) in &errors {
        assert_eq!(num(&format!("/requests/errors/{k}")) as u64, *n, "errors of kind {k}");
    }
    assert!(!errors.is_empty(), "the fixture has injected failures");
    assert!(
        num("/requests/protocol_events") >= 1.0,
        "the fixture has a malformed event"
    );
    for (name, values) in [("ttft_ms", &ttfts), ("e2e_ms", &e2es), ("icl_ms", &gaps)] {
        for (stat, q) in [
            ("p50", 50.0),
            ("p90", 90.0),
            ("p95", 95.0),
            ("p99", 99.0),
            ("p99_9", 99.9),
        ] {
            let got = num(&format!("/metrics/{name}/{stat}"));
            let want = numpy_percentile(values, q);
            assert!(close(got, want), "{name} {stat}: analyze {got} vs hand {want}");
        }
        let mean = values.iter().sum::<f64>() / values.len() as f64;
        assert!(close(num(&format!("/metrics/{name}/mean")), mean), "{name} mean");
        assert_eq!(num(&format!("/metrics/{name}/count")) as usize, values.len());
    }
}

/// `--latency-from scheduled`: each latency grows by exactly how late the client sent the
/// request, computed here from the run's own `requests` and `events` rows.
#[test]
fn latency_from_the_schedule_adds_exactly_the_clients_delay() {
    let dir = tempfile::tempdir().expect("tmp");
    let run_dir = copy_fixture("small", dir.path());
    let run = read_run(&run_dir).expect("read run");
    let score = |from: &str| {
        let out = analyze(&[
            "report",
            run_dir.to_str().expect("utf8"),
            "--tokenizer",
            tokenizer_path("gpt2").to_str().expect("utf8"),
            "--latency-from",
            from,
        ]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let console = String::from_utf8_lossy(&out.stdout).into_owned();
        let adir = run_dir.join("analysis");
        let id = std::fs::read_dir(&adir)
            .expect("analysis")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.join("metrics.parquet").exists())
            .expect("an analysis");
        (read_metrics(&id.join("metrics.parquet")), console)
    };
    let (sent, console) = score("sent");
    assert!(!console.contains("latencies from"), "{console}");
    let (scheduled, console) = score("scheduled");
    assert!(console.contains("latencies from scheduled"), "{console}");
    let mut late = 0;
    for (id, m) in &sent {
        if !m.ok {
            continue;
        }
        let last_sent = run.events[id]
            .iter()
            .filter(|e| e.kind == EventKind::Sent)
            .map(|e| e.t_ns)
            .max()
            .expect("a sent event");
        let delay = last_sent - run.requests[id].scheduled_ns;
        late += i64::from(delay > 0);
        let s = &scheduled[id];
        assert_eq!(s.ttft_ns, m.ttft_ns.map(|t| t + delay), "request {id}: TTFT");
        assert_eq!(s.e2e_ns, m.e2e_ns.map(|t| t + delay), "request {id}: E2E");
    }
    assert!(late > 0, "the fixture has requests sent after their schedule time");
}

#[test]
fn rescoring_with_another_tokenizer_keeps_both_with_identical_timings() {
    let dir = tempfile::tempdir().expect("tmp");
    let run_dir = copy_fixture("small", dir.path());
    let mut ids = Vec::new();
    for t in ["gpt2", "qwen3"] {
        let out = analyze(&[
            "report",
            run_dir.to_str().expect("utf8"),
            "--tokenizer",
            tokenizer_path(t).to_str().expect("utf8"),
            "--json",
            "-q",
        ]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let s: Value = one_summary(&out.stdout);
        ids.push(s["tokenizer_id"].as_str().expect("id").to_string());
    }
    assert_ne!(ids[0], ids[1]);
    let a = read_metrics(&run_dir.join("analysis").join(&ids[0]).join("metrics.parquet"));
    let b = read_metrics(&run_dir.join("analysis").join(&ids[1]).join("metrics.parquet"));
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    let mut differ = 0;
    for (id, ma) in &a {
        let mb = &b[id];
        assert_eq!(
            (ma.ttft_ns, ma.e2e_ns, ma.ok),
            (mb.ttft_ns, mb.e2e_ns, mb.ok),
            "timings of {id}"
        );
        if ma.osl != mb.osl || ma.isl != mb.isl {
            differ += 1;
        }
    }
    assert!(differ > 0, "two tokenizers gave identical counts everywhere");
    // qwen3 ships a chat template: chat ISL includes its role markers, so it is larger.
    let s: Value = serde_json::from_slice(
        &std::fs::read(run_dir.join("analysis").join(&ids[1]).join("summary.json")).expect("summary"),
    )
    .expect("json");
    assert_eq!(s["isl"], "template");
}

/// `analyze report RUN --tokenizer T ARGS... --json -v`: the summary and the log.
/// A `recap-sim` answering 6 tokens, 1 ms apart after 1 ms (plus `sim_flags`), and a run
/// captured from it with `capture_flags`; keep the first two alive while the run is used.
fn sim_run(sim_flags: &[&str], capture_flags: &[&str]) -> (SimProcess, tempfile::TempDir, PathBuf) {
    let mut flags = vec!["--ttft", "1ms", "--itl", "1ms", "--output-tokens", "6"];
    flags.extend_from_slice(sim_flags);
    let sim = SimProcess::start(&flags).expect("sim");
    let dir = tempfile::tempdir().expect("tmp");
    let run = dir.path().join("run");
    capture_into(&sim, &run, capture_flags);
    (sim, dir, run)
}

fn report_json(run: &Path, tokenizer: &str, args: &[&str]) -> (Value, String) {
    report_json_env(run, tokenizer, args, &[])
}

/// [`report_json`] with these environment variables set.
fn report_json_env(run: &Path, tokenizer: &str, args: &[&str], env: &[(&str, &Path)]) -> (Value, String) {
    let out = Command::new(workspace_bin("analyze"))
        .args(["report", run.to_str().expect("utf8"), "--tokenizer"])
        .arg(tokenizer_path(tokenizer))
        .args(args)
        .args(["--json", "-v"])
        .envs(env.iter().copied())
        .output()
        .expect("run analyze");
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{log}");
    let mut s: Value = one_summary(&out.stdout);
    s["run"] = Value::Null;
    (s, log)
}

#[test]
fn reanalysis_from_cached_records_and_counts_equals_a_fresh_analysis() {
    let dir = tempfile::tempdir().expect("tmp");
    let cached = copy_fixture("small", &dir.path().join("a"));
    let fresh = copy_fixture("small", &dir.path().join("b"));
    let other = ["--ttft-on", "any", "--slo", "ttft=50ms,tpot=5ms"];
    let steps: [(&str, &[&str]); 3] = [("qwen3", &[]), ("gpt2", &[]), ("qwen3", &other)];
    for (i, (tok, args)) in steps.iter().enumerate() {
        let (a, log) = report_json(&cached, tok, args);
        std::fs::remove_dir_all(fresh.join("analysis")).ok();
        let (b, fresh_log) = report_json(&fresh, tok, args);
        assert_eq!(a, b, "step {i}: analysis from the caches differs from a fresh one");
        assert!(!fresh_log.contains("reusing reassembled records"), "{fresh_log}");
        let reused = log.contains("reusing reassembled records");
        let reassembled = log.contains("reassembling from the events");
        let from_texts = log.contains("counting new texts from");
        match i {
            0 => assert!(!reused && reassembled, "nothing to reuse yet: {log}"),
            // Another tokenizer: only tokenization is redone, from the texts cache.
            1 => assert!(reused && from_texts && !reassembled, "{log}"),
            // Other SLOs and definitions: records and counts both come from the caches.
            _ => assert!(reused && !from_texts && !reassembled, "{log}"),
        }
        let id = a["tokenizer_id"].as_str().expect("id");
        let ma = read_metrics(&cached.join("analysis").join(id).join("metrics.parquet"));
        let mb = read_metrics(&fresh.join("analysis").join(id).join("metrics.parquet"));
        assert_eq!(format!("{ma:?}"), format!("{mb:?}"), "step {i}: metrics.parquet");
    }
    // Without the texts cache, another tokenizer's texts come from the events again.
    std::fs::remove_file(cached.join("analysis").join("texts.parquet")).expect("texts cache written");
    for d in std::fs::read_dir(cached.join("analysis")).expect("analysis").flatten() {
        std::fs::remove_file(d.path().join("tokens.parquet")).ok();
    }
    let (a, log) = report_json(&cached, "gpt2", &[]);
    std::fs::remove_dir_all(fresh.join("analysis")).ok();
    let (b, _) = report_json(&fresh, "gpt2", &[]);
    assert!(
        log.contains("reusing reassembled records") && log.contains("reassembling from the events"),
        "{log}"
    );
    assert_eq!(a, b);
    // A run that changed since (here: a segment gone) is reassembled, not served stale.
    let seg = cached.join("events/part-00001.parquet");
    std::fs::remove_file(&seg).expect("remove segment");
    std::fs::remove_file(fresh.join("events/part-00001.parquet")).expect("remove segment");
    let (a, log) = report_json(&cached, "qwen3", &[]);
    std::fs::remove_dir_all(fresh.join("analysis")).ok();
    let (b, _) = report_json(&fresh, "qwen3", &[]);
    assert!(!log.contains("reusing reassembled records"), "{log}");
    assert_eq!(a, b);
}

/// The compiled tokenizer in the user's cache (`RECAP_CACHE`): written by the first analysis
/// with a tokenizer, read by the next with identical results, rebuilt when damaged; `off`
/// keeps nothing.
#[test]
fn a_compiled_tokenizer_is_reused_from_the_user_cache_and_rebuilt_when_damaged() {
    let dir = tempfile::tempdir().expect("tmp");
    let run = copy_fixture("small", dir.path());
    let cache = dir.path().join("cache");
    let report = |cache: &Path| {
        std::fs::remove_dir_all(run.join("analysis")).ok();
        let (s, log) = report_json_env(&run, "qwen3", &[], &[("RECAP_CACHE", cache)]);
        let metrics = read_metrics(
            &run.join("analysis")
                .join(s["tokenizer_id"].as_str().expect("id"))
                .join("metrics.parquet"),
        );
        (s, format!("{metrics:?}"), log)
    };
    let compiled = || -> Vec<PathBuf> {
        std::fs::read_dir(cache.join("tokenizers"))
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default()
    };
    let built = "stage tokenizer loaded and self-checked";
    let read = "stage tokenizer read from the cache";
    let (first, first_metrics, log) = report(&cache);
    assert!(log.contains(built) && !log.contains(read), "{log}");
    let files = compiled();
    assert_eq!(files.len(), 1, "{files:?}");
    let (again, metrics, log) = report(&cache);
    assert!(log.contains(read) && !log.contains(built), "{log}");
    assert_eq!((again, metrics), (first.clone(), first_metrics.clone()));
    // One bit of the body flipped: not trusted, rebuilt, and the rebuilt file is read next time.
    let mut bytes = std::fs::read(&files[0]).expect("read");
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&files[0], &bytes).expect("write");
    for want in [built, read] {
        let (got, metrics, log) = report(&cache);
        assert!(log.contains(want), "{want}: {log}");
        assert_eq!((got, metrics), (first.clone(), first_metrics.clone()));
    }
    assert_eq!(compiled(), files, "the damaged file was replaced in place");
    // `off`: built every time, nothing written.
    for _ in 0..2 {
        let (got, _, log) = report(Path::new("off"));
        assert!(log.contains(built), "{log}");
        assert_eq!(got, first);
    }
    assert!(!Path::new("off").exists());
}

/// The caches' failure policy: a cache that cannot be written is a warning naming it, never a
/// failed or different analysis, and the next analysis tries again.
#[test]
fn an_unwritable_cache_is_a_warning() {
    use recap_schemas::analysis::{RECORDS_FILE, TEXTS_FILE, TOKENS_FILE};
    let dir = tempfile::tempdir().expect("tmp");
    let blocked = copy_fixture("small", &dir.path().join("a"));
    let fresh = copy_fixture("small", &dir.path().join("b"));
    let (want, _) = report_json(&fresh, "gpt2", &[]);
    let id = want["tokenizer_id"].as_str().expect("id").to_string();
    let want_metrics = read_metrics(&fresh.join("analysis").join(&id).join("metrics.parquet"));
    // File permissions do not stop root: a non-empty folder where each cache goes does.
    let analysis = blocked.join("analysis");
    let caches = [
        analysis.join(RECORDS_FILE),
        analysis.join(TEXTS_FILE),
        analysis.join(&id).join(TOKENS_FILE),
    ];
    for cache in &caches {
        std::fs::create_dir_all(cache.join("blocker")).expect("mkdir");
    }
    for round in 0..2 {
        let (got, log) = report_json(&blocked, "gpt2", &[]);
        assert_eq!(
            got, want,
            "round {round}: an analysis without its caches differs from a fresh one"
        );
        let metrics = read_metrics(&analysis.join(&id).join("metrics.parquet"));
        assert_eq!(
            format!("{metrics:?}"),
            format!("{want_metrics:?}"),
            "round {round}: metrics.parquet"
        );
        for cache in &caches {
            let shown = cache.file_name().expect("name").to_string_lossy();
            assert!(
                log.lines()
                    .any(|l| l.contains("WARN") && l.contains("could not write") && l.contains(&*shown)),
                "round {round}: no warning names the unwritable cache {shown}:\n{log}"
            );
        }
        assert!(
            !log.contains("reusing reassembled records"),
            "round {round}: nothing was cached: {log}"
        );
    }
}

#[test]
fn a_killed_run_is_analyzed_and_its_unfinished_requests_are_named_lost() {
    // Each request takes ~2 s, so the closed segments show finished requests and requests in
    // flight together from the second or third flush on.
    let sim = SimProcess::start(&["--itl", "5ms", "--output-tokens", "400"]).expect("sim");
    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path().join("killed");
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
            "--quiet",
        ],
    );
    // Killed once the closed segments hold 4 finished requests and one still in flight (sent,
    // no terminal row): it has ~1 s left, far more than the kill takes.
    wait_for_child(
        &mut child,
        "4 finished and 1 unfinished request in closed segments",
        || {
            if closed_segments(&out, "events").is_empty() {
                return None;
            }
            let run = read_run(&out).ok()?;
            let sent = |id: &u64| run.events[id].iter().any(|e| e.kind == EventKind::Sent);
            let finished = run.events.keys().filter(|id| !run.terminals(**id).is_empty()).count();
            let unfinished = run
                .events
                .keys()
                .filter(|id| sent(id) && run.terminals(**id).is_empty())
                .count();
            (finished >= 4 && unfinished >= 1).then_some(())
        },
    );
    child.kill().expect("kill");
    child.wait().expect("wait");
    let res = analyze(&[
        "report",
        out.to_str().expect("utf8"),
        "--tokenizer",
        tokenizer_path("gpt2").to_str().expect("utf8"),
        "--json",
        "-q",
    ]);
    assert!(res.status.success(), "{}", String::from_utf8_lossy(&res.stderr));
    let s: Value = one_summary(&res.stdout);
    assert_eq!(s["status"], "running");
    assert!(s["requests"]["total"].as_u64().expect("total") >= 4);
    assert!(s["requests"]["errors"]["lost"].as_u64().unwrap_or(0) >= 1, "{s}");
}

#[test]
fn sql_over_requests_events_and_metrics() {
    let dir = tempfile::tempdir().expect("tmp");
    let run_dir = copy_fixture("small", dir.path());
    let run = run_dir.to_str().expect("utf8");
    let q = analyze(&["sql", run, "SELECT count(*) AS n FROM requests"]);
    assert!(q.status.success(), "{}", String::from_utf8_lossy(&q.stderr));
    assert!(
        String::from_utf8_lossy(&q.stdout).contains("| 24 "),
        "{}",
        String::from_utf8_lossy(&q.stdout)
    );
    assert!(analyze(&[
        "report",
        run,
        "--tokenizer",
        tokenizer_path("gpt2").to_str().expect("utf8"),
        "-q"
    ])
    .status
    .success());
    // The same run twice: the union holds both copies, labelled by folder name.
    let q = analyze(&[
        "sql",
        run,
        run,
        "SELECT run, count(*) AS n FROM metrics WHERE ok GROUP BY run",
    ]);
    assert!(q.status.success(), "{}", String::from_utf8_lossy(&q.stderr));
    assert!(
        String::from_utf8_lossy(&q.stdout).contains("| small | 40 "),
        "{}",
        String::from_utf8_lossy(&q.stdout)
    );
    let bad = analyze(&["sql", run, "SELECT nope FROM events"]);
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn newer_schema_versions_and_bad_tokenizers_fail_clearly_and_corrupt_segments_are_skipped() {
    let dir = tempfile::tempdir().expect("tmp");
    let run_dir = copy_fixture("small", dir.path());
    let run = run_dir.to_str().expect("utf8");
    let tok = tokenizer_path("gpt2");

    let bad_tok = dir.path().join("tokenizer.json");
    std::fs::write(&bad_tok, "{}").expect("write");
    let res = analyze(&["report", run, "--tokenizer", bad_tok.to_str().expect("utf8")]);
    assert_eq!(res.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&res.stderr).contains("tokenizer.json"));

    // Truncate one events segment: it is skipped with a warning naming it, the rest analyzed.
    let seg = run_dir.join("events/part-00000.parquet");
    let bytes = std::fs::read(&seg).expect("read");
    std::fs::write(&seg, &bytes[..bytes.len() / 2]).expect("truncate");
    let res = analyze(&["report", run, "--tokenizer", tok.to_str().expect("utf8"), "--json"]);
    assert!(res.status.success(), "{}", String::from_utf8_lossy(&res.stderr));
    assert!(String::from_utf8_lossy(&res.stderr).contains("part-00000.parquet"));

    let manifest = run_dir.join("manifest.json");
    let mut m: Value = serde_json::from_slice(&std::fs::read(&manifest).expect("read")).expect("json");
    m["schema_version"] = Value::from(99);
    std::fs::write(&manifest, m.to_string()).expect("write");
    let res = analyze(&["report", run, "--tokenizer", tok.to_str().expect("utf8")]);
    assert_eq!(res.status.code(), Some(2));
    let err = String::from_utf8_lossy(&res.stderr);
    assert!(
        err.contains("schema version 99") && err.contains("manifest.json"),
        "{err}"
    );
}

#[test]
fn sweep_labels_runs_by_load_marks_the_front_and_fits_ellipses_for_repeats() {
    let sim = SimProcess::start(&["--ttft", "2ms", "--itl", "1ms", "--output-tokens", "8"]).expect("sim");
    let dir = tempfile::tempdir().expect("tmp");
    let mut runs = Vec::new();
    for (i, c) in ["1", "2", "2", "4", "4", "4"].iter().enumerate() {
        let out = dir.path().join(format!("run{i}-c{c}"));
        capture_into(&sim, &out, &["--concurrency", c, "--requests", "12"]);
        runs.push(out.to_str().expect("utf8").to_string());
    }
    let sweep_dir = dir.path().join("sweep");
    let mut args = vec!["sweep".to_string()];
    args.extend(runs.iter().cloned());
    for a in [
        "--tokenizer",
        tokenizer_path("gpt2").to_str().expect("utf8"),
        "--out",
        sweep_dir.to_str().expect("utf8"),
        "--json",
        "-q",
    ] {
        args.push(a.to_string());
    }
    let res = Command::new(workspace_bin("analyze"))
        .args(&args)
        .output()
        .expect("analyze sweep");
    assert!(res.status.success(), "{}", String::from_utf8_lossy(&res.stderr));
    let s: Value = serde_json::from_slice(&res.stdout).expect("json");
    let rows = s["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 6);
    let labels: Vec<&str> = rows.iter().map(|r| r["label"].as_str().expect("label")).collect();
    assert_eq!(labels, ["c1", "c2", "c2", "c4", "c4", "c4"]);
    // Both default axes are better higher. The front, computed here by a skyline sweep.
    let xy = |r: &Value| {
        (
            r["values"]["output_tokens_per_s"].as_f64().expect("x"),
            r["values"]["output_tokens_per_s_per_user"].as_f64().expect("y"),
        )
    };
    let pts: Vec<(f64, f64)> = rows.iter().map(xy).collect();
    let marked: Vec<bool> = rows.iter().map(|r| r["pareto"].as_bool().expect("pareto")).collect();
    assert_eq!(marked, pareto_skyline(&pts), "the runs' front of {pts:?}");
    let groups = s["groups"].as_array().expect("groups");
    let near = |got: f64, want: f64, scale: f64, what: &str| {
        assert!(
            (got - want).abs() <= 1e-8 * scale.abs().max(1e-12) + 1e-12,
            "{what}: {got} from analyze, {want} by hand"
        );
    };
    let mut means = Vec::new();
    for label in ["c1", "c2", "c4"] {
        let g = groups.iter().find(|g| g["label"] == label).expect("group");
        let p: Vec<(f64, f64)> = rows.iter().filter(|r| r["label"] == label).map(xy).collect();
        let n = p.len();
        assert_eq!(g["runs"], n, "{g}");
        let nf = n as f64;
        let (mx, my) = (
            p.iter().map(|q| q.0).sum::<f64>() / nf,
            p.iter().map(|q| q.1).sum::<f64>() / nf,
        );
        means.push((mx, my));
        // 95% t quantiles in closed form: df 1 is Cauchy, tan(π(p - 1/2)); df 2 is
        // (2p - 1) / sqrt(2p(1 - p)).
        let t = match n {
            2 => (std::f64::consts::PI * 0.475).tan(),
            3 => 0.95 / (2.0 * 0.975 * 0.025_f64).sqrt(),
            _ => 0.0,
        };
        for (axis, m, v) in [
            ("x", mx, p.iter().map(|q| q.0).collect::<Vec<_>>()),
            ("y", my, p.iter().map(|q| q.1).collect()),
        ] {
            let i = &g[axis];
            let sd = if n > 1 {
                (v.iter().map(|a| (a - m).powi(2)).sum::<f64>() / (nf - 1.0)).sqrt()
            } else {
                0.0
            };
            near(i["mean"].as_f64().expect("mean"), m, m, &format!("{label} {axis} mean"));
            near(i["std"].as_f64().expect("std"), sd, m, &format!("{label} {axis} std"));
            near(
                i["high"].as_f64().expect("high"),
                m + t * sd / nf.sqrt(),
                m,
                &format!("{label} {axis} high"),
            );
            // Cut at 0: a rate's true mean is never negative.
            near(
                i["low"].as_f64().expect("low"),
                (m - t * sd / nf.sqrt()).max(0.0),
                m,
                &format!("{label} {axis} low"),
            );
            // Runs needed for ±5 %: at least (1.96 sd / (0.05 m))², since t > 1.96 always.
            let needed = &g["repeats_needed"][if axis == "x" { 0 } else { 1 }];
            if n < 2 {
                assert!(needed.is_null(), "{label}: no spread known from one run");
            } else {
                let least = (1.959_964 * sd / (0.05 * m)).powi(2).ceil().max(2.0);
                let got = needed.as_f64().expect("repeats_needed");
                assert!(got >= least, "{label} {axis}: {got} runs needed, at least {least}");
            }
        }
        let e = &g["ellipse"];
        if n < 3 {
            assert!(g["spread"].is_null(), "fewer than three runs have no spread: {g}");
        } else {
            // The spread of single runs: the same shape, r² larger by n + 1.
            let (a, sa) = (
                e["semi_major"].as_f64().expect("a"),
                g["spread"]["semi_major"].as_f64().expect("spread"),
            );
            near(sa, a * (nf + 1.0).sqrt(), a, &format!("{label} spread"));
        }
        if n < 2 {
            assert!(e.is_null(), "one run has no ellipse: {g}");
            continue;
        }
        let f = |k: &str| e[k].as_f64().unwrap_or_else(|| panic!("ellipse {k}: {g}"));
        near(f("center_x"), mx, mx, &format!("{label} ellipse centre x"));
        near(f("center_y"), my, my, &format!("{label} ellipse centre y"));
        let (a, b, angle) = (f("semi_major"), f("semi_minor"), f("angle_rad"));
        assert!(
            a >= b && b >= 0.0 && angle > -std::f64::consts::FRAC_PI_2 && angle <= std::f64::consts::FRAC_PI_2,
            "{e}"
        );
        if n == 2 {
            // Two runs: the covariance is d dᵀ/2 for their difference d, so the ellipse is a
            // segment along d, of half-length sqrt(r²|d|²/2) with r² = χ²₂(0.95)/2 = -ln 0.05.
            let (dx, dy) = (p[0].0 - p[1].0, p[0].1 - p[1].1);
            let r2 = -(0.05_f64.ln());
            let len = (dx * dx + dy * dy).sqrt();
            near(a, (r2 * len * len / 2.0).sqrt(), len, &format!("{label} semi-major"));
            assert!(b <= 1e-6 * len, "{label}: semi-minor {b} of a segment {len} long");
            if len > 0.0 {
                let along = (dy / dx).atan();
                let turn = (angle - along).rem_euclid(std::f64::consts::PI);
                assert!(
                    turn.min(std::f64::consts::PI - turn) < 1e-9,
                    "{label}: angle {angle}, difference at {along}"
                );
            }
        } else {
            // Hotelling: r² = 2(n-1)/(n(n-2)) F⁻¹(0.95; 2, n-2); with 2 numerator degrees of
            // freedom F⁻¹(c; 2, d) = d/2 ((1-c)^(-2/d) - 1), so for n = 3: (4/3) 199.5 = 266.
            let d2 = nf - 2.0;
            let r2 = 2.0 * (nf - 1.0) / (nf * d2) * d2 / 2.0 * (0.05_f64.powf(-2.0 / d2) - 1.0);
            let dev: Vec<(f64, f64)> = p.iter().map(|q| (q.0 - mx, q.1 - my)).collect();
            let s = |u: fn(&(f64, f64)) -> f64, w: fn(&(f64, f64)) -> f64| {
                dev.iter().map(|d| u(d) * w(d)).sum::<f64>() / (nf - 1.0)
            };
            let (sxx, sxy, syy) = (s(|d| d.0, |d| d.0), s(|d| d.0, |d| d.1), s(|d| d.1, |d| d.1));
            // The ellipse's own matrix R diag(a², b²) Rᵀ must be r² S.
            let (c, sn) = (angle.cos(), angle.sin());
            let scale = r2 * (sxx + syy);
            near(
                a * a * c * c + b * b * sn * sn,
                r2 * sxx,
                scale,
                &format!("{label} ellipse xx"),
            );
            near(
                (a * a - b * b) * c * sn,
                r2 * sxy,
                scale,
                &format!("{label} ellipse xy"),
            );
            near(
                a * a * sn * sn + b * b * c * c,
                r2 * syy,
                scale,
                &format!("{label} ellipse yy"),
            );
        }
    }
    let group_front: Vec<bool> = ["c1", "c2", "c4"]
        .iter()
        .map(|l| {
            groups.iter().find(|g| g["label"] == *l).expect("group")["pareto"]
                .as_bool()
                .expect("pareto")
        })
        .collect();
    assert_eq!(
        group_front,
        pareto_skyline(&means),
        "the groups' front of their means {means:?}"
    );
    for f in ["sweep.json", "sweep.csv", "sweep.parquet"] {
        assert!(sweep_dir.join(f).exists(), "{f}");
    }
    let bad = analyze(&[
        "sweep",
        &runs[0],
        "--tokenizer",
        tokenizer_path("gpt2").to_str().expect("utf8"),
        "--out",
        sweep_dir.to_str().expect("utf8"),
        "--x",
        "nope",
    ]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown sweep axis"));
}

/// `analyze compare`: a known TTFT shift (the simulator's `--ttft` 50 ms against 75 ms) is
/// called worse, with an interval around the shift; a repeat of the base configuration is
/// not; `--fail-on worse` turns the verdict into the exit status.
#[test]
fn compare_finds_a_known_ttft_shift_and_no_difference_between_repeats() {
    let dir = tempfile::tempdir().expect("tmp");
    let capture_from = |sim: &SimProcess, name: &str| {
        let out = dir.path().join(name);
        capture_into(
            sim,
            &out,
            &["--requests", "120", "--concurrency", "4", "--max-tokens", "4"],
        );
        out.display().to_string()
    };
    let base_sim = SimProcess::start(&["--ttft", "50ms", "--itl", "1ms"]).expect("sim");
    let slow_sim = SimProcess::start(&["--ttft", "75ms", "--itl", "1ms"]).expect("sim");
    let base = capture_from(&base_sim, "base");
    let repeat = capture_from(&base_sim, "repeat");
    let slow = capture_from(&slow_sim, "slow");
    let gpt2 = tokenizer_path("gpt2").display().to_string();
    let args = |extra: &[&str]| {
        let mut a = vec![
            "compare",
            base.as_str(),
            repeat.as_str(),
            slow.as_str(),
            "--tokenizer",
            gpt2.as_str(),
            "--stats",
            "p50",
            "--threshold",
            "0.1",
        ];
        a.extend_from_slice(extra);
        a.into_iter().map(String::from).collect::<Vec<_>>()
    };
    let out = Command::new(workspace_bin("analyze"))
        .args(args(&["--format", "json"]))
        .output()
        .expect("analyze");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    let row = |run: usize, metric: &str| -> Value {
        v["runs"][run]["rows"]
            .as_array()
            .expect("rows")
            .iter()
            .find(|r| r["metric"] == metric && r["stat"] == "p50")
            .cloned()
            .expect("row")
    };
    let same = row(0, "ttft_ms");
    assert_eq!(same["verdict"], "same", "{same}");
    let worse = row(1, "ttft_ms");
    assert_eq!(worse["verdict"], "worse", "{worse}");
    // The sim adds 25 ms to a TTFT of about 50 ms: +50 % or so, inside the interval.
    let (change, low, high) = (
        worse["change"].as_f64().expect("change"),
        worse["change_low"].as_f64().expect("low"),
        worse["change_high"].as_f64().expect("high"),
    );
    assert!(low <= change && change <= high && low > 0.3 && change < 0.6, "{worse}");
    assert!(worse["p_value"].as_f64().expect("p") < 1e-6, "{worse}");
    assert_eq!(row(1, "tpot_ms")["verdict"], "same", "the shift is in TTFT only");

    // --fail-on worse: exit 1 with the slow run, 0 with only the repeat.
    let fail = Command::new(workspace_bin("analyze"))
        .args(args(&["--fail-on", "worse", "-q"]))
        .output()
        .expect("analyze");
    assert_eq!(fail.status.code(), Some(1), "{}", String::from_utf8_lossy(&fail.stderr));
    let pass = Command::new(workspace_bin("analyze"))
        .args([
            "compare",
            base.as_str(),
            repeat.as_str(),
            "--tokenizer",
            gpt2.as_str(),
            "--stats",
            "p50",
            "--threshold",
            "0.1",
            "--fail-on",
            "worse",
            "-q",
        ])
        .output()
        .expect("analyze");
    assert_eq!(pass.status.code(), Some(0), "{}", String::from_utf8_lossy(&pass.stderr));
}

/// Per-token ITL under each peer's definition, on a capture whose chunks carry three tokens:
/// the expected samples come from the recorded events (each event's time, and its words:
/// `recap-sim --tokenizer` answers in words that are one token each), not from analyze.
#[test]
fn every_itl_definition_matches_the_chunks_the_simulator_sent() {
    let dir = tempfile::tempdir().expect("tmp");
    let qwen3 = tokenizer_path("qwen3").display().to_string();
    let sim = SimProcess::start(&[
        "--ttft",
        "5ms",
        "--itl",
        "2ms",
        "--tokens-per-chunk",
        "3",
        "--tokenizer",
        &qwen3,
    ])
    .expect("sim");
    let run_dir = dir.path().join("run");
    capture_into(
        &sim,
        &run_dir,
        &["--requests", "12", "--concurrency", "3", "--max-tokens", "10"],
    );
    let run = read_run(&run_dir).expect("read run");
    // (time, tokens) of each event with content, per request: the simulator's chunks.
    let chunks: BTreeMap<u64, Vec<(i64, i64)>> = run
        .events
        .iter()
        .map(|(id, evs)| {
            let mut c: Vec<(Option<u32>, i64, i64)> = evs
                .iter()
                .filter(|e| e.kind == EventKind::Sse)
                .filter_map(|e| {
                    let words = e.content.as_deref()?.split_whitespace().count() as i64;
                    (words > 0).then_some((e.seq, e.t_ns, words))
                })
                .collect();
            c.sort();
            (*id, c.into_iter().map(|(_, t, k)| (t, k)).collect())
        })
        .collect();
    assert!(
        chunks
            .values()
            .all(|c| c.iter().map(|x| x.1).collect::<Vec<_>>() == [3, 3, 3, 1]),
        "10 tokens in chunks of 3: {chunks:?}"
    );
    let expected = |def: &str, c: &[(i64, i64)]| -> Vec<i64> {
        let gaps: Vec<(i64, i64)> = c.windows(2).map(|w| (w[1].0 - w[0].0, w[1].1)).collect();
        match def {
            "split" => gaps.iter().flat_map(|(g, k)| vec![g / k; *k as usize]).collect(),
            "divided" => gaps.iter().map(|(g, k)| g / k).collect(),
            "first-gets-gap" => {
                let mut v = vec![0; c[0].1 as usize - 1];
                for (g, k) in &gaps {
                    v.push(*g);
                    v.extend(vec![0; *k as usize - 1]);
                }
                v
            }
            _ => {
                let n: i64 = c.iter().map(|x| x.1).sum();
                vec![(c[c.len() - 1].0 - c[0].0) / (n - 1)]
            }
        }
    };
    for def in ["split", "divided", "first-gets-gap", "mean"] {
        let (summary, _) = report_json(&run_dir, "qwen3", &["--itl", def]);
        let adir = run_dir
            .join("analysis")
            .join(summary["tokenizer_id"].as_str().expect("id"));
        // itl.parquet, per request, in file order.
        let mut got: BTreeMap<u64, Vec<i64>> = BTreeMap::new();
        let f = File::open(adir.join("itl.parquet")).expect("itl.parquet");
        for b in ParquetRecordBatchReaderBuilder::try_new(f)
            .expect("parquet")
            .build()
            .expect("reader")
        {
            let b = b.expect("batch");
            let ids = b.column(0).as_primitive::<UInt64Type>().clone();
            let gaps = b.column(1).as_primitive::<Int64Type>().clone();
            for i in 0..b.num_rows() {
                got.entry(ids.value(i)).or_default().push(gaps.value(i));
            }
        }
        for (id, c) in &chunks {
            assert_eq!(
                got.get(id).cloned().unwrap_or_default(),
                expected(def, c),
                "{def}: request {id}"
            );
        }
        assert_eq!(
            summary["metrics"]["itl_ms"]["count"].as_u64(),
            Some(got.values().map(Vec::len).sum::<usize>() as u64),
            "{def}"
        );
        // Tokens per chunk 10/4; the second token came with the first chunk, so its time is
        // TTFT.
        let tpc = &summary["metrics"]["tokens_per_chunk"];
        assert_eq!(
            (tpc["min"].as_f64(), tpc["max"].as_f64()),
            (Some(2.5), Some(2.5)),
            "{tpc}"
        );
        assert_eq!(
            summary["metrics"]["time_to_second_token_ms"]["p50"],
            summary["metrics"]["ttft_ms"]["p50"]
        );
    }
}

/// `--constraint` and `--mlperf`: each bound recomputed here from `metrics.parquet` with
/// LoadGen's rules (percentile `sorted[⌊n·p⌋]`; early stopping passes with `h + t` requests,
/// `h` the fewest under-bound requests that make seeing at most `t` over the bound among
/// `h + t` less likely than 1 % were the true over-bound share `1 - p`), the binomial summed
/// here term by term through `ln Γ` (not `recap-stats`' incomplete beta). Failed requests count
/// as over every bound.
#[test]
fn constraints_follow_loadgens_early_stopping() {
    let (_sim, _dir, run) = sim_run(&["--error-rate", "0.03"], &["--concurrency", "4", "--requests", "240"]);
    let metrics = |run: &Path| {
        let folder = std::fs::read_dir(run.join("analysis"))
            .expect("analysis")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.join("metrics.parquet").exists())
            .expect("an analysis folder");
        read_metrics(&folder.join("metrics.parquet"))
    };
    // A first pass finds the TTFT p90 so the bound below splits the run.
    let (first, _) = report_json(&run, "gpt2", &[]);
    let ttft_p50 = first["metrics"]["ttft_ms"]["p50"].as_f64().expect("p50");
    let bound = format!("ttft_p90={:.3}ms,e2e_p99=10s", ttft_p50);
    let (s, _) = report_json(&run, "gpt2", &["--constraint", &bound, "--mlperf", "llama3.1-8b"]);
    let rows = metrics(&run);
    let c = &s["constraints"];
    assert_eq!(c["set"], "mlperf llama3.1-8b", "{c}");
    let checks = c["checks"].as_array().expect("checks");
    assert_eq!(checks.len(), 4, "the set's TTFT and TPOT, then the two given: {c}");

    /// P(Binomial(n, q) ≤ t), summed term by term.
    fn binom_cdf(t: u64, n: u64, q: f64) -> f64 {
        fn ln_gamma(x: f64) -> f64 {
            // Lanczos (g = 7, n = 9), accurate to ~1e-15 relative for x > 0.
            const C: [f64; 9] = [
                0.999_999_999_999_809_9,
                676.520_368_121_885_1,
                -1_259.139_216_722_402_8,
                771.323_428_777_653_1,
                -176.615_029_162_140_6,
                12.507_343_278_686_905,
                -0.138_571_095_265_720_12,
                9.984_369_578_019_572e-6,
                1.505_632_735_149_311_6e-7,
            ];
            let x = x - 1.0;
            let mut a = C[0];
            let t = x + 7.5;
            for (i, c) in C.iter().enumerate().skip(1) {
                a += c / (x + i as f64);
            }
            0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
        }
        (0..=t.min(n))
            .map(|k| {
                let (k, nf) = (k as f64, n as f64);
                (ln_gamma(nf + 1.0) - ln_gamma(k + 1.0) - ln_gamma(nf - k + 1.0)
                    + k * q.ln()
                    + (nf - k) * (1.0 - q).ln())
                .exp()
            })
            .sum()
    }
    let min_passing = |t: u64, p: f64| (1..).find(|h| binom_cdf(t, h + t, 1.0 - p) < 0.01).expect("h");

    for (k, (metric, pct, limit_ms)) in checks.iter().zip([
        ("ttft_ms", 99.0, 2000.0),
        ("tpot_ms", 99.0, 100.0),
        ("ttft_ms", 90.0, (ttft_p50 * 1e3).round() / 1e3),
        ("e2e_ms", 99.0, 10_000.0),
    ]) {
        assert_eq!(k["metric"], metric, "{k}");
        assert_eq!(k["percentile"].as_f64(), Some(pct), "{k}");
        assert!(close(k["limit_ms"].as_f64().expect("limit"), limit_ms), "{k}");
        let value = |r: &MetricRow| match metric {
            "ttft_ms" => r.ttft_ns,
            "tpot_ns" | "tpot_ms" => r.tpot_ns,
            _ => r.e2e_ns,
        };
        // TPOT leaves out one-token answers; every answer here has 6 tokens.
        let samples: Vec<f64> = rows
            .values()
            .map(|r| match (r.ok, value(r)) {
                (true, Some(ns)) => ns as f64 / 1e6,
                _ => f64::INFINITY,
            })
            .collect();
        let n = samples.len() as u64;
        let over = samples.iter().filter(|v| **v > limit_ms).count() as u64;
        let mut ok: Vec<f64> = samples.iter().copied().filter(|v| v.is_finite()).collect();
        ok.sort_by(f64::total_cmp);
        let loadgen_value = ok[((ok.len() as f64) * pct / 100.0) as usize];
        let h = min_passing(over, pct / 100.0);
        assert_eq!(k["samples"].as_u64(), Some(n), "{k}");
        assert_eq!(k["over"].as_u64(), Some(over), "{k}");
        assert!(
            close(k["value_ms"].as_f64().expect("value"), loadgen_value),
            "{k}: {loadgen_value}"
        );
        assert_eq!(k["needed"].as_u64(), Some(h + over), "{k}");
        assert_eq!(k["more_needed"].as_u64(), Some((h + over).saturating_sub(n)), "{k}");
        assert_eq!(k["early_stopping"].as_bool(), Some(n >= h + over), "{k}");
        assert_eq!(k["within"].as_bool(), Some(loadgen_value <= limit_ms), "{k}");
    }
    let failed = rows.values().filter(|r| !r.ok).count();
    assert!(failed > 0, "the simulator injected errors");
    // p99 over 240 requests needs at least 459: the set's checks cannot pass, and the run is
    // far from MLPerf's 600 s.
    assert_eq!(checks[0]["early_stopping"], false);
    assert_eq!(c["passed"], false);
    // Bad input is a usage error naming the part.
    let bad = analyze(&[
        "report",
        run.to_str().expect("utf8"),
        "--tokenizer",
        tokenizer_path("gpt2").to_str().expect("utf8"),
        "--constraint",
        "ttft_p99=soon",
    ]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("ttft_p99=soon"));
}

/// `time_to_first_answer_ms`: for a request that reasons first, from `sent` to the first SSE
/// event carrying answer content, recomputed here from the recorded events.
#[test]
fn time_to_first_answer_is_the_first_content_after_the_reasoning() {
    let (_sim, _dir, run) = sim_run(&["--reasoning", "5"], &["--concurrency", "2", "--requests", "20"]);
    let (s, _) = report_json(&run, "gpt2", &[]);
    let recorded = read_run(&run).expect("run");
    let mut want = Vec::new();
    for (id, events) in &recorded.events {
        let sent = events
            .iter()
            .filter(|e| e.kind == EventKind::Sent)
            .map(|e| e.t_ns)
            .max();
        let answer = recorded
            .sse(*id)
            .into_iter()
            .find(|e| e.content.as_deref().is_some_and(|c| !c.is_empty()))
            .map(|e| e.t_ns);
        let first = recorded
            .sse(*id)
            .into_iter()
            .find(|e| e.reasoning.as_deref().is_some_and(|c| !c.is_empty()));
        assert!(first.is_some(), "request {id} reasoned first");
        want.push((answer.expect("answer") - sent.expect("sent")) as f64 / 1e6);
    }
    let d = &s["metrics"]["time_to_first_answer_ms"];
    assert_eq!(d["count"].as_u64(), Some(want.len() as u64), "{d}");
    assert!(
        close(d["p50"].as_f64().expect("p50"), numpy_percentile(&want, 50.0)),
        "{d} {want:?}"
    );
    assert!(
        close(d["max"].as_f64().expect("max"), numpy_percentile(&want, 100.0)),
        "{d}"
    );
    // The answer starts after the reasoning: later than TTFT, by at least the 5 reasoning
    // tokens' 1 ms gaps.
    let ttft = s["metrics"]["ttft_ms"]["p50"].as_f64().expect("ttft");
    assert!(d["p50"].as_f64().expect("p50") > ttft + 4.0, "{d} vs TTFT {ttft}");
}
