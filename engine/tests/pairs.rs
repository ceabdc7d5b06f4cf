//! Training-data extraction from finished synthetic searches: step-level preference pairs (every
//! rejected rule, both scopes, caps and filters), PRM records, SFT traces, JSONL shape and DOT.
//!
//! The synthetic task's truth is known, so the tests also check that chosen steps are right
//! more often than rejected ones.

use std::collections::HashMap;

use ponder_engine::config::{BackupRule, SearchConfig};
use ponder_engine::extract::{
    self, OutputConfig, PairConfig, PairRecord, PairScope, PrmConfig, RejectedRule,
};
use ponder_engine::{Evaluator, Models, NodeId, Problem, SearchReport, Task, Tree, TreeId, search};
use ponder_testkit::synthetic::{Arithmetic, SyntheticSpec, SyntheticTask, models, problems};

fn run(models: &Models, cfg: &SearchConfig, p: &Problem, id: u32) -> SearchReport {
    search(p.clone(), TreeId(id), cfg, Evaluator::direct(models))
        .unwrap_or_else(|e| panic!("{}: {e}", p.id))
}

/// The configurations pairs are taken from (one thread: sibling texts are then unique).
fn configs() -> Vec<(&'static str, SearchConfig)> {
    let mut alpha = SearchConfig::alphallm();
    alpha.budget.simulations = 64;
    let mut dpo = SearchConfig::mcts_dpo();
    dpo.budget.simulations = 8;
    let mut dpo_full = SearchConfig::mcts_dpo();
    dpo_full.move_by_move.enabled = false;
    dpo_full.budget.simulations = 48;
    let mut dpo_no_gold = dpo_full.clone();
    dpo_no_gold.scoring.outcome_reward = 0.0;
    vec![
        ("alphallm", alpha),
        ("mcts-dpo", dpo),
        ("mcts-dpo-full", dpo_full),
        ("mcts-dpo-full-no-reward", dpo_no_gold),
    ]
}

fn pair_cfg(scope: PairScope, rejected: RejectedRule) -> PairConfig {
    PairConfig {
        scope,
        rejected,
        max_pairs_per_tree: 1000,
        ..PairConfig::default()
    }
}

/// Q as the search saw it (the same definition extraction uses).
fn q(tree: &Tree, cfg: &SearchConfig, n: NodeId) -> f64 {
    let s = tree.stats(n);
    match cfg.backup {
        BackupRule::MeanLeaf if s.visits == 0 => f64::from(tree.eval(n).unwrap().score),
        BackupRule::MeanLeaf => s.mean(),
        BackupRule::QRPlusV => s.q,
    }
}

/// The node whose prompt (tree prompt plus path text) is `prompt`.
fn node_of_prompt(tree: &Tree, prompt: &str) -> NodeId {
    let rest = prompt
        .strip_prefix(tree.prompt())
        .unwrap_or_else(|| panic!("prompt does not start with the tree prompt: {prompt:?}"));
    let found: Vec<NodeId> = tree
        .node_ids()
        .filter(|&n| tree.path_text(n) == rest)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "path text {rest:?} matches {} nodes",
        found.len()
    );
    found[0]
}

fn child_with_text(tree: &Tree, parent: NodeId, text: &str) -> NodeId {
    let found: Vec<NodeId> = tree
        .children(parent)
        .filter(|&c| tree.data(c).step.text == text)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "{} children of {} have text {text:?}",
        found.len(),
        parent.0
    );
    found[0]
}

