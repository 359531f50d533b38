//! The properties the fuzz targets in `fuzz/` check, kept here so that the ordinary test run
//! replays the saved corpus through exactly the same code (`capture/tests/fuzz_corpus.rs`),
//! without a nightly toolchain. Each function panics when a property fails; any input at all
//! is allowed.

use recap_capture::dataset::{Dataset, DatasetError};
use recap_capture::sse::{SseEvent, SseEvents, SseParser};

/// Parses `data` as one SSE stream, fed in the given pieces.
fn events_split(data: &[u8], cuts: impl Iterator<Item = usize>) -> Vec<SseEvent> {
    let mut parser = SseParser::new();
    let mut events = Vec::new();
    let mut out = SseEvents::default();
    let mut start = 0;
    for (i, cut) in cuts.enumerate() {
        let cut = cut.clamp(start, data.len());
        parser.feed(&data[start..cut], &mut out);
        // Emptied after every read, as the reader does: every other read by taking the
        // buffer (an event not complete yet stays behind), else by clearing it.
        match (i % 2 == 0).then(|| out.take_data()).flatten() {
            Some(taken) => events.extend(out.iter_in(&taken).map(|(_, e)| e.to_owned_event())),
            None => events.extend(out.to_vec()),
        }
        out.clear();
        start = cut;
    }
    parser.feed(&data[start..], &mut out);
    parser.finish(&mut out);
    events.extend(out.to_vec());
    events
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

/// Response delta extraction: any text is either a JSON error or a [`recap_capture::delta::Delta`],
/// the same one every time, whose usage counts fit the column type.
pub fn delta_object(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    delta_same_as_serde(text);
    // Two events of one stream: the text split at its first line end.
    if let Some((previous, next)) = text.split_once('\n') {
        delta_in_stream_same_as_serde(previous, next);
    }
    let first = recap_capture::delta::parse(text);
    let second = recap_capture::delta::parse(text);
    match (first, second) {
        (Ok(a), Ok(b)) => {
            assert_eq!(a, b, "parsing is not deterministic");
            // `has_output` and the fields it summarizes, against the same JSON read another
            // way (a `serde_json::Value`, walked by hand). Where the Value cannot be built
            // (e.g. a number beyond f64 in a field the extractor skips), nothing is compared.
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(text) {
                let want = OutputOracle::of(&v);
                assert_eq!(a.content.as_deref(), want.content, "content of {text}");
                assert_eq!(a.reasoning.as_deref(), want.reasoning, "reasoning of {text}");
                assert_eq!(a.tool_calls_json.is_some(), want.tool_calls, "tool_calls of {text}");
                assert_eq!(a.has_output(), want.has_output(), "has_output of {text}");
            }
        }
        (Err(_), Err(_)) => {}
        _ => panic!("parsing the same text twice gave different outcomes"),
    }
}

/// The hot path's reader (a scanner that hands what it is not sure of to serde) against the
/// serde reader alone: the same `Delta`, or an error from both, with and without the `id`;
/// also when the text is read as the next event of a stream whose previous event was itself.
pub fn delta_same_as_serde(text: &str) {
    for want_id in [true, false] {
        let fast = recap_capture::delta::parse_with(text, want_id);
        let serde = recap_capture::delta::parse_serde(text, want_id);
        match (fast, serde) {
            (Ok(a), Ok(b)) => assert_eq!(a, b, "scanner and serde differ on {text:?}"),
            (Err(_), Err(_)) => {}
            (a, b) => panic!("scanner {a:?} but serde {b:?} on {text:?}"),
        }
    }
    delta_in_stream_same_as_serde(text, text);
}

/// A stream's event read against the event before it (`previous`, the template
/// [`recap_capture::delta::parse_in_stream`] keeps) against the serde reader alone on `text`.
pub fn delta_in_stream_same_as_serde(previous: &str, text: &str) {
    for want_id in [true, false] {
        let mut memo = recap_capture::delta::StreamMemo::default();
        let _ = recap_capture::delta::parse_in_stream(previous, want_id, &mut memo);
        let fast = recap_capture::delta::parse_in_stream(text, want_id, &mut memo).map(|d| {
            assert_eq!(
                d.has_output(),
                d.clone().owned(text).has_output(),
                "has_output of {text:?}"
            );
            d.owned(text)
        });
        let serde = recap_capture::delta::parse_serde(text, want_id);
        match (fast, serde) {
            (Ok(a), Ok(b)) => assert_eq!(a, b, "after {previous:?}, stream reader and serde differ on {text:?}"),
            (Err(_), Err(_)) => {}
            (a, b) => panic!("after {previous:?}, stream reader {a:?} but serde {b:?} on {text:?}"),
        }
    }
}

/// What a response object says about generated output, read from its `serde_json::Value`
/// the way the OpenAI-compatible APIs define it, independently of [`recap_capture::delta`]: choice
/// 0 (the choice whose `index` is 0, a missing index counting as 0; else the first), its
/// `delta`, else its `message`; `content` (else the choice's completions `text`),
/// `reasoning_content` (else `reasoning`), `tool_calls`. A JSON `null` is an absent field.
struct OutputOracle<'a> {
    content: Option<&'a str>,
    reasoning: Option<&'a str>,
    tool_calls: bool,
}

