//! # ponder-testkit
//!
//! Test doubles, kept out of the library crates' shipped API: library crates take this crate
//! as a dev-dependency; the binary uses it for `--policy synthetic` and the benches. Nothing
//! here is ever a product default.
//!
//! - [`synthetic`]: an arithmetic task whose truth is known, with a scripted policy and
//!   noisy-oracle critics.
//! - [`mod@bench`]: a zero-cost evaluator for measuring the tree itself (`ponder bench tree`).
//! - [`latency`]: wrappers that sleep like an inference server (`ponder bench latency`).
//! - [`mock_server`]: an OpenAI-shaped HTTP server on 127.0.0.1 answering the synthetic task,
//!   with injected faults and the answer shapes of real servers.
//! - [`gguf_writer`]: GGUF files built in memory; [`tiny_llama`]: a tiny random Llama as GGUF
//!   bytes, so the decoder and the step policy are tested without the real model.

pub mod bench;
pub mod gguf_writer;
pub mod latency;
pub mod mock_server;
pub mod synthetic;
pub mod tiny_llama;
