//! # ponder-policies
//!
//! Language-model policies for ponder's engine. The Burn Llama-family model, the
//! OpenAI-compatible HTTP client and DPO training land here in later work; for now the crate
//! re-exports the engine's [`Policy`] contract that they implement.

pub use ponder_engine::{ExpandRequest, Policy, Step, StepRule};
