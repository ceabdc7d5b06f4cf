//! Failures behind the traits and bad configs surface as the documented `Error` variants, with
//! the culprit named, directly and through a multi-threaded `Batcher` (an error, never a hang or
//! a panic).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use ponder_engine::{
    BatchConfig, Batcher, BoxError, Critic, CriticKind, CriticPanel, Error, Evaluator,
    ExpandRequest, FnCritic, Models, PathRef, Policy, Problem, ScoreRange, SearchConfig,
    SearchReport, Step, TreeId, search,
};
use ponder_testkit::synthetic::{SyntheticSpec, models, problems};

/// A policy that fails on its `fail_at`-th call (0 = the first), and works (one step per
/// candidate, a fixed text) before that.
#[derive(Debug)]
struct FailingPolicy {
    calls: AtomicU64,
    fail_at: u64,
}

impl FailingPolicy {
    fn new(fail_at: u64) -> Self {
        FailingPolicy {
            calls: AtomicU64::new(0),
            fail_at,
        }
    }
}

impl Policy for FailingPolicy {
    fn name(&self) -> &str {
        "failing-policy"
    }

    fn propose(&self, requests: &[ExpandRequest<'_>]) -> Result<Vec<Vec<Step>>, BoxError> {
        let call = self.calls.fetch_add(1, Ordering::Relaxed);
        if call >= self.fail_at {
            return Err("the model server is on fire".into());
        }
        Ok(requests
            .iter()
            .map(|r| {
                (0..r.k)
                    .map(|j| Step {
                        text: format!("step {} of call {call}\n", j),
                        n_tokens: 2,
                        ..Step::default()
                    })
                    .collect()
            })
            .collect())
    }
}

/// A policy that always returns one step too few.
#[derive(Debug)]
struct ShortPolicy;

impl Policy for ShortPolicy {
    fn name(&self) -> &str {
        "short-policy"
    }

    fn propose(&self, requests: &[ExpandRequest<'_>]) -> Result<Vec<Vec<Step>>, BoxError> {
        Ok(requests
            .iter()
            .map(|r| (1..r.k).map(|j| Step::text(format!("s{j}\n"))).collect())
            .collect())
    }
}

/// A policy that answers one request too few.
#[derive(Debug)]
struct MissingAnswerPolicy;

impl Policy for MissingAnswerPolicy {
    fn name(&self) -> &str {
        "missing-answer-policy"
    }

