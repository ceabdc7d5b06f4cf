//! # ponder-remote
//!
//! Models served over OpenAI-compatible HTTP, without Burn: the [`policy`] (a client that spreads
//! requests over endpoints with retries and backoff, and the step policy on top of it), critics
//! behind scoring endpoints and LLM-as-judge ([`critics`]) and the [`conformance`] check of a
//! server against ponder's step rule. [`wire`] reads what servers answer.

pub mod conformance;
pub mod critics;
pub mod error;
pub mod policy;
pub mod wire;

pub use error::{Error, Result};
pub use policy::{Client, RemoteConfig, RemotePolicy, RemoteSampling};
