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

/// Response objects in the shapes real servers send (vLLM, SGLang, llama.cpp, OpenAI; streamed
/// chunks and whole bodies, errors included), written from their documented and observed
/// output.
const REAL_OBJECTS: &[&str] = &[
    r#"{"id":"chatcmpl-8f3b","object":"chat.completion.chunk","created":1733300000,"model":"meta-llama/Llama-3.1-8B-Instruct","choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}"#,
    r#"{"id":"chatcmpl-8f3b","object":"chat.completion.chunk","created":1733300000,"model":"m","choices":[{"index":0,"delta":{"content":" the"},"logprobs":null,"finish_reason":null}]}"#,
    r#"{"id":"cmpl-1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":""},"logprobs":null,"finish_reason":"stop","stop_reason":null}]}"#,
    r#"{"id":"chatcmpl-8f3b","object":"chat.completion.chunk","created":1,"model":"m","choices":[],"usage":{"prompt_tokens":12,"total_tokens":40,"completion_tokens":28,"prompt_tokens_details":{"cached_tokens":0}}}"#,
    r#"{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"reasoning_content":"Let me think"},"logprobs":null,"finish_reason":null}]}"#,
    r#"{"id":"cmpl-a","object":"text_completion","created":1,"model":"m","choices":[{"index":0,"text":" world","logprobs":null,"finish_reason":null,"stop_reason":null}],"usage":null}"#,
    r#"{"id":"6c1f","object":"chat.completion.chunk","created":1733300000,"model":"default","choices":[{"index":0,"delta":{"role":null,"content":" Paris","reasoning_content":null,"tool_calls":null},"logprobs":null,"finish_reason":null,"matched_stop":null}],"usage":null}"#,
    r#"{"choices":[{"finish_reason":null,"index":0,"delta":{"content":"Hello"}}],"created":1733300000,"id":"chatcmpl-abc","model":"gpt-3.5-turbo","system_fingerprint":"b4500-xyz","object":"chat.completion.chunk"}"#,
    r#"{"choices":[{"finish_reason":"stop","index":0,"delta":{}}],"created":1,"id":"chatcmpl-abc","model":"m","object":"chat.completion.chunk","usage":{"completion_tokens":10,"prompt_tokens":5,"total_tokens":15},"timings":{"cache_n":3,"prompt_n":5,"prompt_ms":12.3,"predicted_n":10,"predicted_ms":100.5}}"#,
    r#"{"id":"chatcmpl-x","object":"chat.completion.chunk","created":1,"model":"gpt-4o","system_fingerprint":"fp_1","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\": \"Par"}}]},"logprobs":null,"finish_reason":null}]}"#,
    r#"{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"caf\u00e9 \ud83d\ude00 \"q\"\n\t\\ \/ \b\f\r"},"finish_reason":null}]}"#,
    r#"{"id":"c","choices":[{"index":0,"delta":{"content":"a"},"logprobs":{"content":[{"token":"a","logprob":-0.0123,"bytes":[97],"top_logprobs":[{"token":"b","logprob":-4.5e-3,"bytes":[98]}]}]},"finish_reason":null}]}"#,
    r#"{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"Hi there","tool_calls":[]},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5,"completion_tokens_details":{"reasoning_tokens":0}}}"#,
    r#"{"error":{"object":"error","message":"KV cache is full","type":"InternalServerError","param":null,"code":500}}"#,
    r#"{"object":"error","message":"bad","type":"BadRequestError","param":null,"code":400}"#,
    r#"{"id":"n2","choices":[{"index":1,"delta":{"content":"B"}},{"index":0,"delta":{"content":"A"}}]}"#,
    "{ \"choices\" : [ { \"index\" : 0 , \"delta\" : { \"content\" : \"x\" } } ] , \"error\" : null }\n",
    r#"{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.0123,-1.5e-2,3E+1,0,-0]}],"model":"e","usage":{"prompt_tokens":4,"total_tokens":4}}"#,
];

