//! The formats crate's one error type.

use std::path::PathBuf;

/// Result alias for the formats crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can be wrong with a file ponder reads.
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
    /// A tensor (or a config field naming a model's shape) is missing, of an unsupported type,
    /// or of the wrong shape.
    #[error("{path}: tensor `{name}`: {message}")]
    Tensor {
        /// The file.
        path: PathBuf,
        /// The tensor or field name.
        name: String,
        /// What was wrong.
        message: String,
    },
    /// The tokenizer could not be built or used.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// A line of a JSONL file is malformed.
    #[error("{path}:{line}: {message}")]
    Record {
        /// The file.
        path: PathBuf,
        /// The line, from 1.
        line: usize,
        /// What was wrong.
        message: String,
    },
}
