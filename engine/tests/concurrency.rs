//! Concurrency stress tests: many parallel searches on the synthetic task, each followed by a
//! full audit of the tree's conservation laws (INV-3..INV-6 of `ponder_engine::tree`).
//!
//! The laws checked after every search (the search is quiescent then):
//!
//! - root visits == completed simulations, and every `in_flight` is 0 (INV-5, INV-6);
//! - every node's published children count matches its child list, `children <= reserved`
//!   (INV-4), and every non-root node is linked exactly once, into the list of its own parent,
//!   one level deeper (INV-3);
//! - "visit conservation": a simulation backs up every node of its path once and ends at exactly
//!   one node, so `ended(n) = visits(n) - Σ visits(children of n)` is the number of simulations
//!   that ended at `n`; it is never negative, it is 0 at the root, and its exact value follows
//!   from the mode (see `ModeLaw`).

use std::collections::HashSet;

use ponder_engine::config::{BackupRule, ExpansionMode};
use ponder_engine::{
    BatchConfig, Batcher, Evaluator, Models, NodeId, Problem, SearchConfig, SearchReport,
    StopReason, TreeId, search,
};
use ponder_testkit::synthetic::{SyntheticSpec, models, problems};

/// What the exact visit law looks like for a configuration.
#[derive(Clone, Copy, Debug, PartialEq)]
enum ModeLaw {
    /// Progressive widening, stop at the new node (AlphaLLM): each non-root node is created by
    /// exactly one simulation that ends at it; later simulations only end at terminals. So a
    /// non-terminal non-root node has `ended == 1`, a terminal `ended == visits`.
    ProgressiveStopAtNew,
    /// Full expansion with descent to a terminal (MCTS-DPO): simulations only end at terminals,
    /// so every non-terminal node has `ended == 0`.
    FullDescend,
}

fn law_of(cfg: &SearchConfig) -> ModeLaw {
    match (cfg.expansion.mode, cfg.expansion.descend_to_terminal) {
        (ExpansionMode::Progressive, false) => ModeLaw::ProgressiveStopAtNew,
        (ExpansionMode::Full, true) => ModeLaw::FullDescend,
        other => panic!("no exact law for {other:?}"),
    }
}

fn alphallm(threads: u32, sims: u32) -> SearchConfig {
    let mut cfg = SearchConfig::alphallm();
    cfg.parallel.threads = threads;
    cfg.budget.simulations = sims;
    cfg
}

fn mcts_dpo_full(threads: u32, sims: u32) -> SearchConfig {
    let mut cfg = SearchConfig::mcts_dpo();
    cfg.move_by_move.enabled = false;
    cfg.parallel.threads = threads;
    cfg.budget.simulations = sims;
    cfg
}

/// The node the final-answer rule may have added after the search (a greedy completion of a
/// non-terminal leaf, see `search::answer`): a terminal without visits.
fn completion_node(r: &SearchReport) -> Option<NodeId> {
    let a = r.answer.as_ref()?;
    let t = &*r.tree;
    let s = t.stats(a.node);
    let parent = t.data(a.node).parent;
    (a.node != NodeId::ROOT && s.visits == 0 && t.data(a.node).terminal && parent != NodeId::NONE)
        .then_some(a.node)
}

