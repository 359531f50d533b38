//! Token-length distributions for `--isl` and `--osl`: a fixed value, normal, uniform, or an
//! empirical histogram read from a file.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use rand::Rng;
use rand_distr::Distribution;

use crate::{Error, Result};

/// Where sampled lengths come from.
#[derive(Debug, Clone, PartialEq)]
pub enum LengthDist {
    /// Always this many tokens (`1024`).
    Fixed(u32),
    /// Normal, rounded (`normal:1024:128`, or `--isl 1024 --isl-stddev 128`).
    Normal {
        /// Mean tokens.
        mean: f64,
        /// Standard deviation in tokens.
        stddev: f64,
    },
    /// Uniform over an inclusive range (`uniform:512:2048`).
    Uniform {
        /// Smallest length.
        min: u32,
        /// Largest length.
        max: u32,
    },
    /// Lengths drawn with the weights of a histogram file (`file:lengths.csv`: `length,weight`
    /// lines; a header line and `#` comments are skipped).
    Empirical {
        /// The file it came from.
        path: PathBuf,
        /// Lengths, in file order.
        lengths: Vec<u32>,
        /// Cumulative weights, normalized to end at 1.
        cumulative: Vec<f64>,
    },
}

impl FromStr for LengthDist {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let num = |x: &str, what: &str| -> std::result::Result<f64, String> {
            x.trim()
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite() && *v >= 0.0)
                .ok_or_else(|| format!("{what} must be a non-negative number, got `{x}`"))
        };
        let tokens = |x: &str, what: &str| -> std::result::Result<u32, String> {
            x.trim()
                .parse::<u32>()
                .map_err(|_| format!("{what} must be a whole number of tokens, got `{x}`"))
        };
        let parts: Vec<&str> = s.split(':').collect();
        match parts.as_slice() {
            [n] => Ok(LengthDist::Fixed(tokens(n, "a length")?)),
            ["normal", mean, stddev] => Ok(LengthDist::Normal {
                mean: num(mean, "the mean")?,
                stddev: num(stddev, "the standard deviation")?,
            }),
            ["uniform", min, max] => {
                let (min, max) = (tokens(min, "the minimum")?, tokens(max, "the maximum")?);
                if min > max {
                    return Err(format!("uniform:{min}:{max}: the minimum is above the maximum"));
                }
                Ok(LengthDist::Uniform { min, max })
            }
            ["file", ..] => {
                LengthDist::from_file(Path::new(&s["file:".len()..])).map_err(|e| recap_schemas::error_chain(&e))
            }
            _ => Err(format!(
                "`{s}`: expected N, normal:MEAN:STDDEV, uniform:MIN:MAX or file:PATH"
            )),
        }
    }
}

