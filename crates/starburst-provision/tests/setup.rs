//! The set-up and teardown orchestration on the in-memory provisioner: plan, idempotency,
//! resume after an interruption, teardown of exactly what set-up made.

use starburst_cloud::fake::FakeProvisioner;
use starburst_cloud::{Change, Provisioner, ResourceKind, SETUP_TAG, Tags};
use starburst_provision::setup::{self, SetupOptions};

fn changes(r: &setup::SetupResult) -> Vec<Change> {
    r.applied.iter().map(|a| a.change).collect()
}

#[tokio::test]
async fn the_plan_names_every_resource_and_says_why() {
    let p = FakeProvisioner::new("eu-west-1");
    let plan = setup::plan(&p, &SetupOptions::default()).await.unwrap();
    assert_eq!(plan.setup_id, "starburst-eu-west-1");
    assert_eq!(plan.bucket, "starburst-000000000000-eu-west-1");
    let names: Vec<&str> = plan.steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "starburst-000000000000-eu-west-1",
            "starburst",
            "starburst",
            "/starburst/workers",
            "starburst-workers",
            "starburst-eu-west-1-execution",
            "starburst-eu-west-1-task",
        ]
    );
    assert!(plan.steps.iter().all(|s| !s.exists && !s.why.is_empty()));
    assert!(
        plan.steps[0].why.contains("7 days"),
        "{}",
        plan.steps[0].why
    );
    assert_eq!(p.writes(), 0, "planning writes nothing");
}

#[tokio::test]
async fn running_set_up_twice_changes_nothing_the_second_time() {
    let p = FakeProvisioner::default();
    let options = SetupOptions::default();
    let plan = setup::plan(&p, &options).await.unwrap();
    let mut seen = Vec::new();
    let first = setup::apply(&p, &plan, &mut |a| seen.push(a.resource.name.clone()))
        .await
        .unwrap();
    assert_eq!(changes(&first), vec![Change::Created; 7]);
    assert_eq!(seen.len(), 7, "progress after every step");
    assert_eq!(first.network.security_groups.len(), 1);
    assert!(first.task_role_arn.contains("starburst-us-east-1-task"));
    assert_eq!(
        first.repository_uri(),
        "000000000000.dkr.ecr.us-east-1.amazonaws.com/starburst"
    );
    let writes = p.writes();

    let again = setup::plan(&p, &options).await.unwrap();
    assert!(again.steps.iter().all(|s| s.exists), "{:?}", again.steps);
    let second = setup::apply(&p, &again, &mut |_| {}).await.unwrap();
    assert!(second.unchanged(), "{:?}", changes(&second));
    assert_eq!(p.writes(), writes, "the second run wrote nothing");
    assert_eq!(second.task_role_arn, first.task_role_arn);
}

#[tokio::test]
async fn an_interrupted_set_up_resumes_where_it_stopped() {
    let p = FakeProvisioner::default();
    let options = SetupOptions::default();
    p.fail_next("ensure_log_group");
    let plan = setup::plan(&p, &options).await.unwrap();
    let mut done = 0;
    let err = setup::apply(&p, &plan, &mut |_| done += 1)
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert_eq!(
        done, 3,
        "bucket, repository and cluster were made before the failure"
    );

    let plan = setup::plan(&p, &options).await.unwrap();
    let exists: Vec<bool> = plan.steps.iter().map(|s| s.exists).collect();
    assert_eq!(exists, [true, true, true, false, false, false, false]);
    let resumed = setup::apply(&p, &plan, &mut |_| {}).await.unwrap();
    assert_eq!(
        changes(&resumed),
        [
            [Change::Unchanged; 3].as_slice(),
            [Change::Created; 4].as_slice()
        ]
        .concat()
    );
}

#[tokio::test]
async fn changed_options_update_the_resources_in_place() {
    let p = FakeProvisioner::default();
    let options = SetupOptions::default();
    let plan = setup::plan(&p, &options).await.unwrap();
    setup::apply(&p, &plan, &mut |_| {}).await.unwrap();
    let longer = SetupOptions {
        log_retention_days: 90,
        data_retention_days: 14,
        ..options
    };
    let plan = setup::plan(&p, &longer).await.unwrap();
    let r = setup::apply(&p, &plan, &mut |_| {}).await.unwrap();
    let updated: Vec<ResourceKind> = r
        .applied
        .iter()
        .filter(|a| a.change == Change::Updated)
        .map(|a| a.resource.kind)
        .collect();
    assert_eq!(updated, [ResourceKind::Bucket, ResourceKind::LogGroup]);
}

