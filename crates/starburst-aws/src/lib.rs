//! starburst's AWS adapter: the only crate that names an `aws-sdk-*` type. It implements the
//! ports of `starburst-cloud` on AWS services and maps SDK errors onto the ports' one
//! [`starburst_cloud::Error`]; no SDK type appears in its public API.
//!
//! Every adapter is built from one [`Aws`] (the standard credential, region and endpoint chain,
//! standard retries with backoff, HTTPS on rustls/ring):
//!
//! | port | adapter | service |
//! |---|---|---|
//! | `ObjectStore` | [`S3Store`] | S3 |
//! | `Compute` | [`EcsCompute`] | ECS on Fargate |
//! | `Logs` | [`CloudWatchLogs`] | CloudWatch Logs |
//! | `Quotas` | [`ServiceQuotas`] | Service Quotas (`fargate`), usage counted from ECS tasks |
//! | `Registry` | [`EcrRegistry`] | ECR |
//! | `Network` | `Ec2Network` (feature `network`) | EC2 (VPCs, subnets, security groups) |
//! | `Provisioner` | `AwsProvisioner` (feature `provision`) | S3, ECR, ECS, CloudWatch Logs, EC2, IAM, STS |
//! | `Permissions` | `IamPermissions` (feature `provision`) | IAM's policy simulator, STS; read-only probes |
//! | `ImageBuilder` | `CodeBuildBuilder` (feature `provision`) | CodeBuild, S3 (the build context), CloudWatch Logs (the build log) |
//!
//! The adapters are tested against a local moto server (`tests/`), in the same conformance
//! suites the in-memory fakes pass.

#![deny(missing_docs)]

#[cfg(feature = "provision")]
mod build;
mod compute;
mod error;
mod logs;
mod metadata;
#[cfg(feature = "network")]
mod network;
mod pace;
#[cfg(feature = "provision")]
mod permissions;
#[cfg(feature = "provision")]
mod provision;
mod quotas;
mod registry;
mod sdk;
mod settle;
mod store;

#[cfg(feature = "provision")]
pub use build::{BUILDSPEC, BuildProgress, CodeBuildBuilder, build_image};
pub use compute::{
    EcsCompute, EcsOptions, LOG_STREAM_PREFIX, SESSION_TAG, STOP_REASON_PREFIX, classify_stop,
    started_by,
};
pub use logs::CloudWatchLogs;
pub use metadata::{METADATA_ENV, ecs_task_id};
#[cfg(feature = "network")]
pub use network::Ec2Network;
pub use pace::Pace;
#[cfg(feature = "provision")]
pub use permissions::IamPermissions;
#[cfg(feature = "provision")]
pub use provision::AwsProvisioner;
pub use quotas::ServiceQuotas;
pub use registry::{EcrRegistry, EcrRepository};
pub use sdk::{Aws, AwsOptions};
pub use store::{S3Options, S3Store};
