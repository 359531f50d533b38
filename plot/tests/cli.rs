//! The `plot` binary's command line. (Also makes `cargo test --workspace` build the binary
//! that the end-to-end tests in `tests/` run.)

use std::process::Command;

use recap_tests::harness::defined_flags;

#[test]
fn help_and_a_clear_error_for_a_folder_without_analysis() {
    let out = Command::new(env!("CARGO_BIN_EXE_plot"))
        .arg("--help")
        .output()
        .expect("run plot");
    assert!(out.status.success());
    let help = defined_flags(&String::from_utf8_lossy(&out.stdout));
    for flag in ["--out", "--compare", "--format", "--tokenizer-id"] {
        assert!(help.contains(flag), "--help lacks {flag}: {help:?}");
    }
    let dir = tempfile::tempdir().expect("tmp");
    let out = Command::new(env!("CARGO_BIN_EXE_plot"))
        .args([
            dir.path().to_str().expect("utf8"),
            "--out",
            dir.path().join("charts").to_str().expect("utf8"),
        ])
        .output()
        .expect("run plot");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no analysis found"));
}
