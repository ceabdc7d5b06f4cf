//! The step rule holds for every stored node, whatever the policy returns: a policy that says
//! its rule ([`Policy::step_rule`]) gets steps that run past a boundary cut there, and whole
//! solutions (`to_end`: best-of-N samples, the last step at the depth limit, answer
//! completions) stored as chains of one-step nodes — for every algorithm, thread count and
//! batching. Token counts are conserved: the nodes never hold more tokens than were generated.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use ponder_engine::config::SearchConfig;
use ponder_engine::{
    BatchConfig, Batcher, Boundary, BoxError, Evaluator, ExpandRequest, Models, NodeId, Policy,
    SearchReport, Step, StepRule, TreeId, search,
};
use ponder_testkit::synthetic::{SyntheticSpec, models, problems};

mod common;

/// A test double: the synthetic policy under a one-line step rule. With `sloppy`, every step it
/// returns for a one-step request carries two more lines (as a server that ignores `stop`
/// does), every finished whole solution ten lines after its answer, and the tokens they cost
/// are counted.
struct RuledPolicy {
    inner: Arc<dyn Policy>,
    rule: StepRule,
    sloppy: bool,
    /// Give whole solutions token ids and offer a wrong split of them (the whole solution as
    /// one piece), which the search must refuse.
    bad_split: bool,
    generated: AtomicU64,
}

