//! Scheduler errors.

/// Result of scheduler calls.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a scheduler call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The object store or compute port failed.
    #[error(transparent)]
    Cloud(#[from] starburst_cloud::Error),
    /// The task id is not (or no longer) known to this session.
    #[error(
        "unknown task {0}: it was never submitted to this session or its result was already collected"
    )]
    UnknownTask(String),
    /// The session was closed.
    #[error("the starburst session is closed; set the plan again to start a new one")]
    Closed,
    /// The session's background engine stopped unexpectedly (a bug): nothing more will finish.
    #[error(
        "the starburst engine of this session stopped unexpectedly; set the plan again to start a new session"
    )]
    EngineStopped,
    /// A task named a blob this session does not hold (never stored, or lost from the store
    /// since): store it again with [`crate::Scheduler::put_blob`].
    #[error("blob {0} is not stored in this session; store it again")]
    UnknownBlob(String),
    /// A task was refused.
    #[error("invalid task: {0}")]
    InvalidTask(String),
}
