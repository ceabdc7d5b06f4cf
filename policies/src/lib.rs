//! # ponder-policies
//!
//! Language-model policies for ponder's engine (the files they load are read by `ponder-formats`,
//! re-exported as [`gguf`], [`hf`] and [`tokenizer`]): the Llama-family decoder on
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
pub mod llama;
pub mod lora;
pub mod models;
pub mod step_policy;

// The file formats live in `ponder-formats` (no Burn, fuzzed); re-exported so
// `ponder_policies::gguf`, `::hf` and `::tokenizer` keep their paths.
pub use ponder_formats::{gguf, hf, tokenizer};

pub use error::{Error, Result};
// Served models live in `ponder-remote` (no Burn); re-exported here so
// `ponder_policies::remote` and `::conformance` keep their paths.
pub use ponder_engine::{ExpandRequest, Policy, Step, StepRule};
pub use ponder_remote::conformance;
pub use ponder_remote::policy as remote;
