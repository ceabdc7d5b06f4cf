//! Expansion: when a node may take children (progressive widening or full expansion), the
//! policy requests, and the state merge that keeps siblings apart.

use super::*;

/// A node that will never get a child: widening stopped (the policy only repeated siblings or
/// returned nothing) and no expansion of it is in progress.
pub(super) fn is_dead_end(tree: &Tree, cfg: &SearchConfig, node: NodeId) -> bool {
    tree.is_frozen(node)
        && tree.child_count(node) == 0
        && (cfg.expansion.mode == ExpansionMode::Full || tree.reserved(node) == 0)
}

/// Expands `node` if the expansion rule allows it now; returns the children created.
pub(super) fn try_expand(
    ctx: &Ctx<'_>,
    node: NodeId,
    depth: u32,
    importance: f64,
    local: &mut SearchStats,
) -> Result<Vec<Chain>> {
    let tree = &**ctx.tree;
    let cfg = ctx.cfg;
    if tree.is_frozen(node) {
        return Ok(Vec::new());
    }
    match cfg.expansion.mode {
        ExpansionMode::Full => {
            let k = cfg.cap(depth);
            if tree.reserve(node, k, k, k, true)?.is_none() {
                return Ok(Vec::new());
            }
            expand_full(ctx, node, k, local)
        }
        ExpansionMode::Progressive => {
            let width = tree.grow_width(node, select::allowance(cfg, depth, importance));
            if tree.reserved(node) >= width {
                return Ok(Vec::new());
            }
            let Some(slot) = tree.reserve(node, 1, width, cfg.cap(depth), false)? else {
                return Ok(Vec::new());
            };
            match expand_one(ctx, node, slot, local) {
                Ok(c) => Ok(c),
                Err(e) => {
                    tree.unreserve(node, 1);
                    Err(e)
                }
            }
        }
    }
}

pub(crate) fn expand_seed(tree: &Tree, node: NodeId, slot: u32) -> u64 {
    mix(mix(tree.seed(), u64::from(node.0)), u64::from(slot))
}

/// Whether the step after `node` must run to the end (depth limit).
pub(crate) fn must_finish(tree: &Tree, cfg: &SearchConfig, node: NodeId) -> bool {
    tree.depth(node) + 1 >= cfg.budget.max_depth
}

/// Progressive widening: one new child, resampled while it is too close to a sibling (AlphaLLM's
/// state merge); the most distant sample is kept; an exact duplicate after every resample
/// freezes the node.
fn expand_one(
    ctx: &Ctx<'_>,
    node: NodeId,
    slot: u32,
    local: &mut SearchStats,
) -> Result<Vec<Chain>> {
    let tree = &**ctx.tree;
    let cfg = ctx.cfg;
    let merge = &cfg.expansion.merge;
    let to_end = must_finish(tree, cfg, node);
    let seed = expand_seed(tree, node, slot);
    let attempts = if merge.dedup || merge.edit_distance > 0 {
        merge.max_resamples + 1
    } else {
        1
    };
    let mut best: Option<(Step, u32)> = None;
    for attempt in 0..attempts {
        let spec = ExpandSpec {
            node,
            k: 1,
            seed: mix(seed, u64::from(attempt)),
            to_end,
            greedy: cfg.expansion.greedy_first_child && slot == 0 && attempt == 0,
            max_tokens: None,
        };
        let Some(mut out) = ctx.propose(vec![spec], false, local)? else {
            break;
        };
        local.policy_requests += 1;
        if attempt > 0 {
            local.resamples += 1;
        }
        let step = out
            .pop()
            .and_then(|mut v| v.pop())
            .expect("contract checked: k = 1");
        let d = sibling_distance(tree, cfg, node, &step.text, &[]);
        let good = d > 0 && (merge.edit_distance == 0 || d >= merge.edit_distance || step.finished);
        if best.as_ref().is_none_or(|(_, bd)| d > *bd) {
            best = Some((step, d));
        }
        if good {
            break;
        }
    }
    let Some((step, d)) = best else {
        // The token budget ran out before the first attempt: the search is stopping.
        tree.unreserve(node, 1);
        return Ok(Vec::new());
    };
    if d == 0 && merge.dedup {
        local.duplicates += 1;
        // Order: freeze before giving the slot back, so no thread sees a free slot on a node
        // that should stop widening.
        tree.freeze(node);
        tree.unreserve(node, 1);
        return Ok(Vec::new());
    }
    let ids = create_children(ctx, node, vec![step], to_end, merge.dedup, local)?;
    if ids.is_empty() {
        // Another thread linked the same step first: give the slot back.
        tree.unreserve(node, 1);
    } else {
        local.expansions += 1;
    }
    Ok(ids)
}

