//! Baselines run through the same traits, batcher and tree as MCTS, so their outputs, budgets
//! and counters compare directly: greedy decoding, best-of-N (outcome-critic ranked),
//! self-consistency (majority answer) and PRM-guided step-level beam search.
//!
//! When a baseline ends, each terminal's score is backed up along its path, so visit counts and
//! mean values exist for the output views (pairs from a best-of-N tree are trajectory-level pairs).

use super::{Ctx, SearchStats, create_children, expand_seed, must_finish, reserve_more};
use crate::batcher::ExpandSpec;
use crate::error::Result;
use crate::rng::mix;
use crate::tree::{NodeId, Tree};

fn back_up_terminals(tree: &Tree) {
    let terms: Vec<NodeId> = tree.node_ids().filter(|&n| tree.data(n).terminal).collect();
    for t in terms {
        let s = f64::from(tree.eval(t).map_or(0.0, |e| e.score));
        for n in tree.path_to(t) {
            tree.enter(n);
            tree.backup(n, s);
        }
    }
}

/// One path decoded greedily, step by step.
pub(super) fn greedy(ctx: &Ctx<'_>, local: &mut SearchStats) -> Result<()> {
    let tree = &**ctx.tree;
    let mut node = NodeId::ROOT;
    while !tree.data(node).terminal && !ctx.shared.stopped() {
        let to_end = must_finish(tree, ctx.cfg, node);
        let spec = ExpandSpec {
            node,
            k: 1,
            seed: expand_seed(tree, node, 0),
            to_end,
            greedy: true,
            max_tokens: None,
        };
        let Some(mut out) = ctx.propose(vec![spec], false, local)? else {
            break;
        };
        let steps = out.pop().expect("one answer");
        local.policy_requests += 1;
        reserve_more(tree, node, 1)?;
        node = create_children(ctx, node, steps, to_end, false, local)?
            .pop()
            .and_then(|chain| chain.last().copied())
            .expect("k = 1");
        local.expansions += 1;
    }
    back_up_terminals(tree);
    Ok(())
}

/// `baseline.n` complete solutions sampled from the root in one request (best-of-N and
/// self-consistency differ only in how the answer is chosen). With `baseline.fill_budget` and a
/// token budget, waves of up to `n` samples follow until the budget is spent: each wave holds as
/// many samples as the tokens left pay for at the mean sample length so far (at first, the
/// policy's cap on a solution), and sampling ends when less than half a sample is left, so few
/// samples are cut off unfinished.
pub(super) fn sample_n(ctx: &Ctx<'_>, local: &mut SearchStats) -> Result<()> {
    let tree = &**ctx.tree;
    let n = ctx.cfg.baseline.n;
    let fill = ctx.cfg.baseline.fill_budget && ctx.cfg.budget.max_tokens.is_some();
    // Waves share the root's child block, sized once for all of them.
    let block = if fill { n.max(FILL_BLOCK) } else { n };
    let mut samples = 0u64;
    for wave in 0u32.. {
        let mut k = n;
        if let (true, Some(left)) = (fill, ctx.tokens_left()) {
            // Size the wave by what a sample costs: the mean so far, or at first the policy's
            // cap on a whole solution, so that samples are not cut into useless pieces.
            let per = match local.tokens.checked_div(samples) {
                Some(mean) => mean.max(1),
                None => ctx
                    .eval
                    .policy(false)?
                    .max_step_tokens(true)
                    .map_or(1, u64::from)
                    .max(1),
            };
            if samples > 0 && left < per / 2 {
                // Less than half a typical sample left: another one would be cut off.
                ctx.shared.stop(super::StopReason::Tokens);
                break;
            }
            k = k.min(u32::try_from(left / per).unwrap_or(u32::MAX)).max(1);
        }
        let free = tree.block_cap(NodeId::ROOT).max(block) - tree.reserved(NodeId::ROOT);
        k = k.min(free);
        if k == 0 {
            break;
        }
        let spec = ExpandSpec {
            node: NodeId::ROOT,
            k,
            seed: if wave == 0 {
                expand_seed(tree, NodeId::ROOT, 0)
            } else {
                mix(expand_seed(tree, NodeId::ROOT, 0), u64::from(wave))
            },
            to_end: true,
            greedy: false,
            max_tokens: None,
        };
        let Some(mut out) = ctx.propose(vec![spec], false, local)? else {
            break;
        };
        let steps = out.pop().expect("one answer");
        local.policy_requests += 1;
        samples += steps.len() as u64;
        if tree
            .reserve(NodeId::ROOT, steps.len() as u32, u32::MAX, block, false)?
            .is_none()
        {
            break;
        }
        create_children(ctx, NodeId::ROOT, steps, true, false, local)?;
        local.expansions += 1;
        if !fill || ctx.shared.stopped() {
            break;
        }
    }
    back_up_terminals(tree);
    Ok(())
}

