//! The permissions port: may the caller do what set-up and sessions need? Asked before set-up
//! creates anything, so that a missing permission is reported once, with everything else that is
//! missing, instead of as the first failing step.

use std::fmt::Debug;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::Result;

/// The condition a permission is needed under, as one entry of a policy's `Condition` element
/// (`{"<operator>": {"<key>": "<value>"}}`): the request carries `key` = `value`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PermissionCondition {
    /// The condition operator, e.g. `StringEquals` or `ArnEquals`.
    pub operator: String,
    /// The context key, e.g. `iam:PassedToService`.
    pub key: String,
    /// The value the request carries, e.g. `ecs-tasks.amazonaws.com`.
    pub value: String,
}

/// One thing the caller must be allowed to do: `action` on `resource` (under `condition`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Permission {
    /// The action, `<service>:<Action>` (e.g. `ecs:RunTask`).
    pub action: String,
    /// The resource ARN it acts on (wildcards allowed, e.g. `arn:aws:s3:::bucket/*`), or `*`
    /// when the action takes no resource.
    pub resource: String,
    /// The condition the request carries, when it matters (e.g. the service a role is passed
    /// to).
    pub condition: Option<PermissionCondition>,
    /// Why starburst needs it (one line).
    pub why: String,
}

/// What a check found out about one permission.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The caller's policies allow it (policy simulation).
    Allowed,
    /// A statement denies it explicitly (policy simulation).
    ExplicitDeny,
    /// No statement allows it (policy simulation).
    ImplicitDeny,
    /// A read-only call that needs this action succeeded (a probe, not a simulation).
    ProbedAllowed,
    /// A read-only call that needs this action was refused (a probe).
    ProbedDenied,
    /// Not known: it could be neither simulated nor probed.
    Unknown,
}

impl Verdict {
    /// True when it is known to be refused.
    pub fn is_denied(self) -> bool {
        matches!(
            self,
            Self::ExplicitDeny | Self::ImplicitDeny | Self::ProbedDenied
        )
    }

    /// True when it is known to be allowed.
    pub fn is_allowed(self) -> bool {
        matches!(self, Self::Allowed | Self::ProbedAllowed)
    }

    /// The verdict's name, as in JSON (`implicit_deny`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allowed => "allowed",
            Self::ExplicitDeny => "explicit_deny",
            Self::ImplicitDeny => "implicit_deny",
            Self::ProbedAllowed => "probed_allowed",
            Self::ProbedDenied => "probed_denied",
            Self::Unknown => "unknown",
        }
    }
}

/// One permission and what the check found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PermissionCheck {
    /// The permission.
    pub permission: Permission,
    /// What was found.
    pub verdict: Verdict,
    /// How it was found, when there is more to say (the probe call, the deciding statement).
    pub detail: Option<String>,
}

/// What a permissions check found for every permission asked about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PermissionReport {
    /// Who asked: the caller's identity as the cloud names it (an ARN).
    pub caller: String,
    /// The principal whose policies were simulated (an IAM user or role ARN), when one was.
    pub principal: Option<String>,
    /// True when every permission was decided by policy simulation; false when only read-only
    /// probes were possible (see `note`).
    pub simulated: bool,
    /// Why the policies could not be simulated, when they could not.
    pub note: Option<String>,
    /// One entry per permission asked about, in the order asked.
    pub checks: Vec<PermissionCheck>,
}

impl PermissionReport {
    /// The permissions known to be refused.
    pub fn denied(&self) -> impl Iterator<Item = &PermissionCheck> {
        self.checks.iter().filter(|c| c.verdict.is_denied())
    }

    /// How many permissions are known to be allowed.
    pub fn allowed_count(&self) -> usize {
        self.checks
            .iter()
            .filter(|c| c.verdict.is_allowed())
            .count()
    }

    /// The permissions not known to be allowed (refused or unknown): what a policy for the
    /// caller must grant.
    pub fn not_allowed(&self) -> Vec<Permission> {
        self.checks
            .iter()
            .filter(|c| !c.verdict.is_allowed())
            .map(|c| c.permission.clone())
            .collect()
    }
}

/// Checks what the caller may do.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait Permissions: Send + Sync + Debug + 'static {
    /// What the caller may do of `needed`: simulated where the cloud can simulate the caller's
    /// policies, else probed with read-only calls (never claiming a write is allowed).
    async fn check(&self, needed: &[Permission]) -> Result<PermissionReport>;
}
