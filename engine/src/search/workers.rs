//! The simulation workers: a phase of simulations over `parallel.threads` threads, one
//! simulation (descend, expand, back up; INV-5), and MCTS-DPO's move-by-move search.

use super::backup::backup;
use super::expand::{is_dead_end, try_expand};
use super::*;

enum Sim {
    Done,
    Collision,
    Stopped,
}

/// Runs `sims` simulations from `root` with the configured number of threads.
pub(super) fn run_phase(ctx: &Ctx<'_>, root: NodeId, sims: u64) -> Result<SearchStats> {
    // Relaxed: reset between phases, which are separated by thread joins.
    ctx.shared.started.store(0, Ordering::Relaxed);
    let threads = ctx.cfg.parallel.threads as usize;
    let mut total = SearchStats::default();
    if threads == 1 {
        total = worker(ctx, root, sims);
    } else {
        let results = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|_| s.spawn(move || worker(ctx, root, sims)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("workers catch their own panics"))
                .collect::<Vec<_>>()
        });
        for r in results {
            total += r;
        }
    }
    let err = ctx
        .shared
        .error
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take();
    match err {
        Some(e) => Err(e),
        None => Ok(total),
    }
}

/// Hands out simulation tickets. Workers take them in chunks (up to 64 when the budget is large)
/// so the shared counter is not touched by every simulation; the total never exceeds the budget.
struct Tickets {
    sims: u64,
    chunk: u64,
    left: u64,
}

impl Tickets {
    fn new(ctx: &Ctx<'_>, sims: u64) -> Self {
        let threads = u64::from(ctx.cfg.parallel.threads);
        let chunk = if ctx.cfg.budget.min_terminals > 0 {
            1
        } else {
            (sims / (threads * 256)).clamp(1, 64)
        };
        Tickets {
            sims,
            chunk,
            left: 0,
        }
    }

    fn take(&mut self, ctx: &Ctx<'_>) -> bool {
        let sh = ctx.shared;
        if sh.stopped() {
            return false;
        }
        if ctx.wall_exceeded() {
            sh.stop(StopReason::WallTime);
            return false;
        }
        if self.left > 0 {
            self.left -= 1;
            return true;
        }
        // Relaxed: tickets only need to be unique.
        let t = sh.started.fetch_add(self.chunk, Ordering::Relaxed);
        if t < self.sims {
            self.left = (self.sims - t).min(self.chunk) - 1;
            return true;
        }
        let min_t = u64::from(ctx.cfg.budget.min_terminals);
        // Relaxed: a budget counter. (With min_terminals the chunk is 1.)
        min_t > 0
            && t < self.sims.saturating_mul(10)
            && sh.terminals.load(Ordering::Relaxed) < min_t
    }
}

/// A worker's visits and fixed-point value sum at the search root, credited once at the end.
#[derive(Debug, Default)]
struct RootTally {
    visits: u32,
    value: i64,
}

impl RootTally {
    fn add(&mut self, score: f32) {
        self.visits += 1;
        self.value += crate::tree::fixed(f64::from(score));
    }
}

/// Runs [`work`], turning a panic (in a policy, critic or task implementation) into an error that
/// stops the other workers instead of leaving them waiting on the dead thread's reservations.
fn worker(ctx: &Ctx<'_>, root: NodeId, sims: u64) -> SearchStats {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(ctx, root, sims))) {
        Ok(stats) => stats,
        Err(payload) => {
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            ctx.shared.fail(Error::WorkerPanicked(msg));
            SearchStats::default()
        }
    }
}

fn work(ctx: &Ctx<'_>, root: NodeId, sims: u64) -> SearchStats {
    let mut local = SearchStats::default();
    let mut path = Vec::with_capacity(64);
    let mut tally = RootTally::default();
    let mut tickets = Tickets::new(ctx, sims);
    'tickets: while tickets.take(ctx) {
        let mut backoff = 0u32;
        loop {
            match simulate(ctx, root, &mut path, &mut tally, &mut local) {
                Ok(Sim::Done) => {
                    local.simulations += 1;
                    ctx.shared.simulated();
                    break;
                }
                Ok(Sim::Stopped) => break 'tickets,
                Ok(Sim::Collision) => {
                    local.collisions += 1;
                    if ctx.shared.stopped() {
                        break 'tickets;
                    }
                    if ctx.wall_exceeded() {
                        ctx.shared.stop(StopReason::WallTime);
                        break 'tickets;
                    }
                    // Another thread is expanding the node we need: wait a little, growing.
                    backoff = (backoff + 1).min(10);
                    if backoff < 4 {
                        std::thread::yield_now();
                    } else {
                        std::thread::sleep(Duration::from_micros(1 << backoff));
                    }
                }
                Err(e) => {
                    ctx.shared.fail(e);
                    break 'tickets;
                }
            }
        }
    }
    ctx.tree.credit(root, tally.visits, tally.value);
    local
}

fn abort_path(tree: &Tree, path: &[NodeId]) {
    for &n in path {
        tree.abort(n);
    }
}

