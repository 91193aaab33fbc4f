//! The quota port on Service Quotas, with Fargate vCPU usage counted from ECS.

use std::time::SystemTime;

use async_trait::async_trait;
use aws_sdk_ecs::types::{LaunchType, Task};
use aws_sdk_servicequotas::error::ProvideErrorMetadata;
use aws_sdk_servicequotas::operation::request_service_quota_increase::RequestServiceQuotaIncreaseError;
use aws_sdk_servicequotas::types::{RequestStatus, RequestedServiceQuotaChange, ServiceQuota};
use starburst_cloud::{
    Error, FARGATE_ON_DEMAND_VCPU, FARGATE_SPOT_VCPU, Quota, QuotaRequest, Quotas, RequestState,
    Result,
};

use crate::Aws;
use crate::error::map;

/// The Service Quotas code of Fargate.
const SERVICE_CODE: &str = "fargate";

/// Tasks per `DescribeTasks` call (the API's maximum).
const DESCRIBE_BATCH: usize = 100;

/// ECS task states in which a Fargate task holds its vCPUs.
const HOLDING_STATES: [&str; 4] = ["PROVISIONING", "PENDING", "ACTIVATING", "RUNNING"];

/// Fargate quotas of this account and region (Service Quotas, service code `fargate`).
///
/// [`Quotas::quota`] reads the applied value (`GetServiceQuota`) and the AWS default
/// (`GetAWSDefaultServiceQuota`); a code Service Quotas does not know is
/// [`Error::NotFound`]. [`Quotas::request_increase`] is [`Error::AlreadyExists`] while an
/// earlier request for the quota is open, and [`Error::InvalidInput`] for a value Service
/// Quotas refuses (not above the current one). [`Quotas::usage`] counts the vCPUs of this account's Fargate tasks
/// that hold capacity (provisioning, pending, activating or running) over every ECS cluster of
/// the region: capacity provider `FARGATE` (or launch type `FARGATE`) for
/// [`FARGATE_ON_DEMAND_VCPU`], `FARGATE_SPOT` for [`FARGATE_SPOT_VCPU`]. AWS itself reports
/// this usage as the CloudWatch metric `AWS/Usage ResourceCount`; counting tasks needs no
/// further SDK and no CloudWatch permission, and sees a launch at once instead of a minute
/// later.
#[derive(Debug, Clone)]
pub struct ServiceQuotas {
    quotas: aws_sdk_servicequotas::Client,
    ecs: aws_sdk_ecs::Client,
}

impl ServiceQuotas {
    /// Quotas of the account and region of `aws`.
    pub fn new(aws: &Aws) -> Self {
        Self {
            quotas: aws_sdk_servicequotas::Client::new(aws.sdk()),
            ecs: aws_sdk_ecs::Client::new(aws.sdk()),
        }
    }

    /// The applied value of `code`, `None` when Service Quotas has none (only a default).
    async fn applied(&self, code: &str) -> Result<Option<f64>> {
        match self
            .quotas
            .get_service_quota()
            .service_code(SERVICE_CODE)
            .quota_code(code)
            .send()
            .await
        {
            Ok(out) => Ok(out.quota().and_then(ServiceQuota::value)),
            Err(err) => match map("get service quota", resource(code), err) {
                Error::NotFound { .. } => Ok(None),
                other => Err(other),
            },
        }
    }

    /// The AWS default of `code`.
    async fn default_value(&self, code: &str) -> Result<f64> {
        let out = self
            .quotas
            .get_aws_default_service_quota()
            .service_code(SERVICE_CODE)
            .quota_code(code)
            .send()
            .await
            .map_err(|err| map("get default service quota", resource(code), err))?;
        out.quota().and_then(ServiceQuota::value).ok_or_else(|| {
            Error::other(
                "get default service quota",
                resource(code),
                "Service Quotas answered without a value",
            )
        })
    }

