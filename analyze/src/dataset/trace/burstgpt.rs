//! BurstGPT traces (`HPMLL/BurstGPT`): CSV with a header
//! `Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type`, timestamps in
//! seconds from the trace's start. No prompt blocks: every row gets its own text. Rows with
//! zero response tokens (failed requests in the trace) are skipped and counted.

use super::TraceRequest;
use crate::{Error, Result};

/// Parses a BurstGPT CSV; `name` is used in errors. Returns the rows and how many were
/// skipped (zero response tokens).
pub fn parse(text: &str, name: &str) -> Result<(Vec<TraceRequest>, u64)> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let headers = reader
        .headers()
        .map_err(|e| Error::Input(format!("{name}: not a CSV file: {e}")))?
        .clone();
    let column = |want: &str| {
        headers
            .iter()
            .position(|h| h.eq_ignore_ascii_case(want))
            .ok_or_else(|| Error::Input(format!("{name}: no `{want}` column (BurstGPT header expected)")))
    };
    let (ts, req, resp) = (
        column("Timestamp")?,
        column("Request tokens")?,
        column("Response tokens")?,
    );
    let (mut out, mut skipped) = (Vec::new(), 0);
    for (i, record) in reader.records().enumerate() {
        let line = i as u64 + 2;
        let record = record.map_err(|e| Error::Input(format!("{name} line {line}: {e}")))?;
        let cell = |c: usize, what: &str| {
            record
                .get(c)
                .ok_or_else(|| Error::Input(format!("{name} line {line}: missing `{what}`")))
        };
        let seconds: f64 = cell(ts, "Timestamp")?
            .parse()
            .ok()
            .filter(|s: &f64| s.is_finite() && *s >= 0.0)
            .ok_or_else(|| {
                Error::Input(format!(
                    "{name} line {line}: `Timestamp` is not a non-negative number of seconds"
                ))
            })?;
        let tokens = |c: usize, what: &str| -> Result<u32> {
            cell(c, what)?
                .parse()
                .map_err(|_| Error::Input(format!("{name} line {line}: `{what}` is not a whole number")))
        };
        let (input_length, output_length) = (tokens(req, "Request tokens")?, tokens(resp, "Response tokens")?);
        if output_length == 0 {
            skipped += 1;
            continue;
        }
        out.push(TraceRequest {
            line,
            timestamp_ms: seconds * 1000.0,
            input_length,
            output_length,
            hash_ids: Vec::new(),
        });
    }
    Ok((out, skipped))
}
