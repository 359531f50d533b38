//! MLPerf LoadGen's early stopping: whether a run's latency percentile meets a bound at a
//! confidence level, and how many more samples it would need.
//!
//! With `t` of `n` samples over the bound, the run passes for percentile `p` at confidence `c`
//! when `n ≥ h + t` for the smallest `h` with `I_{p-d}(h, t + 1) < 1 - c` ([`min_passing`]):
//! were the true share over the bound as high as `1 - p`, seeing at most `t` over it among
//! `h + t` samples would have probability below `1 - c`. `I` is the regularized incomplete
//! beta function, `P(Binomial(h + t, 1 - p + d) ≤ t)`; LoadGen uses `c = 0.99`, tolerance
//! `d = 0` (`loadgen/early_stopping.cc`, `PerformanceSummary::EarlyStopping` in
//! `loadgen/results.cc`).

use statrs::function::beta::beta_reg;

/// LoadGen's confidence level.
pub const CONFIDENCE: f64 = 0.99;
/// LoadGen's tolerance.
pub const TOLERANCE: f64 = 0.0;

/// The chance of at most `t` samples over the bound among `h + t`, were the true share over it
/// `1 - (p - d)`: LoadGen's `odds`.
fn odds(h: u64, t: u64, p: f64, d: f64) -> f64 {
    beta_reg(h as f64, (t + 1) as f64, p - d)
}

/// The fewest samples under the bound that, beside `t` over it, pass percentile `p` (0-1,
/// exclusive) at confidence `c` with tolerance `d`: the smallest `h ≥ 1` with
/// `odds(h, t, p, d) < 1 - c` (LoadGen's `MinPassingQueriesFinder`). `None` outside
/// `0 < p - d < 1`, `0 < c < 1`, or beyond 2⁴⁰ samples.
pub fn min_passing(t: u64, p: f64, d: f64, c: f64) -> Option<u64> {
    let q = p - d;
    if !(q > 0.0 && q < 1.0 && c > 0.0 && c < 1.0) {
        return None;
    }
    let target = 1.0 - c;
    // `odds` falls as h grows: double to a bound, then bisect.
    let mut hi = 1_u64;
    while odds(hi, t, p, d) >= target {
        hi = hi.checked_mul(2).filter(|h| *h <= 1 << 40)?;
    }
    let mut lo = hi / 2 + 1;
    if hi == 1 {
        return Some(1);
    }
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if odds(mid, t, p, d) < target {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    Some(hi)
}

/// The early-stopping verdict of one latency bound over `samples` ([`check`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Verdict {
    /// Samples over the bound (`t`).
    pub over: u64,
    /// Samples needed in all, `h + t`: the run passes when it has at least this many.
    pub needed: u64,
    /// `needed` minus the samples there are, when positive: what a short run lacks, were every
    /// additional sample under the bound.
    pub more_needed: u64,
    /// Early stopping holds.
    pub passed: bool,
}

/// LoadGen's Server-scenario check of `n` samples, `over` of them over the bound, for
/// percentile `p` (0-1) at [`CONFIDENCE`] and [`TOLERANCE`].
pub fn check(n: u64, over: u64, p: f64) -> Option<Verdict> {
    let h = min_passing(over, p, TOLERANCE, CONFIDENCE)?;
    let needed = h + over;
    Some(Verdict {
        over,
        needed,
        more_needed: needed.saturating_sub(n),
        passed: n >= needed,
    })
}

