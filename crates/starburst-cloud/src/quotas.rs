//! The quota port: how much capacity the account may use.

use std::fmt::Debug;
use std::time::SystemTime;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::Result;

/// Fargate On-Demand vCPU quota code (service `fargate`).
pub const FARGATE_ON_DEMAND_VCPU: &str = "L-3032A538";
/// Fargate Spot vCPU quota code (service `fargate`).
pub const FARGATE_SPOT_VCPU: &str = "L-36FBB829";

/// A quota's value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Quota {
    /// The quota code.
    pub code: String,
    /// The value applied to this account, when the service could tell.
    pub applied: Option<f64>,
    /// The service default.
    pub default: f64,
}

impl Quota {
    /// The value in force: the applied value, else the default.
    pub fn effective(&self) -> f64 {
        self.applied.unwrap_or(self.default)
    }
}

/// State of a quota increase request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RequestState {
    /// Waiting for review.
    Pending,
    /// Being handled.
    InProgress,
    /// Granted.
    Approved,
    /// Refused.
    Denied,
    /// Closed without a decision.
    Closed,
}

/// A quota increase request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuotaRequest {
    /// The service's request id.
    pub id: String,
    /// The quota code.
    pub code: String,
    /// The value asked for.
    pub desired: f64,
    /// Its state.
    pub state: RequestState,
    /// When it was made.
    pub created: SystemTime,
}

/// Looks up quotas and usage, and asks for more.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait Quotas: Send + Sync + Debug + 'static {
    /// The quota `code`.
    async fn quota(&self, code: &str) -> Result<Quota>;
    /// Current usage counted against `code` (vCPUs of running workers).
    async fn usage(&self, code: &str) -> Result<f64>;
    /// Asks for `code` to be raised to `desired`.
    async fn request_increase(&self, code: &str, desired: f64) -> Result<QuotaRequest>;
    /// The state of an earlier request.
    async fn request_status(&self, id: &str) -> Result<QuotaRequest>;
}