/// Audits one finished search. `label` names the run in failure messages.
fn audit(r: &SearchReport, cfg: &SearchConfig, label: &str) {
    let t = &*r.tree;
    let ids: Vec<NodeId> = t.node_ids().collect();
    let n = ids.len();
    // Slots of children dropped at link time (a concurrent duplicate) hold no node.
    assert!(n <= t.len(), "{label}: more nodes than slots");
    assert_eq!(r.stats.nodes as usize, n, "{label}: stats.nodes");
    assert_eq!(
        r.stats.terminals as usize,
        ids.iter().filter(|&&i| t.data(i).terminal).count(),
        "{label}: stats.terminals"
    );
    assert_eq!(
        r.stop,
        StopReason::Budget,
        "{label}: only the simulation budget applies"
    );

    // INV-5 / INV-6 at the root.
    let root = t.stats(NodeId::ROOT);
    assert_eq!(
        u64::from(root.visits),
        r.stats.simulations,
        "{label}: root visits == completed simulations"
    );
    assert!(
        r.stats.simulations >= u64::from(cfg.budget.simulations),
        "{label}: {} simulations < budget {}",
        r.stats.simulations,
        cfg.budget.simulations
    );
    assert_eq!(t.data(NodeId::ROOT).parent, NodeId::NONE);
    assert_eq!(t.data(NodeId::ROOT).depth, 0);

    let completion = completion_node(r);
    let law = law_of(cfg);
    let mut linked = vec![0u32; t.len()];
    let mut children_total = 0usize;
    let mut ended_total = 0i64;
    for &id in &ids {
        let s = t.stats(id);
        let d = t.data(id);
        assert_eq!(
            s.in_flight, 0,
            "{label}: node {} still has in-flight visits",
            id.0
        );
        assert!(
            t.eval(id).is_some(),
            "{label}: node {} has no evaluation",
            id.0
        );

        // Child list vs counters (INV-3, INV-4).
        let kids: Vec<NodeId> = t.children(id).collect();
        assert_eq!(
            kids.len() as u32,
            s.children,
            "{label}: child list of {}",
            id.0
        );
        assert_eq!(t.child_count(id), s.children);
        let reserved = t.reserved(id);
        assert!(
            s.children <= reserved,
            "{label}: node {} has {} children but {} reserved slots (INV-4)",
            id.0,
            s.children,
            reserved
        );
        match cfg.expansion.mode {
            ExpansionMode::Full => {
                let k = if id == NodeId::ROOT {
                    cfg.expansion.k_root
                } else {
                    cfg.expansion.k
                };
                if s.children > 0 {
                    // Expanded exactly once: one CAS reserved all k slots.
                    assert_eq!(reserved, k, "{label}: full node {} reserved", id.0);
                    assert!(s.children <= k, "{label}: full node {} children", id.0);
                } else {
                    assert_eq!(reserved, 0, "{label}: unexpanded node {} reserved", id.0);
                }
            }
            ExpansionMode::Progressive => {
                let w = &cfg.expansion.widening;
                let cap = if id == NodeId::ROOT {
                    w.c_max_root
                } else {
                    w.c_max
                };
                assert!(
                    reserved <= cap,
                    "{label}: node {} reserved {reserved} > {cap}",
                    id.0
                );
                // Quiescent: every reserved slot became a child or was given back.
                assert_eq!(
                    reserved, s.children,
                    "{label}: node {} leaked reservations",
                    id.0
                );
            }
        }
        if d.terminal {
            assert_eq!(
                s.children, 0,
                "{label}: terminal node {} has children",
                id.0
            );
        }

        let mut kid_visits = 0i64;
        let mut seen = HashSet::new();
        for &c in &kids {
            assert!(
                seen.insert(c),
                "{label}: child {} listed twice under {}",
                c.0,
                id.0
            );
            assert_ne!(c, NodeId::ROOT, "{label}: the root is nobody's child");
            assert!(
                c.index() < t.len(),
                "{label}: child id {} out of range",
                c.0
            );
            linked[c.index()] += 1;
            let cd = t.data(c);
            assert_eq!(
                cd.parent, id,
                "{label}: child {} points to another parent",
                c.0
            );
            assert_eq!(cd.depth, d.depth + 1, "{label}: depth of child {}", c.0);
            assert!(c > id, "{label}: children are allocated after their parent");
            kid_visits += i64::from(t.stats(c).visits);
        }
        children_total += kids.len();
        // State merge: with dedup on, no two siblings share a text, however many threads
        // expanded the node (the link-time check runs under the parent's LINKING flag).
        if cfg.expansion.merge.dedup {
            let mut texts: Vec<&str> = kids.iter().map(|&c| t.data(c).step.text.as_str()).collect();
            texts.sort_unstable();
            let before = texts.len();
            texts.dedup();
            assert_eq!(
                texts.len(),
                before,
                "{label}: duplicate sibling texts under {}",
                id.0
            );
        }

        // Visit conservation.
        let ended = i64::from(s.visits) - kid_visits;
        assert!(
            ended >= 0,
            "{label}: node {} has {} visits but its children {kid_visits}",
            id.0,
            s.visits
        );
        ended_total += ended;
        if id == NodeId::ROOT {
            assert_eq!(ended, 0, "{label}: a simulation ended at the root");
        } else if d.terminal {
            assert_eq!(ended, i64::from(s.visits));
            if Some(id) != completion && law == ModeLaw::ProgressiveStopAtNew {
                assert!(
                    s.visits >= 1,
                    "{label}: terminal {} created without a visit",
                    id.0
                );
            }
        } else {
            let want = match law {
                ModeLaw::ProgressiveStopAtNew => 1,
                ModeLaw::FullDescend => 0,
            };
            assert_eq!(
                ended, want,
                "{label}: non-terminal node {} (visits {}, children {}): simulations ended there",
                id.0, s.visits, s.children
            );
        }

        // The parent link points back.
        if id != NodeId::ROOT {
            assert!(
                t.children(d.parent).any(|c| c == id),
                "{label}: node {} missing from its parent's list",
                id.0
            );
        }

        // Under QRPlusV the settled Q is r + V (children weighted by max(1, N)).
        if cfg.backup == BackupRule::QRPlusV {
            let r = f64::from(t.eval(id).unwrap().reward);
            let (mut num, mut den) = (0.0, 0.0);
            for &c in &kids {
                let w = f64::from(t.stats(c).visits.max(1));
                num += w * t.stats(c).q;
                den += w;
            }
            let want = r + if den > 0.0 { num / den } else { 0.0 };
            assert!(
                (s.q - want).abs() < 1e-9,
                "{label}: node {} q {} != r + V {}",
                id.0,
                s.q,
                want
            );
        }
    }
    assert_eq!(linked[0], 0, "{label}: the root is linked");
    for &id in &ids[1..] {
        assert_eq!(
            linked[id.index()],
            1,
            "{label}: node {} linked {} times",
            id.0,
            linked[id.0 as usize]
        );
    }
    assert_eq!(n, 1 + children_total, "{label}: nodes == 1 + Σ children");
    assert_eq!(
        ended_total,
        i64::from(root.visits),
        "{label}: Σ ended == simulations"
    );
    let max_depth = ids.iter().map(|&i| t.data(i).depth).max().unwrap();
    assert_eq!(r.stats.max_depth, max_depth, "{label}: stats.max_depth");
    assert!(max_depth <= cfg.budget.max_depth, "{label}: depth limit");
    assert!(r.answer.is_some(), "{label}: no answer");
    assert_eq!(
        r.committed,
        vec![NodeId::ROOT],
        "{label}: no move-by-move here"
    );
}