/// Root child slots for sampling until a budget is spent (the most samples one tree keeps).
const FILL_BLOCK: u32 = 1024;

/// The aggregated PRM score of the path to `n` (the leaf score without a PRM).
fn beam_key(ctx: &Ctx<'_>, n: NodeId) -> f32 {
    let tree = &**ctx.tree;
    let prms: Vec<f32> = tree
        .path_to(n)
        .into_iter()
        .filter_map(|i| tree.eval(i).and_then(|e| e.prm))
        .collect();
    ctx.cfg
        .scoring
        .prm_aggregate
        .apply(&prms)
        .unwrap_or_else(|| tree.eval(n).map_or(0.0, |e| e.score))
}

/// Step-level beam search: every live beam asks for `beam_k` candidates (one batched policy
/// call per depth), and the `beam_width` best open candidates by aggregated PRM score survive.
pub(super) fn beam(ctx: &Ctx<'_>, local: &mut SearchStats) -> Result<()> {
    let tree = &**ctx.tree;
    let b = &ctx.cfg.baseline;
    let mut beams = vec![NodeId::ROOT];
    while !beams.is_empty() {
        let specs: Vec<ExpandSpec> = beams
            .iter()
            .map(|&n| ExpandSpec {
                node: n,
                k: b.beam_k,
                seed: expand_seed(tree, n, 0),
                to_end: must_finish(tree, ctx.cfg, n),
                greedy: false,
                max_tokens: None,
            })
            .collect();
        let Some(outs) = ctx.propose(specs, false, local)? else {
            break;
        };
        local.policy_requests += beams.len() as u64;
        let mut open = Vec::new();
        for (&parent, steps) in beams.iter().zip(outs) {
            let mut kept: Vec<crate::types::Step> = Vec::with_capacity(steps.len());
            for s in steps {
                if ctx.cfg.expansion.merge.dedup && kept.iter().any(|k| k.text == s.text) {
                    local.duplicates += 1;
                } else {
                    kept.push(s);
                }
            }
            let to_end = must_finish(tree, ctx.cfg, parent);
            reserve_more(tree, parent, kept.len() as u32)?;
            let ids = create_children(ctx, parent, kept, to_end, false, local)?;
            local.expansions += 1;
            open.extend(
                ids.into_iter()
                    .filter_map(|chain| chain.last().copied())
                    .filter(|&c| !tree.data(c).terminal),
            );
        }
        let mut keyed: Vec<(f32, NodeId)> =
            open.into_iter().map(|n| (beam_key(ctx, n), n)).collect();
        keyed.sort_by(|a, b| {
            b.0.partial_cmp(&a.0)
                .unwrap_or(std::cmp::Ordering::Equal)
                .then(a.1.cmp(&b.1))
        });
        keyed.truncate(b.beam_width as usize);
        beams = keyed.into_iter().map(|(_, n)| n).collect();
        if ctx.shared.stopped() {
            break;
        }
    }
    back_up_terminals(tree);
    Ok(())
}
