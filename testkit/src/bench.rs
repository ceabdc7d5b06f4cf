//! A zero-cost evaluator (test double) for measuring the tree and the search loop alone:
//! the policy returns empty steps with hashed log-probs, the value critic a hashed score.

use std::sync::Arc;
use std::time::Instant;

use ponder_engine::batcher::{Evaluator, Models};
use ponder_engine::config::{Importance, SearchConfig};
use ponder_engine::critic::{Critic, CriticKind, CriticPanel, ScoreRange};
use ponder_engine::error::{BoxError, Result};
use ponder_engine::policy::{ExpandRequest, Policy};
use ponder_engine::rng::mix;
use ponder_engine::search::search;
use ponder_engine::task::Task;
use ponder_engine::tree::{PathRef, Tree, TreeId};
use ponder_engine::types::{Problem, Step};

/// Proposes empty steps at no cost (log-prob hashed from the seed).
#[derive(Clone, Copy, Debug, Default)]
pub struct NullPolicy;

impl Policy for NullPolicy {
    fn name(&self) -> &str {
        "bench-null"
    }

    fn propose(&self, requests: &[ExpandRequest<'_>]) -> Result<Vec<Vec<Step>>, BoxError> {
        Ok(requests
            .iter()
            .map(|r| {
                (0..r.k)
                    .map(|j| Step {
                        logprob: -((mix(r.seed, u64::from(j)) >> 40) as f32 / (1u64 << 24) as f32),
                        n_tokens: u32::from(r.max_tokens != Some(0)),
                        ..Step::default()
                    })
                    .collect()
            })
            .collect())
    }

    fn max_step_tokens(&self, _to_end: bool) -> Option<u32> {
        Some(1)
    }
}

/// Scores a path by hashing its key, at no cost.
#[derive(Clone, Copy, Debug, Default)]
pub struct HashCritic;

impl Critic for HashCritic {
    fn name(&self) -> &str {
        "bench-hash"
    }
    fn kind(&self) -> CriticKind {
        CriticKind::Value
    }
    fn range(&self) -> ScoreRange {
        ScoreRange::UNIT
    }
    fn score(&self, paths: &[PathRef<'_>]) -> Result<Vec<f32>, BoxError> {
        Ok(paths
            .iter()
            .map(|p| (mix(u64::from(p.node().0), 17) >> 40) as f32 / (1u64 << 24) as f32)
            .collect())
    }
}

/// A task with no answers (paths end at the depth limit).
#[derive(Clone, Copy, Debug, Default)]
pub struct NullTask;

impl Task for NullTask {
    fn name(&self) -> &str {
        "bench-null"
    }
    fn prompt(&self, problem: &Problem) -> String {
        problem.question.clone()
    }
    fn extract_answer(&self, _path_text: &str) -> Option<String> {
        None
    }
    fn check(&self, _answer: &str, _gold: &str) -> bool {
        false
    }
}

/// The zero-cost models.
pub fn models() -> Models {
    Models {
        policy: Arc::new(NullPolicy),
        rollout: None,
        critics: CriticPanel::new()
            .with(Arc::new(HashCritic))
            .expect("one value critic"),
        task: Arc::new(NullTask),
    }
}

/// The tree shape a bench run grows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    /// Children per node (fixed progressive widening).
    pub width: u32,
    /// Depth limit (nodes at this depth are terminal and are re-backed-up when reached).
    pub depth: u32,
}

impl Default for Shape {
    /// 4 children per node, depth 8: the tree saturates at 87,381 nodes, like a large LLM tree
    /// whose paths end in answers.
    fn default() -> Self {
        Shape { width: 4, depth: 8 }
    }
}

/// The search `ponder bench tree` measures: UCT, progressive widening with a fixed width, a
/// depth limit, virtual loss 1, no dedup, zero-cost models.
pub fn config(threads: u32, simulations: u32, shape: Shape) -> SearchConfig {
    let mut c = SearchConfig::alphallm();
    c.budget.simulations = simulations;
    c.budget.max_depth = shape.depth;
    c.budget.max_nodes = simulations.saturating_add(2).max(2);
    c.parallel.threads = threads;
    let w = &mut c.expansion.widening;
    w.importance = Importance::Fixed;
    (w.c_min_root, w.c_min, w.c_max_root, w.c_max) =
        (shape.width, shape.width, shape.width, shape.width);
    c.expansion.merge.dedup = false;
    c
}

/// What one bench run measured.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BenchResult {
    /// Completed simulations per second.
    pub simulations_per_sec: f64,
    /// Worker threads.
    pub threads: u32,
    /// Nodes in the tree.
    pub nodes: u64,
    /// Bytes per arena slot (excluding step text).
    pub bytes_per_node: usize,
    /// Collisions (restarted simulations).
    pub collisions: u64,
}

/// Runs one search of `simulations` on the zero-cost evaluator.
///
/// # Errors
/// Only if the config is invalid (for instance `threads = 0` or `width = 0`).
pub fn run(threads: u32, simulations: u32, shape: Shape) -> Result<BenchResult> {
    let cfg = config(threads, simulations, shape);
    let m = models();
    let start = Instant::now();
    let report = search(
        Problem::new("bench", "bench"),
        TreeId(0),
        &cfg,
        Evaluator::direct(&m),
    )?;
    let secs = start.elapsed().as_secs_f64();
    Ok(BenchResult {
        simulations_per_sec: report.stats.simulations as f64 / secs,
        threads,
        nodes: report.stats.nodes,
        bytes_per_node: Tree::bytes_per_node(),
        collisions: report.stats.collisions,
    })
}