/// LoadGen's early-stopping estimate of percentile `p` (0-1) of `sorted` samples (ascending),
/// at [`CONFIDENCE`]: the `t`-th largest sample for the largest `t` the run's size allows
/// (`n ≥ min_passing(t) + t`), a value the true percentile is below at that confidence. `Err`
/// with the samples needed for any estimate (`min_passing(1) + 1`) when there are fewer.
pub fn estimate(sorted: &[f64], p: f64) -> Result<f64, u64> {
    let n = sorted.len() as u64;
    let passing = |t: u64| min_passing(t, p, TOLERANCE, CONFIDENCE);
    let Some(h_min) = passing(1) else {
        return Err(u64::MAX);
    };
    if n < h_min + 1 {
        return Err(h_min + 1);
    }
    // LoadGen walks i = 2, 3, ... to the first i with n < min_passing(i) + i and takes
    // t = i - 1. That requirement grows with i, so bisection finds the same t in log n steps
    // (a long run has a t in the thousands).
    let fits = |t: u64| passing(t).is_some_and(|h| n >= h + t);
    let (mut lo, mut hi) = (1_u64, n);
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if fits(mid) {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    let t = lo;
    Ok(sorted[(n - t) as usize])
}

/// LoadGen's percentile of `sorted` samples: `sorted[⌊n·p⌋]` (the nearest rank above, no
/// interpolation), what its perf-constraint check compares with the bound.
pub fn loadgen_percentile(sorted: &[f64], p: f64) -> Option<f64> {
    let i = (sorted.len() as f64 * p) as usize;
    sorted.get(i.min(sorted.len().checked_sub(1)?)).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `h` for (t, p), computed with SciPy 1.17.1: the smallest h with
    /// `scipy.special.betainc(h, t + 1, p) < 0.01` (and, the same numbers,
    /// `scipy.stats.binom.cdf(t, h + t, 1 - p) < 0.01`).
    const SCIPY: [(u64, f64, u64); 21] = [
        (0, 0.99, 459),
        (1, 0.99, 661),
        (2, 0.99, 836),
        (5, 0.99, 1302),
        (10, 0.99, 2000),
        (100, 0.99, 12471),
        (1000, 0.99, 106569),
        (0, 0.9, 44),
        (1, 0.9, 63),
        (2, 0.9, 79),
        (5, 0.9, 122),
        (10, 0.9, 187),
        (100, 0.9, 1146),
        (1000, 0.9, 9722),
        (0, 0.999, 4603),
        (1, 0.999, 6635),
        (2, 0.999, 8401),
        (5, 0.999, 13100),
        (10, 0.999, 20130),
        (100, 0.999, 125726),
        (1000, 0.999, 1075032),
    ];

    #[test]
    fn min_passing_matches_scipy() {
        for (t, p, h) in SCIPY {
            assert_eq!(min_passing(t, p, 0.0, 0.99), Some(h), "t={t} p={p}");
        }
        // By hand: t = 0 needs p^h < 1 - c, h > ln 0.01 / ln 0.99 = 458.2.
        assert_eq!(min_passing(0, 0.99, 0.0, 0.99), Some(459));
        assert_eq!(min_passing(0, 1.0, 0.0, 0.99), None);
    }

    #[test]
    fn server_check_passes_at_h_plus_t_and_says_what_is_missing() {
        // 661 under + 1 over pass p99; one sample fewer does not, and lacks exactly one.
        assert!(check(662, 1, 0.99).expect("check").passed);
        let short = check(661, 1, 0.99).expect("check");
        assert_eq!((short.passed, short.needed, short.more_needed), (false, 662, 1));
        // 200 samples, none over: p99 needs 459.
        assert_eq!(check(200, 0, 0.99).expect("check").more_needed, 259);
    }

    #[test]
    fn estimate_follows_loadgens_walk() {
        // t from LoadGen's loop run with SciPy's betainc: (n, p) -> t; the estimate of
        // samples 1..=n is the t-th largest, n - t + 1.
        for (n, p, t) in [
            (1000_u64, 0.99, 2_u64),
            (5000, 0.99, 33),
            (662, 0.99, 1),
            (200, 0.9, 10),
            (64, 0.9, 1),
            (10000, 0.999, 2),
        ] {
            let v: Vec<f64> = (1..=n).map(|x| x as f64).collect();
            assert_eq!(estimate(&v, p), Ok((n - t + 1) as f64), "n={n} p={p}");
        }
        let v: Vec<f64> = (1..=661).map(f64::from).collect();
        assert_eq!(estimate(&v, 0.99), Err(662));
    }

    #[test]
    fn loadgen_percentile_is_the_rank_floor_n_p() {
        let v: Vec<f64> = (0..100).map(f64::from).collect();
        assert_eq!(loadgen_percentile(&v, 0.99), Some(99.0));
        assert_eq!(loadgen_percentile(&v, 0.5), Some(50.0));
        assert_eq!(loadgen_percentile(&[], 0.5), None);
    }
}
