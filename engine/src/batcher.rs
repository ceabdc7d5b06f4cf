//! The batcher: gathers policy and critic requests from every in-flight simulation (of every
//! tree sharing it) into batched model calls, by size and by deadline.
//!
//! Each model gets its own queue and server thread. A worker thread submits a job (one or more
//! requests) and blocks on its reply; the server takes the first waiting job, keeps collecting
//! until `max_batch` requests or `max_wait` after that first job, calls the model once, and
//! hands every job its slice of the answer. With `max_batch = 1` requests go straight through.
//!
//! [`Evaluator`] is what searches call: it goes through the batcher when there is one, and calls
//! the models directly on the worker thread otherwise (the zero-overhead path used by benches and
//! one-thread searches).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, bounded, unbounded};
use serde::{Deserialize, Serialize};

use crate::critic::{Critic, CriticKind, CriticPanel, normalise_scores};
use crate::error::{Error, Result};
use crate::policy::{ExpandRequest, Policy};
use crate::task::Task;
use crate::tree::{NodeId, PathRef, Tree};
use crate::types::Step;

/// Batching settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchConfig {
    /// Largest batch handed to a model (requests). A single request is never split, so one that
    /// asks for more candidates than this still goes through, alone.
    pub max_batch: usize,
    /// How long the first request of a batch may wait for company, milliseconds.
    pub max_wait_ms: f64,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            max_batch: 32,
            max_wait_ms: 2.0,
        }
    }
}

impl BatchConfig {
    /// Checks the fields.
    ///
    /// # Errors
    /// [`Error::Config`] naming the field.
    pub fn validate(&self) -> Result<()> {
        if self.max_batch == 0 || self.max_batch > 65_536 {
            return Err(Error::config(
                "batch.max_batch",
                "must be between 1 and 65536",
            ));
        }
        if !(self.max_wait_ms.is_finite() && (0.0..=60_000.0).contains(&self.max_wait_ms)) {
            return Err(Error::config(
                "batch.max_wait_ms",
                "must be between 0 and 60000",
            ));
        }
        Ok(())
    }
}

/// The models a search uses: policy, optional fast-rollout policy, critic trio and task.
#[derive(Clone)]
pub struct Models {
    /// Proposes steps.
    pub policy: Arc<dyn Policy>,
    /// Completes fast rollouts (AlphaLLM's π_fast); `None` uses no rollouts.
    pub rollout: Option<Arc<dyn Policy>>,
    /// The critic trio.
    pub critics: CriticPanel,
    /// Prompt formatting, answers, gold checks.
    pub task: Arc<dyn Task>,
}

impl std::fmt::Debug for Models {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Models")
            .field("policy", &self.policy.name())
            .field(
                "rollout",
                &self.rollout.as_ref().map(|p| p.name().to_string()),
            )
            .field("critics", &self.critics)
            .field("task", &self.task.name())
            .finish()
    }
}

/// Paths to score, owned: tree nodes, each optionally followed by an extra step.
pub(crate) type OwnedPaths = Vec<(NodeId, Option<Step>)>;

/// One expansion to perform (the owned form of an [`ExpandRequest`]).
#[derive(Clone, Debug)]
pub(crate) struct ExpandSpec {
    pub(crate) node: NodeId,
    pub(crate) k: u32,
    pub(crate) seed: u64,
    pub(crate) to_end: bool,
    pub(crate) greedy: bool,
    /// Per-candidate token cap from the search's token budget.
    pub(crate) max_tokens: Option<u32>,
}

struct PolicyJob {
    tree: Arc<Tree>,
    specs: Vec<ExpandSpec>,
    reply: Sender<Result<Vec<Vec<Step>>>>,
    since: Instant,
}

struct CriticJob {
    tree: Arc<Tree>,
    paths: Vec<(NodeId, Option<Step>)>,
    reply: Sender<Result<Vec<f32>>>,
    since: Instant,
}

