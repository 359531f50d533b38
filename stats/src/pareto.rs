//! Pareto fronts over two metrics, each either maximized (throughput) or minimized (latency).

pub use recap_schemas::sweep::Better;

fn at_least_as_good(better: Better, a: f64, b: f64) -> bool {
    match better {
        Better::Higher => a >= b,
        Better::Lower => a <= b,
    }
}

/// For each point, whether it is on the front: no other point is at least as good on both
/// axes and strictly better on one. Points with a non-finite coordinate are never on it.
/// Duplicated points are all on the front (none strictly dominates the other).
pub fn front(points: &[(f64, f64)], x: Better, y: Better) -> Vec<bool> {
    points
        .iter()
        .map(|&(px, py)| {
            px.is_finite()
                && py.is_finite()
                && !points.iter().any(|&(qx, qy)| {
                    qx.is_finite()
                        && qy.is_finite()
                        && at_least_as_good(x, qx, px)
                        && at_least_as_good(y, qy, py)
                        && (qx != px || qy != py)
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throughput_vs_per_user_rate() {
        // (output tok/s, tok/s/user): c1 fast per user, c64 high throughput, (3, 3) dominated.
        let p = [(1.0, 10.0), (5.0, 5.0), (3.0, 3.0), (10.0, 1.0)];
        assert_eq!(front(&p, Better::Higher, Better::Higher), [true, true, false, true]);
    }

    #[test]
    fn latency_vs_throughput_mixed_directions() {
        // (p99 latency ms, req/s): lower latency and higher rate are better.
        let p = [(100.0, 10.0), (200.0, 20.0), (250.0, 15.0), (90.0, 5.0)];
        assert_eq!(front(&p, Better::Lower, Better::Higher), [true, true, false, true]);
    }

    #[test]
    fn degenerate_cases() {
        assert!(front(&[], Better::Higher, Better::Higher).is_empty());
        assert_eq!(front(&[(1.0, 1.0)], Better::Higher, Better::Lower), [true]);
        assert_eq!(
            front(&[(1.0, 1.0), (1.0, 1.0)], Better::Higher, Better::Higher),
            [true, true]
        );
        assert_eq!(
            front(&[(f64::NAN, 1.0), (0.0, 0.0)], Better::Higher, Better::Higher),
            [false, true]
        );
        assert_eq!(Better::for_metric("ttft_ms_p99"), Better::Lower);
        assert_eq!(Better::for_metric("output_tokens_per_s"), Better::Higher);
    }
}
