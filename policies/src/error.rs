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
    /// A file ponder reads: GGUF, safetensors, tokenizer, model shape, pairs.
    #[error(transparent)]
    Format(#[from] ponder_formats::Error),
    /// Chat templates and other model-free parts.
    #[error(transparent)]
    Tasks(#[from] ponder_tasks::Error),
}
