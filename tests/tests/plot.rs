//! End-to-end: capture -> analyze -> plot against the simulated endpoint, PNG and SVG.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::Path;
use std::process::{Command, Output};

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::Array;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use recap_schemas::analysis::metrics as m;
use recap_schemas::Phase;
use recap_tests::harness::{pareto_skyline, workspace_bin, SimProcess};
use recap_tests::runs::read_run;
use serde_json::Value;

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

/// The text of every `<text>` element of an SVG written by plotters (one per line).
fn svg_texts(svg: &str) -> Vec<String> {
    svg.split("<text")
        .skip(1)
        .filter_map(|t| Some(t.split_once('>')?.1.split_once("</text>")?.0.trim().to_string()))
        .collect()
}

/// `<circle>` elements of radius `r` whose attributes include `attrs` (e.g. `opacity="1"
/// fill="#0072B2"`).
fn circles(svg: &str, r: u32, attrs: &str) -> usize {
    let radius = format!(" r=\"{r}\" ");
    svg.split("<circle")
        .skip(1)
        .filter(|c| {
            let el = c.split('>').next().unwrap_or("");
            el.contains(&radius) && el.contains(attrs)
        })
        .count()
}

/// The vertex count of each `<polyline>` stroked `#stroke`, `width` wide, in drawing order.
fn polylines(svg: &str, stroke: &str, width: u32) -> Vec<usize> {
    let attrs = format!("stroke=\"#{stroke}\" stroke-width=\"{width}\" points=\"");
    svg.split("<polyline")
        .skip(1)
        .filter_map(|p| {
            let points = p.split('>').next()?.split_once(attrs.as_str())?.1.split('"').next()?;
            Some(points.split_whitespace().count())
        })
        .collect()
}

/// The numbers labelled `name = x` in a chart's texts.
fn labelled(texts: &[String], name: &str) -> Vec<f64> {
    texts
        .iter()
        .filter_map(|t| t.strip_prefix(name)?.strip_prefix(" = ")?.parse().ok())
        .collect()
}

/// numpy's default (linear) percentile, written here apart from `recap_stats`.
fn numpy_percentile(values: &[f64], q: f64) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let at = q / 100.0 * (v.len() as f64 - 1.0);
    let (lo, hi) = (at.floor() as usize, at.ceil() as usize);
    v[lo] + (at - lo as f64) * (v[hi] - v[lo])
}

/// A measured, successful request's `column` (ns) in ms, from `metrics.parquet` under `run`.
fn measured_ms(run: &Path, column: &str) -> Vec<f64> {
    let analysis = run.join("analysis");
    let dir = std::fs::read_dir(&analysis)
        .expect("analysis")
        .flatten()
        .map(|e| e.path())
        .find(|p| p.join("metrics.parquet").is_file())
        .expect("one analysis");
    let file = File::open(dir.join("metrics.parquet")).expect("metrics");
    let mut out = Vec::new();
    for b in ParquetRecordBatchReaderBuilder::try_new(file)
        .expect("parquet")
        .build()
        .expect("reader")
    {
        let b = b.expect("batch");
        let phase = b.column_by_name(m::PHASE).expect("phase").as_string::<i32>().clone();
        let ok = b.column_by_name(m::OK).expect("ok").as_boolean().clone();
        let v = b
            .column_by_name(column)
            .expect("column")
            .as_primitive::<Int64Type>()
            .clone();
        for i in 0..b.num_rows() {
            if phase.value(i) == "measure" && ok.value(i) && v.is_valid(i) {
                out.push(v.value(i) as f64 / 1e6);
            }
        }
    }
    out
}

/// Inter-chunk gaps of a run's measured requests, counted from its events (read back with the
/// tests' own reader): one fewer than the events carrying output text, per request.
fn icl_gap_count(run: &Path) -> usize {
    let r = read_run(run).expect("read run");
    r.requests
        .values()
        .filter(|q| q.phase == Phase::Measure)
        .map(|q| {
            let outputs = r.events[&q.request_id]
                .iter()
                .filter(|e| {
                    e.content.as_deref().is_some_and(|c| !c.is_empty())
                        || e.reasoning.as_deref().is_some_and(|c| !c.is_empty())
                })
                .count();
            outputs.saturating_sub(1)
        })
        .sum()
}

