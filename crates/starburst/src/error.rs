//! Errors of the facade: everything a user can get wrong or a backend can fail at.

/// Result of facade calls.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a session call failed. [`Error::class`] gives the R condition class.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration value is out of range.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// The chosen backend is not available in this build or set-up.
    #[error("{0}")]
    BackendUnavailable(String),
    /// A cloud port failed.
    #[error(transparent)]
    Cloud(#[from] starburst_cloud::Error),
    /// A quota look-up, request or its history failed.
    #[error(transparent)]
    Quota(#[from] starburst_quota::Error),
    /// The scheduler refused the call.
    #[error(transparent)]
    Scheduler(#[from] starburst_scheduler::Error),
    /// Local I/O failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: std::io::Error,
    },
}

impl Error {
    /// The R condition class for this error.
    pub fn class(&self) -> &'static str {
        match self {
            Self::InvalidConfig(_) => "starburst_invalid_argument",
            Self::BackendUnavailable(_) => "starburst_backend_unavailable",
            Self::Scheduler(starburst_scheduler::Error::Closed) => "starburst_session_closed",
            Self::Scheduler(starburst_scheduler::Error::UnknownTask(_)) => "starburst_unknown_task",
            Self::Scheduler(starburst_scheduler::Error::EngineStopped) => "starburst_engine_error",
            Self::Scheduler(starburst_scheduler::Error::InvalidTask(_)) => {
                "starburst_invalid_argument"
            }
            Self::Scheduler(starburst_scheduler::Error::UnknownBlob(_)) => "starburst_blob_unknown",
            Self::Cloud(starburst_cloud::Error::InvalidInput { .. }) => {
                "starburst_invalid_argument"
            }
            Self::Cloud(starburst_cloud::Error::AccessDenied { .. })
            | Self::Scheduler(starburst_scheduler::Error::Cloud(
                starburst_cloud::Error::AccessDenied { .. },
            )) => "starburst_access_denied",
            Self::Cloud(starburst_cloud::Error::Credentials { .. })
            | Self::Scheduler(starburst_scheduler::Error::Cloud(
                starburst_cloud::Error::Credentials { .. },
            )) => "starburst_credentials",
            Self::Cloud(starburst_cloud::Error::AlreadyExists { .. }) => "starburst_conflict",
            _ => "starburst_error",
        }
    }
}
