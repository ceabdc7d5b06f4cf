//! Latency and throughput of recent answers, and quantiles over a sample (shared with
//! [`crate::bench`]).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Answers kept for the quantiles.
const KEPT: usize = 2048;
/// The window tokens per second are measured over.
const WINDOW: Duration = Duration::from_secs(60);

/// Recent answers: when each finished, its latency and tokens; plus running totals.
#[derive(Debug)]
pub(crate) struct Recent {
    started: Instant,
    answers: VecDeque<(Instant, f64, u64)>,
    count: u64,
    seconds_sum: f64,
}

impl Default for Recent {
    fn default() -> Self {
        Recent {
            started: Instant::now(),
            answers: VecDeque::with_capacity(KEPT),
            count: 0,
            seconds_sum: 0.0,
        }
    }
}

/// What `/metrics` reports of answered requests.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Summary {
    /// Answers so far.
    pub count: u64,
    /// Their latencies summed, seconds.
    pub seconds_sum: f64,
    /// Median latency of the last answers (at most 2048), seconds; 0 before the first.
    pub p50: f64,
    /// 99th-percentile latency of the same answers, seconds.
    pub p99: f64,
    /// Tokens generated per second by the answers of the last minute.
    pub tokens_per_second: f64,
}

impl Recent {
    pub(crate) fn add(&mut self, seconds: f64, tokens: u64) {
        if self.answers.len() == KEPT {
            self.answers.pop_front();
        }
        self.answers.push_back((Instant::now(), seconds, tokens));
        self.count += 1;
        self.seconds_sum += seconds;
    }

    pub(crate) fn summary(&self) -> Summary {
        let mut lat: Vec<f64> = self.answers.iter().map(|a| a.1).collect();
        let now = Instant::now();
        let tokens: u64 = self
            .answers
            .iter()
            .filter(|a| now.duration_since(a.0) <= WINDOW)
            .map(|a| a.2)
            .sum();
        let span = now.duration_since(self.started).min(WINDOW).as_secs_f64();
        Summary {
            count: self.count,
            seconds_sum: self.seconds_sum,
            p50: quantile(&mut lat, 0.5),
            p99: quantile(&mut lat, 0.99),
            tokens_per_second: if span > 0.0 {
                tokens as f64 / span
            } else {
                0.0
            },
        }
    }
}

/// The `q` quantile of `xs` (nearest rank: the smallest value with at least `q` of the sample
/// at or below it); 0 for an empty sample. Sorts `xs`.
pub fn quantile(xs: &mut [f64], q: f64) -> f64 {
    if xs.is_empty() {
        return 0.0;
    }
    xs.sort_by(f64::total_cmp);
    let rank = (q * xs.len() as f64).ceil() as usize;
    xs[rank.clamp(1, xs.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_quantiles() {
        let mut xs: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        assert_eq!(quantile(&mut xs, 0.5), 50.0);
        assert_eq!(quantile(&mut xs, 0.99), 99.0);
        assert_eq!(quantile(&mut xs, 1.0), 100.0);
        assert_eq!(quantile(&mut [3.0], 0.99), 3.0);
        assert_eq!(quantile(&mut [], 0.5), 0.0);
    }

    #[test]
    fn keeps_the_latest_answers_and_all_totals() {
        let mut r = Recent::default();
        for i in 0..(KEPT + 10) {
            r.add(i as f64, 2);
        }
        let s = r.summary();
        assert_eq!(s.count, (KEPT + 10) as u64);
        assert_eq!(r.answers.len(), KEPT);
        // The oldest ten fell out of the quantile sample: latencies 10..KEPT+10 remain.
        assert_eq!(s.p50, (10 + KEPT / 2 - 1) as f64, "{s:?}");
        assert!(s.tokens_per_second > 0.0);
    }
}
