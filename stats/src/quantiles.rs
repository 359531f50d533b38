//! Exact percentiles of more integer samples than memory holds, in a few passes.
//!
//! The first pass counts samples per bucket (order-preserving, about 0.2 % wide, ~30,000 of
//! them: a fixed ~700 KiB with each bucket's min and max) and sums them. Each wanted rank then
//! lies in a known value range with a known count. A range holding one value is resolved; one
//! holding at most [`COLLECT`] samples is kept whole in the next pass and sorted; a larger one
//! is split again into [`SPLIT`] equal sub-ranges. Each such pass narrows a range 65,536-fold,
//! so even a run of billions of distinct, tightly clustered samples needs a handful of passes,
//! and memory never holds more than [`COLLECT`] samples per wanted rank.
//!
//! The result is the one [`crate::distribution`] gives on the same samples (same ranks, same
//! interpolation); only `mean` and `std` may differ in the last bits of a float (they are
//! summed in another order).
//!
//! ```
//! let gaps = [5_i64, 1, 4, 2, 3];
//! let mut q = recap_stats::Quantiles::default();
//! loop {
//!     gaps.iter().for_each(|g| q.offer(*g));
//!     if q.end_pass() {
//!         break;
//!     }
//! }
//! let d = q.distribution(1.0);
//! assert_eq!((d.p50, d.count), (Some(3.0), 5));
//! ```

use recap_schemas::summary::Distribution;

/// Exact values below this are their own bucket in the first pass.
const LINEAR: u64 = 1024;
/// Mantissa bits kept above the leading bit (512 buckets per power of two).
const MANTISSA: u32 = 9;
/// First-pass buckets: one for all negative samples, [`LINEAR`] exact ones, then 512 per
/// power of two.
const BUCKETS: usize = 1 + LINEAR as usize + (64 - 10) * (1 << MANTISSA);
/// A range with at most this many samples is kept whole (sorted) in the next pass.
pub const COLLECT: u64 = 1 << 21;
/// A larger range is split into this many equal sub-ranges in the next pass.
pub const SPLIT: usize = 1 << 16;

/// The first-pass bucket of `x`; larger samples never fall in a smaller bucket.
fn bucket(x: i64) -> usize {
    if x < 0 {
        return 0;
    }
    let u = x as u64;
    if u < LINEAR {
        return 1 + u as usize;
    }
    let top = 63 - u.leading_zeros(); // >= 10
    let mantissa = (u >> (top - MANTISSA)) & ((1 << MANTISSA) - 1);
    1 + LINEAR as usize + ((top - 10) as usize) * (1 << MANTISSA) + mantissa as usize
}

/// Counts, minima and maxima of the samples in each of a set of consecutive ranges.
#[derive(Debug, Clone)]
struct Histogram {
    count: Vec<u64>,
    min: Vec<i64>,
    max: Vec<i64>,
}

impl Histogram {
    fn new(n: usize) -> Self {
        Histogram {
            count: vec![0; n],
            min: vec![i64::MAX; n],
            max: vec![i64::MIN; n],
        }
    }

    fn add(&mut self, b: usize, x: i64) {
        self.count[b] += 1;
        self.min[b] = self.min[b].min(x);
        self.max[b] = self.max[b].max(x);
    }

    /// The range holding rank `r` of the samples counted, given `before` samples below them:
    /// `(lo, hi, samples below lo, samples in [lo, hi])`.
    fn locate(&self, r: u64, mut before: u64) -> Option<(i64, i64, u64, u64)> {
        for b in 0..self.count.len() {
            let c = self.count[b];
            if before + c > r {
                return Some((self.min[b], self.max[b], before, c));
            }
            before += c;
        }
        None
    }
}

/// Where one wanted rank is known to lie.
#[derive(Debug, Clone)]
enum Target {
    /// Its value.
    Found(i64),
    /// Samples in `[lo, hi]`, `before` of all samples below `lo`, `count` inside.
    Within { lo: i64, hi: i64, before: u64, count: u64 },
}

/// What the current pass does with the samples of one range.
#[derive(Debug)]
enum Work {
    /// Keeps them.
    Collect(Vec<i64>),
    /// Counts them in [`SPLIT`] sub-ranges of `width` from `lo`.
    Split { width: u64, hist: Histogram },
}

