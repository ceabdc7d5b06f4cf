//! Backup: leaf scores up the path (mean of leaf scores), or MCTS-DPO's `Q = r + V`.

use super::*;

/// Backs `score` up every node of `path` (INV-5, INV-6), then, under `q_r_plus_v`, recomputes Q
/// from the leaf up.
pub(super) fn backup(tree: &Tree, cfg: &SearchConfig, path: &[NodeId], score: f32) {
    let s = f64::from(score);
    for &n in path {
        tree.backup(n, s);
    }
    if cfg.backup == BackupRule::QRPlusV {
        for &n in path.iter().rev() {
            recompute_q(tree, n);
        }
    }
}

/// `Q = r + V`, `V = Σ max(1,N_c)·Q_c / Σ max(1,N_c)` over evaluated children (0 for a visited
/// leaf). Unvisited nodes keep their creation value `V(parent) + r`.
fn recompute_q(tree: &Tree, n: NodeId) {
    if tree.counts(n).0 == 0 {
        return;
    }
    let r = tree.eval(n).map_or(0.0, |e| f64::from(e.reward));
    let mut num = 0.0;
    let mut den = 0.0;
    for c in tree.children(n) {
        let w = f64::from(tree.counts(c).0.max(1));
        num += w * tree.q(c);
        den += w;
    }
    let v = if den > 0.0 { num / den } else { 0.0 };
    tree.set_q(n, r + v);
}

/// Recomputes every Q bottom-up once the search is quiescent, so the final Q values do not depend
/// on how concurrent backups interleaved. Children always have larger ids than their parent.
pub(super) fn settle_q(tree: &Tree) {
    let mut ids: Vec<NodeId> = tree.node_ids().collect();
    ids.reverse();
    for n in ids {
        recompute_q(tree, n);
    }
}
