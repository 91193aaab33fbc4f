//! starburst's AWS adapter: the only crate that names an `aws-sdk-*` type. It implements the
//! ports of `starburst-cloud` on AWS services and maps SDK errors onto the ports' one
//! [`starburst_cloud::Error`]; no SDK type appears in its public API.
//!
//! Status: the first slice. [`S3Store`] implements the `ObjectStore` port on S3 and passes the
//! shared conformance suite against a local moto server (`tests/s3.rs`). Compute (ECS
//! Fargate), Service Quotas, CloudWatch Logs, ECR and EC2 are not implemented yet, so the
//! facade still reports `backend = "aws"` as unavailable.

#![deny(missing_docs)]

mod error;
mod store;

pub use store::{S3Options, S3Store};