impl Policy for RuledPolicy {
    fn name(&self) -> &str {
        "ruled-synthetic"
    }
    fn propose(&self, requests: &[ExpandRequest<'_>]) -> Result<Vec<Vec<Step>>, BoxError> {
        let mut out = self.inner.propose(requests)?;
        for (r, steps) in requests.iter().zip(&mut out) {
            for s in steps.iter_mut() {
                let room = r.max_tokens.unwrap_or(u32::MAX).min(self.rule.max_tokens);
                if self.sloppy && !r.to_end && !s.finished && s.n_tokens + 6 <= room {
                    s.text.push_str("9 + 1 = 10\n10 + 1 = 11\n");
                    s.n_tokens += 6;
                }
                let end_room = r.max_tokens.unwrap_or(u32::MAX).min(512);
                if self.sloppy && r.to_end && s.finished && s.n_tokens + 40 <= end_room {
                    // Lines after the answer (a server that keeps writing): cut off, unheld.
                    s.text.push_str(&"9 + 9 = 18\n".repeat(10));
                    s.n_tokens += 40;
                }
                if self.bad_split && r.to_end {
                    s.tokens = Some(vec![7; s.n_tokens as usize]);
                }
            }
        }
        let n: u64 = out.iter().flatten().map(|s| u64::from(s.n_tokens)).sum();
        // Relaxed: a test counter read after the search joined.
        self.generated.fetch_add(n, Ordering::Relaxed);
        Ok(out)
    }
    fn max_step_tokens(&self, to_end: bool) -> Option<u32> {
        self.inner.max_step_tokens(to_end)
    }
    fn step_rule(&self) -> Option<&StepRule> {
        Some(&self.rule)
    }
    fn split_steps(&self, step: &Step) -> Option<Vec<Step>> {
        self.bad_split.then(|| vec![step.clone()])
    }
}

fn rule() -> StepRule {
    StepRule {
        boundary: Boundary::Newline,
        answer_pattern: Some("The answer is".into()),
        max_tokens: 32,
    }
}

fn ruled(m: &Models, sloppy: bool) -> (Models, Arc<RuledPolicy>) {
    let p = Arc::new(RuledPolicy {
        inner: m.policy.clone(),
        rule: rule(),
        sloppy,
        bad_split: sloppy,
        generated: AtomicU64::new(0),
    });
    let dyn_p: Arc<dyn Policy> = p.clone();
    (
        Models {
            policy: dyn_p.clone(),
            rollout: Some(dyn_p),
            critics: m.critics.clone(),
            task: m.task.clone(),
        },
        p,
    )
}

fn config(alg: u8, threads: u32) -> SearchConfig {
    let mut cfg = common::algorithm(alg, threads);
    cfg.budget.simulations = 40;
    // A shallow depth limit, so MCTS also stores whole solutions (the last step at the limit).
    cfg.budget.max_depth = 3;
    cfg
}

/// Every stored node is one step under the rule, within its cap; every node is reachable from
/// the root through its parent's children; node tokens add up to at most what was generated.
fn check_tree(r: &SearchReport, generated: u64, what: &str) {
    let t = &*r.tree;
    let rule = rule();
    let mut held = 0u64;
    for n in t.node_ids().filter(|&n| n != NodeId::ROOT) {
        let d = t.data(n);
        let pieces = rule.split(&d.step.text);
        assert_eq!(
            pieces.len(),
            1,
            "{what}: node {} holds {} steps: {:?}",
            n.0,
            pieces.len(),
            d.step.text
        );
        assert!(
            d.step.n_tokens <= rule.max_tokens,
            "{what}: node {} has {} tokens",
            n.0,
            d.step.n_tokens
        );
        assert!(
            t.children(d.parent).any(|c| c == n),
            "{what}: node {} is not a child of its parent",
            n.0
        );
        held += u64::from(d.step.n_tokens);
    }
    assert!(
        held <= generated,
        "{what}: nodes hold {held} tokens of {generated} generated"
    );
    assert_eq!(
        r.stats.tokens, generated,
        "{what}: the engine counts them all"
    );
}

#[test]
fn every_node_is_one_step_for_every_algorithm() {
    for alg in 0u8..6 {
        for threads in [1u32, 4] {
            for batched in [false, true] {
                for sloppy in [false, true] {
                    let (m, p) = ruled(&models(&SyntheticSpec::default()), sloppy);
                    let cfg = config(alg, threads);
                    let prob = problems(1, 5, 7 + u64::from(alg)).remove(0);
                    let r = if batched {
                        Batcher::run(&m, &BatchConfig::default(), |b| {
                            search(prob.clone(), TreeId(0), &cfg, Evaluator::batched(&m, b))
                        })
                        .expect("batcher")
                    } else {
                        search(prob, TreeId(0), &cfg, Evaluator::direct(&m))
                    }
                    .expect("search");
                    let what =
                        format!("alg {alg} threads {threads} batched {batched} sloppy {sloppy}");
                    check_tree(&r, p.generated.load(Ordering::Relaxed), &what);
                    if sloppy && alg != 3 && alg != 4 {
                        assert!(r.stats.cut_steps > 0, "{what}: nothing was cut");
                    }
                }
            }
        }
    }
}

#[test]
fn whole_solutions_become_chains_with_the_same_answers() {
    // Best-of-N over level-5 problems: every sample is a five-line solution.
    for seed in 0..6u64 {
        let base = models(&SyntheticSpec::default());
        let (m, p) = ruled(&base, false);
        let cfg = config(3, 1);
        let prob = problems(1, 5, seed).remove(0);
        let plain = search(prob.clone(), TreeId(0), &cfg, Evaluator::direct(&base)).unwrap();
        let chained = search(prob, TreeId(0), &cfg, Evaluator::direct(&m)).unwrap();
        check_tree(&chained, p.generated.load(Ordering::Relaxed), "best-of-n");
        assert!(chained.stats.split_steps > 0);
        assert_eq!(plain.stats.tokens, chained.stats.tokens);
        // The same samples: the same multiset of answers at the terminals.
        let answers = |r: &SearchReport| {
            let t = &*r.tree;
            let mut v: Vec<Option<String>> = t
                .node_ids()
                .filter(|&n| t.data(n).terminal)
                .map(|n| t.data(n).answer.clone())
                .collect();
            v.sort();
            v
        };
        assert_eq!(answers(&plain), answers(&chained), "seed {seed}");
        // Ranked alike: a chain's end is scored as the whole solution was.
        let chosen = |r: &SearchReport| r.answer.as_ref().and_then(|a| a.answer.clone());
        assert_eq!(chosen(&plain), chosen(&chained), "seed {seed}");
        let scores = |r: &SearchReport| {
            let t = &*r.tree;
            let mut v: Vec<u32> = t
                .node_ids()
                .filter(|&n| t.data(n).terminal)
                .map(|n| t.eval(n).unwrap().score.to_bits())
                .collect();
            v.sort_unstable();
            v
        };
        assert_eq!(scores(&plain), scores(&chained), "seed {seed}");
        // Each chain's last node is terminal and sits at the depth of its solution's lines.
        let t = &*chained.tree;
        for n in t.node_ids().filter(|&n| t.data(n).terminal) {
            assert!(t.depth(n) >= 1);
            assert_eq!(t.child_count(n), 0);
        }
        // Inner chain nodes are not terminal and have exactly one child.
        for n in t
            .node_ids()
            .filter(|&n| n != NodeId::ROOT && !t.data(n).terminal)
        {
            assert_eq!(t.child_count(n), 1, "inner node {}", n.0);
        }
    }
}

#[test]
fn split_keeps_one_step_per_piece() {
    let r = rule();
    let pieces = r.split("\n1 + 2 = 3\n3 + 4 = 7\nThe answer is 7.\ntrailing junk\n");
    let texts: Vec<&str> = pieces
        .iter()
        .map(|p| &"\n1 + 2 = 3\n3 + 4 = 7\nThe answer is 7.\ntrailing junk\n"[p.start..p.end])
        .collect();
    assert_eq!(
        texts,
        ["\n1 + 2 = 3\n", "3 + 4 = 7\n", "The answer is 7.\n"]
    );
    assert!(pieces[2].finished && !pieces[1].finished);
    // Text after the last boundary is a piece of its own; whitespace joins the one before.
    let p = r.split("a\nb");
    assert_eq!((p.len(), p[1].start, p[1].end), (2, 2, 3));
    let p = r.split("a\n  ");
    assert_eq!((p.len(), p[0].end), (1, 4));
    assert!(r.split("").is_empty());
    let none = StepRule {
        boundary: Boundary::None,
        ..rule()
    };
    assert_eq!(none.split("a\nb\nc").len(), 1);
}
