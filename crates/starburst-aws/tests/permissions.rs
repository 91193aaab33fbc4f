//! `IamPermissions` against strict moto and the emulator's `iam:SimulatePrincipalPolicy`: IAM users
//! (and an assumed role) whose policies grant part of, or all of, the permissions set-up and
//! sessions need (`starburst_provision::permissions`, a dev-dependency: the generator's own list
//! and policy are what is checked), and moto's default "testing" keys, whose identity IAM cannot
//! simulate.
//!
//! moto enforces no IAM policy, so the probes of the fallback succeed unless a fault is injected.

#![cfg(feature = "provision")]

mod support;

use std::collections::BTreeSet;

use starburst_aws::{Aws, AwsOptions, IamPermissions};
use starburst_cloud::{Account, Permission, PermissionReport, Permissions, Verdict};
use starburst_provision::permissions::{caller_permissions, policy_document};
use starburst_provision::setup::{SetupOptions, SetupPlan};
use support::{Moto, REGION};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// moto's account.
const ACCOUNT: &str = "123456789012";

fn needed() -> Vec<Permission> {
    let plan = SetupPlan::named(
        Account {
            id: ACCOUNT.into(),
            region: REGION.into(),
            partition: "aws".into(),
        },
        &SetupOptions::default(),
    );
    caller_permissions(&plan)
}

fn iam(moto: &Moto) -> aws_sdk_iam::Client {
    aws_sdk_iam::Client::new(&moto.sdk_config())
}

/// Creates IAM user `name` with `policy` attached as a managed policy (a user's inline policies
/// hold at most 2,048 characters; the whole policy needs about 5,700) and `inline`, if given,
/// as an inline policy; returns its access key.
async fn user(moto: &Moto, name: &str, policy: &str, inline: Option<&str>) -> (String, String) {
    let iam = iam(moto);
    iam.create_user().user_name(name).send().await.unwrap();
    let arn = iam
        .create_policy()
        .policy_name(format!("{name}-starburst"))
        .policy_document(policy)
        .send()
        .await
        .unwrap()
        .policy()
        .and_then(|p| p.arn())
        .unwrap()
        .to_owned();
    iam.attach_user_policy()
        .user_name(name)
        .policy_arn(arn)
        .send()
        .await
        .unwrap();
    if let Some(doc) = inline {
        iam.put_user_policy()
            .user_name(name)
            .policy_name("guard")
            .policy_document(doc)
            .send()
            .await
            .unwrap();
    }
    let key = iam
        .create_access_key()
        .user_name(name)
        .send()
        .await
        .unwrap();
    let key = key.access_key().unwrap();
    (
        key.access_key_id().to_owned(),
        key.secret_access_key().to_owned(),
    )
}

async fn check_as(moto: &Moto, key: &(String, String)) -> PermissionReport {
    let aws = Aws::connect(AwsOptions::emulator(&moto.endpoint, REGION, &key.0, &key.1)).await;
    IamPermissions::new(&aws).check(&needed()).await.unwrap()
}

fn not_allowed(report: &PermissionReport) -> BTreeSet<(String, String, Verdict)> {
    report
        .checks
        .iter()
        .filter(|c| !c.verdict.is_allowed())
        .map(|c| {
            (
                c.permission.action.clone(),
                c.permission.resource.clone(),
                c.verdict,
            )
        })
        .collect()
}

/// Adds a fault rule to the emulator middleware (`/_starburst/faults`).
async fn fault(moto: &Moto, rule: &str) {
    let addr = moto.endpoint.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "POST /_starburst/faults HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{rule}",
        rule.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).await.unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.0 200"),
        "{answer}"
    );
}

#[tokio::test]
async fn a_user_with_part_of_the_policy_is_told_exactly_what_is_missing() {
    let moto = Moto::start().await;
    let all = needed();
    let ecs = format!("arn:aws:ecs:{REGION}:{ACCOUNT}");
    let task_role = format!("arn:aws:iam::{ACCOUNT}:role/starburst-{REGION}-task");
    let group = format!("arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/starburst/workers");
    let left_out = |p: &Permission| {
        p.action == "ecs:CreateCluster"
            || (p.action == "iam:PassRole" && p.resource == task_role)
            || (p.action == "logs:TagResource" && p.resource == group)
    };
    let granted: Vec<Permission> = all.iter().filter(|p| !left_out(p)).cloned().collect();
    // An explicit Deny beats the Allow of the managed policy.
    let guard = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":"ecr:PutImage","Resource":"*"}]}"#;
    let key = user(&moto, "alice", &policy_document(&granted), Some(guard)).await;

    let report = check_as(&moto, &key).await;
    assert!(report.simulated, "{:?}", report.note);
    assert_eq!(report.caller, format!("arn:aws:iam::{ACCOUNT}:user/alice"));
    assert_eq!(report.principal.as_deref(), Some(report.caller.as_str()));
    let expected: BTreeSet<_> = [
        (
            "ecs:CreateCluster".to_string(),
            format!("{ecs}:cluster/starburst"),
            Verdict::ImplicitDeny,
        ),
        (
            "iam:PassRole".into(),
            task_role.clone(),
            Verdict::ImplicitDeny,
        ),
        (
            "logs:TagResource".into(),
            group.clone(),
            Verdict::ImplicitDeny,
        ),
        (
            "ecr:PutImage".into(),
            format!("arn:aws:ecr:{REGION}:{ACCOUNT}:repository/starburst"),
            Verdict::ExplicitDeny,
        ),
    ]
    .into();
    assert_eq!(not_allowed(&report), expected);
    assert_eq!(report.allowed_count(), all.len() - 4);
    let deny = report
        .checks
        .iter()
        .find(|c| c.verdict == Verdict::ExplicitDeny)
        .unwrap();
    assert_eq!(deny.detail.as_deref(), Some("denied by guard"));

    // The policy of what is missing, granted too, leaves nothing missing but the Deny.
    let missing = policy_document(&report.not_allowed());
    let key = user(&moto, "bob", &policy_document(&granted), None).await;
    let iam = iam(&moto);
    iam.put_user_policy()
        .user_name("bob")
        .policy_name("missing")
        .policy_document(missing)
        .send()
        .await
        .unwrap();
    let report = check_as(&moto, &key).await;
    assert!(
        not_allowed(&report).is_empty(),
        "{:?}",
        not_allowed(&report)
    );
}