    /// ARNs of every ECS cluster of the region.
    async fn clusters(&self) -> Result<Vec<String>> {
        let mut pages = self.ecs.list_clusters().into_paginator().send();
        let mut arns = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|err| map("list ECS clusters", "clusters".into(), err))?;
            arns.extend(page.cluster_arns().iter().cloned());
        }
        Ok(arns)
    }

    /// vCPUs held on `capacity` by the tasks of `cluster`; 0 for a cluster deleted meanwhile.
    async fn cluster_vcpu(&self, cluster: &str, capacity: Capacity) -> Result<f64> {
        let mut pages = self
            .ecs
            .list_tasks()
            .cluster(cluster)
            .desired_status(aws_sdk_ecs::types::DesiredStatus::Running)
            .into_paginator()
            .send();
        let mut arns = Vec::new();
        while let Some(page) = pages.next().await {
            match page {
                Ok(page) => arns.extend(page.task_arns().iter().cloned()),
                Err(err) => {
                    return match map("list ECS tasks", format!("cluster {cluster}"), err) {
                        Error::NotFound { .. } => Ok(0.0),
                        other => Err(other),
                    };
                }
            }
        }
        let mut total = 0.0;
        for batch in arns.chunks(DESCRIBE_BATCH) {
            let out = self
                .ecs
                .describe_tasks()
                .cluster(cluster)
                .set_tasks(Some(batch.to_vec()))
                .send()
                .await
                .map_err(|err| map("describe ECS tasks", format!("cluster {cluster}"), err))?;
            for task in out.tasks() {
                total += task_vcpu(task, capacity)?;
            }
        }
        Ok(total)
    }
}

#[async_trait]
impl Quotas for ServiceQuotas {
    async fn quota(&self, code: &str) -> Result<Quota> {
        // The default first: a code Service Quotas does not know fails there with NotFound.
        let default = self.default_value(code).await?;
        Ok(Quota {
            code: code.to_owned(),
            applied: self.applied(code).await?,
            default,
        })
    }

    async fn usage(&self, code: &str) -> Result<f64> {
        let capacity = Capacity::of(code).ok_or_else(|| {
            Error::invalid(
                "count quota usage",
                format!(
                    "usage is counted only for the Fargate vCPU quotas {FARGATE_ON_DEMAND_VCPU} \
                     (On-Demand) and {FARGATE_SPOT_VCPU} (Spot), not for {code}"
                ),
            )
        })?;
        let mut total = 0.0;
        for cluster in self.clusters().await? {
            total += self.cluster_vcpu(&cluster, capacity).await?;
        }
        Ok(total)
    }

    async fn request_increase(&self, code: &str, desired: f64) -> Result<QuotaRequest> {
        let out = self
            .quotas
            .request_service_quota_increase()
            .service_code(SERVICE_CODE)
            .quota_code(code)
            .desired_value(desired)
            .send()
            .await
            .map_err(|err| {
                const OP: &str = "request quota increase";
                let message = err.message().unwrap_or_default().to_owned();
                match err.as_service_error() {
                    Some(RequestServiceQuotaIncreaseError::ResourceAlreadyExistsException(_)) => {
                        Error::already_exists(
                            OP,
                            format!("an open increase request for {}", resource(code)),
                        )
                    }
                    Some(RequestServiceQuotaIncreaseError::IllegalArgumentException(_)) => {
                        Error::invalid(OP, format!("{} to {desired}: {message}", resource(code)))
                    }
                    _ => map(OP, resource(code), err),
                }
            })?;
        let change = out.requested_quota().ok_or_else(|| {
            Error::other(
                "request quota increase",
                resource(code),
                "Service Quotas answered without the request",
            )
        })?;
        quota_request(change, SystemTime::now())
            .map_err(|what| Error::other("request quota increase", resource(code), what))
    }

    async fn request_status(&self, id: &str) -> Result<QuotaRequest> {
        let resource = format!("quota increase request {id}");
        let out = self
            .quotas
            .get_requested_service_quota_change()
            .request_id(id)
            .send()
            .await
            .map_err(|err| map("get quota increase request", resource.clone(), err))?;
        let change = out.requested_quota().ok_or_else(|| {
            Error::other(
                "get quota increase request",
                resource.clone(),
                "Service Quotas answered without the request",
            )
        })?;
        quota_request(change, SystemTime::now())
            .map_err(|what| Error::other("get quota increase request", resource, what))
    }
}

/// How a resource is named in errors.
fn resource(code: &str) -> String {
    format!("Service Quotas quota {SERVICE_CODE}/{code}")
}

/// Which Fargate capacity a quota counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Capacity {
    /// Capacity provider `FARGATE`, or launch type `FARGATE` without a capacity provider.
    OnDemand,
    /// Capacity provider `FARGATE_SPOT`.
    Spot,
}

