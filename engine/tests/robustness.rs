//! Misbehaving models and extreme settings end in errors, never in hangs or panics.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use ponder_engine::{
    BatchConfig, Batcher, BoxError, CriticKind, CriticPanel, Error, Evaluator, ExpandRequest,
    FnCritic, Policy, ScoreRange, SearchConfig, Step, TreeId, search,
};
use ponder_testkit::synthetic::{SyntheticSpec, models, problems};

/// Panics on its `n`-th call (a bug in a user's policy).
struct PanickyPolicy {
    inner: Arc<dyn Policy>,
    calls: AtomicUsize,
    at: usize,
}

impl Policy for PanickyPolicy {
    fn name(&self) -> &str {
        "panicky"
    }
    fn propose(&self, requests: &[ExpandRequest<'_>]) -> Result<Vec<Vec<Step>>, BoxError> {
        if self.calls.fetch_add(1, Ordering::Relaxed) == self.at {
            panic!("policy bug");
        }
        self.inner.propose(requests)
    }
}

#[test]
fn a_panicking_policy_is_an_error_not_a_hang() {
    for preset in [SearchConfig::alphallm(), SearchConfig::mcts_dpo()] {
        for at in [0, 5] {
            let mut m = models(&SyntheticSpec::default());
            m.policy = Arc::new(PanickyPolicy {
                inner: m.policy.clone(),
                calls: AtomicUsize::new(0),
                at,
            });
            let mut cfg = preset.clone();
            cfg.parallel.threads = 4;
            cfg.budget.simulations = 64;
            let e = search(
                problems(1, 4, 1).remove(0),
                TreeId(0),
                &cfg,
                Evaluator::direct(&m),
            )
            .unwrap_err();
            assert!(
                matches!(&e, Error::WorkerPanicked(msg) if msg.contains("policy bug")),
                "{e:?}"
            );
        }
    }
}

#[test]
fn infinite_critic_ranges_are_rejected() {
    let c = FnCritic::new(
        "inf",
        CriticKind::Value,
        ScoreRange {
            lo: 0.0,
            hi: f32::INFINITY,
        },
        |_| 0.5,
    );
    let e = CriticPanel::new().with(Arc::new(c)).unwrap_err();
    assert!(e.to_string().contains("inf"), "{e}");
}

/// Records the largest batch it was handed.
struct Recording {
    inner: Arc<dyn Policy>,
    largest: AtomicUsize,
}

impl Policy for Recording {
    fn name(&self) -> &str {
        "recording"
    }
    fn propose(&self, requests: &[ExpandRequest<'_>]) -> Result<Vec<Vec<Step>>, BoxError> {
        self.largest.fetch_max(requests.len(), Ordering::Relaxed);
        std::thread::sleep(std::time::Duration::from_micros(300));
        self.inner.propose(requests)
    }
}

#[test]
fn max_batch_is_a_hard_cap() {
    let mut m = models(&SyntheticSpec::default());
    let rec = Arc::new(Recording {
        inner: m.policy.clone(),
        largest: AtomicUsize::new(0),
    });
    m.policy = rec.clone();
    let mut cfg = SearchConfig::alphallm();
    cfg.parallel.threads = 16;
    cfg.budget.simulations = 128;
    let batch = BatchConfig {
        max_batch: 3,
        max_wait_ms: 5.0,
    };
    let stats = Batcher::run(&m, &batch, |b| {
        let r = search(
            problems(1, 5, 2).remove(0),
            TreeId(0),
            &cfg,
            Evaluator::batched(&m, b),
        );
        r.unwrap();
        b.stats()
    })
    .unwrap();
    assert!(
        rec.largest.load(Ordering::Relaxed) <= 3,
        "{}",
        rec.largest.load(Ordering::Relaxed)
    );
    assert!(
        stats.policy.mean_batch > 1.0,
        "batches formed: {:?}",
        stats.policy
    );
}

#[test]
fn extreme_budgets_are_config_errors() {
    let mut cfg = SearchConfig::alphallm();
    cfg.budget.wall_seconds = Some(1e19);
    assert!(
        cfg.validate()
            .unwrap_err()
            .to_string()
            .contains("budget.wall_seconds")
    );
    let mut cfg = SearchConfig::alphallm();
    cfg.baseline.n = 3000;
    assert!(
        cfg.validate()
            .unwrap_err()
            .to_string()
            .contains("baseline.n")
    );
    let mut cfg = SearchConfig::alphallm();
    cfg.baseline.beam_width = u32::MAX;
    cfg.baseline.beam_k = 1024;
    assert!(
        cfg.validate()
            .unwrap_err()
            .to_string()
            .contains("baseline.beam_width")
    );
}

#[test]
fn largest_allowed_sample_count_runs() {
    let m = models(&SyntheticSpec::default());
    let mut cfg = SearchConfig::alphallm();
    cfg.algorithm = ponder_engine::config::Algorithm::BestOfN;
    cfg.baseline.n = 1024;
    let r = search(
        problems(1, 2, 3).remove(0),
        TreeId(0),
        &cfg,
        Evaluator::direct(&m),
    )
    .unwrap();
    assert_eq!(r.tree.child_count(ponder_engine::NodeId::ROOT), 1024);
}
