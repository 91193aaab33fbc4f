//! The in-memory fakes pass the shared conformance suites.

use std::sync::Arc;

use starburst_cloud::fake::{FakeCompute, FakeLogs, InMemoryStore};
use starburst_cloud::{
    Arch, ObjectPath, ObjectStore, ObjectStoreExt, WorkerId, WorkerSize, WorkerSpec, conformance,
};

#[tokio::test]
async fn in_memory_store_conforms() {
    conformance::object_store(Arc::new(InMemoryStore::new()), "conf").await;
}

#[tokio::test]
async fn in_memory_store_paginates() {
    let store = InMemoryStore::with_page_size(7);
    let dir = ObjectPath::parse("p").unwrap();
    for i in 0..50 {
        store
            .put(&dir.child(format!("{i:03}")).unwrap(), bytes::Bytes::new())
            .await
            .unwrap();
    }
    let page = store.list(&dir, None).await.unwrap();
    assert_eq!(page.objects.len(), 7);
    assert!(page.next.is_some());
    assert_eq!(store.list_all(&dir).await.unwrap().len(), 50);
    conformance::object_store(Arc::new(InMemoryStore::with_page_size(3)), "conf").await;
}

#[tokio::test]
async fn fake_compute_conforms() {
    let spec = WorkerSpec::new(WorkerSize {
        millicpu: 1000,
        memory_mib: 2048,
    });
    conformance::compute(Arc::new(FakeCompute::new()), &spec).await;
}

#[tokio::test]
async fn fake_logs_conform() {
    let logs = FakeLogs::new();
    let w = WorkerId::new("w1").unwrap();
    logs.append(&w, "one");
    logs.append(&w, "two");
    let tail = starburst_cloud::Logs::read(
        &logs,
        &w,
        &starburst_cloud::LogQuery {
            tail: Some(1),
            since: None,
        },
    )
    .await
    .unwrap();
    assert_eq!(tail.len(), 1);
    assert_eq!(tail[0].message, "two");
    conformance::logs_empty(Arc::new(logs), &WorkerId::new("none").unwrap()).await;
}

#[tokio::test]
async fn mocks_are_usable_for_interaction_tests() {
    use starburst_cloud::mocks::MockObjectStore;
    let mut m = MockObjectStore::new();
    m.expect_get()
        .times(1)
        .returning(|p| Err(starburst_cloud::Error::not_found("get", p.as_str())));
    assert_eq!(
        m.get_opt(&ObjectPath::parse("x").unwrap()).await.unwrap(),
        None
    );
}

#[tokio::test]
async fn fake_quotas_conform() {
    let q = starburst_cloud::fake::FakeQuotas::new();
    q.set(
        starburst_cloud::FARGATE_ON_DEMAND_VCPU,
        6.0,
        Some(100.0),
        3.0,
    );
    conformance::quotas(Arc::new(q), starburst_cloud::FARGATE_ON_DEMAND_VCPU).await;
}

#[tokio::test]
async fn fake_registry_and_builder_conform() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("Dockerfile"), "FROM scratch\n").unwrap();
    let registry = starburst_cloud::fake::FakeRegistry::new();
    let builder = starburst_cloud::fake::FakeImageBuilder::new(registry.clone());
    let request = starburst_cloud::BuildRequest {
        context: dir.path().to_path_buf(),
        image: starburst_cloud::ImageRef {
            repository: "repo".into(),
            tag: "abc".into(),
        },
        arch: Arch::X86_64,
    };
    conformance::registry_and_builder(Arc::new(registry), Arc::new(builder), &request).await;
}

#[tokio::test]
async fn fake_network_conforms() {
    conformance::network(Arc::new(starburst_cloud::fake::FakeNetwork::new())).await;
}

#[tokio::test]
async fn fake_provisioner_conforms() {
    let p = Arc::new(starburst_cloud::fake::FakeProvisioner::new("eu-west-1"));
    conformance::provisioner(p.clone(), "sbconf").await;
    assert!(p.resources().is_empty(), "{:?}", p.resources());
}

#[tokio::test]
async fn fake_provisioner_fails_on_demand_and_never_adopts_foreign_resources() {
    use starburst_cloud::{Provisioner, ResourceKind, SETUP_TAG, Tags};
    let p = starburst_cloud::fake::FakeProvisioner::default();
    let tags: Tags = [(SETUP_TAG.to_string(), "s1".to_string())].into();
    p.fail_next("ensure_cluster");
    assert!(
        p.ensure_cluster("c", &tags)
            .await
            .unwrap_err()
            .is_retryable()
    );
    assert_eq!(p.writes(), 0);
    p.ensure_cluster("c", &tags).await.unwrap();
    assert_eq!(p.writes(), 1);
    p.insert(ResourceKind::Cluster, "mine", Tags::new());
    assert!(
        p.ensure_cluster("mine", &tags)
            .await
            .unwrap_err()
            .is_already_exists()
    );
    assert_eq!(p.find_tagged(SETUP_TAG, "s1").await.unwrap().len(), 1);
}

#[tokio::test]
async fn clocks_conform() {
    let manual = starburst_cloud::ManualClock::new();
    let m2 = manual.clone();
    conformance::clock(Arc::new(manual), move |d| m2.advance(d)).await;
    conformance::clock(Arc::new(starburst_cloud::SystemClock::default()), |_| {}).await;
}
