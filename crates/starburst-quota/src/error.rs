//! The one error type of the quota crate.

use std::path::PathBuf;

/// Result of a quota operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong in a quota operation. Each message names what failed and what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A quota starburst has no default for could not be read.
    #[error(
        "read quota {code}: {source}; starburst knows no default for this quota, so check the code and the Service Quotas permissions"
    )]
    Lookup {
        /// The quota code.
        code: String,
        /// The port's error.
        #[source]
        source: starburst_cloud::Error,
    },
    /// A quota increase could not be requested or checked.
    #[error("{op} for quota {code}: {source}")]
    Request {
        /// The operation (`request quota increase`, `check quota request`).
        op: &'static str,
        /// The quota code or request id.
        code: String,
        /// The port's error.
        #[source]
        source: starburst_cloud::Error,
    },
    /// The request history file could not be read or written.
    #[error("{op} quota request history {}: {source}; check that the directory exists and is writable", path.display())]
    Io {
        /// The operation (`read`, `write`).
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The request history file is not valid JSON of the expected shape.
    #[error("parse quota request history {}: {source}; move the file away to start a new history", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// No request with this id is in the history.
    #[error(
        "update quota request {id}: no such request in the history; list the history to see the known ids"
    )]
    UnknownRequest {
        /// The id.
        id: String,
    },
}