/// Checks one pair against the tree; returns (parent, chosen, rejected).
fn check_pair(
    r: &SearchReport,
    cfg: &SearchConfig,
    pc: &PairConfig,
    pair: &PairRecord,
) -> (NodeId, NodeId, NodeId) {
    let t = &*r.tree;
    assert_eq!(pair.schema_version, extract::SCHEMA_VERSION);
    assert_eq!(pair.problem_id, t.problem().id);
    assert_eq!(pair.tree_id, t.id().0);
    assert!(pair.prompt.starts_with(t.prompt()));
    assert_ne!(pair.chosen, pair.rejected);
    assert!(
        pair.q_chosen > pair.q_rejected,
        "{} <= {}",
        pair.q_chosen,
        pair.q_rejected
    );
    assert!(pair.q_chosen - pair.q_rejected >= pc.min_q_gap);
    assert!(pair.depth >= 1);
    assert!(pair.n_chosen >= pc.min_visits && pair.n_rejected >= pc.min_visits);
    let total = f64::from(pair.n_chosen) + f64::from(pair.n_rejected);
    let want = if total > 0.0 {
        (f64::from(pair.n_rejected) / total).min(0.5)
    } else {
        0.0
    };
    assert_eq!(pair.label_smoothing, want, "label smoothing");
    assert!((0.0..=0.5).contains(&pair.label_smoothing));
    assert_eq!(
        pair.final_correct,
        r.answer.as_ref().and_then(|a| a.correct)
    );

    // Chosen and rejected are siblings under the prompt's node.
    let parent = node_of_prompt(t, &pair.prompt);
    // The prefix alone is the parent's path text; the prompt is the tree prompt plus it.
    assert_eq!(pair.prefix, t.path_text(parent));
    assert_eq!(pair.prompt, format!("{}{}", t.prompt(), pair.prefix));
    let w = child_with_text(t, parent, &pair.chosen);
    let l = child_with_text(t, parent, &pair.rejected);
    assert_ne!(w, l);
    assert_eq!(t.data(w).depth, pair.depth);
    assert_eq!(t.data(l).depth, pair.depth);
    assert_eq!(t.data(parent).depth + 1, pair.depth);
    assert_eq!(pair.n_chosen, t.stats(w).visits);
    assert_eq!(pair.n_rejected, t.stats(l).visits);
    assert_eq!(pair.q_chosen, q(t, cfg, w));
    assert_eq!(pair.q_rejected, q(t, cfg, l));
    assert_eq!(pair.critics.chosen.score, t.eval(w).unwrap().score);
    assert_eq!(pair.critics.rejected.score, t.eval(l).unwrap().score);
    assert_eq!(pair.critics.chosen.value, t.eval(w).unwrap().value);
    assert_eq!(pair.critics.rejected.prm, t.eval(l).unwrap().prm);

    // Chosen is the best candidate; the rejected one follows the rule.
    let mut qs: Vec<f64> = t
        .children(parent)
        .filter(|&c| t.stats(c).visits >= pc.min_visits)
        .map(|c| q(t, cfg, c))
        .collect();
    qs.sort_by(|a, b| b.partial_cmp(a).unwrap());
    assert!(qs.len() >= 2);
    assert_eq!(pair.q_chosen, qs[0], "chosen has the best Q");
    match pc.rejected {
        RejectedRule::MinQ => assert_eq!(pair.q_rejected, *qs.last().unwrap(), "min-Q rejected"),
        RejectedRule::Second => assert_eq!(pair.q_rejected, qs[1], "second-best rejected"),
        RejectedRule::Random => assert!(qs[1..].contains(&pair.q_rejected)),
    }
    (parent, w, l)
}

fn check_scope(r: &SearchReport, pc: &PairConfig, parents: &[NodeId]) {
    let t = &*r.tree;
    match pc.scope {
        PairScope::AnswerPath => {
            // The parents lie on the answer path, in order, root first.
            let end = r
                .answer
                .as_ref()
                .map_or(*r.committed.last().unwrap(), |a| a.node);
            let path = t.path_to(end);
            let mut last = None;
            for p in parents {
                let at = path
                    .iter()
                    .position(|x| x == p)
                    .expect("parent on the answer path");
                assert!(at + 1 < path.len());
                assert!(
                    last.is_none_or(|l| at > l),
                    "one pair per parent, root first"
                );
                last = Some(at);
            }
        }
        PairScope::Tree => {
            let depths: Vec<u32> = parents.iter().map(|&p| t.data(p).depth).collect();
            assert!(
                depths.windows(2).all(|w| w[0] <= w[1]),
                "shallowest first: {depths:?}"
            );
            let mut uniq = parents.to_vec();
            uniq.sort();
            uniq.dedup();
            assert_eq!(uniq.len(), parents.len(), "one pair per parent");
        }
    }
}

