//! The runtime's error type.

use std::path::Path;

/// What can go wrong turning settings into a working search.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration value is out of range or inconsistent; `field` is its dotted TOML path.
    #[error("invalid config field `{field}`: {message}")]
    Config {
        /// The dotted field name (`policy.temperature`, `critics.remote[0].path`).
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// TOML that does not parse or does not fit the schema (the message names the key).
    #[error("{0}")]
    Toml(String),
    /// An error in a named file (a config file), with the error inside.
    #[error("in {path}: {source}")]
    InFile {
        /// The file.
        path: String,
        /// What went wrong in it.
        #[source]
        source: Box<Error>,
    },
    /// A malformed line of a dataset: `path:line` and what is wrong.
    #[error("{at}: {message}")]
    Dataset {
        /// `path:line` (or just the path for file-level problems).
        at: String,
        /// What is wrong.
        message: String,
    },
    /// An output folder that cannot be resumed (a journal line that does not parse, data
    /// files shorter than the journal says).
    #[error("{at}: {message}")]
    Output {
        /// The file (`path:line` for a journal line).
        at: String,
        /// What is wrong.
        message: String,
    },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A problem the configured task cannot read (`problem` is its id).
    #[error("problem `{problem}`: {message}")]
    Problem {
        /// The problem's id.
        problem: String,
        /// Why.
        message: String,
    },
    /// A critic cannot be built as configured (`what` names it).
    #[error("{what}: {message}")]
    Critic {
        /// The critic (a file, or a config entry such as `critics.remote[0]`).
        what: String,
        /// Why.
        message: String,
    },
    /// The engine (search, batcher, config validation).
    #[error(transparent)]
    Engine(#[from] ponder_engine::Error),
    /// In-process models: reading, loading, running.
    #[cfg(feature = "local")]
    #[error(transparent)]
    Policies(#[from] ponder_policies::Error),
    /// Trained and self-evaluating critics.
    #[cfg(feature = "local")]
    #[error(transparent)]
    Critics(#[from] ponder_critics::Error),
    /// Served models.
    #[error(transparent)]
    Remote(#[from] ponder_remote::Error),
    /// Tasks and critic combinators.
    #[error(transparent)]
    Tasks(#[from] ponder_tasks::Error),
    /// The caller's result handler failed; the run stopped there.
    #[error("{0}")]
    Handler(Box<dyn std::error::Error + Send + Sync>),
}

/// The runtime's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A config error for `field`.
    pub fn config(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Config {
            field: field.into(),
            message: message.into(),
        }
    }

    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        Error::Io {
            path: path.display().to_string(),
            source,
        }
    }

    pub(crate) fn toml(e: impl std::fmt::Display) -> Self {
        Error::Toml(e.to_string().trim_end().to_string())
    }

    pub(crate) fn dataset(at: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Dataset {
            at: at.into(),
            message: message.into(),
        }
    }
}
