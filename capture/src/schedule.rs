//! When requests are meant to be sent (open loop), independent of how they are sent.
//!
//! An [`Arrivals`] generator yields intended send offsets in ns since the run start. It is a
//! pure function of (rate, process, seed), so schedules are reproducible and testable on a
//! virtual clock. Closed loop (`--concurrency`) has no arrival process: a request is due the
//! moment a worker is free, which the dispatcher handles.

use rand::rngs::StdRng;
use rand::SeedableRng;
use rand_distr::{Distribution, Exp, Gamma};

/// The inter-arrival process of an open-loop schedule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Arrival {
    /// Evenly spaced at 1/rate.
    Constant,
    /// Exponential gaps (Poisson process) with mean 1/rate.
    Poisson,
    /// Gamma gaps with shape `k` and mean 1/rate: coefficient of variation 1/sqrt(k), so
    /// k < 1 is burstier than Poisson and k > 1 smoother (vLLM's `--burstiness`).
    Gamma {
        /// Shape parameter k > 0.
        shape: f64,
    },
}

impl Arrival {
    /// The process as the manifest records it (the shape goes to `burstiness`).
    pub fn kind(&self) -> recap_schemas::Arrival {
        match self {
            Arrival::Constant => recap_schemas::Arrival::Constant,
            Arrival::Poisson => recap_schemas::Arrival::Poisson,
            Arrival::Gamma { .. } => recap_schemas::Arrival::Gamma,
        }
    }
}

/// Errors building a schedule from checked-looking but invalid numbers.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    /// Rate must be positive and finite (use burst mode for `inf`).
    #[error("--rate must be a positive number of requests per second, got {0}")]
    Rate(f64),
    /// Gamma shape must be positive and finite.
    #[error("--burstiness must be a positive number, got {0}")]
    Shape(f64),
}

enum Gaps {
    Constant(f64),
    Exp(Exp<f64>),
    Gamma(Gamma<f64>),
}

/// Iterator of intended send offsets (ns since start), non-decreasing, starting near 0.
pub struct Arrivals {
    gaps: Gaps,
    rng: StdRng,
    next_s: f64,
    first: bool,
}

impl Arrivals {
    /// An arrival process at `rate_per_s` requests/s with the given process and seed.
    pub fn new(rate_per_s: f64, arrival: Arrival, seed: u64) -> Result<Self, ScheduleError> {
        if !(rate_per_s.is_finite() && rate_per_s > 0.0) {
            return Err(ScheduleError::Rate(rate_per_s));
        }
        let mean = 1.0 / rate_per_s;
        let gaps = match arrival {
            Arrival::Constant => Gaps::Constant(mean),
            Arrival::Poisson => Gaps::Exp(Exp::new(rate_per_s).map_err(|_| ScheduleError::Rate(rate_per_s))?),
            Arrival::Gamma { shape } => {
                if !(shape.is_finite() && shape > 0.0) {
                    return Err(ScheduleError::Shape(shape));
                }
                Gaps::Gamma(Gamma::new(shape, mean / shape).map_err(|_| ScheduleError::Shape(shape))?)
            }
        };
        Ok(Arrivals {
            gaps,
            rng: StdRng::seed_from_u64(seed),
            next_s: 0.0,
            first: true,
        })
    }
}

impl Iterator for Arrivals {
    type Item = i64;

    fn next(&mut self) -> Option<i64> {
        // The first request goes at t = 0; each later one after a drawn gap.
        if self.first {
            self.first = false;
        } else {
            let gap = match &self.gaps {
                Gaps::Constant(g) => *g,
                Gaps::Exp(d) => d.sample(&mut self.rng),
                Gaps::Gamma(d) => d.sample(&mut self.rng),
            };
            self.next_s += gap;
        }
        Some((self.next_s * 1e9).round() as i64)
    }
}