/// Full expansion (MCTS-DPO): `k` candidates in one request; exact duplicates (and, with an
/// edit-distance threshold, near-duplicates) of an earlier candidate are dropped.
fn expand_full(ctx: &Ctx<'_>, node: NodeId, k: u32, local: &mut SearchStats) -> Result<Vec<Chain>> {
    let tree = &**ctx.tree;
    let cfg = ctx.cfg;
    let to_end = must_finish(tree, cfg, node);
    let k = if to_end && cfg.expansion.single_at_depth_limit {
        1
    } else {
        k
    };
    let spec = ExpandSpec {
        node,
        k,
        seed: expand_seed(tree, node, 0),
        to_end,
        greedy: false,
        max_tokens: None,
    };
    let Some(mut out) = ctx.propose(vec![spec], false, local)? else {
        // The token budget ran out: the search is stopping; the slots are not needed.
        tree.unreserve(node, k);
        return Ok(Vec::new());
    };
    let steps = out.pop().expect("contract checked: one answer per request");
    local.policy_requests += 1;
    let mut kept: Vec<Step> = Vec::with_capacity(steps.len());
    for step in steps {
        let texts: Vec<&str> = kept.iter().map(|s| s.text.as_str()).collect();
        let d = sibling_distance(tree, cfg, node, &step.text, &texts);
        let dup = (d == 0 && cfg.expansion.merge.dedup)
            || (cfg.expansion.merge.edit_distance > 0 && d < cfg.expansion.merge.edit_distance);
        if dup {
            local.duplicates += 1;
        } else {
            kept.push(step);
        }
    }
    if kept.is_empty() {
        // The reservation of all k slots stays (INV-4): the node is never expanded again.
        tree.freeze(node);
        return Ok(Vec::new());
    }
    // Full expansion happens once per node, so no concurrent sibling can appear: no link check.
    let ids = create_children(ctx, node, kept, to_end, false, local)?;
    local.expansions += 1;
    Ok(ids)
}

/// The smallest (capped) edit distance from `text` to the published children of `node` and to
/// `extra` texts. Without an edit-distance threshold only exact equality counts (0 or 1); with
/// dedup and merge both off, always 1.
fn sibling_distance(
    tree: &Tree,
    cfg: &SearchConfig,
    node: NodeId,
    text: &str,
    extra: &[&str],
) -> u32 {
    let m = &cfg.expansion.merge;
    if !m.dedup && m.edit_distance == 0 {
        return 1;
    }
    let cap = m.edit_distance.max(1);
    let siblings = tree.children(node).map(|c| tree.data(c).step.text.as_str());
    merge::min_distance(text, siblings.chain(extra.iter().copied()), cap)
}

/// Reserves `k` more child slots on a node that is not being searched concurrently (baselines,
/// answer completion); `false` if its block has no room.
pub(crate) fn reserve_more(tree: &Tree, node: NodeId, k: u32) -> Result<bool> {
    Ok(tree.reserve(node, k, u32::MAX, k, false)?.is_some())
}
