//! Every binary's errors as the user reads them: the whole message, once, with the exit code
//! `docs/architecture.md` ("Errors") gives it (2: what the user typed cannot be used; 1: the
//! run failed or measured nothing). The expected lines are written here by hand: a change to a
//! message is a change to this file.

use std::net::TcpListener;
use std::path::Path;
use std::process::Output;

use recap_tests::harness::{run_bin, SimProcess};

/// The one `<bin>: error: ...` line of `out`, after checking the exit code.
fn error_line(out: &Output, bin: &str, code: i32) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{bin} exit code; stderr:\n{stderr}");
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with(&format!("{bin}: error: ")))
        .collect();
    assert_eq!(lines.len(), 1, "one error line, got:\n{stderr}");
    let line = lines[0].to_string();
    // No cause printed twice: `a: b: b` is the chain of an error whose message repeats its
    // source.
    let parts: Vec<&str> = line.split(": ").collect();
    for w in parts.windows(2) {
        assert_ne!(w[0], w[1], "a cause printed twice in {line:?}");
    }
    line
}

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// A run folder with one finished request.
fn small_run(dir: &Path) -> String {
    let sim = SimProcess::start(&["--ttft", "1ms", "--itl", "1ms"]).expect("recap-sim");
    let out = dir.join("run");
    let res = run_bin(
        "capture",
        &[
            "--url",
            &sim.url(),
            "--requests",
            "1",
            "--max-tokens",
            "2",
            "--out",
            &out.display().to_string(),
            "-q",
        ],
    );
    assert!(res.status.success(), "{}", String::from_utf8_lossy(&res.stderr));
    out.display().to_string()
}

#[test]
fn analyze_names_the_folder_before_the_tokenizer_and_says_each_cause_once() {
    let dir = tempfile::tempdir().expect("tmp");
    let not_a_run = dir.path().join("empty");
    std::fs::create_dir_all(&not_a_run).expect("mkdir");
    let missing = dir.path().join("missing").join("tokenizer.json");
    let line = error_line(
        &run_bin(
            "analyze",
            &[
                "report",
                &not_a_run.display().to_string(),
                "--tokenizer",
                &missing.display().to_string(),
            ],
        ),
        "analyze",
        2,
    );
    assert_eq!(
        line,
        format!(
            "analyze: error: {}: not a run folder (no manifest.json)",
            not_a_run.display()
        )
    );

    let run = small_run(dir.path());
    let line = error_line(
        &run_bin(
            "analyze",
            &["report", &run, "--tokenizer", &missing.display().to_string()],
        ),
        "analyze",
        2,
    );
    assert_eq!(
        line,
        format!(
            "analyze: error: cannot read {}: No such file or directory (os error 2)",
            missing.display()
        )
    );

    let line = error_line(
        &run_bin("analyze", &["sql", &run, "SELECT nope FROM requests"]),
        "analyze",
        2,
    );
    assert!(line.starts_with("analyze: error: query: "), "{line}");
    assert!(line.contains("nope"), "names the column: {line}");
}

#[test]
fn a_capture_in_which_no_request_succeeded_fails_naming_the_commonest_error() {
    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path().join("dead");
    let res = run_bin(
        "capture",
        &[
            "--url",
            &format!("http://127.0.0.1:{}", closed_port()),
            "--requests",
            "3",
            "--concurrency",
            "1",
            "--out",
            &out.display().to_string(),
            "-q",
        ],
    );
    let line = error_line(&res, "capture", 1);
    assert_eq!(
        line,
        format!(
            "capture: error: no request succeeded: 3 ended in errors, most often `connect` (3); the run is recorded in {}",
            out.display()
        )
    );
    // The record is kept and true: a complete run of three connect errors.
    let manifest: recap_schemas::Manifest =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).expect("manifest")).expect("parse");
    assert_eq!(manifest.status, recap_schemas::RunStatus::Complete);
    let counts = manifest.counts.expect("counts");
    assert_eq!((counts.done, counts.errors.values().sum::<u64>()), (0, 3));
}

#[test]
fn usage_errors_exit_2_and_say_it_once() {
    let dir = tempfile::tempdir().expect("tmp");
    // A dataset that does not exist: the user's input.
    let missing = dir.path().join("nope.jsonl");
    let res = run_bin(
        "capture",
        &[
            "--url",
            "http://127.0.0.1:9",
            "--dataset",
            &missing.display().to_string(),
            "--out",
            &dir.path().join("x").display().to_string(),
        ],
    );
    let line = error_line(&res, "capture", 2);
    assert!(line.contains(&missing.display().to_string()), "{line}");
    assert!(line.ends_with("No such file or directory (os error 2)"), "{line}");

    // plot of a folder with no analysis.
    let res = run_bin(
        "plot",
        &[
            &dir.path().display().to_string(),
            "--out",
            &dir.path().join("charts").display().to_string(),
        ],
    );
    let line = error_line(&res, "plot", 2);
    assert!(line.contains(&dir.path().display().to_string()), "{line}");
}
