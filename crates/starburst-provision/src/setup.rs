//! The one-time set-up and its teardown, through the [`Provisioner`] port.
//!
//! A set-up is named by its id, `<name>-<region>` (e.g. `starburst-us-east-1`): the same
//! account, region and name always give the same id and the same resource names, so running
//! set-up again — after it finished, after it was interrupted, or from another machine — finds
//! what exists (reported unchanged) and creates only what is missing. Every resource carries
//! [`MANAGED_TAG`] and [`SETUP_TAG`]` = <id>`; teardown deletes exactly what carries this
//! set-up's id.

use serde::{Deserialize, Serialize};
use serde_json::json;
use starburst_cloud::{
    Account, BucketSpec, BuildProjectSpec, Change, Error, LogGroupSpec, MANAGED_TAG, NetworkConfig,
    NetworkRequest, Provisioner, RepositorySpec, Resource, ResourceKind, Result, RoleSpec,
    SETUP_TAG, Tags,
};

/// Retention values CloudWatch Logs accepts, in days.
pub const LOG_RETENTION_DAYS: &[u32] = &[
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
    3288, 3653,
];

/// What the user chooses; everything else follows from the account and region.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetupOptions {
    /// Name of the set-up and prefix of its resources' names (lower-case letters, digits, `-`).
    pub name: String,
    /// Key prefix of session data in the bucket.
    pub prefix: String,
    /// Session data expires after this many days.
    pub data_retention_days: u32,
    /// Worker logs are kept this many days (a CloudWatch Logs retention value).
    pub log_retention_days: u32,
    /// Environment images kept in the repository (older ones expire).
    pub keep_images: u32,
    /// Place workers in these subnets instead of the default VPC's.
    pub subnets: Vec<String>,
    /// Use this VPC instead of the default one.
    pub vpc: Option<String>,
    /// Use this bucket name instead of `<name>-<account>-<region>`.
    pub bucket: Option<String>,
    /// Also create a CodeBuild project (and its role) that builds worker images in the
    /// account, for machines without Docker or podman.
    #[serde(default)]
    pub cloud_builder: bool,
}

impl Default for SetupOptions {
    fn default() -> Self {
        Self {
            name: "starburst".into(),
            prefix: "starburst".into(),
            data_retention_days: 7,
            log_retention_days: 30,
            keep_images: 20,
            subnets: Vec::new(),
            vpc: None,
            bucket: None,
            cloud_builder: false,
        }
    }
}

impl SetupOptions {
    /// Checks every option; the error names the option and its valid values.
    pub fn validate(&self) -> Result<()> {
        if let Some(problem) = name_problem(&self.name) {
            return Err(invalid(format!("name = {:?}: {problem}", self.name)));
        }
        let prefix = self.prefix.trim_matches('/');
        if prefix.is_empty()
            || !prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
        {
            return Err(invalid(format!(
                "prefix = {:?}: use letters, digits, '-', '_', '.' or '/'",
                self.prefix
            )));
        }
        if !(1..=3650).contains(&self.data_retention_days) {
            return Err(invalid(format!(
                "data_retention_days = {}: use 1 to 3650 days",
                self.data_retention_days
            )));
        }
        if !LOG_RETENTION_DAYS.contains(&self.log_retention_days) {
            return Err(invalid(format!(
                "log_retention_days = {}: CloudWatch Logs accepts {:?}",
                self.log_retention_days, LOG_RETENTION_DAYS
            )));
        }
        if !(1..=1000).contains(&self.keep_images) {
            return Err(invalid(format!(
                "keep_images = {}: use 1 to 1000",
                self.keep_images
            )));
        }
        if let Some(bucket) = &self.bucket
            && let Some(problem) = bucket_name_problem(bucket)
        {
            return Err(invalid(format!("bucket = {bucket:?}: {problem}")));
        }
        Ok(())
    }
}

fn invalid(message: String) -> Error {
    Error::invalid("starburst_setup", message)
}

