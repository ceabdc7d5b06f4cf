//! # ponder-policies
//!
//! Language-model policies for ponder's engine. Today: the GGUF reader ([`gguf`]) and the
//! tokenizer built from a GGUF's metadata ([`tokenizer`]), the first parts of the in-process
//! Llama-family policy. The Burn decoder, HF checkpoint loading, the OpenAI-compatible client and
//! DPO training come next.

pub mod error;
pub mod gguf;
pub mod models;
pub mod tokenizer;

pub use error::{Error, Result};
pub use ponder_engine::{ExpandRequest, Policy, Step, StepRule};
