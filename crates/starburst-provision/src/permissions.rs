//! What the caller's AWS identity must be allowed to do for set-up, sessions, environment images,
//! quotas and teardown, as data, and the one IAM policy document that grants it.
//!
//! The list is read off every call the AWS adapter makes (`crates/starburst-aws/src/*.rs`), each
//! action scoped to the resources the AWS Service Authorization Reference lets a policy name for
//! it (checked against the reference's tables as of 2026). Where the adapter reads every
//! resource of a kind to find the set-up's by its tag (repositories and clusters; buckets and
//! log groups come from the Resource Groups Tagging API, roles from those named after the
//! set-up), the read is scoped to every resource of that kind: that is what the code does. Not
//! listed: `sts:GetCallerIdentity` (no policy can deny it), and what only a damaged
//! set-up needs (detaching managed policies someone attached to a starburst role, removing a
//! role from an instance profile); the check itself (`iam:SimulatePrincipalPolicy` on the caller,
//! `iam:GetRole` on an assumed role) is optional and falls back to probes.
//!
//! Uncertain points, kept here so that they are found again:
//! - `ecs:ListTasks` names container instances in the reference (with the `ecs:cluster` key);
//!   Fargate tasks have none, so it is granted on `*` (starburst also counts the vCPUs of every
//!   cluster's tasks for the quota).
//! - CloudWatch Logs authorizes log-group actions on `...:log-group:<name>` (the reference's
//!   ARN); policies often write `...:log-group:<name>:*`, which also covers the streams.
//! - `ecs:RunTask` is limited to the set-up's cluster with `ArnEquals ecs:cluster`, which the
//!   reference lists for RunTask; ECS fills the key with the cluster's ARN.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use starburst_cloud::{Permission, PermissionCondition};

use crate::setup::SetupPlan;

/// The task-definition family prefix of worker task definitions (the AWS adapter's default
/// `EcsOptions::family_prefix`; the facade's tests check that they agree).
pub const TASK_FAMILY_PREFIX: &str = "starburst-worker";

/// The service a set-up's roles are passed to.
pub const TASK_SERVICE: &str = "ecs-tasks.amazonaws.com";

/// The service the cloud image builder's role is passed to.
pub const BUILD_SERVICE: &str = "codebuild.amazonaws.com";

/// The service whose service-linked role set-up creates.
pub const ECS_SERVICE: &str = "ecs.amazonaws.com";

/// The Fargate vCPU quota codes (service `fargate`).
const QUOTAS: [&str; 2] = [
    starburst_cloud::FARGATE_ON_DEMAND_VCPU,
    starburst_cloud::FARGATE_SPOT_VCPU,
];

/// Builds the list: one `add` per action and resource.
struct Needs(Vec<Permission>);

impl Needs {
    fn add(&mut self, actions: &[&str], resource: &str, why: &str) {
        self.add_if(actions, resource, None, why);
    }

    fn add_if(
        &mut self,
        actions: &[&str],
        resource: &str,
        condition: Option<PermissionCondition>,
        why: &str,
    ) {
        for action in actions {
            self.0.push(Permission {
                action: (*action).to_string(),
                resource: resource.to_string(),
                condition: condition.clone(),
                why: why.to_string(),
            });
        }
    }
}

fn condition(operator: &str, key: &str, value: &str) -> Option<PermissionCondition> {
    Some(PermissionCondition {
        operator: operator.to_string(),
        key: key.to_string(),
        value: value.to_string(),
    })
}

