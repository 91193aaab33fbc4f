//! `EcrRegistry` against moto's ECR. Images are made with `PutImage` (a manifest, no layers):
//! the registry port only asks whether a tag exists and for push credentials.

mod support;

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use starburst_aws::{EcrRegistry, EcrRepository};
use starburst_cloud::{
    Arch, BuildRequest, Error, ImageBuilder, ImageRef, Registry, RegistryLogin, Result,
};
use support::{Moto, REGION};

/// moto's account id.
const ACCOUNT: &str = "123456789012";

/// Creates repository `name` and returns it.
async fn repository(ecr: &aws_sdk_ecr::Client, name: &str) -> EcrRepository {
    ecr.create_repository()
        .repository_name(name)
        .send()
        .await
        .expect("create repository");
    EcrRepository::new(ACCOUNT, REGION, name).unwrap()
}

/// Pushes a manifest for `image` (no layers: moto keeps manifests only).
async fn put_image(ecr: &aws_sdk_ecr::Client, image: &ImageRef) {
    let repo = EcrRepository::of(image).unwrap();
    // A distinct manifest per tag (an annotation): moto folds identical manifests into one image.
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","size":2,"digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"}},"layers":[],"annotations":{{"starburst.test.tag":"{}"}}}}"#,
        image.tag
    );
    ecr.put_image()
        .repository_name(&repo.name)
        .image_tag(&image.tag)
        .image_manifest(manifest)
        .send()
        .await
        .expect("put image");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tag_exists_once_pushed() {
    let moto = Moto::start().await;
    let ecr = aws_sdk_ecr::Client::new(&moto.sdk_config());
    let registry = EcrRegistry::new(&moto.aws().await);
    let repo = repository(&ecr, "starburst").await;
    let image = repo.image("env-1");
    assert!(!registry.exists(&image).await.unwrap(), "empty repository");
    put_image(&ecr, &image).await;
    assert!(registry.exists(&image).await.unwrap());
    assert!(
        !registry.exists(&repo.image("env-2")).await.unwrap(),
        "other tag"
    );
    put_image(&ecr, &repo.image("env-2")).await;
    assert!(registry.exists(&repo.image("env-2")).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_repository_is_not_found_and_says_to_run_setup() {
    let moto = Moto::start().await;
    let registry = EcrRegistry::new(&moto.aws().await);
    let image = EcrRepository::new(ACCOUNT, REGION, "nope")
        .unwrap()
        .image("t");
    let err = registry.exists(&image).await.unwrap_err();
    assert!(
        matches!(&err, Error::NotFound { resource, .. }
            if resource.contains(&image.repository) && resource.contains("starburst_setup()")),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_is_looked_up_in_the_region_of_its_uri() {
    let moto = Moto::start().await;
    let ecr = aws_sdk_ecr::Client::new(&moto.sdk_config());
    let registry = EcrRegistry::new(&moto.aws().await);
    let here = repository(&ecr, "starburst").await;
    put_image(&ecr, &here.image("t")).await;
    // Same account and name, another region: a repository that does not exist there.
    let there = EcrRepository::new(ACCOUNT, "eu-west-1", "starburst").unwrap();
    assert!(registry.exists(&here.image("t")).await.unwrap());
    assert!(
        registry
            .exists(&there.image("t"))
            .await
            .unwrap_err()
            .is_not_found()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_outside_ecr_is_invalid_input() {
    let moto = Moto::start().await;
    let registry = EcrRegistry::new(&moto.aws().await);
    let image = ImageRef {
        repository: "docker.io/rocker/r-ver".into(),
        tag: "4.4".into(),
    };
    let err = registry.exists(&image).await.unwrap_err();
    assert!(matches!(err, Error::InvalidInput { .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_decodes_the_authorization_token() {
    let moto = Moto::start().await;
    let registry = EcrRegistry::new(&moto.aws().await);
    let login = registry.login().await.unwrap();
    assert_eq!(
        login,
        RegistryLogin {
            server: format!("{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"),
            username: "AWS".into(),
            // moto's token is base64 of `AWS:<account>-auth-token`.
            password: format!("{ACCOUNT}-auth-token"),
        }
    );
    assert_eq!(
        login.server,
        EcrRepository::new(ACCOUNT, REGION, "x").unwrap().host()
    );
}

/// Stands in for the image builder (future work): "pushes" by putting the image's manifest
/// with ECR's API, after checking that it was given the registry's credentials.
#[derive(Debug)]
struct ManifestPusher {
    ecr: aws_sdk_ecr::Client,
    server: String,
}

#[async_trait]
impl ImageBuilder for ManifestPusher {
    async fn build_and_push(&self, request: &BuildRequest, login: &RegistryLogin) -> Result<()> {
        assert_eq!(login.server, self.server, "credentials of another registry");
        put_image(&self.ecr, &request.image).await;
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ecr_registry_passes_the_registry_and_builder_conformance_suite() {
    let moto = Moto::start().await;
    let ecr = aws_sdk_ecr::Client::new(&moto.sdk_config());
    let repo = repository(&ecr, "starburst").await;
    let request = BuildRequest {
        context: PathBuf::from("unused"),
        image: repo.image("conformance"),
        arch: Arch::X86_64,
    };
    let builder = ManifestPusher {
        ecr,
        server: repo.host(),
    };
    starburst_cloud::conformance::registry_and_builder(
        Arc::new(EcrRegistry::new(&moto.aws().await)),
        Arc::new(builder),
        &request,
    )
    .await;
}
