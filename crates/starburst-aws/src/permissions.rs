//! The permissions port on AWS: IAM's policy simulator for the caller's identity, and read-only
//! probe calls where the simulator cannot be asked.
//!
//! STS names the caller. An assumed-role session (`arn:aws:sts::<account>:assumed-role/<role>/
//! <session>`, as SSO and instance or task roles give) is simulated as its role (`iam:GetRole`
//! for the role's path; `arn:aws:iam::<account>:role/<role>` when that is not allowed); a user as
//! itself. `iam:SimulatePrincipalPolicy` then evaluates every needed action on its resource, with
//! the context keys the needed conditions name (`iam:PassedToService`, ...), so a policy that
//! grants it under that condition counts. IAM cannot simulate the root user, federated users or
//! other identities (InvalidInput), and a caller may lack `iam:SimulatePrincipalPolicy` on itself:
//! then a few read-only calls are probed instead. A probe shows that one read is allowed or
//! refused; it never shows that a write is allowed, so everything it cannot show stays unknown.

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use aws_sdk_iam::types::{ContextEntry, ContextKeyTypeEnum, PolicyEvaluationDecisionType};
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use starburst_cloud::{
    Error, Permission, PermissionCheck, PermissionReport, Permissions, Result, Verdict,
};

use crate::Aws;
use crate::error::map;

/// Actions per `SimulatePrincipalPolicy` call. IAM's model sets no limit on `ActionNames`; this
/// keeps each request and its pages of results small.
const ACTIONS_PER_CALL: usize = 50;
/// Results per page of `SimulatePrincipalPolicy` (the model's maximum).
const RESULTS_PER_PAGE: i32 = 1000;

/// The [`Permissions`] port on AWS (see the module docs).
#[derive(Debug, Clone)]
pub struct IamPermissions {
    iam: aws_sdk_iam::Client,
    sts: aws_sdk_sts::Client,
    s3: aws_sdk_s3::Client,
    ecs: aws_sdk_ecs::Client,
    ecr: aws_sdk_ecr::Client,
    logs: aws_sdk_cloudwatchlogs::Client,
    ec2: aws_sdk_ec2::Client,
    quotas: aws_sdk_servicequotas::Client,
}

/// Whose policies to simulate, from the caller's ARN.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Principal {
    /// An IAM user or role ARN, simulated as it is (IAM answers InvalidInput for what it cannot
    /// simulate).
    Arn(String),
    /// An assumed-role session: its role, in this partition and account.
    AssumedRole {
        partition: String,
        account: String,
        role: String,
    },
}

fn principal_of(caller: &str) -> Principal {
    // arn:<partition>:sts::<account>:assumed-role/<role>/<session>
    let parts: Vec<&str> = caller.splitn(6, ':').collect();
    if let [_, partition, "sts", _, account, rest] = parts.as_slice()
        && let Some(path) = rest.strip_prefix("assumed-role/")
        && let Some((role, _session)) = path.split_once('/')
    {
        return Principal::AssumedRole {
            partition: (*partition).to_string(),
            account: (*account).to_string(),
            role: role.to_string(),
        };
    }
    Principal::Arn(caller.to_string())
}

/// A simulation's decision as a verdict.
fn verdict_of(decision: &PolicyEvaluationDecisionType) -> Verdict {
    match decision {
        PolicyEvaluationDecisionType::Allowed => Verdict::Allowed,
        PolicyEvaluationDecisionType::ExplicitDeny => Verdict::ExplicitDeny,
        _ => Verdict::ImplicitDeny,
    }
}

/// What to say about a simulated decision: the deciding statements of a denial, the context
/// keys the simulation lacked.
fn detail_of(
    verdict: Verdict,
    statements: &[aws_sdk_iam::types::Statement],
    missing: &[String],
) -> Option<String> {
    let mut parts = Vec::new();
    if verdict == Verdict::ExplicitDeny {
        let ids: BTreeSet<&str> = statements
            .iter()
            .filter_map(|s| s.source_policy_id())
            .collect();
        if !ids.is_empty() {
            parts.push(format!(
                "denied by {}",
                ids.into_iter().collect::<Vec<_>>().join(", ")
            ));
        }
    }
    if !missing.is_empty() {
        parts.push(format!(
            "the simulation had no value for {}",
            missing.join(", ")
        ));
    }
    (!parts.is_empty()).then(|| parts.join("; "))
}

/// Simulated decisions, by lower-cased action and resource.
type Decisions = BTreeMap<(String, String), (Verdict, Option<String>)>;