/// Figures of one queue, for progress bars and bench reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct QueueStats {
    /// Model calls made.
    pub batches: u64,
    /// Requests served.
    pub requests: u64,
    /// Mean requests per call.
    pub mean_batch: f64,
    /// Mean batch size over `max_batch`.
    pub fill: f64,
    /// Mean time a request waited before its call started, milliseconds.
    pub mean_wait_ms: f64,
}

#[derive(Debug, Default)]
struct Counters {
    batches: AtomicU64,
    requests: AtomicU64,
    wait_ns: AtomicU64,
}

impl Counters {
    fn record(&self, requests: usize, wait_ns: u64) {
        // Relaxed: independent statistics counters.
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.requests.fetch_add(requests as u64, Ordering::Relaxed);
        self.wait_ns.fetch_add(wait_ns, Ordering::Relaxed);
    }

    fn snapshot(&self, max_batch: usize) -> QueueStats {
        // Relaxed: statistics.
        let b = self.batches.load(Ordering::Relaxed);
        let r = self.requests.load(Ordering::Relaxed);
        let w = self.wait_ns.load(Ordering::Relaxed);
        let mean_batch = if b == 0 { 0.0 } else { r as f64 / b as f64 };
        QueueStats {
            batches: b,
            requests: r,
            mean_batch,
            fill: mean_batch / max_batch as f64,
            mean_wait_ms: if r == 0 {
                0.0
            } else {
                w as f64 / r as f64 / 1e6
            },
        }
    }
}

/// Statistics of every queue of a batcher.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct BatchStats {
    /// The policy queue.
    pub policy: QueueStats,
    /// The rollout-policy queue.
    pub rollout: QueueStats,
    /// The critic queues, by kind (value, process, outcome).
    pub critics: [QueueStats; 3],
}

/// Handles to the batcher's queues. Obtained inside [`Batcher::run`]; share it by reference with
/// every search that should batch together.
pub struct Batcher {
    cfg: BatchConfig,
    policy: Sender<PolicyJob>,
    rollout: Option<Sender<PolicyJob>>,
    critics: [Option<Sender<CriticJob>>; 3],
    counters: Arc<[Counters; 5]>,
}

impl std::fmt::Debug for Batcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher").field("cfg", &self.cfg).finish()
    }
}

fn kind_index(kind: CriticKind) -> usize {
    match kind {
        CriticKind::Value => 0,
        CriticKind::Process => 1,
        CriticKind::Outcome => 2,
    }
}

impl Batcher {
    /// Starts one server thread per model, runs `f` with the batcher, then shuts the servers down.
    ///
    /// # Errors
    /// [`Error::Config`] if `cfg` is invalid.
    pub fn run<R>(models: &Models, cfg: &BatchConfig, f: impl FnOnce(&Batcher) -> R) -> Result<R> {
        cfg.validate()?;
        let counters: Arc<[Counters; 5]> = Arc::new(Default::default());
        let out = std::thread::scope(|scope| {
            let (ptx, prx) = unbounded::<PolicyJob>();
            {
                let (policy, counters, cfg) = (&models.policy, &counters, cfg);
                scope.spawn(move || serve_policy(&**policy, prx, cfg, &counters[0]));
            }
            let rollout = models.rollout.as_ref().map(|policy| {
                let (tx, rx) = unbounded::<PolicyJob>();
                let counters = &counters;
                scope.spawn(move || serve_policy(&**policy, rx, cfg, &counters[1]));
                tx
            });
            let mut critics: [Option<Sender<CriticJob>>; 3] = [None, None, None];
            for kind in [CriticKind::Value, CriticKind::Process, CriticKind::Outcome] {
                if let Some(critic) = models.critics.get(kind) {
                    let (tx, rx) = unbounded::<CriticJob>();
                    let i = kind_index(kind);
                    let counters = &counters;
                    scope.spawn(move || serve_critic(&**critic, rx, cfg, &counters[2 + i]));
                    critics[i] = Some(tx);
                }
            }
            let batcher = Batcher {
                cfg: cfg.clone(),
                policy: ptx,
                rollout,
                critics,
                counters: counters.clone(),
            };
            let out = f(&batcher);
            // Dropping the senders disconnects the queues; each server drains and returns.
            drop(batcher);
            out
        });
        Ok(out)
    }

