//! Shared conformance suites: every implementation of a port runs the same checks, so the
//! in-memory fakes, the local adapter and the AWS adapter agree on semantics.
//!
//! Each suite panics with a message naming the failed property. Call them from a `#[tokio::test]`
//! with a fresh implementation and a unique `root` prefix.

use std::sync::Arc;

use bytes::Bytes;

use crate::{
    Compute, LogQuery, Logs, ObjectPath, ObjectStore, ObjectStoreExt, StopCause, WorkerPhase,
    WorkerSpec,
};

fn p(root: &str, rest: &str) -> ObjectPath {
    ObjectPath::parse(format!("{root}/{rest}")).expect("valid test path")
}

/// The [`ObjectStore`] contract.
pub async fn object_store(store: Arc<dyn ObjectStore>, root: &str) {
    let a = p(root, "a");
    // get / head of a missing object
    assert!(
        store.get(&a).await.unwrap_err().is_not_found(),
        "get of a missing object must be NotFound"
    );
    assert!(
        store.head(&a).await.unwrap_err().is_not_found(),
        "head of a missing object must be NotFound"
    );
    assert_eq!(store.get_opt(&a).await.unwrap(), None);

    // put / get / overwrite
    store.put(&a, Bytes::from_static(b"hello")).await.unwrap();
    assert_eq!(store.get(&a).await.unwrap(), Bytes::from_static(b"hello"));
    store.put(&a, Bytes::from_static(b"bye")).await.unwrap();
    assert_eq!(
        store.get(&a).await.unwrap(),
        Bytes::from_static(b"bye"),
        "put must replace"
    );
    assert_eq!(store.head(&a).await.unwrap().size, 3);
    store.put(&a, Bytes::new()).await.unwrap();
    assert_eq!(
        store.get(&a).await.unwrap().len(),
        0,
        "empty objects round-trip"
    );

    // ranges
    let r = p(root, "range");
    store
        .put(&r, Bytes::from_static(b"0123456789"))
        .await
        .unwrap();
    assert_eq!(
        store.get_range(&r, 2..5).await.unwrap(),
        Bytes::from_static(b"234")
    );
    assert_eq!(
        store.get_range(&r, 8..100).await.unwrap(),
        Bytes::from_static(b"89"),
        "range past the end is cut"
    );

    // put_if_absent
    let c = p(root, "commit");
    store
        .put_if_absent(&c, Bytes::from_static(b"first"))
        .await
        .unwrap();
    let e = store
        .put_if_absent(&c, Bytes::from_static(b"second"))
        .await
        .unwrap_err();
    assert!(
        e.is_already_exists(),
        "second put_if_absent must be AlreadyExists, got {e}"
    );
    assert_eq!(
        store.get(&c).await.unwrap(),
        Bytes::from_static(b"first"),
        "put_if_absent must not overwrite"
    );

    // concurrent put_if_absent: exactly one winner, and the stored value is the winner's
    let race = p(root, "race");
    let mut handles = Vec::new();
    for i in 0..16u8 {
        let store = store.clone();
        let race = race.clone();
        handles.push(tokio::spawn(async move {
            store
                .create(&race, Bytes::from(vec![i; 64]))
                .await
                .map(|won| (i, won))
        }));
    }
    let mut winners = Vec::new();
    for h in handles {
        let (i, won) = h.await.unwrap().unwrap();
        if won {
            winners.push(i);
        }
    }
    assert_eq!(
        winners.len(),
        1,
        "exactly one concurrent put_if_absent must win: {winners:?}"
    );
    assert_eq!(
        store.get(&race).await.unwrap(),
        Bytes::from(vec![winners[0]; 64])
    );

    // delete is idempotent
    store.delete(&c).await.unwrap();
    store.delete(&c).await.unwrap();
    assert!(store.get(&c).await.unwrap_err().is_not_found());

    // listing: prefix boundaries, order, pagination
    let dir = p(root, "list");
    let mut expected = Vec::new();
    for i in 0..25 {
        let path = dir.child(format!("k{i:03}")).unwrap();
        store.put(&path, Bytes::from(vec![1u8; i])).await.unwrap();
        expected.push(path);
    }
    store
        .put(&p(root, "listx"), Bytes::from_static(b"x"))
        .await
        .unwrap();
    store
        .put(&p(root, "list-sibling/k"), Bytes::from_static(b"x"))
        .await
        .unwrap();
    let all = store.list_all(&dir).await.unwrap();
    let got: Vec<ObjectPath> = all.iter().map(|m| m.path.clone()).collect();
    assert_eq!(
        got, expected,
        "list must return exactly the objects below the prefix, in order"
    );
    assert_eq!(all[7].size, 7);

    // large uploads
    let big = p(root, "big");
    let data = Bytes::from(
        (0..3_000_000u32)
            .map(|i| (i % 251) as u8)
            .collect::<Vec<u8>>(),
    );
    store.put_large(&big, data.clone()).await.unwrap();
    assert_eq!(
        store.get(&big).await.unwrap(),
        data,
        "put_large must round-trip"
    );
}

