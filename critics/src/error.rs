//! The crate's error type.

use std::path::PathBuf;

/// What can go wrong in the critics.
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
    /// A critic head file or a training-data file is malformed.
    #[error("{path}: {message}")]
    BadFile {
        /// The file (with `:line` for data files).
        path: String,
        /// What is wrong, naming the field.
        message: String,
    },
    /// A critic setting is invalid (`field` is its dotted config name).
    #[error("invalid config field `{field}`: {message}")]
    Config {
        /// The dotted field (`critics.self_eval.yes`).
        field: String,
        /// What is wrong.
        message: String,
    },
    /// The policy backbone failed (encoding a path).
    #[error(transparent)]
    Policy(#[from] ponder_policies::Error),
    /// Tasks, data readers and critic combinators.
    #[error(transparent)]
    Tasks(#[from] ponder_tasks::Error),
    /// Training could not run (no data, a backend failure).
    #[error("training: {0}")]
    Train(String),
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
