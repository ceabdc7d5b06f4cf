//! The token budget is hard: whatever the algorithm, threads, batching, rollouts or answer rule,
//! a search with `budget.max_tokens = B` never generates more than `B` tokens, counted by a
//! wrapper around the policy (not by the engine's own counter, which is checked against it).
//! Best-of-N and self-consistency with `fill_budget` spend nearly all of it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use ponder_engine::config::SearchConfig;
use ponder_engine::{
    BatchConfig, Batcher, BoxError, Evaluator, ExpandRequest, Models, Policy, Problem,
    SearchReport, Step, StopReason, TreeId, search,
};
use ponder_testkit::synthetic::{SyntheticSpec, models, problems};
use proptest::prelude::*;

mod common;

/// A test double that counts every token its inner policy generates.
struct CountingPolicy {
    inner: Arc<dyn Policy>,
    tokens: AtomicU64,
    /// With jitter, each call first sleeps 0-1.5 ms (varying by call), so calls on several
    /// threads overlap and finish out of order, as a real model's do.
    jitter: bool,
    calls: AtomicU64,
}

impl Policy for CountingPolicy {
    fn name(&self) -> &str {
        "counting"
    }
    fn propose(&self, requests: &[ExpandRequest<'_>]) -> Result<Vec<Vec<Step>>, BoxError> {
        if self.jitter {
            // Relaxed: a test counter.
            let call = self.calls.fetch_add(1, Ordering::Relaxed);
            let micros = call.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 54;
            std::thread::sleep(std::time::Duration::from_micros(micros.min(1500)));
        }
        let out = self.inner.propose(requests)?;
        let n: u64 = out.iter().flatten().map(|s| u64::from(s.n_tokens)).sum();
        // Relaxed: a test counter read after the search joined.
        self.tokens.fetch_add(n, Ordering::Relaxed);
        Ok(out)
    }
    fn max_step_tokens(&self, to_end: bool) -> Option<u32> {
        self.inner.max_step_tokens(to_end)
    }
}

fn counted(m: &Models) -> (Models, Arc<CountingPolicy>) {
    counted_with(m, false)
}

fn counted_with(m: &Models, jitter: bool) -> (Models, Arc<CountingPolicy>) {
    let c = Arc::new(CountingPolicy {
        inner: m.policy.clone(),
        tokens: AtomicU64::new(0),
        jitter,
        calls: AtomicU64::new(0),
    });
    let p: Arc<dyn Policy> = c.clone();
    (
        Models {
            policy: p.clone(),
            rollout: Some(p),
            critics: m.critics.clone(),
            task: m.task.clone(),
        },
        c,
    )
}

/// One search, through a batcher or calling the models directly.
fn run(m: &Models, cfg: &SearchConfig, p: Problem, batched: bool) -> SearchReport {
    if batched {
        Batcher::run(m, &BatchConfig::default(), |b| {
            search(p.clone(), TreeId(0), cfg, Evaluator::batched(m, b))
        })
        .expect("batcher")
    } else {
        search(p, TreeId(0), cfg, Evaluator::direct(m))
    }
    .expect("search")
}

fn config(alg: u8, budget: u64, threads: u32, rollouts: u32) -> SearchConfig {
    let mut cfg = common::algorithm(alg, threads);
    cfg.baseline.fill_budget = alg >= 2;
    cfg.budget.simulations = 100_000;
    cfg.budget.max_tokens = Some(budget);
    cfg.scoring.rollouts = rollouts;
    cfg
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn no_search_passes_its_token_budget(
        alg in 0u8..6,
        budget in 1u64..400,
        threads in 1u32..4,
        rollouts in 0u32..3,
        batched in any::<bool>(),
        level in 2u32..7,
        seed in 0u64..1000,
    ) {
        let (m, count) = counted(&models(&SyntheticSpec::default()));
        let cfg = config(alg, budget, threads, rollouts);
        let p = problems(1, level, seed).remove(0);
        let rep = run(&m, &cfg, p, batched);
        let generated = count.tokens.load(Ordering::Relaxed);
        prop_assert!(generated <= budget, "generated {generated} > budget {budget}");
        prop_assert_eq!(rep.stats.tokens, generated, "the engine counts what the policy made");
    }
}

#[test]
fn sampling_fills_the_budget_and_votes_over_all_samples() {
    // Level-4 synthetic solutions are ~20-25 tokens; 4 per wave.
    let m = models(&SyntheticSpec::default());
    for alg in [3u8, 4] {
        for budget in [200u64, 1000] {
            let cfg = config(alg, budget, 1, 0);
            let rep = search(
                problems(1, 4, 3).remove(0),
                TreeId(0),
                &cfg,
                Evaluator::direct(&m),
            )
            .expect("search");
            assert!(rep.stats.tokens <= budget);
            assert!(
                rep.stats.tokens * 10 >= budget * 8,
                "spent {} of {budget}",
                rep.stats.tokens
            );
            let samples = rep.tree.children(ponder_engine::NodeId::ROOT).count() as u64;
            assert!(
                samples > 4,
                "more than one wave: {samples} samples at budget {budget}"
            );
            assert_eq!(rep.stop, StopReason::Tokens);
            assert!(rep.answer.is_some());
        }
    }
}

#[test]
fn without_fill_sampling_is_one_wave() {
    let m = models(&SyntheticSpec::default());
    let mut cfg = config(4, 1000, 1, 0);
    cfg.baseline.fill_budget = false;
    let rep = search(
        problems(1, 4, 3).remove(0),
        TreeId(0),
        &cfg,
        Evaluator::direct(&m),
    )
    .expect("search");
    assert_eq!(rep.tree.children(ponder_engine::NodeId::ROOT).count(), 4);
}

#[test]
fn a_policy_that_ignores_the_cap_is_a_contract_error() {
    struct Greedy(Arc<dyn Policy>);
    impl Policy for Greedy {
        fn name(&self) -> &str {
            "ignores-caps"
        }
        fn propose(&self, r: &[ExpandRequest<'_>]) -> Result<Vec<Vec<Step>>, BoxError> {
            let uncapped: Vec<ExpandRequest<'_>> = r
                .iter()
                .map(|q| ExpandRequest {
                    max_tokens: None,
                    ..*q
                })
                .collect();
            self.0.propose(&uncapped)
        }
    }
    let base = models(&SyntheticSpec::default());
    let m = Models {
        policy: Arc::new(Greedy(base.policy.clone())),
        ..base
    };
    let mut cfg = config(3, 30, 1, 0);
    cfg.baseline.n = 4;
    let err = search(
        problems(1, 6, 1).remove(0),
        TreeId(0),
        &cfg,
        Evaluator::direct(&m),
    )
    .expect_err("over-long steps are rejected");
    assert!(err.to_string().contains("ignores-caps"), "{err}");
}

#[test]
fn a_token_stopped_tree_search_spends_its_whole_budget_on_any_thread_count() {
    // One candidate per request (progressive widening, no rollouts): the search stops for tokens
    // only when none is left, even while other threads' calls still hold reservations that
    // they partly give back. (Before, a thread that found the whole budget reserved stopped the
    // search at once and the give-backs went unspent: `token_budget_stops_with_tokens` saw 45
    // of 50 tokens at 4 threads on a loaded machine, 2 runs in 12. That race needs the load to
    // show; this checks the property on every thread count with calls that overlap.)
    for threads in [1u32, 2, 4, 8] {
        for (i, budget) in [37u64, 50, 50, 50, 96, 211].into_iter().enumerate() {
            for batched in [false, true] {
                let (m, count) = counted_with(&models(&SyntheticSpec::default()), true);
                let mut cfg = SearchConfig::alphallm();
                cfg.parallel.threads = threads;
                cfg.budget.simulations = 100_000;
                cfg.budget.max_tokens = Some(budget);
                let p = problems(1, 5, i as u64 + 4).remove(0);
                let rep = run(&m, &cfg, p, batched);
                let generated = count.tokens.load(Ordering::Relaxed);
                assert_eq!(rep.stop, StopReason::Tokens, "x{threads} budget {budget}");
                assert_eq!(
                    generated, budget,
                    "x{threads} budget {budget} batched {batched}: stopped with tokens left"
                );
            }
        }
    }
}