    /// Current statistics.
    pub fn stats(&self) -> BatchStats {
        let c = &self.counters;
        let m = self.cfg.max_batch;
        BatchStats {
            policy: c[0].snapshot(m),
            rollout: c[1].snapshot(m),
            critics: [c[2].snapshot(m), c[3].snapshot(m), c[4].snapshot(m)],
        }
    }
}

/// Collects one batch: the first job (the one carried over from the last batch, or the next to
/// arrive), then more until the deadline or until the next job would push the batch past
/// `max_batch` (that job is carried over). A single job larger than `max_batch` (a request for
/// many candidates) goes alone: jobs are never split. Returns `None` when the queue is closed
/// and empty.
fn gather<J>(
    rx: &Receiver<J>,
    cfg: &BatchConfig,
    carry: &mut Option<J>,
    size: impl Fn(&J) -> usize,
    since: impl Fn(&J) -> Instant,
) -> Option<Vec<J>> {
    let first = match carry.take() {
        Some(j) => j,
        None => rx.recv().ok()?,
    };
    let deadline = since(&first) + Duration::from_secs_f64(cfg.max_wait_ms / 1000.0);
    let mut n = size(&first);
    let mut jobs = vec![first];
    while n < cfg.max_batch {
        match rx.recv_deadline(deadline) {
            Ok(job) if n + size(&job) > cfg.max_batch => {
                *carry = Some(job);
                break;
            }
            Ok(job) => {
                n += size(&job);
                jobs.push(job);
            }
            Err(_) => break,
        }
    }
    Some(jobs)
}

fn serve_policy(policy: &dyn Policy, rx: Receiver<PolicyJob>, cfg: &BatchConfig, c: &Counters) {
    let mut carry = None;
    while let Some(jobs) = gather(&rx, cfg, &mut carry, |j| j.specs.len(), |j| j.since) {
        let start = Instant::now();
        let wait: u64 = jobs
            .iter()
            .map(|j| (start - j.since).as_nanos() as u64 * j.specs.len() as u64)
            .sum();
        let requests: Vec<ExpandRequest<'_>> = jobs
            .iter()
            .flat_map(|j| j.specs.iter().map(|s| expand_request(&j.tree, s)))
            .collect();
        c.record(requests.len(), wait);
        let result = call_policy(policy, &requests);
        drop(requests);
        match result {
            Ok(all) => {
                // Hand out slices in order; `call_policy` checked the total length.
                let mut rest = all.into_iter();
                for job in jobs {
                    let mine: Vec<Vec<Step>> = rest.by_ref().take(job.specs.len()).collect();
                    // A worker that gave up is not an error for the others.
                    let _ = job.reply.send(Ok(mine));
                }
            }
            Err(e) => {
                for job in jobs {
                    let _ = job.reply.send(Err(replicate(&e)));
                }
            }
        }
    }
}

fn serve_critic(critic: &dyn Critic, rx: Receiver<CriticJob>, cfg: &BatchConfig, c: &Counters) {
    let mut carry = None;
    while let Some(jobs) = gather(&rx, cfg, &mut carry, |j| j.paths.len(), |j| j.since) {
        let start = Instant::now();
        let wait: u64 = jobs
            .iter()
            .map(|j| (start - j.since).as_nanos() as u64 * j.paths.len() as u64)
            .sum();
        let paths: Vec<PathRef<'_>> = jobs
            .iter()
            .flat_map(|j| {
                j.paths
                    .iter()
                    .map(|(n, e)| path_ref(&j.tree, *n, e.as_ref()))
            })
            .collect();
        c.record(paths.len(), wait);
        let result = call_critic(critic, &paths);
        drop(paths);
        match result {
            Ok(all) => {
                let mut rest = all.into_iter();
                for job in jobs {
                    let mine: Vec<f32> = rest.by_ref().take(job.paths.len()).collect();
                    let _ = job.reply.send(Ok(mine));
                }
            }
            Err(e) => {
                for job in jobs {
                    let _ = job.reply.send(Err(replicate(&e)));
                }
            }
        }
    }
}

