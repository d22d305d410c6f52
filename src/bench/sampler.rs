//! Deterministic random key indices for the load generator: a small seeded
//! generator and the two distributions `--distribution` offers, uniform and
//! Zipf.
//!
//! The generator is our own (SplitMix64) rather than a crate's so that a
//! `--seed` gives the same key sequence on every machine and every version of
//! fstore: a benchmark is only comparable with another if both asked for the
//! same keys.

use std::fmt;

use anyhow::{bail, Context};

/// SplitMix64 (Steele, Lea and Flood 2014): one 64-bit word of state, passes
/// BigCrush, and is plenty for picking keys.
#[derive(Clone, Debug)]
pub struct Rng {
    state: u64,
}

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng { state: seed }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1), with the 53 bits a double holds.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in [0, n) without modulo bias (Lemire's multiply-and-reject).
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0, "below(0): a key range is never empty (checked when parsed)");
        let threshold = n.wrapping_neg() % n;
        loop {
            let product = u128::from(self.next_u64()) * u128::from(n);
            if (product as u64) >= threshold {
                return (product >> 64) as u64;
            }
        }
    }
}

/// How key indices are drawn from a key range.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Distribution {
    /// Every key equally likely.
    Uniform,
    /// The k-th key of the range (1-based) drawn with probability ∝ 1/k^s.
    Zipf { exponent: f64 },
}

impl std::str::FromStr for Distribution {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> anyhow::Result<Distribution> {
        if text == "uniform" {
            return Ok(Distribution::Uniform);
        }
        let Some(exponent) = text.strip_prefix("zipf:") else {
            bail!("unknown distribution {text:?}: expected `uniform` or `zipf:S`, e.g. zipf:1.1");
        };
        let exponent: f64 =
            exponent.parse().with_context(|| format!("distribution {text:?}: the skew S is not a number"))?;
        if !(exponent > 0.0 && exponent.is_finite()) {
            bail!("distribution {text:?}: the skew S must be a finite number > 0");
        }
        Ok(Distribution::Zipf { exponent })
    }
}

impl fmt::Display for Distribution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Distribution::Uniform => f.write_str("uniform"),
            Distribution::Zipf { exponent } => write!(f, "zipf:{exponent}"),
        }
    }
}

/// Draws indices in [0, n) for one key range.
#[derive(Clone, Debug)]
pub enum IndexSampler {
    Uniform { n: u64 },
    Zipf(Zipf),
}

impl IndexSampler {
    pub fn new(distribution: Distribution, n: u64) -> IndexSampler {
        match distribution {
            Distribution::Uniform => IndexSampler::Uniform { n },
            Distribution::Zipf { exponent } => IndexSampler::Zipf(Zipf::new(n, exponent)),
        }
    }

    pub fn sample(&self, rng: &mut Rng) -> u64 {
        match self {
            IndexSampler::Uniform { n } => rng.below(*n),
            IndexSampler::Zipf(zipf) => zipf.sample(rng) - 1,
        }
    }
}

/// Zipf over ranks 1..=n by rejection-inversion (Hörmann and Derflinger,
/// "Rejection-inversion to generate variates from monotone discrete
/// distributions", 1996), as in Apache Commons RNG. It needs O(1) memory and
/// O(1) expected time for any n and any s > 0, so a range of a billion keys
/// costs no more than one of ten; a precomputed CDF would need n doubles.
#[derive(Clone, Debug)]
pub struct Zipf {
    n: u64,
    exponent: f64,
    h_integral_x1: f64,
    h_integral_n: f64,
    s: f64,
}

impl Zipf {
    pub fn new(n: u64, exponent: f64) -> Zipf {
        assert!(n > 0 && exponent > 0.0, "Zipf needs n > 0 and s > 0 (checked when parsed)");
        let mut zipf = Zipf { n, exponent, h_integral_x1: 0.0, h_integral_n: 0.0, s: 0.0 };
        zipf.h_integral_x1 = zipf.h_integral(1.5) - 1.0;
        zipf.h_integral_n = zipf.h_integral(n as f64 + 0.5);
        zipf.s = 2.0 - zipf.h_integral_inverse(zipf.h_integral(2.5) - zipf.h(2.0));
        zipf
    }

    /// A rank in 1..=n; rank 1 is the most likely.
    pub fn sample(&self, rng: &mut Rng) -> u64 {
        loop {
            // Uniform in (h_integral_x1, h_integral_n]: inverting the integral
            // of the hat function gives a continuous variate x whose rounding
            // k is accepted when it lies under the true mass 1/k^s.
            let u = self.h_integral_n + rng.next_f64() * (self.h_integral_x1 - self.h_integral_n);
            let x = self.h_integral_inverse(u);
            let k = (x + 0.5).clamp(1.0, self.n as f64) as u64;
            let k_float = k as f64;
            if k_float - x <= self.s || u >= self.h_integral(k_float + 0.5) - self.h(k_float) {
                return k;
            }
        }
    }