/// Why `name` cannot name a set-up, if it cannot. The name becomes the ECR repository (at least
/// 2 characters, letters or digits at both ends), the security group `<name>-workers` (which
/// must not start with `sg-`), and starts the default bucket name (see [`bucket_name_problem`]).
fn name_problem(name: &str) -> Option<&'static str> {
    let chars_ok = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !(2..=24).contains(&name.len())
        || !chars_ok
        || !name.starts_with(|c: char| c.is_ascii_lowercase())
    {
        return Some("use 2 to 24 lower-case letters, digits or '-', starting with a letter");
    }
    if name.ends_with('-') {
        // ECR: a repository name ends with a letter or digit.
        return Some("end it with a letter or digit (it names the image repository)");
    }
    if name == "sg" || name.starts_with("sg-") {
        // EC2: "Group names may not be in the format sg-*".
        return Some("do not start it with 'sg-' (it names the security group)");
    }
    if RESERVED_BUCKET_PREFIXES
        .iter()
        .any(|p| format!("{name}-").starts_with(p))
    {
        return Some("do not start it with 'xn--', 'sthree' or 'amzn-s3-demo' (S3 reserves them)");
    }
    None
}

/// Bucket name prefixes and suffixes S3 reserves
/// (<https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html>).
const RESERVED_BUCKET_PREFIXES: [&str; 3] = ["xn--", "sthree-", "amzn-s3-demo-"];
const RESERVED_BUCKET_SUFFIXES: [&str; 5] =
    ["-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3"];

/// Why S3 would refuse `name` for a general purpose bucket, if it would.
fn bucket_name_problem(name: &str) -> Option<&'static str> {
    let chars_ok = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
    if !(3..=63).contains(&name.len())
        || !chars_ok
        || !name.starts_with(|c: char| c.is_ascii_alphanumeric())
        || !name.ends_with(|c: char| c.is_ascii_alphanumeric())
    {
        return Some(
            "S3 bucket names have 3 to 63 lower-case letters, digits, '-' or '.', and start \
             and end with a letter or digit",
        );
    }
    if name.contains("..") || name.parse::<std::net::Ipv4Addr>().is_ok() {
        return Some("S3 bucket names have no '..' and are not IP addresses");
    }
    if RESERVED_BUCKET_PREFIXES.iter().any(|p| name.starts_with(p))
        || RESERVED_BUCKET_SUFFIXES.iter().any(|s| name.ends_with(s))
    {
        return Some(
            "S3 reserves the prefixes 'xn--', 'sthree-', 'amzn-s3-demo-' and the suffixes \
             '-s3alias', '--ol-s3', '.mrap', '--x-s3', '--table-s3'",
        );
    }
    None
}

/// One step of the plan: a resource, its name, and why it is needed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// What kind of resource.
    pub kind: ResourceKind,
    /// Its name.
    pub name: String,
    /// Why starburst needs it (one line, for the plan shown before acting).
    pub why: String,
    /// True when it already exists with this set-up's tag (found before acting).
    pub exists: bool,
}

/// What set-up will do (and, once applied, did): every resource with its name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetupPlan {
    /// The set-up id (value of the `starburst:setup` tag).
    pub setup_id: String,
    /// Where.
    pub account: Account,
    /// The options it was made from.
    pub options: SetupOptions,
    /// Bucket name.
    pub bucket: String,
    /// Repository name.
    pub repository: String,
    /// Cluster name.
    pub cluster: String,
    /// Log group name.
    pub log_group: String,
    /// Security group name.
    pub security_group: String,
    /// Execution role name (ECS pulls the image and writes logs with it).
    pub execution_role: String,
    /// Task role name (workers read and write session data with it).
    pub task_role: String,
    /// The image builder's service role and build project, when `options.cloud_builder`.
    pub builder: Option<BuilderNames>,
    /// The steps in order.
    pub steps: Vec<Step>,
}

