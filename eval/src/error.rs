//! The crate's error type.

use std::path::PathBuf;

/// What can go wrong in an evaluation.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A records or manifest file is malformed (`path:line` and the field).
    #[error("{path}: {message}")]
    BadFile {
        /// The file, with `:line` for JSONL records.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// The evaluation's settings are invalid (the setting is named).
    #[error("invalid evaluation setting `{field}`: {message}")]
    Config {
        /// The setting.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// The output folder holds a run with other settings.
    #[error("{0}")]
    Mismatch(String),
    /// A search failed.
    #[error("problem `{problem}`, method `{method}`, budget {budget}: {source}")]
    Search {
        /// The problem id.
        problem: String,
        /// The method.
        method: String,
        /// The budget.
        budget: u64,
        /// The engine's error.
        source: ponder_engine::Error,
    },
    /// The batcher failed.
    #[error(transparent)]
    Engine(#[from] ponder_engine::Error),
    /// The caller's record sink stopped the run.
    #[error("stopped: {0}")]
    Stopped(String),
}

impl Error {
    pub(crate) fn config(field: &str, message: impl Into<String>) -> Self {
        Error::Config {
            field: field.into(),
            message: message.into(),
        }
    }
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