    /// The hat function h(x) = 1/x^s.
    fn h(&self, x: f64) -> f64 {
        (-self.exponent * x.ln()).exp()
    }

    /// H(x) = ∫ h, written so that it stays accurate as s approaches 1.
    fn h_integral(&self, x: f64) -> f64 {
        let log_x = x.ln();
        helper2((1.0 - self.exponent) * log_x) * log_x
    }

    fn h_integral_inverse(&self, x: f64) -> f64 {
        // Rounding can push t just below -1, where log1p is undefined.
        let t = (x * (1.0 - self.exponent)).max(-1.0);
        (helper1(t) * x).exp()
    }
}

/// log(1 + x) / x, with its Taylor series near 0 where the quotient cancels.
fn helper1(x: f64) -> f64 {
    if x.abs() > 1e-8 {
        x.ln_1p() / x
    } else {
        1.0 - x * (0.5 - x * (1.0 / 3.0 - 0.25 * x))
    }
}

/// (exp(x) - 1) / x, with its Taylor series near 0.
fn helper2(x: f64) -> f64 {
    if x.abs() > 1e-8 {
        x.exp_m1() / x
    } else {
        1.0 + x * 0.5 * (1.0 + x * (1.0 / 3.0) * (1.0 + 0.25 * x))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frequencies(sampler: &IndexSampler, buckets: usize, samples: usize, seed: u64) -> Vec<u64> {
        let mut rng = Rng::new(seed);
        let mut counts = vec![0u64; buckets];
        for _ in 0..samples {
            let index = sampler.sample(&mut rng) as usize;
            if index < buckets {
                counts[index] += 1;
            }
        }
        counts
    }

    #[test]
    fn the_same_seed_gives_the_same_sequence() {
        let mut a = Rng::new(7);
        let mut b = Rng::new(7);
        let mut c = Rng::new(8);
        let first: Vec<u64> = (0..5).map(|_| a.next_u64()).collect();
        assert_eq!(first, (0..5).map(|_| b.next_u64()).collect::<Vec<_>>());
        assert_ne!(first, (0..5).map(|_| c.next_u64()).collect::<Vec<_>>());
    }

    #[test]
    fn uniform_is_flat() {
        let samples = 200_000;
        let counts = frequencies(&IndexSampler::new(Distribution::Uniform, 10), 10, samples, 1);
        assert_eq!(counts.iter().sum::<u64>(), samples as u64, "every index lands in [0, n)");
        let expected = samples as f64 / 10.0;
        for (index, &count) in counts.iter().enumerate() {
            let deviation = (count as f64 - expected).abs() / expected;
            assert!(deviation < 0.03, "index {index}: {count} vs {expected} expected");
        }
    }

    #[test]
    fn zipf_frequencies_follow_one_over_k_to_the_s() {
        for exponent in [0.8, 1.0, 1.1, 2.0] {
            let n = 1000u64;
            let samples = 400_000;
            let counts =
                frequencies(&IndexSampler::new(Distribution::Zipf { exponent }, n), n as usize, samples, 42);
            assert_eq!(counts.iter().sum::<u64>(), samples as u64, "s={exponent}: every rank in 1..=n");
            let normaliser: f64 = (1..=n).map(|k| (k as f64).powf(-exponent)).sum();
            // Ranks 1..10 hold enough samples for a tight check; each is
            // compared with its exact probability, 4 standard deviations wide.
            for k in 1..=10u64 {
                let p = (k as f64).powf(-exponent) / normaliser;
                let expected = p * samples as f64;
                let sigma = (samples as f64 * p * (1.0 - p)).sqrt();
                let observed = counts[(k - 1) as usize] as f64;
                assert!(
                    (observed - expected).abs() < 4.0 * sigma + 1.0,
                    "s={exponent} rank {k}: observed {observed}, expected {expected:.0} ± {sigma:.0}"
                );
            }
            assert!(
                counts[0] > counts[1] && counts[1] > counts[2],
                "s={exponent}: rank 1 is the most frequent"
            );
        }
    }

    #[test]
    fn zipf_stays_in_range_for_large_and_tiny_ranges() {
        let mut rng = Rng::new(3);
        let big = Zipf::new(5_000_000_000, 1.1);
        let single = Zipf::new(1, 1.5);
        for _ in 0..10_000 {
            let k = big.sample(&mut rng);
            assert!((1..=5_000_000_000).contains(&k));
            assert_eq!(single.sample(&mut rng), 1);
        }
    }

    #[test]
    fn distributions_parse() {
        assert_eq!("uniform".parse::<Distribution>().ok(), Some(Distribution::Uniform));
        assert_eq!("zipf:1.1".parse::<Distribution>().ok(), Some(Distribution::Zipf { exponent: 1.1 }));
        for bad in ["zipf", "zipf:", "zipf:0", "zipf:-1", "zipf:abc", "normal", "zipf:inf"] {
            assert!(bad.parse::<Distribution>().is_err(), "{bad} should be refused");
        }
    }
}
