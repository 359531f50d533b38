//! Replays the saved fuzz corpus (`fuzz/corpus/<target>/`) through the same property checks
//! the `cargo fuzz` targets run, so every input a fuzzer ever kept stays a regression test on
//! the stable toolchain.

use std::path::Path;

mod properties;

fn replay(target: &str, check: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("corpus entry").path();
        let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if let Err(panic) = std::panic::catch_unwind(|| check(&data)) {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            panic!("corpus input {} fails: {msg}", path.display());
        }
        n += 1;
    }
    assert!(n > 0, "{} holds no corpus", dir.display());
}

#[test]
fn sse_corpus() {
    replay("sse", properties::sse_stream);
}

#[test]
fn delta_corpus() {
    replay("delta", properties::delta_object);
}

#[test]
fn dataset_corpus() {
    replay("dataset", properties::dataset_bytes);
}