/// Exact order statistics over repeated passes on the same samples ([`crate::quantiles`]).
#[derive(Debug)]
pub struct Quantiles {
    first: Option<Histogram>,
    n: u64,
    sum: i128,
    mean: f64,
    m2: f64,
    /// The ranks wanted (ascending) and where each is known to be.
    ranks: Vec<(u64, Target)>,
    /// This pass's work, one per distinct open range: `(lo, hi, work)`.
    work: Vec<(i64, i64, Work)>,
    /// Whether the samples offered disagreed with the counts of an earlier pass.
    inconsistent: bool,
}

impl Default for Quantiles {
    fn default() -> Self {
        Quantiles {
            first: Some(Histogram::new(BUCKETS)),
            n: 0,
            sum: 0,
            mean: 0.0,
            m2: 0.0,
            ranks: Vec::new(),
            work: Vec::new(),
            inconsistent: false,
        }
    }
}

impl Quantiles {
    /// Offers one sample of the current pass.
    pub fn offer(&mut self, x: i64) {
        if let Some(h) = &mut self.first {
            h.add(bucket(x), x);
            self.n += 1;
            self.sum += i128::from(x);
            // Welford: stable for samples far from zero.
            let d = x as f64 - self.mean;
            self.mean += d / self.n as f64;
            self.m2 += d * (x as f64 - self.mean);
            return;
        }
        for (lo, hi, work) in &mut self.work {
            if x < *lo || x > *hi {
                continue;
            }
            match work {
                Work::Collect(v) => v.push(x),
                Work::Split { width, hist } => {
                    let b = ((x as i128 - *lo as i128) as u128 / u128::from(*width)) as usize;
                    hist.add(b.min(SPLIT - 1), x);
                }
            }
        }
    }

    /// Ends a pass; `true` when every wanted rank is known (else offer the same samples again).
    pub fn end_pass(&mut self) -> bool {
        if let Some(h) = self.first.take() {
            if self.n == 0 {
                return true;
            }
            self.ranks = crate::percentile::wanted_ranks(self.n as usize)
                .into_iter()
                .map(|r| {
                    let r = r as u64;
                    let t = h
                        .locate(r, 0)
                        .map_or(Target::Found(0), |(lo, hi, before, count)| Target::Within {
                            lo,
                            hi,
                            before,
                            count,
                        });
                    (r, t)
                })
                .collect();
        } else {
            let work = std::mem::take(&mut self.work);
            for (r, t) in &mut self.ranks {
                let Target::Within { lo, hi, before, count } = *t else {
                    continue;
                };
                let Some((_, _, w)) = work.iter().find(|(l, h, _)| *l == lo && *h == hi) else {
                    continue;
                };
                *t = match w {
                    Work::Collect(v) if v.len() as u64 == count => {
                        let mut v = v.clone();
                        v.sort_unstable();
                        Target::Found(v[(*r - before) as usize])
                    }
                    Work::Split { hist, .. } if hist.count.iter().sum::<u64>() == count => {
                        match hist.locate(*r, before) {
                            Some((lo, hi, before, count)) => Target::Within { lo, hi, before, count },
                            None => {
                                self.inconsistent = true;
                                Target::Found(0)
                            }
                        }
                    }
                    _ => {
                        self.inconsistent = true;
                        Target::Found(0)
                    }
                };
            }
        }
        // Resolve single-value ranges; plan the next pass for the others.
        for (_, t) in &mut self.ranks {
            if let Target::Within { lo, hi, .. } = *t {
                if lo == hi {
                    *t = Target::Found(lo);
                }
            }
        }
        for (_, t) in &self.ranks {
            let Target::Within { lo, hi, count, .. } = *t else {
                continue;
            };
            if self.work.iter().any(|(l, h, _)| *l == lo && *h == hi) {
                continue;
            }
            let work = if count <= COLLECT {
                Work::Collect(Vec::with_capacity(count as usize))
            } else {
                let span = (hi as i128 - lo as i128 + 1) as u128;
                Work::Split {
                    width: span.div_ceil(SPLIT as u128).max(1) as u64,
                    hist: Histogram::new(SPLIT),
                }
            };
            self.work.push((lo, hi, work));
        }
        self.work.is_empty()
    }

