//! # ponder-runtime
//!
//! What turns settings into a working search, for the CLI and for programs alike:
//! [`Config`] (the TOML model, presets, validation naming the field), [`models::load`] (one
//! loader for GGUF files, HF folders, served models and the synthetic test double, with the
//! critic panel), [`ProblemSource`] (JSONL datasets and the problem generators) and
//! [`Searcher`] (one problem, or many trees in flight over one batcher with results in input
//! order and a progress callback), and the crash-safe [`journal`] training data is written
//! through.

#[cfg(feature = "local")]
pub mod bench;
pub mod config;
pub mod dataset;
mod error;
pub mod generate;
#[cfg(feature = "local")]
pub mod iterate;
pub mod journal;
pub mod merge;
pub mod models;
pub mod record;
pub mod searcher;
#[cfg(feature = "local")]
pub mod train;
pub mod view;

pub use config::{BackendKind, Config, PolicyKind, Preset, WeightFormat};
pub use dataset::{DatasetFields, ProblemSource};
pub use error::{Error, Result};
pub use models::Loaded;
pub use searcher::{ManyOptions, Progress, RunSummary, Searcher};
