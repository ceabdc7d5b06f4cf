//! # ponder-critics
//!
//! Critics and verifiers for ponder's engine: the math task with its rule-based answer
//! verifier ([`math`]), the exact arithmetic-checking tool ([`arith`]), the policy judging its
//! own steps ([`self_eval`]), learned value / PRM / ORM heads over the policy backbone trained
//! with Burn ([`head`]) from labelled paths ([`data`]), critics served over HTTP ([`remote`]),
//! and the figures that say how good a critic is ([`metrics`]).

pub mod error;
pub mod head;
pub mod self_eval;
pub mod training;

pub use error::{Error, Result};
// The model-free parts live in `ponder-tasks` and `ponder-remote` (no Burn); re-exported here
// so `ponder_critics::math` and the like keep their paths.
pub use ponder_engine::{Critic, CriticKind, CriticPanel, ScoreRange};
pub use ponder_remote::critics as remote;
pub use ponder_tasks::{arith, combine, data, math, metrics, problems};
