//! The compute port on ECS Fargate: one worker is one task.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use aws_sdk_ecs::Client;
use aws_sdk_ecs::error::ProvideErrorMetadata;
use aws_sdk_ecs::operation::register_task_definition::builders::RegisterTaskDefinitionFluentBuilder;
use aws_sdk_ecs::types::builders::ContainerDefinitionBuilder;
use aws_sdk_ecs::types::{
    AssignPublicIp, AwsVpcConfiguration, CapacityProviderStrategyItem, Compatibility,
    ContainerDefinition, ContainerOverride, CpuArchitecture, DesiredStatus, KeyValuePair,
    LogConfiguration, LogDriver, NetworkConfiguration, NetworkMode, OsFamily, RuntimePlatform, Tag,
    Task, TaskDefinition, TaskDefinitionStatus, TaskOverride,
};
use starburst_cloud::{
    Arch, Capacity, Compute, Error, LaunchReport, LiveWorker, Result, StopCause, StopInfo,
    WorkerId, WorkerPhase, WorkerSize, WorkerSpec, WorkerStatus,
};
use tokio::sync::{Mutex, Semaphore};
use tokio::task::JoinSet;

use crate::Aws;
use crate::error::map;
use crate::pace::{Pace, TokenBucket};
use crate::settle::retry_while;

/// The most tasks one `RunTask` call may start.
const RUN_TASK_MAX: u32 = 10;
/// The most tasks one `DescribeTasks` call may name.
const DESCRIBE_MAX: usize = 100;
/// The longest `reason` `StopTask` accepts.
const STOP_REASON_MAX: usize = 255;
/// The longest `startedBy` `RunTask` accepts.
const STARTED_BY_MAX: usize = 36;
/// How often one batch is retried after the SDK's own retries gave up on throttling.
const THROTTLE_RETRIES: u32 = 3;
/// The tag whose value names the session a worker belongs to.
pub use starburst_cloud::SESSION_TAG;

/// How every reason given to `StopTask` starts, so a stop by starburst is recognised where the
/// platform records no stop code (see [`classify_stop`]).
pub const STOP_REASON_PREFIX: &str = "stopped by starburst: ";
/// `awslogs-stream-prefix` of the worker container: its log stream is
/// `starburst/<container>/<task id>`.
pub const LOG_STREAM_PREFIX: &str = "starburst";
/// Bumped whenever the shape of registered task definitions changes, so a re-run never reuses
/// a family registered by an incompatible version.
const TASK_DEFINITION_FORMAT: &str = "1";

/// The default family prefix of worker task definitions (`<prefix>-<hash>`), which teardown
/// looks for.
pub(crate) const FAMILY_PREFIX: &str = "starburst-worker";

/// Where and how [`EcsCompute`] runs workers. `Default` is the cluster `default` with no network;
/// every launch needs at least one subnet.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct EcsOptions {
    /// The ECS cluster (name or ARN). It needs the `FARGATE` and `FARGATE_SPOT` capacity
    /// providers.
    pub cluster: String,
    /// Subnets the workers' network interfaces are placed in (at least one).
    pub subnets: Vec<String>,
    /// Security groups of the workers' network interfaces (none: the VPC's default group).
    pub security_groups: Vec<String>,
    /// Give each worker a public IP. Default true: workers in the default VPC's public subnets
    /// need it to reach S3 and ECR without a NAT gateway.
    pub assign_public_ip: bool,
    /// The IAM role the worker process runs as (its S3 access).
    pub task_role_arn: Option<String>,
    /// The IAM role ECS uses to pull the image and write logs.
    pub execution_role_arn: Option<String>,
    /// A CloudWatch Logs group; when set, the worker container logs to it with the `awslogs`
    /// driver (stream `starburst/<container>/<task id>`). The group must exist.
    pub log_group: Option<String>,
    /// The name of the worker container; default `worker`.
    pub container_name: String,
    /// Task definition families are this prefix, a dash and a hash of what they define;
    /// default `starburst-worker`.
    pub family_prefix: String,
    /// How fast `RunTask` starts tasks.
    pub pace: Pace,
    /// How many `StopTask` calls run at once; default 8.
    pub stop_concurrency: usize,
}

impl Default for EcsOptions {
    fn default() -> Self {
        Self {
            cluster: "default".into(),
            subnets: Vec::new(),
            security_groups: Vec::new(),
            assign_public_ip: true,
            task_role_arn: None,
            execution_role_arn: None,
            log_group: None,
            container_name: "worker".into(),
            family_prefix: FAMILY_PREFIX.into(),
            pace: Pace::default(),
            stop_concurrency: 8,
        }
    }
}

impl EcsOptions {
    /// The defaults on `cluster`.
    pub fn new(cluster: impl Into<String>) -> Self {
        Self {
            cluster: cluster.into(),
            ..Self::default()
        }
    }

