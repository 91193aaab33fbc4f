//! `CodeBuildBuilder` against strict moto with the emulator's CodeBuild simulator: the build
//! context goes to S3, the build runs the adapter's buildspec (here on this machine, `docker`
//! being a fake podman that records its calls), its log comes back line by line, and a failed
//! build's error says where and why.

mod support;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use starburst_aws::{AwsProvisioner, CodeBuildBuilder};
use starburst_cloud::{
    Arch, BuildProjectSpec, BuildRequest, ImageBuilder, ImageRef, MANAGED_TAG, Provisioner,
    RegistryLogin, RoleSpec, SETUP_TAG, Tags,
};
use support::Moto;

const BUCKET: &str = "builds-bucket";
const PROJECT: &str = "sb-us-east-1-builder";
const REPOSITORY: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com/starburst";

/// A podman that records each call (its directory, arguments and, for a build, the files it
/// sees) and fails a build whose context holds a file named FAIL.
const FAKE_PODMAN: &str = r#"#!/bin/sh
log="$(dirname "$0")/podman.log"
echo "$*" >> "$log"
case "$1" in
  login) cat > /dev/null; echo "Login Succeeded" ;;
  build)
    find . -type f | sort >> "$log"
    if [ -e FAIL ]; then echo "error: package 'nosuch' is not available"; exit 1; fi
    echo "STEP 1/1: FROM runtime" ;;
  push) echo "Writing manifest to image destination" ;;
esac
"#;

struct Fixture {
    moto: Moto,
    dir: tempfile::TempDir,
    builder: CodeBuildBuilder,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Fixture {
    async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let podman = dir.path().join("podman");
        std::fs::write(&podman, FAKE_PODMAN).unwrap();
        make_executable(&podman);
        let moto = Moto::start_with_codebuild(&podman).await;
        let aws = moto.aws().await;
        aws_sdk_s3::Client::new(&moto.sdk_config())
            .create_bucket()
            .bucket(BUCKET)
            .send()
            .await
            .unwrap();
        let tags: Tags = [(MANAGED_TAG, "true"), (SETUP_TAG, "sb-us-east-1")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let provisioner = AwsProvisioner::new(&aws);
        let role = RoleSpec {
            name: PROJECT.into(),
            description: "builds images".into(),
            service: "codebuild.amazonaws.com".into(),
            policy_name: "starburst".into(),
            policy: r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ecr:GetAuthorizationToken","Resource":"*"}]}"#.into(),
        };
        let role = provisioner.ensure_role(&role, &tags).await.unwrap();
        let project = BuildProjectSpec {
            name: PROJECT.into(),
            description: "starburst test".into(),
            role_arn: role.resource.id,
            source_location: format!("{BUCKET}/starburst/builds/"),
            log_group: "/sb/workers".into(),
            log_stream_prefix: "builds".into(),
            timeout_minutes: 60,
        };
        provisioner
            .ensure_build_project(&project, &tags)
            .await
            .unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        let builder = CodeBuildBuilder::new(&aws, PROJECT, BUCKET, "starburst/builds")
            .with_poll_interval(Duration::from_millis(100))
            .with_progress(Arc::new(move |l: &str| {
                sink.lock().unwrap().push(l.to_owned())
            }));
        Self {
            moto,
            dir,
            builder,
            lines,
        }
    }

    fn context(&self, name: &str, files: &[(&str, &str)]) -> PathBuf {
        let context = self.dir.path().join(name);
        for (path, text) in files {
            let path = context.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        context
    }

    async fn build(&self, context: PathBuf, tag: &str) -> starburst_cloud::Result<()> {
        let request = BuildRequest {
            context,
            image: ImageRef {
                repository: REPOSITORY.into(),
                tag: tag.into(),
            },
            arch: Arch::X86_64,
        };
        let login = RegistryLogin {
            server: "unused".into(),
            username: "AWS".into(),
            password: "unused".into(),
        };
        self.builder.build_and_push(&request, &login).await
    }

    fn podman_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("podman.log")).unwrap_or_default()
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    async fn keys_left(&self) -> usize {
        aws_sdk_s3::Client::new(&self.moto.sdk_config())
            .list_objects_v2()
            .bucket(BUCKET)
            .prefix("starburst/builds/")
            .send()
            .await
            .unwrap()
            .contents()
            .len()
    }
}

fn make_executable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_uploads_its_context_builds_pushes_and_relays_its_log() {
    let fx = Fixture::new().await;
    let context = fx.context(
        "ok",
        &[
            ("Dockerfile", "FROM runtime\n"),
            ("pkg/manifest.json", "{}"),
        ],
    );
    fx.build(context, "env-1").await.unwrap();

    let image = format!("{REPOSITORY}:env-1");
    let log = fx.podman_log();
    let calls: Vec<&str> = log.lines().collect();
    assert_eq!(
        calls,
        [
            "login --username AWS --password-stdin 123456789012.dkr.ecr.us-east-1.amazonaws.com",
            &format!("build --network host --platform linux/amd64 --tag {image} ."),
            "./Dockerfile",
            "./pkg/manifest.json",
            &format!("push {image}"),
        ],
        "{log}"
    );
    let lines = fx.lines();
    let said = |text: &str| lines.iter().any(|l| l.contains(text));
    assert!(said("uploading the build context (2 files"), "{lines:#?}");
    assert!(said("Running command docker build"), "{lines:#?}");
    assert!(said("STEP 1/1: FROM runtime"), "{lines:#?}");
    assert!(said("succeeded"), "{lines:#?}");
    assert_eq!(fx.keys_left().await, 0, "the build context is deleted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_build_says_which_phase_which_command_and_its_last_lines() {
    let fx = Fixture::new().await;
    let context = fx.context("bad", &[("Dockerfile", "FROM runtime\n"), ("FAIL", "")]);
    let err = fx.build(context, "env-2").await.unwrap_err().to_string();
    assert!(err.contains("FAILED in phase BUILD"), "{err}");
    assert!(
        err.contains("Error while executing command: docker build"),
        "{err}"
    );
    assert!(
        err.contains("error: package 'nosuch' is not available"),
        "{err}"
    );
    assert!(err.contains("CloudWatch Logs group /sb/workers"), "{err}");
    assert!(!fx.podman_log().contains("push "), "nothing is pushed");
    assert_eq!(fx.keys_left().await, 0, "the build context is deleted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_project_says_how_to_create_it() {
    let fx = Fixture::new().await;
    let aws = fx.moto.aws().await;
    let builder = CodeBuildBuilder::new(&aws, "nosuch-builder", BUCKET, "starburst/builds");
    let context = fx.context("ok", &[("Dockerfile", "FROM runtime\n")]);
    let request = BuildRequest {
        context,
        image: ImageRef {
            repository: REPOSITORY.into(),
            tag: "env-3".into(),
        },
        arch: Arch::Arm64,
    };
    let login = RegistryLogin {
        server: String::new(),
        username: String::new(),
        password: String::new(),
    };
    let err = builder
        .build_and_push(&request, &login)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("starburst_setup(cloud_builder = TRUE)"),
        "{err}"
    );
    assert_eq!(fx.keys_left().await, 0, "the build context is deleted");
}