#[test]
fn pairs_are_sibling_steps_with_consistent_metadata() {
    let m = models(&SyntheticSpec::default());
    let probs = problems(12, 4, 21);
    let mut total = [0usize; 2];
    for (label, cfg) in configs() {
        for (i, p) in probs.iter().enumerate() {
            let r = run(&m, &cfg, p, i as u32);
            for (s, scope) in [PairScope::AnswerPath, PairScope::Tree]
                .into_iter()
                .enumerate()
            {
                for rule in [
                    RejectedRule::MinQ,
                    RejectedRule::Random,
                    RejectedRule::Second,
                ] {
                    let pc = pair_cfg(scope, rule);
                    let out = OutputConfig {
                        pairs: pc.clone(),
                        ..OutputConfig::default()
                    };
                    let pairs = extract::extract(&r, &cfg, &out).pairs;
                    assert_eq!(
                        pairs,
                        extract::pairs(&r, &cfg, &pc),
                        "{label}: extract == pairs"
                    );
                    let parents: Vec<NodeId> = pairs
                        .iter()
                        .map(|pair| check_pair(&r, &cfg, &pc, pair).0)
                        .collect();
                    check_scope(&r, &pc, &parents);
                    if rule == RejectedRule::MinQ {
                        total[s] += pairs.len();
                    }
                }
            }
            // The default configuration is MinQ on the answer path, at most 8 pairs.
            let d = extract::extract(&r, &cfg, &OutputConfig::default()).pairs;
            assert!(d.len() <= 8);
            let mut capped = pair_cfg(PairScope::AnswerPath, RejectedRule::MinQ);
            capped.max_pairs_per_tree = 8;
            assert_eq!(d, extract::pairs(&r, &cfg, &capped), "{label}: defaults");
        }
    }
    assert!(
        total[0] >= 20,
        "too few answer-path pairs to test anything: {}",
        total[0]
    );
    assert!(
        total[1] > total[0],
        "the whole tree holds more pairs: {total:?}"
    );
}

/// Whether `step` (the first line of it) is right after the path `prefix`, replaying the
/// claimed values the way the synthetic policy does.
fn step_is_right(problem: &Arithmetic, prefix: &str, step: &str) -> bool {
    let parse = ponder_testkit::synthetic::parse_line;
    let mut x = problem.start;
    let mut i = 0;
    for line in prefix.lines() {
        if let Some((_, _, _, y)) = parse(line) {
            x = y;
            i += 1;
        }
    }
    let Some(first) = step.lines().next() else {
        return false;
    };
    let Some((sx, _, _, y)) = parse(first) else {
        // No operation line: only an answer line, right when it restates the current value.
        return SyntheticTask.extract_answer(first) == Some(x.to_string())
            && i == problem.ops.len();
    };
    sx == x && problem.ops.get(i).is_some_and(|op| op.apply(x) == y)
}

#[test]
fn chosen_steps_are_right_more_often_than_rejected_steps() {
    // Measured over 60 level-4 problems (MinQ, whole tree), chosen right / rejected right / pairs:
    // alphallm 1078/49/1272, mcts-dpo 262/102/478, mcts-dpo-full 283/98/500,
    // mcts-dpo-full-no-reward 352/75/563. ("Right" is local: the step's arithmetic is right
    // from the value its path claims; pairs where both steps are wrong count for neither.)
    let m = models(&SyntheticSpec::default());
    let probs = problems(60, 4, 22);
    for (label, cfg) in configs() {
        let (mut chosen_right, mut rejected_right, mut n) = (0usize, 0usize, 0usize);
        for (i, p) in probs.iter().enumerate() {
            let r = run(&m, &cfg, p, i as u32);
            let a = Arithmetic::parse(&p.question).unwrap();
            let pc = pair_cfg(PairScope::Tree, RejectedRule::MinQ);
            for pair in extract::pairs(&r, &cfg, &pc) {
                let prefix = &pair.prompt[r.tree.prompt().len()..];
                chosen_right += usize::from(step_is_right(&a, prefix, &pair.chosen));
                rejected_right += usize::from(step_is_right(&a, prefix, &pair.rejected));
                n += 1;
            }
        }
        assert!(n >= 60, "{label}: only {n} pairs");
        assert!(
            chosen_right > 2 * rejected_right,
            "{label}: chosen right {chosen_right}/{n}, rejected right {rejected_right}/{n}"
        );
        assert!(
            (chosen_right - rejected_right) * 5 >= n,
            "{label}: chosen right {chosen_right}/{n}, rejected right {rejected_right}/{n}"
        );
    }
}

