//! The provisioning port: creates (idempotently), finds and deletes the account resources a
//! starburst set-up owns. Every resource it creates carries [`MANAGED_TAG`] and the set-up's
//! [`SETUP_TAG`], which is how teardown finds exactly what set-up made and nothing else.

use std::collections::BTreeMap;
use std::fmt::Debug;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::{NetworkConfig, NetworkRequest, Result};

/// Tag key on everything starburst creates (value `"true"`).
pub const MANAGED_TAG: &str = "starburst:managed";
/// Tag key naming the set-up a resource belongs to (value: the set-up id).
pub const SETUP_TAG: &str = "starburst:setup";

/// Resource tags, key to value.
pub type Tags = BTreeMap<String, String>;

/// The account and region the provisioner acts in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// Account id, e.g. `123456789012`.
    pub id: String,
    /// Region, e.g. `us-east-1`.
    pub region: String,
    /// ARN partition, e.g. `aws`.
    pub partition: String,
}

/// The kinds of resource a set-up owns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ResourceKind {
    /// An object store bucket (session data).
    Bucket,
    /// An image repository (worker images).
    Repository,
    /// A container cluster (workers).
    Cluster,
    /// A log group (worker logs).
    LogGroup,
    /// A security group (egress only).
    SecurityGroup,
    /// An IAM role (task execution or task role, the image builder's service role).
    Role,
    /// A cloud build project (builds worker images without a container engine on the user's
    /// machine; created only when asked).
    BuildProject,
}

impl std::fmt::Display for ResourceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Bucket => "bucket",
            Self::Repository => "repository",
            Self::Cluster => "cluster",
            Self::LogGroup => "log group",
            Self::SecurityGroup => "security group",
            Self::Role => "role",
            Self::BuildProject => "build project",
        })
    }
}

/// One resource in the account.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Resource {
    /// What it is.
    pub kind: ResourceKind,
    /// Its name (bucket, repository, cluster, log group or role name; security group name).
    pub name: String,
    /// What deletes it: its ARN or id (the security group id; the name where that is all there
    /// is, as for buckets).
    pub id: String,
}

/// What `ensure_*` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Change {
    /// The resource did not exist and was created.
    Created,
    /// It existed (with this set-up's tags) and some setting was brought in line.
    Updated,
    /// It existed as asked; nothing was written.
    Unchanged,
}

/// The outcome of one `ensure_*` call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ensured {
    /// The resource.
    pub resource: Resource,
    /// What was done to it.
    pub change: Change,
}

/// A private bucket for session data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketSpec {
    /// Bucket name.
    pub name: String,
    /// Objects under this prefix expire...
    pub expire_prefix: String,
    /// ...this many days after they were written.
    pub expire_days: u32,
}

/// An image repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepositorySpec {
    /// Repository name.
    pub name: String,
    /// How many images the lifecycle rule keeps (older ones expire).
    pub keep_images: u32,
}

/// A log group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogGroupSpec {
    /// Log group name.
    pub name: String,
    /// Retention in days (a value the log service accepts: 1, 3, 5, 7, 14, 30, ...).
    pub retention_days: u32,
}

/// An IAM role assumed by a service, with one inline policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleSpec {
    /// Role name.
    pub name: String,
    /// What the role is for (its description).
    pub description: String,
    /// The service principal that may assume it, e.g. `ecs-tasks.amazonaws.com`.
    pub service: String,
    /// Name of the inline policy.
    pub policy_name: String,
    /// The inline policy document (JSON).
    pub policy: String,
}

/// A build project that builds worker images in the account (AWS CodeBuild): each build gets
/// its context and build steps when it starts, so the project holds only where builds run,
/// with which role, and where their logs go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildProjectSpec {
    /// Project name.
    pub name: String,
    /// What the project is for (its description).
    pub description: String,
    /// The ARN of the service role builds run with (reads build contexts, pushes images,
    /// writes logs).
    pub role_arn: String,
    /// The default source: `bucket/prefix/` under which build contexts are uploaded.
    pub source_location: String,
    /// The log group of build logs...
    pub log_group: String,
    /// ...and the prefix of their streams (`<prefix>/<build id>`).
    pub log_stream_prefix: String,
    /// A build is stopped after this many minutes.
    pub timeout_minutes: u32,
}

/// The network a set-up found or made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnsuredNetwork {
    /// Where workers run.
    pub config: NetworkConfig,
    /// The egress-only security group (created by this set-up, or found with its tags).
    pub group: Ensured,
}

/// Creates, finds and deletes a set-up's resources. Every `ensure_*` is idempotent: when the
/// resource exists with the same [`SETUP_TAG`], its settings are brought in line (reported as
/// [`Change::Updated`]) or left alone ([`Change::Unchanged`]); a resource of that name that
/// this set-up did not make is an error, never adopted (teardown would delete it).
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait Provisioner: Send + Sync + Debug + 'static {
    /// The account and region the credentials act in.
    async fn account(&self) -> Result<Account>;
    /// A private bucket: public access blocked, default encryption, lifecycle expiry.
    async fn ensure_bucket(&self, spec: &BucketSpec, tags: &Tags) -> Result<Ensured>;
    /// An image repository: scan on push, lifecycle rule keeping the newest images.
    async fn ensure_repository(&self, spec: &RepositorySpec, tags: &Tags) -> Result<Ensured>;
    /// A cluster with the on-demand and Spot capacity providers.
    async fn ensure_cluster(&self, name: &str, tags: &Tags) -> Result<Ensured>;
    /// A log group with retention.
    async fn ensure_log_group(&self, spec: &LogGroupSpec, tags: &Tags) -> Result<Ensured>;
    /// The subnets and an egress-only security group (tagged when created).
    async fn ensure_network(&self, request: &NetworkRequest, tags: &Tags)
    -> Result<EnsuredNetwork>;
    /// A role with its trust policy and inline policy.
    async fn ensure_role(&self, spec: &RoleSpec, tags: &Tags) -> Result<Ensured>;
    /// A build project (its role must exist: a role created moments ago is waited for).
    async fn ensure_build_project(&self, spec: &BuildProjectSpec, tags: &Tags) -> Result<Ensured>;
    /// Every resource of the kinds above carrying the tag `key = value`. Roles and build
    /// projects are found only when their name starts with `value` (set-up names them `<set-up
    /// id>-…`): IAM has no index by tag, and reading every role's tags would cost a call per
    /// role of the account.
    async fn find_tagged(&self, key: &str, value: &str) -> Result<Vec<Resource>>;
    /// Deletes `resource` (a bucket with its contents, a role with its inline policies).
    /// Deleting what is already gone succeeds.
    async fn delete(&self, resource: &Resource) -> Result<()>;
}
