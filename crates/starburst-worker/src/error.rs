//! Worker errors.

/// Result of worker operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What stops a worker.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The object store failed.
    #[error(transparent)]
    Store(#[from] starburst_cloud::Error),
    /// A message in the inbox could not be read.
    #[error("inbox message {key} is unreadable: {source}")]
    Inbox {
        /// Its key.
        key: String,
        /// Why.
        source: starburst_serialization::Error,
    },
    /// The evaluator could not be started.
    #[error("cannot start the R evaluator: {0}")]
    EvaluatorStart(String),
}
