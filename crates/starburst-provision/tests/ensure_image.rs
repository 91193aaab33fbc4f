//! ensure_image with the in-memory registry and builder: reuse, build, force, failures.

mod support;

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use starburst_cloud::fake::{FakeImageBuilder, FakeRegistry};
use starburst_cloud::{Arch, BuildRequest, Error, ImageBuilder, ImageRef, Registry, RegistryLogin};
use starburst_provision::image::{DockerBuilder, EnsuredImage, ensure_image, ensure_runtime};

const REPO: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com/starburst";
const RUNTIME: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com/starburst:runtime-0.1.0-r4.4.1-amd64-0123456789abcdef";

#[derive(Default)]
struct Lines(Mutex<Vec<String>>);

impl Lines {
    fn sink(&self) -> impl Fn(&str) + Send + Sync + '_ {
        |l: &str| self.0.lock().unwrap().push(l.to_owned())
    }
    fn all(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

#[tokio::test]
async fn builds_when_missing_then_reuses() {
    let dir = tempfile::tempdir().unwrap();
    let spec = support::session_spec(Arch::X86_64);
    let registry = FakeRegistry::new();
    let builder = FakeImageBuilder::new(registry.clone());
    let work = dir.path().join("work");
    let lines = Lines::default();

    let first = ensure_image(
        &spec,
        RUNTIME,
        &[],
        &registry,
        &builder,
        REPO,
        &work,
        false,
        &lines.sink(),
    )
    .await
    .unwrap();
    let image = ImageRef {
        repository: REPO.into(),
        tag: spec.tag(),
    };
    assert_eq!(
        first,
        EnsuredImage {
            image: image.clone(),
            built: true
        }
    );
    let builds = builder.builds();
    assert_eq!(builds.len(), 1);
    assert_eq!(builds[0].image, image);
    assert_eq!(builds[0].arch, Arch::X86_64);
    assert!(builds[0].context.starts_with(&work));
    assert!(
        !builds[0].context.exists(),
        "a successful build's context is removed"
    );

    let second = ensure_image(
        &spec,
        RUNTIME,
        &[],
        &registry,
        &builder,
        REPO,
        &work,
        false,
        &lines.sink(),
    )
    .await
    .unwrap();
    assert_eq!(
        second,
        EnsuredImage {
            image,
            built: false
        }
    );
    assert_eq!(builder.builds().len(), 1, "the existing image is reused");
    assert!(
        lines.all().iter().any(|l| l.contains("reusing")),
        "{:?}",
        lines.all()
    );
}

#[tokio::test]
async fn force_rebuilds_an_existing_image() {
    let dir = tempfile::tempdir().unwrap();
    let spec = support::session_spec(Arch::Arm64);
    let registry = FakeRegistry::new();
    registry.insert(ImageRef {
        repository: REPO.into(),
        tag: spec.tag(),
    });
    let builder = FakeImageBuilder::new(registry.clone());
    let ensured = ensure_image(
        &spec,
        RUNTIME,
        &[],
        &registry,
        &builder,
        REPO,
        dir.path(),
        true,
        &|_| {},
    )
    .await
    .unwrap();
    assert!(ensured.built);
    assert_eq!(builder.builds().len(), 1);
    assert_eq!(builder.builds()[0].arch, Arch::Arm64);
}

#[tokio::test]
async fn a_changed_package_version_builds_a_new_image() {
    let dir = tempfile::tempdir().unwrap();
    let spec = support::session_spec(Arch::X86_64);
    let registry = FakeRegistry::new();
    let builder = FakeImageBuilder::new(registry.clone());
    ensure_image(
        &spec,
        RUNTIME,
        &[],
        &registry,
        &builder,
        REPO,
        dir.path(),
        false,
        &|_| {},
    )
    .await
    .unwrap();
    let mut newer = spec.clone();
    newer.packages.get_mut("future").unwrap().version = "1.40.0".into();
    let ensured = ensure_image(
        &newer,
        RUNTIME,
        &[],
        &registry,
        &builder,
        REPO,
        dir.path(),
        false,
        &|_| {},
    )
    .await
    .unwrap();
    assert!(ensured.built);
    assert_ne!(ensured.image.tag, spec.tag());
    assert_eq!(builder.builds().len(), 2);
}

/// A builder that looks at the context it is given, then fails.
#[derive(Debug, Default)]
struct InspectingBuilder {
    seen: Mutex<Vec<(BuildRequest, RegistryLogin, Vec<String>)>>,
}

#[async_trait]
impl ImageBuilder for InspectingBuilder {
    async fn build_and_push(
        &self,
        request: &BuildRequest,
        login: &RegistryLogin,
    ) -> starburst_cloud::Result<()> {
        let mut files: Vec<String> = std::fs::read_dir(&request.context)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        files.sort();
        self.seen
            .lock()
            .unwrap()
            .push((request.clone(), login.clone(), files));
        Err(Error::other(
            "docker buildx build",
            request.image.to_string(),
            "boom",
        ))
    }
}

#[tokio::test]
async fn the_builder_gets_the_rendered_context_and_the_registry_login() {
    let dir = tempfile::tempdir().unwrap();
    let spec = support::session_spec(Arch::X86_64);
    let registry = FakeRegistry::new();
    let builder = InspectingBuilder::default();
    let lines = Lines::default();
    let err = ensure_image(
        &spec,
        RUNTIME,
        &[],
        &registry,
        &builder,
        REPO,
        dir.path(),
        false,
        &lines.sink(),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("boom"), "{err}");
    let (request, login, files) = builder.seen.lock().unwrap()[0].clone();
    assert_eq!(files, ["Dockerfile", "manifest.json"]);
    assert_eq!(login.server, "registry.invalid");
    assert!(
        request.context.is_dir(),
        "a failed build's context is kept for inspection"
    );
    assert!(
        lines
            .all()
            .iter()
            .any(|l| l.contains(&request.context.display().to_string()) && l.contains("kept"))
    );
    assert!(!registry.exists(&request.image).await.unwrap());
}

#[tokio::test]
async fn a_bad_repository_uri_is_refused_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let spec = support::session_spec(Arch::X86_64);
    let registry = FakeRegistry::new();
    let builder = FakeImageBuilder::new(registry.clone());
    let err = ensure_image(
        &spec,
        RUNTIME,
        &[],
        &registry,
        &builder,
        "",
        dir.path(),
        false,
        &|_| {},
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::InvalidInput { .. }), "{err}");
    assert!(builder.builds().is_empty());
}