/// The message of an error's sources, `: `-separated.
fn source_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = Vec::new();
    let mut src = e.source();
    while let Some(inner) = src {
        parts.push(inner.to_string());
        src = inner.source();
    }
    parts.join(": ")
}

/// A copy of a model error for every job of a failed batch (errors are not `Clone`): the same
/// variant and fields, the boxed source kept as its message chain.
fn replicate(e: &Error) -> Error {
    match e {
        Error::Policy { name, .. } => Error::Policy {
            name: name.clone(),
            source: source_chain(e).into(),
        },
        Error::Critic { name, .. } => Error::Critic {
            name: name.clone(),
            source: source_chain(e).into(),
        },
        Error::PolicyContract { name, message } => Error::PolicyContract {
            name: name.clone(),
            message: message.clone(),
        },
        Error::CriticContract { name, message } => Error::CriticContract {
            name: name.clone(),
            message: message.clone(),
        },
        other => Error::BatcherClosed(other.to_string()),
    }
}

fn expand_request<'a>(tree: &'a Tree, s: &ExpandSpec) -> ExpandRequest<'a> {
    ExpandRequest {
        path: PathRef::new(tree, s.node),
        k: s.k,
        seed: s.seed,
        to_end: s.to_end,
        greedy: s.greedy,
        max_tokens: s.max_tokens,
    }
}

fn path_ref<'a>(tree: &'a Tree, node: NodeId, extra: Option<&'a Step>) -> PathRef<'a> {
    match extra {
        Some(e) => PathRef::with_extra(tree, node, e),
        None => PathRef::new(tree, node),
    }
}