/// The names of the cloud image builder's resources.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuilderNames {
    /// The CodeBuild project.
    pub project: String,
    /// Its service role (reads build contexts, pushes images, writes build logs).
    pub role: String,
}

/// The stream prefix of build logs in the set-up's log group (`builds/<build id>`).
pub const BUILD_LOG_PREFIX: &str = "builds";

/// A cloud build is stopped after this many minutes.
pub const BUILD_TIMEOUT_MINUTES: u32 = 60;

impl SetupPlan {
    /// The tags every resource of this set-up carries.
    pub fn tags(&self) -> Tags {
        [
            (MANAGED_TAG.to_string(), "true".to_string()),
            (SETUP_TAG.to_string(), self.setup_id.clone()),
        ]
        .into()
    }

    /// The bucket's key prefix, without slashes around it.
    pub fn prefix(&self) -> &str {
        self.options.prefix.trim_matches('/')
    }

    /// The inline policy of the execution role: pull this set-up's images, write its logs.
    pub fn execution_policy(&self) -> String {
        let a = &self.account;
        json!({
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "RegistryToken",
                    "Effect": "Allow",
                    "Action": "ecr:GetAuthorizationToken",
                    "Resource": "*"
                },
                {
                    "Sid": "PullImages",
                    "Effect": "Allow",
                    "Action": [
                        "ecr:BatchCheckLayerAvailability",
                        "ecr:GetDownloadUrlForLayer",
                        "ecr:BatchGetImage"
                    ],
                    "Resource": format!(
                        "arn:{}:ecr:{}:{}:repository/{}",
                        a.partition, a.region, a.id, self.repository
                    )
                },
                {
                    "Sid": "WriteLogs",
                    "Effect": "Allow",
                    "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                    "Resource": format!(
                        "arn:{}:logs:{}:{}:log-group:{}:*",
                        a.partition, a.region, a.id, self.log_group
                    )
                }
            ]
        })
        .to_string()
    }

    /// The inline policy of the task role: session data under the prefix, nothing else.
    /// Listing (restricted to the prefix) is granted so that reading a missing key is a 404,
    /// not a 403: workers poll for keys that do not exist yet.
    pub fn task_policy(&self) -> String {
        let p = &self.account.partition;
        json!({
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "SessionData",
                    "Effect": "Allow",
                    "Action": [
                        "s3:GetObject",
                        "s3:PutObject",
                        "s3:DeleteObject",
                        "s3:AbortMultipartUpload"
                    ],
                    "Resource": format!("arn:{p}:s3:::{}/{}/*", self.bucket, self.prefix())
                },
                {
                    "Sid": "ListSessionData",
                    "Effect": "Allow",
                    "Action": "s3:ListBucket",
                    "Resource": format!("arn:{p}:s3:::{}", self.bucket),
                    "Condition": {"StringLike": {"s3:prefix": [format!("{}/*", self.prefix())]}}
                }
            ]
        })
        .to_string()
    }

    /// Where build contexts are uploaded for the cloud builder, `<prefix>/builds`, under the
    /// session data's prefix (so its expiry removes what a failed build left).
    pub fn build_prefix(&self) -> String {
        format!("{}/builds", self.prefix())
    }

    /// The inline policy of the image builder's role: read build contexts, push to this
    /// set-up's repository (and pull the runtime image environments start from), write build
    /// logs.
    pub fn builder_policy(&self) -> String {
        let a = &self.account;
        let p = &a.partition;
        json!({
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "ReadBuildContexts",
                    "Effect": "Allow",
                    "Action": ["s3:GetObject", "s3:GetObjectVersion"],
                    "Resource": format!("arn:{p}:s3:::{}/{}/*", self.bucket, self.build_prefix())
                },
                {
                    "Sid": "ListBuildContexts",
                    "Effect": "Allow",
                    "Action": ["s3:ListBucket", "s3:GetBucketAcl", "s3:GetBucketLocation"],
                    "Resource": format!("arn:{p}:s3:::{}", self.bucket)
                },
                {
                    "Sid": "RegistryToken",
                    "Effect": "Allow",
                    "Action": "ecr:GetAuthorizationToken",
                    "Resource": "*"
                },
                {
                    "Sid": "PushImages",
                    "Effect": "Allow",
                    "Action": [
                        "ecr:BatchCheckLayerAvailability",
                        "ecr:BatchGetImage",
                        "ecr:GetDownloadUrlForLayer",
                        "ecr:InitiateLayerUpload",
                        "ecr:UploadLayerPart",
                        "ecr:CompleteLayerUpload",
                        "ecr:PutImage"
                    ],
                    "Resource": format!(
                        "arn:{p}:ecr:{}:{}:repository/{}",
                        a.region, a.id, self.repository
                    )
                },
                {
                    "Sid": "WriteBuildLogs",
                    "Effect": "Allow",
                    "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                    "Resource": format!(
                        "arn:{p}:logs:{}:{}:log-group:{}:*",
                        a.region, a.id, self.log_group
                    )
                }
            ]
        })
        .to_string()
    }

    /// The build project of the cloud builder, its role given by ARN.
    pub fn build_project(&self, names: &BuilderNames, role_arn: &str) -> BuildProjectSpec {
        BuildProjectSpec {
            name: names.project.clone(),
            description: "starburst: builds worker images from R environments".into(),
            role_arn: role_arn.to_owned(),
            source_location: format!("{}/{}/", self.bucket, self.build_prefix()),
            log_group: self.log_group.clone(),
            log_stream_prefix: BUILD_LOG_PREFIX.into(),
            timeout_minutes: BUILD_TIMEOUT_MINUTES,
        }
    }

    fn role(&self, name: &str, description: &str, policy: String) -> RoleSpec {
        RoleSpec {
            name: name.to_string(),
            description: description.to_string(),
            service: "ecs-tasks.amazonaws.com".into(),
            policy_name: "starburst".into(),
            policy,
        }
    }

    /// The names and steps of a set-up of `options` in `account`, found without any look-up:
    /// every step's `exists` is false. Nothing is validated (see [`plan_names`]): it also names
    /// the resources of placeholder accounts, as the README's policy does.
    pub fn named(account: Account, options: &SetupOptions) -> Self {
        let name = &options.name;
        let bucket = options
            .bucket
            .clone()
            .unwrap_or_else(|| format!("{name}-{}-{}", account.id, account.region));
        let mut plan = SetupPlan {
            setup_id: format!("{name}-{}", account.region),
            repository: name.clone(),
            cluster: name.clone(),
            log_group: format!("/{name}/workers"),
            security_group: format!("{name}-workers"),
            // IAM is global: the region keeps set-ups of several regions apart.
            execution_role: format!("{name}-{}-execution", account.region),
            task_role: format!("{name}-{}-task", account.region),
            builder: options.cloud_builder.then(|| BuilderNames {
                project: format!("{name}-{}-builder", account.region),
                role: format!("{name}-{}-builder", account.region),
            }),
            account,
            options: options.clone(),
            bucket,
            steps: Vec::new(),
        };
        let days = options.data_retention_days;
        let steps = [
            (
                ResourceKind::Bucket,
                plan.bucket.clone(),
                format!(
                    "session data (private, encrypted, deleted after {days} day{})",
                    if days == 1 { "" } else { "s" }
                ),
            ),
            (
                ResourceKind::Repository,
                plan.repository.clone(),
                format!(
                    "worker images built from your R environment (scanned on push, newest {} kept)",
                    options.keep_images
                ),
            ),
            (
                ResourceKind::Cluster,
                plan.cluster.clone(),
                "runs the workers on Fargate and Fargate Spot".to_string(),
            ),
            (
                ResourceKind::LogGroup,
                plan.log_group.clone(),
                format!("worker logs (kept {} days)", options.log_retention_days),
            ),
            (
                ResourceKind::SecurityGroup,
                plan.security_group.clone(),
                "lets workers reach S3 and ECR; nothing can connect to them".to_string(),
            ),
            (
                ResourceKind::Role,
                plan.execution_role.clone(),
                "lets ECS pull the worker image and write its logs".to_string(),
            ),
            (
                ResourceKind::Role,
                plan.task_role.clone(),
                format!(
                    "what workers may do: read and write s3://{}/{}/ only",
                    plan.bucket,
                    plan.prefix()
                ),
            ),
        ];
        let builder = plan.builder.iter().flat_map(|b| {
            [
                (
                    ResourceKind::Role,
                    b.role.clone(),
                    "lets CodeBuild read build contexts, push worker images and write build logs"
                        .to_string(),
                ),
                (
                    ResourceKind::BuildProject,
                    b.project.clone(),
                    "builds worker images in your account when this machine has no Docker or \
                     podman (billed per build minute)"
                        .to_string(),
                ),
            ]
        });
        plan.steps = steps
            .into_iter()
            .chain(builder.collect::<Vec<_>>())
            .map(|(kind, name, why)| Step {
                exists: false,
                kind,
                name,
                why,
            })
            .collect();
        plan
    }
}

