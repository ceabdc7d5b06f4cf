//! # ponder-critics
//!
//! Critics and verifiers for ponder's engine: the math task with its rule-based answer
//! verifier ([`math`]), the exact arithmetic-checking tool ([`arith`]), the policy judging its
//! own steps ([`self_eval`]), learned value / PRM / ORM heads over the policy backbone trained
//! with Burn ([`head`]) from labelled paths ([`data`]), critics served over HTTP ([`remote`]),
//! and the figures that say how good a critic is ([`metrics`]).

pub mod arith;
pub mod combine;
pub mod data;
pub mod error;
pub mod head;
pub mod math;
pub mod metrics;
pub mod problems;
pub mod remote;
pub mod self_eval;

pub use error::{Error, Result};
pub use ponder_engine::{Critic, CriticKind, CriticPanel, ScoreRange};