#[test]
fn step_replay_helper_agrees_with_the_policy() {
    // The helper above must itself be right: a correct greedy-free path is all right steps.
    let a = Arithmetic::parse("Start with 7. Add 3. Multiply by 2. What is the result?").unwrap();
    assert!(step_is_right(&a, "", "7 + 3 = 10\n"));
    assert!(!step_is_right(&a, "", "7 + 3 = 11\n"));
    assert!(step_is_right(
        &a,
        "7 + 3 = 10\n",
        "10 * 2 = 20. The answer is 20.\n"
    ));
    assert!(step_is_right(
        &a,
        "7 + 3 = 11\n",
        "11 * 2 = 22. The answer is 22.\n"
    ));
    assert!(!step_is_right(
        &a,
        "7 + 3 = 10\n",
        "10 * 2 = 21. The answer is 21.\n"
    ));
}

#[test]
fn caps_filters_and_gaps() {
    let m = models(&SyntheticSpec::default());
    let probs = problems(20, 4, 23);
    let (mut correct_trees, mut wrong_trees) = (0, 0);
    for (label, cfg) in configs() {
        for (i, p) in probs.iter().enumerate() {
            let r = run(&m, &cfg, p, i as u32);
            for scope in [PairScope::AnswerPath, PairScope::Tree] {
                let all = extract::pairs(&r, &cfg, &pair_cfg(scope, RejectedRule::MinQ));
                for cap in [0u32, 1, 2, 3] {
                    let mut pc = pair_cfg(scope, RejectedRule::MinQ);
                    pc.max_pairs_per_tree = cap;
                    let capped = extract::pairs(&r, &cfg, &pc);
                    assert!(capped.len() <= cap as usize, "{label}: cap {cap}");
                    assert_eq!(
                        capped[..],
                        all[..capped.len()],
                        "{label}: a cap keeps a prefix"
                    );
                    assert_eq!(capped.len(), all.len().min(cap as usize));
                }
                let mut pc = pair_cfg(scope, RejectedRule::MinQ);
                pc.only_correct = true;
                let filtered = extract::pairs(&r, &cfg, &pc);
                match r.answer.as_ref().and_then(|a| a.correct) {
                    Some(true) => {
                        correct_trees += 1;
                        assert_eq!(filtered, all, "{label}: a correct tree keeps its pairs");
                        assert!(filtered.iter().all(|p| p.final_correct == Some(true)));
                    }
                    _ => {
                        wrong_trees += 1;
                        assert!(filtered.is_empty(), "{label}: pairs from a wrong tree");
                    }
                }
                for gap in [0.05, 0.2] {
                    let mut pc = pair_cfg(scope, RejectedRule::MinQ);
                    pc.min_q_gap = gap;
                    let gapped = extract::pairs(&r, &cfg, &pc);
                    let want: Vec<_> = all
                        .iter()
                        .filter(|p| p.q_chosen - p.q_rejected >= gap)
                        .cloned()
                        .collect();
                    assert_eq!(gapped, want, "{label}: min_q_gap {gap}");
                }
                let mut pc = pair_cfg(scope, RejectedRule::MinQ);
                pc.min_visits = 2;
                for pair in extract::pairs(&r, &cfg, &pc) {
                    check_pair(&r, &cfg, &pc, &pair);
                }
                // Random is a fixed choice per tree and parent.
                let pc = pair_cfg(scope, RejectedRule::Random);
                assert_eq!(extract::pairs(&r, &cfg, &pc), extract::pairs(&r, &cfg, &pc));
            }
        }
    }
    assert!(
        correct_trees > 0 && wrong_trees > 0,
        "{correct_trees} correct, {wrong_trees} wrong"
    );
}

