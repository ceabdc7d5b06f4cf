//! New children: candidates held to the step rule (INV-7), allocated, scored by the critic
//! trio (and fast rollouts), and linked (INV-2, INV-4).

use super::*;

/// New nodes from one candidate: a single step, or a whole solution split into its steps (head
/// first). Callers that continue from a candidate continue from its last node.
pub(crate) type Chain = Vec<NodeId>;

/// Holds a candidate to the policy's step rule ([`Policy::step_rule`]): a step (not `to_end`)
/// that runs past its first boundary is cut there; a whole solution becomes one step per piece
/// the rule makes of it. Token counts and log-probabilities are shared out by bytes (text cut
/// off keeps its share: the pieces hold at most what the candidate cost, and exactly that when
/// nothing was cut off), a piece over the rule's token cap is cut into even
/// parts, and the token ids are kept only by a candidate left whole (re-tokenising is the
/// policy's business) — unless the policy splits a whole solution itself
/// ([`Policy::split_steps`]), keeping each step's exact tokens.
fn conform(policy: &dyn Policy, step: Step, to_end: bool, local: &mut SearchStats) -> Vec<Step> {
    let Some(rule) = policy.step_rule() else {
        return vec![step];
    };
    if to_end
        && step.tokens.is_some()
        && let Some(pieces) = policy.split_steps(&step)
        && !pieces.is_empty()
        && pieces.iter().map(|p| u64::from(p.n_tokens)).sum::<u64>() == u64::from(step.n_tokens)
        && pieces
            .iter()
            .all(|p| p.n_tokens <= rule.max_tokens && rule.split(&p.text).len() == 1)
    {
        // The policy's split, with exact token ids.
        local.split_steps += (pieces.len() - 1) as u64;
        return pieces;
    }
    let mut pieces = rule.split(&step.text);
    if pieces.is_empty() {
        return vec![step];
    }
    if !to_end {
        pieces.truncate(1);
    }
    let whole = pieces.len() == 1 && pieces[0].start == 0 && pieces[0].end == step.text.len();
    if !to_end && !whole {
        local.cut_steps += 1;
    }
    if whole && (!to_end || step.n_tokens <= rule.max_tokens) {
        let mut step = step;
        step.finished |= pieces[0].finished;
        return vec![step];
    }
    // Even parts of any piece whose share of the tokens is over the cap.
    let total = step.text.len().max(1) as f64;
    let share = |len: usize| f64::from(step.n_tokens) * len as f64 / total;
    let mut parts: Vec<(usize, usize, bool)> = Vec::with_capacity(pieces.len());
    for p in &pieces {
        let n = (share(p.end - p.start) / f64::from(rule.max_tokens.max(1))).ceil() as usize;
        let n = if to_end { n.max(1) } else { 1 };
        let mut at = p.start;
        for i in 1..=n {
            let mut end = if i == n {
                p.end
            } else {
                p.start + (p.end - p.start) * i / n
            };
            while !step.text.is_char_boundary(end) {
                end += 1;
            }
            if end > at {
                parts.push((at, end, p.finished && end == p.end));
                at = end;
            }
        }
    }
    let n_parts = parts.len();
    // Integer shares of the token count by bytes, cumulative so they never add up to more.
    let mut given = 0u32;
    let mut out = Vec::with_capacity(n_parts);
    for (i, &(a, b, finished)) in parts.iter().enumerate() {
        // Text cut off after the answer line (or past a step's end) keeps its share: those
        // tokens were generated and charged, but no node holds them.
        let upto = if b == step.text.len() {
            step.n_tokens
        } else {
            (f64::from(step.n_tokens) * b as f64 / total).round() as u32
        }
        .clamp(given, step.n_tokens);
        let n_tokens = upto - given;
        given = upto;
        out.push(Step {
            text: step.text[a..b].to_string(),
            tokens: None,
            logprob: step.logprob * (b - a) as f32 / total as f32,
            n_tokens,
            reused_tokens: if i == 0 { step.reused_tokens } else { 0 },
            finished: finished || (i + 1 == n_parts && step.finished && b == step.text.len()),
        });
    }
    if to_end && n_parts > 1 {
        local.split_steps += (n_parts - 1) as u64;
    }
    out
}

