//! The `analyze` binary's command line. (Also makes `cargo test --workspace` build the binary
//! that the end-to-end tests in `tests/` run.)

use std::process::Command;

use recap_tests::harness::defined_flags;

#[test]
fn help_lists_the_subcommands_and_definition_flags() {
    let out = Command::new(env!("CARGO_BIN_EXE_analyze"))
        .arg("--help")
        .output()
        .expect("run analyze");
    assert!(out.status.success());
    let commands = subcommands(&String::from_utf8_lossy(&out.stdout));
    for word in ["report", "sweep", "sql"] {
        assert!(commands.contains(word), "--help lacks {word}: {commands:?}");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_analyze"))
        .args(["report", "--help"])
        .output()
        .expect("run analyze");
    assert!(out.status.success());
    let help = defined_flags(&String::from_utf8_lossy(&out.stdout));
    for flag in [
        "--tokenizer",
        "--isl",
        "--latency-from",
        "--ttft-on",
        "--e2e-end",
        "--tokens",
        "--slo",
        "--json",
    ] {
        assert!(help.contains(flag), "report --help lacks {flag}: {help:?}");
    }
}

#[test]
fn a_missing_run_folder_is_named() {
    let out = Command::new(env!("CARGO_BIN_EXE_analyze"))
        .args(["sql", "/nonexistent/run-folder", "SELECT 1"])
        .output()
        .expect("run analyze");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/run-folder"));
}

/// The subcommands `--help` lists: the first word of each line of its `Commands:` section.
fn subcommands(help: &str) -> std::collections::BTreeSet<String> {
    help.lines()
        .skip_while(|l| l.trim() != "Commands:")
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}