#[test]
fn no_gold_answer_gives_no_correctness() {
    let m = models(&SyntheticSpec::default());
    for (label, cfg) in configs() {
        let mut p = problems(1, 4, 24).remove(0);
        p.gold = None;
        let r = run(&m, &cfg, &p, 0);
        let out = extract::extract(&r, &cfg, &OutputConfig::default());
        for pair in &out.pairs {
            assert_eq!(pair.final_correct, None, "{label}");
        }
        let mut pc = pair_cfg(PairScope::Tree, RejectedRule::MinQ);
        pc.only_correct = true;
        assert!(
            extract::pairs(&r, &cfg, &pc).is_empty(),
            "{label}: only_correct without gold"
        );
        for rec in &out.prm {
            assert_eq!(rec.label_source, "q", "{label}");
        }
        if let Some(sft) = &out.sft {
            assert!(
                !sft.verified,
                "{label}: nothing can be verified without gold"
            );
            let orm = r
                .tree
                .eval(r.answer.as_ref().unwrap().node)
                .unwrap()
                .orm
                .unwrap();
            assert!(orm >= 0.5);
        }
    }
}

const PAIR_FIELDS: [&str; 13] = [
    "schema_version",
    "prompt",
    "chosen",
    "rejected",
    "q_chosen",
    "q_rejected",
    "n_chosen",
    "n_rejected",
    "depth",
    "label_smoothing",
    "problem_id",
    "final_correct",
    "critics",
];

#[test]
fn jsonl_records_have_the_documented_fields() {
    let m = models(&SyntheticSpec::default());
    let mut lines = 0;
    for (label, cfg) in configs() {
        for (i, p) in problems(6, 4, 25).iter().enumerate() {
            let r = run(&m, &cfg, p, i as u32);
            let mut out = OutputConfig::default();
            out.pairs.scope = PairScope::Tree;
            let o = extract::extract(&r, &cfg, &out);
            for pair in &o.pairs {
                let line = serde_json::to_string(pair).unwrap();
                assert!(!line.contains('\n'), "one record per line");
                let v: serde_json::Value = serde_json::from_str(&line).unwrap();
                let obj = v
                    .as_object()
                    .unwrap_or_else(|| panic!("{label}: not an object"));
                for f in PAIR_FIELDS {
                    assert!(obj.contains_key(f), "{label}: pair record lacks {f}");
                }
                assert_eq!(obj["schema_version"], extract::SCHEMA_VERSION);
                for side in ["chosen", "rejected"] {
                    let c = obj["critics"][side].as_object().expect("critic breakdown");
                    for f in ["score", "value", "prm", "orm"] {
                        assert!(c.contains_key(f), "{label}: critics.{side} lacks {f}");
                    }
                }
                let mut back: PairRecord = serde_json::from_str(&line).unwrap();
                // serde_json's default float parser may be one ulp off (no `float_roundtrip`
                // feature), so the f64 fields are compared with a tolerance.
                for (b, a) in [
                    (&mut back.q_chosen, pair.q_chosen),
                    (&mut back.q_rejected, pair.q_rejected),
                    (&mut back.label_smoothing, pair.label_smoothing),
                ] {
                    assert!(
                        (*b - a).abs() <= 1e-12 * a.abs().max(1.0),
                        "{label}: {b} vs {a}"
                    );
                    *b = a;
                }
                assert_eq!(&back, pair, "{label}: the record round-trips");
                lines += 1;
            }
            for rec in &o.prm {
                let v: serde_json::Value = serde_json::to_value(rec).unwrap();
                for f in [
                    "schema_version",
                    "problem_id",
                    "prompt",
                    "completions",
                    "labels",
                    "mc_values",
                    "label_source",
                ] {
                    assert!(v.get(f).is_some(), "{label}: PRM record lacks {f}");
                }
            }
            if let Some(s) = &o.sft {
                let v: serde_json::Value = serde_json::to_value(s).unwrap();
                for f in [
                    "schema_version",
                    "problem_id",
                    "prompt",
                    "completion",
                    "answer",
                    "score",
                    "verified",
                ] {
                    assert!(v.get(f).is_some(), "{label}: SFT record lacks {f}");
                }
            }
        }
    }
    assert!(lines > 0);
}

/// (correct terminals, terminals) below every node, counted through the child links.
fn terminal_counts(t: &Tree) -> HashMap<NodeId, (u32, u32)> {
    fn walk(t: &Tree, n: NodeId, acc: &mut HashMap<NodeId, (u32, u32)>) -> (u32, u32) {
        let mut c = (0, 0);
        if t.data(n).terminal {
            c = (u32::from(t.eval(n).unwrap().correct == Some(true)), 1);
        }
        for k in t.children(n) {
            let (a, b) = walk(t, k, acc);
            c.0 += a;
            c.1 += b;
        }
        acc.insert(n, c);
        c
    }
    let mut acc = HashMap::new();
    walk(t, NodeId::ROOT, &mut acc);
    acc
}

