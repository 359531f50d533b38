//! Exact descriptive statistics: the one place percentiles are computed.
//!
//! Percentiles interpolate linearly between closest ranks, like numpy's default
//! (`method="linear"`): for sorted `x` of length n and p in [0, 100], h = (n - 1) p / 100 and
//! the result is `x[floor h] + (h - floor h) (x[floor h + 1] - x[floor h])`. `std` is the
//! population standard deviation (numpy's default `ddof=0`).

use recap_schemas::summary::{Distribution, PERCENTILES};

/// The two closest ranks of percentile `p` among `n` sorted samples and the weight of the
/// upper one: h = (n - 1) p / 100, ranks floor h and floor h + 1 (capped), weight h - floor h.
pub(crate) fn closest_ranks(n: usize, p: f64) -> (usize, usize, f64) {
    let h = (n - 1) as f64 * (p / 100.0).clamp(0.0, 1.0);
    let lo = h.floor() as usize;
    (lo, (lo + 1).min(n - 1), h - lo as f64)
}

/// Linear-interpolation percentile of already sorted, finite samples (`None` if empty).
pub fn percentile_sorted(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let (lo, hi, w) = closest_ranks(sorted.len(), p);
    Some(sorted[lo] + w * (sorted[hi] - sorted[lo]))
}

/// The values of rank `ranks[i]` (0-based, ascending, distinct) in sorted order, by successive
/// selection on ever smaller tails of `v` (which is left partially reordered).
fn order_statistics(v: &mut [f64], ranks: &[usize]) -> Vec<f64> {
    let mut out = Vec::with_capacity(ranks.len());
    let mut start = 0;
    for &r in ranks {
        let (_, x, _) = v[start..].select_nth_unstable_by(r - start, f64::total_cmp);
        out.push(*x);
        start = r;
    }
    out
}

/// Describes `samples` (non-finite values are dropped).
///
/// Percentiles come from selection (`select_nth_unstable`), not a full sort: linear time,
/// which matters for the millions of inter-chunk gaps of a long run.
pub fn distribution(samples: impl IntoIterator<Item = f64>) -> Distribution {
    let mut v: Vec<f64> = samples.into_iter().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return Distribution::default();
    }
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n;
    let ranks = wanted_ranks(v.len());
    let values = order_statistics(&mut v, &ranks);
    let at = |r: usize| Some(values[ranks.binary_search(&r).unwrap_or(0)]);
    describe(v.len(), mean, var.sqrt(), at)
}

/// Every rank (ascending, distinct) a percentile of `n > 0` samples interpolates between,
/// plus those of min and max.
pub(crate) fn wanted_ranks(n: usize) -> Vec<usize> {
    let mut ranks = vec![0, n - 1];
    for (_, q) in PERCENTILES {
        let (lo, hi, _) = closest_ranks(n, q);
        ranks.extend([lo, hi]);
    }
    ranks.sort_unstable();
    ranks.dedup();
    ranks
}

/// The distribution of `n` samples with this mean and standard deviation, whose value of
/// rank `r` (0-based, ascending) is `at(r)`: min, max and the interpolated percentiles.
pub(crate) fn describe(n: usize, mean: f64, std: f64, at: impl Fn(usize) -> Option<f64>) -> Distribution {
    let p = |q: f64| {
        let (lo, hi, w) = closest_ranks(n, q);
        let (a, b) = (at(lo)?, at(hi)?);
        Some(a + w * (b - a))
    };
    Distribution {
        count: n as u64,
        mean: Some(mean),
        std: Some(std),
        min: at(0),
        max: at(n - 1),
        p50: p(50.0),
        p90: p(90.0),
        p95: p(95.0),
        p99: p(99.0),
        p99_9: p(99.9),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_numpy_linear_by_hand() {
        // numpy.percentile([1, 2, 3, 4], [50, 90, 99.9]) == [2.5, 3.7, 3.997]
        let d = distribution([4.0, 1.0, 3.0, 2.0]);
        assert_eq!(d.p50, Some(2.5));
        assert!((d.p90.unwrap_or(0.0) - 3.7).abs() < 1e-12);
        assert!((d.p99_9.unwrap_or(0.0) - 3.997).abs() < 1e-12);
        assert_eq!((d.min, d.max, d.mean), (Some(1.0), Some(4.0), Some(2.5)));
        // numpy.std([1, 2, 3, 4]) == 1.118033988749895
        assert!((d.std.unwrap_or(0.0) - 1.118_033_988_749_895).abs() < 1e-12);
    }

    #[test]
    fn selection_matches_a_full_sort() {
        let v: Vec<f64> = (0..10_007u64)
            .map(|i| ((i * 7919) % 10_007) as f64 * 0.5 - 17.0)
            .collect();
        let mut s = v.clone();
        s.sort_by(f64::total_cmp);
        let d = distribution(v);
        for (name, q) in PERCENTILES {
            assert_eq!(d.get(name), percentile_sorted(&s, q), "{name}");
        }
        assert_eq!((d.min, d.max), (s.first().copied(), s.last().copied()));
    }

    #[test]
    fn single_and_empty() {
        let d = distribution([7.0]);
        assert_eq!((d.p50, d.p99_9, d.std), (Some(7.0), Some(7.0), Some(0.0)));
        assert_eq!(distribution([]), Distribution::default());
        assert_eq!(distribution([f64::NAN]).count, 0);
    }

    #[test]
    fn agrees_with_an_independent_nearest_rank_bracket() {
        // Independent check: the linear percentile lies between the two closest ranks and
        // equals the rank value exactly when (n-1)p/100 is an integer.
        let v: Vec<f64> = (0..101).map(|i| ((i * 37) % 101) as f64).collect();
        let d = distribution(v.clone());
        let mut s = v;
        s.sort_by(f64::total_cmp);
        assert_eq!(d.p50, Some(s[50]));
        assert_eq!(d.p90, Some(s[90]));
        assert_eq!(d.p99, Some(s[99]));
        let p999 = d.p99_9.unwrap_or(0.0);
        assert!(p999 >= s[99] && p999 <= s[100]);
    }
}
