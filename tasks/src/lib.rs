//! # ponder-tasks
//!
//! Everything about the problems that needs no model, so it builds without Burn: the math task
//! (prompt, few-shot examples, answer extraction, gold check), the arithmetic-checking critic,
//! word-problem generators with disjoint splits, chat templates, the self-evaluation prompt,
//! critic combinators, critic metrics (AUROC, ECE) and the readers of critic training data.

pub mod arith;
pub mod chat;
pub mod combine;
pub mod data;
pub mod error;
pub mod judge;
pub mod math;
pub mod metrics;
pub mod problems;

pub use error::{Error, Result};
