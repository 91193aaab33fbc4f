//! starburst's provisioning: idempotent creation and teardown of the cloud resources a set-up
//! needs (bucket, registry, cluster, log group, network, roles), environment images (the spec
//! of R version, platform and packages, its hash as the image tag, the rendered Dockerfile and
//! the build through the `ImageBuilder` port), and the permissions the caller needs for all of
//! it, as data and as one IAM policy document (`permissions`). It works through the ports of
//! `starburst-cloud` only and knows no SDK; the only programs it runs are docker or podman, through
//! the [`image::CommandRunner`] seam.

#![deny(missing_docs)]

mod error;
pub mod image;
pub mod permissions;
pub mod setup;

pub use error::CommandFailed;
pub use image::{DockerBuilder, EnsuredImage, EnvironmentSpec, ensure_image};