/// The plan for `options` in `account` without looking anything up: the validated options, the
/// resource names and the steps, none marked as existing. What a permissions check needs before
/// set-up may read the account.
pub fn plan_names(account: Account, options: &SetupOptions) -> Result<SetupPlan> {
    options.validate()?;
    let plan = SetupPlan::named(account, options);
    if let Some(problem) = bucket_name_problem(&plan.bucket) {
        return Err(invalid(format!(
            "the bucket name {:?} is not a valid S3 name ({problem}); pass bucket = a valid name",
            plan.bucket
        )));
    }
    Ok(plan)
}

/// The plan for `options` in the provisioner's account: names, reasons, and which resources
/// already exist (one read-only look-up by tag).
pub async fn plan(p: &dyn Provisioner, options: &SetupOptions) -> Result<SetupPlan> {
    options.validate()?;
    let mut plan = plan_names(p.account().await?, options)?;
    let existing = p.find_tagged(SETUP_TAG, &plan.setup_id).await?;
    for step in &mut plan.steps {
        step.exists = existing
            .iter()
            .any(|r| r.kind == step.kind && r.name == step.name);
    }
    Ok(plan)
}

/// One applied step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    /// The resource.
    pub resource: Resource,
    /// What was done.
    pub change: Change,
}

/// What `apply` made: everything the configuration file needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetupResult {
    /// The plan that was applied.
    pub plan: SetupPlan,
    /// Where workers run.
    pub network: NetworkConfig,
    /// ARN of the execution role.
    pub execution_role_arn: String,
    /// ARN of the task role.
    pub task_role_arn: String,
    /// The repository's id (its ARN).
    pub repository_arn: String,
    /// The cloud image builder's project name, when set up.
    pub build_project: Option<String>,
    /// Each step's outcome, in order.
    pub applied: Vec<Applied>,
}