#[tokio::test]
async fn teardown_deletes_exactly_what_set_up_made() {
    let p = FakeProvisioner::default();
    // Someone else's resources, some with starburst's names in another account's sense.
    p.insert(ResourceKind::Bucket, "my-data", Tags::new());
    p.insert(ResourceKind::Role, "my-role", Tags::new());
    let other: Tags = [(SETUP_TAG.to_string(), "starburst-eu-west-1".to_string())].into();
    p.insert(ResourceKind::Cluster, "elsewhere", other);
    let before: Vec<_> = p.resources();

    let plan = setup::plan(&p, &SetupOptions::default()).await.unwrap();
    setup::apply(&p, &plan, &mut |_| {}).await.unwrap();
    let doomed = setup::teardown_plan(&p, &plan.setup_id).await.unwrap();
    assert_eq!(doomed.len(), 7);
    assert_eq!(
        doomed[0].kind,
        ResourceKind::Cluster,
        "the cluster goes first"
    );
    assert_eq!(doomed[6].kind, ResourceKind::Bucket, "the bucket goes last");
    let mut gone = 0;
    setup::teardown(&p, &doomed, &mut |_| gone += 1)
        .await
        .unwrap();
    assert_eq!(gone, 7);
    assert_eq!(p.resources(), before, "only what set-up made was deleted");
    assert!(
        p.find_tagged(SETUP_TAG, &plan.setup_id)
            .await
            .unwrap()
            .is_empty()
    );
    // Teardown of nothing is fine.
    let again = setup::teardown_plan(&p, &plan.setup_id).await.unwrap();
    assert!(again.is_empty());
}

#[tokio::test]
async fn a_name_taken_by_something_else_is_an_error_not_an_adoption() {
    let p = FakeProvisioner::default();
    p.insert(ResourceKind::Cluster, "starburst", Tags::new());
    let plan = setup::plan(&p, &SetupOptions::default()).await.unwrap();
    let err = setup::apply(&p, &plan, &mut |_| {}).await.unwrap_err();
    assert!(err.is_already_exists(), "{err}");
    assert!(err.to_string().contains("choose another name"), "{err}");
}

#[tokio::test]
async fn policies_grant_the_least_needed() {
    let p = FakeProvisioner::new("us-west-2");
    let options = SetupOptions {
        prefix: "/team/runs/".into(),
        ..SetupOptions::default()
    };
    let plan = setup::plan(&p, &options).await.unwrap();
    let task: serde_json::Value = serde_json::from_str(&plan.task_policy()).unwrap();
    let statements = task["Statement"].as_array().unwrap();
    assert_eq!(
        statements[0]["Resource"],
        "arn:aws:s3:::starburst-000000000000-us-west-2/team/runs/*"
    );
    assert_eq!(
        statements[1]["Condition"]["StringLike"]["s3:prefix"][0],
        "team/runs/*"
    );
    let text = plan.task_policy() + &plan.execution_policy();
    assert!(
        !text.contains("s3:*") && !text.contains("\"*:*\""),
        "{text}"
    );
    let exec: serde_json::Value = serde_json::from_str(&plan.execution_policy()).unwrap();
    assert_eq!(
        exec["Statement"][1]["Resource"],
        "arn:aws:ecr:us-west-2:000000000000:repository/starburst"
    );
    assert_eq!(
        exec["Statement"][2]["Resource"],
        "arn:aws:logs:us-west-2:000000000000:log-group:/starburst/workers:*"
    );
}

#[tokio::test]
async fn bad_options_get_errors_naming_the_valid_values() {
    let p = FakeProvisioner::default();
    for (options, needle) in [
        (
            SetupOptions {
                log_retention_days: 10,
                ..SetupOptions::default()
            },
            "log_retention_days = 10",
        ),
        (
            SetupOptions {
                name: "Star Burst".into(),
                ..SetupOptions::default()
            },
            "lower-case",
        ),
        (
            SetupOptions {
                data_retention_days: 0,
                ..SetupOptions::default()
            },
            "1 to 3650",
        ),
        (
            SetupOptions {
                bucket: Some("UPPER".into()),
                ..SetupOptions::default()
            },
            "bucket names",
        ),
        // What AWS refuses only after earlier steps have created resources (the ECR
        // repository pattern, EC2's security group names, S3's reserved names).
        (
            SetupOptions {
                name: "s".into(),
                ..SetupOptions::default()
            },
            "2 to 24",
        ),
        (
            SetupOptions {
                name: "burst-".into(),
                ..SetupOptions::default()
            },
            "end it with a letter or digit",
        ),
        (
            SetupOptions {
                name: "sg-burst".into(),
                ..SetupOptions::default()
            },
            "'sg-'",
        ),
        (
            SetupOptions {
                name: "sthree".into(),
                ..SetupOptions::default()
            },
            "S3 reserves",
        ),
        (
            SetupOptions {
                name: "xn--burst".into(),
                ..SetupOptions::default()
            },
            "S3 reserves",
        ),
        (
            SetupOptions {
                bucket: Some("data-s3alias".into()),
                ..SetupOptions::default()
            },
            "S3 reserves",
        ),
        (
            SetupOptions {
                bucket: Some("data..x".into()),
                ..SetupOptions::default()
            },
            "no '..'",
        ),
        (
            SetupOptions {
                bucket: Some("10.1.2.3".into()),
                ..SetupOptions::default()
            },
            "IP addresses",
        ),
    ] {
        let err = setup::plan(&p, &options).await.unwrap_err();
        assert!(
            matches!(err, starburst_cloud::Error::InvalidInput { .. }),
            "{err}"
        );
        assert!(err.to_string().contains(needle), "{err}");
    }
}