impl<'a> OutputOracle<'a> {
    fn of(v: &'a serde_json::Value) -> Self {
        let field = |o: Option<&'a serde_json::Value>, k: &str| o.and_then(|o| o.get(k)).filter(|x| !x.is_null());
        let choices = v.get("choices").and_then(serde_json::Value::as_array);
        let choice = choices.and_then(|c| {
            c.iter()
                .find(|x| field(Some(x), "index").map_or(0, |i| i.as_u64().unwrap_or(u64::MAX)) == 0)
                .or_else(|| c.first())
        });
        let msg = field(choice, "delta").or_else(|| field(choice, "message"));
        let text = |x: Option<&'a serde_json::Value>| x.and_then(serde_json::Value::as_str);
        OutputOracle {
            content: text(field(msg, "content").or_else(|| field(choice, "text"))),
            reasoning: text(field(msg, "reasoning_content").or_else(|| field(msg, "reasoning"))),
            tool_calls: field(msg, "tool_calls").is_some(),
        }
    }

    /// Output: a non-empty content or reasoning text, or any tool call.
    fn has_output(&self) -> bool {
        self.content.is_some_and(|s| !s.is_empty()) || self.reasoning.is_some_and(|s| !s.is_empty()) || self.tool_calls
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

#[cfg(test)]
mod tests {
    use super::*;

    /// `(json, has_output)` derived by hand from the API's definition of output.
    const CASES: [(&str, bool); 14] = [
        (r#"{"choices":[{"index":0,"delta":{"content":"Hi"}}]}"#, true),
        (
            r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}"#,
            false,
        ),
        (r#"{"choices":[{"index":0,"delta":{"content":null}}]}"#, false),
        (
            r#"{"choices":[{"index":0,"delta":{"reasoning_content":"think"}}]}"#,
            true,
        ),
        (r#"{"choices":[{"index":0,"delta":{"reasoning":"think"}}]}"#, true),
        (
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{"}}]}}]}"#,
            true,
        ),
        (
            r#"{"choices":[{"index":0,"delta":{"content":"","tool_calls":null}}]}"#,
            false,
        ),
        (r#"{"choices":[{"index":0,"text":"x","finish_reason":null}]}"#, true),
        (r#"{"choices":[{"index":0,"message":{"content":"whole body"}}]}"#, true),
        (
            r#"{"choices":[{"index":1,"delta":{"content":"other"}},{"index":0,"delta":{"content":""}}]}"#,
            false,
        ),
        (
            r#"{"choices":[{"index":0,"delta":{"content":""}},{"index":1,"delta":{"content":"other"}}]}"#,
            false,
        ),
        (
            r#"{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":5}}"#,
            false,
        ),
        (r#"{"error":{"message":"overloaded"}}"#, false),
        (r#"{"choices":[{"delta":{"content":"\u00e9"}}]}"#, true),
    ];

    #[test]
    fn the_oracle_agrees_with_hand_derived_cases() {
        for (json, want) in CASES {
            let v: serde_json::Value = serde_json::from_str(json).expect("valid JSON");
            assert_eq!(OutputOracle::of(&v).has_output(), want, "oracle on {json}");
            assert_eq!(
                recap_capture::delta::parse(json).expect("parses").has_output(),
                want,
                "has_output of {json}"
            );
            delta_object(json.as_bytes());
        }
    }

    /// The saved corpus exercises both outcomes of the comparison, and the Value oracle reads
    /// nearly every input the extractor accepts (else the property would check little).
    #[test]
    fn the_delta_corpus_reaches_both_outcomes() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/delta");
        let (mut parsed, mut compared, mut with, mut without) = (0, 0, 0, 0);
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let data = std::fs::read(entry.expect("entry").path()).expect("read");
            let Ok(text) = std::str::from_utf8(&data) else { continue };
            let Ok(d) = recap_capture::delta::parse(text) else {
                continue;
            };
            parsed += 1;
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(text) {
                compared += 1;
                if OutputOracle::of(&v).has_output() {
                    with += 1;
                } else {
                    without += 1;
                }
                assert_eq!(d.has_output(), OutputOracle::of(&v).has_output(), "{text}");
            }
        }
        assert!(
            compared * 10 >= parsed * 9,
            "the oracle read {compared} of {parsed} parsed inputs"
        );
        assert!(
            with >= 10 && without >= 10,
            "corpus outputs: {with} with, {without} without"
        );
    }
}