    /// These options with workers in `subnets`.
    pub fn with_subnets(mut self, subnets: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.subnets = subnets.into_iter().map(Into::into).collect();
        self
    }

    /// These options with workers in `groups`.
    pub fn with_security_groups(
        mut self,
        groups: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        self.security_groups = groups.into_iter().map(Into::into).collect();
        self
    }

    /// These options with or without public IPs for workers.
    pub fn with_assign_public_ip(mut self, assign: bool) -> Self {
        self.assign_public_ip = assign;
        self
    }

    /// These options with workers running as the role `arn`.
    pub fn with_task_role_arn(mut self, arn: impl Into<String>) -> Self {
        self.task_role_arn = Some(arn.into());
        self
    }

    /// These options with ECS pulling images and writing logs as the role `arn`.
    pub fn with_execution_role_arn(mut self, arn: impl Into<String>) -> Self {
        self.execution_role_arn = Some(arn.into());
        self
    }

    /// These options with worker logs going to the CloudWatch Logs group `group`.
    pub fn with_log_group(mut self, group: impl Into<String>) -> Self {
        self.log_group = Some(group.into());
        self
    }

    /// These options with the worker container named `name`.
    pub fn with_container_name(mut self, name: impl Into<String>) -> Self {
        self.container_name = name.into();
        self
    }

    /// These options with task definition families starting with `prefix`.
    pub fn with_family_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.family_prefix = prefix.into();
        self
    }

    /// These options with launches paced by `pace`.
    pub fn with_pace(mut self, pace: Pace) -> Self {
        self.pace = pace;
        self
    }

    /// These options with at most `n` concurrent `StopTask` calls.
    pub fn with_stop_concurrency(mut self, n: usize) -> Self {
        self.stop_concurrency = n.max(1);
        self
    }
}

/// Workers as ECS Fargate tasks. A worker's id is its task id (the last segment of the task
/// ARN).
///
/// `launch` registers one task definition per image, size and architecture on first use
/// (family `starburst-worker-<hash>`, so later runs reuse it), then starts tasks with `RunTask`
/// in calls of at most 10, paced by a token bucket that halves its rate for a while when ECS
/// throttles. `describe` uses `DescribeTasks` in batches of 100, `stop` runs `StopTask`
/// concurrently and tolerates tasks that are gone.
#[derive(Debug)]
pub struct EcsCompute {
    client: Client,
    options: EcsOptions,
    region: Option<String>,
    bucket: TokenBucket,
    /// Task definition ARNs by family.
    task_definitions: Mutex<HashMap<String, String>>,
    /// Makes client tokens unique within this process.
    calls: AtomicU64,
}

impl EcsCompute {
    /// An adapter on `options.cluster`, configured by `aws`.
    pub fn new(aws: &Aws, options: EcsOptions) -> Result<Self> {
        const OP: &str = "connect to ECS";
        if options.cluster.trim().is_empty() {
            return Err(Error::invalid(OP, "the ECS cluster name is empty"));
        }
        if options.subnets.is_empty() {
            return Err(Error::invalid(
                OP,
                "Fargate workers need at least one subnet: set EcsOptions::subnets (the \
                 default VPC's subnets will do)",
            ));
        }
        if options.container_name.trim().is_empty() || options.family_prefix.trim().is_empty() {
            return Err(Error::invalid(
                OP,
                "the container name and the task definition family prefix must not be empty",
            ));
        }
        let region = aws.region().map(str::to_owned);
        if options.log_group.is_some() && region.is_none() {
            return Err(Error::invalid(
                OP,
                "worker logs need a region for the awslogs driver: configure one (AWS_REGION)",
            ));
        }
        Ok(Self {
            client: Client::new(aws.sdk()),
            bucket: TokenBucket::new(options.pace),
            options,
            region,
            task_definitions: Mutex::new(HashMap::new()),
            calls: AtomicU64::new(0),
        })
    }

    /// The options this adapter runs with.
    pub fn options(&self) -> &EcsOptions {
        &self.options
    }

