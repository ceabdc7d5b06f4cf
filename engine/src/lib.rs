//! # ponder-engine
//!
//! The search engine of ponder: a lock-free Monte Carlo tree over reasoning steps, grown by many
//! threads at once, fed by a batcher, and read back as training data.
//!
//! - Traits: [`Policy`] proposes steps, [`Critic`] scores paths (value, process, outcome),
//!   [`Task`] formats prompts and reads answers. All are batch-first, `Send + Sync` and
//!   dyn-compatible.
//! - [`Tree`]: an append-only arena of atomically updated nodes (invariants in [`tree`]).
//! - [`search()`]: AlphaLLM eta-MCTS, MCTS-DPO (move-by-move, `Q = r + V`), and the baselines,
//!   all chosen by [`SearchConfig`].
//! - [`Batcher`]: gathers requests from every in-flight simulation into batched model calls.
//! - [`extract`]: pairs, PRM data, SFT traces, tree dumps and DOT, from one finished tree.
//!
//! This crate has no Burn dependency (a test enforces it). Its test doubles (a synthetic
//! arithmetic task with a scripted policy and critics) live in `ponder-testkit`.
//!
//! ```
//! use std::sync::Arc;
//! use ponder_engine::{search, Evaluator, SearchConfig, TreeId};
//! use ponder_testkit::synthetic::{SyntheticSpec, models, problems};
//!
//! let spec = SyntheticSpec::default();
//! let models = models(&spec);
//! let problem = problems(1, 3, 7).remove(0);
//! let mut cfg = SearchConfig::alphallm();
//! cfg.budget.simulations = 32;
//! let report = search(problem, TreeId(0), &cfg, Evaluator::direct(&models)).unwrap();
//! assert!(report.stats.simulations >= 32);
//! assert!(report.answer.is_some());
//! ```

pub mod batcher;
pub mod config;
pub mod critic;
pub mod error;
pub mod extract;
pub mod policy;
pub mod rng;
pub mod search;
pub mod task;
pub mod tree;
pub mod types;

pub use batcher::{BatchConfig, BatchStats, Batcher, Evaluator, Models, QueueStats};
pub use config::SearchConfig;
pub use critic::{
    CachedCritic, Critic, CriticKind, CriticPanel, FnCritic, PrmAggregate, ScoreRange,
};
pub use error::{BoxError, Error, Result};
pub use policy::{Boundary, ExpandRequest, Policy, StepRule};
pub use search::{
    Answer, SearchControl, SearchReport, SearchStats, StopReason, search, search_with,
};
pub use task::Task;
pub use tree::{Eval, NodeData, NodeId, NodeStats, PathKey, PathRef, Tree, TreeId};
pub use types::{Problem, Step};
