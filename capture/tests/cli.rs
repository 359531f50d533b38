//! The `capture` binary's command line. (Also makes `cargo test --workspace` build the binary
//! that the end-to-end tests in `tests/` run.)

use std::process::Command;

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

/// The flags `--help` defines: on each line that starts with `-` (clap's `  -q, --quiet` and
/// `      --rate <RATE>`), the leading `-x`/`--name` tokens, cut at `=`, `<` or `[`. Whole
/// flags only: `--rate` is not found in `--rate-limit`, nor in a description that mentions it.
fn defined_flags(help: &str) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    for line in help.lines().map(str::trim_start).filter(|l| l.starts_with('-')) {
        for token in line.split_whitespace().map(|t| t.trim_end_matches(',')) {
            if !token.starts_with('-') {
                break;
            }
            let flag = token.split(['=', '<', '[']).next().unwrap_or("");
            // `-x` or `--name`; not the `- value:` bullets of "Possible values".
            if flag
                .trim_start_matches('-')
                .starts_with(|c: char| c.is_ascii_alphanumeric())
            {
                out.insert(flag.to_string());
            }
        }
    }
    out
}

/// Whether `text` mentions `flag` as a whole word (`--url <URL>`, `--url=..`, `(--url)`), not
/// as the start of a longer flag.
fn mentions_flag(text: &str, flag: &str) -> bool {
    text.split(|c: char| c.is_whitespace() || c == ',')
        .map(|t| t.trim_matches(|c: char| "'\"`()[].;:".contains(c)))
        .any(|t| t.split(['=', '<', '[']).next() == Some(flag))
}
