//! Slow models (test doubles) that imitate an inference server: every call sleeps a fixed
//! latency plus a cost per request, whatever the batch size. They show what the batcher and
//! in-tree parallelism buy when the evaluator, not the tree, is the cost.

use std::sync::Arc;
use std::time::Duration;

use ponder_engine::batcher::Models;
use ponder_engine::critic::{Critic, CriticKind, CriticPanel, ScoreRange};
use ponder_engine::error::BoxError;
use ponder_engine::policy::{ExpandRequest, Policy};
use ponder_engine::tree::{PathRef, TreeId};
use ponder_engine::types::Step;

/// The cost model of one call: `fixed + per_request × requests`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Latency {
    /// Paid once per call (network round trip, kernel launch, a forward pass).
    pub fixed: Duration,
    /// Paid per request in the batch.
    pub per_request: Duration,
}

impl Latency {
    fn pay(&self, n: usize) {
        std::thread::sleep(self.fixed + self.per_request * n as u32);
    }
}

/// A policy that answers like `inner` after sleeping per [`Latency`].
pub struct SlowPolicy {
    inner: Arc<dyn Policy>,
    latency: Latency,
}

impl std::fmt::Debug for SlowPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlowPolicy")
            .field("latency", &self.latency)
            .finish()
    }
}

impl Policy for SlowPolicy {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn propose(&self, requests: &[ExpandRequest<'_>]) -> Result<Vec<Vec<Step>>, BoxError> {
        self.latency.pay(requests.len());
        self.inner.propose(requests)
    }
    fn max_step_tokens(&self, to_end: bool) -> Option<u32> {
        self.inner.max_step_tokens(to_end)
    }
    fn release(&self, tree: TreeId) {
        self.inner.release(tree);
    }
}

/// A critic that answers like `inner` after sleeping per [`Latency`].
pub struct SlowCritic {
    inner: Arc<dyn Critic>,
    latency: Latency,
}

impl std::fmt::Debug for SlowCritic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlowCritic")
            .field("latency", &self.latency)
            .finish()
    }
}

impl Critic for SlowCritic {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn kind(&self) -> CriticKind {
        self.inner.kind()
    }
    fn range(&self) -> ScoreRange {
        self.inner.range()
    }
    fn score(&self, paths: &[PathRef<'_>]) -> Result<Vec<f32>, BoxError> {
        self.latency.pay(paths.len());
        self.inner.score(paths)
    }
}

/// `models` with every policy and critic slowed down by `latency`.
pub fn slow(models: &Models, latency: Latency) -> Models {
    let wrap_p = |p: &Arc<dyn Policy>| -> Arc<dyn Policy> {
        Arc::new(SlowPolicy {
            inner: p.clone(),
            latency,
        })
    };
    let mut critics = CriticPanel::new();
    for kind in [CriticKind::Value, CriticKind::Process, CriticKind::Outcome] {
        if let Some(c) = models.critics.get(kind) {
            critics = critics
                .with(Arc::new(SlowCritic {
                    inner: c.clone(),
                    latency,
                }))
                .expect("one critic per kind, as in the original panel");
        }
    }
    Models {
        policy: wrap_p(&models.policy),
        rollout: models.rollout.as_ref().map(wrap_p),
        critics,
        task: models.task.clone(),
    }
}

/// A gate for tests that need a search to stay in flight until they say so (instead of
/// hoping a slow model is slow enough on a loaded machine): every policy call of
/// [`gated`] models waits while the gate is shut.
#[derive(Debug, Default)]
pub struct Gate {
    open: std::sync::Mutex<bool>,
    opened: std::sync::Condvar,
}

impl Gate {
    /// A shut gate.
    pub fn shut() -> Arc<Gate> {
        Arc::new(Gate::default())
    }

    /// Opens the gate for good: waiting calls go on, later ones do not wait.
    pub fn open(&self) {
        *self
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = true;
        self.opened.notify_all();
    }

    fn pass(&self) {
        let mut open = self
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        while !*open {
            open = self
                .opened
                .wait(open)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }
}

/// A policy that answers like `inner` once its [`Gate`] is open.
struct GatedPolicy {
    inner: Arc<dyn Policy>,
    gate: Arc<Gate>,
}

impl std::fmt::Debug for GatedPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatedPolicy").finish_non_exhaustive()
    }
}

impl Policy for GatedPolicy {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn propose(&self, requests: &[ExpandRequest<'_>]) -> Result<Vec<Vec<Step>>, BoxError> {
        self.gate.pass();
        self.inner.propose(requests)
    }
    fn max_step_tokens(&self, to_end: bool) -> Option<u32> {
        self.inner.max_step_tokens(to_end)
    }
    fn wants_batches(&self) -> bool {
        self.inner.wants_batches()
    }
    fn step_rule(&self) -> Option<&ponder_engine::policy::StepRule> {
        self.inner.step_rule()
    }
    fn release(&self, tree: TreeId) {
        self.inner.release(tree);
    }
}

/// `models` whose policy calls wait for `gate`.
pub fn gated(models: &Models, gate: Arc<Gate>) -> Models {
    let wrap = |p: &Arc<dyn Policy>| -> Arc<dyn Policy> {
        Arc::new(GatedPolicy {
            inner: p.clone(),
            gate: gate.clone(),
        })
    };
    Models {
        policy: wrap(&models.policy),
        rollout: models.rollout.as_ref().map(wrap),
        critics: models.critics.clone(),
        task: models.task.clone(),
    }
}
