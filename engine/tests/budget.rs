//! The token budget is hard: whatever the algorithm, threads, batching, rollouts or answer rule,
//! a search with `budget.max_tokens = B` never generates more than `B` tokens, counted by a
//! wrapper around the policy (not by the engine's own counter, which is checked against it).
//! Best-of-N and self-consistency with `fill_budget` spend nearly all of it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use ponder_engine::config::SearchConfig;
use ponder_engine::testing::synthetic::{SyntheticSpec, models, problems};
use ponder_engine::{
    BatchConfig, Batcher, BoxError, Evaluator, ExpandRequest, Models, Policy, Step, StopReason,
    TreeId, search,
};
use proptest::prelude::*;

mod common;

/// A test double that counts every token its inner policy generates.
struct CountingPolicy {
    inner: Arc<dyn Policy>,
    tokens: AtomicU64,
}

impl Policy for CountingPolicy {
    fn name(&self) -> &str {
        "counting"
    }
    fn propose(&self, requests: &[ExpandRequest<'_>]) -> Result<Vec<Vec<Step>>, BoxError> {
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
    let c = Arc::new(CountingPolicy {
        inner: m.policy.clone(),
        tokens: AtomicU64::new(0),
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
        let rep = if batched {
            Batcher::run(&m, &BatchConfig::default(), |b| {
                search(p.clone(), TreeId(0), &cfg, Evaluator::batched(&m, b))
            })
            .expect("batcher")
        } else {
            search(p, TreeId(0), &cfg, Evaluator::direct(&m))
        }
        .expect("search");
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