/// Shapes no one-byte edit of the objects above reaches: duplicate keys at every level
/// (serde refuses them), escaped keys, several choices, deep nesting.
const EDGE_OBJECTS: &[&str] = &[
    r#"{"choices":[],"choices":[]}"#,
    r#"{"choices":null,"usage":null,"usage":{"prompt_tokens":1}}"#,
    r#"{"error":null,"error":null}"#,
    r#"{"message":null,"message":null,"choices":[]}"#,
    r#"{"timings":null,"timings":null}"#,
    r#"{"id":"a","id":"b","choices":[]}"#,
    r#"{"object":"x","object":"y","choices":[]}"#,
    r#"{"choices":[{"index":0,"index":0}]}"#,
    r#"{"choices":[{"delta":{},"delta":{}}]}"#,
    r#"{"choices":[{"delta":{"content":"a","content":"b"}}]}"#,
    r#"{"choices":[{"delta":{"tool_calls":null,"tool_calls":[]}}]}"#,
    r#"{"choices":[{"text":"a","finish_reason":null,"finish_reason":"stop"}]}"#,
    r#"{"choices":[],"usage":{"prompt_tokens":1,"prompt_tokens":2}}"#,
    r#"{"choices":[],"usage":{"prompt_tokens_details":{"cached_tokens":1,"cached_tokens":2}}}"#,
    r#"{"model":"a","model":"b","choices":[]}"#,
    r#"{"choices":[{"delta":{"content":"x"}}]}"#,
    r#"{"choices":[{"index":2,"delta":{"content":"x"}},{"index":3,"delta":{"content":"y"}}]}"#,
    r#"{"choices":[{"delta":["a","b"]}]}"#,
    r#"{"choices":[{"delta":{"content":"x"}}],"deep":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}"#,
    r#"{"choices":[{"index":18446744073709551615,"delta":{"content":"x"}}]}"#,
    r#"{"choices":[{"index":99999999999999999999,"delta":{"content":"x"}}]}"#,
    r#"{"choices":[],"usage":{"prompt_tokens":4294967296}}"#,
];

/// The hot path's scanner against serde on real servers' objects and on every one-byte edit
/// of them (each byte deleted, replaced by a byte JSON gives meaning to, the text cut there):
/// the edits walk the scanner through every way a value can end early or change kind.
#[test]
fn delta_scanner_agrees_with_serde_on_real_objects_and_their_edits() {
    let bytes_to_try: &[u8] = b"\"\\,:{}[]0-1.eEn tfu\x01";
    for text in EDGE_OBJECTS {
        properties::delta_same_as_serde(text);
    }
    let mut checked = 0usize;
    for text in REAL_OBJECTS {
        properties::delta_same_as_serde(text);
        let b = text.as_bytes();
        for at in 0..b.len() {
            let mut variants = vec![[&b[..at], &b[at + 1..]].concat(), b[..at].to_vec()];
            for &c in bytes_to_try {
                let mut v = b.to_vec();
                v[at] = c;
                variants.push(v);
            }
            for v in variants {
                if let Ok(t) = std::str::from_utf8(&v) {
                    properties::delta_same_as_serde(t);
                    // The edit as the next event of a stream whose previous event was the
                    // original: every way the text around the content can differ.
                    properties::delta_in_stream_same_as_serde(text, t);
                    checked += 1;
                }
            }
        }
    }
    assert!(checked > 50_000, "only {checked} edits checked");
}

/// A stream's next event read against the previous one where only the content string
/// changed: each real object with its content replaced by strings that are, or only look
/// like, one string token (escapes, a lone surrogate, a control byte, a quote that ends the
/// string early and injects a key, an unterminated string).
#[test]
fn delta_stream_reader_agrees_with_serde_when_only_the_content_changes() {
    let replacements = [
        r#""""#,
        r#""x""#,
        r#"" Paris, a longer piece of text than the one before""#,
        r#""caf\u00e9 \ud83d\ude00 \"q\"\n""#,
        r#""\ud800""#,
        "\"a\u{1}b\"",
        r#""a","content":"b""#,
        r#""a","x":"""#,
        r#""a"#,
        r#"null"#,
        r#"7"#,
        r#""a\""#,
    ];
    let mut replaced = 0;
    for text in REAL_OBJECTS {
        for key in [r#""content":"#, r#""text":"#] {
            let Some(at) = text.find(key).map(|k| k + key.len()) else {
                continue;
            };
            let Some(len) = text[at + 1..].find('"').map(|l| l + 2) else {
                continue;
            };
            for r in replacements {
                let next = format!("{}{}{}", &text[..at], r, &text[at + len..]);
                properties::delta_in_stream_same_as_serde(text, &next);
                replaced += 1;
            }
        }
    }
    assert!(replaced >= 100, "only {replaced} replacements checked");
}