impl SetupResult {
    /// True when the run created or changed nothing.
    pub fn unchanged(&self) -> bool {
        self.applied.iter().all(|a| a.change == Change::Unchanged)
    }

    /// The repository URI images are pushed to, `<account>.dkr.ecr.<region>.amazonaws.com/<name>`.
    pub fn repository_uri(&self) -> String {
        let a = &self.plan.account;
        let domain = if a.region.starts_with("cn-") {
            "amazonaws.com.cn"
        } else {
            "amazonaws.com"
        };
        format!(
            "{}.dkr.ecr.{}.{domain}/{}",
            a.id, a.region, self.plan.repository
        )
    }
}

/// Creates (or finds) every resource of `plan`, in order, calling `progress` after each.
/// Idempotent: a second run reports every step unchanged; a run interrupted by an error is
/// resumed by running it again.
pub async fn apply(
    p: &dyn Provisioner,
    plan: &SetupPlan,
    progress: &mut dyn FnMut(&Applied),
) -> Result<SetupResult> {
    let tags = plan.tags();
    let o = &plan.options;
    let mut applied = Vec::new();
    let mut record = |e: starburst_cloud::Ensured, applied: &mut Vec<Applied>| {
        let a = Applied {
            resource: e.resource,
            change: e.change,
        };
        progress(&a);
        applied.push(a);
    };
    let bucket = BucketSpec {
        name: plan.bucket.clone(),
        expire_prefix: format!("{}/", plan.prefix()),
        expire_days: o.data_retention_days,
    };
    record(p.ensure_bucket(&bucket, &tags).await?, &mut applied);
    let repository = RepositorySpec {
        name: plan.repository.clone(),
        keep_images: o.keep_images,
    };
    let repo = p.ensure_repository(&repository, &tags).await?;
    let repository_arn = repo.resource.id.clone();
    record(repo, &mut applied);
    record(p.ensure_cluster(&plan.cluster, &tags).await?, &mut applied);
    let logs = LogGroupSpec {
        name: plan.log_group.clone(),
        retention_days: o.log_retention_days,
    };
    record(p.ensure_log_group(&logs, &tags).await?, &mut applied);
    let request = NetworkRequest {
        subnets: o.subnets.clone(),
        vpc: o.vpc.clone(),
        security_group_name: plan.security_group.clone(),
    };
    let network = p.ensure_network(&request, &tags).await?;
    record(network.group, &mut applied);
    let execution = plan.role(
        &plan.execution_role,
        "starburst: ECS pulls worker images and writes their logs",
        plan.execution_policy(),
    );
    let execution = p.ensure_role(&execution, &tags).await?;
    let execution_role_arn = execution.resource.id.clone();
    record(execution, &mut applied);
    let task = plan.role(
        &plan.task_role,
        "starburst: workers read and write session data",
        plan.task_policy(),
    );
    let task = p.ensure_role(&task, &tags).await?;
    let task_role_arn = task.resource.id.clone();
    record(task, &mut applied);
    if let Some(names) = &plan.builder {
        let role = RoleSpec {
            service: "codebuild.amazonaws.com".into(),
            ..plan.role(
                &names.role,
                "starburst: CodeBuild builds and pushes worker images",
                plan.builder_policy(),
            )
        };
        let role = p.ensure_role(&role, &tags).await?;
        let project = plan.build_project(names, &role.resource.id);
        record(role, &mut applied);
        record(p.ensure_build_project(&project, &tags).await?, &mut applied);
    }
    Ok(SetupResult {
        plan: plan.clone(),
        network: network.config,
        execution_role_arn,
        task_role_arn,
        repository_arn,
        build_project: plan.builder.as_ref().map(|b| b.project.clone()),
        applied,
    })
}

/// What teardown would delete: every resource tagged with `setup_id`, in deletion order
/// (the cluster first, so its tasks stop before the network and roles go; the bucket last).
pub async fn teardown_plan(p: &dyn Provisioner, setup_id: &str) -> Result<Vec<Resource>> {
    let mut found = p.find_tagged(SETUP_TAG, setup_id).await?;
    let rank = |k: ResourceKind| match k {
        ResourceKind::Cluster => 0,
        ResourceKind::BuildProject => 1,
        ResourceKind::SecurityGroup => 2,
        ResourceKind::Role => 3,
        ResourceKind::LogGroup => 4,
        ResourceKind::Repository => 5,
        ResourceKind::Bucket => 6,
    };
    found.sort_by(|a, b| (rank(a.kind), &a.name).cmp(&(rank(b.kind), &b.name)));
    Ok(found)
}

/// Deletes `resources` (from [`teardown_plan`]) in order, calling `progress` after each.
pub async fn teardown(
    p: &dyn Provisioner,
    resources: &[Resource],
    progress: &mut dyn FnMut(&Resource),
) -> Result<()> {
    for r in resources {
        p.delete(r).await?;
        progress(r);
    }
    Ok(())
}
