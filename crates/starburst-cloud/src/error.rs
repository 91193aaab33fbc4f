//! The one error type every port returns.

use std::time::Duration;

/// Result of a port operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Boxed source error from an adapter (an SDK error, an `io::Error`, ...), kept for context but
/// never exposed as an adapter type.
pub type Source = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What went wrong in a port call. Variants carry the operation and resource so that the message
/// alone tells a user what failed; adapters map their own errors onto these.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The resource does not exist.
    #[error("{op}: {resource} not found")]
    NotFound {
        /// The operation, e.g. `get`.
        op: &'static str,
        /// The resource, e.g. an object path.
        resource: String,
    },
    /// A create-if-absent found the resource already there.
    #[error("{op}: {resource} already exists")]
    AlreadyExists {
        /// The operation.
        op: &'static str,
        /// The resource.
        resource: String,
    },
    /// A conditional request's precondition did not hold.
    #[error("{op}: precondition failed for {resource}")]
    PreconditionFailed {
        /// The operation.
        op: &'static str,
        /// The resource.
        resource: String,
    },
    /// The service asked us to slow down.
    #[error("{op}: throttled on {resource}")]
    Throttled {
        /// The operation.
        op: &'static str,
        /// The resource.
        resource: String,
        /// How long the service asked us to wait, when it said.
        retry_after: Option<Duration>,
    },
    /// The credentials in use may not do this.
    #[error("{op}: access denied to {resource}: {message}")]
    AccessDenied {
        /// The operation.
        op: &'static str,
        /// The resource.
        resource: String,
        /// The service's explanation.
        message: String,
    },
    /// No usable credentials: none found, or they expired (an SSO session, temporary keys).
    /// Waiting does not help; the user must sign in again.
    #[error("{op}: no usable AWS credentials: {message}")]
    Credentials {
        /// The operation.
        op: &'static str,
        /// What the credential chain said.
        message: String,
    },
    /// A service quota or limit stopped the call.
    #[error("{op}: quota exceeded for {resource}: {message}")]
    QuotaExceeded {
        /// The operation.
        op: &'static str,
        /// The resource.
        resource: String,
        /// The service's explanation.
        message: String,
    },
    /// The caller passed something the port cannot accept.
    #[error("{op}: invalid input: {message}")]
    InvalidInput {
        /// The operation.
        op: &'static str,
        /// What is wrong and what to do instead.
        message: String,
    },
    /// The service failed in a way that may go away if retried (5xx, connection reset).
    #[error("{op}: transient failure on {resource}")]
    Transient {
        /// The operation.
        op: &'static str,
        /// The resource.
        resource: String,
        /// The underlying error.
        #[source]
        source: Source,
    },
    /// The port does not support this operation on this backend.
    #[error("{op}: not supported by the {backend} backend")]
    Unsupported {
        /// The operation.
        op: &'static str,
        /// The backend's name.
        backend: &'static str,
    },
    /// Any other failure.
    #[error("{op}: {resource}: {source}")]
    Other {
        /// The operation.
        op: &'static str,
        /// The resource.
        resource: String,
        /// The underlying error.
        #[source]
        source: Source,
    },
}

impl Error {
    /// Shorthand for [`Error::NotFound`].
    pub fn not_found(op: &'static str, resource: impl Into<String>) -> Self {
        Self::NotFound {
            op,
            resource: resource.into(),
        }
    }

    /// Shorthand for [`Error::AlreadyExists`].
    pub fn already_exists(op: &'static str, resource: impl Into<String>) -> Self {
        Self::AlreadyExists {
            op,
            resource: resource.into(),
        }
    }

    /// Shorthand for [`Error::InvalidInput`].
    pub fn invalid(op: &'static str, message: impl Into<String>) -> Self {
        Self::InvalidInput {
            op,
            message: message.into(),
        }
    }

    /// Shorthand for [`Error::Other`].
    pub fn other(op: &'static str, resource: impl Into<String>, source: impl Into<Source>) -> Self {
        Self::Other {
            op,
            resource: resource.into(),
            source: source.into(),
        }
    }

    /// True for [`Error::NotFound`].
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::NotFound { .. })
    }

    /// True for [`Error::AlreadyExists`].
    pub fn is_already_exists(&self) -> bool {
        matches!(self, Self::AlreadyExists { .. })
    }

    /// True when waiting cannot help: the caller lacks the right or the credentials to do
    /// this, and must act (sign in, ask for a permission) before anything works.
    pub fn needs_user(&self) -> bool {
        matches!(self, Self::AccessDenied { .. } | Self::Credentials { .. })
    }

    /// True when retrying the same call later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Throttled { .. } | Self::Transient { .. })
    }
}
