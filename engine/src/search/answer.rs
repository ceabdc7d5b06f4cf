//! Choosing the final answer from a finished tree.

use serde::Serialize;

use super::{Ctx, SearchStats, create_children, reserve_more, select};
use crate::config::{Algorithm, AnswerRule, BackupRule};
use crate::error::{Error, Result};
use crate::tree::{NodeId, Tree};

/// The answer a search settled on.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Answer {
    /// The node whose path is the chosen solution.
    #[serde(serialize_with = "ser_node")]
    pub node: NodeId,
    /// The extracted final answer, if the path has one.
    pub answer: Option<String>,
    /// Whether it matches the gold answer (`None` without a gold answer).
    pub correct: Option<bool>,
}

fn ser_node<S: serde::Serializer>(n: &NodeId, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u32(n.0)
}

fn answer_at(tree: &Tree, node: NodeId) -> Answer {
    Answer {
        node,
        answer: tree.data(node).answer.clone(),
        correct: tree.eval(node).and_then(|e| e.correct),
    }
}

fn terminals(tree: &Tree) -> Vec<NodeId> {
    tree.node_ids().filter(|&n| tree.data(n).terminal).collect()
}

/// Picks the answer by the algorithm's rule (`cfg.answer` for MCTS). Paths that end before a
/// terminal are completed greedily by the policy, as AlphaLLM does.
pub(crate) fn choose(
    ctx: &Ctx<'_>,
    start: NodeId,
    local: &mut SearchStats,
) -> Result<Option<Answer>> {
    let tree = &**ctx.tree;
    let cfg = ctx.cfg;
    let rule = match cfg.algorithm {
        Algorithm::Mcts => cfg.answer,
        Algorithm::Greedy => AnswerRule::MostVisited,
        Algorithm::BestOfN => AnswerRule::OrmRerank,
        Algorithm::SelfConsistency => {
            return Ok(majority(tree, cfg.baseline.weighted_vote));
        }
        Algorithm::Beam => return Ok(best_leaf(tree, |t, n| t.eval(n).map_or(0.0, |e| e.score))),
    };
    match rule {
        AnswerRule::MostVisited | AnswerRule::BestQ => {
            let best_q = rule == AnswerRule::BestQ;
            let mut node = start;
            loop {
                let key = |c: NodeId| {
                    let (n, _) = tree.counts(c);
                    let q = select::q_value(tree, cfg, c, n);
                    if best_q && (n > 0 || cfg.backup == BackupRule::QRPlusV) {
                        (q, f64::from(n))
                    } else {
                        (f64::from(n), q)
                    }
                };
                let next = tree.children_in_order(node).into_iter().max_by(|&a, &b| {
                    key(a)
                        .partial_cmp(&key(b))
                        .unwrap_or(std::cmp::Ordering::Equal)
                        .then(b.cmp(&a))
                });
                match next {
                    Some(c) => node = c,
                    None => break,
                }
            }
            if !tree.data(node).terminal {
                match complete(ctx, node, local) {
                    Ok(Some(done)) => node = done,
                    Ok(None) => {}
                    Err(Error::TreeFull { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(Some(answer_at(tree, node)))
        }
        AnswerRule::OrmRerank => Ok(best_leaf(tree, |t, n| {
            t.eval(n).map_or(0.0, |e| e.orm.unwrap_or(e.score))
        })),
        AnswerRule::WeightedVote => Ok(majority(tree, true)),
    }
}

/// Completes a non-terminal path with one greedy to-the-end step.
fn complete(ctx: &Ctx<'_>, node: NodeId, local: &mut SearchStats) -> Result<Option<NodeId>> {
    if !reserve_more(ctx.tree, node, 1)? {
        return Ok(None);
    }
    let spec = crate::batcher::ExpandSpec {
        node,
        k: 1,
        seed: super::expand_seed(ctx.tree, node, u32::MAX - 1),
        to_end: true,
        greedy: true,
        max_tokens: None,
    };
    let Some(mut out) = ctx.propose(vec![spec], false, local)? else {
        // No tokens left in the budget to finish the path.
        ctx.tree.unreserve(node, 1);
        return Ok(None);
    };
    let step = out
        .pop()
        .and_then(|mut v| v.pop())
        .expect("contract checked: k = 1");
    local.policy_requests += 1;
    Ok(create_children(ctx, node, vec![step], true, false, local)?
        .pop()
        .and_then(|chain| chain.last().copied()))
}

/// The terminal with the best `key`, terminals with an answer first; ties go to the older node.
fn best_leaf(tree: &Tree, key: impl Fn(&Tree, NodeId) -> f32) -> Option<Answer> {
    terminals(tree)
        .into_iter()
        .max_by(|&a, &b| {
            let ka = (tree.data(a).answer.is_some(), key(tree, a));
            let kb = (tree.data(b).answer.is_some(), key(tree, b));
            ka.partial_cmp(&kb)
                .unwrap_or(std::cmp::Ordering::Equal)
                .then(b.cmp(&a))
        })
        .map(|n| answer_at(tree, n))
}

/// Majority (or value-weighted) vote over the answers of terminal nodes; the representative node
/// is the best-scoring terminal with the winning answer.
fn majority(tree: &Tree, weighted: bool) -> Option<Answer> {
    let mut tally: Vec<(String, f64, NodeId, f32)> = Vec::new();
    for n in terminals(tree) {
        let Some(a) = tree.data(n).answer.as_ref() else {
            continue;
        };
        let e = tree.eval(n).copied().unwrap_or_default();
        let w = if weighted {
            f64::from(e.value.unwrap_or(e.score).max(0.0))
        } else {
            1.0
        };
        match tally.iter_mut().find(|t| &t.0 == a) {
            Some(t) => {
                t.1 += w;
                if e.score > t.3 {
                    t.2 = n;
                    t.3 = e.score;
                }
            }
            None => tally.push((a.clone(), w, n, e.score)),
        }
    }
    let mut best: Option<&(String, f64, NodeId, f32)> = None;
    for t in &tally {
        if best.is_none_or(|b| t.1 > b.1) {
            best = Some(t);
        }
    }
    best.map(|t| answer_at(tree, t.2))
        .or_else(|| best_leaf(tree, |t, n| t.eval(n).map_or(0.0, |e| e.score)))
}
