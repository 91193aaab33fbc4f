//! The one error type of the cost crate.

use starburst_cloud::Arch;

/// Result of a cost operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong in a cost operation. Each message names what failed and what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The catalog has no prices for the region.
    #[error(
        "look up Fargate prices: region {region} is not in the price catalog; known regions: {}; add it with a user price catalog",
        known.join(", ")
    )]
    UnknownRegion {
        /// The region asked for.
        region: String,
        /// The regions the catalog knows.
        known: Vec<String>,
    },
    /// The region is known but has no prices for the architecture.
    #[error(
        "look up Fargate prices: region {region} has no {} prices in the price catalog; add them with a user price catalog or choose another architecture",
        crate::catalog::arch_name(*arch)
    )]
    UnknownArch {
        /// The region.
        region: String,
        /// The architecture asked for.
        arch: Arch,
    },
    /// A price catalog could not be parsed.
    #[error(
        "read price catalog: {source}; expected {{\"regions\": {{\"<region>\": {{\"x86_64\": {{\"vcpu_hour\": .., \"gb_hour\": .., \"spot_factor\": ..}}}}}}}}"
    )]
    Parse {
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// A price catalog holds an impossible value.
    #[error("check price catalog: {message}")]
    InvalidCatalog {
        /// What is wrong and where.
        message: String,
    },
    /// A budget cap is impossible.
    #[error("set budget: {message}")]
    InvalidBudget {
        /// What is wrong and what to pass instead.
        message: String,
    },
    /// An estimate's input is impossible.
    #[error("estimate cost: {message}")]
    InvalidEstimate {
        /// What is wrong and what to pass instead.
        message: String,
    },
}