#[tokio::test]
async fn the_generated_policy_grants_everything_to_a_user_and_to_an_assumed_role() {
    let moto = Moto::start().await;
    let all = needed();
    let policy = policy_document(&all);
    let key = user(&moto, "carol", &policy, None).await;
    let report = check_as(&moto, &key).await;
    assert!(report.simulated);
    assert!(
        not_allowed(&report).is_empty(),
        "{:?}",
        not_allowed(&report)
    );
    assert_eq!(report.allowed_count(), all.len());
    assert!(report.checks.iter().all(|c| c.verdict == Verdict::Allowed));

    // A role with the policy, assumed: its session is simulated as the role.
    let iam = iam(&moto);
    let trust = format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Principal":{{"AWS":"arn:aws:iam::{ACCOUNT}:root"}},"Action":"sts:AssumeRole"}}]}}"#
    );
    let role = iam
        .create_role()
        .role_name("operator")
        .path("/team/")
        .assume_role_policy_document(trust)
        .send()
        .await
        .unwrap()
        .role()
        .unwrap()
        .arn()
        .to_owned();
    iam.put_role_policy()
        .role_name("operator")
        .policy_name("starburst")
        .policy_document(&policy)
        .send()
        .await
        .unwrap();
    let sts = aws_sdk_sts::Client::new(&moto.sdk_config());
    let creds = sts
        .assume_role()
        .role_arn(&role)
        .role_session_name("dave")
        .send()
        .await
        .unwrap();
    let creds = creds.credentials().unwrap();
    let key = (
        creds.access_key_id().to_owned(),
        creds.secret_access_key().to_owned(),
    );
    let report = check_as(&moto, &key).await;
    assert_eq!(
        report.caller,
        format!("arn:aws:sts::{ACCOUNT}:assumed-role/operator/dave")
    );
    assert_eq!(
        report.principal.as_deref(),
        Some(format!("arn:aws:iam::{ACCOUNT}:role/team/operator").as_str()),
        "the role's path comes from GetRole"
    );
    assert!(report.simulated);
    assert!(
        not_allowed(&report).is_empty(),
        "{:?}",
        not_allowed(&report)
    );
}

#[tokio::test]
async fn keys_iam_cannot_simulate_are_said_so_and_probed_with_reads_only() {
    let moto = Moto::start().await;
    let all = needed();
    let report = IamPermissions::new(&moto.aws().await)
        .check(&all)
        .await
        .unwrap();
    assert!(!report.simulated);
    assert_eq!(report.principal, None);
    assert_eq!(report.caller, format!("arn:aws:sts::{ACCOUNT}:user/moto"));
    let note = report.note.as_deref().unwrap();
    assert!(note.contains("cannot simulate"), "{note}");
    assert_eq!(report.denied().count(), 0);
    // What the probes show: reads only; every write stays unknown.
    let probed: BTreeSet<&str> = report
        .checks
        .iter()
        .filter(|c| c.verdict == Verdict::ProbedAllowed)
        .map(|c| c.permission.action.as_str())
        .collect();
    for action in [
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
    ] {
        assert!(probed.contains(action), "{action} not probed: {probed:?}");
    }
    for c in &report.checks {
        if !probed.contains(c.permission.action.as_str()) {
            assert_eq!(c.verdict, Verdict::Unknown, "{c:?}");
        }
    }
    for write in ["ecs:CreateCluster", "iam:PassRole", "s3:PutObject"] {
        assert!(!probed.contains(write));
    }
}

#[tokio::test]
async fn a_caller_refused_the_simulator_falls_back_to_probes_and_a_refused_probe_is_a_denial() {
    let moto = Moto::start().await;
    let key = user(&moto, "erin", &policy_document(&needed()), None).await;
    fault(
        &moto,
        r#"{"service":"iam","operation":"SimulatePrincipalPolicy","status":403,"code":"AccessDenied","message":"not authorized to perform: iam:SimulatePrincipalPolicy"}"#,
    )
    .await;
    fault(
        &moto,
        r#"{"service":"ecs","operation":"ListClusters","status":400,"code":"AccessDeniedException","message":"not authorized to perform: ecs:ListClusters"}"#,
    )
    .await;
    let report = check_as(&moto, &key).await;
    assert!(!report.simulated);
    let note = report.note.as_deref().unwrap();
    assert!(note.contains("iam:SimulatePrincipalPolicy"), "{note}");
    let denied: Vec<_> = report
        .denied()
        .map(|c| (c.permission.action.as_str(), c.verdict))
        .collect();
    assert_eq!(denied, [("ecs:ListClusters", Verdict::ProbedDenied)]);
    assert!(
        report
            .denied()
            .next()
            .unwrap()
            .detail
            .as_deref()
            .unwrap()
            .contains("ListClusters was refused"),
    );
}