/// The [`Compute`] contract, for a compute whose workers keep running until stopped.
pub async fn compute(compute: Arc<dyn Compute>, spec: &WorkerSpec) {
    let report = compute.launch(spec, 2).await.unwrap();
    assert_eq!(
        report.launched.len(),
        2,
        "launch of 2 must start 2: {report:?}"
    );
    assert!(report.failures.is_empty());
    assert_ne!(
        report.launched[0], report.launched[1],
        "worker ids must be unique"
    );
    let st = compute.describe(&report.launched).await.unwrap();
    assert_eq!(st.len(), 2);
    assert!(
        st.iter().all(|s| s.phase != WorkerPhase::Stopped),
        "fresh workers must not be stopped: {st:?}"
    );

    compute
        .stop(&report.launched[..1], "conformance")
        .await
        .unwrap();
    compute
        .stop(&report.launched[..1], "conformance")
        .await
        .unwrap();
    let mut stopped = None;
    for _ in 0..200 {
        let st = compute.describe(&report.launched[..1]).await.unwrap();
        if st[0].phase == WorkerPhase::Stopped {
            stopped = Some(st[0].clone());
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let stopped = stopped.expect("a stopped worker must reach phase Stopped");
    assert_eq!(stopped.stop.unwrap().cause, StopCause::StoppedByUser);
    compute
        .stop(&report.launched[1..], "conformance")
        .await
        .unwrap();
}

/// The [`Logs`] contract for a worker with no log.
pub async fn logs_empty(logs: Arc<dyn Logs>, missing: &crate::WorkerId) {
    let lines = logs.read(missing, &LogQuery::default()).await.unwrap();
    assert!(lines.is_empty(), "a worker without a log has no lines");
}

/// The [`crate::Quotas`] contract, for an implementation that knows `code`.
pub async fn quotas(quotas: Arc<dyn crate::Quotas>, code: &str) {
    let q = quotas.quota(code).await.unwrap();
    assert_eq!(q.code, code);
    assert!(q.effective() >= 0.0 && q.default >= 0.0);
    assert!(quotas.usage(code).await.unwrap() >= 0.0);
    assert!(
        quotas
            .quota("L-NOT-A-QUOTA")
            .await
            .unwrap_err()
            .is_not_found(),
        "an unknown quota is NotFound"
    );
    let r = quotas
        .request_increase(code, q.effective() + 10.0)
        .await
        .unwrap();
    assert_eq!(r.code, code);
    let again = quotas.request_status(&r.id).await.unwrap();
    assert_eq!(again.id, r.id);
    assert!(
        quotas
            .request_status("no-such-request")
            .await
            .unwrap_err()
            .is_not_found()
    );
}

/// The [`crate::Registry`] and [`crate::ImageBuilder`] contract: a built image exists.
pub async fn registry_and_builder(
    registry: Arc<dyn crate::Registry>,
    builder: Arc<dyn crate::ImageBuilder>,
    request: &crate::BuildRequest,
) {
    assert!(
        !registry.exists(&request.image).await.unwrap(),
        "the image must not exist before the build"
    );
    let login = registry.login().await.unwrap();
    builder.build_and_push(request, &login).await.unwrap();
    assert!(
        registry.exists(&request.image).await.unwrap(),
        "a pushed image must exist"
    );
}

/// The [`crate::Network`] contract: `ensure` is idempotent and honours explicit subnets.
pub async fn network(network: Arc<dyn crate::Network>) {
    let req = crate::NetworkRequest {
        security_group_name: "starburst-conformance".into(),
        ..Default::default()
    };
    let a = network.ensure(&req).await.unwrap();
    let b = network.ensure(&req).await.unwrap();
    assert_eq!(a, b, "ensure must be idempotent");
    assert!(!a.subnets.is_empty() && a.security_groups.len() == 1);
    let explicit = crate::NetworkRequest {
        subnets: vec![a.subnets[0].clone()],
        ..req
    };
    assert_eq!(
        network.ensure(&explicit).await.unwrap().subnets,
        vec![a.subnets[0].clone()]
    );
}

/// The [`crate::Clock`] contract: monotonic time, and `sleep` returns once time has passed.
pub async fn clock(clock: Arc<dyn crate::Clock>, advance: impl Fn(std::time::Duration)) {
    let t0 = clock.now();
    let c = clock.clone();
    let sleeper = tokio::spawn(async move { c.sleep(std::time::Duration::from_millis(20)).await });
    for _ in 0..500 {
        if sleeper.is_finished() {
            break;
        }
        advance(std::time::Duration::from_millis(5));
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    sleeper.await.unwrap();
    assert!(
        clock.now() >= t0 + std::time::Duration::from_millis(20),
        "sleep returned early"
    );
}

/// The [`crate::Provisioner`] contract. `prefix` makes this run's names unique (lower-case
/// letters, digits and dashes; a bucket name is derived from it). Creates one resource of
/// every kind for set-up `<prefix>-a`, checks idempotency, drift repair, that another set-up
/// can neither adopt nor see them, then deletes them all.
pub async fn provisioner(p: Arc<dyn crate::Provisioner>, prefix: &str) {
    use crate::{
        BucketSpec, BuildProjectSpec, Change, LogGroupSpec, MANAGED_TAG, NetworkRequest,
        RepositorySpec, ResourceKind, RoleSpec, SETUP_TAG, Tags,
    };
    let tags_of = |id: &str| -> Tags {
        [(MANAGED_TAG, "true"), (SETUP_TAG, id)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let (id, other) = (format!("{prefix}-a"), format!("{prefix}-b"));
    let tags = tags_of(&id);
    let account = p.account().await.unwrap();
    assert!(!account.id.is_empty() && !account.region.is_empty());

    let bucket = BucketSpec {
        name: format!("{prefix}-bucket"),
        expire_prefix: "starburst/".into(),
        expire_days: 7,
    };
    let repo = RepositorySpec {
        name: format!("{prefix}-repo"),
        keep_images: 10,
    };
    let cluster = format!("{prefix}-cluster");
    let logs = LogGroupSpec {
        name: format!("/{prefix}/workers"),
        retention_days: 14,
    };
    let net = NetworkRequest {
        security_group_name: format!("{prefix}-workers"),
        ..NetworkRequest::default()
    };
    let role = RoleSpec {
        // Named after the set-up id, as set-up names roles (`find_tagged` relies on it).
        name: format!("{id}-task"),
        description: "conformance test role".into(),
        service: "ecs-tasks.amazonaws.com".into(),
        policy_name: "starburst".into(),
        policy: r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/p/*"}]}"#.into(),
    };

    let builder_role = RoleSpec {
        name: format!("{id}-builder"),
        service: "codebuild.amazonaws.com".into(),
        ..role.clone()
    };

    // Everything is created, then left alone.
    for round in [Change::Created, Change::Unchanged] {
        let mut changes = vec![
            p.ensure_bucket(&bucket, &tags).await.unwrap().change,
            p.ensure_repository(&repo, &tags).await.unwrap().change,
            p.ensure_cluster(&cluster, &tags).await.unwrap().change,
            p.ensure_log_group(&logs, &tags).await.unwrap().change,
            p.ensure_role(&role, &tags).await.unwrap().change,
        ];
        let built_by = p.ensure_role(&builder_role, &tags).await.unwrap();
        changes.push(built_by.change);
        let project = BuildProjectSpec {
            name: format!("{id}-builder"),
            description: "conformance test build project".into(),
            role_arn: built_by.resource.id.clone(),
            source_location: format!("{}/{prefix}/builds/", bucket.name),
            log_group: logs.name.clone(),
            log_stream_prefix: "builds".into(),
            timeout_minutes: 60,
        };
        changes.push(
            p.ensure_build_project(&project, &tags)
                .await
                .unwrap()
                .change,
        );
        let network = p.ensure_network(&net, &tags).await.unwrap();
        assert!(
            !network.config.subnets.is_empty(),
            "the network has subnets"
        );
        assert_eq!(
            network.config.security_groups,
            vec![network.group.resource.id.clone()],
            "workers use the set-up's group"
        );
        changes.push(network.group.change);
        assert!(
            changes.iter().all(|c| *c == round),
            "expected every ensure to report {round:?}, got {changes:?}"
        );
    }

    // Drift is repaired, once.
    let longer = LogGroupSpec {
        retention_days: 30,
        ..logs.clone()
    };
    assert_eq!(
        p.ensure_log_group(&longer, &tags).await.unwrap().change,
        Change::Updated
    );
    assert_eq!(
        p.ensure_log_group(&longer, &tags).await.unwrap().change,
        Change::Unchanged
    );
    let wider = RoleSpec {
        policy: role.policy.replace("s3:GetObject", "s3:PutObject"),
        ..role.clone()
    };
    assert_eq!(
        p.ensure_role(&wider, &tags).await.unwrap().change,
        Change::Updated
    );
    let fewer = RepositorySpec {
        keep_images: 3,
        ..repo.clone()
    };
    assert_eq!(
        p.ensure_repository(&fewer, &tags).await.unwrap().change,
        Change::Updated
    );
    let shorter = BucketSpec {
        expire_days: 3,
        ..bucket.clone()
    };
    assert_eq!(
        p.ensure_bucket(&shorter, &tags).await.unwrap().change,
        Change::Updated
    );

    // Another set-up neither adopts these names nor sees the resources.
    let theirs = tags_of(&other);
    let err = p.ensure_cluster(&cluster, &theirs).await.unwrap_err();
    assert!(err.is_already_exists(), "cluster adopted: {err}");
    let err = p.ensure_role(&role, &theirs).await.unwrap_err();
    assert!(err.is_already_exists(), "role adopted: {err}");
    let err = p.ensure_log_group(&logs, &theirs).await.unwrap_err();
    assert!(err.is_already_exists(), "log group adopted: {err}");
    assert!(
        p.find_tagged(SETUP_TAG, &other).await.unwrap().is_empty(),
        "another set-up id finds nothing"
    );

    let mut found = p.find_tagged(SETUP_TAG, &id).await.unwrap();
    found.sort();
    let kinds: Vec<ResourceKind> = found.iter().map(|r| r.kind).collect();
    assert_eq!(
        kinds,
        vec![
            ResourceKind::Bucket,
            ResourceKind::Repository,
            ResourceKind::Cluster,
            ResourceKind::LogGroup,
            ResourceKind::SecurityGroup,
            ResourceKind::Role,
            ResourceKind::Role,
            ResourceKind::BuildProject,
        ],
        "find_tagged returns exactly the set-up's resources: {found:?}"
    );

    for r in &found {
        p.delete(r).await.unwrap();
        p.delete(r)
            .await
            .unwrap_or_else(|e| panic!("second delete of {r:?}: {e}"));
    }
    assert!(
        p.find_tagged(SETUP_TAG, &id).await.unwrap().is_empty(),
        "nothing tagged is left after deleting"
    );
}
