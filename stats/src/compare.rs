//! Is a difference between two samples real? A rank test for the whole distribution and a
//! bootstrap interval for the difference of one percentile, the two numbers `analyze compare`
//! prints for every metric.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use statrs::distribution::{ContinuousCDF, Normal};

use crate::percentile::percentile_select;

/// The Mann-Whitney U test of two independent samples (Wilcoxon rank-sum).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MannWhitney {
    /// U of the first sample: the number of pairs (a, b) with a > b, ties counting one half.
    pub u: f64,
    /// Two-sided p-value: the chance of a U at least this far from n1 n2 / 2 if both samples
    /// came from one distribution.
    pub p: f64,
}

/// The Mann-Whitney U test of `a` against `b`, two-sided, by the normal approximation with
/// the tie correction and the continuity correction: what
/// `scipy.stats.mannwhitneyu(a, b, method="asymptotic")` computes. `None` when a sample is
/// empty or every value is tied.
pub fn mann_whitney(a: &[f64], b: &[f64]) -> Option<MannWhitney> {
    let (n1, n2) = (a.len(), b.len());
    if n1 == 0 || n2 == 0 {
        return None;
    }
    let mut all: Vec<(f64, bool)> = a
        .iter()
        .map(|x| (*x, true))
        .chain(b.iter().map(|x| (*x, false)))
        .collect();
    all.sort_by(|x, y| x.0.total_cmp(&y.0));
    let n = all.len();
    // Ranks 1..=n, ties sharing their mean rank; Σ(t³ - t) over tie groups.
    let (mut rank_sum_a, mut ties) = (0.0, 0.0);
    let mut i = 0;
    while i < n {
        let mut j = i;
        while j + 1 < n && all[j + 1].0 == all[i].0 {
            j += 1;
        }
        let mean_rank = (i + j) as f64 / 2.0 + 1.0;
        let t = (j - i + 1) as f64;
        ties += t * t * t - t;
        rank_sum_a += mean_rank * all[i..=j].iter().filter(|x| x.1).count() as f64;
        i = j + 1;
    }
    let (n1f, n2f, nf) = (n1 as f64, n2 as f64, n as f64);
    let u1 = rank_sum_a - n1f * (n1f + 1.0) / 2.0;
    let mu = n1f * n2f / 2.0;
    let var = n1f * n2f / 12.0 * ((nf + 1.0) - ties / (nf * (nf - 1.0)));
    if var <= 0.0 {
        return None;
    }
    let u = u1.max(n1f * n2f - u1);
    let z = (u - mu - 0.5) / var.sqrt();
    let normal = Normal::standard();
    let p = (2.0 * normal.sf(z)).min(1.0);
    Some(MannWhitney { u: u1, p })
}

/// A difference between two samples' percentiles with its bootstrap interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shift {
    /// Percentile of `b` minus percentile of `a`.
    pub difference: f64,
    /// Lower bound of the interval of the difference.
    pub low: f64,
    /// Upper bound.
    pub high: f64,
}

/// The difference `percentile(b, p) - percentile(a, p)` (linear percentiles, as in
/// summaries) with a percentile-bootstrap interval at `confidence`: each sample resampled
/// with replacement `resamples` times (from `seed`, so a report is reproducible), the
/// difference recomputed each time, and the interval the `(1 ± confidence)/2` percentiles of
/// those differences. `None` when a sample is empty.
pub fn bootstrap_shift(a: &[f64], b: &[f64], p: f64, confidence: f64, resamples: usize, seed: u64) -> Option<Shift> {
    if a.is_empty() || b.is_empty() || resamples == 0 {
        return None;
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut ra, mut rb) = (a.to_vec(), b.to_vec());
    let difference = percentile_select(&mut rb, p)? - percentile_select(&mut ra, p)?;
    let mut diffs = Vec::with_capacity(resamples);
    for _ in 0..resamples {
        for x in ra.iter_mut() {
            *x = a[rng.random_range(0..a.len())];
        }
        for x in rb.iter_mut() {
            *x = b[rng.random_range(0..b.len())];
        }
        diffs.push(percentile_select(&mut rb, p)? - percentile_select(&mut ra, p)?);
    }
    diffs.sort_by(f64::total_cmp);
    let tail = (1.0 - confidence) / 2.0 * 100.0;
    Some(Shift {
        difference,
        low: crate::percentile_sorted(&diffs, tail)?,
        high: crate::percentile_sorted(&diffs, 100.0 - tail)?,
    })
}

