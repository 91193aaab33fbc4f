//! starburst's provisioning: idempotent creation and teardown of the cloud resources a set-up
//! needs (bucket, registry, cluster, log group, network, roles), and environment images (the
//! spec of R version, platform and packages, its hash as the image tag, the rendered
//! Dockerfile and the build through the `ImageBuilder` port). It works through the ports of
//! `starburst-cloud` only and knows no SDK.
//!
#![deny(missing_docs)]

pub mod setup;
