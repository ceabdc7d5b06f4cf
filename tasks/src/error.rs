//! The crate's error type.

use std::path::PathBuf;

/// What can go wrong in the tasks, the data readers and the model-free critics.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A data file is malformed.
    #[error("{path}: {message}")]
    BadFile {
        /// The file (with `:line`).
        path: String,
        /// What is wrong, naming the field.
        message: String,
    },
    /// Critics that cannot be combined (none, or of different kinds).
    #[error("combined critic: {0}")]
    Combine(String),
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
