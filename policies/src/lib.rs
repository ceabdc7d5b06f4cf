//! # ponder-policies
//!
//! Language-model policies for ponder's engine. Today: the GGUF reader ([`gguf`]), the tokenizer
//! built from a GGUF's metadata ([`tokenizer`]) and the Llama-family decoder on Burn
//! ([`llama`]), logit-for-logit equal to HF transformers on the default model. The step policy
//! with the tree-shared KV cache, HF checkpoint loading, the OpenAI-compatible client and DPO
//! training come next.

pub mod error;
pub mod gguf;
pub mod hf;
pub mod llama;
pub mod models;
pub mod step_policy;
pub mod testing;
pub mod tokenizer;

pub use error::{Error, Result};
pub use ponder_engine::{ExpandRequest, Policy, Step, StepRule};
