//! Mooncake traces (FAST'25, `kvcache-ai/Mooncake`): JSONL of `{"timestamp": ms,
//! "input_length": tokens, "output_length": tokens, "hash_ids": [ids of 512-token blocks]}`.

use serde::Deserialize;

use super::TraceRequest;
use crate::{Error, Result};

/// Block size Mooncake's `hash_ids` are counted in.
pub const BLOCK_TOKENS: u32 = 512;

#[derive(Deserialize)]
struct Line {
    timestamp: f64,
    input_length: u32,
    output_length: u32,
    #[serde(default)]
    hash_ids: Vec<u64>,
}

/// Parses a Mooncake trace; `name` is used in errors.
pub fn parse(text: &str, name: &str) -> Result<Vec<TraceRequest>> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let l: Line = serde_json::from_str(line)
            .map_err(|e| Error::Input(format!("{name} line {}: not a Mooncake trace line: {e}", i + 1)))?;
        // Fractional milliseconds are kept (the schedule has nanoseconds); time never runs
        // backwards from zero.
        if !(l.timestamp.is_finite() && l.timestamp >= 0.0) {
            return Err(Error::Input(format!(
                "{name} line {}: `timestamp` is not a non-negative number of milliseconds",
                i + 1
            )));
        }
        out.push(TraceRequest {
            line: i as u64 + 1,
            timestamp_ms: l.timestamp,
            input_length: l.input_length,
            output_length: l.output_length,
            hash_ids: l.hash_ids,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fractional_timestamps_are_kept_and_negative_ones_name_their_line() {
        let ok = "{\"timestamp\": 0.0, \"input_length\": 8, \"output_length\": 2, \"hash_ids\": [1]}\n\
                  {\"timestamp\": 12.5, \"input_length\": 8, \"output_length\": 2, \"hash_ids\": [1]}\n";
        let rows = parse(ok, "t.jsonl").expect("parse");
        assert_eq!(rows.iter().map(|r| r.timestamp_ms).collect::<Vec<_>>(), [0.0, 12.5]);
        let bad = "{\"timestamp\": 1, \"input_length\": 8, \"output_length\": 2, \"hash_ids\": []}\n\
                   {\"timestamp\": -3, \"input_length\": 8, \"output_length\": 2, \"hash_ids\": []}\n";
        let e = parse(bad, "t.jsonl").expect_err("negative").to_string();
        assert!(e.starts_with("t.jsonl line 2: `timestamp`"), "{e}");
    }
}
