//! The `analyze` binary's command line. (Also makes `cargo test --workspace` build the binary
//! that the end-to-end tests in `tests/` run.)

use std::process::Command;

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
