//! # ponder
//!
//! Monte Carlo tree search over reasoning steps for language models. This facade re-exports the
//! workspace crates: [`engine`] (traits, tree, search, batching, extraction), [`policies`] and
//! [`critics`].

pub use ponder_critics as critics;
pub use ponder_engine as engine;
pub use ponder_policies as policies;
