//! `AwsProvisioner` against moto: the shared conformance suite, then each resource kind's
//! settings checked through raw SDK clients, drift repair, foreign resources of the same name,
//! find by tag and delete.
//!
//! moto 5.2.5 gaps: DeleteCluster never answers ClusterContainsTasksException, so `delete`'s
//! bounded wait for a cluster's tasks is tested only in the unit tests (`until_unblocked`,
//! paused time); DeleteSecurityGroup's DependencyViolation comes from strict mode
//! (`support/strict_moto.py`). moto's HeadBucket serves other accounts'
//! buckets and ignores ExpectedBucketOwner, which is one reason ownership is judged by
//! ListBuckets (only the caller's own buckets) instead.

#![cfg(feature = "provision")]

mod support;

use std::sync::Arc;

use aws_sdk_s3::primitives::ByteStream;
use starburst_aws::AwsProvisioner;
use starburst_cloud::{
    BucketSpec, Change, Error, LogGroupSpec, MANAGED_TAG, NetworkRequest, Provisioner,
    RepositorySpec, Resource, ResourceKind, RoleSpec, SETUP_TAG, Tags,
};
use support::Moto;

fn tags(setup: &str) -> Tags {
    [(MANAGED_TAG, "true"), (SETUP_TAG, setup)]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn bucket(name: &str) -> BucketSpec {
    BucketSpec {
        name: name.into(),
        expire_prefix: "starburst/".into(),
        expire_days: 7,
    }
}

const POLICY: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*"}]}"#;

fn role(name: &str) -> RoleSpec {
    RoleSpec {
        name: name.into(),
        description: "starburst test role".into(),
        service: "ecs-tasks.amazonaws.com".into(),
        policy_name: "starburst".into(),
        policy: POLICY.into(),
    }
}

struct Fx {
    moto: Moto,
    p: AwsProvisioner,
}

impl Fx {
    async fn start() -> Self {
        let moto = Moto::start().await;
        let p = AwsProvisioner::new(&moto.aws().await);
        Self { moto, p }
    }
    fn s3(&self) -> aws_sdk_s3::Client {
        aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&self.moto.sdk_config())
                .force_path_style(true)
                .build(),
        )
    }
    fn ecr(&self) -> aws_sdk_ecr::Client {
        aws_sdk_ecr::Client::new(&self.moto.sdk_config())
    }
    fn ecs(&self) -> aws_sdk_ecs::Client {
        aws_sdk_ecs::Client::new(&self.moto.sdk_config())
    }
    fn logs(&self) -> aws_sdk_cloudwatchlogs::Client {
        aws_sdk_cloudwatchlogs::Client::new(&self.moto.sdk_config())
    }
    fn ec2(&self) -> aws_sdk_ec2::Client {
        aws_sdk_ec2::Client::new(&self.moto.sdk_config())
    }
    fn iam(&self) -> aws_sdk_iam::Client {
        aws_sdk_iam::Client::new(&self.moto.sdk_config())
    }

    async fn bucket_tags(&self, name: &str) -> Tags {
        match self.s3().get_bucket_tagging().bucket(name).send().await {
            Ok(out) => out
                .tag_set()
                .iter()
                .map(|t| (t.key().to_owned(), t.value().to_owned()))
                .collect(),
            Err(_) => Tags::new(),
        }
    }
}