/// Allocates, scores and links children of `node` (INV-2: data, then eval, then link). The
/// caller holds a reservation for every step (INV-4). Each step is first held to the policy's
/// step rule ([`conform`]): a whole solution (`to_end`) becomes a chain of nodes, one per step,
/// linked as one ([`Tree::link_chain`]); its last node is terminal and carries the critics' score
/// of the whole solution (so solutions rank as they did unsplit), and a node inside it is
/// terminal (ending the chain there) only when the task says so. A chain's inner nodes take no
/// other children (their child blocks hold one slot), and its nodes may lie past
/// `budget.max_depth`. Fast rollouts run only from candidates left whole (a chain already
/// holds its completion).
///
/// With `dedup`, a child whose step equals a sibling published meanwhile (by another thread) is
/// dropped at link time; the caller gives back its reservation (returned chains are the linked
/// ones only).
pub(crate) fn create_children(
    ctx: &Ctx<'_>,
    node: NodeId,
    steps: Vec<Step>,
    to_end: bool,
    dedup: bool,
    local: &mut SearchStats,
) -> Result<Vec<Chain>> {
    let tree = &**ctx.tree;
    let cfg = ctx.cfg;
    let task = &ctx.eval.models().task;
    let policy = &*ctx.eval.models().policy;
    let depth = tree.depth(node) + 1;
    let mut rests: Vec<Vec<Step>> = Vec::with_capacity(steps.len());
    let mut wholes: Vec<Step> = Vec::with_capacity(steps.len());
    let datas: Vec<NodeData> = steps
        .into_iter()
        .map(|step| {
            // The candidate as generated, kept to score the end of its chain.
            let whole = if to_end {
                step.clone()
            } else {
                Step::default()
            };
            let mut pieces = conform(policy, step, to_end, local).into_iter();
            let step = pieces.next().expect("conform keeps at least one piece");
            let mut rest: Vec<Step> = pieces.collect();
            let path = PathRef::with_extra(tree, node, &step);
            let task_done = task.is_terminal(&path);
            if task_done {
                rest.clear();
            }
            let terminal =
                task_done || (rest.is_empty() && (to_end || depth >= cfg.budget.max_depth));
            rests.push(rest);
            wholes.push(whole);
            let answer = if terminal {
                task.extract_answer(&path.text())
            } else {
                None
            };
            NodeData {
                parent: node,
                depth,
                step,
                terminal,
                answer,
            }
        })
        .collect();
    let ids = tree.alloc_many(datas)?;
    // The rest of each chain, allocated node by node below its head (unreachable until linked).
    let mut chains: Vec<Chain> = Vec::with_capacity(ids.len());
    for (&head, rest) in ids.iter().zip(rests) {
        let mut chain = vec![head];
        let n_rest = rest.len();
        for (i, step) in rest.into_iter().enumerate() {
            let above = *chain.last().expect("the head");
            let path = PathRef::with_extra(tree, above, &step);
            let terminal = i + 1 == n_rest || task.is_terminal(&path);
            let answer = if terminal {
                task.extract_answer(&path.text())
            } else {
                None
            };
            let data = NodeData {
                parent: above,
                depth: tree.depth(above) + 1,
                step,
                terminal,
                answer,
            };
            let id = tree.alloc_many(vec![data])?[0];
            // A one-slot block: the chain's inner node takes no other child.
            tree.reserve(above, 1, 1, 1, true)?;
            chain.push(id);
            if terminal {
                break;
            }
        }
        chains.push(chain);
    }
    let whole: Vec<bool> = chains.iter().map(|c| c.len() == 1).collect();
    let above = Above::of(tree, cfg, node);
    let evals = evaluate(ctx, &above, &ids, &whole, None, local)?;
    let mut linked = Vec::with_capacity(ids.len());
    for ((chain, e), whole_step) in chains.into_iter().zip(evals).zip(wholes) {
        let mut scored = vec![(chain[0], e, above.v + f64::from(e.reward))];
        let mut up = above.next(cfg, &e, scored[0].2);
        for (j, &id) in chain.iter().enumerate().skip(1) {
            let e = if j + 1 == chain.len() {
                // The end of the chain is scored as the search scores a whole solution: the
                // critics read the solution as one step after the chain's parent, so ranking
                // solutions does not change with how they are stored.
                let e = evaluate(
                    ctx,
                    &above,
                    &[id],
                    &[false],
                    Some((node, &whole_step)),
                    local,
                )?[0];
                Eval {
                    reward: e.score - up.score,
                    ..e
                }
            } else {
                evaluate(ctx, &up, &[id], &[false], None, local)?[0]
            };
            let q0 = up.v + f64::from(e.reward);
            up = up.next(cfg, &e, q0);
            scored.push((id, e, q0));
        }
        let &(tail, ref tail_eval, _) = scored.last().expect("a chain has a head");
        let pruned = prunes(cfg, tree.is_terminal(tail), Some(tail_eval));
        if pruned {
            // Before linking, so no thread can reserve a slot on it first.
            tree.freeze(tail);
        }
        if !tree.link_chain(node, &scored, dedup) {
            local.duplicates += 1;
            continue;
        }
        local.pruned += u64::from(pruned);
        if chain.iter().any(|&n| tree.is_terminal(n)) {
            // Relaxed: a budget counter (AlphaLLM's min_terminals).
            ctx.shared.terminals.fetch_add(1, Ordering::Relaxed);
        }
        linked.push(chain);
    }
    Ok(linked)
}

