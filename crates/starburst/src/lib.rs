//! starburst: run R futures on AWS Fargate workers or on local worker processes.
//!
//! This facade composes the layered crates into sessions: [`Config`] (validated options),
//! backend selection, and [`Session`] (a scheduler wired to the backend's ports). The R package
//! talks to this crate only. Each underlying crate is re-exported whole as a module.
//!
//! It is the only crate besides the binaries that depends on the adapters. [`Admin`] runs the
//! one-time set-up and teardown. The `aws` feature (default) brings the aws backend and
//! set-up; without it only the local backend exists, and aws calls fail with
//! [`Error::BackendUnavailable`].

#![deny(missing_docs)]

mod admin;
mod config;
mod error;
mod session;
pub mod sweep;

pub use admin::{
    Admin, AwsTarget, BuilderChoice, BuilderEngine, CloudBuilder, EnsuredEnvironment,
    EnvironmentMode, EnvironmentRequest, RuntimeSource,
};
pub use config::{AwsSettings, Backend, Config, SECONDS, check_seconds, client_beat_for};
pub use error::{Error, Result};
pub use session::{Session, SweepReport, env, setup_workers};

#[cfg(feature = "aws")]
pub use starburst_aws as aws;
pub use starburst_cloud as cloud;
pub use starburst_cost as cost;
pub use starburst_local as local;
pub use starburst_provision as provision;
pub use starburst_quota as quota;
pub use starburst_scheduler as scheduler;
pub use starburst_serialization as serialization;
pub use starburst_worker as worker;
