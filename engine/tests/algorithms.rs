//! The configurable pieces of the papers each do what they claim: fast rollouts, state merge,
//! greedy first child, UCB2, answer rules, PRM aggregation, code-style importance.

use ponder_engine::config::{AnswerRule, Importance, SelectionRule};
use ponder_engine::{
    Evaluator, Models, NodeId, PrmAggregate, SearchConfig, SearchReport, Task, TreeId, search,
};
use ponder_testkit::synthetic::{SyntheticSpec, SyntheticTask, models, problems};

fn run(m: &Models, cfg: &SearchConfig, level: u32, seed: u64) -> SearchReport {
    search(
        problems(1, level, seed).remove(0),
        TreeId(0),
        cfg,
        Evaluator::direct(m),
    )
    .unwrap()
}

#[test]
fn fast_rollouts_score_open_nodes_with_the_outcome_critic() {
    let m = models(&SyntheticSpec::default());
    let mut cfg = SearchConfig::alphallm();
    cfg.budget.simulations = 24;
    cfg.scoring.rollouts = 4;
    let r = run(&m, &cfg, 4, 3);
    assert!(r.stats.rollout_requests > 0);
    let t = &*r.tree;
    let open: Vec<NodeId> = t
        .node_ids()
        .filter(|&n| n != NodeId::ROOT && !t.data(n).terminal)
        .collect();
    assert!(!open.is_empty());
    for n in open {
        let orm = t.eval(n).unwrap().orm;
        assert!(
            orm.is_some_and(|o| (0.0..=1.0).contains(&o)),
            "node {}: {orm:?}",
            n.0
        );
    }
    // Without rollouts, open nodes have no outcome score.
    cfg.scoring.rollouts = 0;
    let r = run(&m, &cfg, 4, 3);
    assert_eq!(r.stats.rollout_requests, 0);
    let t = &*r.tree;
    assert!(
        t.node_ids()
            .filter(|&n| !t.data(n).terminal)
            .all(|n| t.eval(n).unwrap().orm.is_none())
    );
}

#[test]
fn edit_distance_merge_resamples_and_keeps_siblings_apart() {
    let m = models(&SyntheticSpec::default());
    let mut cfg = SearchConfig::alphallm();
    cfg.budget.simulations = 48;
    cfg.expansion.merge.edit_distance = 3;
    let r = run(&m, &cfg, 4, 5);
    assert!(r.stats.resamples > 0, "{:?}", r.stats);
    let t = &*r.tree;
    for n in t.node_ids() {
        let kids = t.children_in_order(n);
        for (i, &a) in kids.iter().enumerate() {
            for &b in &kids[i + 1..] {
                let (ta, tb) = (&t.data(a).step.text, &t.data(b).step.text);
                assert_ne!(ta, tb, "exact duplicates under node {}", n.0);
            }
        }
    }
}

#[test]
fn greedy_first_child_is_the_greedy_step() {
    let m = models(&SyntheticSpec::default());
    let mut cfg = SearchConfig::alphallm();
    cfg.budget.simulations = 1;
    cfg.expansion.greedy_first_child = true;
    let a = run(&m, &cfg, 4, 8);
    let mut greedy = SearchConfig::alphallm();
    greedy.algorithm = ponder_engine::config::Algorithm::Greedy;
    let g = run(&m, &greedy, 4, 8);
    let first = |r: &SearchReport| {
        let c = r.tree.children_in_order(NodeId::ROOT)[0];
        r.tree.data(c).step.text.clone()
    };
    assert_eq!(first(&a), first(&g));
}

#[test]
fn every_selection_and_answer_rule_finds_answers() {
    let m = models(&SyntheticSpec::default());
    let task = SyntheticTask;
    for rule in [SelectionRule::Uct, SelectionRule::Ucb2, SelectionRule::Puct] {
        for answer in [
            AnswerRule::MostVisited,
            AnswerRule::BestQ,
            AnswerRule::OrmRerank,
            AnswerRule::WeightedVote,
        ] {
            let mut cfg = SearchConfig::alphallm();
            cfg.selection.rule = rule;
            cfg.answer = answer;
            cfg.budget.simulations = 64;
            let mut right = 0;
            for seed in 0..12 {
                let r = run(&m, &cfg, 3, seed);
                let a = r.answer.as_ref().expect("an answer");
                assert!(r.tree.data(a.node).terminal, "{rule:?}/{answer:?}");
                let gold = r.tree.problem().gold.clone().unwrap();
                let ok = a.answer.as_deref().is_some_and(|x| task.check(x, &gold));
                assert_eq!(Some(ok), a.correct);
                right += usize::from(ok);
            }
            // p_correct = 0.6 per step over 3 steps: a blind guess is right 22% of the time.
            assert!(right >= 5, "{rule:?}/{answer:?}: {right}/12");
        }
    }
}

#[test]
fn prm_aggregation_changes_scores_as_documented() {
    let m = models(&SyntheticSpec::default());
    for agg in [
        PrmAggregate::Latest,
        PrmAggregate::Min,
        PrmAggregate::Max,
        PrmAggregate::Avg,
    ] {
        let mut cfg = SearchConfig::alphallm();
        cfg.budget.simulations = 32;
        cfg.scoring.value_weight = 0.0;
        cfg.scoring.orm_weight = 0.0;
        cfg.scoring.prm_aggregate = agg;
        let r = run(&m, &cfg, 4, 2);
        let t = &*r.tree;
        // With only the PRM weighted, a node's score is the aggregate of its path's PRM scores.
        for n in t.node_ids().filter(|&n| n != NodeId::ROOT) {
            let prms: Vec<f32> = t
                .path_to(n)
                .into_iter()
                .skip(1)
                .map(|i| t.eval(i).unwrap().prm.unwrap())
                .collect();
            let expect = agg.apply(&prms).unwrap();
            let got = t.eval(n).unwrap().score;
            assert!(
                (got - expect).abs() < 1e-5,
                "{agg:?} node {}: {got} vs {expect}",
                n.0
            );
        }
    }
}

#[test]
fn code_importance_grows_widths_beyond_c_min() {
    let m = models(&SyntheticSpec {
        critic_noise: 0.0,
        ..SyntheticSpec::default()
    });
    let mut cfg = SearchConfig::alphallm();
    cfg.budget.simulations = 200;
    cfg.expansion.widening.importance = Importance::Code;
    cfg.expansion.widening.alpha = 8.0;
    cfg.expansion.widening.c_min_root = 2;
    cfg.expansion.widening.c_min = 2;
    let r = run(&m, &cfg, 4, 4);
    let t = &*r.tree;
    let widest = t.node_ids().map(|n| t.child_count(n)).max().unwrap();
    assert!(
        widest > 2,
        "importance never widened a node beyond c_min (widest {widest})"
    );
    cfg.expansion.widening.importance = Importance::Fixed;
    let r = run(&m, &cfg, 4, 4);
    let t = &*r.tree;
    assert!(t.node_ids().all(|n| t.child_count(n) <= 2));
}
