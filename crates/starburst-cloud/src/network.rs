//! The network port: where workers are placed and what they may reach.

use std::fmt::Debug;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::Result;

/// What the caller asks for: explicit ids win, otherwise the default VPC is used.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkRequest {
    /// Use these subnets instead of the default VPC's.
    pub subnets: Vec<String>,
    /// Use this VPC instead of the default one.
    pub vpc: Option<String>,
    /// Name of the egress-only security group to find or create.
    pub security_group_name: String,
}

/// Where workers run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkConfig {
    /// The VPC.
    pub vpc: String,
    /// Subnets to place workers in.
    pub subnets: Vec<String>,
    /// Security groups (egress only: workers only dial out).
    pub security_groups: Vec<String>,
}

/// Finds or creates the network workers use.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait Network: Send + Sync + Debug + 'static {
    /// Finds or creates (idempotently) the subnets and egress-only security group.
    async fn ensure(&self, request: &NetworkRequest) -> Result<NetworkConfig>;
}
