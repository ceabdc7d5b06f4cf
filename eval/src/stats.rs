//! The statistics of a comparison: Wilson score intervals for an accuracy, and for two methods
//! on the same problems the exact McNemar test and a paired bootstrap interval of the
//! difference.

use ponder_engine::rng::{Rng, mix};

/// z for a two-sided 95% interval.
const Z95: f64 = 1.959_963_984_540_054;

/// The Wilson score 95% interval of `k` successes in `n` trials (`(0, 1)` when `n = 0`).
pub fn wilson(k: u64, n: u64) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let (k, n) = (k as f64, n as f64);
    let p = k / n;
    let z2 = Z95 * Z95;
    let denom = 1.0 + z2 / n;
    let centre = (p + z2 / (2.0 * n)) / denom;
    let half = Z95 * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt() / denom;
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

/// Two-sided exact McNemar p-value from the discordant counts: `b` pairs only the first method
/// got right, `c` only the second. Under the null each discordant pair is a fair coin.
pub fn mcnemar_exact(b: u64, c: u64) -> f64 {
    let n = b + c;
    if n == 0 {
        return 1.0;
    }
    let k = b.min(c);
    // P(X <= k) for X ~ Binomial(n, 1/2), summed in log space (n can be thousands).
    let ln_half_n = -(n as f64) * std::f64::consts::LN_2;
    let mut ln_choose = 0.0f64; // ln C(n, 0)
    let mut tail = 0.0f64;
    for i in 0..=k {
        if i > 0 {
            ln_choose += ((n - i + 1) as f64).ln() - (i as f64).ln();
        }
        tail += (ln_choose + ln_half_n).exp();
    }
    (2.0 * tail).min(1.0)
}

/// A paired comparison of method A against method B on the same units.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Paired {
    /// Units (problem × seed) both methods ran.
    pub n: u64,
    /// Accuracy of A minus accuracy of B.
    pub diff: f64,
    /// 95% paired bootstrap interval of `diff` (percentile).
    pub lo: f64,
    /// Upper end.
    pub hi: f64,
    /// Units only A got right.
    pub wins: u64,
    /// Units only B got right.
    pub losses: u64,
    /// Exact McNemar two-sided p-value.
    pub p: f64,
}

/// Compares paired outcomes `(a_correct, b_correct)`; `resamples` bootstrap draws seeded by
/// `seed` (deterministic).
pub fn paired(outcomes: &[(bool, bool)], resamples: u32, seed: u64) -> Paired {
    let n = outcomes.len() as u64;
    let d: Vec<i8> = outcomes
        .iter()
        .map(|&(a, b)| i8::from(a) - i8::from(b))
        .collect();
    let wins = d.iter().filter(|&&x| x > 0).count() as u64;
    let losses = d.iter().filter(|&&x| x < 0).count() as u64;
    if n == 0 {
        return Paired {
            n,
            diff: 0.0,
            lo: 0.0,
            hi: 0.0,
            wins,
            losses,
            p: 1.0,
        };
    }
    let diff = (wins as f64 - losses as f64) / n as f64;
    let mut rng = Rng::new(mix(seed, 0xB007));
    let mut means: Vec<f64> = (0..resamples.max(1))
        .map(|_| {
            let s: i64 = (0..n).map(|_| i64::from(d[rng.below(n) as usize])).sum();
            s as f64 / n as f64
        })
        .collect();
    means.sort_by(f64::total_cmp);
    let at = |q: f64| means[((q * (means.len() - 1) as f64).round() as usize).min(means.len() - 1)];
    Paired {
        n,
        diff,
        lo: at(0.025),
        hi: at(0.975),
        wins,
        losses,
        p: mcnemar_exact(wins, losses),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wilson_matches_known_values() {
        // 8/10: (0.4902, 0.9433) in the textbook tables.
        let (lo, hi) = wilson(8, 10);
        assert!(
            (lo - 0.4902).abs() < 1e-3 && (hi - 0.9433).abs() < 1e-3,
            "{lo} {hi}"
        );
        let (lo, hi) = wilson(0, 20);
        assert!(lo == 0.0 && (hi - 0.1611).abs() < 1e-3, "{hi}");
        assert_eq!(wilson(0, 0), (0.0, 1.0));
    }

    #[test]
    fn mcnemar_matches_the_binomial() {
        // b = 1, c = 9: 2 * (1 + 10) / 1024.
        assert!((mcnemar_exact(1, 9) - 22.0 / 1024.0).abs() < 1e-12);
        assert_eq!(mcnemar_exact(5, 5), 1.0);
        assert_eq!(mcnemar_exact(0, 0), 1.0);
        // Large counts stay finite and tiny.
        let p = mcnemar_exact(100, 300);
        assert!(p > 0.0 && p < 1e-20, "{p}");
    }

    #[test]
    fn bootstrap_interval_covers_the_difference() {
        let mut o = vec![(true, false); 30];
        o.extend(vec![(false, true); 10]);
        o.extend(vec![(true, true); 60]);
        let p = paired(&o, 2000, 1);
        assert!((p.diff - 0.2).abs() < 1e-12);
        assert!(
            p.lo > 0.05 && p.lo < 0.2 && p.hi > 0.2 && p.hi < 0.35,
            "{p:?}"
        );
        assert_eq!((p.wins, p.losses), (30, 10));
        assert!(p.p < 0.01);
        assert_eq!(paired(&o, 2000, 1), p, "deterministic");
    }
}
