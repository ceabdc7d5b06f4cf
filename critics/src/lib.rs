//! # ponder-critics
//!
//! Critics and verifiers for ponder's engine. Today: the math word-problem task with its
//! rule-based answer extraction and normalisation ([`math`]). The value, process and outcome
//! models on Burn and the arithmetic-checking tool come next.

pub mod math;

pub use ponder_engine::{Critic, CriticKind, CriticPanel, ScoreRange};