/// Whether a new MCTS node is pruned (`expansion.prune_below`): unfinished, and its own step's
/// process score below the threshold. A pruned node is frozen before it is linked, so it never
/// takes a child: a simulation that selects it later ends there at no token cost, and its
/// parent widens instead.
pub(super) fn prunes(cfg: &SearchConfig, terminal: bool, eval: Option<&Eval>) -> bool {
    cfg.algorithm == Algorithm::Mcts
        && !terminal
        && cfg
            .expansion
            .prune_below
            .is_some_and(|limit| eval.and_then(|e| e.prm).is_some_and(|p| p < limit))
}

/// What scoring a new node needs from the node above it: its score, the PRM scores along its
/// path (kept only for aggregates other than `latest`), and its MCTS-DPO value `V = Q - r`.
#[derive(Clone, Debug)]
struct Above {
    score: f32,
    prms: Vec<f32>,
    v: f64,
}

impl Above {
    /// For a linked (scored) node.
    fn of(tree: &Tree, cfg: &SearchConfig, node: NodeId) -> Above {
        let prms = if cfg.scoring.prm_aggregate == PrmAggregate::Latest {
            Vec::new()
        } else {
            tree.path_to(node)
                .into_iter()
                .filter_map(|n| tree.eval(n).and_then(|e| e.prm))
                .collect()
        };
        Above {
            score: tree.eval(node).map_or(0.0, |e| e.score),
            prms,
            v: tree.q(node) - tree.eval(node).map_or(0.0, |e| f64::from(e.reward)),
        }
    }

    /// For a node just scored `e` (with initial Q `q0`) below this one.
    fn next(&self, cfg: &SearchConfig, e: &Eval, q0: f64) -> Above {
        let mut prms = self.prms.clone();
        if cfg.scoring.prm_aggregate != PrmAggregate::Latest
            && let Some(p) = e.prm
        {
            prms.push(p);
        }
        Above {
            score: e.score,
            prms,
            v: q0 - f64::from(e.reward),
        }
    }
}

/// Scores the root (value critic on the bare prompt) before the search starts.
pub(super) fn evaluate_root(ctx: &Ctx<'_>, local: &mut SearchStats) -> Result<()> {
    let v = ctx
        .eval
        .score(CriticKind::Value, ctx.tree, vec![(NodeId::ROOT, None)])?;
    let value = v.map(|v| v[0]);
    if value.is_some() {
        local.critic_requests += 1;
    }
    // The root's score is its critic part, as for any node: the value alone (when weighted).
    let critic = value
        .filter(|_| ctx.cfg.scoring.value_weight > 0.0)
        .unwrap_or(0.0);
    ctx.tree.set_eval(
        NodeId::ROOT,
        Eval {
            score: critic,
            reward: 0.0,
            value,
            ..Eval::default()
        },
        0.0,
    );
    Ok(())
}

