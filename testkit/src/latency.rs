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