impl Capacity {
    /// The capacity quota `code` limits, for the two Fargate vCPU quotas.
    fn of(code: &str) -> Option<Self> {
        match code {
            FARGATE_ON_DEMAND_VCPU => Some(Self::OnDemand),
            FARGATE_SPOT_VCPU => Some(Self::Spot),
            _ => None,
        }
    }

    /// True when `task` runs on this capacity.
    fn runs(self, task: &Task) -> bool {
        match (self, task.capacity_provider_name()) {
            (Self::OnDemand, Some(provider)) => provider == "FARGATE",
            (Self::OnDemand, None) => task.launch_type() == Some(&LaunchType::Fargate),
            (Self::Spot, provider) => provider == Some("FARGATE_SPOT"),
        }
    }
}

/// The vCPUs `task` holds on `capacity`: 0 when it runs elsewhere or no longer holds them.
fn task_vcpu(task: &Task, capacity: Capacity) -> Result<f64> {
    let holding = task
        .last_status()
        .is_some_and(|s| HOLDING_STATES.contains(&s));
    if !holding || !capacity.runs(task) {
        return Ok(0.0);
    }
    let arn = task.task_arn().unwrap_or("a task without an ARN");
    let cpu = task.cpu().ok_or_else(|| {
        Error::other(
            "count quota usage",
            arn,
            "ECS described the task without its cpu",
        )
    })?;
    parse_vcpu(cpu).ok_or_else(|| {
        Error::other(
            "count quota usage",
            arn,
            format!("ECS described the task with an unreadable cpu {cpu:?}"),
        )
    })
}

/// vCPUs of an ECS `cpu` value: CPU units (`"1024"` = 1 vCPU) or vCPUs (`"0.5 vCPU"`).
fn parse_vcpu(cpu: &str) -> Option<f64> {
    let cpu = cpu.trim();
    let (number, per_vcpu) = match cpu
        .len()
        .checked_sub(4)
        .filter(|&at| cpu.is_char_boundary(at) && cpu[at..].eq_ignore_ascii_case("vcpu"))
    {
        Some(at) => (cpu[..at].trim(), 1.0),
        None => (cpu, 1024.0),
    };
    number
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v >= 0.0)
        .map(|v| v / per_vcpu)
}

/// The port's state of a Service Quotas request status.
fn request_state(status: Option<&RequestStatus>) -> RequestState {
    match status {
        Some(RequestStatus::Pending) | None => RequestState::Pending,
        Some(RequestStatus::CaseOpened) => RequestState::InProgress,
        Some(RequestStatus::Approved) => RequestState::Approved,
        Some(RequestStatus::Denied | RequestStatus::NotApproved) => RequestState::Denied,
        Some(RequestStatus::CaseClosed | RequestStatus::InvalidRequest) => RequestState::Closed,
        // A status this SDK does not know yet: undecided.
        Some(_) => RequestState::InProgress,
    }
}