#[test]
fn prm_records_carry_monte_carlo_labels() {
    let m = models(&SyntheticSpec::default());
    let mut records = 0;
    for (label, cfg) in configs() {
        for (i, p) in problems(8, 4, 26).iter().enumerate() {
            let r = run(&m, &cfg, p, i as u32);
            let t = &*r.tree;
            let counts = terminal_counts(t);
            for threshold in [0.0, 0.5] {
                let pc = PrmConfig {
                    threshold,
                    max_paths_per_tree: 1000,
                };
                let recs = extract::prm_records(&r, &cfg, &pc);
                let terminals = t.node_ids().filter(|&n| t.data(n).terminal).count();
                assert_eq!(recs.len(), terminals, "{label}: one record per terminal");
                for rec in &recs {
                    assert_eq!(rec.schema_version, extract::SCHEMA_VERSION);
                    assert_eq!(rec.prompt, t.prompt());
                    assert_eq!(rec.label_source, "mc");
                    assert_eq!(rec.completions.len(), rec.labels.len(), "{label}");
                    assert_eq!(rec.completions.len(), rec.mc_values.len(), "{label}");
                    assert!(!rec.completions.is_empty());
                    for (&mc, &lab) in rec.mc_values.iter().zip(&rec.labels) {
                        assert!((0.0..=1.0).contains(&mc), "{label}: mc {mc}");
                        assert_eq!(
                            lab,
                            mc > threshold,
                            "{label}: label vs mc {mc} at {threshold}"
                        );
                    }
                    // Find the path: the terminal whose path text is the completions joined.
                    let text: String = rec.completions.concat();
                    let leaf = t
                        .node_ids()
                        .find(|&n| t.data(n).terminal && t.path_text(n) == text)
                        .expect("the record's path exists");
                    let path: Vec<NodeId> = t.path_to(leaf).into_iter().skip(1).collect();
                    for (k, &n) in path.iter().enumerate() {
                        let (c, all) = counts[&n];
                        assert!(all > 0);
                        let want = f64::from(c) / f64::from(all);
                        assert!(
                            (rec.mc_values[k] - want).abs() < 1e-12,
                            "{label}: mc at step {k}"
                        );
                    }
                    // The last step's value is the terminal's own correctness.
                    let last_ok = t.eval(leaf).unwrap().correct == Some(true);
                    assert_eq!(
                        *rec.mc_values.last().unwrap(),
                        if last_ok { 1.0 } else { 0.0 }
                    );
                    records += 1;
                }
            }
            let capped = extract::prm_records(
                &r,
                &cfg,
                &PrmConfig {
                    threshold: 0.0,
                    max_paths_per_tree: 2,
                },
            );
            assert!(capped.len() <= 2);
        }
    }
    assert!(records > 0);
}

#[test]
fn sft_trace_is_a_verified_correct_solution() {
    let m = models(&SyntheticSpec::default());
    let (mut some, mut trees, mut clean) = (0, 0, 0);
    for (label, cfg) in configs() {
        for (i, p) in problems(15, 5, 27).iter().enumerate() {
            trees += 1;
            let r = run(&m, &cfg, p, i as u32);
            let t = &*r.tree;
            let any_correct = t
                .node_ids()
                .any(|n| t.eval(n).unwrap().correct == Some(true));
            match extract::sft(&r) {
                Some(s) => {
                    some += 1;
                    assert!(s.verified, "{label}");
                    let gold = p.gold.as_deref().unwrap();
                    let answer = s.answer.as_deref().expect("answer");
                    assert!(
                        SyntheticTask.check(answer, gold),
                        "{label}: {answer} vs gold {gold}"
                    );
                    assert_eq!(s.prompt, t.prompt());
                    assert_eq!(
                        SyntheticTask.extract_answer(&s.completion).as_deref(),
                        Some(answer)
                    );
                    // It is the best-scoring correct terminal.
                    let best = t
                        .node_ids()
                        .filter(|&n| t.eval(n).unwrap().correct == Some(true))
                        .map(|n| t.eval(n).unwrap().score)
                        .fold(f32::NEG_INFINITY, f32::max);
                    assert_eq!(s.score, best, "{label}");
                    // Its steps replay without a mistake (two mistakes can cancel out, so this
                    // is counted rather than required of every trace).
                    let a = Arithmetic::parse(&p.question).unwrap();
                    let mut prefix = String::new();
                    let mut ok = true;
                    for line in s.completion.split_inclusive('\n') {
                        ok &= step_is_right(&a, &prefix, line);
                        prefix.push_str(line);
                    }
                    clean += usize::from(ok);
                }
                None => {
                    assert!(
                        !any_correct,
                        "{label}: a correct terminal exists but no SFT trace"
                    );
                }
            }
        }
    }
    assert!(some > 0, "no SFT traces at all");
    assert!(
        clean * 10 >= some * 9,
        "only {clean}/{some} SFT traces replay cleanly"
    );
    assert!(
        some < trees,
        "every tree has a correct terminal: nothing tests the `None` case"
    );
}