/// Everything the caller needs for `plan`'s set-up, its sessions, environment images, quota
/// reads and requests, and its teardown: one entry per action and resource, in a fixed order
/// (by service, then as the code uses them).
pub fn caller_permissions(plan: &SetupPlan) -> Vec<Permission> {
    let a = &plan.account;
    let (p, region, id) = (&a.partition, &a.region, &a.id);
    let mut n = Needs(Vec::new());

    // Resource Groups Tagging API: the set-up's bucket and log group, by tag.
    n.add(
        &["tag:GetResources"],
        "*",
        "find the set-up's bucket and log group by their tags (set-up, teardown)",
    );

    // S3: the bucket, session data, teardown.
    let bucket = format!("arn:{p}:s3:::{}", plan.bucket);
    n.add(
        &["s3:ListAllMyBuckets"],
        "*",
        "find the set-up's bucket among the account's (set-up, teardown)",
    );

    n.add(
        &["s3:CreateBucket"],
        &bucket,
        "create the session-data bucket",
    );
    n.add(
        &["s3:GetBucketTagging", "s3:PutBucketTagging"],
        &bucket,
        "tag the bucket with the set-up's id (and check whose it is)",
    );
    n.add(
        &[
            "s3:GetBucketPublicAccessBlock",
            "s3:PutBucketPublicAccessBlock",
        ],
        &bucket,
        "block all public access to the bucket",
    );
    n.add(
        &[
            "s3:GetEncryptionConfiguration",
            "s3:PutEncryptionConfiguration",
        ],
        &bucket,
        "encrypt the bucket by default (SSE-S3)",
    );
    n.add(
        &[
            "s3:GetLifecycleConfiguration",
            "s3:PutLifecycleConfiguration",
        ],
        &bucket,
        "expire old session data and unfinished uploads",
    );
    n.add(
        &["s3:ListBucket"],
        &bucket,
        "sessions: list session data (a missing key then reads as missing, not as refused)",
    );
    n.add(
        &["s3:ListBucketVersions", "s3:ListBucketMultipartUploads"],
        &bucket,
        "teardown: empty the bucket",
    );
    n.add(&["s3:DeleteBucket"], &bucket, "teardown: delete the bucket");
    let session_data = format!("arn:{p}:s3:::{}/{}/*", plan.bucket, plan.prefix());
    n.add(
        &["s3:GetObject", "s3:PutObject"],
        &session_data,
        "sessions: write futures and globals, read results, events and heartbeats",
    );
    let objects = format!("{bucket}/*");
    n.add(
        &[
            "s3:DeleteObject",
            "s3:DeleteObjectVersion",
            "s3:AbortMultipartUpload",
        ],
        &objects,
        "sessions and teardown: delete session data and unfinished uploads",
    );

    // ECR: the repository and environment images.
    let repository = format!("arn:{p}:ecr:{region}:{id}:repository/{}", plan.repository);
    let every_repository = format!("arn:{p}:ecr:{region}:{id}:repository/*");
    n.add(
        &["ecr:GetAuthorizationToken"],
        "*",
        "sign docker in to the registry to push environment images",
    );
    n.add(
        &["ecr:DescribeRepositories", "ecr:ListTagsForResource"],
        &every_repository,
        "find the set-up's repository by its tag (set-up, teardown)",
    );
    n.add(
        &["ecr:CreateRepository", "ecr:TagResource"],
        &repository,
        "create the image repository with the set-up's tags",
    );
    n.add(
        &[
            "ecr:PutImageScanningConfiguration",
            "ecr:GetLifecyclePolicy",
            "ecr:PutLifecyclePolicy",
        ],
        &repository,
        "scan images on push and keep only the newest",
    );
    n.add(
        &["ecr:DescribeImages"],
        &repository,
        "find the environment image of your R packages when it was built before",
    );
    n.add(
        &[
            "ecr:BatchCheckLayerAvailability",
            "ecr:InitiateLayerUpload",
            "ecr:UploadLayerPart",
            "ecr:CompleteLayerUpload",
            "ecr:PutImage",
            "ecr:BatchGetImage",
        ],
        &repository,
        "push environment images (docker buildx --push)",
    );
    n.add(
        &["ecr:DeleteRepository"],
        &repository,
        "teardown: delete the repository and its images",
    );

    // ECS: the cluster and workers.
    let ecs = format!("arn:{p}:ecs:{region}:{id}");
    let cluster = format!("{ecs}:cluster/{}", plan.cluster);
    let task_definitions = format!("{ecs}:task-definition/{TASK_FAMILY_PREFIX}-*");
    n.add(
        &["ecs:ListClusters"],
        "*",
        "find the set-up's cluster; count the Fargate vCPUs in use for the quota",
    );
    n.add(
        &["ecs:DescribeClusters"],
        &format!("{ecs}:cluster/*"),
        "find the set-up's cluster by its tag (set-up, teardown)",
    );
    n.add(
        &[
            "ecs:CreateCluster",
            "ecs:PutClusterCapacityProviders",
            "ecs:TagResource",
        ],
        &cluster,
        "create the cluster with the FARGATE and FARGATE_SPOT capacity providers and the set-up's tags",
    );
    n.add(
        &["ecs:DeleteCluster"],
        &cluster,
        "teardown: delete the cluster",
    );
    n.add(
        &["ecs:RegisterTaskDefinition", "ecs:TagResource"],
        &task_definitions,
        "register the workers' task definitions (tagged)",
    );
    n.add(
        &["ecs:DescribeTaskDefinition"],
        "*",
        "reuse the workers' task definitions",
    );
    n.add(
        &[
            "ecs:ListTaskDefinitionFamilies",
            "ecs:ListTaskDefinitions",
            "ecs:DeregisterTaskDefinition",
        ],
        "*",
        "teardown: find and retire the task definitions that name the set-up's roles",
    );
    n.add(
        &["ecs:DeleteTaskDefinitions"],
        &task_definitions,
        "teardown: delete the retired task definitions",
    );
    n.add_if(
        &["ecs:RunTask"],
        &task_definitions,
        condition("ArnEquals", "ecs:cluster", &cluster),
        "start workers, in the set-up's cluster only",
    );
    n.add(
        &["ecs:TagResource", "ecs:StopTask"],
        &format!("{ecs}:task/{}/*", plan.cluster),
        "tag workers with their session as they start; stop workers (sessions, teardown)",
    );
    n.add(
        &["ecs:ListTasks"],
        "*",
        "list workers; count the Fargate vCPUs in use in the region for the quota",
    );
    n.add(
        &["ecs:DescribeTasks"],
        &format!("{ecs}:task/*"),
        "watch workers; count the Fargate vCPUs in use in the region for the quota",
    );

    // CloudWatch Logs: the log group and worker logs.
    let logs = format!("arn:{p}:logs:{region}:{id}:log-group");
    let group = format!("{logs}:{}", plan.log_group);
    n.add(
        &["logs:DescribeLogGroups"],
        "*",
        "find the set-up's log group (set-up, teardown)",
    );

    n.add(
        &[
            "logs:CreateLogGroup",
            "logs:ListTagsForResource",
            "logs:TagResource",
            "logs:PutRetentionPolicy",
        ],
        &group,
        "create the log group with the set-up's tags and its retention",
    );
    n.add(
        &["logs:DeleteLogGroup"],
        &group,
        "teardown: delete the log group",
    );
    n.add(
        &["logs:GetLogEvents"],
        &format!("{group}:log-stream:*"),
        "read worker logs (starburst_logs(), the log tail of a lost worker)",
    );

    // EC2: the network.
    let ec2 = format!("arn:{p}:ec2:{region}:{id}");
    let groups = format!("{ec2}:security-group/*");
    n.add(
        &[
            "ec2:DescribeVpcs",
            "ec2:DescribeSubnets",
            "ec2:DescribeSecurityGroups",
        ],
        "*",
        "find the VPC, its subnets and the set-up's security group",
    );
    n.add(
        &["ec2:DescribeNetworkInterfaces"],
        "*",
        "teardown: wait until Fargate released the stopped workers' network interfaces",
    );
    let vpc = match &plan.options.vpc {
        Some(vpc) => format!("{ec2}:vpc/{vpc}"),
        None => format!("{ec2}:vpc/*"),
    };
    for resource in [&groups, &vpc] {
        n.add(
            &["ec2:CreateSecurityGroup"],
            resource,
            "create the workers' egress-only security group",
        );
    }
    // A group's id is known only once it exists, so these name every group.
    n.add(
        &["ec2:CreateTags"],
        &groups,
        "tag the security group with the set-up's id (also as it is created)",
    );
    n.add(
        &["ec2:RevokeSecurityGroupIngress"],
        &groups,
        "remove inbound rules someone added to the set-up's security group",
    );
    n.add(
        &["ec2:DeleteSecurityGroup"],
        &groups,
        "teardown: delete the security group",
    );

    // IAM: the two roles, passing them to ECS, ECS's service-linked role.
    let iam = format!("arn:{p}:iam::{id}");
    n.add(
        &["iam:ListRoles"],
        "*",
        "find the set-up's roles (set-up, teardown)",
    );
    n.add(
        &["iam:ListRoleTags"],
        &format!("{iam}:role/{}*", plan.setup_id),
        "find the set-up's roles by their tag (set-up and teardown read the tags of the roles named after the set-up)",
    );
    let builder_role = plan.builder.as_ref().map(|b| (&b.role, BUILD_SERVICE));
    let roles = [
        (&plan.execution_role, TASK_SERVICE),
        (&plan.task_role, TASK_SERVICE),
    ];
    for (role, service) in roles.into_iter().chain(builder_role) {
        let arn = format!("{iam}:role/{role}");
        n.add(
            &[
                "iam:GetRole",
                "iam:CreateRole",
                "iam:TagRole",
                "iam:UpdateRole",
                "iam:UpdateAssumeRolePolicy",
                "iam:GetRolePolicy",
                "iam:PutRolePolicy",
            ],
            &arn,
            "create the role with its trust and inline policies and the set-up's tags",
        );
        n.add(
            &[
                "iam:ListRolePolicies",
                "iam:DeleteRolePolicy",
                "iam:ListAttachedRolePolicies",
                "iam:ListInstanceProfilesForRole",
                "iam:DeleteRole",
            ],
            &arn,
            "teardown: delete the role and its policies",
        );
        n.add_if(
            &["iam:PassRole"],
            &arn,
            condition("StringEquals", "iam:PassedToService", service),
            if service == TASK_SERVICE {
                "give the role to the workers' tasks (ECS only)"
            } else {
                "give the role to the image builder's project (CodeBuild only)"
            },
        );
    }
    n.add_if(
        &["iam:CreateServiceLinkedRole"],
        &format!("{iam}:role/aws-service-role/{ECS_SERVICE}/AWSServiceRoleForECS"),
        condition("StringEquals", "iam:AWSServiceName", ECS_SERVICE),
        "create ECS's service-linked role, which a cluster with capacity providers needs, if the account lacks it",
    );

    // CodeBuild: the cloud image builder, when set-up makes one.
    if let Some(builder) = &plan.builder {
        n.add(
            &["codebuild:ListProjects"],
            "*",
            "find the set-up's build project (set-up, teardown)",
        );
        let project = format!(
            "arn:{p}:codebuild:{region}:{id}:project/{}",
            builder.project
        );
        n.add(
            &[
                "codebuild:BatchGetProjects",
                "codebuild:CreateProject",
                "codebuild:UpdateProject",
                "codebuild:DeleteProject",
            ],
            &project,
            "create the build project with the set-up's tags; teardown: delete it",
        );
        n.add(
            &[
                "codebuild:StartBuild",
                "codebuild:BatchGetBuilds",
                "codebuild:StopBuild",
            ],
            &project,
            "images: build a worker image in the account and follow the build",
        );
    }

    // Service Quotas: the Fargate vCPU quotas.
    let quota = |code: &str| format!("arn:{p}:servicequotas:{region}:{id}:fargate/{code}");
    for code in QUOTAS {
        n.add(
            &["servicequotas:GetServiceQuota"],
            &quota(code),
            "read the Fargate vCPU quota (else starburst assumes AWS's default)",
        );
    }
    n.add(
        &["servicequotas:GetAWSDefaultServiceQuota"],
        "*",
        "read the Fargate vCPU quotas' defaults",
    );
    for code in QUOTAS {
        n.add(
            &["servicequotas:RequestServiceQuotaIncrease"],
            &quota(code),
            "ask for more Fargate vCPUs (starburst_request_quota_increase())",
        );
    }
    n.add(
        &["servicequotas:GetRequestedServiceQuotaChange"],
        "*",
        "follow quota increase requests (starburst_check_quota_request())",
    );
    n.0
}