/// Scores freshly allocated (not yet linked) children of `parent` with the critic trio, fast
/// rollouts and the terminal outcome reward.
fn evaluate(
    ctx: &Ctx<'_>,
    above: &Above,
    ids: &[NodeId],
    whole: &[bool],
    seen_as: Option<(NodeId, &Step)>,
    local: &mut SearchStats,
) -> Result<Vec<Eval>> {
    let tree = &**ctx.tree;
    let cfg = ctx.cfg;
    let sc = &cfg.scoring;
    // What the critics read for each node: its own path, or (`seen_as`, for the one node of a
    // chain's end) the path above the chain with the whole solution as its last step.
    let target = |i: NodeId| match seen_as {
        Some((anchor, step)) => (anchor, Some(step.clone())),
        None => (i, None),
    };
    let all: Vec<(NodeId, Option<Step>)> = ids.iter().map(|&i| target(i)).collect();
    let n_critics = |v: &Option<Vec<f32>>| v.as_ref().map_or(0, |v| v.len() as u64);
    let terminal: Vec<(NodeId, Option<Step>)> = ids
        .iter()
        .filter(|&&i| tree.is_terminal(i))
        .map(|&i| target(i))
        .collect();
    let mut scores = ctx
        .eval
        .score_all(
            ctx.tree,
            vec![
                (CriticKind::Value, all.clone()),
                (CriticKind::Process, all),
                (CriticKind::Outcome, terminal),
            ],
        )?
        .into_iter();
    let (value, prm, orm_terminal) = (
        scores.next().flatten(),
        scores.next().flatten(),
        scores.next().flatten(),
    );
    local.critic_requests += n_critics(&value) + n_critics(&prm) + n_critics(&orm_terminal);
    let rollout_orm = rollouts(ctx, ids, whole, local)?;

    let parent_score = above.score;
    let parent_prms = &above.prms;
    let problem = tree.problem();
    let task = &ctx.eval.models().task;
    let mut t_idx = 0;
    let mut out = Vec::with_capacity(ids.len());
    for (i, &id) in ids.iter().enumerate() {
        let d = tree.data(id);
        let v = value.as_ref().map(|v| v[i]);
        let p = prm.as_ref().map(|p| p[i]);
        let o = if d.terminal {
            let o = orm_terminal.as_ref().map(|o| o[t_idx]);
            t_idx += 1;
            o
        } else {
            rollout_orm.as_ref().and_then(|r| r[i])
        };
        let p_agg = p.and_then(|p| {
            let mut s = parent_prms.clone();
            s.push(p);
            sc.prm_aggregate.apply(&s)
        });
        let mut num = 0.0f32;
        let mut den = 0.0f32;
        for (w, s) in [
            (sc.value_weight, v),
            (sc.prm_weight, p_agg),
            (sc.orm_weight, o),
        ] {
            if let Some(s) = s
                && w > 0.0
            {
                num += w * s;
                den += w;
            }
        }
        let mut score = if den > 0.0 { num / den } else { 0.0 };
        if sc.depth_penalty {
            let parent_depth = d.depth.saturating_sub(1);
            score /= (parent_depth.saturating_sub(3)).max(1) as f32;
        }
        let correct = if d.terminal {
            problem
                .gold
                .as_ref()
                .map(|g| d.answer.as_ref().is_some_and(|a| task.check(a, g)))
        } else {
            None
        };
        if let Some(c) = correct
            && sc.outcome_reward > 0.0
        {
            score += if c {
                sc.outcome_reward
            } else {
                -sc.outcome_reward
            };
        }
        out.push(Eval {
            score,
            reward: score - parent_score,
            value: v,
            prm: p,
            orm: o,
            correct,
        });
    }
    Ok(out)
}

/// AlphaLLM's fast rollouts: complete each new non-terminal node `scoring.rollouts` times with the
/// rollout policy and average the outcome critic over the completions.
fn rollouts(
    ctx: &Ctx<'_>,
    ids: &[NodeId],
    whole: &[bool],
    local: &mut SearchStats,
) -> Result<Option<Vec<Option<f32>>>> {
    let n = ctx.cfg.scoring.rollouts;
    let models = ctx.eval.models();
    if n == 0 || models.rollout.is_none() || models.critics.get(CriticKind::Outcome).is_none() {
        return Ok(None);
    }
    let tree = &**ctx.tree;
    let wants = |j: usize| !tree.data(ids[j]).terminal && whole[j];
    let open: Vec<NodeId> = (0..ids.len())
        .filter(|&j| wants(j))
        .map(|j| ids[j])
        .collect();
    if open.is_empty() {
        return Ok(None);
    }
    let specs = open
        .iter()
        .map(|&i| ExpandSpec {
            node: i,
            k: n,
            seed: mix(expand_seed(tree, i, u32::MAX), 0x5EED),
            to_end: true,
            greedy: false,
            max_tokens: None,
        })
        .collect();
    let Some(completions) = ctx.propose(specs, true, local)? else {
        return Ok(None);
    };
    local.rollout_requests += open.len() as u64;
    let mut paths = Vec::with_capacity(open.len() * n as usize);
    for (&i, steps) in open.iter().zip(completions) {
        for s in steps {
            paths.push((i, Some(s)));
        }
    }
    let scores = ctx
        .eval
        .score(CriticKind::Outcome, ctx.tree, paths)?
        .expect("checked: outcome critic present");
    local.critic_requests += scores.len() as u64;
    let mut out = vec![None; ids.len()];
    let mut it = scores.chunks(n as usize);
    for (j, slot) in out.iter_mut().enumerate() {
        if wants(j) {
            let chunk = it.next().expect("one chunk per open node");
            *slot = Some(chunk.iter().sum::<f32>() / chunk.len() as f32);
        }
    }
    Ok(Some(out))
}