#[test]
fn dot_has_one_edge_per_non_root_node() {
    let m = models(&SyntheticSpec::default());
    for (label, cfg) in configs() {
        for (i, p) in problems(4, 4, 28).iter().enumerate() {
            let r = run(&m, &cfg, p, i as u32);
            let dot = extract::to_dot(&r, &cfg);
            assert!(dot.starts_with("digraph"), "{label}");
            assert!(dot.trim_end().ends_with('}'), "{label}");
            let edges: Vec<&str> = dot.lines().filter(|l| l.contains("->")).collect();
            assert_eq!(edges.len(), r.tree.len() - 1, "{label}");
            for n in r.tree.node_ids().skip(1) {
                let e = format!("  n{} -> n{}", r.tree.data(n).parent.0, n.0);
                assert!(
                    edges.iter().any(|l| l.starts_with(&e)),
                    "{label}: missing edge {e}"
                );
            }
            let node_lines = dot.lines().filter(|l| l.contains("[label=")).count();
            assert_eq!(node_lines, r.tree.node_ids().count(), "{label}");
        }
    }
}

#[test]
fn extraction_after_a_node_budget_is_well_formed() {
    // Trees cut short by `budget.max_nodes` under full expansion (k = 3, so an expansion can run
    // out of room half-way). Expansions are all-or-nothing, so every listed node is linked into
    // its parent, and pairs, PRM records and dumps only see real nodes.
    let m = models(&SyntheticSpec::default());
    let mut cut = 0;
    for (i, p) in problems(4, 3, 31).iter().enumerate() {
        for max_nodes in (5u32..40).step_by(3) {
            let mut cfg = SearchConfig::mcts_dpo();
            cfg.move_by_move.enabled = false;
            cfg.expansion.k = 3;
            cfg.budget.max_nodes = max_nodes;
            cfg.budget.simulations = 200;
            let r = run(&m, &cfg, p, i as u32);
            let t = &*r.tree;
            assert!(t.len() <= max_nodes as usize);
            cut += usize::from(r.stop == ponder_engine::StopReason::Nodes);
            for scope in [PairScope::AnswerPath, PairScope::Tree] {
                let pc = pair_cfg(scope, RejectedRule::MinQ);
                for pair in extract::pairs(&r, &cfg, &pc) {
                    check_pair(&r, &cfg, &pc, &pair);
                }
            }
            for rec in extract::prm_records(&r, &cfg, &PrmConfig::default()) {
                assert_eq!(rec.completions.len(), rec.labels.len());
                assert_eq!(rec.completions.len(), rec.mc_values.len());
                for (&mc, &lab) in rec.mc_values.iter().zip(&rec.labels) {
                    assert!((0.0..=1.0).contains(&mc));
                    assert_eq!(lab, mc > 0.0);
                }
            }
            for n in t.node_ids().filter(|&n| n != ponder_engine::NodeId::ROOT) {
                let parent = t.data(n).parent;
                assert!(
                    t.children(parent).any(|c| c == n),
                    "node {} is not linked",
                    n.0
                );
            }
            let dump = extract::dump(&r, &cfg);
            assert_eq!(dump.nodes.len(), t.node_ids().count());
            assert!(extract::to_dot(&r, &cfg).starts_with("digraph"));
        }
    }
    assert!(cut > 0, "no search was cut by the node budget");
}
