//! The `capture` binary's command line. (Also makes `cargo test --workspace` build the binary
//! that the end-to-end tests in `tests/` run.)

use std::process::Command;

use recap_tests::harness::{defined_flags, mentions_flag};

#[test]
fn help_lists_the_contract_flags() {
    let out = Command::new(env!("CARGO_BIN_EXE_capture"))
        .arg("--help")
        .output()
        .expect("run capture");
    assert!(out.status.success());
    let help = defined_flags(&String::from_utf8_lossy(&out.stdout));
    for flag in [
        "--url",
        "--api",
        "--model",
        "--dataset",
        "--out",
        "--concurrency",
        "--rate",
        "--arrival",
        "--burstiness",
        "--max-in-flight",
        "--requests",
        "--duration",
        "--warmup-requests",
        "--stream",
        "--no-stream",
        "--max-tokens",
        "--timeout",
        "--api-key-env",
        "--header",
        "--seed",
        "--quiet",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}: {help:?}");
    }
}

#[test]
fn missing_required_flags_exit_with_usage() {
    let out = Command::new(env!("CARGO_BIN_EXE_capture"))
        .output()
        .expect("run capture");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(mentions_flag(&err, "--url"), "{err}");
}