/// The outcome of one probe call: what it shows about its action.
fn probed<T, E>(
    op: &'static str,
    result: std::result::Result<T, SdkError<E, HttpResponse>>,
) -> Result<(Verdict, String)>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match result {
        Ok(_) => Ok((Verdict::ProbedAllowed, format!("{op} succeeded"))),
        // EC2's answer to an allowed request with DryRun.
        Err(err) if err.code() == Some("DryRunOperation") => Ok((
            Verdict::ProbedAllowed,
            format!("{op} (dry run) would have succeeded"),
        )),
        Err(err) => match map(op, "a read-only probe".into(), err) {
            e @ Error::Credentials { .. } => Err(e),
            Error::AccessDenied { message, .. } => Ok((
                Verdict::ProbedDenied,
                format!(
                    "{op} was refused{}",
                    if message.is_empty() {
                        String::new()
                    } else {
                        format!(": {message}")
                    }
                ),
            )),
            // Allowed, and nothing there.
            Error::NotFound { .. } => Ok((
                Verdict::ProbedAllowed,
                format!("{op} was allowed (and found nothing)"),
            )),
            other => Ok((Verdict::Unknown, format!("{op} failed: {other}"))),
        },
    }
}

impl IamPermissions {
    /// The permissions of the caller `aws`'s credentials identify.
    pub fn new(aws: &Aws) -> Self {
        let sdk = aws.sdk();
        Self {
            iam: aws_sdk_iam::Client::new(sdk),
            sts: aws_sdk_sts::Client::new(sdk),
            s3: aws_sdk_s3::Client::new(sdk),
            ecs: aws_sdk_ecs::Client::new(sdk),
            ecr: aws_sdk_ecr::Client::new(sdk),
            logs: aws_sdk_cloudwatchlogs::Client::new(sdk),
            ec2: aws_sdk_ec2::Client::new(sdk),
            quotas: aws_sdk_servicequotas::Client::new(sdk),
        }
    }

    async fn caller(&self) -> Result<String> {
        const OP: &str = "identify the caller";
        let out = self
            .sts
            .get_caller_identity()
            .send()
            .await
            .map_err(|err| map(OP, "the caller's credentials".into(), err))?;
        out.arn()
            .map(str::to_owned)
            .ok_or_else(|| Error::other(OP, "the caller", "STS answered without a caller ARN"))
    }

    /// The IAM ARN whose policies to simulate for `caller`.
    async fn principal(&self, caller: &str) -> String {
        match principal_of(caller) {
            Principal::Arn(arn) => arn,
            Principal::AssumedRole {
                partition,
                account,
                role,
            } => match self.iam.get_role().role_name(&role).send().await {
                // The role's path (SSO roles live under /aws-reserved/...).
                Ok(out) => out
                    .role()
                    .map(|r| r.arn().to_owned())
                    .unwrap_or_else(|| format!("arn:{partition}:iam::{account}:role/{role}")),
                // Not allowed to read it (or any other failure): the path is usually `/`.
                Err(_) => format!("arn:{partition}:iam::{account}:role/{role}"),
            },
        }
    }

    /// Simulates `principal`'s policies for every needed action on its resource.
    async fn simulate(&self, principal: &str, needed: &[Permission]) -> Result<Decisions> {
        const OP: &str = "simulate the caller's IAM policies";
        // The context keys the needed conditions name, for every call: a policy granting an
        // action under its condition then counts, and no other action depends on them.
        let mut context: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for c in needed.iter().filter_map(|p| p.condition.as_ref()) {
            context.entry(&c.key).or_default().insert(&c.value);
        }
        let entries: Vec<ContextEntry> = context
            .into_iter()
            .map(|(key, values)| {
                let many = values.len() > 1;
                ContextEntry::builder()
                    .context_key_name(key)
                    .set_context_key_values(Some(values.into_iter().map(str::to_owned).collect()))
                    .context_key_type(if many {
                        ContextKeyTypeEnum::StringList
                    } else {
                        ContextKeyTypeEnum::String
                    })
                    .build()
            })
            .collect();
        // One call per set of resources needing the same actions (both roles, both quotas).
        let mut by_resource: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for p in needed {
            by_resource
                .entry(&p.resource)
                .or_default()
                .insert(&p.action);
        }
        let mut calls: BTreeMap<Vec<&str>, Vec<&str>> = BTreeMap::new();
        for (resource, actions) in by_resource {
            calls
                .entry(actions.into_iter().collect())
                .or_default()
                .push(resource);
        }
        let mut decisions = Decisions::new();
        for (actions, resources) in calls {
            for chunk in actions.chunks(ACTIONS_PER_CALL) {
                let mut marker: Option<String> = None;
                loop {
                    let page = self
                        .iam
                        .simulate_principal_policy()
                        .policy_source_arn(principal)
                        .set_action_names(Some(chunk.iter().map(|a| (*a).to_owned()).collect()))
                        .set_resource_arns(Some(
                            resources.iter().map(|r| (*r).to_owned()).collect(),
                        ))
                        .set_context_entries(Some(entries.clone()))
                        .max_items(RESULTS_PER_PAGE)
                        .set_marker(marker.take())
                        .send()
                        .await
                        .map_err(|err| map(OP, principal.to_owned(), err))?;
                    for result in page.evaluation_results() {
                        let action = result.eval_action_name().to_ascii_lowercase();
                        let per_resource = result.resource_specific_results();
                        if !per_resource.is_empty() {
                            for r in per_resource {
                                let verdict = verdict_of(r.eval_resource_decision());
                                let detail = detail_of(
                                    verdict,
                                    r.matched_statements(),
                                    r.missing_context_values(),
                                );
                                decisions.insert(
                                    (action.clone(), r.eval_resource_name().to_owned()),
                                    (verdict, detail),
                                );
                            }
                            continue;
                        }
                        let verdict = verdict_of(result.eval_decision());
                        let detail = detail_of(
                            verdict,
                            result.matched_statements(),
                            result.missing_context_values(),
                        );
                        // One result per action and resource (the resource named), or one for
                        // all the call's resources (a template such as `arn:${Partition}:...`).
                        match result.eval_resource_name() {
                            Some(name) if resources.contains(&name) => {
                                decisions.insert((action, name.to_owned()), (verdict, detail));
                            }
                            _ => {
                                for r in &resources {
                                    decisions
                                        .entry((action.clone(), (*r).to_owned()))
                                        .or_insert((verdict, detail.clone()));
                                }
                            }
                        }
                    }
                    match page.marker() {
                        Some(next) if page.is_truncated() => marker = Some(next.to_owned()),
                        _ => break,
                    }
                }
            }
        }
        Ok(decisions)
    }