    /// The distribution of the samples, each divided by `scale` (1e6: nanoseconds to ms), once
    /// [`Quantiles::end_pass`] said every rank is known. Samples that differed between passes
    /// give `None` percentiles rather than wrong numbers.
    pub fn distribution(&self, scale: f64) -> Distribution {
        if self.n == 0 {
            return Distribution::default();
        }
        let value = |rank: usize| -> Option<f64> {
            match self.ranks.iter().find(|(r, _)| *r == rank as u64) {
                Some((_, Target::Found(v))) if !self.inconsistent && self.work.is_empty() => Some(*v as f64 / scale),
                _ => None,
            }
        };
        crate::percentile::describe(
            self.n as usize,
            self.sum as f64 / self.n as f64 / scale,
            (self.m2 / self.n as f64).max(0.0).sqrt() / scale,
            value,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The distribution over as many passes as it takes, and how many passes that was.
    fn passes(samples: &[i64]) -> (Distribution, usize) {
        let mut q = Quantiles::default();
        for pass in 1.. {
            // Another order each pass: passes must not depend on it.
            if pass % 2 == 0 {
                samples.iter().rev().for_each(|x| q.offer(*x));
            } else {
                samples.iter().for_each(|x| q.offer(*x));
            }
            if q.end_pass() {
                return (q.distribution(1e6), pass);
            }
            assert!(pass < 10, "too many passes");
        }
        unreachable!()
    }

    fn assert_same(samples: &[i64]) -> usize {
        let (got, n) = passes(samples);
        let want = crate::distribution(samples.iter().map(|x| *x as f64 / 1e6));
        assert_eq!(got.count, want.count);
        for (g, w) in [
            (got.min, want.min),
            (got.max, want.max),
            (got.p50, want.p50),
            (got.p90, want.p90),
            (got.p95, want.p95),
            (got.p99, want.p99),
            (got.p99_9, want.p99_9),
        ] {
            assert_eq!(g, w);
        }
        for (g, w) in [(got.mean, want.mean), (got.std, want.std)] {
            let (g, w) = (g.unwrap_or(f64::NAN), w.unwrap_or(f64::NAN));
            assert!((g - w).abs() <= 1e-9 * w.abs().max(1.0), "{g} vs {w}");
        }
        n
    }

    #[test]
    fn buckets_keep_order() {
        let mut last = 0;
        for x in (-5..5000).chain((13..62).map(|e| 1_i64 << e)).chain([i64::MAX]) {
            let b = bucket(x);
            assert!(b >= last, "{x}");
            last = b;
        }
        assert!(bucket(i64::MAX) < BUCKETS);
    }

    #[test]
    fn equals_the_in_memory_distribution() {
        // Inter-chunk gaps in ns: spread, clustered, repeated, negative, huge.
        let spread: Vec<i64> = (0..20_011_i64).map(|i| (i * 7919) % 20_011 * 1_337 + 3).collect();
        assert_eq!(assert_same(&spread), 2, "small buckets are kept in the second pass");
        let clustered: Vec<i64> = (0..50_000_i64).map(|i| 10_000_000 + (i * 104_729) % 9_973).collect();
        assert_same(&clustered);
        assert_eq!(assert_same(&[7; 1000]), 1, "one value per range needs no second pass");
        assert_same(&[-3, 5, -1, 1 << 40, 0, 2, i64::MIN, i64::MAX]);
        assert_same(&[42]);
        assert_eq!(passes(&[]).0, Distribution::default());
    }

    #[test]
    fn more_samples_in_one_range_than_memory_keeps_are_split_again() {
        // 3M distinct values in one first-pass bucket (2^32 ns, 8.4 ms wide): more than
        // COLLECT, so the range is split, then its sub-ranges are kept.
        let n = 3 * COLLECT as i64 / 2;
        let dense: Vec<i64> = (0..n).map(|i| (1_i64 << 32) + (i * 7_919) % n).collect();
        assert_eq!(assert_same(&dense), 3);
        // Many zeros (a prerendered stream's gaps) and a few others: the ranges holding the
        // wanted ranks each hold one value, so the first pass finds them and keeps nothing.
        let mut zeros = vec![0_i64; 3 * COLLECT as usize];
        zeros.extend([5_000, 12_000_000]);
        assert_eq!(assert_same(&zeros), 1);
    }

    #[test]
    fn other_samples_in_a_later_pass_give_no_percentiles() {
        let mut q = Quantiles::default();
        // Three values in one first-pass bucket: the second pass keeps them, and sees two.
        [10_000_i64, 10_001, 10_002].iter().for_each(|x| q.offer(*x));
        assert!(!q.end_pass());
        [10_000_i64, 10_001].iter().for_each(|x| q.offer(*x));
        q.end_pass();
        let d = q.distribution(1.0);
        assert_eq!((d.count, d.p50), (3, None));
    }
}
