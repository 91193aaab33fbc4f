//! Ports and domain types of starburst: the object-safe async traits through which every other
//! crate reaches a cloud (object store, compute, quotas, logs, image registry and builder,
//! network, provisioning, permissions, clock), the one error type they return, in-memory fakes
//! of each, and the shared conformance suites every implementation runs.
//!
//! This crate knows no cloud: no AWS SDK type, no file system layout, no R. It depends on no
//! other workspace crate.

#![deny(missing_docs)]

mod clock;
mod compute;
#[cfg(feature = "conformance")]
pub mod conformance;
mod error;
pub mod fake;
mod ids;
mod image;
mod logs;
mod network;
mod permissions;
mod provision;
mod quotas;
mod store;

pub use clock::{Clock, ManualClock, SystemClock};
pub use compute::{
    Arch, Capacity, Compute, LaunchReport, LiveWorker, SESSION_TAG, StopCause, StopInfo,
    WorkerPhase, WorkerSize, WorkerSpec, WorkerStatus, fargate_memory_gib,
};
pub use error::{Error, Result, Source};
pub use ids::{ObjectPath, SessionId, TaskId, WorkerId};
pub use image::{BuildRequest, ImageBuilder, ImageRef, Registry, RegistryLogin};
pub use logs::{LogLine, LogQuery, Logs};
pub use network::{Network, NetworkConfig, NetworkRequest};
pub use permissions::{
    Permission, PermissionCheck, PermissionCondition, PermissionReport, Permissions, Verdict,
};
pub use provision::{
    Account, BucketSpec, BuildProjectSpec, Change, Ensured, EnsuredNetwork, LogGroupSpec,
    MANAGED_TAG, Provisioner, RepositorySpec, Resource, ResourceKind, RoleSpec, SETUP_TAG, Tags,
};
pub use quotas::{
    FARGATE_ON_DEMAND_VCPU, FARGATE_SPOT_VCPU, Quota, QuotaRequest, Quotas, RequestState,
};
pub use store::{ListPage, ObjectMeta, ObjectStore, ObjectStoreExt, Watch};

/// mockall mocks of every port (feature `mocks`).
#[cfg(any(test, feature = "mocks"))]
pub mod mocks {
    pub use crate::compute::MockCompute;
    pub use crate::image::{MockImageBuilder, MockRegistry};
    pub use crate::logs::MockLogs;
    pub use crate::network::MockNetwork;
    pub use crate::permissions::MockPermissions;
    pub use crate::provision::MockProvisioner;
    pub use crate::quotas::MockQuotas;
    pub use crate::store::MockObjectStore;
}