/// `offsets` of a constant-rate process warped so the rate grows linearly from 0 to its
/// full value over `ramp_ns`, then stays: an offset `u` of the base process maps to
/// `sqrt(2 T u)` while `u < T/2`, and to `u + T/2` after (the expected count by time `t`
/// is then `R t^2 / 2T` during the ramp, as a linear rate gives).
pub fn ramped(offsets: impl Iterator<Item = i64>, ramp_ns: i64) -> impl Iterator<Item = i64> {
    let t = ramp_ns.max(0) as f64;
    offsets.map(move |u| {
        let u = u as f64;
        let at = if u < t / 2.0 { (2.0 * t * u).sqrt() } else { u + t / 2.0 };
        at.round() as i64
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ramp_grows_the_rate_linearly_then_holds_it() {
        // 1,000 req/s constant, ramped over 1 s: 500 requests by 1 s, a quarter of them in
        // the first half; then 1,000 per second again.
        let base = Arrivals::new(1000.0, Arrival::Constant, 0).expect("valid");
        let t: Vec<i64> = ramped(base, 1_000_000_000).take(1501).collect();
        let by = |s: f64| t.iter().filter(|x| (**x as f64) < s * 1e9).count();
        assert!((by(0.5) as i64 - 125).abs() <= 2, "{}", by(0.5));
        assert!((by(1.0) as i64 - 500).abs() <= 2, "{}", by(1.0));
        assert!((by(1.5) as i64 - 1000).abs() <= 2, "{}", by(1.5));
        assert!(t.windows(2).all(|w| w[0] <= w[1]), "non-decreasing");
        let flat: Vec<i64> = ramped(Arrivals::new(10.0, Arrival::Constant, 0).expect("v"), 0)
            .take(3)
            .collect();
        assert_eq!(flat, [0, 100_000_000, 200_000_000], "no ramp, no change");
    }

    fn gaps(a: Arrival, rate: f64, n: usize, seed: u64) -> Vec<f64> {
        let t: Vec<i64> = Arrivals::new(rate, a, seed).expect("valid").take(n + 1).collect();
        t.windows(2).map(|w| (w[1] - w[0]) as f64 / 1e9).collect()
    }

    fn mean_cv(g: &[f64]) -> (f64, f64) {
        let n = g.len() as f64;
        let m = g.iter().sum::<f64>() / n;
        let var = g.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0);
        (m, var.sqrt() / m)
    }

    #[test]
    fn constant_is_exact() {
        let t: Vec<i64> = Arrivals::new(4.0, Arrival::Constant, 0)
            .expect("valid")
            .take(5)
            .collect();
        assert_eq!(t, [0, 250_000_000, 500_000_000, 750_000_000, 1_000_000_000]);
    }

    #[test]
    fn poisson_hits_rate_with_unit_cv() {
        let (m, cv) = mean_cv(&gaps(Arrival::Poisson, 100.0, 200_000, 7));
        assert!((m * 100.0 - 1.0).abs() < 0.01, "mean gap {m}");
        assert!((cv - 1.0).abs() < 0.01, "cv {cv}");
    }

    #[test]
    fn gamma_shape_sets_cv() {
        for k in [0.25, 0.5, 1.0, 4.0] {
            let (m, cv) = mean_cv(&gaps(Arrival::Gamma { shape: k }, 50.0, 200_000, 11));
            assert!((m * 50.0 - 1.0).abs() < 0.02, "k={k} mean gap {m}");
            let want = 1.0 / f64::sqrt(k);
            assert!((cv / want - 1.0).abs() < 0.03, "k={k} cv {cv} want {want}");
        }
    }

    #[test]
    fn seeded_and_non_decreasing() {
        let a: Vec<i64> = Arrivals::new(1000.0, Arrival::Gamma { shape: 0.3 }, 42)
            .expect("valid")
            .take(10_000)
            .collect();
        let b: Vec<i64> = Arrivals::new(1000.0, Arrival::Gamma { shape: 0.3 }, 42)
            .expect("valid")
            .take(10_000)
            .collect();
        assert_eq!(a, b);
        assert!(a.windows(2).all(|w| w[0] <= w[1]));
        let c: Vec<i64> = Arrivals::new(1000.0, Arrival::Gamma { shape: 0.3 }, 43)
            .expect("valid")
            .take(10_000)
            .collect();
        assert_ne!(a, c);
    }

    #[test]
    fn rejects_bad_numbers() {
        assert!(Arrivals::new(0.0, Arrival::Poisson, 0).is_err());
        assert!(Arrivals::new(f64::NAN, Arrival::Constant, 0).is_err());
        assert!(Arrivals::new(1.0, Arrival::Gamma { shape: 0.0 }, 0).is_err());
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(24))]
            #[test]
            fn any_schedule_is_non_decreasing_and_hits_its_rate(
                rate in 1.0f64..20_000.0,
                kind in 0u8..3,
                shape in 0.3f64..5.0,
                seed in any::<u64>(),
            ) {
                let arrival = match kind {
                    0 => Arrival::Constant,
                    1 => Arrival::Poisson,
                    _ => Arrival::Gamma { shape },
                };
                let n = 20_000;
                let t: Vec<i64> = Arrivals::new(rate, arrival, seed).expect("valid").take(n + 1).collect();
                prop_assert!(t.windows(2).all(|w| w[0] <= w[1]));
                let achieved = n as f64 / (t[n] as f64 / 1e9);
                // CV of a gamma(k) gap is 1/sqrt(k) (<= 1.83 here): the mean of 20k gaps is within
                // 5 % of 1/rate with overwhelming probability; rounding to ns adds < 0.1 %.
                prop_assert!((achieved / rate - 1.0).abs() < 0.05, "rate {} achieved {}", rate, achieved);
            }
        }
    }
}
