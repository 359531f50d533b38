//! Confidence statistics across repeated runs: t-based intervals and the covariance ellipse.
//!
//! For n repeated runs of one configuration with sample means (x̄, ȳ) and sample covariance S
//! (n - 1 denominator), the confidence region of the true mean is the ellipse
//! `(μ - m)ᵀ S⁻¹ (μ - m) ≤ r²` with Hotelling's `r² = 2 (n - 1) / (n (n - 2)) · F⁻¹(c; 2, n - 2)`
//! for n ≥ 3. For n = 2 the large-sample `r² = χ²₂⁻¹(c) / n` is used instead (F is undefined).
//! Its semi-axes are `r·sqrt(λ)` for the eigenvalues λ of S, the angle that of the major axis.

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
    let n = x.len();
    if n < 2 || y.len() != n {
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
        2.0 * (nf - 1.0) / (nf * (nf - 2.0)) * f
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
    fn two_runs_use_the_large_sample_radius() {
        let e = ellipse(&[0.0, 2.0], &[0.0, 0.0], 0.95).expect("ellipse");
        // var x = 2; r² = -2 ln(0.05) / 2 = 2.9957; semi-major = sqrt(2.9957 · 2)
        assert!(near(e.semi_major, (2.0 * -(0.05f64).ln()).sqrt(), 1e-9), "{e:?}");
    }
}