fn stress(cfg: &SearchConfig, models: &Models, probs: &[Problem], label: &str) -> u64 {
    let mut collisions = 0;
    for (i, p) in probs.iter().enumerate() {
        let r = search(p.clone(), TreeId(i as u32), cfg, Evaluator::direct(models))
            .unwrap_or_else(|e| panic!("{label} run {i}: {e}"));
        audit(&r, cfg, &format!("{label} run {i} ({})", p.id));
        collisions += r.stats.collisions;
    }
    collisions
}

#[test]
fn alphallm_progressive_eight_threads_conserves_visits() {
    let m = models(&SyntheticSpec::default());
    let probs = problems(30, 5, 11);
    let cfg = alphallm(8, 400);
    stress(&cfg, &m, &probs, "alphallm");
}

#[test]
fn alphallm_progressive_narrow_widening_eight_threads() {
    // Small allowances make threads fight over the same few slots.
    let spec = SyntheticSpec {
        p_correct: 0.3,
        ..SyntheticSpec::default()
    };
    let m = models(&spec);
    let probs = problems(30, 6, 12);
    let mut cfg = alphallm(8, 250);
    let w = &mut cfg.expansion.widening;
    w.c_min_root = 2;
    w.c_max_root = 3;
    w.c_min = 1;
    w.c_max = 2;
    stress(&cfg, &m, &probs, "alphallm-narrow");
}

#[test]
fn mcts_dpo_full_expansion_eight_threads_conserves_visits() {
    let m = models(&SyntheticSpec::default());
    let probs = problems(30, 5, 13);
    let cfg = mcts_dpo_full(8, 400);
    stress(&cfg, &m, &probs, "mcts-dpo-full");
}

#[test]
fn eight_threads_without_virtual_loss() {
    let m = models(&SyntheticSpec::default());
    let probs = problems(15, 4, 14);
    let mut cfg = alphallm(8, 200);
    cfg.parallel.virtual_loss = 0.0;
    stress(&cfg, &m, &probs, "alphallm-vl0");
    let mut cfg = mcts_dpo_full(8, 200);
    cfg.parallel.virtual_loss = 0.0;
    stress(&cfg, &m, &probs, "mcts-dpo-vl0");
}

