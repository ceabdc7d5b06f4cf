//! Selection (UCT, UCB2, PUCT with virtual loss) and importance for adaptive branching, computed
//! in one pass over a node's children.

use crate::config::{BackupRule, Importance, PriorKind, SearchConfig, SelectionRule};
use crate::tree::{NodeId, Tree};

/// What one pass over a node's children found.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Scan {
    /// The child selection picks, if any child is published.
    pub(crate) best: Option<NodeId>,
    /// The node's importance `I(s)` under the configured definition (0 without children).
    pub(crate) importance: f64,
}

/// The Q a node shows to selection: mean leaf score (unvisited: its own leaf score) under
/// `mean_leaf`, MCTS-DPO's Q under `q_r_plus_v`.
#[inline]
pub(crate) fn q_value(tree: &Tree, cfg: &SearchConfig, id: NodeId, visits: u32) -> f64 {
    match cfg.backup {
        BackupRule::MeanLeaf => {
            if visits == 0 {
                tree.eval(id).map_or(0.0, |e| f64::from(e.score))
            } else {
                tree.value_sum(id) / f64::from(visits)
            }
        }
        BackupRule::QRPlusV => tree.q(id),
    }
}

/// PUCT prior of a child: `exp(logp / len^λ)` (MCTS-DPO) or uniform.
#[inline]
pub(crate) fn prior(tree: &Tree, cfg: &SearchConfig, id: NodeId, siblings: u32) -> f64 {
    match cfg.selection.prior {
        PriorKind::Uniform => 1.0 / f64::from(siblings.max(1)),
        PriorKind::Lm => {
            let step = &tree.data(id).step;
            let len = f64::from(step.n_tokens.max(1));
            (f64::from(step.logprob) / len.powf(cfg.selection.length_penalty)).exp()
        }
    }
}

/// Scans `node`'s children once: the selection rule's best child (with virtual loss) and the
/// node's importance. At the search root (`is_root`), whose own counts are only credited when a
/// phase ends, the parent count is the sum over its children (every simulation through the root
/// passes through exactly one child).
pub(crate) fn scan(tree: &Tree, cfg: &SearchConfig, node: NodeId, is_root: bool) -> Scan {
    let vl = cfg.parallel.virtual_loss;
    let loss = cfg.parallel.loss_value;
    let c = cfg.selection.c;
    let parent_n = if is_root {
        let (credited, _) = tree.counts(node);
        let live: f64 = tree
            .children(node)
            .map(|ch| {
                let (n, f) = tree.counts(ch);
                f64::from(n) + vl * f64::from(f)
            })
            .sum();
        // After a re-root the credited visits of earlier phases still count.
        live.max(f64::from(credited))
    } else {
        let (pn, pf) = tree.counts(node);
        f64::from(pn) + vl * f64::from(pf)
    };
    let rule = cfg.selection.rule;
    let log_term = match rule {
        SelectionRule::Uct => parent_n.max(1.0).ln(),
        SelectionRule::Ucb2 => 2.0 * parent_n.max(1.0).ln(),
        SelectionRule::Puct => 0.0,
    };
    let sqrt_parent = parent_n.sqrt();
    let siblings = if rule == SelectionRule::Puct && cfg.selection.prior == PriorKind::Uniform {
        tree.child_count(node)
    } else {
        0
    };
    let importance_mode = if cfg.expansion.mode == crate::config::ExpansionMode::Progressive {
        cfg.expansion.widening.importance
    } else {
        Importance::Fixed
    };
    let own_v = match importance_mode {
        Importance::Paper => tree
            .eval(node)
            .map_or(0.0, |e| f64::from(e.value.unwrap_or(e.score))),
        _ => 0.0,
    };
    let mut paper_i = 0.0f64;
    let (mut qmin, mut qmax, mut qsum, mut qn) = (f64::INFINITY, f64::NEG_INFINITY, 0.0, 0u32);

    let mut best = None;
    let mut best_score = f64::NEG_INFINITY;
    for child in tree.children(node) {
        let (n, f) = tree.counts(child);
        let q = q_value(tree, cfg, child, n);
        let virt = vl * f64::from(f);
        let n_eff = f64::from(n) + virt;
        let q_eff = if virt > 0.0 {
            (q * f64::from(n) + virt * loss) / n_eff
        } else {
            q
        };
        let s = match rule {
            SelectionRule::Uct | SelectionRule::Ucb2 => {
                if n_eff == 0.0 {
                    f64::INFINITY
                } else {
                    q_eff + c * (log_term / n_eff).sqrt()
                }
            }
            SelectionRule::Puct => {
                q_eff + c * prior(tree, cfg, child, siblings) * sqrt_parent / (1.0 + n_eff)
            }
        };
        if s > best_score || best.is_none() {
            best_score = s;
            best = Some(child);
        }
        match importance_mode {
            Importance::Paper => {
                if let Some(e) = tree.eval(child) {
                    let v = f64::from(e.value.unwrap_or(e.score));
                    paper_i = paper_i.max((v - own_v).abs());
                }
            }
            Importance::Code => {
                if n > 0 {
                    qmin = qmin.min(q);
                    qmax = qmax.max(q);
                    qsum += q;
                    qn += 1;
                }
            }
            Importance::Fixed => {}
        }
    }
    let importance = match importance_mode {
        Importance::Paper => paper_i,
        Importance::Code if qn > 0 => {
            let mean = qsum / f64::from(qn);
            (qmax - mean).max(mean - qmin)
        }
        _ => 0.0,
    };
    Scan { best, importance }
}

/// The child allowance of a node at `depth` with importance `i`, before the grow-only update.
pub(crate) fn allowance(cfg: &SearchConfig, depth: u32, i: f64) -> u32 {
    let w = &cfg.expansion.widening;
    let (cmin, cmax) = if depth == 0 {
        (w.c_min_root, w.c_max_root)
    } else {
        (w.c_min, w.c_max)
    };
    match w.importance {
        Importance::Fixed => cmin,
        // n(s) = max(c_min, min(floor(α·I) + 1, c_max)) (AlphaLLM §4.3.2).
        Importance::Paper => cmin.max(((w.alpha * i).floor() as u32).saturating_add(1).min(cmax)),
        // Code: width = min(int(factor·I), c_max), starting from c_min, grow-only.
        Importance::Code => cmin.max(((w.alpha * i) as u32).min(cmax)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowance_follows_the_paper_formula() {
        let mut cfg = SearchConfig::alphallm();
        cfg.expansion.widening.alpha = 4.0;
        assert_eq!(allowance(&cfg, 0, 0.0), 10);
        assert_eq!(allowance(&cfg, 1, 0.0), 2);
        assert_eq!(allowance(&cfg, 1, 0.6), 3); // floor(2.4) + 1
        assert_eq!(allowance(&cfg, 1, 100.0), 10); // capped at c_max
        cfg.expansion.widening.importance = Importance::Code;
        assert_eq!(allowance(&cfg, 1, 0.9), 3);
        cfg.expansion.widening.importance = Importance::Fixed;
        assert_eq!(allowance(&cfg, 1, 0.9), 2);
    }
}
