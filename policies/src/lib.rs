//! # ponder-policies
//!
//! Language-model policies for ponder's engine: the GGUF reader ([`gguf`]) and HF checkpoint
//! folders ([`hf`]), the tokenizer built from either ([`tokenizer`]), the Llama-family decoder on
//! Burn ([`llama`], logit-for-logit equal to HF transformers on the default model) with batched,
//! padded decoding, and the engine's step policy over it with a tree-shared KV cache
//! ([`step_policy`]). [`backend`] picks the Burn device. [`remote`] serves the policy over
//! OpenAI-compatible HTTP instead (re-exported from `ponder-remote`, as is [`conformance`],
//! which measures a real server against what the remote policy needs). [`backbone`] is what
//! model-backed critics read.

pub mod backbone;
pub mod backend;
pub mod dpo;
pub mod error;
pub mod gguf;
pub mod hf;
pub mod llama;
pub mod lora;
pub mod models;
pub mod step_policy;
pub mod tokenizer;

pub use error::{Error, Result};
// Served models live in `ponder-remote` (no Burn); re-exported here so
// `ponder_policies::remote` and `::conformance` keep their paths.
pub use ponder_engine::{ExpandRequest, Policy, Step, StepRule};
pub use ponder_remote::conformance;
pub use ponder_remote::policy as remote;
