//! # ponder-critics
//!
//! Critics for ponder's engine: value, process and outcome models on Burn, rule-based answer
//! verifiers and the arithmetic-checking tool land here in later work; for now the crate
//! re-exports the engine's [`Critic`] contract that they implement.

pub use ponder_engine::{Critic, CriticKind, CriticPanel, ScoreRange};