/// A percentile-bootstrap interval of the mean of `values` at `confidence`: `resamples`
/// resamples with replacement (from `seed`), the `(1 ± confidence)/2` percentiles of their
/// means. `None` when `values` is empty.
pub fn bootstrap_mean(values: &[f64], confidence: f64, resamples: usize, seed: u64) -> Option<[f64; 2]> {
    if values.is_empty() || resamples == 0 {
        return None;
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let n = values.len();
    let mut means: Vec<f64> = (0..resamples)
        .map(|_| (0..n).map(|_| values[rng.random_range(0..n)]).sum::<f64>() / n as f64)
        .collect();
    means.sort_by(f64::total_cmp);
    let tail = (1.0 - confidence) / 2.0 * 100.0;
    Some([
        crate::percentile_sorted(&means, tail)?,
        crate::percentile_sorted(&means, 100.0 - tail)?,
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mann_whitney_by_hand() {
        // a = [1, 2], b = [3, 4]: U1 = 0 (no a above any b), U = 4, mu = 2,
        // var = 2·2/12 · 5 = 5/3, z = (4 - 2 - 0.5)/sqrt(5/3) = 1.1619, p = 2·sf(z) = 0.2453.
        let m = mann_whitney(&[1.0, 2.0], &[3.0, 4.0]).expect("test");
        assert_eq!(m.u, 0.0);
        assert!((m.p - 0.245_278_2).abs() < 1e-6, "{}", m.p);
        // Ties share their mean rank: a = [1, 2, 2], b = [2, 3]. Ranks 1, 3, 3, 3, 5:
        // R1 = 7, U1 = 7 - 6 = 1; a pair count gives the same: (2 vs 2) twice half = 1.
        let m = mann_whitney(&[1.0, 2.0, 2.0], &[2.0, 3.0]).expect("ties");
        assert_eq!(m.u, 1.0);
        // Larger samples with ties; expected values from SciPy 1.17.1:
        // mannwhitneyu(a, b, method="asymptotic") -> (1711.0, 0.20629975264512934) and
        // (36450.0, 5.650896212204042e-05).
        let a: Vec<f64> = (0..60).map(|i| f64::from((i * 37) % 101)).collect();
        let b: Vec<f64> = (0..50).map(|i| f64::from(((i * 53) % 97) / 2 + 20)).collect();
        let m = mann_whitney(&a, &b).expect("scipy case");
        assert_eq!(m.u, 1711.0);
        assert!((m.p - 0.206_299_752_645_129_34).abs() < 1e-9, "{}", m.p);
        let a: Vec<f64> = (0..300).map(|x| f64::from(x) / 10.0).collect();
        let b: Vec<f64> = a.iter().map(|x| x + 3.0).collect();
        let m = mann_whitney(&a, &b).expect("shifted");
        assert_eq!(m.u, 36450.0);
        assert!((m.p / 5.650_896_212_204_042e-5 - 1.0).abs() < 1e-9, "{}", m.p);
        assert!(mann_whitney(&[], &[1.0]).is_none());
        assert!(mann_whitney(&[1.0, 1.0], &[1.0]).is_none(), "all tied: no test");
    }

    #[test]
    fn bootstrap_mean_by_hand() {
        // Constant values: every resample has the same mean.
        assert_eq!(bootstrap_mean(&[4.0; 20], 0.95, 500, 1), Some([4.0, 4.0]));
        // 0/1 values, half each: the mean's spread is about sqrt(0.25/n) = 0.079 (n = 40),
        // so a 95 % interval spans about ±1.96·0.079 = ±0.155 around 0.5.
        let v: Vec<f64> = (0..40).map(|i| f64::from(i % 2)).collect();
        let [lo, hi] = bootstrap_mean(&v, 0.95, 4000, 9).expect("interval");
        assert!((lo - 0.345).abs() < 0.04 && (hi - 0.655).abs() < 0.04, "{lo} {hi}");
        assert!(bootstrap_mean(&[], 0.95, 10, 0).is_none());
    }

    #[test]
    fn a_known_shift_is_inside_its_interval_and_none_is_found_where_there_is_none() {
        let a: Vec<f64> = (0..400).map(|i| f64::from((i * 37) % 400)).collect();
        let b: Vec<f64> = a.iter().map(|x| x + 50.0).collect();
        let s = bootstrap_shift(&a, &b, 50.0, 0.95, 2000, 7).expect("shift");
        assert!((s.difference - 50.0).abs() < 1e-9, "{s:?}");
        assert!(s.low < 50.0 && 50.0 < s.high && s.low > 0.0, "{s:?}");
        let same = bootstrap_shift(&a, &a, 50.0, 0.95, 2000, 7).expect("same");
        assert!(same.difference == 0.0 && same.low < 0.0 && same.high > 0.0, "{same:?}");
        // Seeded: the same interval every time.
        assert_eq!(
            bootstrap_shift(&a, &b, 99.0, 0.95, 500, 3),
            bootstrap_shift(&a, &b, 99.0, 0.95, 500, 3)
        );
    }
}