/// One simulation from `root`. On every exit each node in `path` has been entered once and then
/// either backed up or aborted (INV-5).
///
/// The search root itself is not entered: its visits and value are tallied by the worker and
/// credited when the phase ends ([`RootTally`]), so no simulation writes the hottest cache line
/// of the tree; selection at the root derives the root's count from its children.
fn simulate(
    ctx: &Ctx<'_>,
    root: NodeId,
    path: &mut Vec<NodeId>,
    tally: &mut RootTally,
    local: &mut SearchStats,
) -> Result<Sim> {
    let tree = &**ctx.tree;
    let cfg = ctx.cfg;
    path.clear();
    let mut node = root;
    let done = |path: &[NodeId], tally: &mut RootTally, s: f32| {
        backup(tree, cfg, path, s);
        tally.add(s);
        Ok(Sim::Done)
    };
    loop {
        if tree.is_terminal(node) {
            let s = tree.eval(node).map_or(0.0, |e| e.score);
            return done(path, tally, s);
        }
        let scan = select::scan(tree, cfg, node, node == root);
        let created = match try_expand(ctx, node, tree.depth(node), scan.importance, local) {
            Ok(c) => c,
            Err(Error::TreeFull { .. }) => {
                abort_path(tree, path);
                ctx.shared.stop(StopReason::Nodes);
                return Ok(Sim::Stopped);
            }
            Err(e) => {
                abort_path(tree, path);
                return Err(e);
            }
        };
        if created.is_empty() && ctx.shared.stopped() {
            // The budget ran out during this expansion: end without a backup.
            abort_path(tree, path);
            return Ok(Sim::Stopped);
        }
        let chain: Chain = if created.is_empty() {
            match scan.best {
                Some(c) => vec![c],
                None if is_dead_end(tree, cfg, node) => {
                    local.dead_ends += 1;
                    let s = tree.eval(node).map_or(0.0, |e| e.score);
                    return done(path, tally, s);
                }
                None => {
                    abort_path(tree, path);
                    return Ok(Sim::Collision);
                }
            }
        } else if created.len() == 1 {
            created[0].clone()
        } else {
            // Full expansion: pick among the fresh children by the selection rule.
            let best = select::scan(tree, cfg, node, node == root)
                .best
                .unwrap_or(created[0][0]);
            created
                .iter()
                .find(|c| c[0] == best)
                .cloned()
                .unwrap_or_else(|| vec![best])
        };
        // A new chain (a whole solution stored step by step) is entered to its end: its last
        // node's score is what this simulation found.
        for &n in &chain {
            tree.enter(n);
            path.push(n);
        }
        let next = *chain.last().expect("a chain has a head");
        if !created.is_empty()
            && super::children::prunes(cfg, tree.is_terminal(next), tree.eval(next))
        {
            // Frozen before it was linked: no tokens are spent below it.
            let s = tree.eval(next).map_or(0.0, |e| e.score);
            return done(path, tally, s);
        }
        if !created.is_empty() && !cfg.expansion.descend_to_terminal {
            let s = tree.eval(next).map_or(0.0, |e| e.score);
            return done(path, tally, s);
        }
        node = next;
    }
}

/// MCTS-DPO's move-by-move search: simulate from the current root, commit to the child with the
/// most `visits·(1 + diversity)` (ties by Q, then score), re-root there, repeat to a terminal.
pub(super) fn move_by_move(ctx: &Ctx<'_>, committed: &mut Vec<NodeId>) -> Result<SearchStats> {
    let tree = &**ctx.tree;
    let cfg = ctx.cfg;
    let mut total = SearchStats::default();
    let mut root = NodeId::ROOT;
    let mut first = true;
    while !tree.data(root).terminal && !ctx.shared.stopped() {
        let sims = u64::from(cfg.budget.simulations)
            * if first {
                u64::from(cfg.move_by_move.root_factor)
            } else {
                1
            };
        first = false;
        total += run_phase(ctx, root, sims)?;
        if cfg.backup == BackupRule::QRPlusV {
            settle_q(tree);
        }
        let Some(next) = commit_child(tree, cfg, root) else {
            break;
        };
        root = next;
        tree.set_search_root(root);
        committed.push(root);
    }
    Ok(total)
}

fn commit_child(tree: &Tree, cfg: &SearchConfig, root: NodeId) -> Option<NodeId> {
    let key = |c: NodeId| {
        let (n, _) = tree.counts(c);
        let grand: Vec<u32> = tree.children(c).map(|g| tree.counts(g).0).collect();
        let diversity = match (grand.iter().max(), grand.iter().min()) {
            (Some(&mx), Some(&mn)) => f64::from(mx - mn),
            _ => 0.0,
        };
        let q = select::q_value(tree, cfg, c, n);
        // V = Q - r (MCTS-DPO breaks ties by Q, then V).
        let v = q - tree.eval(c).map_or(0.0, |e| f64::from(e.reward));
        (f64::from(n) * (1.0 + diversity), q, v)
    };
    tree.children_in_order(root).into_iter().max_by(|&a, &b| {
        let (ka, kb) = (key(a), key(b));
        ka.partial_cmp(&kb)
            .unwrap_or(std::cmp::Ordering::Equal)
            // Prefer the older child on exact ties, for determinism.
            .then(b.cmp(&a))
    })
}