/// Calls the policy and checks its contract: one vector of exactly `k` steps per request.
fn call_policy(policy: &dyn Policy, requests: &[ExpandRequest<'_>]) -> Result<Vec<Vec<Step>>> {
    let out = policy.propose(requests).map_err(|source| Error::Policy {
        name: policy.name().into(),
        source,
    })?;
    if out.len() != requests.len() {
        return Err(Error::PolicyContract {
            name: policy.name().into(),
            message: format!(
                "returned {} answers for {} requests",
                out.len(),
                requests.len()
            ),
        });
    }
    for (i, (r, steps)) in requests.iter().zip(&out).enumerate() {
        if steps.len() != r.k as usize {
            return Err(Error::PolicyContract {
                name: policy.name().into(),
                message: format!(
                    "request {i} asked for {} steps and got {}",
                    r.k,
                    steps.len()
                ),
            });
        }
        // The token budget is only as hard as this check.
        if let Some(max) = r.max_tokens
            && let Some(s) = steps.iter().find(|s| s.n_tokens > max)
        {
            return Err(Error::PolicyContract {
                name: policy.name().into(),
                message: format!(
                    "request {i} allowed {max} tokens per candidate and a step has {}",
                    s.n_tokens
                ),
            });
        }
    }
    Ok(out)
}

/// Calls a critic and normalises its scores (contract checked).
fn call_critic(critic: &dyn Critic, paths: &[PathRef<'_>]) -> Result<Vec<f32>> {
    let raw = critic.score(paths).map_err(|source| Error::Critic {
        name: critic.name().into(),
        source,
    })?;
    normalise_scores(critic, paths.len(), raw)
}

/// What searches call to reach the models: through a [`Batcher`] if given, directly otherwise.
#[derive(Clone, Copy, Debug)]
pub struct Evaluator<'m> {
    models: &'m Models,
    batcher: Option<&'m Batcher>,
}

impl<'m> Evaluator<'m> {
    /// Calls the models directly on the calling thread.
    pub fn direct(models: &'m Models) -> Self {
        Evaluator {
            models,
            batcher: None,
        }
    }

    /// Goes through `batcher` (which must serve these same models).
    pub fn batched(models: &'m Models, batcher: &'m Batcher) -> Self {
        Evaluator {
            models,
            batcher: Some(batcher),
        }
    }

    /// The models.
    pub fn models(&self) -> &'m Models {
        self.models
    }

    /// The batcher, if any.
    pub fn batcher(&self) -> Option<&'m Batcher> {
        self.batcher
    }

    /// The main policy, or the rollout policy.
    pub(crate) fn policy(&self, rollout: bool) -> Result<&'m Arc<dyn Policy>> {
        if rollout {
            self.models.rollout.as_ref().ok_or_else(|| {
                Error::config("scoring.rollouts", "fast rollouts need a rollout policy")
            })
        } else {
            Ok(&self.models.policy)
        }
    }

    /// Runs expansions with the main policy (or the rollout policy).
    pub(crate) fn propose(
        &self,
        tree: &Arc<Tree>,
        specs: Vec<ExpandSpec>,
        rollout: bool,
    ) -> Result<Vec<Vec<Step>>> {
        let policy = self.policy(rollout)?;
        match self.batcher {
            None => {
                let requests: Vec<ExpandRequest<'_>> =
                    specs.iter().map(|s| expand_request(tree, s)).collect();
                call_policy(&**policy, &requests)
            }
            Some(b) => {
                let tx = if rollout {
                    b.rollout.as_ref()
                } else {
                    Some(&b.policy)
                }
                .ok_or_else(|| Error::BatcherClosed(policy.name().into()))?;
                let (reply, rx) = bounded(1);
                tx.send(PolicyJob {
                    tree: tree.clone(),
                    specs,
                    reply,
                    since: Instant::now(),
                })
                .map_err(|_| Error::BatcherClosed(policy.name().into()))?;
                rx.recv()
                    .map_err(|_| Error::BatcherClosed(policy.name().into()))?
            }
        }
    }

    /// Scores paths with the critic of `kind`, normalised to `[0, 1]`; `None` if the panel has
    /// no critic of that kind.
    pub(crate) fn score(
        &self,
        kind: CriticKind,
        tree: &Arc<Tree>,
        paths: Vec<(NodeId, Option<Step>)>,
    ) -> Result<Option<Vec<f32>>> {
        Ok(self.score_all(tree, vec![(kind, paths)])?.pop().flatten())
    }

    /// Scores several requests, one per critic kind. Through the batcher every request is queued
    /// before waiting on any, so the critics work on them at the same time.
    pub(crate) fn score_all(
        &self,
        tree: &Arc<Tree>,
        requests: Vec<(CriticKind, OwnedPaths)>,
    ) -> Result<Vec<Option<Vec<f32>>>> {
        enum Pending {
            Done(Option<Vec<f32>>),
            Waiting(String, crossbeam_channel::Receiver<Result<Vec<f32>>>),
        }
        let mut pending = Vec::with_capacity(requests.len());
        for (kind, paths) in requests {
            let Some(critic) = self.models.critics.get(kind) else {
                pending.push(Pending::Done(None));
                continue;
            };
            if paths.is_empty() {
                pending.push(Pending::Done(Some(Vec::new())));
                continue;
            }
            match self.batcher {
                None => {
                    let refs: Vec<PathRef<'_>> = paths
                        .iter()
                        .map(|(n, e)| path_ref(tree, *n, e.as_ref()))
                        .collect();
                    pending.push(Pending::Done(Some(call_critic(&**critic, &refs)?)));
                }
                Some(b) => {
                    let closed = || Error::BatcherClosed(critic.name().into());
                    let tx = b.critics[kind_index(kind)].as_ref().ok_or_else(closed)?;
                    let (reply, rx) = bounded(1);
                    tx.send(CriticJob {
                        tree: tree.clone(),
                        paths,
                        reply,
                        since: Instant::now(),
                    })
                    .map_err(|_| closed())?;
                    pending.push(Pending::Waiting(critic.name().into(), rx));
                }
            }
        }
        pending
            .into_iter()
            .map(|p| match p {
                Pending::Done(v) => Ok(v),
                Pending::Waiting(name, rx) => {
                    rx.recv().map_err(|_| Error::BatcherClosed(name))?.map(Some)
                }
            })
            .collect()
    }
}
