//! Sync mode's environment library: many workers, one build, the rest download; failures and
//! a dead builder's claim.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use starburst_cloud::fake::InMemoryStore;
use starburst_cloud::{ObjectStore, ObjectStoreExt};
use starburst_worker::environment::{
    EnvironmentPaths, EnvironmentSync, Prepared, Restorer, pack, unpack,
};

const TAG: &str = "env-r4.4.1-amd64-0123456789abcdef";

/// Writes a package directory into the library after a while, or fails.
#[derive(Debug, Clone)]
struct FakeRestorer {
    calls: Arc<AtomicUsize>,
    fail: bool,
    takes: Duration,
}

#[async_trait]
impl Restorer for FakeRestorer {
    async fn restore(&self, manifest: &Path, library: &Path) -> Result<(), String> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        assert!(manifest.is_file());
        tokio::time::sleep(self.takes).await;
        if self.fail {
            return Err("xgboost 9.9.9 (got not installed)".into());
        }
        let pkg = library.join("xgboost");
        std::fs::create_dir_all(pkg.join("R")).unwrap();
        std::fs::write(
            pkg.join("DESCRIPTION"),
            "Package: xgboost\nVersion: 9.9.9\n",
        )
        .unwrap();
        std::fs::write(pkg.join("R").join("xgboost"), vec![7u8; 100_000]).unwrap();
        Ok(())
    }
}

fn restorer(fail: bool, takes: Duration) -> FakeRestorer {
    FakeRestorer {
        calls: Arc::new(AtomicUsize::new(0)),
        fail,
        takes,
    }
}

async fn store_with_manifest() -> Arc<InMemoryStore> {
    let store = Arc::new(InMemoryStore::new());
    let paths = EnvironmentPaths::new(TAG).unwrap();
    store
        .put(&paths.manifest, Bytes::from_static(b"{\"packages\": []}"))
        .await
        .unwrap();
    store
}

fn sync(store: &Arc<InMemoryStore>, library: &Path, restorer: &FakeRestorer) -> EnvironmentSync {
    let mut s = EnvironmentSync::new(
        store.clone() as Arc<dyn ObjectStore>,
        TAG,
        library,
        Box::new(restorer.clone()),
    )
    .unwrap();
    s.poll = Duration::from_millis(10);
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_workers_build_the_library_once_and_the_rest_download_it() {
    let store = store_with_manifest().await;
    let restorer = restorer(false, Duration::from_millis(300));
    let dir = tempfile::tempdir().unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..50 {
        let s = sync(&store, &dir.path().join(format!("w{i}")), &restorer);
        tasks.spawn(async move {
            let prepared = s.prepare(&format!("w{i}")).await.unwrap();
            let description = s.library().join("xgboost").join("DESCRIPTION");
            assert!(description.is_file(), "{}", description.display());
            prepared
        });
    }
    let mut built = 0;
    let mut downloaded = 0;
    while let Some(done) = tasks.join_next().await {
        match done.unwrap() {
            Prepared::Built { .. } => built += 1,
            Prepared::Downloaded { bytes, .. } => {
                downloaded += 1;
                assert!(bytes > 0 && bytes < 100_000, "compressed: {bytes}");
            }
        }
    }
    assert_eq!((built, downloaded), (1, 49));
    assert_eq!(
        restorer.calls.load(Ordering::SeqCst),
        1,
        "never built twice"
    );

    // A later session's worker downloads what is there.
    let later = sync(&store, &dir.path().join("later"), &restorer);
    assert!(matches!(
        later.prepare("later").await.unwrap(),
        Prepared::Downloaded { .. }
    ));
    assert_eq!(restorer.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_build_fails_every_waiting_worker_with_its_reason() {
    let store = store_with_manifest().await;
    let restorer = restorer(true, Duration::from_millis(100));
    let dir = tempfile::tempdir().unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..5 {
        let s = sync(&store, &dir.path().join(format!("w{i}")), &restorer);
        tasks.spawn(async move { s.prepare(&format!("w{i}")).await });
    }
    while let Some(done) = tasks.join_next().await {
        let err = done.unwrap().unwrap_err();
        assert!(err.contains("xgboost 9.9.9"), "{err}");
    }
    assert_eq!(restorer.calls.load(Ordering::SeqCst), 1);
    let paths = EnvironmentPaths::new(TAG).unwrap();
    assert!(store.get_opt(&paths.archive).await.unwrap().is_none());
    assert!(
        store.get_opt(&paths.claim).await.unwrap().is_none(),
        "the claim is released"
    );
}

#[tokio::test]
async fn a_dead_builders_claim_is_taken_over() {
    let store = store_with_manifest().await;
    let paths = EnvironmentPaths::new(TAG).unwrap();
    store
        .put(&paths.claim, Bytes::from_static(b"{\"worker\": \"gone\"}"))
        .await
        .unwrap();
    let restorer = restorer(false, Duration::ZERO);
    let dir = tempfile::tempdir().unwrap();
    let mut s = sync(&store, dir.path(), &restorer);
    s.stale_after = Duration::from_millis(50);
    tokio::time::sleep(Duration::from_millis(80)).await;
    assert!(matches!(
        s.prepare("w").await.unwrap(),
        Prepared::Built { .. }
    ));
}

#[tokio::test]
async fn a_missing_manifest_is_an_error_that_names_it() {
    let store = Arc::new(InMemoryStore::new());
    let restorer = restorer(false, Duration::ZERO);
    let dir = tempfile::tempdir().unwrap();
    let err = sync(&store, dir.path(), &restorer)
        .prepare("w")
        .await
        .unwrap_err();
    assert!(err.contains("no manifest"), "{err}");
    assert_eq!(restorer.calls.load(Ordering::SeqCst), 0);
}

#[test]
fn pack_and_unpack_keep_files_links_and_modes() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let lib = dir.path().join("lib");
    std::fs::create_dir_all(lib.join("pkg/libs")).unwrap();
    std::fs::write(lib.join("pkg/DESCRIPTION"), "Package: pkg\n").unwrap();
    std::fs::write(lib.join("pkg/libs/pkg.so"), b"\x7fELF").unwrap();
    std::fs::set_permissions(
        lib.join("pkg/libs/pkg.so"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    std::os::unix::fs::symlink("DESCRIPTION", lib.join("pkg/link")).unwrap();
    let archive = pack(&lib).unwrap();
    let out = dir.path().join("out");
    unpack(archive, &out).unwrap();
    assert_eq!(
        std::fs::read_to_string(out.join("pkg/DESCRIPTION")).unwrap(),
        "Package: pkg\n"
    );
    let mode = std::fs::metadata(out.join("pkg/libs/pkg.so"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o755);
    assert_eq!(
        std::fs::read_link(out.join("pkg/link")).unwrap(),
        Path::new("DESCRIPTION")
    );
}
