//! The policies crate's one error type.

use std::path::PathBuf;

/// Result alias for the policies crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong loading or running a policy.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A GGUF file is malformed or truncated.
    #[error("{path}: at byte {offset}: {message}")]
    Gguf {
        /// The file.
        path: PathBuf,
        /// Where reading stopped.
        offset: u64,
        /// What was wrong.
        message: String,
    },
    /// A metadata key the loader needs is missing or has the wrong type.
    #[error("{path}: metadata `{key}` is missing or has the wrong type")]
    MissingMetadata {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
    },
    /// A tensor is missing, of an unsupported type, or of the wrong shape.
    #[error("{path}: tensor `{name}`: {message}")]
    Tensor {
        /// The file.
        path: PathBuf,
        /// The tensor name.
        name: String,
        /// What was wrong.
        message: String,
    },
    /// The tokenizer could not be built or used.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// The model was given input it cannot run (bad token ids, too long a sequence) or a backend
    /// operation failed.
    #[error("model: {0}")]
    Model(String),
    /// A config field is invalid.
    #[error("invalid config field `{field}`: {message}")]
    Config {
        /// The field, dotted (`policy.remote.endpoints`).
        field: String,
        /// What was wrong.
        message: String,
    },
    /// A served model (HTTP client, remote policy).
    #[error(transparent)]
    Remote(#[from] ponder_remote::Error),
    /// Chat templates and other model-free parts.
    #[error(transparent)]
    Tasks(#[from] ponder_tasks::Error),
}
