//! The crate's error type.

/// Result alias for the remote crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong talking to a served model.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A config field is invalid.
    #[error("invalid config field `{field}`: {message}")]
    Config {
        /// The field, dotted (`policy.remote.endpoints`).
        field: String,
        /// What was wrong.
        message: String,
    },
    /// A server failed for good (after retries) or refused the request.
    #[error("{endpoint}: {message}")]
    Remote {
        /// The endpoint URL.
        endpoint: String,
        /// What went wrong.
        message: String,
    },
    /// A server's answer cannot be used (too few completions, no scores), or a request thread
    /// died.
    #[error("model: {0}")]
    Model(String),
}