    fn propose(&self, requests: &[ExpandRequest<'_>]) -> Result<Vec<Vec<Step>>, BoxError> {
        Ok(requests
            .iter()
            .skip(1)
            .map(|r| (0..r.k).map(|j| Step::text(format!("s{j}\n"))).collect())
            .collect())
    }
}

/// A critic that returns no scores at all.
#[derive(Debug)]
struct EmptyCritic;

impl Critic for EmptyCritic {
    fn name(&self) -> &str {
        "empty-critic"
    }
    fn kind(&self) -> CriticKind {
        CriticKind::Process
    }
    fn range(&self) -> ScoreRange {
        ScoreRange::UNIT
    }
    fn score(&self, _paths: &[PathRef<'_>]) -> Result<Vec<f32>, BoxError> {
        Ok(Vec::new())
    }
}

/// A critic whose model fails.
#[derive(Debug)]
struct BrokenCritic;

impl Critic for BrokenCritic {
    fn name(&self) -> &str {
        "broken-critic"
    }
    fn kind(&self) -> CriticKind {
        CriticKind::Value
    }
    fn range(&self) -> ScoreRange {
        ScoreRange::UNIT
    }
    fn score(&self, _paths: &[PathRef<'_>]) -> Result<Vec<f32>, BoxError> {
        Err("critic weights missing".into())
    }
}

fn problem() -> Problem {
    problems(1, 4, 5).remove(0)
}

fn with_policy(policy: Arc<dyn Policy>) -> Models {
    let mut m = models(&SyntheticSpec::default());
    m.policy = policy.clone();
    m.rollout = Some(policy);
    m
}

fn with_critics(critics: CriticPanel) -> Models {
    let mut m = models(&SyntheticSpec::default());
    m.critics = critics;
    m
}

fn fn_critic(name: &str, kind: CriticKind, score: f32) -> Arc<dyn Critic> {
    Arc::new(FnCritic::new(
        name,
        kind,
        ScoreRange::UNIT,
        move |_p: &PathRef<'_>| score,
    ))
}

fn run(models: &Models, cfg: &SearchConfig) -> Result<SearchReport, Error> {
    search(problem(), TreeId(0), cfg, Evaluator::direct(models))
}

/// Runs `searches` searches at once through one batcher; every one must end (the test would hang
/// otherwise) and each result is returned.
fn run_batched(
    models: &Models,
    cfg: &SearchConfig,
    searches: usize,
) -> Vec<Result<SearchReport, Error>> {
    let probs = problems(searches, 4, 6);
    Batcher::run(models, &BatchConfig::default(), |b| {
        std::thread::scope(|s| {
            let handles: Vec<_> = probs
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    s.spawn(move || {
                        search(
                            p.clone(),
                            TreeId(i as u32),
                            cfg,
                            Evaluator::batched(models, b),
                        )
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .expect("a search panicked instead of returning an error")
                })
                .collect()
        })
    })
    .expect("valid batch config")
}

/// The full `Display` chain of an error (`source()` included).
fn chain(e: &Error) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(inner) = src {
        s.push_str(" | ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

fn configs() -> Vec<(&'static str, SearchConfig)> {
    let mut full = SearchConfig::mcts_dpo();
    full.move_by_move.enabled = false;
    let mut greedy = SearchConfig::alphallm();
    greedy.algorithm = ponder_engine::config::Algorithm::Greedy;
    let mut sc = SearchConfig::alphallm();
    sc.algorithm = ponder_engine::config::Algorithm::SelfConsistency;
    let mut beam = SearchConfig::alphallm();
    beam.algorithm = ponder_engine::config::Algorithm::Beam;
    vec![
        ("alphallm", SearchConfig::alphallm()),
        ("mcts-dpo", SearchConfig::mcts_dpo()),
        ("mcts-dpo-full", full),
        ("greedy", greedy),
        ("self-consistency", sc),
        ("beam", beam),
    ]
}

#[test]
fn failing_policy_is_a_policy_error_naming_it() {
    let m = with_policy(Arc::new(FailingPolicy::new(0)));
    for (label, cfg) in configs() {
        let e = run(&m, &cfg).expect_err(label);
        match &e {
            Error::Policy { name, source } => {
                assert_eq!(name, "failing-policy", "{label}");
                assert!(source.to_string().contains("on fire"), "{label}: {source}");
            }
            other => panic!("{label}: expected Error::Policy, got {other:?}"),
        }
        assert!(e.to_string().contains("failing-policy"), "{label}: {e}");
    }
}

#[test]
fn policy_failing_mid_search_with_many_threads_is_an_error() {
    for fail_at in [1, 5, 40] {
        // The tree searches make a policy call per simulation, so every budget here reaches the
        // failing call (the baselines make only a handful of calls).
        for (label, mut cfg) in configs().into_iter().take(3) {
            cfg.parallel.threads = 8;
            cfg.budget.simulations = 200;
            let m = with_policy(Arc::new(FailingPolicy::new(fail_at)));
            let e = run(&m, &cfg).expect_err(label);
            assert!(
                matches!(&e, Error::Policy { name, .. } if name == "failing-policy"),
                "{label} fail_at {fail_at}: {e:?}"
            );
        }
    }
}

#[test]
fn wrong_number_of_steps_is_a_policy_contract_error() {
    for (policy, name) in [
        (Arc::new(ShortPolicy) as Arc<dyn Policy>, "short-policy"),
        (Arc::new(MissingAnswerPolicy), "missing-answer-policy"),
    ] {
        let m = with_policy(policy);
        for (label, cfg) in configs() {
            let e = run(&m, &cfg).expect_err(label);
            match &e {
                Error::PolicyContract { name: n, message } => {
                    assert_eq!(n, name, "{label}");
                    assert!(!message.is_empty());
                }
                other => panic!("{label} {name}: expected PolicyContract, got {other:?}"),
            }
            assert!(e.to_string().contains(name), "{label}: {e}");
        }
    }
}

#[test]
fn out_of_range_and_nan_critic_scores_are_contract_errors() {
    for kind in [CriticKind::Value, CriticKind::Process, CriticKind::Outcome] {
        for bad in [2.0f32, -0.5, f32::NAN, f32::INFINITY] {
            let m = with_critics(
                CriticPanel::new()
                    .with(fn_critic("bad-critic", kind, bad))
                    .unwrap(),
            );
            // Self-consistency scores terminals at once, so the outcome critic is reached too.
            for (label, cfg) in configs() {
                let e = run(&m, &cfg).expect_err(label);
                match &e {
                    Error::CriticContract { name, message } => {
                        assert_eq!(name, "bad-critic");
                        assert!(message.contains("outside"), "{label}: {message}");
                    }
                    other => {
                        panic!("{label} {kind:?} {bad}: expected CriticContract, got {other:?}")
                    }
                }
                assert!(e.to_string().contains("bad-critic"));
            }
        }
    }
}

#[test]
fn in_range_critic_scores_are_accepted() {
    // The boundary values and the declared slack are fine: the same panel with 1.0 works.
    for score in [0.0f32, 1.0, 1.0 + 5e-5] {
        let panel = CriticPanel::new()
            .with(fn_critic("v", CriticKind::Value, score))
            .and_then(|p| p.with(fn_critic("p", CriticKind::Process, score)))
            .and_then(|p| p.with(fn_critic("o", CriticKind::Outcome, score)))
            .unwrap();
        let m = with_critics(panel);
        for (label, cfg) in configs() {
            let r = run(&m, &cfg).unwrap_or_else(|e| panic!("{label} {score}: {e}"));
            assert!(r.answer.is_some(), "{label}");
        }
    }
}

#[test]
fn wrong_number_of_scores_and_critic_failures() {
    let m = with_critics(CriticPanel::new().with(Arc::new(EmptyCritic)).unwrap());
    let e = run(&m, &SearchConfig::alphallm()).unwrap_err();
    assert!(
        matches!(&e, Error::CriticContract { name, message } if name == "empty-critic" && message.contains("0 scores")),
        "{e:?}"
    );
    let m = with_critics(CriticPanel::new().with(Arc::new(BrokenCritic)).unwrap());
    let e = run(&m, &SearchConfig::alphallm()).unwrap_err();
    match &e {
        Error::Critic { name, source } => {
            assert_eq!(name, "broken-critic");
            assert!(source.to_string().contains("weights missing"));
        }
        other => panic!("expected Error::Critic, got {other:?}"),
    }
}

#[test]
fn invalid_config_names_the_field() {
    let m = models(&SyntheticSpec::default());
    type Breaker = fn(&mut SearchConfig);
    let cases: Vec<(&str, Breaker)> = vec![
        ("parallel.threads", |c| c.parallel.threads = 0),
        ("budget.simulations", |c| c.budget.simulations = 0),
        ("budget.max_tokens", |c| c.budget.max_tokens = Some(0)),
        ("budget.wall_seconds", |c| {
            c.budget.wall_seconds = Some(-1.0)
        }),
        ("budget.max_nodes", |c| c.budget.max_nodes = 1),
        ("selection.c", |c| c.selection.c = f64::NAN),
        ("expansion.k_root", |c| c.expansion.k_root = 0),
        ("parallel.virtual_loss", |c| c.parallel.virtual_loss = -1.0),
        ("scoring.outcome_reward", |c| {
            c.scoring.outcome_reward = f32::NAN
        }),
        ("baseline.n", |c| c.baseline.n = 0),
    ];
    for (field, break_it) in cases {
        let mut cfg = SearchConfig::alphallm();
        break_it(&mut cfg);
        let e = run(&m, &cfg).expect_err(field);
        match &e {
            Error::Config { field: f, .. } => assert_eq!(f, field),
            other => panic!("{field}: expected Error::Config, got {other:?}"),
        }
        assert!(e.to_string().contains(field), "{e}");
    }
}

#[test]
fn invalid_batch_config_is_a_config_error() {
    let m = models(&SyntheticSpec::default());
    for (field, cfg) in [
        (
            "batch.max_batch",
            BatchConfig {
                max_batch: 0,
                max_wait_ms: 1.0,
            },
        ),
        (
            "batch.max_wait_ms",
            BatchConfig {
                max_batch: 4,
                max_wait_ms: f64::NAN,
            },
        ),
    ] {
        let ran = std::sync::atomic::AtomicBool::new(false);
        let e = Batcher::run(&m, &cfg, |_| ran.store(true, Ordering::Relaxed)).unwrap_err();
        assert!(
            matches!(&e, Error::Config { field: f, .. } if f == field),
            "{e:?}"
        );
        assert!(
            !ran.load(Ordering::Relaxed),
            "the closure must not run with a bad config"
        );
    }
}

#[test]
fn batched_searches_return_errors_without_hanging() {
    // Several 8-thread searches share one batcher; the first failure of each must come back as
    // an error, and every search must return.
    let mut cfg = SearchConfig::alphallm();
    cfg.parallel.threads = 8;
    cfg.budget.simulations = 100;

    // A failing policy, at once and mid-search.
    for fail_at in [0, 3] {
        let m = with_policy(Arc::new(FailingPolicy::new(fail_at)));
        for r in run_batched(&m, &cfg, 4) {
            let e = r.expect_err("failing policy");
            assert!(
                matches!(&e, Error::Policy { name, .. } if name == "failing-policy"),
                "{e:?}"
            );
            assert!(chain(&e).contains("on fire"), "{}", chain(&e));
        }
    }

    // An out-of-range critic.
    let m = with_critics(
        CriticPanel::new()
            .with(fn_critic("bad-critic", CriticKind::Process, 2.0))
            .unwrap(),
    );
    for r in run_batched(&m, &cfg, 4) {
        let e = r.expect_err("bad critic");
        // Directly this is `Error::CriticContract`; through the batcher the contract error is
        // re-wrapped as `Error::Critic` (see the report). Only the name and the message are
        // asserted here.
        assert!(chain(&e).contains("bad-critic"), "{}", chain(&e));
        assert!(
            chain(&e).contains("outside its declared range"),
            "{}",
            chain(&e)
        );
    }

    // A policy breaking its contract.
    let m = with_policy(Arc::new(ShortPolicy));
    for r in run_batched(&m, &cfg, 4) {
        let e = r.expect_err("short policy");
        assert!(matches!(&e, Error::PolicyContract { .. }), "{e:?}");
        assert!(chain(&e).contains("short-policy"), "{}", chain(&e));
        assert!(chain(&e).contains("broke its contract"), "{}", chain(&e));
    }

    // An invalid search config through the batcher.
    let mut bad = cfg.clone();
    bad.parallel.threads = 0;
    let m = models(&SyntheticSpec::default());
    for r in run_batched(&m, &bad, 2) {
        let e = r.expect_err("threads = 0");
        assert!(
            matches!(&e, Error::Config { field, .. } if field == "parallel.threads"),
            "{e:?}"
        );
    }

    // And the same batcher setup works when nothing is wrong.
    for r in run_batched(&m, &cfg, 4) {
        let r = r.expect("healthy search");
        assert!(r.answer.is_some());
    }
}

#[test]
fn contract_errors_through_the_batcher() {
    // A contract violation keeps its variant through the batcher.
    let mut cfg = SearchConfig::alphallm();
    cfg.parallel.threads = 4;
    let m = with_critics(
        CriticPanel::new()
            .with(fn_critic("bad-critic", CriticKind::Value, f32::NAN))
            .unwrap(),
    );
    let direct = run(&m, &cfg).unwrap_err();
    assert!(matches!(direct, Error::CriticContract { .. }), "{direct:?}");
    let batched = run_batched(&m, &cfg, 1).pop().unwrap().unwrap_err();
    assert!(
        matches!(&batched, Error::CriticContract { .. }),
        "{batched:?}"
    );
    assert!(
        chain(&batched).contains("bad-critic"),
        "{}",
        chain(&batched)
    );
    assert!(
        chain(&batched).contains("broke its contract"),
        "{}",
        chain(&batched)
    );
    let m = with_policy(Arc::new(ShortPolicy));
    let direct = run(&m, &cfg).unwrap_err();
    assert!(matches!(direct, Error::PolicyContract { .. }), "{direct:?}");
    let batched = run_batched(&m, &cfg, 1).pop().unwrap().unwrap_err();
    assert!(
        matches!(&batched, Error::PolicyContract { .. }),
        "{batched:?}"
    );
    assert!(
        chain(&batched).contains("short-policy"),
        "{}",
        chain(&batched)
    );
    assert!(
        chain(&batched).contains("broke its contract"),
        "{}",
        chain(&batched)
    );
}

/// Fast rollouts without an outcome critic to score them (or without a rollout policy) are a
/// config error naming the field, not silently skipped.
#[test]
fn rollouts_without_an_outcome_critic_are_a_config_error() {
    let full = models(&SyntheticSpec::default());
    let no_orm = Models {
        critics: CriticPanel::new(),
        ..full.clone()
    };
    let no_rollout = Models {
        rollout: None,
        ..full.clone()
    };
    let mut cfg = SearchConfig::alphallm();
    cfg.budget.simulations = 4;
    cfg.scoring.rollouts = 2;
    for m in [&no_orm, &no_rollout] {
        let e = search(
            problems(1, 3, 1).remove(0),
            TreeId(0),
            &cfg,
            Evaluator::direct(m),
        )
        .unwrap_err();
        assert!(
            matches!(&e, Error::Config { field, .. } if field == "search.scoring.rollouts"),
            "{e}"
        );
    }
    assert!(
        search(
            problems(1, 3, 1).remove(0),
            TreeId(0),
            &cfg,
            Evaluator::direct(&full)
        )
        .is_ok()
    );
}