    /// The workers of the cluster that are running or about to (desired status `RUNNING`),
    /// only those started with `started_by` when given (see [`started_by`]). Follows every
    /// page of `ListTasks`.
    pub async fn list(&self, started_by: Option<&str>) -> Result<Vec<WorkerId>> {
        // ECS: "startedBy … must be the only filter".
        let request = self.client.list_tasks().cluster(&self.options.cluster);
        let request = match started_by {
            Some(s) => request.started_by(s),
            None => request.desired_status(DesiredStatus::Running),
        };
        let mut pages = request.into_paginator().send();
        let mut ids = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| map("list workers", self.cluster_resource(), e))?;
            for arn in page.task_arns() {
                ids.push(worker_id(arn)?);
            }
        }
        if started_by.is_some() {
            // Without the status filter, stopped tasks may be listed (ECS keeps them about an
            // hour): keep the ones not stopped.
            let stopped: std::collections::HashSet<WorkerId> = self
                .describe(&ids)
                .await?
                .into_iter()
                .filter(|s| s.phase == WorkerPhase::Stopped)
                .map(|s| s.id)
                .collect();
            ids.retain(|id| !stopped.contains(id));
        }
        Ok(ids)
    }

    /// The size a task definition gives its tasks.
    async fn definition_size(&self, arn: &str) -> Result<Option<WorkerSize>> {
        let out = self
            .client
            .describe_task_definition()
            .task_definition(arn)
            .send()
            .await
            .map_err(|e| map("describe task definition", arn.to_owned(), e))?;
        Ok(out
            .task_definition()
            .and_then(|d| size_of(d.cpu(), d.memory())))
    }

    fn cluster_resource(&self) -> String {
        format!("ECS cluster {}", self.options.cluster)
    }

    /// The ARN of the task definition for `spec`, registered on first use.
    async fn task_definition(&self, spec: &WorkerSpec, image: &str) -> Result<String> {
        let family = self.family(spec, image);
        let mut cache = self.task_definitions.lock().await;
        if let Some(arn) = cache.get(&family) {
            return Ok(arn.clone());
        }
        let arn = match self.existing_task_definition(&family, spec, image).await? {
            Some(arn) => arn,
            None => self.register_task_definition(&family, spec, image).await?,
        };
        cache.insert(family, arn.clone());
        Ok(arn)
    }

    /// The family of `spec`'s task definition: the prefix and a hash of every field it holds.
    fn family(&self, spec: &WorkerSpec, image: &str) -> String {
        let o = &self.options;
        let arch = cpu_architecture(spec.arch);
        let fields = [
            TASK_DEFINITION_FORMAT,
            image,
            &spec.size.millicpu.to_string(),
            &spec.size.memory_mib.to_string(),
            arch.as_str(),
            &o.container_name,
            o.task_role_arn.as_deref().unwrap_or(""),
            o.execution_role_arn.as_deref().unwrap_or(""),
            o.log_group.as_deref().unwrap_or(""),
            self.region.as_deref().unwrap_or(""),
        ];
        format!("{}-{:016x}", o.family_prefix, fnv1a(&fields))
    }

    /// The latest active revision of `family`, if it defines what `spec` needs.
    async fn existing_task_definition(
        &self,
        family: &str,
        spec: &WorkerSpec,
        image: &str,
    ) -> Result<Option<String>> {
        let out = match self
            .client
            .describe_task_definition()
            .task_definition(family)
            .send()
            .await
        {
            Ok(out) => out,
            // ECS's answer for a family with no active revision.
            Err(e)
                if e.code() == Some("ClientException")
                    && e.message()
                        .is_some_and(|m| m.contains("Unable to describe task definition")) =>
            {
                return Ok(None);
            }
            Err(e) => {
                return Err(map(
                    "describe task definition",
                    format!("task definition family {family}"),
                    e,
                ));
            }
        };
        Ok(out
            .task_definition()
            .filter(|td| self.matches(td, spec, image))
            .and_then(|td| td.task_definition_arn().map(str::to_owned)))
    }

    fn matches(&self, td: &TaskDefinition, spec: &WorkerSpec, image: &str) -> bool {
        td.status() == Some(&TaskDefinitionStatus::Active)
            && td.cpu() == Some(cpu_units(spec.size.millicpu).as_str())
            && td.memory() == Some(spec.size.memory_mib.to_string().as_str())
            && td.container_definitions().iter().any(|c| {
                c.name() == Some(self.options.container_name.as_str()) && c.image() == Some(image)
            })
    }

    async fn register_task_definition(
        &self,
        family: &str,
        spec: &WorkerSpec,
        image: &str,
    ) -> Result<String> {
        const OP: &str = "register task definition";
        let resource = || format!("task definition family {family}");
        let o = &self.options;
        if o.execution_role_arn.is_none() && (o.log_group.is_some() || is_ecr_image(image)) {
            // ECS: "Fargate requires task definition to have execution role ARN to support
            // ECR images" (and "... log driver awslogs").
            return Err(Error::invalid(
                OP,
                format!(
                    "Fargate pulls ECR images and writes awslogs as the task execution role, and \
                     none is configured (image {image}); run starburst_setup(), which creates \
                     one, or set the execution role of the set-up"
                ),
            ));
        }
        let mut container = ContainerDefinition::builder()
            .name(&o.container_name)
            .image(image)
            .essential(true)
            // Fargate needs only the task-level memory; a container limit equal to it changes
            // nothing there, and moto cannot run a task without one.
            .memory(i32::try_from(spec.size.memory_mib).unwrap_or(i32::MAX));
        if let (Some(group), Some(region)) = (&o.log_group, &self.region) {
            let logs = LogConfiguration::builder()
                .log_driver(LogDriver::Awslogs)
                .options("awslogs-group", group)
                .options("awslogs-region", region)
                .options("awslogs-stream-prefix", LOG_STREAM_PREFIX)
                .build()
                .map_err(|e| Error::other(OP, resource(), e))?;
            container = container.log_configuration(logs);
        }
        // ECS cannot assume a role created moments ago ("ECS was unable to assume the role"):
        // a first session right after set-up meets that for some seconds.
        let out = retry_while(ROLE_SETTLE, role_not_yet_assumable, || {
            self.register_request(family, spec, &container).send()
        })
        .await
        .map_err(|e| map(OP, resource(), e))?;
        out.task_definition()
            .and_then(|td| td.task_definition_arn())
            .map(str::to_owned)
            .ok_or_else(|| {
                Error::other(
                    OP,
                    resource(),
                    "ECS registered the task definition but returned no ARN",
                )
            })
    }

    /// The `RegisterTaskDefinition` call for `spec` with `container`.
    fn register_request(
        &self,
        family: &str,
        spec: &WorkerSpec,
        container: &ContainerDefinitionBuilder,
    ) -> RegisterTaskDefinitionFluentBuilder {
        let o = &self.options;
        self.client
            .register_task_definition()
            .family(family)
            .network_mode(NetworkMode::Awsvpc)
            .requires_compatibilities(Compatibility::Fargate)
            .cpu(cpu_units(spec.size.millicpu))
            .memory(spec.size.memory_mib.to_string())
            .runtime_platform(
                RuntimePlatform::builder()
                    .cpu_architecture(cpu_architecture(spec.arch))
                    .operating_system_family(OsFamily::Linux)
                    .build(),
            )
            .set_task_role_arn(o.task_role_arn.clone())
            .set_execution_role_arn(o.execution_role_arn.clone())
            .container_definitions(container.clone().build())
            .tags(Tag::builder().key("starburst").value("worker").build())
    }

    /// One `RunTask` call of `n` tasks, retried when throttled after the SDK's own retries.
    async fn run_batch(&self, arn: &str, spec: &WorkerSpec, n: u32) -> Result<Batch> {
        const OP: &str = "launch workers";
        let resource = || format!("{} (task definition {arn})", self.cluster_resource());
        let o = &self.options;
        let capacity_provider = match spec.capacity {
            Capacity::OnDemand => "FARGATE",
            Capacity::Spot => "FARGATE_SPOT",
        };
        let strategy = CapacityProviderStrategyItem::builder()
            .capacity_provider(capacity_provider)
            .weight(1)
            .build()
            .map_err(|e| Error::other(OP, resource(), e))?;
        let vpc = AwsVpcConfiguration::builder()
            .set_subnets(Some(o.subnets.clone()))
            .set_security_groups((!o.security_groups.is_empty()).then(|| o.security_groups.clone()))
            .assign_public_ip(if o.assign_public_ip {
                AssignPublicIp::Enabled
            } else {
                AssignPublicIp::Disabled
            })
            .build()
            .map_err(|e| Error::other(OP, resource(), e))?;
        let env: Vec<KeyValuePair> = spec
            .env
            .iter()
            .map(|(k, v)| KeyValuePair::builder().name(k).value(v).build())
            .collect();
        let overrides = TaskOverride::builder()
            .container_overrides(
                ContainerOverride::builder()
                    .name(&o.container_name)
                    .set_environment(Some(env))
                    .build(),
            )
            .build();
        let tags: Vec<Tag> = spec
            .tags
            .iter()
            .map(|(k, v)| Tag::builder().key(k).value(v).build())
            .collect();
        // One token per batch, kept across our own retries: ECS starts the batch at most once.
        let token = format!(
            "starburst-{:x}-{:x}-{:x}",
            std::process::id(),
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos(),
            self.calls.fetch_add(1, Ordering::Relaxed)
        );
        let mut attempt = 0;
        loop {
            self.bucket.acquire(n).await;
            let sent = self
                .client
                .run_task()
                .cluster(&o.cluster)
                .task_definition(arn)
                .count(n as i32)
                .capacity_provider_strategy(strategy.clone())
                .network_configuration(
                    NetworkConfiguration::builder()
                        .awsvpc_configuration(vpc.clone())
                        .build(),
                )
                .overrides(overrides.clone())
                .set_tags((!tags.is_empty()).then(|| tags.clone()))
                .started_by(started_by(spec))
                .enable_ecs_managed_tags(true)
                .client_token(&token)
                .send()
                .await
                .map_err(|e| map(OP, resource(), e));
            match sent {
                Ok(out) => {
                    let mut launched = Vec::new();
                    for task in out.tasks() {
                        launched.push(worker_id(task.task_arn().unwrap_or_default())?);
                    }
                    let failures = out
                        .failures()
                        .iter()
                        .map(|f| {
                            let mut m = format!(
                                "ECS could not start a worker: {}",
                                f.reason().unwrap_or("no reason given")
                            );
                            if let Some(d) = f.detail() {
                                m.push_str(&format!(" ({d})"));
                            }
                            m
                        })
                        .collect();
                    return Ok(Batch { launched, failures });
                }
                Err(e @ Error::Throttled { .. }) => {
                    self.bucket.throttled();
                    attempt += 1;
                    if attempt > THROTTLE_RETRIES {
                        return Err(e);
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn describe_batch(&self, ids: &[WorkerId]) -> Result<Vec<WorkerStatus>> {
        let out = self
            .client
            .describe_tasks()
            .cluster(&self.options.cluster)
            .set_tasks(Some(ids.iter().map(|id| id.as_str().to_owned()).collect()))
            .send()
            .await
            .map_err(|e| map("describe workers", self.cluster_resource(), e))?;
        // Failures (reason MISSING) are tasks ECS does not know (any more): left out.
        out.tasks()
            .iter()
            .map(|task| self.status(task))
            .collect::<Result<Vec<_>>>()
    }

    fn status(&self, task: &Task) -> Result<WorkerStatus> {
        let id = worker_id(task.task_arn().unwrap_or_default())?;
        let stop_code = task.stop_code().map(|c| c.as_str());
        let phase = phase_of(task.last_status(), task.desired_status(), stop_code);
        let stop = (phase == WorkerPhase::Stopped).then(|| {
            let container = task
                .containers()
                .iter()
                .find(|c| c.name() == Some(self.options.container_name.as_str()))
                .or_else(|| task.containers().first());
            classify_stop(
                stop_code,
                task.stopped_reason(),
                container.and_then(|c| c.exit_code()),
                container.and_then(|c| c.reason()),
            )
        });
        let time = |t: Option<&aws_sdk_ecs::primitives::DateTime>| {
            t.and_then(|t| SystemTime::try_from(*t).ok())
        };
        Ok(WorkerStatus {
            id,
            phase,
            started_at: time(task.started_at()),
            stopped_at: time(task.stopped_at()),
            stop,
        })
    }
}

/// What one `RunTask` call started and why the rest did not start.
struct Batch {
    launched: Vec<WorkerId>,
    failures: Vec<String>,
}

#[async_trait]
impl Compute for EcsCompute {
    async fn launch(&self, spec: &WorkerSpec, count: u32) -> Result<LaunchReport> {
        const OP: &str = "launch workers";
        let Some(image) = spec.image.as_deref().filter(|i| !i.trim().is_empty()) else {
            return Err(Error::invalid(
                OP,
                "ECS Fargate workers need a container image: set the worker image \
                 (WorkerSpec::image, e.g. built by starburst's set-up)",
            ));
        };
        let mut report = LaunchReport::default();
        if count == 0 {
            return Ok(report);
        }
        spec.size.validate_fargate()?;
        let arn = self.task_definition(spec, image).await?;
        let mut remaining = count;
        while remaining > 0 {
            let n = remaining.min(RUN_TASK_MAX);
            let batch = match self.run_batch(&arn, spec, n).await {
                Ok(batch) => batch,
                Err(e) if report.launched.is_empty() => return Err(e),
                Err(e) => {
                    let why = format!("not launched: {e}");
                    report
                        .failures
                        .extend(std::iter::repeat_n(why, remaining as usize));
                    break;
                }
            };
            remaining -= n;
            let missing = (n as usize).saturating_sub(batch.launched.len());
            let started_none = batch.launched.is_empty();
            report.launched.extend(batch.launched);
            report
                .failures
                .extend(failure_messages(batch.failures, missing));
            if started_none && remaining > 0 {
                // A batch that started nothing (no capacity, a bad definition) would repeat.
                let why = report.failures.last().cloned().unwrap_or_default();
                report.failures.extend(std::iter::repeat_n(
                    format!("not attempted after a batch started no worker: {why}"),
                    remaining as usize,
                ));
                break;
            }
        }
        Ok(report)
    }

    async fn describe(&self, ids: &[WorkerId]) -> Result<Vec<WorkerStatus>> {
        let mut statuses = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(DESCRIBE_MAX) {
            statuses.extend(self.describe_batch(chunk).await?);
        }
        Ok(statuses)
    }

    async fn list_live(&self) -> Result<Vec<LiveWorker>> {
        let ids = self.list(None).await?;
        let mut live = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(DESCRIBE_MAX) {
            let out = self
                .client
                .describe_tasks()
                .cluster(&self.options.cluster)
                .set_tasks(Some(
                    chunk.iter().map(|id| id.as_str().to_owned()).collect(),
                ))
                .send()
                .await
                .map_err(|e| map("describe workers", self.cluster_resource(), e))?;
            for task in out.tasks() {
                if task.last_status() == Some("STOPPED") {
                    continue;
                }
                let mut w = live_worker(task)?;
                if w.size.is_none()
                    && let Some(arn) = task.task_definition_arn()
                {
                    // ECS reports a Fargate task's size; where it does not, its definition does.
                    w.size = self.definition_size(arn).await?;
                }
                live.push(w);
            }
        }
        Ok(live)
    }

    async fn stop(&self, ids: &[WorkerId], reason: &str) -> Result<()> {
        let reason = truncate(&format!("{STOP_REASON_PREFIX}{reason}"), STOP_REASON_MAX);
        let permits = Arc::new(Semaphore::new(self.options.stop_concurrency.max(1)));
        let mut calls = JoinSet::new();
        for id in ids {
            let (client, permits) = (self.client.clone(), permits.clone());
            let (cluster, id, reason) = (
                self.options.cluster.clone(),
                id.as_str().to_owned(),
                reason.clone(),
            );
            calls.spawn(async move {
                let _permit = permits.acquire_owned().await;
                let sent = client
                    .stop_task()
                    .cluster(&cluster)
                    .task(&id)
                    .reason(reason)
                    .send()
                    .await;
                match sent {
                    Ok(_) => Ok(()),
                    // A task ECS no longer knows is as stopped as it gets.
                    Err(e)
                        if e.code() == Some("InvalidParameterException")
                            && e.message().is_some_and(|m| m.contains("not found")) =>
                    {
                        Ok(())
                    }
                    Err(e) => Err(map("stop worker", format!("task {id} in {cluster}"), e)),
                }
            });
        }
        let mut first_error = None;
        while let Some(done) = calls.join_next().await {
            let result = done.unwrap_or_else(|e| {
                Err(Error::other(
                    "stop worker",
                    self.cluster_resource(),
                    format!("a StopTask call panicked or was cancelled: {e}"),
                ))
            });
            if let Err(e) = result {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// The `startedBy` of `spec`'s tasks: its session (tag [`SESSION_TAG`]) in the characters ECS
/// allows (letters, digits, `-`, `_`, `/`; others become `-`), at most 36 of them; `starburst`
/// without a session.
pub fn started_by(spec: &WorkerSpec) -> String {
    match spec.tags.get(SESSION_TAG).filter(|s| !s.is_empty()) {
        Some(session) => session
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '/') {
                    c
                } else {
                    '-'
                }
            })
            .take(STARTED_BY_MAX)
            .collect(),
        None => "starburst".into(),
    }
}

/// One message per worker that did not start: RunTask's failures in order, the last one
/// repeated (or a generic one) when ECS gave fewer failures than missing tasks.
fn failure_messages(failures: Vec<String>, missing: usize) -> Vec<String> {
    let fallback = failures.last().cloned().unwrap_or_else(|| {
        "ECS started fewer workers than asked for and gave no reason".to_owned()
    });
    let mut out: Vec<String> = failures.into_iter().take(missing).collect();
    out.resize(missing, fallback);
    out
}

/// The phase of a task from ECS's `lastStatus` and `desiredStatus`. A task on its way down
/// (`DEACTIVATING` .. `DEPROVISIONING`) counts as stopped once ECS says why (a stop code with
/// desired status `STOPPED`); until then it may still be working.
fn phase_of(
    last_status: Option<&str>,
    desired_status: Option<&str>,
    stop_code: Option<&str>,
) -> WorkerPhase {
    match last_status {
        Some("PROVISIONING") | None => WorkerPhase::Provisioning,
        Some("PENDING" | "ACTIVATING") => WorkerPhase::Pulling,
        Some("RUNNING") => WorkerPhase::Running,
        Some("STOPPED") => WorkerPhase::Stopped,
        Some(_) if desired_status == Some("STOPPED") && stop_code.is_some() => WorkerPhase::Stopped,
        Some(_) => WorkerPhase::Running,
    }
}

/// Why a task stopped, from ECS's `stopCode` and `stoppedReason` and the worker container's
/// exit code and reason. In order: a Spot interruption; a task that failed to start or could
/// not pull its image (`CannotPullContainerError`, `ResourceInitializationError`); an
/// `OutOfMemoryError`; a stop on request (`UserInitiated`, or no stop code and a reason
/// starting with [`STOP_REASON_PREFIX`], as emulators that record no stop code report a
/// `StopTask`); exit code 137 (killed, in practice for memory); exit 0 of the essential
/// container; exit 78 (the worker could not start R); any other non-zero exit; else `Other`.
/// The message is the platform's words with the exit code.
pub fn classify_stop(
    stop_code: Option<&str>,
    stopped_reason: Option<&str>,
    exit_code: Option<i32>,
    container_reason: Option<&str>,
) -> StopInfo {
    let reason = stopped_reason.unwrap_or("");
    let container = container_reason.unwrap_or("");
    let says = |needle: &str| {
        let needle = needle.to_ascii_lowercase();
        reason.to_ascii_lowercase().contains(&needle)
            || container.to_ascii_lowercase().contains(&needle)
    };
    // Start-up failures that may pass: retried by starting another worker (within the
    // session's failure bound), never failing the session on the first one.
    let transient = says("timeout")
        || says("timed out")
        || says("deadline exceeded")
        || says("network interface provisioning")
        || says("unable to assume the role")
        || says("throttl")
        || says("internal error")
        || says("try again");
    // A pull that cannot succeed until the user acts: the image is missing, or the execution
    // role may not pull it.
    let pull_refused = says("not found")
        || says("manifest unknown")
        || says("does not exist")
        || says("denied")
        || says("not authorized")
        || says("unauthorized")
        || says("no basic auth");
    let pulling = says("CannotPullContainerError") || says("pull image");
    let cause = if stop_code == Some("SpotInterruption") {
        StopCause::SpotInterruption
    } else if (pulling && (pull_refused || !transient))
        || (says("ResourceInitializationError") && pull_refused && !transient)
    {
        StopCause::ImagePullFailed
    } else if says("CannotStartContainerError") {
        StopCause::CannotStartContainer
    } else if pulling
        || says("ResourceInitializationError")
        // Whatever else kept a task from starting may pass; retries are bounded.
        || stop_code == Some("TaskFailedToStart")
    {
        StopCause::StartFailedTransient
    } else if says("OutOfMemoryError") {
        StopCause::OutOfMemory
    } else if stop_code == Some("UserInitiated")
        || (stop_code.is_none() && reason.starts_with(STOP_REASON_PREFIX))
    {
        StopCause::StoppedByUser
    } else if stop_code == Some("ServiceSchedulerInitiated") {
        StopCause::PlatformStopped
    } else if stop_code == Some("TerminationNotice")
        || stop_code == Some("InfrastructureHealth")
        || says("InfrastructureHealth")
        || says("maintenance")
    {
        StopCause::HostRetired
    } else if exit_code == Some(137) {
        // SIGKILL without ECS saying OutOfMemoryError: a lost worker, worth re-running.
        StopCause::Killed
    } else if stop_code == Some("EssentialContainerExited") && exit_code == Some(0) {
        StopCause::Exited
    } else if exit_code == Some(78) {
        StopCause::EvaluatorStartFailed
    } else if exit_code.is_some_and(|c| c != 0) {
        StopCause::Crashed
    } else {
        StopCause::Other
    };
    let mut message = [reason, container]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(": ");
    if message.is_empty() {
        message = stop_code.unwrap_or("task stopped").to_owned();
    }
    if let Some(code) = exit_code {
        message.push_str(&format!(" (exit code {code})"));
    }
    StopInfo {
        cause,
        exit_code,
        message,
    }
}

/// The worker id of a task: the last segment of its ARN.
fn worker_id(task_arn: &str) -> Result<WorkerId> {
    let id = task_arn.rsplit('/').next().unwrap_or_default();
    WorkerId::new(id).map_err(|_| {
        Error::other(
            "read task id",
            format!("task {task_arn:?}"),
            "ECS returned a task ARN whose id is not a valid worker id",
        )
    })
}

/// What ECS says of a task of the pool, whoever started it.
fn live_worker(task: &Task) -> Result<LiveWorker> {
    let size = size_of(task.cpu(), task.memory());
    let arm = task.attributes().iter().any(|a| {
        a.name() == "ecs.cpu-architecture"
            && a.value().is_some_and(|v| v.eq_ignore_ascii_case("arm64"))
    });
    Ok(LiveWorker {
        id: worker_id(task.task_arn().unwrap_or_default())?,
        session: task.started_by().map(str::to_owned),
        // Created is when billing can start at the earliest; started, where ECS omits it.
        created_at: task
            .created_at()
            .or(task.started_at())
            .and_then(|t| SystemTime::try_from(*t).ok()),
        size,
        arch: if arm { Arch::Arm64 } else { Arch::X86_64 },
        capacity: if task.capacity_provider_name() == Some("FARGATE_SPOT") {
            Capacity::Spot
        } else {
            Capacity::OnDemand
        },
    })
}

/// A size from ECS's CPU units (1024 per vCPU) and MiB, as strings.
fn size_of(cpu: Option<&str>, memory: Option<&str>) -> Option<WorkerSize> {
    let units = cpu?.parse::<u64>().ok()?;
    Some(WorkerSize {
        millicpu: u32::try_from(units * 1000 / 1024).ok()?,
        memory_mib: memory?.parse().ok()?,
    })
}

/// Fargate CPU units (1024 per vCPU) of `millicpu`, as ECS wants them.
/// How long a task definition is retried while ECS cannot yet assume its (new) roles.
const ROLE_SETTLE: Duration = Duration::from_secs(60);

/// ECS's answer for a role it cannot assume: a new role not yet usable (IAM is eventually
/// consistent), or one whose trust policy is wrong (then retrying ends at [`ROLE_SETTLE`]).
fn role_not_yet_assumable<E: ProvideErrorMetadata>(err: &E) -> bool {
    err.code() == Some("ClientException")
        && err
            .message()
            .is_some_and(|m| m.contains("unable to assume the role"))
}

/// Whether `image` is in a private ECR registry (`<account>.dkr.ecr.<region>.amazonaws.com/…`).
fn is_ecr_image(image: &str) -> bool {
    image
        .split_once('/')
        .is_some_and(|(host, _)| host.contains(".dkr.ecr.") && host.contains(".amazonaws.com"))
}

fn cpu_units(millicpu: u32) -> String {
    (u64::from(millicpu) * 1024 / 1000).to_string()
}

fn cpu_architecture(arch: Arch) -> CpuArchitecture {
    match arch {
        Arch::X86_64 => CpuArchitecture::X8664,
        Arch::Arm64 => CpuArchitecture::Arm64,
    }
}

/// `s` cut to at most `max` bytes at a character boundary.
fn truncate(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

/// FNV-1a (64 bit) of the fields, each terminated by a zero byte: stable across Rust versions
/// and platforms, unlike `std`'s hasher, so families stay the same from run to run.
fn fnv1a(fields: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in fields
        .iter()
        .flat_map(|f| f.bytes().chain(std::iter::once(0)))
    {
        h ^= u64::from(byte);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_follow_the_task_lifecycle() {
        use WorkerPhase::*;
        let cases = [
            (Some("PROVISIONING"), Some("RUNNING"), None, Provisioning),
            (None, None, None, Provisioning),
            (Some("PENDING"), Some("RUNNING"), None, Pulling),
            (Some("ACTIVATING"), Some("RUNNING"), None, Pulling),
            (Some("RUNNING"), Some("RUNNING"), None, Running),
            (
                Some("RUNNING"),
                Some("STOPPED"),
                Some("UserInitiated"),
                Running,
            ),
            (Some("DEACTIVATING"), Some("RUNNING"), None, Running),
            (Some("STOPPING"), Some("STOPPED"), None, Running),
            (
                Some("STOPPING"),
                Some("STOPPED"),
                Some("EssentialContainerExited"),
                Stopped,
            ),
            (
                Some("DEPROVISIONING"),
                Some("STOPPED"),
                Some("UserInitiated"),
                Stopped,
            ),
            (Some("STOPPED"), Some("STOPPED"), None, Stopped),
        ];
        for (last, desired, code, want) in cases {
            assert_eq!(
                phase_of(last, desired, code),
                want,
                "{last:?}/{desired:?}/{code:?}"
            );
        }
    }

    #[test]
    fn cpu_units_are_1024_per_vcpu() {
        assert_eq!(cpu_units(250), "256");
        assert_eq!(cpu_units(500), "512");
        assert_eq!(cpu_units(1000), "1024");
        assert_eq!(cpu_units(16000), "16384");
    }

    #[test]
    fn stop_reasons_are_cut_at_a_character_boundary() {
        assert_eq!(truncate("abc", 2), "ab");
        assert_eq!(truncate("aé", 2), "a");
        assert_eq!(truncate("abc", 10), "abc");
    }

    #[test]
    fn failure_messages_cover_every_missing_worker() {
        assert_eq!(
            failure_messages(vec!["a".into(), "b".into()], 3),
            ["a", "b", "b"]
        );
        assert_eq!(failure_messages(vec!["a".into(), "b".into()], 1), ["a"]);
        let generic = failure_messages(vec![], 2);
        assert_eq!(generic.len(), 2);
        assert!(generic[0].contains("no reason"));
        assert!(failure_messages(vec!["a".into()], 0).is_empty());
    }

    #[test]
    fn fnv1a_is_stable_and_separates_fields() {
        assert_eq!(fnv1a(&[]), 0xcbf2_9ce4_8422_2325);
        assert_ne!(fnv1a(&["ab", "c"]), fnv1a(&["a", "bc"]));
        assert_eq!(fnv1a(&["x"]), fnv1a(&["x"]));
    }
}
