//! Mooncake traces (FAST'25, `kvcache-ai/Mooncake`): JSONL of `{"timestamp": ms,
//! "input_length": tokens, "output_length": tokens, "hash_ids": [ids of 512-token blocks]}`.

use serde::Deserialize;

use super::TraceRequest;
use crate::{Error, Result};

/// Block size Mooncake's `hash_ids` are counted in.
pub const BLOCK_TOKENS: u32 = 512;

#[derive(Deserialize)]
struct Line {
    timestamp: u64,
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