/// One statement of a policy document, its fields in the order AWS shows them.
#[derive(Debug, Clone, Serialize)]
struct Statement {
    #[serde(rename = "Sid")]
    sid: String,
    #[serde(rename = "Effect")]
    effect: &'static str,
    #[serde(rename = "Action")]
    action: OneOrMany,
    #[serde(rename = "Resource")]
    resource: OneOrMany,
    #[serde(rename = "Condition", skip_serializing_if = "Option::is_none")]
    condition: Option<BTreeMap<String, BTreeMap<String, String>>>,
}

/// A policy element: a string when there is one value, else a list.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl From<Vec<String>> for OneOrMany {
    fn from(mut values: Vec<String>) -> Self {
        if values.len() == 1 {
            Self::One(values.remove(0))
        } else {
            Self::Many(values)
        }
    }
}

#[derive(Debug, Serialize)]
struct PolicyDocument {
    #[serde(rename = "Version")]
    version: &'static str,
    #[serde(rename = "Statement")]
    statement: Vec<Statement>,
}

/// The service prefix of `action` (`ecs` of `ecs:RunTask`).
fn service(action: &str) -> &str {
    action.split_once(':').map_or(action, |(s, _)| s)
}

/// `task-definition` → `TaskDefinition`.
fn pascal(word: &str) -> String {
    word.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// What a statement's resource is, for its Sid: `Cluster`, `EveryCluster`, `TaskDefinitions`,
/// `BucketObjects`, ...
fn resource_label(resource: &str) -> String {
    if resource == "*" {
        return "AnyResource".into();
    }
    // arn:partition:service:region:account:resource
    let parts: Vec<&str> = resource.splitn(6, ':').collect();
    let (service, rest) = match parts.as_slice() {
        [_, _, service, _, _, rest] => (*service, *rest),
        _ => return "Resource".into(),
    };
    if service == "s3" {
        return match rest.split_once('/') {
            None if rest == "*" => "EveryBucket".into(),
            None => "Bucket".into(),
            Some((_, "*")) => "BucketObjects".into(),
            Some(_) => "PrefixObjects".into(),
        };
    }
    if rest.contains(":log-stream:") {
        return "LogStreams".into();
    }
    let (kind, tail) = rest
        .split_once(['/', ':'])
        .map_or((rest, ""), |(k, t)| (k, t));
    if tail == "*" {
        format!("Every{}", pascal(kind))
    } else if tail.ends_with('*') {
        // Some of a kind: `task-definition/starburst-worker-*` → `TaskDefinitions`.
        format!("{}s", pascal(kind))
    } else {
        pascal(kind)
    }
}

/// `ServiceQuotas` for `servicequotas`, else the prefix capitalised.
fn service_label(service: &str) -> String {
    match service {
        "servicequotas" => "ServiceQuotas".into(),
        other => pascal(other),
    }
}

/// The most characters, whitespace not counted, that IAM accepts in a managed policy.
pub const MANAGED_POLICY_MAX: usize = 6144;

/// The IAM policy document granting `permissions`: statements grouped by service, condition and
/// resources (an action needed on the same resources under the same condition shares one
/// statement), each with a Sid naming what it is about; actions and resources sorted, so the
/// same permissions always give the same text. Empty `permissions` give a document without
/// statements.
pub fn policy_document(permissions: &[Permission]) -> String {
    document(statements(permissions))
}

/// The statements of [`policy_document`] as few documents as fit in managed policies of
/// [`MANAGED_POLICY_MAX`] characters each (in order; one document when they fit in one), for
/// an administrator to attach together.
pub fn policy_documents(permissions: &[Permission]) -> Vec<String> {
    let size = |doc: &str| doc.chars().filter(|c| !c.is_whitespace()).count();
    let mut documents = Vec::new();
    let mut batch: Vec<Statement> = Vec::new();
    for statement in statements(permissions) {
        batch.push(statement);
        if batch.len() > 1 && size(&document_of(&batch)) > MANAGED_POLICY_MAX {
            let last = batch.pop().expect("just pushed");
            documents.push(document_of(&batch));
            batch = vec![last];
        }
    }
    if !batch.is_empty() || documents.is_empty() {
        documents.push(document_of(&batch));
    }
    documents
}

fn document(statement: Vec<Statement>) -> String {
    let doc = PolicyDocument {
        version: "2012-10-17",
        statement,
    };
    serde_json::to_string_pretty(&doc).expect("a policy document serializes")
}

fn document_of(statements: &[Statement]) -> String {
    document(statements.to_vec())
}

/// The statements granting `permissions`, sorted by Sid (see [`policy_document`]).
fn statements(permissions: &[Permission]) -> Vec<Statement> {
    // (service, condition, action) -> resources
    type Key = (String, Option<PermissionCondition>, String);
    let mut resources: BTreeMap<Key, BTreeSet<String>> = BTreeMap::new();
    for p in permissions {
        resources
            .entry((
                service(&p.action).to_string(),
                p.condition.clone(),
                p.action.clone(),
            ))
            .or_default()
            .insert(p.resource.clone());
    }
    // (service, condition, resources) -> actions
    type Group = (String, Option<PermissionCondition>, Vec<String>);
    let mut groups: BTreeMap<Group, BTreeSet<String>> = BTreeMap::new();
    for ((service, condition, action), set) in resources {
        groups
            .entry((service, condition, set.into_iter().collect()))
            .or_default()
            .insert(action);
    }
    let mut statements: Vec<Statement> = groups
        .into_iter()
        .map(|((service, condition, resources), actions)| {
            let mut labels: Vec<String> = resources.iter().map(|r| resource_label(r)).collect();
            labels.dedup();
            let mut sid = service_label(&service) + &labels.concat();
            if let Some(c) = &condition {
                sid.push_str("When");
                sid.push_str(&pascal(c.key.rsplit(':').next().unwrap_or(&c.key)));
            }
            Statement {
                sid,
                effect: "Allow",
                action: actions.into_iter().collect::<Vec<_>>().into(),
                resource: resources.into(),
                condition: condition.map(|c| [(c.operator, [(c.key, c.value)].into())].into()),
            }
        })
        .collect();
    statements.sort_by(|a, b| a.sid.cmp(&b.sid));
    // Sids are unique within a policy: a repeated one gets a number.
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for s in &mut statements {
        let n = seen.entry(s.sid.clone()).or_default();
        *n += 1;
        if *n > 1 {
            s.sid = format!("{}{n}", s.sid);
        }
    }
    statements
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::setup::SetupOptions;
    use starburst_cloud::Account;

    fn plan(options: &SetupOptions) -> SetupPlan {
        SetupPlan::named(
            Account {
                id: "123456789012".into(),
                region: "eu-west-1".into(),
                partition: "aws".into(),
            },
            options,
        )
    }

    fn default_permissions() -> Vec<Permission> {
        caller_permissions(&plan(&SetupOptions::default()))
    }

    fn has(perms: &[Permission], action: &str, resource: &str) -> bool {
        perms
            .iter()
            .any(|p| p.action == action && p.resource == resource)
    }

    #[test]
    fn every_permission_is_an_action_on_an_arn_or_star_with_a_reason() {
        let perms = default_permissions();
        assert!(perms.len() > 80, "{}", perms.len());
        for p in &perms {
            let (service, name) = p.action.split_once(':').expect("service:Action");
            assert!(!service.is_empty() && name.starts_with(|c: char| c.is_ascii_uppercase()));
            assert!(
                p.resource == "*" || p.resource.starts_with("arn:aws:"),
                "{p:?}"
            );
            assert!(!p.why.is_empty(), "{p:?}");
        }
        // No (action, resource, condition) twice.
        let unique: BTreeSet<_> = perms
            .iter()
            .map(|p| (&p.action, &p.resource, &p.condition))
            .collect();
        assert_eq!(unique.len(), perms.len());
    }

    #[test]
    fn the_issue_s_named_permissions_are_there_scoped_as_tightly_as_aws_allows() {
        let perms = default_permissions();
        let ecs = "arn:aws:ecs:eu-west-1:123456789012";
        // Tag-on-create needs TagResource of the service, on what is created.
        assert!(has(
            &perms,
            "ecs:TagResource",
            &format!("{ecs}:cluster/starburst")
        ));
        assert!(has(
            &perms,
            "ecs:TagResource",
            &format!("{ecs}:task/starburst/*")
        ));
        assert!(has(
            &perms,
            "ecs:TagResource",
            &format!("{ecs}:task-definition/starburst-worker-*")
        ));
        assert!(has(
            &perms,
            "logs:TagResource",
            "arn:aws:logs:eu-west-1:123456789012:log-group:/starburst/workers"
        ));
        assert!(has(
            &perms,
            "ecs:DeleteTaskDefinitions",
            &format!("{ecs}:task-definition/starburst-worker-*")
        ));
        assert!(has(&perms, "ecs:DeregisterTaskDefinition", "*"));
        // RunTask: the task definitions, in the set-up's cluster.
        let run = perms.iter().find(|p| p.action == "ecs:RunTask").unwrap();
        assert_eq!(
            run.resource,
            format!("{ecs}:task-definition/starburst-worker-*")
        );
        assert_eq!(
            run.condition.as_ref().map(|c| c.value.as_str()),
            Some(format!("{ecs}:cluster/starburst").as_str())
        );
        // PassRole on both roles, to ECS tasks only.
        let pass: Vec<_> = perms
            .iter()
            .filter(|p| p.action == "iam:PassRole")
            .collect();
        assert_eq!(
            pass.iter().map(|p| p.resource.as_str()).collect::<Vec<_>>(),
            [
                "arn:aws:iam::123456789012:role/starburst-eu-west-1-execution",
                "arn:aws:iam::123456789012:role/starburst-eu-west-1-task"
            ]
        );
        for p in pass {
            let c = p.condition.as_ref().unwrap();
            assert_eq!(
                (c.operator.as_str(), c.key.as_str(), c.value.as_str()),
                (
                    "StringEquals",
                    "iam:PassedToService",
                    "ecs-tasks.amazonaws.com"
                )
            );
        }
        let slr = perms
            .iter()
            .find(|p| p.action == "iam:CreateServiceLinkedRole")
            .unwrap();
        assert_eq!(
            slr.resource,
            "arn:aws:iam::123456789012:role/aws-service-role/ecs.amazonaws.com/AWSServiceRoleForECS"
        );
        assert_eq!(slr.condition.as_ref().unwrap().key, "iam:AWSServiceName");
        // Actions AWS authorizes only on "*".
        for action in [
            "tag:GetResources",
            "ecr:GetAuthorizationToken",
            "ec2:DescribeVpcs",
            "ec2:DescribeSubnets",
            "ec2:DescribeSecurityGroups",
            "s3:ListAllMyBuckets",
            "ecs:ListClusters",
            "iam:ListRoles",
        ] {
            assert!(has(&perms, action, "*"), "{action}");
        }
        // Session data only under the prefix.
        assert!(has(
            &perms,
            "s3:PutObject",
            "arn:aws:s3:::starburst-123456789012-eu-west-1/starburst/*"
        ));
    }

    #[test]
    fn names_and_options_follow_the_plan() {
        let options = SetupOptions {
            name: "lab".into(),
            prefix: "/runs/".into(),
            vpc: Some("vpc-0abc".into()),
            bucket: Some("my-bucket".into()),
            ..SetupOptions::default()
        };
        let perms = caller_permissions(&plan(&options));
        assert!(has(&perms, "s3:GetObject", "arn:aws:s3:::my-bucket/runs/*"));
        assert!(has(
            &perms,
            "ec2:CreateSecurityGroup",
            "arn:aws:ec2:eu-west-1:123456789012:vpc/vpc-0abc"
        ));
        assert!(has(
            &perms,
            "ecs:CreateCluster",
            "arn:aws:ecs:eu-west-1:123456789012:cluster/lab"
        ));
        assert!(has(
            &perms,
            "iam:PassRole",
            "arn:aws:iam::123456789012:role/lab-eu-west-1-task"
        ));
    }

    #[test]
    fn the_policy_groups_statements_and_is_deterministic() {
        let perms = default_permissions();
        let doc = policy_document(&perms);
        let mut reversed = perms.clone();
        reversed.reverse();
        assert_eq!(
            policy_document(&reversed),
            doc,
            "order of the input does not matter"
        );
        let v: serde_json::Value = serde_json::from_str(&doc).unwrap();
        assert_eq!(v["Version"], "2012-10-17");
        let statements = v["Statement"].as_array().unwrap();
        let sids: BTreeSet<_> = statements
            .iter()
            .map(|s| s["Sid"].as_str().unwrap())
            .collect();
        assert_eq!(sids.len(), statements.len(), "unique Sids");
        for sid in &sids {
            assert!(sid.chars().all(|c| c.is_ascii_alphanumeric()), "{sid}");
        }
        // Every permission is granted by exactly the statement of its resource and condition.
        for p in &perms {
            let grants = statements.iter().filter(|s| {
                let listed = |field: &serde_json::Value, value: &str| match field {
                    serde_json::Value::String(s) => s == value,
                    serde_json::Value::Array(a) => a.iter().any(|x| x == value),
                    _ => false,
                };
                listed(&s["Action"], &p.action)
                    && listed(&s["Resource"], &p.resource)
                    && match &p.condition {
                        Some(c) => s["Condition"][&c.operator][&c.key] == c.value.as_str(),
                        None => s.get("Condition").is_none(),
                    }
            });
            assert_eq!(grants.count(), 1, "{p:?}");
        }
        // The two roles share their statements.
        let pass = statements
            .iter()
            .find(|s| s["Action"] == "iam:PassRole")
            .unwrap();
        assert_eq!(pass["Sid"], "IamRoleWhenPassedToService");
        assert_eq!(pass["Resource"].as_array().unwrap().len(), 2);
        assert_eq!(
            pass["Condition"]["StringEquals"]["iam:PassedToService"],
            "ecs-tasks.amazonaws.com"
        );
    }

    #[test]
    fn the_whole_policy_fits_in_a_managed_policy() {
        // IAM: a managed policy holds at most 6,144 characters, whitespace not counted.
        let doc = policy_document(&default_permissions());
        let size = doc.chars().filter(|c| !c.is_whitespace()).count();
        assert!(size <= 6144, "{size} characters");
    }

    #[test]
    fn the_cloud_builder_adds_its_project_and_role_only_when_asked() {
        let with = caller_permissions(&plan(&SetupOptions {
            cloud_builder: true,
            ..SetupOptions::default()
        }));
        let project =
            "arn:aws:codebuild:eu-west-1:123456789012:project/starburst-eu-west-1-builder";
        for action in [
            "codebuild:CreateProject",
            "codebuild:StartBuild",
            "codebuild:BatchGetBuilds",
        ] {
            assert!(has(&with, action, project), "{action}");
        }
        let pass = with
            .iter()
            .find(|p| {
                p.action == "iam:PassRole"
                    && p.resource.ends_with(":role/starburst-eu-west-1-builder")
            })
            .expect("the builder's role is passed");
        assert_eq!(pass.condition.as_ref().unwrap().value, BUILD_SERVICE);
        let without = default_permissions();
        assert!(!without.iter().any(|p| p.action.starts_with("codebuild:")));
        // Everything is more than one managed policy holds: two documents, each small enough,
        // granting together every action of the one document.
        let size = |doc: &str| doc.chars().filter(|c| !c.is_whitespace()).count();
        assert!(size(&policy_document(&with)) > MANAGED_POLICY_MAX);
        let documents = policy_documents(&with);
        assert_eq!(documents.len(), 2);
        let statements_of = |doc: &str| -> Vec<serde_json::Value> {
            let v: serde_json::Value = serde_json::from_str(doc).unwrap();
            v["Statement"].as_array().unwrap().clone()
        };
        let mut split: Vec<_> = documents.iter().flat_map(|d| statements_of(d)).collect();
        let mut whole = statements_of(&policy_document(&with));
        let by_sid = |a: &serde_json::Value, b: &serde_json::Value| {
            a["Sid"].as_str().cmp(&b["Sid"].as_str())
        };
        split.sort_by(by_sid);
        whole.sort_by(by_sid);
        assert_eq!(split, whole);
        for doc in &documents {
            assert!(size(doc) <= MANAGED_POLICY_MAX, "{} characters", size(doc));
        }
        assert_eq!(policy_documents(&without), vec![policy_document(&without)]);
        assert_eq!(policy_documents(&[]), vec![policy_document(&[])]);
    }

    #[test]
    fn a_policy_of_a_few_permissions_has_only_their_statements() {
        let perms: Vec<_> = default_permissions()
            .into_iter()
            .filter(|p| p.action == "ecs:CreateCluster" || p.action == "iam:PassRole")
            .collect();
        let v: serde_json::Value = serde_json::from_str(&policy_document(&perms)).unwrap();
        let sids: Vec<_> = v["Statement"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["Sid"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(sids, ["EcsCluster", "IamRoleWhenPassedToService"]);
        let empty: serde_json::Value = serde_json::from_str(&policy_document(&[])).unwrap();
        assert_eq!(empty["Statement"], serde_json::json!([]));
    }
}
