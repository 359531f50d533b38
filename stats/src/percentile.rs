//! Exact descriptive statistics: the one place percentiles are computed.
//!
//! Percentiles interpolate linearly between closest ranks, like numpy's default
//! (`method="linear"`): for sorted `x` of length n and p in [0, 100], h = (n - 1) p / 100 and
//! the result is `x[floor h] + (h - floor h) (x[floor h + 1] - x[floor h])`. `std` is the
//! population standard deviation (numpy's default `ddof=0`).
//!
//! Each percentile also gets a distribution-free confidence interval: two order statistics
//! `x[l] <= x[u]` chosen from the binomial law of how many samples fall below the true
//! percentile ([`interval_ranks`]), the textbook interval for a quantile that assumes nothing
//! about the distribution (no normality, no independence of tail and body).

use std::collections::BTreeMap;

use recap_schemas::summary::{Distribution, PERCENTILES, PERCENTILE_CONFIDENCE};

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

/// Linear-interpolation percentile of unsorted, finite samples by selection (`v` is left
/// partially reordered; `None` if empty): linear time, for the many percentiles a bootstrap
/// recomputes.
pub fn percentile_select(v: &mut [f64], p: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let (lo, hi, w) = closest_ranks(v.len(), p);
    let ranks: Vec<usize> = if hi > lo { vec![lo, hi] } else { vec![lo] };
    let x = order_statistics(v, &ranks);
    let (a, b) = (x[0], *x.last()?);
    Some(a + w * (b - a))
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
/// those of min and max, and those bounding each percentile's interval.
pub(crate) fn wanted_ranks(n: usize) -> Vec<usize> {
    let mut ranks = vec![0, n - 1];
    for (_, q) in PERCENTILES {
        let (lo, hi, _) = closest_ranks(n, q);
        ranks.extend([lo, hi]);
        if let Some((l, u)) = interval_ranks(n, q, PERCENTILE_CONFIDENCE) {
            ranks.extend([l, u]);
        }
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
        intervals: PERCENTILES
            .iter()
            .filter_map(|(name, q)| {
                let (l, u) = interval_ranks(n, *q, PERCENTILE_CONFIDENCE)?;
                Some((name.to_string(), [at(l)?, at(u)?]))
            })
            .collect::<BTreeMap<_, _>>(),
    }
}

/// The 0-based ranks `(l, u)` of the order statistics that bound percentile `p` (0-100) of
/// `n` samples with probability at least `confidence`, whatever the distribution; `None` when
/// `n` is too small ([`samples_needed`]).
///
/// With B ~ Binomial(n, p/100) the number of samples below the true percentile,
/// P(x[l] <= percentile <= x[u]) >= P(l < B <= u) = F(u) - F(l) for F the CDF of B. `l` is the
/// largest rank with F(l) <= (1 - confidence)/2 and `u` the smallest with
/// F(u) >= (1 + confidence)/2, so each tail misses with probability at most half the rest
/// (equal-tailed; e.g. n = 10, p = 50, 95 %: ranks 1 and 8, coverage 97.9 %).
pub fn interval_ranks(n: usize, p: f64, confidence: f64) -> Option<(usize, usize)> {
    let q = (p / 100.0).clamp(0.0, 1.0);
    if n == 0 || q <= 0.0 || q >= 1.0 || !(0.0..1.0).contains(&confidence) {
        return None;
    }
    let tail = (1.0 - confidence) / 2.0;
    let (start, cdf) = binomial_cdf(n, q);
    // F(x) for x below the table is below 1e-30: every rank there passes the lower test.
    let l = match cdf.iter().rposition(|f| *f <= tail) {
        Some(i) => start + i,
        None if start > 0 => start - 1,
        None => return None,
    };
    let u = start + cdf.iter().position(|f| *f >= 1.0 - tail)?;
    (u < n).then_some((l, u))
}

/// The fewest samples for which percentile `p` has an interval at `confidence`: both
/// (1 - p/100)^n and (p/100)^n must be at most (1 - confidence)/2 (e.g. 368 for p99 at 95 %).
pub fn samples_needed(p: f64, confidence: f64) -> usize {
    let q = (p / 100.0).clamp(1e-12, 1.0 - 1e-12);
    let tail = (1.0 - confidence) / 2.0;
    let n = (tail.ln() / q.ln()).max(tail.ln() / (1.0 - q).ln());
    // Guard the float rounding at the boundary with the exact rule.
    let mut n = (n.floor() as usize).max(1);
    while interval_ranks(n, p, confidence).is_none() {
        n += 1;
    }
    n
}

/// The CDF of Binomial(n, q) over the ranks that carry its mass: `(start, F)` with
/// `F[i] = P(B <= start + i)`, from the mode outwards by the ratio of successive terms (no
/// factorials, no underflow), cut 12 standard deviations (and 30 ranks) from the mode, where
/// what is left is below 1e-30.
fn binomial_cdf(n: usize, q: f64) -> (usize, Vec<f64>) {
    let nf = n as f64;
    let mode = (((nf + 1.0) * q).floor() as usize).min(n);
    let reach = (12.0 * (nf * q * (1.0 - q)).sqrt()) as usize + 30;
    let (lo, hi) = (mode.saturating_sub(reach), (mode + reach).min(n));
    let mut w = vec![0.0_f64; hi - lo + 1];
    w[mode - lo] = 1.0;
    for k in (lo + 1..=mode).rev() {
        // P(k-1) / P(k) = k / (n - k + 1) * (1 - q) / q
        w[k - 1 - lo] = w[k - lo] * (k as f64) / ((n - k + 1) as f64) * (1.0 - q) / q;
    }
    for k in mode..hi {
        // P(k+1) / P(k) = (n - k) / (k + 1) * q / (1 - q)
        w[k + 1 - lo] = w[k - lo] * ((n - k) as f64) / ((k + 1) as f64) * q / (1.0 - q);
    }
    let total: f64 = w.iter().sum();
    let mut acc = 0.0;
    let cdf = w
        .iter()
        .map(|x| {
            acc += x / total;
            acc
        })
        .collect();
    (lo, cdf)
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
        let d = distribution(v.clone());
        for (name, q) in PERCENTILES {
            assert_eq!(d.get(name), percentile_sorted(&s, q), "{name}");
            assert_eq!(percentile_select(&mut v.clone(), q), percentile_sorted(&s, q), "{name}");
        }
        assert_eq!((d.min, d.max), (s.first().copied(), s.last().copied()));
    }

    /// P(B <= x) for B ~ Binomial(n, q), summed term by term from the pmf formula (small n):
    /// an independent computation of what `binomial_cdf` walks from the mode.
    fn cdf_by_formula(n: usize, q: f64, x: usize) -> f64 {
        (0..=x)
            .map(|k| {
                let choose = (0..k).fold(1.0_f64, |c, i| c * (n - i) as f64 / (i + 1) as f64);
                choose * q.powi(k as i32) * (1.0 - q).powi((n - k) as i32)
            })
            .sum()
    }

    #[test]
    fn percentile_intervals_by_hand_and_by_the_binomial_formula() {
        // The textbook case: the median of 10 samples at 95 % is [x(2), x(9)] (1-based), with
        // coverage 1 - 2 * 11/1024 = 97.85 %.
        assert_eq!(interval_ranks(10, 50.0, 0.95), Some((1, 8)));
        // Too few: the median of 5 (1/32 > 2.5 % in each tail), the p99 of 367.
        assert_eq!(interval_ranks(5, 50.0, 0.95), None);
        assert_eq!(interval_ranks(6, 50.0, 0.95), Some((0, 5)));
        assert_eq!(samples_needed(50.0, 0.95), 6);
        // 0.99^367 = 0.02501 > 0.025 >= 0.99^368 = 0.02476.
        assert_eq!(samples_needed(99.0, 0.95), 368);
        assert_eq!(
            [90.0, 95.0, 99.9].map(|p| samples_needed(p, 0.95)),
            [36, 72, 3688],
            "0.9^35 > 0.025 >= 0.9^36, 0.95^71 > 0.025 >= 0.95^72, 0.999^3687 > 0.025 >= 0.999^3688"
        );
        assert!(interval_ranks(367, 99.0, 0.95).is_none() && interval_ranks(368, 99.0, 0.95).is_some());
        // Against the formula: l is the last rank with F(l) <= 2.5 %, u the first with
        // F(u) >= 97.5 %, for every n up to 60 and every reported percentile.
        for n in 1..=60 {
            for (_, p) in PERCENTILES {
                let q = p / 100.0;
                let f = |x: usize| cdf_by_formula(n, q, x);
                let want_l = (0..n).rev().find(|x| f(*x) <= 0.025);
                let want_u = (0..n).find(|x| f(*x) >= 0.975);
                let want = want_l.zip(want_u);
                assert_eq!(interval_ranks(n, p, 0.95), want, "n {n}, p {p}");
            }
        }
    }

    #[test]
    fn intervals_hold_their_coverage_on_large_runs() {
        // n = 1e6 samples, the median: the normal approximation puts the bounds at
        // n/2 -/+ 1.96 sqrt(n)/2 = 500000 -/+ 980.
        let (l, u) = interval_ranks(1_000_000, 50.0, 0.95).expect("interval");
        assert!(
            (l as i64 - 499_020).abs() <= 2 && (u as i64 - 500_980).abs() <= 2,
            "{l} {u}"
        );
        // And a distribution reports them as samples of the run.
        let d = distribution((0..1000).map(f64::from));
        let [lo, hi] = d.intervals["p99"];
        assert!(
            lo <= d.p99.unwrap_or(f64::NAN) && d.p99.unwrap_or(f64::NAN) <= hi,
            "{lo} {hi}"
        );
        assert!(!d.intervals.contains_key("p99_9"), "1000 samples are too few for p99.9");
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
