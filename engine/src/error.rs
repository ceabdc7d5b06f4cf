//! The engine's one error type.

use std::path::PathBuf;

/// Errors raised by policies, critics and tasks behind the engine's traits.
///
/// Implementations box their own error types (Burn, HTTP, I/O) so the engine never names them.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Result alias for the engine.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the engine.
///
/// Dead ends and spent budgets are not errors: they are reported in a [`crate::SearchReport`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration value is out of range or inconsistent; `field` is its dotted TOML path.
    #[error("invalid config field `{field}`: {message}")]
    Config {
        /// Dotted path of the field, e.g. `search.widening.c_max`.
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// The policy failed.
    #[error("policy `{name}` failed")]
    Policy {
        /// The policy's name.
        name: String,
        /// The policy's own error.
        #[source]
        source: BoxError,
    },
    /// A policy broke its contract (wrong number of candidates, for instance).
    #[error("policy `{name}` broke its contract: {message}")]
    PolicyContract {
        /// The policy's name.
        name: String,
        /// What was wrong.
        message: String,
    },
    /// A critic failed.
    #[error("critic `{name}` failed")]
    Critic {
        /// The critic's name.
        name: String,
        /// The critic's own error.
        #[source]
        source: BoxError,
    },
    /// A critic returned a score outside its declared range, NaN, or the wrong number of scores.
    #[error("critic `{name}` broke its contract: {message}")]
    CriticContract {
        /// The critic's name.
        name: String,
        /// What was wrong.
        message: String,
    },
    /// The tree reached its node capacity (u32 node ids, or the configured `max_nodes`).
    #[error("tree is full: {capacity} nodes")]
    TreeFull {
        /// The capacity that was reached.
        capacity: u32,
    },
    /// A batcher queue was closed while a request waited on it.
    #[error("batcher for `{0}` shut down while a request was pending")]
    BatcherClosed(String),
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A line of an input file could not be parsed.
    #[error("{path}:{line}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong with the line.
        message: String,
    },
    /// A problem the task cannot work on.
    #[error("problem `{id}`: {message}")]
    Problem {
        /// The problem id.
        id: String,
        /// Why it cannot be used.
        message: String,
    },
    /// A worker thread panicked (a bug in a policy, critic or task, or in ponder); the search
    /// stopped and its tree is not trustworthy.
    #[error("a search worker panicked: {0}")]
    WorkerPanicked(String),
    /// Serialising an output record failed.
    #[error("serialising output: {0}")]
    Serialize(#[from] serde_json::Error),
}

impl Error {
    /// Builds a [`Error::Config`] error.
    pub fn config(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Config {
            field: field.into(),
            message: message.into(),
        }
    }
}