/// The port's request of a Service Quotas request; `now` stands in for a missing creation time.
fn quota_request(
    change: &RequestedServiceQuotaChange,
    now: SystemTime,
) -> std::result::Result<QuotaRequest, &'static str> {
    Ok(QuotaRequest {
        id: change.id().ok_or("the request has no id")?.to_owned(),
        code: change
            .quota_code()
            .ok_or("the request has no quota code")?
            .to_owned(),
        desired: change
            .desired_value()
            .ok_or("the request has no desired value")?,
        state: request_state(change.status()),
        created: change
            .created()
            .and_then(|t| SystemTime::try_from(*t).ok())
            .unwrap_or(now),
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use aws_sdk_ecs::primitives::DateTime;

    use super::*;

    fn task(status: &str, provider: Option<&str>, launch: Option<LaunchType>, cpu: &str) -> Task {
        Task::builder()
            .task_arn("arn:aws:ecs:us-east-1:123456789012:task/c/t")
            .last_status(status)
            .set_capacity_provider_name(provider.map(str::to_owned))
            .set_launch_type(launch)
            .cpu(cpu)
            .build()
    }

    #[test]
    fn the_fargate_quota_codes_name_their_capacity() {
        assert_eq!(Capacity::of("L-3032A538"), Some(Capacity::OnDemand));
        assert_eq!(Capacity::of("L-36FBB829"), Some(Capacity::Spot));
        assert_eq!(Capacity::of("L-F678F1CE"), None);
    }

    #[test]
    fn cpu_is_read_as_units_or_vcpus() {
        assert_eq!(parse_vcpu("1024"), Some(1.0));
        assert_eq!(parse_vcpu("256"), Some(0.25));
        assert_eq!(parse_vcpu("16384"), Some(16.0));
        assert_eq!(parse_vcpu("2 vCPU"), Some(2.0));
        assert_eq!(parse_vcpu(".5 vcpu"), Some(0.5));
        assert_eq!(parse_vcpu(" 4vCPU "), Some(4.0));
        for bad in ["", "vcpu", "lots", "-1024", "NaN", "1 GB", "inf"] {
            assert_eq!(parse_vcpu(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn tasks_count_on_their_capacity_while_they_hold_it() {
        let spot = task("RUNNING", Some("FARGATE_SPOT"), None, "2048");
        let od = task("PENDING", Some("FARGATE"), None, "1024");
        let launched = task("PROVISIONING", None, Some(LaunchType::Fargate), "512");
        let ec2 = task("RUNNING", None, Some(LaunchType::Ec2), "4096");
        let custom = task("RUNNING", Some("my-asg-provider"), None, "4096");
        let stopping = task("DEACTIVATING", Some("FARGATE_SPOT"), None, "2048");
        let stopped = task("STOPPED", Some("FARGATE"), None, "2048");
        let sum = |c| {
            [&spot, &od, &launched, &ec2, &custom, &stopping, &stopped]
                .into_iter()
                .map(|t| task_vcpu(t, c).unwrap())
                .sum::<f64>()
        };
        assert_eq!(sum(Capacity::Spot), 2.0);
        assert_eq!(sum(Capacity::OnDemand), 1.5);
    }

    #[test]
    fn a_counted_task_without_a_readable_cpu_is_an_error() {
        let no_cpu = Task::builder()
            .task_arn("arn:t")
            .last_status("RUNNING")
            .capacity_provider_name("FARGATE")
            .build();
        let err = task_vcpu(&no_cpu, Capacity::OnDemand).unwrap_err();
        assert!(err.to_string().contains("arn:t"), "{err}");
        assert!(
            task_vcpu(
                &task("RUNNING", Some("FARGATE"), None, "x"),
                Capacity::OnDemand
            )
            .is_err()
        );
        // Not counted, so not read.
        assert_eq!(task_vcpu(&no_cpu, Capacity::Spot).unwrap(), 0.0);
    }

    #[test]
    fn every_request_status_maps_onto_a_state() {
        let cases = [
            ("PENDING", RequestState::Pending),
            ("CASE_OPENED", RequestState::InProgress),
            ("APPROVED", RequestState::Approved),
            ("DENIED", RequestState::Denied),
            ("NOT_APPROVED", RequestState::Denied),
            ("CASE_CLOSED", RequestState::Closed),
            ("INVALID_REQUEST", RequestState::Closed),
            ("SOMETHING_NEW", RequestState::InProgress),
        ];
        for (status, state) in cases {
            assert_eq!(
                request_state(Some(&RequestStatus::from(status))),
                state,
                "{status}"
            );
        }
        assert_eq!(request_state(None), RequestState::Pending);
    }

    #[test]
    fn a_requested_change_becomes_a_quota_request() {
        let change = RequestedServiceQuotaChange::builder()
            .id("req-1")
            .service_code("fargate")
            .quota_code(FARGATE_SPOT_VCPU)
            .desired_value(256.0)
            .status(RequestStatus::CaseOpened)
            .created(DateTime::from_secs(1_700_000_000))
            .build();
        let r = quota_request(&change, SystemTime::UNIX_EPOCH).unwrap();
        assert_eq!(r.id, "req-1");
        assert_eq!(r.code, FARGATE_SPOT_VCPU);
        assert_eq!(r.desired, 256.0);
        assert_eq!(r.state, RequestState::InProgress);
        assert_eq!(
            r.created,
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
        );
        let bare = RequestedServiceQuotaChange::builder()
            .id("req-2")
            .quota_code(FARGATE_ON_DEMAND_VCPU)
            .desired_value(10.0)
            .build();
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(5);
        assert_eq!(quota_request(&bare, now).unwrap().created, now);
        let no_id = RequestedServiceQuotaChange::builder()
            .quota_code(FARGATE_ON_DEMAND_VCPU)
            .desired_value(10.0)
            .build();
        assert!(quota_request(&no_id, now).is_err());
    }
}
