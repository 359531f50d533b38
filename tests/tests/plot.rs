//! End-to-end: capture -> analyze -> plot against the simulated endpoint, PNG and SVG.

use std::path::Path;
use std::process::{Command, Output};

use recap_tests::harness::{workspace_bin, SimProcess};

fn run(bin: &str, args: &[&str]) -> Output {
    let out = Command::new(workspace_bin(bin)).args(args).output().expect("run");
    assert!(
        out.status.success() || bin == "plot",
        "{bin} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn tokenizer() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/tokenizers/gpt2/tokenizer.json.gz")
        .display()
        .to_string()
}

fn capture_and_analyze(sim: &SimProcess, dir: &Path, name: &str, concurrency: &str, requests: &str) -> String {
    let out = dir.join(name);
    let o = out.to_str().expect("utf8");
    run(
        "capture",
        &[
            "--url",
            &sim.url(),
            "--out",
            o,
            "--concurrency",
            concurrency,
            "--requests",
            requests,
            "--warmup-requests",
            "2",
            "--quiet",
        ],
    );
    run("analyze", &["report", o, "--tokenizer", &tokenizer(), "-q"]);
    o.to_string()
}

#[test]
fn capture_analyze_plot_writes_png_and_svg_with_titles_and_labels() {
    let sim = SimProcess::start(&["--ttft", "2ms", "--itl", "1ms", "--output-tokens", "12"]).expect("sim");
    let dir = tempfile::tempdir().expect("tmp");
    let a = capture_and_analyze(&sim, dir.path(), "a", "2", "20");
    let b = capture_and_analyze(&sim, dir.path(), "b", "4", "20");
    let charts = dir.path().join("charts");
    let c = charts.to_str().expect("utf8");
    for format in ["png", "svg"] {
        let out = run("plot", &[&a, "--out", c, "--format", format]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    for stem in [
        "latency_histograms",
        "latency_cdf",
        "timeline",
        "tokens",
        "token_agreement",
    ] {
        let png = std::fs::read(charts.join(format!("{stem}.png"))).expect("png");
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "{stem}.png is a PNG");
        assert!(png.len() > 10_000, "{stem}.png is not blank");
        let svg = std::fs::read_to_string(charts.join(format!("{stem}.svg"))).expect("svg");
        assert!(svg.starts_with("<svg") || svg.contains("<svg"), "{stem}.svg");
    }
    let svg = |stem: &str| std::fs::read_to_string(charts.join(format!("{stem}.svg"))).expect("svg");
    let cdf = svg("latency_cdf");
    for text in [
        "Latency CDFs: a",
        "Time to first token (TTFT)",
        "Time per output token (TPOT)",
        "Inter-chunk latency (ICL)",
        "End-to-end latency (E2E)",
        "fraction of requests",
        "ms",
        "p99 = ",
    ] {
        assert!(cdf.contains(text), "latency_cdf.svg lacks {text:?}");
    }
    let tl = svg("timeline");
    for text in [
        "Timeline: a",
        "time since start (s)",
        "latency (ms)",
        "warmup",
        "completed requests/s",
        "requests in flight",
    ] {
        assert!(tl.contains(text), "timeline.svg lacks {text:?}");
    }
    assert!(svg("token_agreement").contains("y = x"));
    assert!(svg("tokens").contains("Output sequence length (OSL)"));

    // Compare two runs.
    let cmp = dir.path().join("cmp");
    let out = run(
        "plot",
        &[
            &a,
            &b,
            "--compare",
            "--out",
            cmp.to_str().expect("utf8"),
            "--format",
            "svg",
        ],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let s = std::fs::read_to_string(cmp.join("compare_cdf.svg")).expect("svg");
    assert!(s.contains("Latency CDFs compared: a vs b"));

    // A sweep with a repeated configuration.
    let b2 = capture_and_analyze(&sim, dir.path(), "b2", "4", "20");
    let sweep = dir.path().join("sweep");
    run(
        "analyze",
        &[
            "sweep",
            &a,
            &b,
            &b2,
            "--tokenizer",
            &tokenizer(),
            "--out",
            sweep.to_str().expect("utf8"),
            "-q",
        ],
    );
    let out = run("plot", &[sweep.to_str().expect("utf8"), "--out", c, "--format", "svg"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let p = svg("pareto");
    for text in [
        "Pareto front",
        "output_tokens_per_s (tokens/s)",
        "tokens/s per user",
        "c2",
        "c4",
        "confidence ellipse",
    ] {
        assert!(p.contains(text), "pareto.svg lacks {text:?}");
    }
    assert!(svg("latency_vs_throughput").contains("e2e_ms_p99 (ms)"));
}

#[test]
fn empty_or_single_request_runs_get_a_clear_message() {
    let sim = SimProcess::start(&[]).expect("sim");
    let dir = tempfile::tempdir().expect("tmp");
    let one = dir.path().join("one");
    let o = one.to_str().expect("utf8");
    run(
        "capture",
        &["--url", &sim.url(), "--out", o, "--requests", "1", "--quiet"],
    );
    let charts = dir.path().join("charts");
    let before = run("plot", &[o, "--out", charts.to_str().expect("utf8")]);
    assert_eq!(before.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&before.stderr).contains("no analysis found"),
        "{}",
        String::from_utf8_lossy(&before.stderr)
    );
    run("analyze", &["report", o, "--tokenizer", &tokenizer(), "-q"]);
    let out = run("plot", &[o, "--out", charts.to_str().expect("utf8")]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("1 successful measured request") && err.contains("at least 2"),
        "{err}"
    );
    assert!(!charts.join("latency_cdf.png").exists(), "no blank chart is written");
}