#[test]
fn one_thread_and_eight_threads_obey_the_same_laws() {
    // One thread never collides; eight threads on a shared tree must still give the same
    // accounting (the laws hold for both).
    let m = models(&SyntheticSpec::default());
    let probs = problems(10, 4, 15);
    let c1 = stress(&alphallm(1, 200), &m, &probs, "alphallm-1t");
    assert_eq!(c1, 0, "a single thread cannot collide with itself");
    stress(&alphallm(8, 200), &m, &probs, "alphallm-8t");
    let c1 = stress(&mcts_dpo_full(1, 200), &m, &probs, "mcts-dpo-1t");
    assert_eq!(c1, 0, "a single thread cannot collide with itself");
}

fn batched_runs(cfg: &SearchConfig, trees_at_once: usize, rounds: usize, seed: u64, label: &str) {
    let m = models(&SyntheticSpec::default());
    let probs = problems(trees_at_once * rounds, 4, seed);
    let out = Batcher::run(&m, &BatchConfig::default(), |b| {
        for round in 0..rounds {
            let chunk = &probs[round * trees_at_once..(round + 1) * trees_at_once];
            let reports: Vec<SearchReport> = std::thread::scope(|s| {
                let handles: Vec<_> = chunk
                    .iter()
                    .enumerate()
                    .map(|(j, p)| {
                        let id = TreeId((round * trees_at_once + j) as u32);
                        let m = &m;
                        s.spawn(move || search(p.clone(), id, cfg, Evaluator::batched(m, b)))
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().expect("search thread panicked"))
                    .collect::<Result<_, _>>()
                    .unwrap_or_else(|e| panic!("{label}: {e}"))
            });
            for (j, r) in reports.iter().enumerate() {
                audit(r, cfg, &format!("{label} round {round} tree {j}"));
            }
        }
        b.stats()
    })
    .expect("valid batch config");
    // Every request went through the batcher.
    assert!(
        out.policy.requests > 0 && out.policy.batches > 0,
        "{label}: {out:?}"
    );
    assert!(out.policy.batches <= out.policy.requests);
    for q in &out.critics {
        assert!(
            q.requests > 0 && q.batches <= q.requests,
            "{label}: {out:?}"
        );
    }
    assert!(
        out.policy.mean_batch <= 32.0 + 1e-9,
        "{label}: batches bounded by max_batch"
    );
}

#[test]
fn batched_alphallm_eight_threads_conserves_visits() {
    // Four trees share the batcher at once, eight workers each.
    batched_runs(&alphallm(8, 200), 4, 4, 16, "batched-alphallm");
}

#[test]
fn batched_mcts_dpo_full_eight_threads_conserves_visits() {
    batched_runs(&mcts_dpo_full(8, 200), 4, 4, 17, "batched-mcts-dpo");
}

#[test]
fn batched_single_tree_default_batch_config() {
    batched_runs(&alphallm(8, 150), 1, 4, 18, "batched-single");
}

#[test]
fn answer_completion_respects_reservations() {
    // With one simulation the most-visited path ends at a non-terminal node, which the answer
    // rule completes greedily after the search: the completion is terminal and has no visits,
    // and like every other child it must hold a reserved slot at its parent (INV-4).
    let m = models(&SyntheticSpec::default());
    for (i, p) in problems(10, 4, 19).into_iter().enumerate() {
        for threads in [1, 8] {
            let cfg = alphallm(threads, 1);
            let r = search(p.clone(), TreeId(i as u32), &cfg, Evaluator::direct(&m)).unwrap();
            let t = &*r.tree;
            let done = completion_node(&r).expect("one simulation cannot reach a terminal");
            let parent = t.data(done).parent;
            assert!(!t.data(parent).terminal);
            assert_eq!(t.stats(done).visits, 0);
            assert_eq!(t.stats(parent).children, 1);
            assert!(
                t.stats(parent).children <= t.reserved(parent),
                "INV-4 at the completed node: {} children, {} reserved",
                t.stats(parent).children,
                t.reserved(parent)
            );
            assert!(
                t.data(done).answer.is_some(),
                "a to-the-end completion has an answer"
            );
            assert_eq!(r.stats.simulations, 1);
            assert_eq!(t.len(), 3, "root, the simulated child, its completion");
            audit(&r, &cfg, &format!("completion {i} threads {threads}"));
        }
    }
}