impl LengthDist {
    /// Reads an empirical histogram: `length,weight` per line (a weight-less line weighs 1).
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::unreadable(path, source))?;
        let (mut lengths, mut cumulative, mut total) = (Vec::new(), Vec::new(), 0.0);
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut cells = line.split([',', '\t', ' ']).filter(|c| !c.is_empty());
            let first = cells.next().unwrap_or_default();
            let Ok(length) = first.parse::<u32>() else {
                if lengths.is_empty() && i == 0 {
                    continue; // a header
                }
                return Err(Error::Input(format!(
                    "{} line {}: `{first}` is not a whole number of tokens",
                    path.display(),
                    i + 1
                )));
            };
            let weight = match cells.next() {
                None => 1.0,
                Some(w) => w
                    .parse::<f64>()
                    .ok()
                    .filter(|w| w.is_finite() && *w >= 0.0)
                    .ok_or_else(|| {
                        Error::Input(format!(
                            "{} line {}: weight `{w}` is not a non-negative number",
                            path.display(),
                            i + 1
                        ))
                    })?,
            };
            total += weight;
            lengths.push(length);
            cumulative.push(total);
        }
        if total <= 0.0 {
            return Err(Error::Input(format!(
                "{}: no length with a positive weight",
                path.display()
            )));
        }
        cumulative.iter_mut().for_each(|c| *c /= total);
        Ok(LengthDist::Empirical {
            path: path.to_path_buf(),
            lengths,
            cumulative,
        })
    }

    /// `--isl N --isl-stddev S`: a fixed length with a deviation becomes normal.
    pub fn with_stddev(self, stddev: Option<f64>, flag: &str) -> Result<Self> {
        match (self, stddev) {
            (d, None) => Ok(d),
            (LengthDist::Fixed(n), Some(s)) if s.is_finite() && s >= 0.0 => Ok(LengthDist::Normal {
                mean: f64::from(n),
                stddev: s,
            }),
            (_, Some(_)) => Err(Error::Input(format!(
                "--{flag}-stddev goes with a plain --{flag} N (or use normal:MEAN:STDDEV), and must be non-negative"
            ))),
        }
    }

    /// One length (rounded, at least 0; the caller clips to its valid range).
    pub fn sample<R: Rng>(&self, rng: &mut R) -> u32 {
        match self {
            LengthDist::Fixed(n) => *n,
            LengthDist::Normal { mean, stddev } => {
                let x = match rand_distr::Normal::new(*mean, *stddev) {
                    Ok(d) => d.sample(rng),
                    Err(_) => *mean,
                };
                x.round().clamp(0.0, f64::from(u32::MAX)) as u32
            }
            LengthDist::Uniform { min, max } => rng.random_range(*min..=*max),
            LengthDist::Empirical {
                lengths, cumulative, ..
            } => {
                let u: f64 = rng.random();
                let i = cumulative.partition_point(|c| *c < u).min(lengths.len() - 1);
                lengths[i]
            }
        }
    }

    /// How it reads in a report (`1024`, `normal(1024, 128)`).
    pub fn describe(&self) -> String {
        match self {
            LengthDist::Fixed(n) => n.to_string(),
            LengthDist::Normal { mean, stddev } => format!("normal({mean}, {stddev})"),
            LengthDist::Uniform { min, max } => format!("uniform({min}, {max})"),
            LengthDist::Empirical { path, lengths, .. } => {
                format!("histogram {} ({} lengths)", path.display(), lengths.len())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn parses_every_form_and_names_the_mistake() {
        assert_eq!("1024".parse::<LengthDist>(), Ok(LengthDist::Fixed(1024)));
        assert_eq!(
            "normal:100:10".parse::<LengthDist>(),
            Ok(LengthDist::Normal {
                mean: 100.0,
                stddev: 10.0
            })
        );
        assert_eq!(
            "uniform:5:9".parse::<LengthDist>(),
            Ok(LengthDist::Uniform { min: 5, max: 9 })
        );
        assert!("uniform:9:5"
            .parse::<LengthDist>()
            .expect_err("invalid")
            .contains("above"));
        assert!("x".parse::<LengthDist>().expect_err("invalid").contains("whole number"));
        assert!("gamma:1:2"
            .parse::<LengthDist>()
            .expect_err("invalid")
            .contains("expected"));
        let d = LengthDist::Fixed(50).with_stddev(Some(5.0), "isl").expect("normal");
        assert!(matches!(d, LengthDist::Normal { .. }));
    }

    #[test]
    fn samples_follow_the_distribution() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let d = LengthDist::Uniform { min: 5, max: 9 };
        let xs: Vec<u32> = (0..2000).map(|_| d.sample(&mut rng)).collect();
        assert!(xs.iter().all(|x| (5..=9).contains(x)));
        assert!((5..=9).all(|v| xs.contains(&v)));
        let n = LengthDist::Normal {
            mean: 1000.0,
            stddev: 50.0,
        };
        let mean = (0..4000).map(|_| f64::from(n.sample(&mut rng))).sum::<f64>() / 4000.0;
        assert!((mean - 1000.0).abs() < 5.0, "{mean}");
    }

    #[test]
    fn histogram_file_weights_and_errors() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("h.csv");
        std::fs::write(&p, "length,weight\n# comment\n10,1\n20,3\n30,0\n").expect("write");
        let d: LengthDist = format!("file:{}", p.display()).parse().expect("reads");
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let xs: Vec<u32> = (0..4000).map(|_| d.sample(&mut rng)).collect();
        let twenties = xs.iter().filter(|x| **x == 20).count();
        assert!(!xs.contains(&30), "a zero weight is never drawn");
        assert!((2800..3200).contains(&twenties), "{twenties}");
        std::fs::write(&p, "10,1\nabc,2\n").expect("write");
        let err = LengthDist::from_file(&p).expect_err("bad line");
        assert!(err.to_string().contains("line 2"), "{err}");
    }
}
