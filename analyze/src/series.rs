//! The run second by second (`series.parquet`): what a summary averages away — a ramp, a
//! stall, a queue building up — as a table any tool can plot.

use std::sync::Arc;

use arrow_array::builder::{Float64Builder, UInt32Builder};
use arrow_array::RecordBatch;
use recap_schemas::analysis::series as columns;
use recap_schemas::Phase;

use crate::metrics::RequestMetrics;
use crate::Result;

/// Bin width.
const BIN_NS: i64 = 1_000_000_000;

/// `⌈a / b⌉` for `b > 0` and any sign of `a`.
fn ceil_div(a: i64, b: i64) -> i64 {
    -((-a).div_euclid(b))
}

/// One row per second of the measure window (from the first measured `sent` to the last
/// measured terminal event), over measure-phase requests: a request is done (or an error) in
/// the bin of its terminal event, in flight at a bin's middle if sent before it and ended
/// after, and its TTFT counts in the bin of its first output event.
pub fn series(rows: &[RequestMetrics]) -> Result<RecordBatch> {
    let measure: Vec<&RequestMetrics> = rows.iter().filter(|m| m.phase == Some(Phase::Measure)).collect();
    let start = measure.iter().filter_map(|m| m.sent_ns).min();
    let end = measure.iter().filter_map(|m| m.end_ns).max();
    let bins = match (start, end) {
        (Some(s), Some(e)) if e >= s => ((e - s) / BIN_NS + 1) as usize,
        _ => 0,
    };
    let start = start.unwrap_or(0);
    let bin = |t: i64| (((t - start).max(0)) / BIN_NS) as usize;
    let (mut done, mut errors, mut tokens) = (vec![0_u32; bins], vec![0_u32; bins], vec![0_u64; bins]);
    let (mut ttft_sum, mut ttft_n) = (vec![0.0_f64; bins], vec![0_u32; bins]);
    // Requests in flight at each bin's middle, as +1/-1 steps over bin indices: linear in
    // requests plus bins, however long the run.
    let mut steps = vec![0_i64; bins + 1];
    for m in &measure {
        if let Some(e) = m.end_ns {
            let b = bin(e).min(bins.saturating_sub(1));
            if m.ok {
                done[b] += 1;
                tokens[b] += u64::from(m.osl_tokens.unwrap_or(0));
            } else {
                errors[b] += 1;
            }
        }
        if let (true, Some(first), Some(ttft)) = (m.ok, m.first_token_ns, m.ttft_ns) {
            let b = bin(first).min(bins.saturating_sub(1));
            ttft_sum[b] += ttft as f64 / 1e6;
            ttft_n[b] += 1;
        }
        if let Some(sent) = m.sent_ns {
            // Bin b's middle is start + b·BIN + BIN/2: in flight from the first middle at or
            // after `sent` to the last one before `end`.
            let first_middle_at_or_after =
                |t: i64| ceil_div(t - start - BIN_NS / 2, BIN_NS).clamp(0, bins as i64) as usize;
            let from = first_middle_at_or_after(sent);
            let to = m.end_ns.map_or(bins, first_middle_at_or_after);
            if from < to {
                steps[from] += 1;
                steps[to] -= 1;
            }
        }
    }
    let in_flight: Vec<u32> = steps[..bins]
        .iter()
        .scan(0_i64, |n, s| {
            *n += s;
            Some(*n as u32)
        })
        .collect();
    let mut t = Float64Builder::new();
    let mut rate = Float64Builder::new();
    let mut ttft = Float64Builder::new();
    for b in 0..bins {
        t.append_value(b as f64 * BIN_NS as f64 / 1e9);
        rate.append_value(tokens[b] as f64 / (BIN_NS as f64 / 1e9));
        ttft.append_option((ttft_n[b] > 0).then(|| ttft_sum[b] / f64::from(ttft_n[b])));
    }
    let u32s = |v: Vec<u32>| {
        let mut b = UInt32Builder::new();
        b.append_slice(&v);
        Arc::new(b.finish())
    };
    Ok(RecordBatch::try_new(
        columns::schema(),
        vec![
            Arc::new(t.finish()),
            u32s(done),
            u32s(errors),
            Arc::new(rate.finish()),
            u32s(in_flight),
            Arc::new(ttft.finish()),
        ],
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::cast::AsArray;
    use arrow_array::types::UInt32Type;

    #[test]
    fn in_flight_at_each_seconds_middle_by_hand() {
        let s = 1_000_000_000;
        let req = |id, sent: i64, end: Option<i64>| RequestMetrics {
            request_id: id,
            phase: Some(Phase::Measure),
            ok: end.is_some(),
            sent_ns: Some(sent),
            end_ns: end,
            ..Default::default()
        };
        // Window 0 s .. 3.2 s: bins 0..4 with middles 0.5, 1.5, 2.5, 3.5 s.
        let rows = [
            req(0, 0, Some(s / 2)),             // ends at 0.5 s: not in flight at 0.5 s
            req(1, s / 2, Some(3 * s + s / 5)), // 0.5 s .. 3.2 s: middles 0.5, 1.5, 2.5
            req(2, 2 * s, None),                // 2 s, never ended: middles 2.5, 3.5
        ];
        let b = series(&rows).expect("series");
        let flight: Vec<u32> = b.column(4).as_primitive::<UInt32Type>().values().to_vec();
        assert_eq!(flight, [1, 1, 2, 1]);
    }
}