/// A PNG's width, height and RGB pixels: 8-bit RGB or RGBA, not interlaced (what plotters'
/// bitmap encoder writes), decoded here with `flate2` and the five PNG row filters.
fn decode_png(png: &[u8]) -> (u32, u32, Vec<[u8; 3]>) {
    use std::io::Read;
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "a PNG signature");
    let (mut pos, mut idat, mut head) = (8, Vec::new(), None);
    while pos + 8 <= png.len() {
        let n = u32::from_be_bytes(png[pos..pos + 4].try_into().expect("4 bytes")) as usize;
        let (kind, data) = (&png[pos + 4..pos + 8], &png[pos + 8..pos + 8 + n]);
        match kind {
            b"IHDR" => head = Some(data.to_vec()),
            b"IDAT" => idat.extend_from_slice(data),
            _ => {}
        }
        pos += 12 + n;
    }
    let head = head.expect("IHDR");
    let w = u32::from_be_bytes(head[0..4].try_into().expect("4 bytes"));
    let h = u32::from_be_bytes(head[4..8].try_into().expect("4 bytes"));
    let bpp = match (head[8], head[9], head[12]) {
        (8, 2, 0) => 3,
        (8, 6, 0) => 4,
        other => panic!("PNG (depth, colour type, interlace) {other:?} not decoded here"),
    };
    let mut raw = Vec::new();
    flate2::read::ZlibDecoder::new(&idat[..])
        .read_to_end(&mut raw)
        .expect("zlib");
    let stride = w as usize * bpp;
    assert_eq!(raw.len(), (stride + 1) * h as usize, "IDAT holds every row");
    let mut prev = vec![0u8; stride];
    let mut pixels = Vec::with_capacity((w * h) as usize);
    for row in raw.chunks(stride + 1) {
        let mut line = row[1..].to_vec();
        for x in 0..stride {
            let a = if x >= bpp { i32::from(line[x - bpp]) } else { 0 };
            let (b, c) = (i32::from(prev[x]), if x >= bpp { i32::from(prev[x - bpp]) } else { 0 });
            let pred = match row[0] {
                0 => 0,
                1 => a,
                2 => b,
                3 => (a + b) / 2,
                4 => {
                    let p = a + b - c;
                    let (pa, pb, pc) = ((p - a).abs(), (p - b).abs(), (p - c).abs());
                    if pa <= pb && pa <= pc {
                        a
                    } else if pb <= pc {
                        b
                    } else {
                        c
                    }
                }
                f => panic!("PNG row filter {f}"),
            };
            line[x] = line[x].wrapping_add(pred as u8);
        }
        pixels.extend(line.chunks(bpp).map(|p| [p[0], p[1], p[2]]));
        prev = line;
    }
    (w, h, pixels)
}