    /// Runs the read-only probes whose action is among `needed`: each action's verdict and how
    /// it was found.
    async fn probe(&self, needed: &[Permission]) -> Result<BTreeMap<String, (Verdict, String)>> {
        let wanted: BTreeSet<String> = needed
            .iter()
            .map(|p| p.action.to_ascii_lowercase())
            .collect();
        let role = needed
            .iter()
            .find(|p| p.action == "iam:GetRole")
            .and_then(|p| p.resource.rsplit_once('/'))
            .map(|(_, name)| name.to_owned());
        let mut found = BTreeMap::new();
        for action in PROBES {
            if !wanted.contains(&action.to_ascii_lowercase()) {
                continue;
            }
            let outcome = match action {
                "s3:ListAllMyBuckets" => probed(
                    "ListBuckets",
                    self.s3.list_buckets().max_buckets(1).send().await,
                )?,
                "ecs:ListClusters" => probed(
                    "ListClusters",
                    self.ecs.list_clusters().max_results(1).send().await,
                )?,
                "ecs:DescribeClusters" => probed(
                    "DescribeClusters",
                    self.ecs.describe_clusters().send().await,
                )?,
                "ecr:DescribeRepositories" => probed(
                    "DescribeRepositories",
                    self.ecr.describe_repositories().max_results(1).send().await,
                )?,
                "ecr:GetAuthorizationToken" => probed(
                    "GetAuthorizationToken",
                    self.ecr.get_authorization_token().send().await,
                )?,
                "logs:DescribeLogGroups" => probed(
                    "DescribeLogGroups",
                    self.logs.describe_log_groups().limit(1).send().await,
                )?,
                "iam:ListRoles" => {
                    probed("ListRoles", self.iam.list_roles().max_items(1).send().await)?
                }
                "iam:GetRole" => match &role {
                    Some(name) => {
                        probed("GetRole", self.iam.get_role().role_name(name).send().await)?
                    }
                    None => continue,
                },
                "ec2:DescribeVpcs" => probed(
                    "DescribeVpcs",
                    self.ec2.describe_vpcs().dry_run(true).send().await,
                )?,
                "ec2:DescribeSubnets" => probed(
                    "DescribeSubnets",
                    self.ec2.describe_subnets().dry_run(true).send().await,
                )?,
                "ec2:DescribeSecurityGroups" => probed(
                    "DescribeSecurityGroups",
                    self.ec2
                        .describe_security_groups()
                        .dry_run(true)
                        .send()
                        .await,
                )?,
                "servicequotas:GetAWSDefaultServiceQuota" => probed(
                    "GetAWSDefaultServiceQuota",
                    self.quotas
                        .get_aws_default_service_quota()
                        .service_code("fargate")
                        .quota_code(starburst_cloud::FARGATE_ON_DEMAND_VCPU)
                        .send()
                        .await,
                )?,
                _ => continue,
            };
            found.insert(action.to_ascii_lowercase(), outcome);
        }
        Ok(found)
    }
}

