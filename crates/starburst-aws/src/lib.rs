//! starburst's AWS adapter: the only crate that will name an `aws-sdk-*` type. It implements
//! the ports of `starburst-cloud` on S3 (object store), ECS Fargate (compute), Service Quotas,
//! CloudWatch Logs, ECR (registry) and EC2 (network), mapping SDK errors onto the ports' error.
//!
//! Status: not implemented yet. This crate deliberately has no code and no SDK dependency
//! until the AWS backend lands, so nothing can mistake it for a working backend; the facade
//! reports `backend = "aws"` as unavailable.

#![deny(missing_docs)]