/// A chart's PNG draws what its SVG draws: the same size, and every opaque colour the SVG
/// fills a shape with or strokes a 3-pixel line in covers pixels of the PNG.
fn png_matches_svg(png: &[u8], svg: &str, stem: &str) {
    let (w, h, pixels) = decode_png(png);
    assert!(
        svg.contains(&format!("<svg width=\"{w}\" height=\"{h}\"")),
        "{stem}: the PNG is {w}x{h}, unlike the SVG"
    );
    let mut count: BTreeMap<[u8; 3], usize> = BTreeMap::new();
    for p in &pixels {
        *count.entry(*p).or_default() += 1;
    }
    let mut colours: Vec<String> = Vec::new();
    for (pre, post) in [
        ("opacity=\"1\" fill=\"#", ""),
        ("opacity=\"1\" stroke=\"#", "\" stroke-width=\"3\""),
    ] {
        for part in svg.split(pre).skip(1) {
            let hex = &part[..6];
            if part[6..].starts_with(post) && !["FFFFFF", "000000"].contains(&hex) && !colours.iter().any(|c| c == hex)
            {
                colours.push(hex.to_string());
            }
        }
    }
    assert!(!colours.is_empty(), "{stem}.svg draws no series colour");
    for hex in colours {
        let rgb: Vec<u8> = (0..3)
            .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("hex"))
            .collect();
        let n = count.get(&[rgb[0], rgb[1], rgb[2]]).copied().unwrap_or(0);
        assert!(
            n >= 40,
            "{stem}.png has {n} pixels of #{hex}, a colour its SVG draws with"
        );
    }
    let white = count.get(&[255, 255, 255]).copied().unwrap_or(0);
    assert!(white < pixels.len() * 99 / 100, "{stem}.png is nearly blank");
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
        let svg = std::fs::read_to_string(charts.join(format!("{stem}.svg"))).expect("svg");
        png_matches_svg(&png, &svg, stem);
    }
    let svg = |stem: &str| std::fs::read_to_string(charts.join(format!("{stem}.svg"))).expect("svg");
    // What the charts must hold, from the capture's arguments (20 measured requests after 2
    // warmup ones, all answered by the simulator), its events and numpy's percentiles.
    let (measured, warmup) = (20, 2);
    let run_a = Path::new(&a);
    let icl = icl_gap_count(run_a);
    assert!(icl >= measured, "12-token answers stream several chunks: {icl}");
    let cdf = svg("latency_cdf");
    // One CDF line per panel (TTFT, TPOT, ICL, E2E), a vertex per sample; then a legend line.
    let lines: Vec<usize> = polylines(&cdf, "0072B2", 3).into_iter().filter(|n| *n > 2).collect();
    assert_eq!(
        lines,
        [measured, measured, icl, measured],
        "latency_cdf.svg: CDF vertices per panel"
    );
    let texts = svg_texts(&cdf);
    for (metric, column) in [("TTFT", m::TTFT_NS), ("E2E", m::E2E_NS)] {
        let v = measured_ms(run_a, column);
        assert_eq!(v.len(), measured, "{metric} samples in metrics.parquet");
        for p in [50.0, 90.0, 99.0] {
            let want = numpy_percentile(&v, p);
            let shown = labelled(&texts, &format!("p{p}"));
            assert!(
                shown.iter().any(|x| (x - want).abs() <= 0.0005 + 1e-9 * want),
                "latency_cdf.svg: no p{p} = {want:.3} ({metric}) among {shown:?}"
            );
        }
    }
    let samples = |stem: &str| -> Vec<String> {
        svg_texts(&svg(stem))
            .into_iter()
            .filter(|t| t.ends_with(" samples"))
            .collect()
    };
    let n = |k: usize| format!("{k} samples");
    assert_eq!(
        samples("latency_histograms"),
        [n(measured), n(measured), n(icl), n(measured)]
    );
    assert_eq!(samples("tokens"), [n(measured), n(measured)]);
    let tl = svg("timeline");
    // Every successful request is a TTFT dot and an E2E dot: measured ones filled, warmup
    // ones hollow.
    for (metric, fill) in [("TTFT", "0072B2"), ("E2E", "E69F00")] {
        assert_eq!(
            circles(&tl, 3, &format!(r##"opacity="1" fill="#{fill}""##)),
            measured,
            "timeline.svg: filled {metric} dots"
        );
        assert_eq!(
            circles(&tl, 3, &format!(r##"fill="none" stroke="#{fill}""##)),
            warmup,
            "timeline.svg: hollow {metric} dots"
        );
    }
    let agreement = svg("token_agreement");
    assert_eq!(
        circles(&agreement, 4, r##"opacity="0.6" fill="#0072B2""##),
        measured,
        "token_agreement.svg: a dot per request"
    );
    assert!(svg_texts(&agreement).contains(&format!("{measured} requests")));
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
    // A dot per run and a ring per run on the front, the front computed here from sweep.json;
    // the repeated c4 point gets an ellipse outline (97 vertices: 96 segments, closed).
    let sj: Value =
        serde_json::from_slice(&std::fs::read(sweep.join("sweep.json")).expect("sweep.json")).expect("json");
    let rows = sj["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 3);
    let xy = |x: &str, y: &str, sign: f64| -> Vec<(f64, f64)> {
        rows.iter()
            .map(|r| {
                (
                    r["values"][x].as_f64().expect("x"),
                    sign * r["values"][y].as_f64().expect("y"),
                )
            })
            .collect()
    };
    let on = |pts: &[(f64, f64)]| pareto_skyline(pts).iter().filter(|o| **o).count();
    let p = svg("pareto");
    // With repeats, runs are faint dots and the front runs through the groups' means: a
    // front over single runs would pick the lucky repeat.
    assert_eq!(
        circles(&p, 4, r##"opacity="0.45" fill="#0072B2""##),
        3,
        "pareto.svg: a faint dot per run"
    );
    let groups = sj["groups"].as_array().expect("groups");
    let means: Vec<(f64, f64)> = groups
        .iter()
        .map(|g| (g["x"]["mean"].as_f64().expect("x"), g["y"]["mean"].as_f64().expect("y")))
        .collect();
    assert_eq!(means.len(), 2, "c2 and c4: {groups:?}");
    assert_eq!(
        circles(&p, 7, r##"opacity="1" fill="#0072B2""##),
        2,
        "pareto.svg: a dot per group mean"
    );
    assert_eq!(
        circles(&p, 9, r##"fill="none" stroke="#D55E00""##),
        on(&means),
        "pareto.svg: a ring per group mean on the front of the means"
    );
    assert_eq!(
        // (The legend's sample is a 2-point line.)
        polylines(&p, "009E73", 2).iter().filter(|n| **n > 2).count(),
        1,
        "pareto.svg: one region of the mean (c4, two runs), no spread (needs three)"
    );
    assert!(
        svg_texts(&p).iter().any(|t| t == "c4 (n=2, rough)"),
        "pareto.svg marks the two-run group as rough"
    );
    let lt = svg("latency_vs_throughput");
    assert_eq!(
        circles(&lt, 6, r##"opacity="1" fill="#0072B2""##),
        3,
        "latency_vs_throughput.svg: a dot per run"
    );
    let front = on(&xy("requests_per_s", "e2e_ms_p99", -1.0));
    assert_eq!(
        circles(&lt, 9, r##"fill="none" stroke="#D55E00""##),
        front,
        "latency_vs_throughput.svg: a ring per run on its front"
    );
    for text in [
        "Pareto front",
        "output_tokens_per_s (tokens/s)",
        "tokens/s per user",
        "c2 (n=1)",
        "Pareto front of the group means",
        "region of the mean",
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

/// Every `data-key="K" data-value="V"` pair of a page.
fn keyed_values(html: &str) -> Vec<(String, f64)> {
    html.split("data-key=\"")
        .skip(1)
        .map(|rest| {
            let (key, rest) = rest.split_once('"').expect("key");
            let value = rest
                .split_once("data-value=\"")
                .and_then(|(_, v)| v.split_once('"'))
                .expect("data-value")
                .0;
            (key.to_string(), value.parse().expect("number"))
        })
        .collect()
}

/// The value at a dotted path of a JSON document (`metrics.ttft_ms.intervals.p99.0`).
fn at_path<'a>(doc: &'a Value, key: &str) -> &'a Value {
    key.split('.').fold(doc, |v, part| match v {
        Value::Array(a) => &a[part.parse::<usize>().expect("index")],
        v => &v[part],
    })
}

/// `<line>`s stroked `#stroke`, 2 wide: a cross is two of them.
fn cross_lines(svg: &str, stroke: &str) -> usize {
    let attrs = format!("stroke=\"#{stroke}\" stroke-width=\"2\"");
    svg.split("<line")
        .skip(1)
        .filter(|l| l.split('>').next().unwrap_or("").contains(&attrs))
        .count()
}

#[test]
fn html_reports_hold_the_analysis_numbers_and_draw_what_it_found() {
    // 12-token answers in 3-token chunks, a TTFT of 1-3 ms against a 300 ms E2E (over two
    // decades: a log axis), and injected failures of two kinds.
    // The simulator answers in words the Qwen3 tokenizer keeps as one token each, so a
    // 3-token chunk is 3 tokens to the analysis too.
    let qwen3 = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/tokenizers/qwen3/tokenizer.json.gz")
        .display()
        .to_string();
    let sim = SimProcess::start(&[
        "--tokenizer",
        &qwen3,
        "--ttft",
        "0ms",
        "--itl",
        "100ms",
        "--output-tokens",
        "12",
        "--tokens-per-chunk",
        "3",
        "--error-rate",
        "0.15",
        "--stream-error-rate",
        "0.15",
        "--fault-seed",
        "3",
    ])
    .expect("sim");
    let dir = tempfile::tempdir().expect("tmp");
    let a = dir.path().join("a");
    let o = a.to_str().expect("utf8");
    run(
        "capture",
        &[
            "--url",
            &sim.url(),
            "--out",
            o,
            "--concurrency",
            "4",
            "--requests",
            "40",
            "--warmup-requests",
            "2",
            "--quiet",
        ],
    );
    run("analyze", &["report", o, "--tokenizer", &qwen3, "--itl", "split", "-q"]);
    let html_dir = dir.path().join("html");
    let h = html_dir.to_str().expect("utf8");
    let out = run("plot", &[o, "--html", "--out", h]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let page = std::fs::read_to_string(html_dir.join("a.html")).expect("a.html");

    // Self-contained: nothing to fetch.
    for external in ["<script", "<link", "src=\"http", "url(", "@import"] {
        assert!(!page.contains(external), "a.html holds {external:?}");
    }
    // Every keyed number equals summary.json at its path.
    let analysis = std::fs::read_dir(a.join("analysis"))
        .expect("analysis")
        .flatten()
        .map(|e| e.path())
        .find(|p| p.join("summary.json").is_file())
        .expect("one analysis");
    let summary: Value =
        serde_json::from_slice(&std::fs::read(analysis.join("summary.json")).expect("summary")).expect("json");
    let keyed = keyed_values(&page);
    assert!(keyed.len() > 40, "{} keyed numbers", keyed.len());
    for (key, v) in &keyed {
        assert_eq!(at_path(&summary, key).as_f64(), Some(*v), "a.html: {key}");
    }
    for key in [
        "metrics.ttft_ms.p99",
        "metrics.itl_ms.p50",
        "requests_per_s",
        "requests.ok",
    ] {
        assert!(keyed.iter().any(|(k, _)| k == key), "a.html shows no {key}");
    }
    // The definitions it was scored under and how to reproduce it.
    assert!(
        page.contains("<code>split</code>") && page.contains("--itl split"),
        "definitions"
    );
    assert!(
        page.contains(&format!("analyze report {o} --tokenizer")),
        "reproduce block"
    );

    // Failures on the timeline by kind, counted from the recorded events by the tests' reader.
    let r = read_run(&a).expect("read run");
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    for events in r.events.values() {
        if let Some(k) = events.iter().find_map(|e| e.error_kind) {
            *kinds.entry(k.as_str().to_string()).or_default() += 1;
        }
    }
    assert!(kinds.len() >= 2, "two kinds of failure injected: {kinds:?}");
    let texts = svg_texts(&page);
    for (kind, n) in &kinds {
        let legend = format!("error: {kind} ({n})");
        assert!(texts.contains(&legend), "timeline lacks {legend:?}: {texts:?}");
    }
    let colour = |kind: &str| match kind {
        "http_status" => "D55E00",
        "server_error" => "961E5A",
        other => panic!("unexpected failure kind {other}"),
    };
    for (kind, n) in &kinds {
        // Two lines a cross, one cross per failure and one in the legend.
        assert_eq!(cross_lines(&page, colour(kind)), 2 * (n + 1), "crosses of {kind}");
    }
    // A TTFT two decades below the E2E: the latency axis is logarithmic, the CDFs' are not.
    assert!(texts.iter().any(|t| t == "latency (ms) (log scale)"), "timeline axis");
    // Per-token ITL (split) beside the chunk gaps: 4 chunks of 3 tokens give 3 gaps and
    // 9 split samples per successful measured request.
    let ok = summary["requests"]["ok"].as_u64().expect("ok") as usize;
    for (what, n) in [("ICL", 3 * ok), ("ITL", 9 * ok)] {
        assert!(
            texts.contains(&format!("{n} samples")),
            "itl_vs_icl: no {n} {what} samples among {texts:?}"
        );
    }
    assert!(page.contains("Per-token ITL (split) vs inter-chunk gaps: a"));

    // A comparison with analyze compare's verdicts: the drawn rows equal the JSON's.
    let b = dir.path().join("b");
    let ob = b.to_str().expect("utf8");
    run(
        "capture",
        &[
            "--url",
            &sim.url(),
            "--out",
            ob,
            "--concurrency",
            "1",
            "--requests",
            "40",
            "--warmup-requests",
            "2",
            "--quiet",
        ],
    );
    let cmp = Command::new(workspace_bin("analyze"))
        .args([
            "compare",
            o,
            ob,
            "--tokenizer",
            &qwen3,
            "--stats",
            "p50,p99",
            "--format",
            "json",
        ])
        .output()
        .expect("compare");
    assert!(cmp.status.success(), "{}", String::from_utf8_lossy(&cmp.stderr));
    let cmp_file = dir.path().join("compare.json");
    std::fs::write(&cmp_file, &cmp.stdout).expect("write");
    let c: Value = serde_json::from_slice(&cmp.stdout).expect("json");
    let out = run(
        "plot",
        &[
            o,
            ob,
            "--compare",
            "--html",
            "--comparison",
            cmp_file.to_str().expect("utf8"),
            "--out",
            h,
        ],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // A comparison of other runs (here: reversed) is refused, not drawn under these runs.
    let wrong = run(
        "plot",
        &[
            ob,
            o,
            "--compare",
            "--html",
            "--comparison",
            cmp_file.to_str().expect("utf8"),
            "--out",
            h,
        ],
    );
    assert_eq!(wrong.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("--comparison compares a against b"));
    let page = std::fs::read_to_string(html_dir.join("compare.html")).expect("compare.html");
    for (key, v) in keyed_values(&page) {
        assert_eq!(at_path(&c, &key).as_f64(), Some(v), "compare.html: {key}");
    }
    let texts = svg_texts(&page);
    let rows = c["runs"][0]["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 6, "3 metrics x 2 stats");
    let pct = |v: &Value| format!("{:+.1}%", 100.0 * v.as_f64().expect("number"));
    for x in rows {
        let drawn = format!(
            "{} [{}, {}] {}",
            pct(&x["change"]),
            pct(&x["change_low"]),
            pct(&x["change_high"]),
            x["verdict"].as_str().expect("verdict")
        );
        assert!(texts.contains(&drawn), "compare_verdicts lacks {drawn:?}: {texts:?}");
    }
}

#[test]
fn a_multi_turn_timeline_colours_requests_by_turn() {
    let sim = SimProcess::start(&["--ttft", "2ms", "--itl", "1ms"]).expect("sim");
    let dir = tempfile::tempdir().expect("tmp");
    let a = dir.path().join("chat");
    let o = a.to_str().expect("utf8");
    let dataset = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/datasets/sessions.jsonl")
        .display()
        .to_string();
    run(
        "capture",
        &[
            "--url",
            &sim.url(),
            "--dataset",
            &dataset,
            "--sessions",
            "2",
            "--out",
            o,
            "--quiet",
        ],
    );
    run("analyze", &["report", o, "--tokenizer", &tokenizer(), "-q"]);
    let charts = dir.path().join("charts");
    let out = run("plot", &[o, "--out", charts.to_str().expect("utf8"), "--format", "svg"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let tl = std::fs::read_to_string(charts.join("timeline.svg")).expect("svg");
    // Measured requests per turn, from the requests table as the tests' reader reads it.
    let r = read_run(&a).expect("read run");
    let mut per_turn: BTreeMap<u32, usize> = BTreeMap::new();
    for q in r.requests.values().filter(|q| q.phase == Phase::Measure) {
        *per_turn.entry(q.turn.expect("a turn")).or_default() += 1;
    }
    assert_eq!(per_turn.len(), 3, "turns 0, 1 and 2: {per_turn:?}");
    let texts = svg_texts(&tl);
    // Turn k's colour is the palette's [blue, bluish green, reddish purple, ...][k].
    for ((turn, n), fill) in per_turn.iter().zip(["0072B2", "009E73", "CC79A7"]) {
        assert!(
            texts.contains(&format!("TTFT, turn {turn}")),
            "legend lacks turn {turn}: {texts:?}"
        );
        assert_eq!(
            circles(&tl, 3, &format!(r##"opacity="1" fill="#{fill}""##)),
            *n,
            "timeline.svg: TTFT dots of turn {turn}"
        );
    }
}
