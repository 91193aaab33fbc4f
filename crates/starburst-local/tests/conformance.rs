//! The local adapters pass the shared conformance suites.

use std::sync::Arc;

use starburst_cloud::{Compute, ObjectPath, ObjectStore, WorkerSize, WorkerSpec, conformance};
use starburst_local::{DirStore, FileLogs, LocalCompute};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dir_store_conforms() {
    let dir = tempfile::tempdir().unwrap();
    conformance::object_store(Arc::new(DirStore::new(dir.path()).unwrap()), "conf").await;
}

#[tokio::test(flavor = "current_thread")]
async fn dir_store_conforms_on_a_current_thread_runtime() {
    let dir = tempfile::tempdir().unwrap();
    conformance::object_store(Arc::new(DirStore::new(dir.path()).unwrap()), "conf").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dir_store_paginates_beyond_1000_keys() {
    let dir = tempfile::tempdir().unwrap();
    let store = DirStore::new(dir.path()).unwrap();
    let p = ObjectPath::parse("many").unwrap();
    for i in 0..1203 {
        store
            .put(&p.child(format!("{i:05}")).unwrap(), bytes::Bytes::new())
            .await
            .unwrap();
    }
    let first = store.list(&p, None).await.unwrap();
    assert_eq!(first.objects.len(), 1000);
    let second = store.list(&p, first.next.clone()).await.unwrap();
    assert_eq!(second.objects.len(), 203);
    assert!(second.next.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dir_store_watch_wakes_on_writes() {
    let dir = tempfile::tempdir().unwrap();
    let store = DirStore::new(dir.path()).unwrap();
    let p = ObjectPath::parse("w").unwrap();
    let mut watch = store.watch(&p).expect("directory stores can watch");
    assert!(!watch.changed(std::time::Duration::from_millis(50)).await);
    store
        .put(&p.child("x").unwrap(), bytes::Bytes::from_static(b"1"))
        .await
        .unwrap();
    assert!(watch.changed(std::time::Duration::from_secs(5)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_compute_conforms() {
    let dir = tempfile::tempdir().unwrap();
    // Any long-running program stands in for the worker binary here.
    let sleeper = dir.path().join("worker.sh");
    std::fs::write(
        &sleeper,
        "#!/bin/sh\necho started $STARBURST_WORKER_ID\nexec sleep 30\n",
    )
    .unwrap();
    std::fs::set_permissions(
        &sleeper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let compute = Arc::new(LocalCompute::new(&sleeper, dir.path().join("logs"), "w").unwrap());
    let spec = WorkerSpec::new(WorkerSize {
        millicpu: 1000,
        memory_mib: 2048,
    });
    conformance::compute(compute.clone(), &spec).await;
    let logs = Arc::new(FileLogs::new(dir.path().join("logs")));
    let id = compute.launch(&spec, 1).await.unwrap().launched.remove(0);
    let mut seen = false;
    for _ in 0..100 {
        let lines = starburst_cloud::Logs::read(&*logs, &id, &Default::default())
            .await
            .unwrap();
        if lines.iter().any(|l| l.message == format!("started {id}")) {
            seen = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(seen, "the worker's stdout must reach its log");
    conformance::logs_empty(logs, &starburst_cloud::WorkerId::new("nobody").unwrap()).await;
}

#[test]
fn session_directories_and_caches_are_private_to_the_user() {
    use std::os::unix::fs::PermissionsExt;
    let base = tempfile::tempdir().unwrap();
    let root = base.path().join("a").join("session");
    starburst_local::DirStore::new(&root).unwrap();
    for dir in [base.path().join("a"), root.clone(), root.join(".tmp")] {
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{}", dir.display());
    }
    // An existing directory open to others is closed.
    let open = base.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    starburst_local::private_dir(&open).unwrap();
    let mode = std::fs::metadata(&open).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
    // A planted symlink is refused.
    let link = base.path().join("link");
    std::os::unix::fs::symlink(&open, &link).unwrap();
    let e = starburst_local::private_dir(&link).unwrap_err();
    assert!(
        e.to_string().contains("not a directory of this user"),
        "{e}"
    );
}
