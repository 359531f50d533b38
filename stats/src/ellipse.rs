//! Confidence statistics across repeated runs: t-based intervals and the covariance ellipse.
//!
//! For n repeated runs of one configuration with sample means (x̄, ȳ) and sample covariance S
//! (n - 1 denominator), the confidence region of the true mean is the ellipse
//! `(μ - m)ᵀ S⁻¹ (μ - m) ≤ r²` with Hotelling's `r² = 2 (n - 1) / (n (n - 2)) · F⁻¹(c; 2, n - 2)`
//! for n ≥ 3. For n = 2 the large-sample `r² = χ²₂⁻¹(c) / n` is used instead (F is undefined).
//! Its semi-axes are `r·sqrt(λ)` for the eigenvalues λ of S, the angle that of the major axis.
//!
//! The *spread* ([`spread`]) is the prediction region of one more run: the same shape with
//! `r² = 2 (n + 1)(n - 1) / (n (n - 2)) · F⁻¹(c; 2, n - 2)` (n ≥ 3). The region of the mean
//! shrinks like 1/√n as runs are added; the spread does not.

pub use recap_schemas::sweep::{Ellipse, Interval};
use statrs::distribution::{ContinuousCDF, FisherSnedecor, StudentsT};

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

/// The mean and t-based `confidence` interval of `v` (None if empty).
pub fn interval(v: &[f64], confidence: f64) -> Option<Interval> {
    let n = v.len();
    if n == 0 {
        return None;
    }
    let m = mean(v);
    if n == 1 {
        return Some(Interval {
            mean: m,
            std: 0.0,
            low: m,
            high: m,
        });
    }
    let s = (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt();
    let t = StudentsT::new(0.0, 1.0, (n - 1) as f64)
        .ok()?
        .inverse_cdf(0.5 + confidence / 2.0);
    let h = t * s / (n as f64).sqrt();
    Some(Interval {
        mean: m,
        std: s,
        low: m - h,
        high: m + h,
    })
}

/// The confidence ellipse of the mean of paired samples (None for fewer than two).
pub fn ellipse(x: &[f64], y: &[f64], confidence: f64) -> Option<Ellipse> {
    region(x, y, confidence, Region::Mean)
}

/// The prediction ellipse of one more run (None for fewer than three).
pub fn spread(x: &[f64], y: &[f64], confidence: f64) -> Option<Ellipse> {
    region(x, y, confidence, Region::Spread)
}

/// Which region [`region`] draws.
#[derive(Clone, Copy, PartialEq)]
enum Region {
    Mean,
    Spread,
}

fn region(x: &[f64], y: &[f64], confidence: f64, what: Region) -> Option<Ellipse> {
    let n = x.len();
    let least = if what == Region::Spread { 3 } else { 2 };
    if n < least || y.len() != n {
        return None;
    }
    let (mx, my) = (mean(x), mean(y));
    let d = (n - 1) as f64;
    let sxx = x.iter().map(|a| (a - mx).powi(2)).sum::<f64>() / d;
    let syy = y.iter().map(|b| (b - my).powi(2)).sum::<f64>() / d;
    let sxy = x.iter().zip(y).map(|(a, b)| (a - mx) * (b - my)).sum::<f64>() / d;
    let nf = n as f64;
    let r2 = if n >= 3 {
        let f = FisherSnedecor::new(2.0, nf - 2.0).ok()?.inverse_cdf(confidence);
        let spread = if what == Region::Spread { nf + 1.0 } else { 1.0 };
        2.0 * spread * (nf - 1.0) / (nf * (nf - 2.0)) * f
    } else {
        // chi-square with 2 degrees of freedom: quantile = -2 ln(1 - c).
        -2.0 * (1.0 - confidence).ln() / nf
    };
    let (l1, l2, angle) = eigen_2x2(sxx, sxy, syy);
    Some(Ellipse {
        center_x: mx,
        center_y: my,
        semi_major: (r2 * l1).sqrt(),
        semi_minor: (r2 * l2.max(0.0)).sqrt(),
        angle_rad: angle,
        cov_xx: sxx,
        cov_xy: sxy,
        cov_yy: syy,
        confidence,
    })
}

/// Runs needed in all for the t-based `confidence` interval of a mean to have a half-width of
/// at most `half_width`, for runs with sample standard deviation `std`: the smallest n ≥ 2
/// with t(1/2 + c/2; n - 1) · std / √n ≤ half_width (searched up to 100,000; None beyond, or
/// for a zero width).
pub fn repeats_needed(std: f64, half_width: f64, confidence: f64) -> Option<u64> {
    if half_width.is_nan() || half_width <= 0.0 || !std.is_finite() {
        return None;
    }
    if std == 0.0 {
        return Some(2);
    }
    let fits = |n: u64| {
        StudentsT::new(0.0, 1.0, (n - 1) as f64)
            .map(|t| t.inverse_cdf(0.5 + confidence / 2.0) * std / (n as f64).sqrt() <= half_width)
            .unwrap_or(false)
    };
    // The half-width falls with n: double to a bound, then bisect.
    let mut hi = 2;
    while !fits(hi) {
        hi *= 2;
        if hi > 100_000 {
            return None;
        }
    }
    let mut lo = hi / 2;
    if lo < 2 {
        return Some(hi);
    }
    while hi - lo > 1 {
        let mid = (lo + hi) / 2;
        if fits(mid) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    Some(hi)
}

/// `outline` (a closed polygon, like [`Ellipse::outline`]) cut to x ≥ 0 and y ≥ 0, where
/// rates and latencies live (Sutherland-Hodgman against each half-plane); empty when none of
/// it is there.
pub fn clip_to_quadrant(outline: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let cut = |pts: Vec<(f64, f64)>, coord: fn(&(f64, f64)) -> f64| -> Vec<(f64, f64)> {
        let mut out = Vec::with_capacity(pts.len() + 2);
        for (i, cur) in pts.iter().enumerate() {
            let prev = pts[(i + pts.len() - 1) % pts.len()];
            let (a, b) = (coord(&prev), coord(cur));
            if (a >= 0.0) != (b >= 0.0) {
                // Where the edge crosses the axis.
                let t = a / (a - b);
                out.push((prev.0 + t * (cur.0 - prev.0), prev.1 + t * (cur.1 - prev.1)));
            }
            if b >= 0.0 {
                out.push(*cur);
            }
        }
        out
    };
    // Work on the open polygon (without the repeated first point), then close it again.
    let mut pts: Vec<(f64, f64)> = outline.to_vec();
    if pts.len() > 1 && pts.first() == pts.last() {
        pts.pop();
    }
    let mut pts = cut(cut(pts, |p| p.0), |p| p.1);
    if let Some(first) = pts.first().copied() {
        pts.push(first);
    }
    pts
}

/// Eigenvalues (major, minor) of the symmetric [[a, b], [b, c]] and the major axis angle.
pub fn eigen_2x2(a: f64, b: f64, c: f64) -> (f64, f64, f64) {
    let mid = (a + c) / 2.0;
    let rad = (((a - c) / 2.0).powi(2) + b * b).sqrt();
    let angle = if b == 0.0 && a >= c {
        0.0
    } else if b == 0.0 {
        std::f64::consts::FRAC_PI_2
    } else {
        0.5 * (2.0 * b).atan2(a - c)
    };
    (mid + rad, mid - rad, angle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn near(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn t_interval_by_hand() {
        // n = 4, mean 2.5, s = 1.2909944, t(0.975, 3) = 3.1824463 -> half width 2.0541
        let i = interval(&[1.0, 2.0, 3.0, 4.0], 0.95).expect("interval");
        assert!(near(i.mean, 2.5, 1e-12));
        assert!(near(i.std, 1.290_994_448_7, 1e-9));
        assert!(
            near(i.high - i.mean, 3.182_446_305_3 * 1.290_994_448_7 / 2.0, 1e-6),
            "{i:?}"
        );
        assert_eq!(interval(&[5.0], 0.95).map(|i| (i.low, i.high)), Some((5.0, 5.0)));
    }

    #[test]
    fn axis_aligned_and_rotated_ellipses() {
        // Independent axes with variance 4 (x) and 1 (y): angle 0, semi-axes ratio 2.
        let x = [-2.0, 2.0, -2.0, 2.0];
        let y = [-1.0, -1.0, 1.0, 1.0];
        let e = ellipse(&x, &y, 0.95).expect("ellipse");
        assert!(near(e.angle_rad, 0.0, 1e-12));
        assert!(near(e.cov_xy, 0.0, 1e-12));
        assert!(near(e.semi_major / e.semi_minor, 2.0, 1e-9));
        // r² = 2·3/(4·2)·F(0.95; 2, 2) = 0.75 · 19 = 14.25; λ_major = var x = 16/3.
        assert!(near(e.semi_major, (14.25f64 * 16.0 / 3.0).sqrt(), 1e-6), "{e:?}");
        // Perfectly correlated along y = x: major axis at 45°, minor axis 0.
        let e = ellipse(&[1.0, 2.0, 3.0], &[1.0, 2.0, 3.0], 0.95).expect("ellipse");
        assert!(near(e.angle_rad, std::f64::consts::FRAC_PI_4, 1e-12));
        assert!(near(e.semi_minor, 0.0, 1e-9));
    }

    #[test]
    fn zero_variance_is_a_point_not_a_panic() {
        let e = ellipse(&[3.0, 3.0, 3.0], &[7.0, 7.0, 7.0], 0.9).expect("ellipse");
        assert_eq!(
            (e.center_x, e.center_y, e.semi_major, e.semi_minor),
            (3.0, 7.0, 0.0, 0.0)
        );
        assert!(e.angle_rad.is_finite());
        assert!(ellipse(&[1.0], &[1.0], 0.9).is_none());
        let pts = e.outline(8);
        assert_eq!(pts.len(), 9);
        assert!(pts.iter().all(|p| *p == (3.0, 7.0)));
    }

    #[test]
    fn the_spread_of_single_runs_is_sqrt_n_plus_1_times_the_mean_region() {
        // Same shape; r² larger by n + 1 (n = 4: semi-axes × √5). Two runs have no spread.
        let (x, y) = ([-2.0, 2.0, -2.0, 2.0], [-1.0, -1.0, 1.0, 1.0]);
        let (m, s) = (
            ellipse(&x, &y, 0.95).expect("mean"),
            spread(&x, &y, 0.95).expect("spread"),
        );
        assert!(near(s.semi_major, m.semi_major * 5f64.sqrt(), 1e-9), "{s:?}");
        assert!(near(s.semi_minor, m.semi_minor * 5f64.sqrt(), 1e-9));
        assert_eq!(s.angle_rad, m.angle_rad);
        assert!(spread(&[0.0, 1.0], &[0.0, 1.0], 0.95).is_none());
    }

    #[test]
    fn repeats_needed_from_a_t_table() {
        // Published t(0.975; df): 12.706 (1), 4.303 (2), 3.182 (3), 2.776 (4), 2.571 (5),
        // 2.447 (6), 2.365 (7), 2.306 (8), 2.262 (9), 2.228 (10). With std 1, the half-width
        // t/√n is 8.985 (n=2), 2.484 (3), 1.591 (4), 1.241 (5), 1.050 (6), 0.925 (7),
        // 0.836 (8), 0.769 (9), 0.715 (10), 0.672 (11).
        for (width, n) in [(9.0, 2), (2.5, 3), (1.6, 4), (1.0, 7), (0.8, 9), (0.7, 11)] {
            assert_eq!(repeats_needed(1.0, width, 0.95), Some(n), "half-width {width}");
        }
        // Large n: t → 1.96, so n ≈ (1.96 s / w)²: 1.96² · 10⁴ = 38,416 (+ a little).
        let n = repeats_needed(1.0, 0.01, 0.95).expect("n");
        assert!((38_416..38_500).contains(&n), "{n}");
        assert_eq!(repeats_needed(0.0, 0.1, 0.95), Some(2));
        assert_eq!(repeats_needed(1.0, 0.0, 0.95), None);
    }

    #[test]
    fn clipping_keeps_the_part_in_the_quadrant() {
        // The unit circle about the origin: the quarter disc, corner (0, 0) included.
        let circle = Ellipse {
            center_x: 0.0,
            center_y: 0.0,
            semi_major: 1.0,
            semi_minor: 1.0,
            angle_rad: 0.0,
            cov_xx: 0.0,
            cov_xy: 0.0,
            cov_yy: 0.0,
            confidence: 0.95,
        };
        let q = clip_to_quadrant(&circle.outline(64));
        assert!(q.iter().all(|p| p.0 >= -1e-12 && p.1 >= -1e-12), "{q:?}");
        assert!(
            q.iter().any(|p| p.0.abs() < 1e-12 && p.1.abs() < 1e-12),
            "corner: {q:?}"
        );
        assert!(q.iter().any(|p| near(p.0, 1.0, 1e-9)) && q.iter().any(|p| near(p.1, 1.0, 1e-9)));
        assert_eq!(q.first(), q.last());
        // Wholly inside: unchanged; wholly outside: empty.
        let inside = Ellipse {
            center_x: 5.0,
            center_y: 5.0,
            ..circle
        }
        .outline(16);
        assert_eq!(clip_to_quadrant(&inside), inside);
        assert!(clip_to_quadrant(
            &Ellipse {
                center_x: -5.0,
                ..circle
            }
            .outline(16)
        )
        .is_empty());
    }

    #[test]
    fn two_runs_use_the_large_sample_radius() {
        let e = ellipse(&[0.0, 2.0], &[0.0, 0.0], 0.95).expect("ellipse");
        // var x = 2; r² = -2 ln(0.05) / 2 = 2.9957; semi-major = sqrt(2.9957 · 2)
        assert!(near(e.semi_major, (2.0 * -(0.05f64).ln()).sqrt(), 1e-9), "{e:?}");
    }
}
