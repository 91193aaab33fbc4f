//! `S3Store` against a real local S3 API: a `moto_server` started per test on 127.0.0.1 (see
//! `support`).

mod support;

use std::net::TcpListener;
use std::sync::Arc;

use bytes::Bytes;
use starburst_aws::{Aws, AwsOptions, S3Options, S3Store};
use starburst_cloud::{Error, ObjectPath, ObjectStore, ObjectStoreExt};
use support::{Moto, REGION};

/// A store on a fresh bucket of `moto`.
async fn store(moto: &Moto, bucket: &str, options: S3Options) -> S3Store {
    let conf = aws_sdk_s3::config::Builder::from(&moto.sdk_config())
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(conf)
        .create_bucket()
        .bucket(bucket)
        .send()
        .await
        .expect("create bucket");
    S3Store::new(&moto.aws().await, bucket, "starburst", options).expect("connect")
}

fn path(s: &str) -> ObjectPath {
    ObjectPath::parse(s).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s3_store_passes_the_object_store_conformance_suite() {
    let moto = Moto::start().await;
    let store = store(&moto, "conformance", S3Options::default()).await;
    starburst_cloud::conformance::object_store(Arc::new(store), "root").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn list_follows_continuation_tokens_past_1000_keys() {
    let moto = Moto::start().await;
    let store = Arc::new(store(&moto, "pages", S3Options::default()).await);
    let dir = path("many");
    let mut tasks = tokio::task::JoinSet::new();
    for chunk in (0..1203u32).collect::<Vec<_>>().chunks(101) {
        let (store, dir, chunk) = (store.clone(), dir.clone(), chunk.to_vec());
        tasks.spawn(async move {
            for i in chunk {
                let p = dir.child(format!("k{i:05}")).unwrap();
                store.put(&p, Bytes::from_static(b"x")).await.unwrap();
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    let first = store.list(&dir, None).await.unwrap();
    assert_eq!(first.objects.len(), 1000, "S3 pages hold 1000 keys");
    let token = first.next.clone().expect("a second page");
    let second = store.list(&dir, Some(token)).await.unwrap();
    assert_eq!(second.objects.len(), 203);
    assert_eq!(second.next, None);
    let all = store.list_all(&dir).await.unwrap();
    let names: Vec<String> = all.iter().map(|m| m.path.name().to_owned()).collect();
    let expected: Vec<String> = (0..1203).map(|i| format!("k{i:05}")).collect();
    assert_eq!(names, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn put_large_uploads_parallel_parts() {
    let moto = Moto::start().await;
    let options = S3Options::default()
        .with_part_size(5 * 1024 * 1024)
        .with_parallelism(4);
    let store = store(&moto, "multipart", options).await;
    let p = path("big/object");
    let data = Bytes::from(
        (0..6_000_000u32)
            .map(|i| (i % 253) as u8)
            .collect::<Vec<u8>>(),
    );
    store.put_large(&p, data.clone()).await.unwrap();
    assert_eq!(store.head(&p).await.unwrap().size, 6_000_000);
    assert_eq!(store.get(&p).await.unwrap(), data);
    assert_eq!(
        store.get_range(&p, 5_242_870..5_242_890).await.unwrap(),
        data.slice(5_242_870..5_242_890),
        "a range across the part boundary"
    );
}

/// A blob over 100 MB: parallel parts up, one ranged-free GET down (about 4 s on moto).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn put_large_of_120_mb() {
    let moto = Moto::start().await;
    let store = store(&moto, "huge", S3Options::default()).await;
    let p = path("huge/object");
    let data = Bytes::from(
        (0..120_000_000u32)
            .map(|i| (i % 251) as u8)
            .collect::<Vec<u8>>(),
    );
    store.put_large(&p, data.clone()).await.unwrap();
    assert_eq!(store.head(&p).await.unwrap().size, 120_000_000);
    assert_eq!(store.get(&p).await.unwrap(), data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_map_onto_port_errors() {
    let moto = Moto::start().await;
    let store = store(&moto, "errors", S3Options::default()).await;
    let e = store.get(&path("missing")).await.unwrap_err();
    assert!(
        matches!(&e, Error::NotFound { op: "get", resource } if resource == "errors/starburst/missing"),
        "{e}"
    );
    assert!(
        store
            .head(&path("missing"))
            .await
            .unwrap_err()
            .is_not_found()
    );
    assert!(
        store
            .get_range(&path("missing"), 0..4)
            .await
            .unwrap_err()
            .is_not_found()
    );
    store.delete(&path("missing")).await.unwrap();
    assert!(store.list_all(&path("nothing")).await.unwrap().is_empty());

    let aws = moto.aws().await;
    let nobucket = S3Store::new(&aws, "no-such-bucket", "", S3Options::default()).unwrap();
    let e = nobucket.get(&path("k")).await.unwrap_err();
    assert!(
        matches!(&e, Error::NotFound { resource, .. } if resource == "bucket no-such-bucket"),
        "{e}"
    );
    let e = nobucket.put(&path("k"), Bytes::new()).await.unwrap_err();
    assert!(e.is_not_found(), "{e}");
    let e = nobucket.list(&path("k"), None).await.unwrap_err();
    assert!(e.is_not_found(), "{e}");

    let e = S3Store::new(&aws, "b", "", S3Options::default().with_part_size(1024)).unwrap_err();
    assert!(matches!(e, Error::InvalidInput { .. }), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_endpoint_is_transient() {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let aws = Aws::connect(
        AwsOptions::emulator(
            format!("http://127.0.0.1:{port}"),
            REGION,
            "testing",
            "testing",
        )
        .with_max_attempts(2),
    )
    .await;
    let store = S3Store::new(&aws, "b", "", S3Options::default()).unwrap();
    let e = store.get(&path("k")).await.unwrap_err();
    assert!(matches!(e, Error::Transient { .. }), "{e}");
    assert!(e.is_retryable());
}
