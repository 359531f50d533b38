//! The properties the fuzz targets in `fuzz/` check, kept here so that the ordinary test run
//! replays the saved corpus through exactly the same code (`capture/tests/fuzz_corpus.rs`),
//! without a nightly toolchain. Each function panics when a property fails; any input at all
//! is allowed.

use crate::dataset::{Dataset, DatasetError};
use crate::sse::{SseEvent, SseParser};

/// Parses `data` as one SSE stream, fed in the given pieces.
fn events_split(data: &[u8], cuts: impl Iterator<Item = usize>) -> Vec<SseEvent> {
    let mut parser = SseParser::new();
    let mut out = Vec::new();
    let mut start = 0;
    for cut in cuts {
        let cut = cut.clamp(start, data.len());
        parser.feed(&data[start..cut], &mut out);
        start = cut;
    }
    parser.feed(&data[start..], &mut out);
    parser.finish(&mut out);
    out
}

/// SSE framing: the events do not depend on how the stream is split into reads (whole, byte
/// by byte, or at cut points derived from the input itself), they account for no more bytes
/// than were read, and their data never holds a line-end byte other than the `\n` that joins
/// data lines.
pub fn sse_stream(data: &[u8]) {
    let whole = events_split(data, std::iter::empty());
    let bytes = events_split(data, 1..data.len());
    assert_eq!(whole, bytes, "byte-by-byte reads changed the events");
    let step = data.first().map_or(7, |b| usize::from(*b % 13) + 1);
    let stepped = events_split(data, (step..data.len()).step_by(step));
    assert_eq!(whole, stepped, "reads of {step} bytes changed the events");
    let raw: usize = whole.iter().map(|e| e.raw_bytes).sum();
    assert!(raw <= data.len(), "events claim {raw} raw bytes of {}", data.len());
    for e in &whole {
        assert!(!e.data.contains(&b'\r'), "event data kept a CR");
    }
}

/// Response delta extraction: any text is either a JSON error or a [`crate::delta::Delta`],
/// the same one every time, whose usage counts fit the column type.
pub fn delta_object(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let first = crate::delta::parse(text);
    let second = crate::delta::parse(text);
    match (first, second) {
        (Ok(a), Ok(b)) => {
            assert_eq!(a, b, "parsing is not deterministic");
            // `has_output` must agree with the fields it summarizes.
            let any = a.content.as_deref().is_some_and(|s| !s.is_empty())
                || a.reasoning.as_deref().is_some_and(|s| !s.is_empty())
                || a.tool_calls_json.is_some();
            assert_eq!(a.has_output(), any);
        }
        (Err(_), Err(_)) => {}
        _ => panic!("parsing the same text twice gave different outcomes"),
    }
}

/// Dataset reading: a strict parse and a `--skip-invalid` parse agree on valid input; an
/// invalid line is named by a line number inside the file; skipped rows are counted.
pub fn dataset_bytes(data: &[u8]) {
    let lines = data.split(|&b| b == b'\n').count() as u64;
    let strict = Dataset::parse(data, "fuzz.jsonl", false);
    let lenient = Dataset::parse(data, "fuzz.jsonl", true);
    match (&strict, &lenient) {
        (Ok(s), Ok(l)) => {
            assert_eq!(s.rows, l.rows, "--skip-invalid changed a valid dataset");
            // (ShareGPT items without a user turn are skipped in both modes.)
            assert_eq!(s.skipped, l.skipped, "--skip-invalid skipped rows of a valid dataset");
        }
        (Err(DatasetError::Invalid { path, unit, line, .. }), _) => {
            assert_eq!(path, "fuzz.jsonl");
            if *unit == "line" {
                assert!(*line >= 1 && *line <= lines, "line {line} of {lines}");
            }
        }
        (Err(_), Ok(l)) => assert!(l.skipped > 0, "strict failed but nothing was skipped"),
        (Ok(_), Err(e)) => panic!("--skip-invalid failed where a strict parse worked: {e}"),
        (Err(_), Err(_)) => {}
    }
    if let Err(e) = &strict {
        assert!(
            e.to_string().contains("fuzz.jsonl"),
            "error does not name the file: {e}"
        );
    }
}