/// Decodes IAM's URL-encoded documents (test-side copy, so the adapter's decoder is checked
/// independently).
fn iam_json(text: &str) -> serde_json::Value {
    let mut out = Vec::new();
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            out.push(u8::from_str_radix(&text[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    serde_json::from_slice(&out).unwrap()
}

fn assert_exists_error(err: &Error, what: &str) {
    assert!(err.is_already_exists(), "{what}: {err}");
    assert!(err.to_string().contains("choose another"), "{what}: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_provisioner_passes_the_provisioner_conformance_suite() {
    let fx = Fx::start().await;
    starburst_cloud::conformance::provisioner(Arc::new(fx.p.clone()), "conf").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_account_comes_from_sts_and_the_configuration() {
    let fx = Fx::start().await;
    let account = fx.p.account().await.unwrap();
    assert_eq!(account.id, "123456789012");
    assert_eq!(account.region, support::REGION);
    assert_eq!(account.partition, "aws");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bucket_is_private_encrypted_and_expires_session_data() {
    let fx = Fx::start().await;
    let s3 = fx.s3();
    let spec = bucket("sb-s1-data");
    let made = fx.p.ensure_bucket(&spec, &tags("s1")).await.unwrap();
    assert_eq!(made.change, Change::Created);
    assert_eq!(
        made.resource,
        Resource {
            kind: ResourceKind::Bucket,
            name: "sb-s1-data".into(),
            id: "sb-s1-data".into()
        }
    );

    let pab = s3
        .get_public_access_block()
        .bucket("sb-s1-data")
        .send()
        .await
        .unwrap();
    let pab = pab.public_access_block_configuration().unwrap();
    assert_eq!(
        (
            pab.block_public_acls(),
            pab.ignore_public_acls(),
            pab.block_public_policy(),
            pab.restrict_public_buckets()
        ),
        (Some(true), Some(true), Some(true), Some(true))
    );
    let enc = s3
        .get_bucket_encryption()
        .bucket("sb-s1-data")
        .send()
        .await
        .unwrap();
    let rule = &enc.server_side_encryption_configuration().unwrap().rules()[0];
    assert_eq!(
        rule.apply_server_side_encryption_by_default()
            .unwrap()
            .sse_algorithm()
            .as_str(),
        "AES256"
    );
    assert_eq!(rule.bucket_key_enabled(), Some(true));
    let lc = s3
        .get_bucket_lifecycle_configuration()
        .bucket("sb-s1-data")
        .send()
        .await
        .unwrap();
    let expire = lc
        .rules()
        .iter()
        .find(|r| r.expiration().is_some())
        .expect("an expiry rule");
    assert_eq!(expire.filter().and_then(|f| f.prefix()), Some("starburst/"));
    assert_eq!(expire.expiration().unwrap().days(), Some(7));
    let abort = lc
        .rules()
        .iter()
        .find(|r| r.abort_incomplete_multipart_upload().is_some())
        .expect("an abort rule");
    assert_eq!(
        abort
            .abort_incomplete_multipart_upload()
            .unwrap()
            .days_after_initiation(),
        Some(1)
    );
    assert_eq!(fx.bucket_tags("sb-s1-data").await, tags("s1"));

    // Again: nothing to do.
    let again = fx.p.ensure_bucket(&spec, &tags("s1")).await.unwrap();
    assert_eq!(again.change, Change::Unchanged);
    assert_eq!(again.resource, made.resource);

    // Drift out of band: public access unblocked, encryption and lifecycle removed.
    s3.delete_public_access_block()
        .bucket("sb-s1-data")
        .send()
        .await
        .unwrap();
    s3.delete_bucket_encryption()
        .bucket("sb-s1-data")
        .send()
        .await
        .unwrap();
    s3.delete_bucket_lifecycle()
        .bucket("sb-s1-data")
        .send()
        .await
        .unwrap();
    assert_eq!(
        fx.p.ensure_bucket(&spec, &tags("s1")).await.unwrap().change,
        Change::Updated
    );
    assert!(
        s3.get_public_access_block()
            .bucket("sb-s1-data")
            .send()
            .await
            .is_ok()
    );
    assert!(
        s3.get_bucket_lifecycle_configuration()
            .bucket("sb-s1-data")
            .send()
            .await
            .is_ok()
    );
    assert_eq!(
        fx.p.ensure_bucket(&spec, &tags("s1")).await.unwrap().change,
        Change::Unchanged
    );
    // A different expiry is a change too.
    let shorter = BucketSpec {
        expire_days: 2,
        ..spec.clone()
    };
    assert_eq!(
        fx.p.ensure_bucket(&shorter, &tags("s1"))
            .await
            .unwrap()
            .change,
        Change::Updated
    );
    let lc = s3
        .get_bucket_lifecycle_configuration()
        .bucket("sb-s1-data")
        .send()
        .await
        .unwrap();
    let days: Vec<_> = lc
        .rules()
        .iter()
        .filter_map(|r| r.expiration().and_then(|e| e.days()))
        .collect();
    assert_eq!(days, [2]);

    let err = fx.p.ensure_bucket(&bucket("sb-s1-x"), &Tags::new()).await;
    assert!(
        matches!(err, Err(Error::InvalidInput { .. })),
        "tags without a set-up id: {err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buckets_of_others_are_refused_and_untouched_but_an_untagged_leftover_is_adopted() {
    let fx = Fx::start().await;
    let s3 = fx.s3();

    // Another account's bucket (moto: credentials from AssumeRole into another account act
    // in that account).
    let sts = aws_sdk_sts::Client::new(&fx.moto.sdk_config());
    let creds = sts
        .assume_role()
        .role_arn("arn:aws:iam::111111111111:role/other")
        .role_session_name("other")
        .send()
        .await
        .unwrap();
    let creds = creds.credentials().unwrap();
    let other = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&fx.moto.sdk_config())
            .credentials_provider(aws_sdk_s3::config::Credentials::new(
                creds.access_key_id(),
                creds.secret_access_key(),
                Some(creds.session_token().to_owned()),
                None,
                "other",
            ))
            .force_path_style(true)
            .build(),
    );
    other
        .create_bucket()
        .bucket("sb-theirs")
        .send()
        .await
        .unwrap();
    let err =
        fx.p.ensure_bucket(&bucket("sb-theirs"), &tags("s1"))
            .await
            .unwrap_err();
    assert_exists_error(&err, "another account's bucket");
    assert!(err.to_string().contains("another AWS account"), "{err}");
    assert!(
        other
            .get_bucket_lifecycle_configuration()
            .bucket("sb-theirs")
            .send()
            .await
            .is_err(),
        "their bucket was not configured"
    );

    // Ours, but another set-up's.
    fx.p.ensure_bucket(&bucket("sb-s2-data"), &tags("s2"))
        .await
        .unwrap();
    let err =
        fx.p.ensure_bucket(&bucket("sb-s2-data"), &tags("s1"))
            .await
            .unwrap_err();
    assert_exists_error(&err, "another set-up's bucket");
    assert!(err.to_string().contains("s2"), "{err}");
    assert_eq!(fx.bucket_tags("sb-s2-data").await, tags("s2"));

    // Ours, tagged by someone else (no set-up tag).
    s3.create_bucket().bucket("sb-user").send().await.unwrap();
    let user_tags = aws_sdk_s3::types::Tagging::builder()
        .tag_set(
            aws_sdk_s3::types::Tag::builder()
                .key("team")
                .value("x")
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    s3.put_bucket_tagging()
        .bucket("sb-user")
        .tagging(user_tags)
        .send()
        .await
        .unwrap();
    let err =
        fx.p.ensure_bucket(&bucket("sb-user"), &tags("s1"))
            .await
            .unwrap_err();
    assert_exists_error(&err, "a user's tagged bucket");
    assert!(
        s3.get_bucket_lifecycle_configuration()
            .bucket("sb-user")
            .send()
            .await
            .is_err(),
        "the user's bucket was not configured"
    );

    // Ours with no tag at all: the leftover of an interrupted create, adopted.
    s3.create_bucket()
        .bucket("sb-s1-data")
        .send()
        .await
        .unwrap();
    let adopted =
        fx.p.ensure_bucket(&bucket("sb-s1-data"), &tags("s1"))
            .await
            .unwrap();
    assert_eq!(adopted.change, Change::Updated);
    assert_eq!(fx.bucket_tags("sb-s1-data").await, tags("s1"));
    assert!(
        s3.get_bucket_lifecycle_configuration()
            .bucket("sb-s1-data")
            .send()
            .await
            .is_ok()
    );
    assert_eq!(
        fx.p.ensure_bucket(&bucket("sb-s1-data"), &tags("s1"))
            .await
            .unwrap()
            .change,
        Change::Unchanged
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repository_scans_on_push_and_keeps_the_newest_images() {
    let fx = Fx::start().await;
    let ecr = fx.ecr();
    let spec = RepositorySpec {
        name: "sb/s1".into(),
        keep_images: 5,
    };
    let made = fx.p.ensure_repository(&spec, &tags("s1")).await.unwrap();
    assert_eq!(made.change, Change::Created);
    assert!(made.resource.id.starts_with("arn:aws:ecr:"), "{made:?}");
    let repo = ecr
        .describe_repositories()
        .repository_names("sb/s1")
        .send()
        .await
        .unwrap();
    let repo = &repo.repositories()[0];
    assert!(repo.image_scanning_configuration().unwrap().scan_on_push());
    let policy = ecr
        .get_lifecycle_policy()
        .repository_name("sb/s1")
        .send()
        .await
        .unwrap();
    let policy: serde_json::Value =
        serde_json::from_str(policy.lifecycle_policy_text().unwrap()).unwrap();
    let selection = &policy["rules"][0]["selection"];
    assert_eq!(selection["countType"], "imageCountMoreThan");
    assert_eq!(selection["countNumber"], 5);
    assert_eq!(selection["tagStatus"], "any");
    assert_eq!(policy["rules"][0]["action"]["type"], "expire");

    assert_eq!(
        fx.p.ensure_repository(&spec, &tags("s1")).await.unwrap(),
        starburst_cloud::Ensured {
            resource: made.resource.clone(),
            change: Change::Unchanged
        }
    );
    ecr.put_image_scanning_configuration()
        .repository_name("sb/s1")
        .image_scanning_configuration(
            aws_sdk_ecr::types::ImageScanningConfiguration::builder()
                .scan_on_push(false)
                .build(),
        )
        .send()
        .await
        .unwrap();
    ecr.delete_lifecycle_policy()
        .repository_name("sb/s1")
        .send()
        .await
        .unwrap();
    assert_eq!(
        fx.p.ensure_repository(&spec, &tags("s1"))
            .await
            .unwrap()
            .change,
        Change::Updated
    );
    let repo = ecr
        .describe_repositories()
        .repository_names("sb/s1")
        .send()
        .await
        .unwrap();
    assert!(
        repo.repositories()[0]
            .image_scanning_configuration()
            .unwrap()
            .scan_on_push()
    );
    assert!(
        ecr.get_lifecycle_policy()
            .repository_name("sb/s1")
            .send()
            .await
            .is_ok()
    );

    // Someone else's repository of that name.
    ecr.create_repository()
        .repository_name("theirs")
        .send()
        .await
        .unwrap();
    let err =
        fx.p.ensure_repository(
            &RepositorySpec {
                name: "theirs".into(),
                keep_images: 5,
            },
            &tags("s1"),
        )
        .await
        .unwrap_err();
    assert_exists_error(&err, "an untagged repository");
    assert!(
        ecr.get_lifecycle_policy()
            .repository_name("theirs")
            .send()
            .await
            .is_err(),
        "untouched"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_has_both_fargate_capacity_providers() {
    let fx = Fx::start().await;
    let ecs = fx.ecs();
    let made = fx.p.ensure_cluster("sb-s1", &tags("s1")).await.unwrap();
    assert_eq!(made.change, Change::Created);
    let describe = || async {
        ecs.describe_clusters()
            .clusters("sb-s1")
            .include(aws_sdk_ecs::types::ClusterField::Tags)
            .send()
            .await
            .unwrap()
            .clusters()[0]
            .clone()
    };
    let cluster = describe().await;
    assert_eq!(cluster.capacity_providers(), ["FARGATE", "FARGATE_SPOT"]);
    let strategy = cluster.default_capacity_provider_strategy();
    assert_eq!(strategy.len(), 1);
    assert_eq!(
        (strategy[0].capacity_provider(), strategy[0].weight()),
        ("FARGATE", 1)
    );
    assert_eq!(cluster.cluster_arn(), Some(made.resource.id.as_str()));
    assert_eq!(
        fx.p.ensure_cluster("sb-s1", &tags("s1"))
            .await
            .unwrap()
            .change,
        Change::Unchanged
    );

    ecs.put_cluster_capacity_providers()
        .cluster("sb-s1")
        .capacity_providers("FARGATE")
        .default_capacity_provider_strategy(
            aws_sdk_ecs::types::CapacityProviderStrategyItem::builder()
                .capacity_provider("FARGATE")
                .weight(1)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        fx.p.ensure_cluster("sb-s1", &tags("s1"))
            .await
            .unwrap()
            .change,
        Change::Updated
    );
    assert_eq!(
        describe().await.capacity_providers(),
        ["FARGATE", "FARGATE_SPOT"]
    );

    let err = fx.p.ensure_cluster("sb-s1", &tags("s2")).await.unwrap_err();
    assert_exists_error(&err, "another set-up's cluster");

    // A deleted (INACTIVE) cluster counts as absent.
    fx.p.delete(&made.resource).await.unwrap();
    assert_eq!(
        fx.p.ensure_cluster("sb-s1", &tags("s1"))
            .await
            .unwrap()
            .change,
        Change::Created
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_group_keeps_its_retention() {
    let fx = Fx::start().await;
    let logs = fx.logs();
    let spec = LogGroupSpec {
        name: "/starburst/s1".into(),
        retention_days: 14,
    };
    let made = fx.p.ensure_log_group(&spec, &tags("s1")).await.unwrap();
    assert_eq!(made.change, Change::Created);
    assert!(!made.resource.id.ends_with(":*"), "{made:?}");
    let retention = || async {
        logs.describe_log_groups()
            .log_group_name_prefix("/starburst/s1")
            .send()
            .await
            .unwrap()
            .log_groups()[0]
            .retention_in_days()
    };
    assert_eq!(retention().await, Some(14));
    assert_eq!(
        fx.p.ensure_log_group(&spec, &tags("s1"))
            .await
            .unwrap()
            .change,
        Change::Unchanged
    );
    logs.delete_retention_policy()
        .log_group_name("/starburst/s1")
        .send()
        .await
        .unwrap();
    assert_eq!(
        fx.p.ensure_log_group(&spec, &tags("s1"))
            .await
            .unwrap()
            .change,
        Change::Updated
    );
    assert_eq!(retention().await, Some(14));

    logs.create_log_group()
        .log_group_name("/theirs")
        .send()
        .await
        .unwrap();
    let err =
        fx.p.ensure_log_group(
            &LogGroupSpec {
                name: "/theirs".into(),
                retention_days: 1,
            },
            &tags("s1"),
        )
        .await
        .unwrap_err();
    assert_exists_error(&err, "an untagged log group");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_security_group_is_egress_only_and_tagged() {
    let fx = Fx::start().await;
    let ec2 = fx.ec2();
    let request = NetworkRequest {
        security_group_name: "sb-s1-workers".into(),
        ..Default::default()
    };
    let made = fx.p.ensure_network(&request, &tags("s1")).await.unwrap();
    assert_eq!(made.group.change, Change::Created);
    assert!(!made.config.subnets.is_empty());
    let id = made.group.resource.id.clone();
    assert_eq!(made.config.security_groups, vec![id.clone()]);
    let group = || async {
        ec2.describe_security_groups()
            .group_ids(&id)
            .send()
            .await
            .unwrap()
            .security_groups()[0]
            .clone()
    };
    let g = group().await;
    assert!(g.ip_permissions().is_empty(), "no inbound rule");
    assert!(!g.ip_permissions_egress().is_empty(), "outbound allowed");
    let tagged: Tags = g
        .tags()
        .iter()
        .map(|t| (t.key().unwrap().to_owned(), t.value().unwrap().to_owned()))
        .collect();
    assert_eq!(tagged, tags("s1"));

    let again = fx.p.ensure_network(&request, &tags("s1")).await.unwrap();
    assert_eq!(again.group.change, Change::Unchanged);
    assert_eq!(again.config, made.config);

    // An inbound rule added out of band is revoked.
    ec2.authorize_security_group_ingress()
        .group_id(&id)
        .ip_permissions(
            aws_sdk_ec2::types::IpPermission::builder()
                .ip_protocol("tcp")
                .from_port(22)
                .to_port(22)
                .ip_ranges(
                    aws_sdk_ec2::types::IpRange::builder()
                        .cidr_ip("0.0.0.0/0")
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        fx.p.ensure_network(&request, &tags("s1"))
            .await
            .unwrap()
            .group
            .change,
        Change::Updated
    );
    assert!(group().await.ip_permissions().is_empty());

    // A group of that name this set-up did not make.
    let err =
        fx.p.ensure_network(&request, &tags("s2"))
            .await
            .unwrap_err();
    assert_exists_error(&err, "another set-up's group");
    let vpc = made.config.vpc.clone();
    ec2.create_security_group()
        .group_name("theirs")
        .description("not starburst's")
        .vpc_id(&vpc)
        .send()
        .await
        .unwrap();
    let err =
        fx.p.ensure_network(
            &NetworkRequest {
                security_group_name: "theirs".into(),
                ..Default::default()
            },
            &tags("s1"),
        )
        .await
        .unwrap_err();
    assert_exists_error(&err, "an untagged group");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_trusts_its_service_and_has_its_inline_policy() {
    let fx = Fx::start().await;
    let iam = fx.iam();
    let spec = role("sb-s1-task");
    let made = fx.p.ensure_role(&spec, &tags("s1")).await.unwrap();
    assert_eq!(made.change, Change::Created);
    assert!(made.resource.id.starts_with("arn:aws:iam::"), "{made:?}");
    let trust = || async {
        iam_json(
            iam.get_role()
                .role_name("sb-s1-task")
                .send()
                .await
                .unwrap()
                .role()
                .unwrap()
                .assume_role_policy_document()
                .unwrap(),
        )
    };
    let t = trust().await;
    assert_eq!(
        t["Statement"][0]["Principal"]["Service"],
        "ecs-tasks.amazonaws.com"
    );
    assert_eq!(t["Statement"][0]["Action"], "sts:AssumeRole");
    let inline = || async {
        iam_json(
            iam.get_role_policy()
                .role_name("sb-s1-task")
                .policy_name("starburst")
                .send()
                .await
                .unwrap()
                .policy_document(),
        )
    };
    assert_eq!(
        inline().await,
        serde_json::from_str::<serde_json::Value>(POLICY).unwrap()
    );
    assert_eq!(
        fx.p.ensure_role(&spec, &tags("s1")).await.unwrap().change,
        Change::Unchanged
    );

    // Trust and inline policy changed out of band.
    iam.update_assume_role_policy()
        .role_name("sb-s1-task")
        .policy_document(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#,
        )
        .send()
        .await
        .unwrap();
    iam.put_role_policy()
        .role_name("sb-s1-task")
        .policy_name("starburst")
        .policy_document(POLICY.replace("GetObject", "*"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        fx.p.ensure_role(&spec, &tags("s1")).await.unwrap().change,
        Change::Updated
    );
    assert_eq!(
        trust().await["Statement"][0]["Principal"]["Service"],
        "ecs-tasks.amazonaws.com"
    );
    assert_eq!(
        inline().await,
        serde_json::from_str::<serde_json::Value>(POLICY).unwrap()
    );
    assert_eq!(
        fx.p.ensure_role(&spec, &tags("s1")).await.unwrap().change,
        Change::Unchanged
    );

    // Someone else's role of that name.
    iam.create_role()
        .role_name("theirs")
        .assume_role_policy_document(POLICY)
        .send()
        .await
        .unwrap();
    let err =
        fx.p.ensure_role(&role("theirs"), &tags("s1"))
            .await
            .unwrap_err();
    assert_exists_error(&err, "an untagged role");
    assert!(
        iam.get_role_policy()
            .role_name("theirs")
            .policy_name("starburst")
            .send()
            .await
            .is_err(),
        "untouched"
    );
    let err =
        fx.p.ensure_role(
            &RoleSpec {
                policy: "{not json".into(),
                ..role("sb-s1-other")
            },
            &tags("s1"),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidInput { .. }), "{err}");
}

/// One resource of every kind for set-up `s1`, as `ensure_*` returned them.
async fn ensure_every_kind(fx: &Fx) -> Vec<Resource> {
    vec![
        fx.p.ensure_bucket(&bucket("sb-s1-data"), &tags("s1"))
            .await
            .unwrap()
            .resource,
        fx.p.ensure_repository(
            &RepositorySpec {
                name: "sb-s1".into(),
                keep_images: 3,
            },
            &tags("s1"),
        )
        .await
        .unwrap()
        .resource,
        fx.p.ensure_cluster("sb-s1", &tags("s1"))
            .await
            .unwrap()
            .resource,
        fx.p.ensure_log_group(
            &LogGroupSpec {
                name: "/sb/s1".into(),
                retention_days: 7,
            },
            &tags("s1"),
        )
        .await
        .unwrap()
        .resource,
        fx.p.ensure_network(
            &NetworkRequest {
                security_group_name: "sb-s1".into(),
                ..Default::default()
            },
            &tags("s1"),
        )
        .await
        .unwrap()
        .group
        .resource,
        fx.p.ensure_role(&role("s1-task"), &tags("s1"))
            .await
            .unwrap()
            .resource,
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn find_tagged_returns_exactly_the_setups_resources() {
    let fx = Fx::start().await;
    let mut ours = ensure_every_kind(&fx).await;
    // Another set-up's and untagged resources of every kind.
    fx.p.ensure_bucket(&bucket("sb-s2-data"), &tags("s2"))
        .await
        .unwrap();
    fx.p.ensure_cluster("sb-s2", &tags("s2")).await.unwrap();
    fx.p.ensure_role(&role("s2-task"), &tags("s2"))
        .await
        .unwrap();
    fx.s3()
        .create_bucket()
        .bucket("plain")
        .send()
        .await
        .unwrap();
    fx.ecr()
        .create_repository()
        .repository_name("plain")
        .send()
        .await
        .unwrap();
    fx.ecs()
        .create_cluster()
        .cluster_name("plain")
        .send()
        .await
        .unwrap();
    fx.logs()
        .create_log_group()
        .log_group_name("/plain")
        .send()
        .await
        .unwrap();
    fx.iam()
        .create_role()
        .role_name("plain")
        .assume_role_policy_document(POLICY)
        .send()
        .await
        .unwrap();

    let mut found = fx.p.find_tagged(SETUP_TAG, "s1").await.unwrap();
    found.sort();
    ours.sort();
    assert_eq!(found, ours, "exactly what ensure_* returned");
    let theirs = fx.p.find_tagged(SETUP_TAG, "s2").await.unwrap();
    let names: Vec<&str> = theirs.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["sb-s2-data", "sb-s2", "s2-task"]);
    assert!(fx.p.find_tagged(SETUP_TAG, "s3").await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_empties_a_versioned_bucket_and_unwinds_a_role() {
    let fx = Fx::start().await;
    let s3 = fx.s3();
    let b =
        fx.p.ensure_bucket(&bucket("sb-s1-data"), &tags("s1"))
            .await
            .unwrap()
            .resource;
    s3.put_bucket_versioning()
        .bucket("sb-s1-data")
        .versioning_configuration(
            aws_sdk_s3::types::VersioningConfiguration::builder()
                .status(aws_sdk_s3::types::BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .unwrap();
    for i in 0..5 {
        for round in 0..2 {
            s3.put_object()
                .bucket("sb-s1-data")
                .key(format!("starburst/k{i}"))
                .body(ByteStream::from(format!("v{round}").into_bytes()))
                .send()
                .await
                .unwrap();
        }
    }
    // A delete marker and an incomplete upload.
    s3.delete_object()
        .bucket("sb-s1-data")
        .key("starburst/k0")
        .send()
        .await
        .unwrap();
    s3.create_multipart_upload()
        .bucket("sb-s1-data")
        .key("starburst/big")
        .send()
        .await
        .unwrap();
    fx.p.delete(&b).await.unwrap();
    assert!(
        s3.head_bucket().bucket("sb-s1-data").send().await.is_err(),
        "the bucket is gone"
    );
    fx.p.delete(&b).await.unwrap();

    // A role with an inline policy, an attached managed policy and an instance profile.
    let iam = fx.iam();
    let r =
        fx.p.ensure_role(&role("sb-s1-task"), &tags("s1"))
            .await
            .unwrap()
            .resource;
    let managed = iam
        .create_policy()
        .policy_name("managed")
        .policy_document(POLICY)
        .send()
        .await
        .unwrap();
    let managed_arn = managed.policy().unwrap().arn().unwrap().to_owned();
    iam.attach_role_policy()
        .role_name("sb-s1-task")
        .policy_arn(&managed_arn)
        .send()
        .await
        .unwrap();
    iam.create_instance_profile()
        .instance_profile_name("profile")
        .send()
        .await
        .unwrap();
    iam.add_role_to_instance_profile()
        .instance_profile_name("profile")
        .role_name("sb-s1-task")
        .send()
        .await
        .unwrap();
    fx.p.delete(&r).await.unwrap();
    assert!(
        iam.get_role().role_name("sb-s1-task").send().await.is_err(),
        "the role is gone"
    );
    fx.p.delete(&r).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_stops_a_clusters_tasks_and_everything_deletes_twice() {
    let fx = Fx::start().await;
    let ecs = fx.ecs();
    let c =
        fx.p.ensure_cluster("sb-s1", &tags("s1"))
            .await
            .unwrap()
            .resource;
    ecs.register_task_definition()
        .family("sb")
        .requires_compatibilities(aws_sdk_ecs::types::Compatibility::Fargate)
        .network_mode(aws_sdk_ecs::types::NetworkMode::Awsvpc)
        .cpu("256")
        .memory("512")
        .container_definitions(
            aws_sdk_ecs::types::ContainerDefinition::builder()
                .name("w")
                .image("busybox")
                .memory(512)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let subnets = fx.ec2().describe_subnets().send().await.unwrap();
    let subnet = subnets.subnets()[0].subnet_id().unwrap();
    // (moto fails awsvpc tasks without a security group; ECS would take the VPC's default.)
    let groups = fx.ec2().describe_security_groups().send().await.unwrap();
    let group = groups.security_groups()[0].group_id().unwrap();
    let ran = ecs
        .run_task()
        .cluster("sb-s1")
        .task_definition("sb")
        .launch_type(aws_sdk_ecs::types::LaunchType::Fargate)
        .network_configuration(
            aws_sdk_ecs::types::NetworkConfiguration::builder()
                .awsvpc_configuration(
                    aws_sdk_ecs::types::AwsVpcConfiguration::builder()
                        .subnets(subnet)
                        .security_groups(group)
                        .build()
                        .unwrap(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(ran.tasks().len(), 1, "{ran:?}");
    fx.p.delete(&c).await.unwrap();
    let tasks = ecs
        .describe_tasks()
        .cluster("sb-s1")
        .tasks(ran.tasks()[0].task_arn().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(
        tasks.tasks()[0].desired_status(),
        Some("STOPPED"),
        "the task was stopped"
    );
    let status = ecs
        .describe_clusters()
        .clusters("sb-s1")
        .send()
        .await
        .unwrap();
    assert_eq!(status.clusters()[0].status(), Some("INACTIVE"));
    fx.p.delete(&c).await.unwrap();

    // Everything else (and the cluster again): each kind deletes twice.
    let others = ensure_every_kind(&fx).await;
    for r in &others {
        fx.p.delete(r).await.unwrap();
        fx.p.delete(r)
            .await
            .unwrap_or_else(|e| panic!("second delete of {r:?}: {e}"));
    }
    assert!(fx.p.find_tagged(SETUP_TAG, "s1").await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_security_group_waits_for_task_interfaces_but_not_for_others() {
    let fx = Fx::start().await;
    let ec2 = fx.ec2();
    let subnets = ec2.describe_subnets().send().await.unwrap();
    let subnet = subnets.subnets()[0].subnet_id().unwrap().to_owned();
    let group = ec2
        .create_security_group()
        .group_name("sb-eni-workers")
        .description("starburst workers")
        .send()
        .await
        .unwrap()
        .group_id()
        .unwrap()
        .to_owned();
    let resource = Resource {
        kind: ResourceKind::SecurityGroup,
        name: "sb-eni-workers".into(),
        id: group.clone(),
    };
    let interface = |description: &'static str| {
        let (ec2, subnet, group) = (ec2.clone(), subnet.clone(), group.clone());
        async move {
            ec2.create_network_interface()
                .subnet_id(subnet)
                .groups(group)
                .description(description)
                .send()
                .await
                .unwrap()
                .network_interface()
                .unwrap()
                .network_interface_id()
                .unwrap()
                .to_owned()
        }
    };

    // Another interface uses the group: waiting would not help, so an error names it at once.
    let other = interface("my database").await;
    let err = fx.p.delete(&resource).await.unwrap_err();
    assert!(
        err.to_string().contains(&other) && err.to_string().contains("not a starburst worker's"),
        "{err}"
    );
    ec2.delete_network_interface()
        .network_interface_id(&other)
        .send()
        .await
        .unwrap();

    // A stopped task's interface is released a while later: delete waits for it.
    let task = interface("arn:aws:ecs:us-east-1:123456789012:attachment/0f1e2d3c-4b5a").await;
    let release = tokio::spawn({
        let ec2 = ec2.clone();
        async move {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            ec2.delete_network_interface()
                .network_interface_id(task)
                .send()
                .await
                .unwrap();
        }
    });
    fx.p.delete(&resource).await.unwrap();
    release.await.unwrap();
    let left = ec2
        .describe_security_groups()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("group-id")
                .values(&group)
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert!(left.security_groups().is_empty(), "the group is gone");
}

/// AWS is eventually consistent: right after CreateBucket a configuration call can answer
/// NoSuchBucket, and a new log group can be missing from DescribeLogGroups. Set-up waits for
/// them (here moto hides each for 1.5 s after its creation; without the waits both fail).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_buckets_and_log_groups_are_waited_for_until_aws_shows_them() {
    let moto = Moto::start_eventually_consistent(std::time::Duration::from_millis(1500)).await;
    let p = AwsProvisioner::new(&moto.aws().await);
    let made = p
        .ensure_bucket(&bucket("sb-young-data"), &tags("young"))
        .await
        .unwrap();
    assert_eq!(made.change, Change::Created);
    let s3 = aws_sdk_s3::Client::new(&moto.sdk_config());
    let tagging = s3
        .get_bucket_tagging()
        .bucket("sb-young-data")
        .send()
        .await
        .unwrap();
    assert!(
        tagging
            .tag_set()
            .iter()
            .any(|t| t.key() == SETUP_TAG && t.value() == "young"),
        "tagged once visible"
    );
    let group = p
        .ensure_log_group(
            &LogGroupSpec {
                name: "/sb-young/workers".into(),
                retention_days: 7,
            },
            &tags("young"),
        )
        .await
        .unwrap();
    assert_eq!(group.change, Change::Created);
    assert!(group.resource.id.contains("/sb-young/workers"), "{group:?}");
}

/// Teardown leaves no task definition behind: deleting a role first deregisters and deletes the
/// worker task definitions that name it, and only those.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_role_deletes_the_worker_task_definitions_that_name_it() {
    let fx = Fx::start().await;
    let ours =
        fx.p.ensure_role(&role("sb-td-execution"), &tags("td"))
            .await
            .unwrap();
    let theirs =
        fx.p.ensure_role(&role("other-execution"), &tags("other"))
            .await
            .unwrap();
    let ecs = fx.ecs();
    let register = |family: &'static str, role: String| {
        let ecs = ecs.clone();
        async move {
            ecs.register_task_definition()
                .family(family)
                .requires_compatibilities(aws_sdk_ecs::types::Compatibility::Fargate)
                .network_mode(aws_sdk_ecs::types::NetworkMode::Awsvpc)
                .cpu("256")
                .memory("512")
                .execution_role_arn(role)
                .container_definitions(
                    aws_sdk_ecs::types::ContainerDefinition::builder()
                        .name("worker")
                        .image("123456789012.dkr.ecr.us-east-1.amazonaws.com/sb:1")
                        .build(),
                )
                .send()
                .await
                .unwrap()
                .task_definition()
                .unwrap()
                .task_definition_arn()
                .unwrap()
                .to_owned()
        }
    };
    let mine = [
        register("starburst-worker-00aa", ours.resource.id.clone()).await,
        register("starburst-worker-00aa", ours.resource.id.clone()).await,
        register("starburst-worker-00bb", ours.resource.id.clone()).await,
    ];
    let other = register("starburst-worker-00cc", theirs.resource.id.clone()).await;
    fx.p.delete(&ours.resource).await.unwrap();
    let status = |arn: String| {
        let ecs = ecs.clone();
        async move {
            match ecs
                .describe_task_definition()
                .task_definition(&arn)
                .send()
                .await
            {
                Ok(out) => out
                    .task_definition()
                    .and_then(|td| td.status())
                    .map(|s| s.as_str().to_owned()),
                Err(_) => None,
            }
        }
    };
    for arn in mine {
        let left = status(arn.clone()).await;
        assert!(
            left.as_deref().is_none_or(|s| s == "DELETE_IN_PROGRESS"),
            "{arn}: {left:?}"
        );
    }
    assert_eq!(status(other).await.as_deref(), Some("ACTIVE"));
}

/// Finding a set-up's resources does not read the tags of everything in the account: one
/// bucket whose policy denies the caller would abort it, and thousands of log groups or roles
/// mean thousands of calls, then throttling. Buckets and log groups come from the region's tag
/// index; only roles named after the set-up have their tags read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn find_tagged_reads_no_tags_of_other_buckets_log_groups_or_roles() {
    let fx = Fx::start().await;
    let ours = ensure_every_kind(&fx).await;
    for i in 0..5 {
        fx.s3()
            .create_bucket()
            .bucket(format!("someone-elses-{i}"))
            .send()
            .await
            .unwrap();
        fx.logs()
            .create_log_group()
            .log_group_name(format!("/someone/else/{i}"))
            .send()
            .await
            .unwrap();
        fx.iam()
            .create_role()
            .role_name(format!("someone-else-{i}"))
            .assume_role_policy_document(POLICY)
            .send()
            .await
            .unwrap();
    }
    fx.moto.stats(true).await;
    let found = fx.p.find_tagged(SETUP_TAG, "s1").await.unwrap();
    assert_eq!(found.len(), ours.len(), "{found:?}");
    let stats = fx.moto.stats(false).await;
    let count = |service: &str, op: &str| stats["requests"][service][op].as_u64().unwrap_or(0);
    assert_eq!(count("s3", "GET bucket ?tagging"), 0, "{stats}");
    assert_eq!(
        count("logs", "ListTagsForResource") + count("logs", "ListTagsLogGroup"),
        0,
        "{stats}"
    );
    assert_eq!(
        count("iam", "ListRoleTags"),
        1,
        "only the set-up's role: {stats}"
    );
}
