//! `ServiceQuotas` against moto. moto 5.2.5's Service Quotas knows only the `vpc` service and
//! lacks GetAWSDefaultServiceQuota, RequestServiceQuotaIncrease and
//! GetRequestedServiceQuotaChange, and its ECS leaves out a task's `cpu`: these tests run a moto
//! server with those added in process (`support/moto_quotas.py`). The mapping of every request
//! status and task shape is unit-tested in `src/quotas.rs`.

mod support;

use std::sync::Arc;

use starburst_aws::ServiceQuotas;
use starburst_cloud::{Error, FARGATE_ON_DEMAND_VCPU, FARGATE_SPOT_VCPU, Quotas, RequestState};
use support::Moto;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_quotas_pass_the_quotas_conformance_suite_on_both_fargate_quotas() {
    let moto = Moto::start_with_quotas().await;
    let quotas = Arc::new(ServiceQuotas::new(&moto.aws().await));
    for code in [FARGATE_ON_DEMAND_VCPU, FARGATE_SPOT_VCPU] {
        starburst_cloud::conformance::quotas(quotas.clone(), code).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quota_has_its_applied_value_and_its_default() {
    let moto = Moto::start_with_quotas().await;
    let quotas = ServiceQuotas::new(&moto.aws().await);
    let q = quotas.quota(FARGATE_SPOT_VCPU).await.unwrap();
    assert_eq!(q.code, FARGATE_SPOT_VCPU);
    assert_eq!((q.applied, q.default), (Some(6.0), 6.0));
    let err = quotas.quota("L-NOT-A-QUOTA").await.unwrap_err();
    assert!(
        matches!(&err, Error::NotFound { resource, .. } if resource.contains("fargate/L-NOT-A-QUOTA")),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_increase_request_is_pending_can_be_looked_up_and_is_not_repeated() {
    let moto = Moto::start_with_quotas().await;
    let quotas = ServiceQuotas::new(&moto.aws().await);
    let r = quotas
        .request_increase(FARGATE_ON_DEMAND_VCPU, 64.0)
        .await
        .unwrap();
    assert_eq!(
        (r.code.as_str(), r.desired, r.state),
        (FARGATE_ON_DEMAND_VCPU, 64.0, RequestState::Pending)
    );
    assert_eq!(quotas.request_status(&r.id).await.unwrap(), r);
    let err = quotas
        .request_increase(FARGATE_ON_DEMAND_VCPU, 128.0)
        .await
        .unwrap_err();
    assert!(err.is_already_exists(), "a second open request: {err}");
    let err = quotas
        .request_increase(FARGATE_SPOT_VCPU, 2.0)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::InvalidInput { message, .. } if message.contains("L-36FBB829")),
        "not above the quota: {err}"
    );
    assert!(
        quotas
            .request_increase("L-NOT-A-QUOTA", 1.0)
            .await
            .unwrap_err()
            .is_not_found()
    );
    let err = quotas.request_status("no-such-request").await.unwrap_err();
    assert!(
        matches!(&err, Error::NotFound { resource, .. } if resource.contains("no-such-request")),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_of_a_quota_that_is_not_a_fargate_vcpu_quota_is_invalid_input() {
    let moto = Moto::start_with_quotas().await;
    let quotas = ServiceQuotas::new(&moto.aws().await);
    let err = quotas.usage("L-F678F1CE").await.unwrap_err();
    assert!(
        matches!(&err, Error::InvalidInput { message, .. } if message.contains("L-3032A538")),
        "{err}"
    );
}

/// Usage counted from ECS tasks. Fargate tasks need a subnet, found with EC2 (the crate feature
/// `network`, on by default).
#[cfg(feature = "network")]
mod usage {
    use aws_sdk_ecs::types::{
        AwsVpcConfiguration, CapacityProviderStrategyItem, Compatibility, ContainerDefinition,
        LaunchType, NetworkConfiguration, NetworkMode,
    };

    use super::*;

    /// Registers a Fargate task definition of `cpu` units (and twice as many MiB, at least 2 GiB:
    /// a size Fargate has).
    async fn task_definition(ecs: &aws_sdk_ecs::Client, family: &str, cpu: &str) {
        let memory = (2 * cpu.parse::<u32>().unwrap()).max(2048);
        ecs.register_task_definition()
            .family(family)
            .cpu(cpu)
            .memory(memory.to_string())
            .network_mode(NetworkMode::Awsvpc)
            .requires_compatibilities(Compatibility::Fargate)
            .container_definitions(
                ContainerDefinition::builder()
                    .name("worker")
                    .image("worker:latest")
                    .memory(512)
                    .build(),
            )
            .send()
            .await
            .expect("register task definition");
    }

    /// Runs `count` tasks of `family` in `cluster` on `subnet`, on capacity provider `provider` or,
    /// without one, with launch type FARGATE; returns their ARNs.
    async fn run(
        ecs: &aws_sdk_ecs::Client,
        subnet: &str,
        cluster: &str,
        family: &str,
        provider: Option<&str>,
        count: i32,
    ) -> Vec<String> {
        let mut call = ecs
            .run_task()
            .cluster(cluster)
            .task_definition(family)
            .count(count)
            .network_configuration(
                NetworkConfiguration::builder()
                    .awsvpc_configuration(
                        AwsVpcConfiguration::builder()
                            .subnets(subnet)
                            // moto fails without the list; AWS would use the VPC's default group.
                            .set_security_groups(Some(Vec::new()))
                            .build()
                            .unwrap(),
                    )
                    .build(),
            );
        call = match provider {
            Some(p) => call.capacity_provider_strategy(
                CapacityProviderStrategyItem::builder()
                    .capacity_provider(p)
                    .build()
                    .unwrap(),
            ),
            None => call.launch_type(LaunchType::Fargate),
        };
        let out = call.send().await.expect("run task");
        out.tasks()
            .iter()
            .map(|t| t.task_arn().unwrap().to_owned())
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn usage_sums_the_vcpus_of_running_tasks_of_each_fargate_capacity() {
        let moto = Moto::start_with_quotas().await;
        let quotas = ServiceQuotas::new(&moto.aws().await);
        let ecs = aws_sdk_ecs::Client::new(&moto.sdk_config());
        let subnets = aws_sdk_ec2::Client::new(&moto.sdk_config())
            .describe_subnets()
            .send()
            .await
            .unwrap();
        let subnet = subnets.subnets()[0].subnet_id().unwrap();
        assert_eq!(
            quotas.usage(FARGATE_SPOT_VCPU).await.unwrap(),
            0.0,
            "no clusters"
        );

        // Not "a" and "b": moto lists the tasks of every cluster whose ARN contains the name.
        moto.ecs_service_linked_role().await;
        for cluster in ["alpha", "beta"] {
            ecs.create_cluster()
                .cluster_name(cluster)
                .capacity_providers("FARGATE")
                .capacity_providers("FARGATE_SPOT")
                .send()
                .await
                .unwrap();
        }
        task_definition(&ecs, "quarter", "256").await;
        task_definition(&ecs, "one", "1024").await;
        task_definition(&ecs, "two", "2048").await;
        // 110 Spot tasks of 1/4 vCPU: more than one DescribeTasks batch of 100.
        let mut spot = Vec::new();
        for _ in 0..11 {
            spot.extend(run(&ecs, subnet, "alpha", "quarter", Some("FARGATE_SPOT"), 10).await);
        }
        run(&ecs, subnet, "beta", "two", Some("FARGATE_SPOT"), 1).await;
        run(&ecs, subnet, "beta", "one", Some("FARGATE"), 2).await;
        run(&ecs, subnet, "alpha", "two", None, 1).await;
        assert_eq!(quotas.usage(FARGATE_SPOT_VCPU).await.unwrap(), 27.5 + 2.0);
        assert_eq!(
            quotas.usage(FARGATE_ON_DEMAND_VCPU).await.unwrap(),
            2.0 + 2.0
        );

        // Stopped tasks hold nothing.
        for arn in &spot[..10] {
            ecs.stop_task()
                .cluster("alpha")
                .task(arn)
                .send()
                .await
                .unwrap();
        }
        assert_eq!(quotas.usage(FARGATE_SPOT_VCPU).await.unwrap(), 25.0 + 2.0);
    }
}