/// The production builder end to end through real processes, with a stand-in `docker` script
/// that records its arguments and input (no Docker engine runs).
#[tokio::test]
async fn docker_builder_runs_a_docker_cli_through_processes() {
    let dir = tempfile::tempdir().unwrap();
    let spec = support::session_spec(Arch::X86_64);
    let log = dir.path().join("docker.log");
    let script = dir.path().join("docker");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"args: $*\" >> {log}\nif [ \"$1\" = login ]; then echo \"stdin: $(cat)\" >> {log}; fi\n\
             if [ \"$2\" = build ]; then test -f \"${{9}}/Dockerfile\" || exit 9; echo pushed; fi\n",
            log = log.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();

    let registry = FakeRegistry::new();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let builder = DockerBuilder::default()
        .with_program(script.display().to_string())
        .with_progress(Arc::new(move |l: &str| {
            sink.lock().unwrap().push(l.to_owned())
        }));
    let ensured = ensure_image(
        &spec,
        RUNTIME,
        &[],
        &registry,
        &builder,
        REPO,
        dir.path(),
        false,
        &|_| {},
    )
    .await
    .unwrap();
    assert!(ensured.built);
    let log = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines[0], "args: buildx version");
    assert_eq!(
        lines[1],
        "args: login --username fake --password-stdin registry.invalid"
    );
    assert_eq!(lines[2], "stdin: fake");
    assert!(
        lines[3].starts_with(&format!(
            "args: buildx build --platform linux/amd64 --provenance=false --tag {REPO}:{} --push ",
            spec.tag()
        )),
        "{}",
        lines[3]
    );
    assert_eq!(*seen.lock().unwrap(), ["pushed"]);
}

#[tokio::test]
async fn the_runtime_is_built_once_from_the_binary_package_then_reused() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = support::runtime(dir.path(), Arch::X86_64);
    let registry = FakeRegistry::new();
    let builder = InspectingBuilder::default();
    // The context the builder gets: the Dockerfile and the binary package.
    let _ = ensure_runtime(
        &runtime,
        &registry,
        &builder,
        REPO,
        dir.path(),
        false,
        &|_| {},
    )
    .await
    .unwrap_err();
    let (request, _, files) = builder.seen.lock().unwrap()[0].clone();
    assert_eq!(
        files,
        ["Dockerfile", "starburst_0.1.0_R_x86_64-pc-linux-gnu.tar.gz"]
    );
    assert_eq!(request.image.tag, runtime.tag());
    assert!(runtime.tag().starts_with("runtime-0.1.0-r4.4.1-amd64-"));

    let fake = FakeImageBuilder::new(registry.clone());
    let first = ensure_runtime(&runtime, &registry, &fake, REPO, dir.path(), false, &|_| {})
        .await
        .unwrap();
    assert!(first.built);
    let again = ensure_runtime(&runtime, &registry, &fake, REPO, dir.path(), false, &|_| {})
        .await
        .unwrap();
    assert!(!again.built);
    assert_eq!(fake.builds().len(), 1);
}