/// The read-only calls probed when the caller's policies cannot be simulated, by the action
/// each needs.
const PROBES: [&str; 12] = [
    "s3:ListAllMyBuckets",
    "ecs:ListClusters",
    "ecs:DescribeClusters",
    "ecr:DescribeRepositories",
    "ecr:GetAuthorizationToken",
    "logs:DescribeLogGroups",
    "iam:ListRoles",
    "iam:GetRole",
    "ec2:DescribeVpcs",
    "ec2:DescribeSubnets",
    "ec2:DescribeSecurityGroups",
    "servicequotas:GetAWSDefaultServiceQuota",
];

/// Why the simulation was not possible, in words for the user.
fn why_not_simulated(caller: &str, principal: &str, err: &Error) -> String {
    match err {
        Error::AccessDenied { .. } => format!(
            "{caller} may not ask IAM's policy simulator about itself \
             (iam:SimulatePrincipalPolicy on {principal})"
        ),
        Error::InvalidInput { message, .. } => format!(
            "IAM's policy simulator cannot simulate {caller} (the account's root user, federated \
             users and other identities that are no IAM user or role cannot be simulated): \
             {message}"
        ),
        Error::NotFound { .. } => {
            format!("IAM does not know {principal}, the identity of {caller}")
        }
        other => format!("IAM's policy simulator failed: {other}"),
    }
}

#[async_trait]
impl Permissions for IamPermissions {
    async fn check(&self, needed: &[Permission]) -> Result<PermissionReport> {
        let caller = self.caller().await?;
        let principal = self.principal(&caller).await;
        let simulation = match self.simulate(&principal, needed).await {
            Ok(decisions) => Ok(decisions),
            Err(e @ Error::Credentials { .. }) => return Err(e),
            Err(err) => Err(why_not_simulated(&caller, &principal, &err)),
        };
        let report = match simulation {
            Ok(decisions) => PermissionReport {
                checks: needed
                    .iter()
                    .map(|p| {
                        let key = (p.action.to_ascii_lowercase(), p.resource.clone());
                        let (verdict, detail) = decisions.get(&key).cloned().unwrap_or((
                            Verdict::Unknown,
                            Some("IAM's policy simulator gave no result for it".into()),
                        ));
                        PermissionCheck {
                            permission: p.clone(),
                            verdict,
                            detail,
                        }
                    })
                    .collect(),
                caller,
                principal: Some(principal),
                simulated: true,
                note: None,
            },
            Err(note) => {
                let probes = self.probe(needed).await?;
                PermissionReport {
                    checks: needed
                        .iter()
                        .map(|p| match probes.get(&p.action.to_ascii_lowercase()) {
                            Some((verdict, how)) => PermissionCheck {
                                permission: p.clone(),
                                verdict: *verdict,
                                detail: Some(how.clone()),
                            },
                            None => PermissionCheck {
                                permission: p.clone(),
                                verdict: Verdict::Unknown,
                                detail: None,
                            },
                        })
                        .collect(),
                    caller,
                    principal: None,
                    simulated: false,
                    note: Some(note),
                }
            }
        };
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_assumed_role_session_is_simulated_as_its_role() {
        assert_eq!(
            principal_of("arn:aws:sts::123456789012:assumed-role/AWSReservedSSO_Admin_0a1b/alice"),
            Principal::AssumedRole {
                partition: "aws".into(),
                account: "123456789012".into(),
                role: "AWSReservedSSO_Admin_0a1b".into(),
            }
        );
        assert_eq!(
            principal_of("arn:aws-cn:sts::1:assumed-role/r/i-0abc"),
            Principal::AssumedRole {
                partition: "aws-cn".into(),
                account: "1".into(),
                role: "r".into(),
            }
        );
        for other in [
            "arn:aws:iam::123456789012:user/alice",
            "arn:aws:iam::123456789012:user/team/bob",
            "arn:aws:iam::123456789012:root",
            "arn:aws:sts::123456789012:federated-user/carol",
            "arn:aws:sts::123456789012:user/moto",
            "not an arn",
        ] {
            assert_eq!(principal_of(other), Principal::Arn(other.into()), "{other}");
        }
    }

    #[test]
    fn denials_name_their_statements_and_missing_context() {
        let s = aws_sdk_iam::types::Statement::builder()
            .source_policy_id("guard")
            .build();
        assert_eq!(
            detail_of(Verdict::ExplicitDeny, std::slice::from_ref(&s), &[]),
            Some("denied by guard".into())
        );
        assert_eq!(
            detail_of(
                Verdict::ImplicitDeny,
                &[],
                &["iam:PassedToService".to_string()]
            ),
            Some("the simulation had no value for iam:PassedToService".into())
        );
        assert_eq!(detail_of(Verdict::Allowed, &[s], &[]), None);
    }
}
