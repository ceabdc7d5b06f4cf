//! # ponder-formats
//!
//! The files ponder reads that other people made, parsed without a model runtime (no Burn):
//! the GGUF reader ([`gguf`]), safetensors checkpoint folders ([`hf`]), the tokenizer built
//! from either ([`tokenizer`]), a Llama-family model's shape from GGUF metadata or an HF
//! `config.json` ([`shape`]), and DPO pairs files as tokens ([`pairs`]).
//!
//! Hostile input is the normal case here: a length or count read from a file is checked
//! against the bytes that remain (or a documented cap) before it sizes an allocation, and
//! malformed input is an [`Error`] naming the file and where, never a panic. The `fuzz/`
//! workspace drives every reader with libFuzzer; the inputs it found are regression tests in
//! `tests/`.

pub mod error;
pub mod gguf;
pub mod hf;
pub mod pairs;
pub mod shape;
pub mod tokenizer;

pub use error::{Error, Result};
